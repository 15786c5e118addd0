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
#   jobs.py start CLUSTER_DIR JOB_DIR               (the job's spec as JSON on stdin)
#       the job's supervisor: unpack the spec's archive into JOB_DIR/work (nothing may land
#       outside it), then run the spec's command there in the cluster's environment, apart from
#       this call (its own session; its output in stdout.log and stderr.log; its exit status
#       recorded). Returns once the job runs, saying {"daft": "started", "pid": N}.
#   jobs.py unpack ARCHIVE DEST                     daft's safe unzip alone (exit 3 when an entry
#                                                   would land outside DEST; nothing written)
#   jobs.py task CLUSTER_DIR LIST_FILE SPEC_JSON
#       a Slurm job array's task: line SLURM_ARRAY_TASK_ID+1 of LIST_FILE names its job
#       directory, which holds its command; this process is the job's supervisor (TERM and INT
#       go to the job's process group).
#
# A spec: {"archive": PATH, "command": TEXT, "name": TEXT, "sync": [NAME...], "vars": {...},
# "env": {...}}: `vars` are daft's own settings for every job of the cluster, `env` the job's
# variables (set last: they win). The environment is the cluster's: PROLOGUE's, as a shell sees
# it after sourcing it (the same lines daft's setup commands run after).
#
# A job directory: job.json (the record daft wrote), pid (the job's process group), started,
# finished (UTC, RFC 3339), exit-status, cancelled, stdout.log, stderr.log.
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile

# The cluster's environment for setup commands and jobs (`$CL` is the cluster's directory):
# Slurm's pre-commands first, then the cluster's Python environment, then where its Ray is.
# (Rust's `bootstrap::PRE_ENV` and `bootstrap::CLUSTER_ENV`: a test keeps them the same.)
PROLOGUE = r'''if [ -s "$CL/pre.sh" ]; then . "$CL/pre.sh"; fi
. "$CL/venv/bin/activate"
export RAY_ADDRESS="$(cat "$CL/ray-address")"
if [ -s "$CL/ray-token" ]; then export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$CL/ray-token"; fi
case "$RAY_ADDRESS" in 127.0.0.1:*) export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ;; esac'''

# Where `[run] sync` directories land in a job's working directory.
SYNC_DIR = ".daft-sync"


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
        print(json.dumps({"daft": "cancel", "outcome": "ended"}))
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
        print(json.dumps({"daft": "cancel", "outcome": "cancelled"}))
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
    print(json.dumps({"daft": "cancel", "outcome": "cancelled"}))
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
        print(json.dumps({"daft": "autostop-armed", "seconds": None}))
        return 0
    write_json(conf_path, {"after": int(seconds), "dashboard": dashboard, "halt": halt})
    # A watcher stopped before (cancel, a stop) left its record: the new one starts afresh.
    state_path = os.path.join(cluster_dir, "autostop.state")
    if (read_json(state_path) or {}).get("stopped"):
        os.unlink(state_path)
    if os.path.exists(os.path.join(cluster_dir, "autostop.held")):
        # A Slurm allocation holds the watcher (templates/slurm.sbatch): it starts it within
        # seconds of this setting; one forked here would end with this job step.
        print(json.dumps({"daft": "autostop-armed", "seconds": int(seconds)}))
        return 0
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
    print(json.dumps({"daft": "autostop-armed", "seconds": int(seconds)}))
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


def stamp():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")


def unpack(archive, dest):
    """daft's safe unzip: every entry is checked before anything is written (absolute paths,
    `..`, drive letters and symlinks are refused), so nothing can land outside dest."""
    dest = os.path.realpath(dest)
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        for info in infos:
            name = info.filename
            parts = name.replace("\\", "/").split("/")
            mode = info.external_attr >> 16
            unsafe = (
                name.startswith("/")
                or "\\" in name
                or ".." in parts
                or (len(name) > 1 and name[1] == ":")
                or stat.S_ISLNK(mode)
            )
            target = os.path.realpath(os.path.join(dest, name))
            if unsafe or not (target == dest or target.startswith(dest + os.sep)):
                raise ValueError(f"refusing to unpack {name!r}: it would land outside the job directory")
        for info in infos:
            path = z.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)
    return len(infos)


def cluster_env(cluster_dir):
    """This process's environment as a shell has it after PROLOGUE (pre-commands, the cluster's
    Python environment, its Ray address and token)."""
    env = dict(os.environ, CL=cluster_dir)
    dump = "import json, os, sys; json.dump(dict(os.environ), sys.stdout)"
    out = subprocess.run(
        ["bash", "-c", PROLOGUE + '\nexec "$CL/venv/bin/python" -c "$0"', dump],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        check=True,
    )
    got = json.loads(out.stdout)
    # What only the shell had (its own variables, `$CL`) is not the job's.
    for k in ("CL", "PWD", "OLDPWD", "_", "SHLVL"):
        got.pop(k, None)
        if k in os.environ:
            got[k] = os.environ[k]
    return got


def job_env(cluster_dir, job_dir, spec, name):
    env = cluster_env(cluster_dir)
    env.update(spec.get("vars") or {})
    env.update(
        PYTHONUNBUFFERED="1",
        DAFT_JOB_DIR=job_dir,
        DAFT_JOB_ID=os.path.basename(job_dir),
        DAFT_LOG_DIR=os.path.join(job_dir, "logs"),
        DAFT_JOB_NAME=name,
    )
    sync = spec.get("sync") or []
    if sync:
        root = os.path.join(job_dir, "work", SYNC_DIR)
        paths = [os.path.join(root, n) for n in sync] + [root]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env.update(DAFT_SYNC_DIR=root, PYTHONPATH=":".join(paths))
    env.update(spec.get("env") or {})
    return env


def expand_home(path):
    """A path of the head's view (`$HOME/...`, as daft names remote paths) as this node has it."""
    if path.startswith("$HOME/"):
        return os.path.join(os.environ["HOME"], path[len("$HOME/"):])
    return path


def prepare(cluster_dir, job_dir, spec):
    os.makedirs(os.path.join(job_dir, "work"), exist_ok=True)
    os.makedirs(os.path.join(job_dir, "logs"), exist_ok=True)
    unpack(expand_home(spec["archive"]), os.path.join(job_dir, "work"))


def supervise(job_dir, command, env, forward_signals):
    """Run the job, record its start, its end and its exit status (a shell's: 128+N for
    signal N); the job's process group is its own."""
    write(os.path.join(job_dir, "supervisor"), str(os.getpid()))
    job = {}

    def stop(signum, frame):
        # scancel (daft cancel, Ctrl-C of the sweep): the job's group goes, its status is kept.
        job["stop"] = True
        if "pid" in job:
            try:
                os.killpg(job["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass

    if forward_signals:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    write(os.path.join(job_dir, "started"), stamp())
    with open(os.path.join(job_dir, "stdout.log"), "wb") as out, open(
        os.path.join(job_dir, "stderr.log"), "wb"
    ) as err:
        child = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=os.path.join(job_dir, "work"),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    job["pid"] = child.pid
    write(os.path.join(job_dir, "pid"), str(child.pid))
    if job.get("stop"):
        stop(signal.SIGTERM, None)
    rc = child.wait()
    if rc < 0:
        rc = 128 - rc
    write(os.path.join(job_dir, "finished"), stamp())
    write(os.path.join(job_dir, "exit-status.tmp"), str(rc))
    os.replace(os.path.join(job_dir, "exit-status.tmp"), os.path.join(job_dir, "exit-status"))
    return rc


def cmd_start(cluster_dir, job_dir):
    os.umask(0o077)
    spec = json.load(sys.stdin)
    try:
        prepare(cluster_dir, job_dir, spec)
        env = job_env(cluster_dir, job_dir, spec, spec.get("name") or "")
    except (OSError, ValueError, zipfile.BadZipFile, subprocess.CalledProcessError) as e:
        sys.stderr.write(f"daft: the job cannot start: {e}\n")
        return 3
    pid = os.fork()
    if pid == 0:
        # The supervisor: its own session, no terminal, nothing of this call's connection.
        code = 1
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            code = supervise(job_dir, spec["command"], env, False)
        finally:
            os._exit(code & 0xFF)
    os.waitpid(pid, 0)
    deadline = time.time() + 5
    while not read(os.path.join(job_dir, "pid")) and time.time() < deadline:
        time.sleep(0.02)
    job = read(os.path.join(job_dir, "pid"))
    if not job:
        sys.stderr.write("daft: the job's supervisor did not start\n")
        return 1
    print(json.dumps({"daft": "started", "pid": int(job)}))
    return 0


def cmd_unpack(archive, dest):
    try:
        n = unpack(archive, dest)
    except ValueError as e:
        sys.stderr.write(f"daft: {e}\n")
        return 3
    print(json.dumps({"daft": "unpacked", "files": n}))
    return 0


def cmd_task(cluster_dir, list_file, spec_json):
    os.umask(0o077)
    spec = json.loads(spec_json)
    task = int(os.environ["SLURM_ARRAY_TASK_ID"])
    try:
        with open(list_file) as f:
            job_dir = f.read().splitlines()[task].strip()
    except (OSError, IndexError):
        job_dir = ""
    # (The list holds the head's view of the directories: `$HOME/...` expands here.)
    job_dir = expand_home(job_dir)
    if not job_dir or not os.path.isfile(os.path.join(job_dir, "job.json")):
        sys.stderr.write(f"daft: no job for task {task}\n")
        return 1
    write(os.path.join(job_dir, "host"), socket.gethostname())
    write(os.path.join(job_dir, "slurm-task"), f"{os.environ['SLURM_ARRAY_JOB_ID']}_{task}")
    write(os.path.join(job_dir, "supervisor"), str(os.getpid()))
    rec = read_json(os.path.join(job_dir, "job.json")) or {}
    spec = dict(spec, env=dict(spec.get("env") or {}))
    variant = read(os.path.join(job_dir, "variant.json"))
    if variant is not None:
        spec["env"]["DAFT_VARIANT"] = variant
    command = read(os.path.join(job_dir, "command")) or ""
    try:
        prepare(cluster_dir, job_dir, spec)
        env = job_env(cluster_dir, job_dir, spec, rec.get("name") or "")
    except (OSError, ValueError, zipfile.BadZipFile, subprocess.CalledProcessError) as e:
        sys.stderr.write(f"daft: the job cannot start: {e}\n")
        write(os.path.join(job_dir, "finished"), stamp())
        write(os.path.join(job_dir, "exit-status"), "3")
        return 3
    return supervise(job_dir, command, env, True)


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
    if verb == "autostop-watch":
        # The watcher in the foreground, for a holder that keeps it (a Slurm allocation).
        sys.exit(watch(args[0]))
    if verb == "halt-aws":
        sys.exit(cmd_halt_aws(*args))
    if verb == "start":
        sys.exit(cmd_start(*args))
    if verb == "task":
        sys.exit(cmd_task(*args))
    if verb == "unpack":
        sys.exit(cmd_unpack(*args))
    sys.stderr.write(f"daft jobs.py: unknown verb {verb}\n")
    sys.exit(2)
