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
#   jobs.py autostop CLUSTER_DIR SECONDS DASHBOARD HALT
#       arm autostop (SECONDS=cancel: disarm it): written to CLUSTER_DIR/autostop.json, read
#       again by the cluster's one watcher at every check, started here when none runs. Idle
#       means no daft job queued or running, no Ray job running and no actor of a user alive
#       (asked of Ray's own state API at DASHBOARD); a question Ray does not answer counts as
#       busy. Idle for SECONDS, the watcher records autostop.state (stopped) and runs HALT.
#   jobs.py halt-aws REGION CLUSTER
#       an AWS head's HALT: terminate every instance tagged daft:cluster=CLUSTER (this one too),
#       with the instance profile's credentials (boto3, installed for such a head)
#
# A job directory: job.json (the record daft wrote), pid (the job's process group), started,
# finished (UTC, RFC 3339), exit-status, cancelled, stdout.log, stderr.log.
import json
import os
import signal
import socket
import subprocess
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


def write_json(path, value):
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cluster_busy(cluster_dir, dashboard):
    """Why the cluster is busy, or None when it is idle."""
    jobs_dir = os.path.join(cluster_dir, "jobs")
    try:
        names = sorted(os.listdir(jobs_dir))
    except OSError:
        names = []
    for name in names:
        st, _ = state(os.path.join(jobs_dir, name))
        if st in ("queued", "running"):
            return f"daft job {name} is {st}"
    try:
        from ray.util.state import list_actors, list_jobs

        for job in list_jobs(address=dashboard, timeout=10, raise_on_missing_output=False):
            status = str(getattr(job, "status", "")).rsplit(".", 1)[-1]
            if status in ("PENDING", "RUNNING"):
                return f"Ray job {getattr(job, 'job_id', None) or getattr(job, 'submission_id', '')} is {status.lower()}"
        alive = list_actors(
            address=dashboard,
            filters=[("state", "=", "ALIVE")],
            timeout=10,
            raise_on_missing_output=False,
        )
        for actor in alive:
            if not str(getattr(actor, "ray_namespace", "") or "").startswith("_ray_internal"):
                return f"Ray actor {getattr(actor, 'class_name', '')} {getattr(actor, 'actor_id', '')} is alive"
    except Exception as e:  # noqa: BLE001 - Ray's answer unknown: never stop on a guess
        return f"Ray's state API did not answer ({type(e).__name__}: {e})"
    return None


def watch(cluster_dir):
    import fcntl

    lock = open(os.path.join(cluster_dir, "autostop.lock"), "w")
    for _ in range(30):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            # The cluster's watcher runs already and reads the new setting; unless it is just
            # ending (a cancel before this arm): then this one takes over.
            time.sleep(0.5)
    else:
        return 0
    conf_path = os.path.join(cluster_dir, "autostop.json")
    state_path = os.path.join(cluster_dir, "autostop.state")
    idle_since = None
    while True:
        conf = read_json(conf_path) or {}
        after = conf.get("after")
        if not after:
            try:
                os.unlink(state_path)
            except OSError:
                pass
            return 0
        token = os.path.join(cluster_dir, "ray-token")
        if os.path.exists(token):
            os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=token)
        busy = cluster_busy(cluster_dir, conf["dashboard"])
        if not (read_json(conf_path) or {}).get("after"):
            continue  # cancelled (or the cluster went down) while Ray was asked
        now = time.time()
        if busy:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        rec = {"after": after, "idle_since": idle_since, "checked": now, "busy": busy}
        if idle_since is not None and now - idle_since >= after:
            rec["stopped"] = now
            write_json(state_path, rec)
            print(f"daft autostop: idle for {int(now - idle_since)}s (autostop {after}s): stopping", flush=True)
            os.unlink(conf_path)
            subprocess.run(conf["halt"], shell=True, stdin=subprocess.DEVNULL)
            return 0
        write_json(state_path, rec)
        time.sleep(max(1.0, min(10.0, after / 10)))


def cmd_autostop(cluster_dir, seconds, dashboard, halt):
    conf_path = os.path.join(cluster_dir, "autostop.json")
    if seconds == "cancel":
        # The watcher sees no setting at its next check and ends.
        if os.path.exists(conf_path):
            write_json(conf_path, {"after": None})
        print("daft-autostop cancelled")
        return 0
    write_json(conf_path, {"after": int(seconds), "dashboard": dashboard, "halt": halt})
    # A watcher stopped before (cancel, a stop) left its record: the new one starts afresh.
    state_path = os.path.join(cluster_dir, "autostop.state")
    if (read_json(state_path) or {}).get("stopped"):
        os.unlink(state_path)
    if os.fork() == 0:
        # The watcher: its own session, no terminal, its output in autostop.log; this command's
        # connection does not wait for it.
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        log = os.open(os.path.join(cluster_dir, "autostop.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = os.fdopen(1, "w")
        sys.stderr = os.fdopen(2, "w")
        try:
            code = watch(cluster_dir)
        except Exception as e:  # noqa: BLE001
            print(f"daft autostop: the watcher failed: {e}", flush=True)
            code = 1
        os._exit(code)
    print(f"daft-autostop armed {seconds}")
    return 0


def cmd_halt_aws(region, cluster):
    import boto3

    ec2 = boto3.client("ec2", region_name=region)
    ids = []
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag:daft:cluster", "Values": [cluster]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    ):
        for r in page["Reservations"]:
            ids.extend(i["InstanceId"] for i in r["Instances"])
    print(f"daft autostop: terminating {len(ids)} instance(s) of {cluster}: {' '.join(ids)}", flush=True)
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
    return 0


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
    if verb == "autostop":
        sys.exit(cmd_autostop(*args))
    if verb == "halt-aws":
        sys.exit(cmd_halt_aws(*args))
    sys.stderr.write(f"daft jobs.py: unknown verb {verb}\n")
    sys.exit(2)
