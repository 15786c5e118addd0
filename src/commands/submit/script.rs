//! The job supervisor's shell: what a job's launch (and a job array's task) runs on the head
//! to unpack the job, give it the cluster's environment, run it apart from the connection, and
//! record its status.

use super::*;

/// A job as the head's supervisor (`jobs.py start`, a job array's `jobs.py task`) reads it: the
/// archive to unpack, what to run, the `[run] sync` directories, daft's settings for every job
/// (`vars`) and the job's own variables (`env`, set last). It travels on the command's stdin (or,
/// for a job array, without `env`, as an argument), never in a log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobSpec<'a> {
    pub archive: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub sync: &'a [String],
    pub vars: BTreeMap<&'static str, &'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl<'a> JobSpec<'a> {
    pub fn new(archive: &'a str, sync: &'a [String]) -> JobSpec<'a> {
        JobSpec {
            archive,
            command: None,
            name: None,
            sync,
            vars: TELEMETRY_OFF.into_iter().collect(),
            env: BTreeMap::new(),
        }
    }

    pub fn json(&self) -> String {
        // Strings and string maps always serialize.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// The command that starts a job (its spec on stdin) under its supervisor on the head: the job
/// helper unpacks it and returns once it runs, apart from this connection.
pub fn start_command(daft_home: &str, cluster_dir: &str, job_dir: &str) -> String {
    agent::JOBS.run_python(
        daft_home,
        cluster_dir,
        &format!("start {} {}", dquote(cluster_dir), dquote(job_dir)),
    )
}

/// The script every task of a job array runs (bash; `$1` is the file listing the tasks' job
/// directories, line N+1 for task N): the job helper, the task itself being the job's
/// supervisor, in the same environment and with the same records as a started job.
pub fn array_script(daft_home: &str, cluster_dir: &str, spec: &JobSpec<'_>) -> String {
    format!(
        "set -u\n{}\n",
        agent::JOBS.run_python(
            daft_home,
            cluster_dir,
            &format!(
                "task {} \"$1\" {}",
                dquote(cluster_dir),
                shell_quote(&spec.json())
            ),
        )
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
