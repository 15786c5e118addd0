#!/usr/bin/env python3
"""200 trivial jobs on one local Ray cluster, 8 at a time: `daft submit --sweep` against the same
200 jobs sent through Ray's own JobSubmissionClient (the peer), in one run, alternating.

    DAFT_BIN=target/release/daft python3 bench/sweep.py     # BENCH_RUNS (default 3), JOBS (200)

The cluster is daft's local provider (head only, loopback); the peer talks to the same cluster's
job API on its dashboard port with the cluster's token, polling each running job's status every
0.1 s and keeping 8 in flight. Both run `true`. Prints jobs finished per second and their ratio,
and writes bench/sweep.json. Needs what `bash .ci/setup` installs (uv).
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAFT = Path(os.environ.get("DAFT_BIN", ROOT / "target" / "release" / "daft"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
JOBS = int(os.environ.get("JOBS", "200"))
PARALLEL = 8

PEER = r"""
import sys, time
from ray.job_submission import JobSubmissionClient, JobStatus
url, jobs, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = JobSubmissionClient(url)
done = set((JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED))
t = time.perf_counter()
running, started, failed = [], 0, 0
while started < jobs or running:
    while started < jobs and len(running) < parallel:
        running.append(c.submit_job(entrypoint="true"))
        started += 1
    time.sleep(0.1)
    still = []
    for j in running:
        s = c.get_job_status(j)
        if s in done:
            failed += s != JobStatus.SUCCEEDED
        else:
            still.append(j)
    running = still
print(time.perf_counter() - t, failed)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env, **kw):
    return subprocess.run(cmd, env={**os.environ, **env}, check=True, text=True,
                          capture_output=True, timeout=3600, **kw)


def main():
    if not DAFT.exists():
        sys.exit(f"no daft binary at {DAFT}: build it (cargo build --release) or set DAFT_BIN")
    tmp = Path(tempfile.mkdtemp(prefix="daft-sweep-bench-"))
    home = tmp / "daft-home"
    env = {"DAFT_HOME": str(home)}
    dash = free_port()
    cfg = tmp / "local.toml"
    cfg.write_text(
        '[setup]\nname = "bench-sweep"\nprovider = "local"\nnumber_of_workers = 0\n'
        f"[setup.local]\nray_port = {free_port()}\ndashboard_port = {dash}\n"
    )
    sweep = tmp / "sweep.toml"
    sweep.write_text(
        f'[sweep]\nname = "t"\nmethod = "grid"\nmax_parallel = {PARALLEL}\n'
        f"[sweep.parameters]\ni = [{', '.join(str(i) for i in range(JOBS))}]\n"
    )
    work = tmp / "work"
    work.mkdir()
    (work / "job.py").write_text("print('hi')\n")
    run([str(DAFT), "up", "-c", str(cfg), "--yes"], env)
    cl = home / "clusters" / "bench-sweep"
    py = cl / "venv" / "bin" / "python"
    peer_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(cl / "ray-token")}
    daft_s, peer_s = [], []
    try:
        for _ in range(RUNS):
            t = time.perf_counter()
            run([str(DAFT), "submit", "-c", str(cfg), "-w", str(work), "--allow-dirty",
                 "--sweep", str(sweep), "--", "true"], env)
            daft_s.append(time.perf_counter() - t)
            out = run([str(py), "-c", PEER, f"http://127.0.0.1:{dash}", str(JOBS), str(PARALLEL)],
                      peer_env).stdout.split()
            if out[1] != "0":
                sys.exit(f"the peer's jobs failed: {out}")
            peer_s.append(float(out[0]))
    finally:
        run([str(DAFT), "down", "-c", str(cfg), "--yes"], env)
    d, p = statistics.median(daft_s), statistics.median(peer_s)
    res = {
        "jobs": JOBS,
        "max_parallel": PARALLEL,
        "runs": RUNS,
        "binary": str(DAFT),
        "daft_seconds": daft_s,
        "peer_seconds": peer_s,
        "daft_jobs_per_second": JOBS / d,
        "peer_jobs_per_second": JOBS / p,
        "ratio_daft_to_peer": (JOBS / d) / (JOBS / p),
    }
    (ROOT / "bench" / "sweep.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"{JOBS} jobs, {PARALLEL} at a time: daft submit --sweep {JOBS / d:.1f} jobs/s, "
          f"JobSubmissionClient {JOBS / p:.1f} jobs/s (ratio {res['ratio_daft_to_peer']:.2f})")


if __name__ == "__main__":
    main()
