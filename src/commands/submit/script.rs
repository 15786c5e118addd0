//! The job supervisor's shell: what a job's launch (and a job array's task) runs on the head
//! to unpack the job, give it the cluster's environment, run it apart from the connection, and
//! record its status.

use super::*;

/// Shell lines shared by a job's launch and a job array's task, with `$CL` (the cluster's
/// directory) and `$J` (the job's) set: unpack the archive into `$J/work`, enter it, and export
/// the cluster's environment, the job's variables and `[run] sync`.
pub(super) fn job_setup(archive: &str, sync_names: &[String]) -> String {
    let env: String = TELEMETRY_OFF
        .iter()
        .map(|(k, v)| format!(" {k}={v}"))
        .collect();
    format!(
        r#"mkdir -p "$J/work" "$J/logs"
"$CL/venv/bin/python" - {zip} "$J/work" > /dev/null <<'DAFT_UNPACK_EOF'
{unpack}
DAFT_UNPACK_EOF
cd "$J/work"
{pre_env}
. "$CL/venv/bin/activate"
{cluster_env}
export PYTHONUNBUFFERED=1 DAFT_JOB_DIR="$J" DAFT_JOB_ID="${{J##*/}}" DAFT_LOG_DIR="$J/logs"{env}
{sync}"#,
        pre_env = crate::bootstrap::PRE_ENV,
        zip = dquote(archive),
        unpack = UNPACK.trim_end(),
        cluster_env = crate::bootstrap::CLUSTER_ENV,
        sync = sync_env(sync_names),
    )
    .trim_end()
    .to_string()
}

/// The script every task of a job array runs (bash; `$1` is the file listing the tasks' job
/// directories, line N+1 for task N): in its job directory, the same environment and records as
/// a supervised job, the task itself being the supervisor.
pub fn array_script(cluster_dir: &str, archive: &str, sync_names: &[String]) -> String {
    format!(
        r#"set -u
umask 077
CL={cl}
J=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$1")
# (The list holds the head's view of the directories: `$HOME/...` expands here.)
case "$J" in '$HOME/'*) J="$HOME/${{J#\$HOME/}}" ;; esac
[ -n "$J" ] && [ -f "$J/job.json" ] || {{ echo "daft: no job for task $SLURM_ARRAY_TASK_ID" >&2; exit 1; }}
echo "$$" > "$J/supervisor"
hostname > "$J/host"
echo "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}" > "$J/slurm-task"
{setup}
export DAFT_JOB_NAME="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$J/job.json")"
export DAFT_VARIANT="$(cat "$J/variant.json")"
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/started"
setsid sh -c "$(cat "$J/command")" > "$J/stdout.log" 2> "$J/stderr.log" < /dev/null &
child=$!
echo "$child" > "$J/pid"
# scancel (daft cancel, Ctrl-C of the sweep): the job's group goes, its status is recorded.
trap 'kill -TERM -"$child" 2>/dev/null' TERM INT
wait "$child"
rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/finished"
echo "$rc" > "$J/exit-status.tmp"
mv "$J/exit-status.tmp" "$J/exit-status"
"#,
        cl = dquote(cluster_dir),
        setup = job_setup(archive, sync_names),
    )
}

/// Shell lines for `[run] sync`: $DAFT_SYNC_DIR/NAME, each (and the directory) on PYTHONPATH.
pub(super) fn sync_env(sync_names: &[String]) -> String {
    if sync_names.is_empty() {
        return String::new();
    }
    let mut paths: Vec<String> = sync_names
        .iter()
        .map(|n| format!("\"$DAFT_SYNC_DIR\"/{}", shell_quote(n)))
        .collect();
    paths.push("\"$DAFT_SYNC_DIR\"".into());
    format!(
        "export DAFT_SYNC_DIR=\"$J/work/{SYNC_DIR}\"\nexport PYTHONPATH={}${{PYTHONPATH:+:$PYTHONPATH}}\n",
        paths.join(":")
    )
}

/// What the job runs: the words after `--` (several words: each one argument, quoted for the
/// head's shell, as `ray job submit` does; a single word: a shell command line), else the
/// config's `[run] command`.
pub fn job_command(words: &[String], configured: Option<&str>) -> anyhow::Result<String> {
    match words {
        [] => configured
            .map(str::to_string)
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                usage(
                    "no command to run: give one after `--` (daft submit -w DIR -- python main.py), \
                     or set `command = \"python main.py\"` in the config's [run] table",
                )
            }),
        [one] => Ok(one.clone()),
        many => Ok(many
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")),
    }
}

/// The job's environment: `[run] env`, then `--env KEY=VALUE` (which wins).
pub fn job_env(
    configured: &BTreeMap<String, String>,
    given: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = configured.clone();
    for kv in given {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(usage(format!(
                "--env {kv:?} is not KEY=VALUE; write it like --env WANDB_PROJECT=demo"
            )));
        };
        if !is_env_name(k) {
            return Err(usage(format!(
                "--env {k:?}: not an environment variable name (letters, digits and _, not starting with a digit)"
            )));
        }
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

pub(super) fn job_name(args: &super::Submit) -> String {
    if let Some(n) = &args.name {
        return n.clone();
    }
    std::fs::canonicalize(&args.working_dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "job".to_string())
}

/// `<UTC time>-<archive hash>-<random>`: sortable, and two jobs submitted at once differ.
pub(super) fn new_job_id(archive: &str) -> String {
    let now = std::time::SystemTime::now();
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let salt = crate::model::short_hash([
        nanos.to_string().as_str(),
        std::process::id().to_string().as_str(),
    ]);
    format!(
        "{}-{}-{}",
        humantime::format_rfc3339_seconds(now)
            .to_string()
            .replace([':', 'T'], "-")
            .trim_end_matches('Z'),
        &archive[..6],
        &salt[..4]
    )
}

/// The shell script (bash) that unpacks the job on the head and starts it under its supervisor:
/// its own session, output to files, exit status recorded. It returns once the job has started;
/// the job does not depend on this connection.
pub fn job_script(
    cluster_dir: &str,
    job_dir: &str,
    archive: &str,
    command: &str,
    name: &str,
    sync_names: &[String],
) -> String {
    format!(
        r#"set -e
umask 077
CL={cl}
J={j}
{setup}
export DAFT_JOB_NAME={name}
# The job's own variables, from stdin (KEY=VALUE, NUL-separated).
while IFS= read -r -d '' kv; do export "$kv"; done
setsid sh -c '
J="$1"
echo $$ > "$J/supervisor"
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/started"
setsid sh -c "$2" > "$J/stdout.log" 2> "$J/stderr.log" < /dev/null &
echo $! > "$J/pid"
wait $!
rc=$?
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/finished"
echo "$rc" > "$J/exit-status.tmp"
mv "$J/exit-status.tmp" "$J/exit-status"
' daft-job "$J" {cmd} > /dev/null 2>&1 < /dev/null &
i=0
while [ ! -s "$J/pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -s "$J/pid" ] || {{ echo "the job's supervisor did not start" >&2; exit 1; }}
"#,
        cl = dquote(cluster_dir),
        j = dquote(job_dir),
        setup = job_setup(archive, sync_names),
        name = shell_quote(name),
        cmd = shell_quote(command),
    )
}
