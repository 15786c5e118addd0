#!/usr/bin/env python3
"""From idle to stopped against `autostop`: a local cluster (head only, loopback) with
`autostop = AUTOSTOP`, one trivial job, then the time from the job's end (its `daft submit`
returning) to the head's Ray being gone, as a ratio to the setting (the floor: 1.0, a cluster
that stops the moment its idle time is up). A stop before the setting is a failure.

    DAFT_BIN=target/debug/daft python3 bench/autostop.py     # AUTOSTOP (seconds, default 20), BENCH_RUNS (2)

Writes bench/autostop.json. Needs what `bash .ci/setup` installs (uv).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAFT = Path(os.environ.get("DAFT_BIN", ROOT / "target" / "release" / "daft"))
RUNS = int(os.environ.get("BENCH_RUNS", "2"))
AUTOSTOP = int(os.environ.get("AUTOSTOP", "20"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env):
    return subprocess.run(cmd, env={**os.environ, **env}, check=True, text=True,
                          capture_output=True, timeout=900)


def alive(pid_file):
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(l.startswith("State:") and "Z" in l for l in f)
    except OSError:
        return False


def main():
    if not DAFT.exists():
        sys.exit(f"no daft binary at {DAFT}: build it (cargo build) or set DAFT_BIN")
    tmp = Path(tempfile.mkdtemp(prefix="daft-autostop-bench-"))
    home = tmp / "daft-home"
    env = {"DAFT_HOME": str(home)}
    cfg = tmp / "local.toml"
    cfg.write_text(
        f'[setup]\nname = "bench-autostop"\nprovider = "local"\nnumber_of_workers = 0\n'
        f'autostop = "{AUTOSTOP}s"\n'
        f"[setup.local]\nray_port = {free_port()}\ndashboard_port = {free_port()}\n"
    )
    work = tmp / "work"
    work.mkdir()
    (work / "job.sh").write_text("echo hi\n")
    pid_file = home / "clusters" / "bench-autostop" / "nodes" / "head" / "ray.pid"
    took = []
    try:
        for _ in range(RUNS):
            run([str(DAFT), "up", "-c", str(cfg), "--yes"], env)
            run([str(DAFT), "submit", "-c", str(cfg), "-w", str(work), "--allow-dirty", "--",
                 "sh", "job.sh"], env)
            t = time.perf_counter()
            while alive(pid_file):
                if time.perf_counter() - t > AUTOSTOP * 10 + 60:
                    sys.exit("the cluster did not stop itself")
                time.sleep(0.1)
            s = time.perf_counter() - t
            if s < AUTOSTOP:
                sys.exit(f"stopped {s:.1f}s after the job, before autostop = {AUTOSTOP}s")
            took.append(s)
    finally:
        run([str(DAFT), "down", "-c", str(cfg), "--yes"], env)
    res = {
        "autostop_seconds": AUTOSTOP,
        "runs": RUNS,
        "binary": str(DAFT),
        "idle_to_stopped_seconds": took,
        "ratio_to_autostop": [t / AUTOSTOP for t in took],
    }
    (ROOT / "bench" / "autostop.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"autostop {AUTOSTOP}s: stopped {', '.join(f'{t:.1f}s' for t in took)} after the job "
          f"(ratio to the setting {', '.join(f'{t / AUTOSTOP:.2f}' for t in took)})")


if __name__ == "__main__":
    main()
