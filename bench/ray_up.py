#!/usr/bin/env python3
"""daft's SSH-hosts provider vs Ray's cluster launcher (`ray up`, local provider) on the same two
hosts: sshd on 127.0.0.2:22 and 127.0.0.3:22 (both this machine), environments already
installed. `bench/run.py` calls `bench(record)`; alone it prints BENCH lines:

    python3 bench/ray_up.py        # after bench/run.py has built daft and bench/.venv

Measured, alternating a daft run and a Ray run:
- up: time to the head being listed ALIVE by its dashboard, and to both nodes being ALIVE (the
  same poller watches both tools' clusters), and when the command returns;
- up again with nothing changed, vs `ray up --no-restart` and vs plain `ray up`;
- dashboard tunnel: `daft dashboard` vs `ray dashboard`, time from the command's start to the
  first HTTP answer from the head's Ray dashboard, and throughput of 200 MB fetched through each
  (both forward to a file server on the head, with `--remote-port`);
- down vs `ray down` (and that no Ray process is left afterwards).

What the peer needed (documented in BENCHMARKS.md too):
- `RAY_UP_enable_autoscaler_v2=0`, or its autoscaler does not start workers with the local provider;
- rsync on both ends (the launcher syncs its config and key to the head);
- `ray` on the PATH of a *login* shell (`bash --login -c -i 'source ~/.bashrc; ...'`): `ray down`
  runs a bare `ray stop` there and cannot be configured otherwise; /etc/profile resets PATH, so
  the bench links /usr/local/bin/ray to bench/.venv's while it runs (see RayOnLoginPath).
  Without it `ray stop` fails, the head's autoscaler keeps running and (both hosts sharing this
  machine's /tmp/ray) keeps marking the nodes running again, so `ray down` never returns;
- worker start commands without the default `ray stop` (both "hosts" are this machine: `ray stop`
  on the worker would kill the head), and `--node-ip-address` per host; the head keeps its
  `ray stop` (plain `ray up` restarts the head with it, and here that also stops the worker);
- sshd on port 22 (the launcher's local provider has no port setting; another port needs an
  `ssh_proxy_command`), hence the two loopback addresses.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAFT = ROOT / "target" / "release" / "daft"
VENV = ROOT / "bench" / ".venv"
RAY = str(VENV / "bin" / "ray")
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "DO_NOT_TRACK": "1", "SCARF_NO_ANALYTICS": "true"}
HOSTS = ["127.0.0.2", "127.0.0.3"]
BULK_MB = 200


def sh(cmd, env=None, check=True, timeout=900):
    e = dict(os.environ, **QUIET)
    e.update(env or {})
    try:
        r = subprocess.run(cmd, shell=isinstance(cmd, str), env=e, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if check:
            raise SystemExit(f"timed out after {timeout} s: {cmd}")
        return subprocess.CompletedProcess(cmd, 124, "", "timed out")
    if check and r.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{r.stdout[-8000:]}\n{r.stderr[-3000:]}")
    return r


def timed(cmd, env=None, check=True, timeout=900):
    t = time.perf_counter()
    r = sh(cmd, env=env, check=check, timeout=timeout)
    return time.perf_counter() - t, r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(addr, port, deadline=10.0):
    t = time.perf_counter()
    while time.perf_counter() - t < deadline:
        try:
            socket.create_connection((addr, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing answers on {addr}:{port}")


def sshd(tmp, addr, pubkey):
    """sshd on addr:22, stopped by PID at the end."""
    d = Path(tmp) / f"sshd-{addr}"
    d.mkdir(parents=True)
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {d}/host")
    (d / "authorized_keys").write_text(pubkey)
    ssl = os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    (d / "sshd_config").write_text(
        f"ListenAddress {addr}:22\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin yes\nPidFile {d}/pid\nSubsystem sftp internal-sftp\nMaxStartups 100\n"
        "MaxSessions 100\nLogLevel ERROR\n"
        f"SetEnv PATH={VENV}/bin:{os.environ['PATH']} SSL_CERT_FILE={ssl}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    p = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(addr, 22)
    return p


class RayOnLoginPath:
    """Ray's launcher runs its commands in a login shell (`bash --login -c -i ...`), whose PATH
    /etc/profile resets, and `ray down` runs a bare `ray stop` there: the peer expects `ray`
    installed on every host. For the bench, /usr/local/bin/ray links to bench/.venv's while it
    runs (only if nothing is there already), and is removed afterwards."""

    LINK = Path("/usr/local/bin/ray")

    def __enter__(self):
        self.made = False
        if not self.LINK.exists() and not self.LINK.is_symlink():
            self.LINK.symlink_to(VENV / "bin" / "ray")
            self.made = True
        elif self.LINK.resolve() != (VENV / "bin" / "ray").resolve():
            print(f"  note: {self.LINK} is another Ray; the launcher's `ray stop` uses it", flush=True)
        return self

    def __exit__(self, *exc):
        if self.made:
            self.LINK.unlink(missing_ok=True)


def alive_nodes(port=8265):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/nodes?view=summary", timeout=2) as r:
            data = json.load(r)
        return sum(1 for n in data["data"]["summary"] if n.get("raylet", {}).get("state") == "ALIVE")
    except Exception:
        return 0


class Poller:
    """Watches the head's dashboard (127.0.0.1:8265 for both tools' heads) from `start()`:
    when it first lists one, then two ALIVE nodes."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.first = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set() and 2 not in self.first:
            n = alive_nodes()
            for k in (1, 2):
                if n >= k and k not in self.first:
                    self.first[k] = time.perf_counter() - self.t0
            time.sleep(0.05)

    def wait(self, k, deadline=300):
        t = time.perf_counter()
        while k not in self.first:
            if time.perf_counter() - t > deadline:
                raise SystemExit(f"the cluster did not reach {k} ALIVE node(s) within {deadline} s")
            time.sleep(0.05)
        return self.first[k]

    def close(self):
        self.stop.set()
        self.thread.join()


def first_byte(cmd, port, env=None, deadline=60):
    """Start a tunnel command; seconds until http://127.0.0.1:port/ answers. Returns (secs, proc)."""
    e = dict(os.environ, **QUIET)
    e.update(env or {})
    t = time.perf_counter()
    # stdin stays open: `ray dashboard` runs an interactive ssh session that ends with its stdin.
    p = subprocess.Popen(cmd, env=e, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    while time.perf_counter() - t < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                if r.status == 200 and r.read(1):
                    return time.perf_counter() - t, p
        except Exception:
            if p.poll() is not None:
                raise SystemExit(f"{cmd[0]} exited with {p.returncode} before the tunnel answered")
            time.sleep(0.01)
    raise SystemExit(f"no answer through {cmd} within {deadline} s")


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, 15)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()


def throughput(port):
    """MB/s of one GET of the bulk file through a tunnel on `port`."""
    t = time.perf_counter()
    n = 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/bulk", timeout=60) as r:
        while chunk := r.read(1 << 20):
            n += len(chunk)
    if n != BULK_MB << 20:
        raise SystemExit(f"tunnel delivered {n} bytes, not {BULK_MB} MB")
    return n / (1 << 20) / (time.perf_counter() - t)


def peak_rss_mib(pid):
    """The peak resident set (VmHWM) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def tunnel(cmd_for, env=None):
    """First byte to the real dashboard, then bulk throughput through a second tunnel.
    Returns (seconds to first byte, MB/s, peak RSS of the tunnel command in MiB)."""
    port = free_port()
    ttfb, p = first_byte(cmd_for(port, None), port, env)
    stop(p)
    port = free_port()
    _, p = first_byte(cmd_for(port, BULK_PORT), port, env)
    mbps = throughput(port)
    rss = peak_rss_mib(p.pid)
    stop(p)
    return ttfb, mbps, rss


def ray_procs():
    """Whether a live Ray node process (raylet or GCS; zombies waiting for init do not count) runs here."""
    ps = sh(["ps", "-eo", "pid=,stat=,args="]).stdout.splitlines()
    live = [l for l in ps if ("raylet/raylet" in l or "gcs_server" in l) and l.split()[1][0] != "Z"]
    if live:
        print("  Ray processes running:\n  " + "\n  ".join(live), flush=True)
    return bool(live)


BULK_PORT = 0


def bench(record, runs):
    """Runs the comparison, calling record(name, daft_values, peer, peer_values, unit=...) per
    measure; returns the peak memory of daft commands measured here."""
    global BULK_PORT
    mem = {}
    tmp = tempfile.mkdtemp(prefix="daft-rayup-")
    procs = []
    login_path = RayOnLoginPath().__enter__()
    launcher_files = [Path(os.path.expanduser("~"), f) for f in ("ray_bootstrap_config.yaml", "ray_bootstrap_key.pem")]
    launcher_files = [f for f in launcher_files if not f.exists()]
    try:
        key = Path(tmp) / "id"
        sh(f"ssh-keygen -q -t ed25519 -N '' -f {key}")
        pub = (Path(tmp) / "id.pub").read_text()
        procs = [sshd(tmp, a, pub) for a in HOSTS]
        # A file server on the "head" (this machine) for tunnel throughput, reached by both tools.
        www = Path(tmp) / "www"
        www.mkdir()
        with open(www / "bulk", "wb") as f:
            f.write(os.urandom(BULK_MB << 20))
        BULK_PORT = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                       "-d", str(www), str(BULK_PORT)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_port("127.0.0.1", BULK_PORT)

        user = sh("id -un").stdout.strip()
        env = {"DAFT_HOME": f"{tmp}/daft-home"}
        cfg = Path(tmp) / "ssh.toml"
        cfg.write_text(f'[setup]\nname = "bench-ssh"\nprovider = "ssh"\nssh_user = "{user}"\nssh_private_key = "{key}"\n'
                       f'[setup.ssh]\nhead = "{HOSTS[0]}"\nworkers = ["{HOSTS[1]}"]\n')
        yaml = Path(tmp) / "cluster.yaml"
        yaml.write_text(
            f"cluster_name: bench-rayup\nprovider:\n  type: local\n  head_ip: {HOSTS[0]}\n  worker_ips: [{HOSTS[1]}]\n"
            f"auth:\n  ssh_user: {user}\n  ssh_private_key: {key}\nmin_workers: 1\nmax_workers: 1\n"
            f"head_start_ray_commands:\n  - ray stop\n  - ray start --head --port=6379 --node-ip-address={HOSTS[0]} "
            "--dashboard-host=127.0.0.1 --autoscaling-config=~/ray_bootstrap_config.yaml --disable-usage-stats\n"
            f"worker_start_ray_commands:\n  - ray start --address=$RAY_HEAD_IP:6379 --node-ip-address={HOSTS[1]} "
            "--disable-usage-stats\n"
        )
        ray_env = {"RAY_UP_enable_autoscaler_v2": "0"}
        daft = str(DAFT)

        def daft_dash(port, remote):
            return [daft, "dashboard", "-c", str(cfg), "--no-browser", "--port", str(port)] + (
                ["--remote-port", str(remote)] if remote else [])

        def ray_dash(port, remote):
            return [RAY, "dashboard", "-p", str(port)] + (["--remote-port", str(remote)] if remote else []) + [str(yaml)]

        # Warm-up, not measured: daft installs its environment on both hosts; Ray's launcher syncs
        # its files once.
        print("  warm-up: daft up/down, ray up/down", flush=True)
        sh([daft, "up", "-c", str(cfg), "--yes"], env=env)
        sh([daft, "down", "-c", str(cfg), "--yes"], env=env)
        poll = Poller()
        sh([RAY, "up", "-y", str(yaml)], env=ray_env)
        poll.wait(2)  # `ray down` while the autoscaler is still starting the worker leaves it running
        poll.close()
        sh([RAY, "down", "-y", str(yaml)], env=ray_env, timeout=300)
        if ray_procs():
            raise SystemExit("the warm-up left Ray processes running")

        m = {k: [] for k in ["d_head", "d_all", "d_ret", "d_noop", "d_ttfb", "d_mbps", "d_down",
                             "r_head", "r_all", "r_ret", "r_noop", "r_again", "r_ttfb", "r_mbps", "r_down"]}
        for i in range(runs):
            poll = Poller()
            m["d_ret"].append(timed([daft, "up", "-c", str(cfg), "--yes"], env=env)[0])
            m["d_head"].append(poll.wait(1))
            m["d_all"].append(poll.wait(2))
            poll.close()
            m["d_noop"].append(timed([daft, "up", "-c", str(cfg)], env=env)[0])
            ttfb, mbps, mem["daft dashboard (200 MB through the tunnel)"] = tunnel(daft_dash, env)
            m["d_ttfb"].append(ttfb)
            m["d_mbps"].append(mbps)
            m["d_down"].append(timed([daft, "down", "-c", str(cfg), "--yes"], env=env)[0])
            if ray_procs():
                raise SystemExit("daft down left Ray processes running")

            poll = Poller()
            m["r_ret"].append(timed([RAY, "up", "-y", str(yaml)], env=ray_env)[0])
            m["r_head"].append(poll.wait(1))
            m["r_all"].append(poll.wait(2))
            poll.close()
            m["r_noop"].append(timed([RAY, "up", "-y", "--no-restart", str(yaml)], env=ray_env)[0])
            poll = Poller()
            m["r_again"].append(timed([RAY, "up", "-y", str(yaml)], env=ray_env)[0])
            # Plain `ray up` restarts Ray on the head (its `ray stop` also stops the worker here);
            # the head's new autoscaler brings the worker back. Wait for it before going on.
            back = poll.wait(2)
            poll.close()
            ttfb, mbps, _ = tunnel(ray_dash, ray_env)
            m["r_ttfb"].append(ttfb)
            m["r_mbps"].append(mbps)
            t, r = timed([RAY, "down", "-y", str(yaml)], env=ray_env, check=False, timeout=300)
            m["r_down"].append(t)
            left = ray_procs()
            print(f"  run {i + 1}: daft up head {m['d_head'][-1]:.2f}s all {m['d_all'][-1]:.2f}s "
                  f"noop {m['d_noop'][-1]:.3f}s tunnel {m['d_ttfb'][-1]:.3f}s {m['d_mbps'][-1]:.0f}MB/s "
                  f"down {m['d_down'][-1]:.2f}s | ray up head {m['r_head'][-1]:.2f}s all {m['r_all'][-1]:.2f}s "
                  f"--no-restart {m['r_noop'][-1]:.2f}s again {m['r_again'][-1]:.2f}s (all back {back:.1f}s) tunnel {m['r_ttfb'][-1]:.3f}s "
                  f"{m['r_mbps'][-1]:.0f}MB/s down {t:.2f}s (rc {r.returncode}{', Ray left running' if left else ''})",
                  flush=True)
            if r.returncode != 0 or left:
                raise SystemExit(f"ray down did not finish cleanly:\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")

        record("SSH hosts, head + 1 worker: up to head ALIVE", m["d_head"], "ray up (local provider)", m["r_head"])
        record("SSH hosts: up to all nodes ALIVE", m["d_all"], "ray up (local provider)", m["r_all"])
        record("SSH hosts: up command returns", m["d_ret"], "ray up returns (head only)", m["r_ret"])
        record("SSH hosts: up again, nothing changed", m["d_noop"], "ray up --no-restart", m["r_noop"])
        record("SSH hosts: up again, nothing changed", m["d_noop"], "ray up (plain)", m["r_again"])
        record("SSH hosts: dashboard tunnel, start to first byte", m["d_ttfb"], "ray dashboard", m["r_ttfb"])
        record(f"SSH hosts: dashboard tunnel throughput {BULK_MB} MB", m["d_mbps"], "ray dashboard", m["r_mbps"],
               unit="MB/s")
        record("SSH hosts: down (nothing left running)", m["d_down"], "ray down", m["r_down"])
        return mem
    finally:
        sh([RAY, "stop", "--force"], check=False)
        for p in procs:
            p.kill()
            p.wait()
        login_path.__exit__()
        # What the launcher left in the hosts' home (this machine's): its config and key.
        for f in launcher_files:
            f.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _print_record(name, d, peer, p, unit="s", note=""):
    dm, pm = statistics.median(d), statistics.median(p)
    print("BENCH " + json.dumps({"name": name, "unit": unit, "daft": dm, "daft_min": min(d), "daft_max": max(d),
                                 "peer": peer, "peer_value": pm, "peer_min": min(p), "peer_max": max(p),
                                 "ratio": dm / pm, "runs": len(d), "note": note}), flush=True)


if __name__ == "__main__":
    bench(_print_record, int(os.environ.get("BENCH_RUNS", "3")))
