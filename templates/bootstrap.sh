# daft node bootstrap (POSIX sh). The same script is EC2 user data, runs over SSH on SSH hosts,
# and runs on this machine for the local provider. daft prepends the DAFT_* settings.
#
#   install       uv (from PyPI when missing) and the cluster's virtual environment
#                 (ray[default], daft, dependencies), shared by clusters with the same pins
#   start         start this node's Ray (head or worker), unless it already runs as asked
#   stop          stop this node's Ray: its own process group, by PID (never `ray stop`)
#   stop-cluster  stop every node of this cluster on this host
#   halt          stop the Ray of every node of this cluster on this host, keeping their records
#                 (autostop: the nodes show as stopped; `up` starts them again, `down` removes them)
#   hold          stay while this node's Ray runs; TERM stops it (a Slurm job's main process)
#   record        write this node's record (node.json) again, e.g. once setup_commands succeeded
#   status        one line per node of this cluster on this host, {"daft":"node","alive":BOOL,
#                 "record":NODE_JSON}; {"daft":"member","host":HOST} per host in the cluster's
#                 member list (kept on the head); {"daft":"autostop","state":JSON}, the autostop
#                 watcher's last record (on the head)
#   add-member    add DAFT_MEMBER to this cluster's member list (SSH hosts, run on the head)
#   remove-member remove DAFT_MEMBER from it
set -eu
# Everything daft writes on a node is its user's alone.
umask 077

: "${DAFT_HOME:=$HOME/.daft}"
: "${DAFT_CLUSTER:?DAFT_CLUSTER is not set}"
: "${DAFT_NODE:=}"
: "${DAFT_ROLE:=head}"
: "${DAFT_ENV_HASH:=default}"
: "${DAFT_REQUIREMENTS:=ray[default]
daft}"
: "${DAFT_PYTHON_VERSION:=}"
: "${DAFT_NODE_IP:=}"
: "${DAFT_HEAD_ADDRESS:=}"
: "${DAFT_HEAD_ID:=}"
: "${DAFT_RAY_PORT:=6379}"
: "${DAFT_DASHBOARD_HOST:=127.0.0.1}"
: "${DAFT_DASHBOARD_PORT:=8265}"
: "${DAFT_RAY_ARGS:=}"
: "${DAFT_RAY_ENV:=}"
: "${DAFT_RAY_AUTH:=}"
: "${DAFT_RAY_TMP:=$DAFT_NODE}"
: "${DAFT_NODE_JSON:={\}}"
: "${DAFT_NODE_JSON_PENDING:=}"
: "${DAFT_START_TIMEOUT:=180}"
: "${DAFT_HEAD_WAIT:=900}"

export RAY_USAGE_STATS_ENABLED=0 DO_NOT_TRACK=1 SCARF_NO_ANALYTICS=true DAFT_ANALYTICS_ENABLED=0
export UV_NO_PROGRESS=1
CLUSTER_DIR="$DAFT_HOME/clusters/$DAFT_CLUSTER"
NODE_DIR="$CLUSTER_DIR/nodes/$DAFT_NODE"
TOKEN="$CLUSTER_DIR/ray-token"

# daft may go away mid-step (Ctrl-C, kill -9, a dropped connection): finish the step anyway
# rather than die half-way on a closed pipe; the next command finds a consistent node.
trap '' PIPE HUP
# The node protocol (src/agent/protocol.rs): one JSON object a line, {"daft": KIND, ...}.
# json_str TEXT: TEXT as a JSON string (backslashes and quotes escaped, control characters
# dropped).
json_str() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\000-\037')"
}
step() { printf '{"daft":"step","text":%s}\n' "$(json_str "$*")" 2>/dev/null || true; }
fail() { echo "daft: $*" >&2 2>/dev/null || true; exit 1; }

# One changer of a node at a time: a `stop` waits for a `start` that is still running (one a
# killed daft left behind), then stops what it started.
node_lock() {
    mkdir -p "$CLUSTER_DIR/nodes"
    if command -v flock >/dev/null 2>&1; then
        exec 7>"$CLUSTER_DIR/nodes/$1.lock"
        flock 7
    fi
}

# This user's directory for Ray's temp dirs: /tmp/daft-UID, mode 0700, refused when someone
# else made it (a shared host's /tmp is everyone's). Short, because Ray's socket paths are.
user_tmp() {
    base="/tmp/daft-$(id -u)"
    mkdir -m 700 "$base" 2>/dev/null || true
    if [ -L "$base" ] || [ ! -d "$base" ] || [ ! -O "$base" ]; then
        fail "$base is not a directory owned by $(id -un); another user made it: remove it and run daft again"
    fi
    chmod 700 "$base"
    printf '%s\n' "$base"
}

# The address Ray binds to and announces: the configured one, else the address this node
# reaches the head from (workers), else the node's first global address (head).
node_ip() {
    if [ -n "$DAFT_NODE_IP" ]; then printf '%s\n' "$DAFT_NODE_IP"; return 0; fi
    if [ -n "$DAFT_HEAD_ADDRESS" ] && [ "$DAFT_ROLE" != head ]; then
        "$CLUSTER_DIR/venv/bin/python" -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1].rsplit(":", 1)[0], 9))  # UDP: picks a route, sends nothing
print(s.getsockname()[0])' "$DAFT_HEAD_ADDRESS" && return 0
    fi
    ip=$(hostname -I 2>/dev/null | awk '{print $1}')
    if [ -z "$ip" ] && command -v ip >/dev/null 2>&1; then
        ip=$(ip -4 -o addr show scope global 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
    fi
    [ -n "$ip" ] || fail "cannot find this node's address to bind Ray to"
    printf '%s\n' "$ip"
}

find_uv() {
    for c in "$(command -v uv 2>/dev/null || true)" "$HOME/.local/bin/uv" "$DAFT_HOME/tools/bin/uv"; do
        if [ -n "$c" ] && [ -x "$c" ]; then UV="$c"; return 0; fi
    done
    command -v python3 >/dev/null 2>&1 ||
        fail "python3 is not installed on this host; install it (apt-get install python3 python3-venv, or dnf install python3) and run daft up again"
    step "installing uv from PyPI"
    python3 -m venv "$DAFT_HOME/tools" >/dev/null 2>&1 ||
        fail "python3 cannot create a virtual environment here; install python3-venv"
    "$DAFT_HOME/tools/bin/pip" install -q uv || fail "pip could not install uv from PyPI"
    UV="$DAFT_HOME/tools/bin/uv"
}

install_env() {
    ENV="$DAFT_HOME/envs/$DAFT_ENV_HASH"
    mkdir -p "$DAFT_HOME/envs"
    # Nodes sharing a machine share environments: one installs, the others wait.
    if command -v flock >/dev/null 2>&1; then exec 9>"$DAFT_HOME/envs/.lock"; flock 9; fi
    if [ ! -f "$ENV/.daft-complete" ]; then
        find_uv
        step "creating the Python environment $ENV"
        rm -rf "$ENV"
        if [ -n "$DAFT_PYTHON_VERSION" ]; then
            "$UV" venv -q --python "$DAFT_PYTHON_VERSION" "$ENV" || fail "uv could not create a Python $DAFT_PYTHON_VERSION environment"
        else
            "$UV" venv -q "$ENV" || fail "uv could not create a Python environment (is python3 installed?)"
        fi
        printf '%s\n' "$DAFT_REQUIREMENTS" > "$ENV/requirements.txt"
        step "installing $(tr '\n' ' ' < "$ENV/requirements.txt")"
        VIRTUAL_ENV="$ENV" "$UV" pip install -q --compile-bytecode -r "$ENV/requirements.txt" || fail "installing the requirements failed"
        touch "$ENV/.daft-bytecode" "$ENV/.daft-complete"
    fi
    if [ ! -f "$ENV/.daft-bytecode" ]; then
        # An environment made before daft compiled bytecode at install. Without .pyc files every
        # Ray start compiles its imports again in each of its dozen Python processes (and never
        # saves them where PYTHONDONTWRITEBYTECODE is set): 22 s instead of 9 s for a head here.
        step "compiling the environment's Python bytecode"
        "$ENV/bin/python" -m compileall -q -j 0 "$ENV/lib" >/dev/null 2>&1 || true
        touch "$ENV/.daft-bytecode"
    fi
    if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
    mkdir -p "$CLUSTER_DIR"
    ln -sfn "$ENV" "$CLUSTER_DIR/venv"
    if [ "$DAFT_ROLE" = head ]; then
        echo "$DAFT_HEAD_ADDRESS" > "$CLUSTER_DIR/ray-address"
    fi
}

# A live process (an unreaped zombie counts as gone).
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

stop_node() {
    dir="$1"
    pid=$(cat "$dir/ray.pid" 2>/dev/null || true)
    tmp=$(cat "$dir/ray.tmp" 2>/dev/null || true)
    if alive "$pid"; then
        kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        i=0
        while alive "$pid" && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "-$pid" 2>/dev/null || true
    elif [ -n "$pid" ]; then
        kill -KILL "-$pid" 2>/dev/null || true
    fi
    # Ray processes that left the group still name this node's temp dir on their command line.
    # `stop` returns only once none is left (a start right after must not meet them).
    if [ -n "$tmp" ]; then
        i=0
        while :; do
            left=""
            for p in /proc/[0-9]*; do
                if grep -qaF -- "$tmp/" "$p/cmdline" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "$p/status" 2>/dev/null; then
                    left="$left ${p#/proc/}"
                    kill -KILL "${p#/proc/}" 2>/dev/null || true
                fi
            done
            if [ -n "$pid" ] && kill -0 "-$pid" 2>/dev/null; then left="$left group-$pid"; kill -KILL "-$pid" 2>/dev/null || true; fi
            [ -z "$left" ] && break
            i=$((i + 1))
            [ $i -gt 100 ] && fail "Ray processes of $dir did not end within 10s:$left"
            sleep 0.1
        done
        rm -rf "$tmp"
    fi
    rm -f "$dir/ray.pid"
}

start_node() {
    if [ "$DAFT_ROLE" != head ]; then
        [ -n "$DAFT_HEAD_ADDRESS" ] || fail "no head address given for this worker"
        # Workers start alongside the head: wait until its Ray port answers.
        step "waiting for the head's Ray at $DAFT_HEAD_ADDRESS"
        "$CLUSTER_DIR/venv/bin/python" - "$DAFT_HEAD_ADDRESS" "$DAFT_HEAD_WAIT" <<'DAFT_WAIT_EOF' ||
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
DAFT_WAIT_EOF
            fail "the head's Ray at $DAFT_HEAD_ADDRESS did not answer within ${DAFT_HEAD_WAIT}s"
    fi
    node_lock "$DAFT_NODE"
    mkdir -p "$NODE_DIR"
    # Recorded before anything starts, as not yet set up: a start cut short is still found
    # (and finished by the next `up`, or stopped by `down`).
    if [ -n "$DAFT_NODE_JSON_PENDING" ] && [ ! -f "$NODE_DIR/node.json" ]; then
        printf '%s\n' "$DAFT_NODE_JSON_PENDING" > "$NODE_DIR/node.json"
    fi
    pid=$(cat "$NODE_DIR/ray.pid" 2>/dev/null || true)
    # A new head may come back on the old one's address: its id says it is another.
    # Ray's token authentication (DAFT_RAY_AUTH=token): every connection to the cluster's Ray
    # (GCS, raylets, dashboard) must carry the cluster's token, which daft gives every node
    # (made for the head, copied to the workers) before it starts; jobs find it beside ray-address.
    auth=none
    if [ "$DAFT_RAY_AUTH" = token ]; then
        [ -s "$TOKEN" ] || fail "this node has no Ray token of its cluster ($TOKEN); run daft up again"
        auth=$(cksum < "$TOKEN" | cut -d' ' -f1)
    fi
    want="$DAFT_ROLE $DAFT_ENV_HASH $DAFT_HEAD_ADDRESS $DAFT_NODE_IP $DAFT_HEAD_ID $auth $DAFT_RAY_ENV"
    if alive "$pid" && [ "$(cat "$NODE_DIR/ray.want" 2>/dev/null || true)" = "$want" ]; then
        step "Ray already runs as asked (pid $pid)"
        printf '%s\n' "$DAFT_NODE_JSON" > "$NODE_DIR/node.json"
        return 0
    fi
    stop_node "$NODE_DIR"
    RAY_TMP="$(user_tmp)/$DAFT_RAY_TMP"
    rm -rf "$RAY_TMP"
    mkdir -p "$RAY_TMP"
    if [ "$DAFT_ROLE" = head ]; then
        set -- --head --port "$DAFT_RAY_PORT" --dashboard-host "$DAFT_DASHBOARD_HOST" --dashboard-port "$DAFT_DASHBOARD_PORT"
    else
        set -- --address "$DAFT_HEAD_ADDRESS"
    fi
    # Ray announces (and, where it can, binds to) this node's own address.
    ip=$(node_ip)
    set -- "$@" --node-ip-address "$ip"
    if [ "$DAFT_ROLE" = head ] && [ -z "$DAFT_HEAD_ADDRESS" ]; then
        # Jobs on the head find the cluster here (EC2: the head's address is its own).
        printf '%s:%s\n' "$ip" "$DAFT_RAY_PORT" > "$CLUSTER_DIR/ray-address"
    fi
    step "starting Ray ($DAFT_ROLE)"
    # The temp dir is recorded first: whatever runs in it is this node's, pid file or not.
    echo "$RAY_TMP" > "$NODE_DIR/ray.tmp"
    if [ "$DAFT_RAY_AUTH" = token ]; then
        export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$TOKEN"
    fi
    # `ray start` swaps 127.0.0.1 for the machine's outward address, and Ray's servers then
    # listen on every interface; kept at 127.0.0.1, every one of them listens on loopback only.
    # (The local provider's nodes; elsewhere `ray start` itself.) Every Ray process of the node
    # must keep it so, not only `ray start`: the dashboard's job manager, its job supervisors and
    # the drivers they run (Ray's Jobs API, `ray job submit`) connect to 127.0.0.1 too. A start-up
    # hook in the cluster's environment (inert unless DAFT_RAY_LOOPBACK=1, which every process
    # Ray starts inherits) keeps Ray's address helpers on loopback.
    set -- "$CLUSTER_DIR/venv/bin/ray" start "$@"
    loopback=
    if [ "$ip" = 127.0.0.1 ]; then
        site=$("$CLUSTER_DIR/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
            || fail "cannot find the site-packages of $CLUSTER_DIR/venv"
        cat > "$site/_daft_ray_loopback.py" <<'PYEOF'
# Written by daft's bootstrap: with DAFT_RAY_LOOPBACK=1 (a Ray node at 127.0.0.1), Ray's address
# helpers keep 127.0.0.1 instead of swapping it for the machine's outward address, in every
# process of the node (ray start, the dashboard and its job manager, workers, drivers).
import os
import sys

if os.environ.get("DAFT_RAY_LOOPBACK") == "1":
    import importlib.machinery

    class _DaftRayLoopback:
        def find_spec(self, name, path=None, target=None):
            if name != "ray._private.services":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                real = module.get_node_ip_address
                module.resolve_ip_for_localhost = lambda host: host

                def get_node_ip_address(address=None):
                    import ray._private.worker as worker

                    if worker._global_node is not None:
                        return real(address)
                    return "127.0.0.1"

                module.get_node_ip_address = get_node_ip_address

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _DaftRayLoopback())
PYEOF
        echo 'import _daft_ray_loopback' > "$site/_daft_ray_loopback.pth"
        loopback=DAFT_RAY_LOOPBACK=1
    fi
    # Tied to this shell when it holds the node (see TIE).
    if [ -n "$TIE" ] && command -v setpriv >/dev/null 2>&1; then
        set -- setpriv --pdeathsig KILL "$@"
    fi
    # (Ray must not inherit the node lock's descriptor: it would hold the lock as long as it runs.)
    # Ray ≥ 2.60's `ray start --block` answers TERM by first asking the GCS to drain the node, up
    # to RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S (30 s): with the head already gone (a cluster
    # going down, a Slurm job ending) it would linger that long. daft stops whole nodes: no drain.
    # shellcheck disable=SC2086
    setsid env RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 $loopback $DAFT_RAY_ENV "$@" --temp-dir "$RAY_TMP" --disable-usage-stats --block $DAFT_RAY_ARGS \
        > "$NODE_DIR/ray.log" 2>&1 < /dev/null 7>&- &
    pid=$!
    echo "$pid" > "$NODE_DIR/ray.pid"
    i=0
    while ! grep -q "Ray runtime started" "$NODE_DIR/ray.log" 2>/dev/null; do
        if ! alive "$pid"; then
            tail -n 25 "$NODE_DIR/ray.log" >&2
            fail "Ray did not start ($DAFT_ROLE); its log is $NODE_DIR/ray.log"
        fi
        i=$((i + 1))
        if [ $i -gt $((DAFT_START_TIMEOUT * 10)) ]; then
            tail -n 25 "$NODE_DIR/ray.log" >&2
            fail "Ray did not start within ${DAFT_START_TIMEOUT}s; its log is $NODE_DIR/ray.log"
        fi
        sleep 0.1
    done
    echo "$want" > "$NODE_DIR/ray.want"
    printf '%s\n' "$DAFT_NODE_JSON" > "$NODE_DIR/node.json"
    step "Ray runs ($DAFT_ROLE, pid $pid)"
}

status() {
    for d in "$CLUSTER_DIR"/nodes/*/; do
        [ -f "$d/node.json" ] || continue
        pid=$(cat "$d/ray.pid" 2>/dev/null || true)
        if alive "$pid"; then st=true; else st=false; fi
        printf '{"daft":"node","alive":%s,"record":%s}\n' "$st" "$(tr -d '\n' < "$d/node.json")"
    done
    # The head keeps the hosts that joined it (SSH hosts), so removed ones are still found.
    if [ -f "$CLUSTER_DIR/members" ]; then
        while IFS= read -r m; do
            if [ -n "$m" ]; then printf '{"daft":"member","host":%s}\n' "$(json_str "$m")"; fi
        done < "$CLUSTER_DIR/members"
    fi
    if [ -s "$CLUSTER_DIR/autostop.state" ]; then
        printf '{"daft":"autostop","state":%s}\n' "$(tr -d '\n' < "$CLUSTER_DIR/autostop.state")"
    fi
}

# A cluster going down takes its autostop watcher (templates/jobs.py) with it: with no setting
# left, the watcher ends at its next check.
disarm_autostop() {
    if [ -f "$CLUSTER_DIR/autostop.json" ]; then
        printf '{"after": null}\n' > "$CLUSTER_DIR/autostop.json"
        rm -f "$CLUSTER_DIR/autostop.state"
    fi
}

# With `hold`, this shell stays as long as the node's Ray: Ray is tied to it (the kernel kills Ray
# when this shell dies, even by SIGKILL), so a node whose `hold` is gone never keeps a Ray that
# nothing stops. (Ray ties its own processes to `ray start` the same way.)
# A TERM stops Ray first, then this shell ends well; ignored from then on, by the stop's own
# commands too: Slurm signals every process of a job again as the job ends, and the stop must
# not be cut short. Set before `start`, so a TERM while Ray starts (a job cancelled early)
# stops it the same way.
case " $* " in
    *" hold "*)
        TIE=1
        trap 'trap "" TERM INT HUP; stop_node "$NODE_DIR"; exit 0' TERM INT HUP
        ;;
    *) TIE= ;;
esac

for action in "$@"; do
    case "$action" in
        install) install_env ;;
        start) start_node ;;
        stop) disarm_autostop; node_lock "$DAFT_NODE"; stop_node "$NODE_DIR"; rm -rf "$NODE_DIR" ;;
        stop-cluster)
            disarm_autostop
            for d in "$CLUSTER_DIR"/nodes/*/; do
                [ -d "$d" ] || continue
                ( node_lock "$(basename "$d")"; stop_node "$d"; rm -rf "$d" )
            done
            rm -rf "$CLUSTER_DIR/nodes"
            ;;
        halt)
            for d in "$CLUSTER_DIR"/nodes/*/; do
                [ -f "$d/node.json" ] || continue
                ( node_lock "$(basename "$d")"; stop_node "${d%/}" )
            done
            ;;
        status) status ;;
        hold)
            # Stay while this node's Ray runs (a batch job's life is its processes'); a TERM
            # stops Ray first (the trap above).
            pid=$(cat "$NODE_DIR/ray.pid" 2>/dev/null || true)
            while alive "$pid"; do sleep 2 & wait $!; done
            ;;
        record) mkdir -p "$NODE_DIR"; printf '%s\n' "$DAFT_NODE_JSON" > "$NODE_DIR/node.json" ;;
        add-member | remove-member)
            # One writer at a time (flock), and the list replaced whole (rename): concurrent
            # updates neither lose an entry nor leave a half-written file.
            mkdir -p "$CLUSTER_DIR"
            (
                if command -v flock >/dev/null 2>&1; then flock 8; fi
                touch "$CLUSTER_DIR/members"
                grep -vxF "$DAFT_MEMBER" "$CLUSTER_DIR/members" > "$CLUSTER_DIR/members.$$" || true
                if [ "$action" = add-member ]; then printf '%s\n' "$DAFT_MEMBER" >> "$CLUSTER_DIR/members.$$"; fi
                mv "$CLUSTER_DIR/members.$$" "$CLUSTER_DIR/members"
            ) 8>"$CLUSTER_DIR/members.lock"
            ;;
        *) fail "unknown action $action" ;;
    esac
done
