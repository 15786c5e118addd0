#!/usr/bin/env python3
"""daft vs its peers, side by side in one run, on loopback only. Writes BENCHMARKS.md.

    python3 bench/run.py            # everything (about 15 minutes, after a release build)
    BENCH_RUNS=3 python3 bench/run.py

Peers: Ray's own CLI (`ray[default]` from PyPI, installed with uv into bench/.venv): its cluster
launcher (`ray up` / `ray down` / `ray dashboard`, local provider, bench/ray_up.py), `ray job
submit`, `ray status`, a bare `ray start` / `ray stop`; and OpenSSH (`scp`, `ssh -L`, via
`cargo bench --bench peers`).
Runs of daft and of the peer alternate; medians, min..max and the ratio daft/peer are reported.
"""

import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray_up  # bench/ray_up.py: SSH hosts vs Ray's cluster launcher

ROOT = Path(__file__).resolve().parent.parent
DAFT = ROOT / "target" / "release" / "daft"
VENV = ROOT / "bench" / ".venv"
RAY = VENV / "bin" / "ray"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
RESULTS = []
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "DO_NOT_TRACK": "1", "SCARF_NO_ANALYTICS": "true", "DAFT_ANALYTICS_ENABLED": "0"}


def sh(cmd, env=None, check=True, capture=True, timeout=900):
    e = dict(os.environ, **QUIET)
    e.update(env or {})
    r = subprocess.run(cmd, shell=isinstance(cmd, str), env=e, capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{r.stdout}\n{r.stderr}")
    return r


def timed(cmd, env=None, check=True):
    t0 = time.perf_counter()
    r = sh(cmd, env=env, check=check)
    return time.perf_counter() - t0, r


def free_port(addr="127.0.0.1"):
    s = socket.socket()
    s.bind((addr, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def record(name, daft_vals, peer, peer_vals, unit="s", note=""):
    d = statistics.median(daft_vals)
    p = statistics.median(peer_vals) if peer_vals else None
    RESULTS.append(
        {
            "name": name,
            "unit": unit,
            "daft": d,
            "daft_min": min(daft_vals),
            "daft_max": max(daft_vals),
            "peer": peer,
            "peer_value": p,
            "peer_min": min(peer_vals) if peer_vals else None,
            "peer_max": max(peer_vals) if peer_vals else None,
            "ratio": (d / p) if p else None,
            "runs": len(daft_vals),
            "note": note,
        }
    )
    print(f"  {name}: daft {d:.4g} {unit}" + (f" | {peer} {p:.4g} {unit} | ratio {d / p:.3g}" if p else ""), flush=True)


def setup():
    # Bench-only tools (the tests do not need them): rsync for Ray's cluster launcher, GNU time
    # for peak memory.
    missing = [pkg for pkg, present in (("rsync", shutil.which("rsync")), ("time", os.path.exists("/usr/bin/time")))
               if not present]
    if missing:
        print(f"installing {' '.join(missing)} (apt-get)", flush=True)
        sh("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
           + " ".join(missing), capture=False)
    print("building daft (release) and installing the peer (ray[default]) with uv ...", flush=True)
    sh("cargo build --release --quiet", capture=False, timeout=None)
    if not RAY.exists():
        sh(f"uv venv -q {VENV} && VIRTUAL_ENV={VENV} uv pip install -q 'ray[default]' daft")


def bench_startup(home):
    print("CLI start-up", flush=True)
    d, p = [], []
    for _ in range(max(RUNS, 10)):
        d.append(timed([str(DAFT), "--help"])[0])
        p.append(timed([str(RAY), "--help"])[0])
    record("start-up: --help", d, "ray --help", p)


def ray_env(home):
    """What a Ray client needs to reach daft's local cluster: its token, and 127.0.0.1 kept."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(Path(home) / "clusters" / "bench-local" / "ray-token"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


def local_config(tmp, ray_port, dash_port, workers=1):
    cfg = Path(tmp) / "local.toml"
    cfg.write_text(
        f'[setup]\nname = "bench-local"\nprovider = "local"\nnumber_of_workers = {workers}\n'
        f'[setup.local]\nray_port = {ray_port}\ndashboard_port = {dash_port}\n'
        f"[run]\nsetup_commands = []\n"
    )
    return cfg


def bench_local(tmp):
    print("local provider vs bare `ray start --head` / `ray stop`", flush=True)
    home = Path(tmp) / "daft-home"
    env = {"DAFT_HOME": str(home)}
    rp, dp = free_port("127.0.0.1"), free_port("127.0.0.1")
    cfg = local_config(tmp, rp, dp)
    # Warm-up: installs the cluster's environment (not measured).
    sh([str(DAFT), "up", "-c", str(cfg), "--yes"], env=env)
    sh([str(DAFT), "down", "-c", str(cfg), "--yes"], env=env)
    up, noop, down, bare_up, bare_down, bare_pair, lst, status = [], [], [], [], [], [], [], []
    for _ in range(RUNS):
        up.append(timed([str(DAFT), "up", "-c", str(cfg), "--yes"], env=env)[0])
        noop.append(timed([str(DAFT), "up", "-c", str(cfg)], env=env)[0])
        lst.append(timed([str(DAFT), "list", "--local-only"], env=env)[0])
        status.append(timed([str(RAY), "status", "--address", f"127.0.0.1:{rp}"], env=ray_env(home), check=False)[0])
        down.append(timed([str(DAFT), "down", "-c", str(cfg), "--yes"], env=env)[0])
        tmpdir = Path(tmp) / "bare-ray"
        shutil.rmtree(tmpdir, ignore_errors=True)
        bare_up.append(
            timed(
                [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.2", "--port", str(rp),
                 "--dashboard-host", "127.0.0.2", "--dashboard-port", str(dp), "--temp-dir", str(tmpdir), "--disable-usage-stats"]
            )[0]
        )
        bare_down.append(timed([str(RAY), "stop"])[0])
        # The same two nodes by hand: the head, then a worker joining it (as daft's local provider
        # runs them: own temp dirs, own dashboard-agent port, the worker on 127.0.0.3).
        for d in (tmpdir, Path(tmp) / "bare-ray-worker"):
            shutil.rmtree(d, ignore_errors=True)
        t = time.perf_counter()
        sh([str(RAY), "start", "--head", "--node-ip-address", "127.0.0.2", "--port", str(rp),
            "--dashboard-host", "127.0.0.2", "--dashboard-port", str(dp), "--temp-dir", str(tmpdir), "--disable-usage-stats"])
        sh([str(RAY), "start", "--address", f"127.0.0.2:{rp}", "--node-ip-address", "127.0.0.3",
            "--dashboard-agent-listen-port", str(free_port()), "--temp-dir", str(Path(tmp) / "bare-ray-worker"),
            "--disable-usage-stats"])
        bare_pair.append(time.perf_counter() - t)
        sh([str(RAY), "stop"])
    record("up, local, 1 head + 1 worker, env installed", up, "bare ray start --head, then ray start --address", bare_pair)
    record("up, local, 1 head + 1 worker, env installed", up, "bare ray start --head (head only)", bare_up)
    record("up again, nothing changed", noop, "bare ray start --head", bare_up)
    record("down, local (2 nodes)", down, "ray stop", bare_down)
    record("list (local cluster up)", lst, "ray status", status)
    return cfg, env


def make_tree(root, files=5000, total=50 * 1024 * 1024):
    rnd = random.Random(7)
    each = total // files
    for i in range(files):
        p = Path(root) / f"pkg{i % 50}" / f"mod{i}.dat"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(each))
    (Path(root) / "main.py").write_text("print('hello')\n")


def bench_submit(tmp, cfg, env):
    print("submit 50 MB / 5,000 files vs `ray job submit --working-dir`", flush=True)
    rp = re.search(r"ray_port = (\d+)", cfg.read_text()).group(1)
    dp = re.search(r"dashboard_port = (\d+)", cfg.read_text()).group(1)
    sh([str(DAFT), "up", "-c", str(cfg), "--yes"], env=env)
    wd = Path(tmp) / "workdir"
    make_tree(wd)
    addr = f"http://127.0.0.1:{dp}"
    home = Path(env["DAFT_HOME"])
    d, p, d2, p2 = [], [], [], []
    for i in range(RUNS):
        (wd / "main.py").write_text(f"print('run {i}')\n")  # a new tree each run: nothing cached
        d.append(timed([str(DAFT), "submit", "-c", str(cfg), "-w", str(wd), "--", "python", "main.py"], env=env)[0])
        p.append(timed([str(RAY), "job", "submit", "--address", addr, "--working-dir", str(wd), "--", "python", "main.py"], env=ray_env(home))[0])
        (wd / "pkg0" / "mod0.dat").write_bytes(os.urandom(1024))  # change one file
        d2.append(timed([str(DAFT), "submit", "-c", str(cfg), "-w", str(wd), "--", "python", "main.py"], env=env)[0])
        p2.append(timed([str(RAY), "job", "submit", "--address", addr, "--working-dir", str(wd), "--", "python", "main.py"], env=ray_env(home))[0])
    record("submit 50 MB / 5,000 files, end to end", d, "ray job submit --working-dir", p)
    record("resubmit after changing one file", d2, "ray job submit --working-dir", p2)
    same = []
    for _ in range(RUNS):
        t, r = timed([str(DAFT), "submit", "-c", str(cfg), "-w", str(wd), "--", "true"], env=env)
        same.append(t)
        assert "nothing sent" in r.stderr, r.stderr
    record("resubmit unchanged (nothing sent)", same, None, [])
    mem = peak_memory([str(DAFT), "submit", "-c", str(cfg), "-w", str(wd), "--", "true"], env)
    sh([str(DAFT), "down", "-c", str(cfg), "--yes"], env=env)
    return mem


def peak_memory(cmd, env=None):
    r = sh(["/usr/bin/time", "-v"] + cmd, env=env, check=False)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    return int(m.group(1)) / 1024 if m else None


def bench_moto(tmp):
    print("scale: up --no-wait 1 + 1,000 workers against moto", flush=True)
    port = free_port()
    moto = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ, MOTO_ENABLE_AMI_VALIDATION="true", MOTO_ENABLE_KEYPAIR_VALIDATION="true"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        key = Path(tmp) / "id"
        sh(f"ssh-keygen -q -t ed25519 -N '' -f {key}")
        cfg = Path(tmp) / "aws.toml"
        cfg.write_text(
            '[setup]\nname = "bench-scale"\nprovider = "aws"\nssh_private_key = "id"\nnumber_of_workers = 1000\n'
            '[setup.aws]\nssh_ingress_cidrs = ["203.0.113.7/32"]\n'
        )
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_EC2_METADATA_DISABLED": "true", "RUST_LOG": "daft::aws=debug", "HOME": tmp, "DAFT_HOME": f"{tmp}/h"}
        t, r = timed([str(DAFT), "up", "--no-wait", "-c", str(cfg)], env=env)
        calls = r.stderr.count("api call")
        runs = r.stderr.count("operation=RunInstances")
        record("up --no-wait 1 + 1,000 workers (moto)", [t], None, [], note=f"{calls} API calls, {runs} RunInstances")
        t, r = timed([str(DAFT), "plan", "-c", str(cfg)], env=env)
        record("plan over 1,001 live instances (moto, incl. DescribeInstances)", [t], None, [])
        mem = peak_memory([str(DAFT), "plan", "-c", str(cfg)], env)
        t, r = timed([str(DAFT), "down", "--yes", "-c", str(cfg)], env=env)
        record("down 1,001 instances + security group (moto)", [t], None, [], note=f"{r.stderr.count('api call')} API calls")
        return mem
    finally:
        moto.terminate()
        moto.wait()


def bench_criterion():
    print("plan over 10,000 observed nodes (criterion)", flush=True)
    r = sh("cargo bench --quiet --bench plan -- --warm-up-time 1 --measurement-time 3", capture=True, timeout=None)
    for m in re.finditer(r"plan 10k observed -> (\d+) workers\s+time:\s+\[[\d.]+ \w+ ([\d.]+) (\w+)", r.stdout):
        v = float(m.group(2)) * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1, "s": 1000}[m.group(3)]
        record(f"plan: 10,000 observed -> {m.group(1)} workers", [v], None, [], unit="ms", note="target ≤ 10 ms")


def bench_peers():
    print("transfer and tunnel vs OpenSSH (cargo bench --bench peers)", flush=True)
    r = sh("cargo bench --quiet --bench peers", env={"BENCH_RUNS": str(RUNS)}, timeout=None)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH "):
            v = json.loads(line[6:])
            v.setdefault("note", "")
            RESULTS.append(v)
            print(f"  {v['name']}: daft {v['daft']:.4g} | {v['peer']} {v['peer_value']:.4g} | ratio {v['ratio']:.3g}", flush=True)


def write(mem):
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), platform.machine())
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}), "
        f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, {platform.platform()}; "
        f"daft release build; peers: Ray {sh([str(RAY), '--version']).stdout.strip().split()[-1]}, "
        f"{sh('ssh -V', check=True).stderr.strip()}. Everything on loopback. "
        f"Runs alternate between daft and its peer; median (min..max) of {RUNS} runs unless noted. "
        "Ratio = daft / peer (for times lower is better for daft; for throughput higher is).",
        "",
        "Reproduce: `python3 bench/run.py` (see bench/README.md).",
        "",
        "| measure | daft | peer | peer value | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in RESULTS:
        u = r["unit"]
        dv = f"{r['daft']:.4g} {u}" + (f" ({r['daft_min']:.3g}..{r['daft_max']:.3g})" if r.get("runs", 1) > 1 else "")
        pv = f"{r['peer_value']:.4g} {u} ({r['peer_min']:.3g}..{r['peer_max']:.3g})" if r.get("peer_value") is not None else "—"
        ratio = f"{r['ratio']:.3g}" if r.get("ratio") is not None else "—"
        name = r["name"] + (f" — {r['note']}" if r.get("note") else "")
        lines.append(f"| {name} | {dv} | {r.get('peer') or '—'} | {pv} | {ratio} |")
    lines += ["", "Peak memory (maximum resident set, `/usr/bin/time -v`):", ""]
    for k, v in mem.items():
        lines.append(f"- `{k}`: {v:.1f} MiB" if v else f"- `{k}`: n/a")
    Path(ROOT / "bench" / "results.json").write_text(json.dumps(RESULTS, indent=2))
    notes = ROOT / "bench" / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text()]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines) + "\n")
    print("wrote BENCHMARKS.md")


def main():
    setup()
    mem = {}
    with tempfile.TemporaryDirectory() as tmp:
        mem["daft --help"] = peak_memory([str(DAFT), "--help"])
        bench_startup(tmp)
        cfg, env = bench_local(tmp)
        mem["daft up (local, head + worker)"] = peak_memory([str(DAFT), "up", "-c", str(cfg), "--yes"], env)
        mem["daft list (local cluster up)"] = peak_memory([str(DAFT), "list", "--local-only"], env)
        mem["daft up (no-op)"] = peak_memory([str(DAFT), "up", "-c", str(cfg)], env)
        mem["daft plan (local)"] = peak_memory([str(DAFT), "plan", "-c", str(cfg)], env)
        mem["daft down (local, 2 nodes)"] = peak_memory([str(DAFT), "down", "-c", str(cfg), "--yes"], env)
        mem["daft submit 50 MB / 5,000 files (unchanged)"] = bench_submit(tmp, cfg, env)
    with tempfile.TemporaryDirectory() as tmp:
        mem["daft plan (aws, 1,001 instances)"] = bench_moto(tmp)
    print("SSH hosts vs Ray's cluster launcher (bench/ray_up.py)", flush=True)
    mem.update(ray_up.bench(record, RUNS))
    bench_criterion()
    bench_peers()
    write(mem)


if __name__ == "__main__":
    sys.exit(main())
