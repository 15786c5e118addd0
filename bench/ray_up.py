#!/usr/bin/env python3
"""daft's SSH-hosts provider vs Ray's cluster launcher (`ray up` with its local provider) on the
same two hosts: sshd on 127.0.0.2:22 and 127.0.0.3:22 (this machine, as root), environment
already installed. Measures time to head ready and to all nodes ready, `up` with nothing changed
(vs `ray up --no-restart` and plain `ray up`), and `down` (vs `ray down`). Prints BENCH lines.

    python3 bench/ray_up.py        # after bench/run.py has built daft and bench/.venv

Status: NOT COMPLETE. With both "hosts" on one machine, `ray up` brings the head and (through
its autoscaler) the worker up, but `ray down` did not return within 14 minutes in the first
attempt; it is now bounded (180 s) and each measurement is printed as it is taken.

What the peer needed: `RAY_UP_enable_autoscaler_v2=0` (so its autoscaler starts the worker with
the local provider), rsync on both ends, `ray` on the hosts' PATH, and start commands without
`ray stop` (both "hosts" are this machine: `ray stop` on one would kill the other's Ray). With
sshd on port 22 no `ssh_proxy_command` is needed.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAFT = ROOT / "target" / "release" / "daft"
VENV = ROOT / "bench" / ".venv"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "DO_NOT_TRACK": "1"}


def sh(cmd, env=None, check=True, timeout=900):
    e = dict(os.environ, **QUIET)
    e.update(env or {})
    try:
        r = subprocess.run(cmd, shell=isinstance(cmd, str), env=e, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if check:
            raise
        return subprocess.CompletedProcess(cmd, 124, "", "timed out")
    if check and r.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{r.stdout[-8000:]}\n{r.stderr[-3000:]}")
    return r


def sshd(tmp, addr, pubkeys):
    d = Path(tmp) / f"sshd-{addr}"
    (d / "home").mkdir(parents=True)
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {d}/host")
    (d / "authorized_keys").write_text(pubkeys)
    path = f"{VENV}/bin:{os.environ['PATH']}"
    cfg = d / "sshd_config"
    cfg.write_text(
        f"ListenAddress {addr}:22\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\nPidFile {d}/pid\n"
        f"Subsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n"
        f"SetEnv PATH={path} SSL_CERT_FILE={os.environ.get('SSL_CERT_FILE', '/etc/ssl/certs/ca-certificates.crt')}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    p = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection((addr, 22), timeout=0.2).close()
            return p, d / "home"
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"sshd on {addr}:22 did not start")


def nodes_alive(port=8265):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/nodes?view=summary", timeout=2) as r:
            data = json.load(r)
        return sum(1 for n in data["data"]["summary"] if n.get("raylet", {}).get("state") == "ALIVE")
    except Exception:
        return 0


def wait_nodes(n, deadline=300):
    t0 = time.perf_counter()
    while nodes_alive() < n:
        if time.perf_counter() - t0 > deadline:
            raise SystemExit("cluster did not reach %d nodes" % n)
        time.sleep(0.1)


def report(name, d, peer, p):
    dm, pm = statistics.median(d), statistics.median(p)
    print("BENCH " + json.dumps({"name": name, "unit": "s", "daft": dm, "daft_min": min(d), "daft_max": max(d), "peer": peer,
                                 "peer_value": pm, "peer_min": min(p), "peer_max": max(p), "ratio": dm / pm, "runs": len(d), "note": ""}), flush=True)


def main():
    tmp = tempfile.mkdtemp()
    key = Path(tmp) / "id"
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {key}")
    pub = (Path(tmp) / "id.pub").read_text()
    procs = []
    try:
        for addr in ["127.0.0.2", "127.0.0.3"]:
            p, _ = sshd(tmp, addr, pub)
            procs.append(p)
        user = sh("id -un").stdout.strip()
        env = {"DAFT_HOME": f"{tmp}/daft-home", "HOME": tmp}
        cfg = Path(tmp) / "ssh.toml"
        cfg.write_text(f'[setup]\nname = "bench-ssh"\nprovider = "ssh"\nssh_user = "{user}"\nssh_private_key = "{key}"\n'
                       f'[setup.ssh]\nhead = "127.0.0.2"\nworkers = ["127.0.0.3"]\n')
        yaml = Path(tmp) / "cluster.yaml"
        yaml.write_text(
            "cluster_name: bench-rayup\nprovider:\n  type: local\n  head_ip: 127.0.0.2\n  worker_ips: [127.0.0.3]\n"
            f"auth:\n  ssh_user: {user}\n  ssh_private_key: {key}\nmin_workers: 1\nmax_workers: 1\n"
            f"head_start_ray_commands:\n  - {VENV}/bin/ray start --head --port=6379 --node-ip-address=127.0.0.2 --dashboard-host=127.0.0.1 "
            "--autoscaling-config=~/ray_bootstrap_config.yaml --disable-usage-stats\n"
            f"worker_start_ray_commands:\n  - {VENV}/bin/ray start --address=$RAY_HEAD_IP:6379 --node-ip-address=127.0.0.3 --disable-usage-stats\n"
        )
        # The launcher keeps its key and config in the login's real home (~ of the passwd entry).
        ray_env = {"RAY_UP_enable_autoscaler_v2": "0"}
        ray = str(VENV / "bin" / "ray")
        # Warm-up: daft installs its environment on both hosts (not measured); one ray up/down.
        sh([str(DAFT), "up", "-c", str(cfg), "--yes"], env=env)
        sh([str(DAFT), "down", "-c", str(cfg), "--yes"], env=env)
        d_up, d_noop, d_down, r_head, r_all, r_noop, r_again, r_down = [], [], [], [], [], [], [], []
        for _ in range(RUNS):
            t = time.perf_counter()
            sh([str(DAFT), "up", "-c", str(cfg), "--yes"], env=env)
            d_up.append(time.perf_counter() - t)
            wait_nodes(2, 10)
            t = time.perf_counter()
            sh([str(DAFT), "up", "-c", str(cfg)], env=env)
            d_noop.append(time.perf_counter() - t)
            t = time.perf_counter()
            sh([str(DAFT), "down", "-c", str(cfg), "--yes"], env=env)
            d_down.append(time.perf_counter() - t)

            t = time.perf_counter()
            sh([ray, "up", "-y", "--no-config-cache", str(yaml)], env=ray_env)
            r_head.append(time.perf_counter() - t)
            wait_nodes(2)
            r_all.append(time.perf_counter() - t)
            t = time.perf_counter()
            sh([ray, "up", "-y", "--no-restart", "--no-config-cache", str(yaml)], env=ray_env)
            r_noop.append(time.perf_counter() - t)
            t = time.perf_counter()
            down = sh([ray, "down", "-y", str(yaml)], env=ray_env, check=False, timeout=180)
            r_down.append(time.perf_counter() - t)
            print(f"run: daft up {d_up[-1]:.2f}s noop {d_noop[-1]:.3f}s down {d_down[-1]:.2f}s | ray up {r_head[-1]:.2f}s "
                  f"all {r_all[-1]:.2f}s noop {r_noop[-1]:.2f}s down {r_down[-1]:.2f}s (rc {down.returncode})", flush=True)
            sh([ray, "stop", "--force"], env=ray_env, check=False)
        report("SSH hosts: up to all nodes ready (head + 1 worker)", d_up, "ray up (local provider), all nodes", r_all)
        report("SSH hosts: up to head ready", d_up, "ray up returns (head ready)", r_head)
        report("SSH hosts: up again, nothing changed", d_noop, "ray up --no-restart", r_noop)
        report("SSH hosts: down", d_down, "ray down", r_down)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
