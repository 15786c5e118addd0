# daft's job helper, run on the head in the cluster's environment:
#
#   jobs.py list   JOBS_DIR                    one JSON array: every job's record and state
#   jobs.py follow JOB_DIR OUT_OFFSET ERR_OFFSET FOLLOW
#       the job's stdout and stderr from those byte offsets, to this stdout and stderr; with
#       FOLLOW=1 until the job has ended and both are read to the end. Exits with the job's
#       exit status once it has one (FOLLOW=1), else 0.
#   jobs.py cancel JOB_DIR                     stop the job's process group (TERM, then KILL)
#   jobs.py manifest JOB_DIR                   JSON: the job's files (not its unpacked code in
#                                              work/), each with its size and SHA-256
#
# A job directory: job.json (the record daft wrote), pid (the job's process group), started,
# finished (UTC, RFC 3339), exit-status, cancelled, stdout.log, stderr.log.
import json
import os
import signal
import socket
import sys
import time


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(l.startswith("State:") and "Z" in l.split()[1] for l in f)
    except OSError:
        return True


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def state(job_dir):
    status = read(os.path.join(job_dir, "exit-status"))
    if status is not None:
        if os.path.exists(os.path.join(job_dir, "cancelled")):
            return "cancelled", int(status)
        return ("succeeded" if status == "0" else "failed"), int(status)
    supervisor = read(os.path.join(job_dir, "supervisor"))
    if supervisor is None:
        return "queued", None
    host = read(os.path.join(job_dir, "host"))
    if host and host != socket.gethostname():
        # A task of a job array on another node: its own records say how it goes.
        return "running", None
    if supervisor.isdigit() and alive(int(supervisor)):
        return ("running" if os.path.exists(os.path.join(job_dir, "started")) else "queued"), None
    # The supervisor is gone without recording an exit status (the machine restarted).
    return "lost", None


def record(job_dir):
    try:
        with open(os.path.join(job_dir, "job.json")) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    st, code = state(job_dir)
    git = rec.get("git")
    if isinstance(git, dict):
        # The list says where the code came from; the diffs stay in the job's job.json.
        git.pop("diff", None)
        git.pop("staged_diff", None)
        git["changes"] = len(git.get("changes") or [])
    rec["state"] = st
    rec["exit_status"] = code
    rec["started"] = read(os.path.join(job_dir, "started"))
    rec["finished"] = read(os.path.join(job_dir, "finished"))
    rec["dir"] = job_dir
    rec["slurm_task"] = read(os.path.join(job_dir, "slurm-task"))
    return rec


def cmd_list(jobs_dir):
    out = []
    try:
        names = sorted(os.listdir(jobs_dir))
    except OSError:
        names = []
    for name in names:
        rec = record(os.path.join(jobs_dir, name))
        if rec is not None:
            out.append(rec)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


def cmd_follow(job_dir, out_off, err_off, follow):
    if not os.path.isfile(os.path.join(job_dir, "job.json")):
        sys.stderr.write(f"daft: there is no job at {job_dir}\n")
        return 1
    streams = [
        [os.path.join(job_dir, "stdout.log"), int(out_off), sys.stdout.buffer],
        [os.path.join(job_dir, "stderr.log"), int(err_off), sys.stderr.buffer],
    ]

    def drain():
        moved = False
        for s in streams:
            try:
                with open(s[0], "rb") as f:
                    f.seek(s[1])
                    while True:
                        chunk = f.read(65536)
                        if not chunk:
                            break
                        s[2].write(chunk)
                        s[2].flush()
                        s[1] += len(chunk)
                        moved = True
            except FileNotFoundError:
                pass
        return moved

    while True:
        ended = os.path.exists(os.path.join(job_dir, "exit-status"))
        moved = drain()
        if not follow:
            return 0
        if ended and not moved:
            drain()
            st, code = state(job_dir)
            if st == "cancelled":
                return 130
            return code if code is not None else 1
        if not ended and not moved:
            if state(job_dir)[0] == "lost":
                sys.stderr.write("daft: the job's supervisor is gone without an exit status\n")
                return 1
            time.sleep(0.2)


def cmd_cancel(job_dir):
    if not os.path.isfile(os.path.join(job_dir, "job.json")):
        sys.stderr.write(f"daft: there is no job at {job_dir}\n")
        return 1
    if os.path.exists(os.path.join(job_dir, "exit-status")):
        print("ended")
        return 0
    open(os.path.join(job_dir, "cancelled"), "w").close()
    task = read(os.path.join(job_dir, "slurm-task"))
    if task:
        # A task of a Slurm job array, which daft has just cancelled through Slurm (queued or
        # running): the task records its status when it ran, else it is recorded here.
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(job_dir, "exit-status")) and time.time() < deadline:
            if not os.path.exists(os.path.join(job_dir, "supervisor")) and time.time() > deadline - 55:
                break
            time.sleep(0.2)
        if not os.path.exists(os.path.join(job_dir, "exit-status")):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with open(os.path.join(job_dir, "finished"), "w") as f:
                f.write(stamp + "\n")
            with open(os.path.join(job_dir, "exit-status"), "w") as f:
                f.write("130\n")
        print("cancelled")
        return 0
    pgid = read(os.path.join(job_dir, "pid"))
    if pgid and pgid.isdigit():
        pgid = int(pgid)
        for sig, wait in ((signal.SIGINT, 3.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + wait
            while group_alive(pgid) and time.time() < deadline:
                time.sleep(0.1)
            if not group_alive(pgid):
                break
        if group_alive(pgid):
            sys.stderr.write(f"daft: the job's processes (group {pgid}) did not end\n")
            return 1
    # The supervisor records the exit status once the job's group has ended.
    deadline = time.time() + 10
    while not os.path.exists(os.path.join(job_dir, "exit-status")) and time.time() < deadline:
        if state(job_dir)[0] == "lost":
            break
        time.sleep(0.1)
    print("cancelled")
    return 0


def cmd_manifest(job_dir):
    import hashlib

    out = []
    for root, dirs, files in os.walk(job_dir):
        rel_root = os.path.relpath(root, job_dir)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if d != "work"]
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel in ("supervisor", "pid") or not os.path.isfile(path):
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out.append({"path": rel, "size": os.path.getsize(path), "sha256": h.hexdigest()})
    json.dump(sorted(out, key=lambda e: e["path"]), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    verb, args = sys.argv[1], sys.argv[2:]
    if verb == "list":
        sys.exit(cmd_list(*args))
    if verb == "follow":
        sys.exit(cmd_follow(args[0], args[1], args[2], args[3] == "1"))
    if verb == "cancel":
        sys.exit(cmd_cancel(*args))
    if verb == "manifest":
        sys.exit(cmd_manifest(*args))
    sys.stderr.write(f"daft jobs.py: unknown verb {verb}\n")
    sys.exit(2)
