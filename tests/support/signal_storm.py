#!/usr/bin/env python3
"""A stand-in for how Slurm (proctrack/linuxproc) signals a cancelled job's processes, for
tests/bootstrap_signals.rs. Run as PID 1 of a PID namespace the test makes (`unshare -p -f
--mount-proc`), so nothing it signals is outside it, and it reaps orphans as init does.

Usage: signal_storm.py READY PIDFILE MODE ROUNDS INTERVAL -- COMMAND...

Starts COMMAND; once the file READY exists:
- MODE term-tree: sends TERM to COMMAND and every process below it (found by parent, as
  linuxproc finds a step's processes), ROUNDS times, INTERVAL seconds apart (Slurm signals a
  job's processes again as the job ends);
- MODE kill-command: sends SIGKILL to COMMAND alone (KillWait's end, a lost node);
then waits up to 15 s for COMMAND to end.
Prints a JSON report: COMMAND's exit status (null: still running) and the processes still in
the process group whose leader's pid is in PIDFILE (the stand-in Ray's).
"""

import json
import os
import signal
import subprocess
import sys
import time


def processes():
    """{pid: (ppid, pgrp, cmdline)} of every live (not zombie) process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue
        if rest[0] != "Z":
            out[int(d)] = (int(rest[1]), int(rest[2]), cmd)
    return out


def tree(root):
    procs = processes()
    found = [root]
    for parent in found:
        found.extend(p for p, (pp, _, _) in procs.items() if pp == parent and p not in found)
    return found


def main():
    sep = sys.argv.index("--")
    ready, pidfile, mode, rounds, interval = sys.argv[1:6]
    cmd = sys.argv[sep + 1:]
    child = subprocess.Popen(cmd)
    status = None

    def reap():
        nonlocal status
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == child.pid:
                status = os.waitstatus_to_exitcode(st)

    deadline = time.time() + 30
    while not os.path.exists(ready):
        reap()
        if status is not None or time.time() > deadline:
            print(json.dumps({"error": "never ready", "status": status}))
            return 1
        time.sleep(0.05)
    with open(pidfile) as f:
        group = int(f.read().strip())
    if mode == "kill-command":
        os.kill(child.pid, signal.SIGKILL)
        rounds = 0
    for _ in range(int(rounds)):
        for pid in tree(child.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        reap()
        time.sleep(float(interval))
    deadline = time.time() + 15
    while status is None and time.time() < deadline:
        reap()
        time.sleep(0.05)
    time.sleep(0.2)
    reap()
    left = [cmd for pid, (_, pgrp, cmd) in processes().items() if pgrp == group]
    print(json.dumps({"status": status, "left": left}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
