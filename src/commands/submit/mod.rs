//! `daft submit -w DIR [-- CMD]`: pack DIR, send it to the head (unless it is already there),
//! unpack it into a fresh job directory and run CMD (else `[run] command`) there as a job of the
//! cluster's environment, under a supervisor that does not depend on this connection; then
//! follow its output (reconnecting if the connection drops) unless `--detach`.

use crate::printer::Printer;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::jobs;
use crate::agent;
use crate::archive::{collect, human_bytes, manifest_hash, pack_files};
use crate::cli::SubmitArgs;
use crate::config::{is_env_name, Config};
use crate::error::{usage, JobExit};
use crate::model::TELEMETRY_OFF;
use crate::paths::daft_home;
use crate::shell::{dquote, shell_quote};
use crate::transport::RemoteCommand;
use crate::ui::elapsed;

mod script;
mod sweep;

use script::*;
pub use script::{array_script, job_command, job_env, start_command, JobSpec};
use sweep::*;

/// What a `submit` is asked to do, apart from the command line that asked.
#[derive(Debug, Clone)]
pub struct Submit {
    /// `-i`: the SSH key, over the config's.
    pub identity: Option<PathBuf>,
    /// The directory packed and sent as the job's files.
    pub working_dir: PathBuf,
    /// Start the job and return its id without following it.
    pub detach: bool,
    /// The job's name (else the working directory's).
    pub name: Option<String>,
    /// `KEY=VALUE` variables over `[run] env`.
    pub env: Vec<String>,
    /// A sweep file: one job per variant.
    pub sweep: Option<PathBuf>,
    /// Submit from a working tree with uncommitted changes.
    pub allow_dirty: bool,
    /// The command (else `[run] command`).
    pub command: Vec<String>,
}

impl From<&SubmitArgs> for Submit {
    fn from(args: &SubmitArgs) -> Self {
        Submit {
            identity: args.key.identity.clone(),
            working_dir: args.working_dir.clone(),
            detach: args.detach,
            name: args.name.clone(),
            env: args.env.clone(),
            sweep: args.sweep.clone(),
            allow_dirty: args.allow_dirty,
            command: args.command.clone(),
        }
    }
}

pub async fn run(args: &SubmitArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    submit(&cfg, &Submit::from(args), pr).await
}

/// Run one job (or a sweep's jobs) on the cluster of `cfg` and follow it.
pub async fn submit(cfg: &Config, args: &Submit, pr: &Printer) -> anyhow::Result<()> {
    let key = super::ssh_key(cfg, &args.identity);
    // Bad usage is found before anything connects.
    let sweep = match &args.sweep {
        Some(path) => Some(crate::sweep::load(path)?),
        None => None,
    };
    if sweep.as_ref().is_some_and(|s| s.katib.is_some()) {
        return Err(usage(
            "katib = true makes one Katib Experiment on Kubernetes: it is for `daft launch` (a [sweep] in launch.toml); drop it for `daft submit --sweep`",
        ));
    }
    if sweep.is_some() && args.detach {
        return Err(usage(
            "--detach and --sweep go separately: a sweep stays to start its jobs `max_parallel` at a time",
        ));
    }
    let command = job_command(&args.command, cfg.run.command.as_deref())?;
    let mut env = job_env(&cfg.run.env, &args.env)?;
    for name in &cfg.run.env_from_local {
        // (`--env` wins over this machine's value, as over `[run] env`.)
        if args
            .env
            .iter()
            .any(|kv| kv.split_once('=').map(|(k, _)| k) == Some(name))
        {
            continue;
        }
        match std::env::var(name) {
            Ok(v) => {
                env.insert(name.clone(), v);
            }
            Err(_) => {
                return Err(usage(format!(
                    "{name} is not set on this machine (`[run] env_from_local` passes its value to \
                     every job): set it, or pass one with --env {name}=VALUE"
                )))
            }
        }
    }
    let provenance = {
        let dir = args.working_dir.clone();
        tokio::task::spawn_blocking(move || crate::git::provenance(&dir)).await?
    };
    if let Some(e) = crate::git::refuse_dirty(
        &provenance,
        args.allow_dirty,
        "the job then records the diff",
    ) {
        return Err(e);
    }
    let (provider, head) = super::running_head(cfg, key.clone()).await?;

    // Hash the working directory's content while connecting; pack only what the head lacks.
    let dir = args.working_dir.clone();
    let t0 = Instant::now();
    let sync_dirs = cfg.run.sync_dirs.clone();
    let sync_names: Vec<String> = sync_dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let hashing = tokio::task::spawn_blocking(move || {
        let mut files = collect(&dir)?;
        // `[run] sync`: more directories, beside the job's own files under .daft-sync/NAME.
        for d in &sync_dirs {
            let name = d
                .canonicalize()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for (rel, path) in collect(d)? {
                files.push((format!("{SYNC_DIR}/{name}/{rel}"), path));
            }
        }
        let hash = manifest_hash(&files)?;
        anyhow::Ok((files, hash))
    });
    let transport = provider.head_transport(&head).await?;
    let (files, hash) = hashing
        .await
        .context("reading the working directory failed")??;
    let short = hash[..16].to_string();
    let cluster_dir = format!("{}/clusters/{}", transport.daft_home(), cfg.setup.name);
    let remote_zip = format!("{cluster_dir}/archives/{short}.zip");
    let present = transport
        .capture(&format!("test -f {} && echo present", dquote(&remote_zip)))
        .await?;
    if present.stdout.trim() == "present" {
        crate::note!(
            pr,
            "daft: the head already has this working directory ({} file(s), {short}); nothing sent",
            files.len()
        );
    } else {
        let archive =
            tokio::task::spawn_blocking(move || pack_files(&files, hash, &daft_home().join("tmp")))
                .await
                .context("packing failed")??;
        crate::note!(
            pr,
            "daft: packed {} file(s), {} ({} zipped) in {}",
            archive.files,
            human_bytes(archive.bytes),
            human_bytes(archive.zip_bytes),
            elapsed(t0.elapsed())
        );
        let t1 = Instant::now();
        transport.send_file(&archive.path, &remote_zip).await?;
        crate::note!(
            pr,
            "daft: sent {} to {} in {}",
            human_bytes(archive.zip_bytes),
            transport.describe(),
            elapsed(t1.elapsed())
        );
    }

    let job = Prepared {
        sync_names,
        transport: transport.clone(),
        cluster_dir: cluster_dir.clone(),
        remote_zip,
        archive: short,
        working_dir: args.working_dir.display().to_string(),
        provenance,
        env,
    };
    if let Some(sweep) = sweep {
        return run_sweep(&job, &sweep, &command, provider.job_arrays(), pr).await;
    }
    let name = job_name(args);
    let (job_id, job_dir) = job.start(&name, &command, None).await?;
    crate::note!(
        pr,
        "daft: job {job_id} ({name}) on {}: {command}",
        transport.describe(),
    );
    if args.detach {
        crate::outln!(pr, "{job_id}")?;
        crate::note!(
            pr,
            "daft: it runs on without this connection. Follow it: daft logs -f {job_id}   \
             Stop it: daft cancel {job_id}   All jobs: daft jobs"
        );
        return Ok(());
    }
    let head = jobs::Head {
        transport: transport.clone(),
        cluster_dir: cluster_dir.clone(),
    };
    let following = jobs::follow(cfg, key.clone(), head, &job_dir, true, pr);
    tokio::pin!(following);
    let status = tokio::select! {
        r = &mut following => r?,
        _ = crate::interrupt::interrupted() => {
            crate::note!(pr, "\ndaft: stopping the job (Ctrl-C)");
            let head = jobs::Head { transport: transport.clone(), cluster_dir: cluster_dir.clone() };
            let stop = tokio::time::timeout(std::time::Duration::from_secs(30), jobs::cancel_job(&head, &job_dir)).await;
            if !matches!(stop, Ok(Ok(_))) {
                crate::warn!(pr, "daft: could not confirm the job stopped; `daft cancel {job_id}` tries again");
            }
            130
        }
    };
    if status != 0 {
        crate::note!(
            pr,
            "daft: job {job_id} exited with status {status}; its output is kept in {job_dir} \
             (`daft logs {job_id}`)"
        );
        return Err(JobExit(status).into());
    }
    Ok(())
}

/// How long stopping a sweep's jobs on Ctrl-C may take before daft leaves them to `daft cancel`.
const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Where `[run] sync` directories land in a job's working directory.
pub const SYNC_DIR: &str = ".daft-sync";

/// What every job of one `submit` shares: the head, the archive on it, the environment.
struct Prepared {
    /// The `[run] sync` directories' names under `.daft-sync/`.
    sync_names: Vec<String>,
    transport: std::sync::Arc<dyn crate::transport::Transport>,
    cluster_dir: String,
    remote_zip: String,
    archive: String,
    working_dir: String,
    provenance: crate::git::Provenance,
    env: BTreeMap<String, String>,
}

impl Prepared {
    /// Start one job under its supervisor; its (id, directory) once it runs.
    async fn start(
        &self,
        name: &str,
        command: &str,
        variant: Option<&BTreeMap<String, serde_json::Value>>,
    ) -> anyhow::Result<(String, String)> {
        let (job_id, job_dir) = self.prepare(name, command, variant).await?;
        self.launch(&job_id, &job_dir, name, command, variant)
            .await?;
        Ok((job_id, job_dir))
    }

    /// A job's directory with its record (and variant, and command) on the head, not started.
    async fn prepare(
        &self,
        name: &str,
        command: &str,
        variant: Option<&BTreeMap<String, serde_json::Value>>,
    ) -> anyhow::Result<(String, String)> {
        let job_id = new_job_id(&self.archive);
        let job_dir = format!("{}/jobs/{job_id}", self.cluster_dir);
        let record = serde_json::json!({
            "id": job_id,
            "name": name,
            "command": command,
            "submitted": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "working_dir": self.working_dir,
            "archive": self.archive,
            "git": self.provenance,
            "variant": variant,
        });
        // The record (with the diffs, however long) travels as a file, not on a command line.
        self.transport
            .write_file(
                format!("{record:#}\n").as_bytes(),
                &format!("{job_dir}/job.json"),
            )
            .await
            .context("cannot write the job's record on the head")?;
        if let Some(v) = variant {
            let json = serde_json::to_string(v)?;
            self.transport
                .write_file(
                    format!("{json}\n").as_bytes(),
                    &format!("{job_dir}/variant.json"),
                )
                .await
                .context("cannot write the job's variant on the head")?;
        }
        self.transport
            .write_file(
                format!("{command}\n").as_bytes(),
                &format!("{job_dir}/command"),
            )
            .await
            .context("cannot write the job's command on the head")?;
        Ok((job_id, job_dir))
    }

    /// Start a prepared job under its supervisor on the head.
    async fn launch(
        &self,
        job_id: &str,
        job_dir: &str,
        name: &str,
        command: &str,
        variant: Option<&BTreeMap<String, serde_json::Value>>,
    ) -> anyhow::Result<()> {
        let mut env = self.env.clone();
        if let Some(v) = variant {
            env.insert("DAFT_VARIANT".into(), serde_json::to_string(v)?);
        }
        // The job's spec, its environment with it, travels on the command's stdin: never on a
        // command line, in a file or in a log.
        let spec = JobSpec {
            command: Some(command),
            name: Some(name),
            env: env.clone(),
            ..JobSpec::new(&self.remote_zip, &self.sync_names)
        };
        let launch = start_command(&self.transport.daft_home(), &self.cluster_dir, job_dir);
        let shown = format!(
            "start job {job_id}: {} [environment: {}]",
            crate::transport::redact(command),
            env.keys().cloned().collect::<Vec<_>>().join(" ")
        );
        let cmd = RemoteCommand::shown_as(launch, shown).with_input(spec.json().into_bytes());
        let started = agent::capture(self.transport.as_ref(), &agent::JOBS, &cmd).await?;
        let pid = agent::said(&started.stdout)
            .into_iter()
            .find_map(|s| match s {
                agent::Said::Started { pid } => Some(pid),
                _ => None,
            });
        tracing::debug!(job = job_id, ?pid, "the job's supervisor started it");
        if started.status != 0 || pid.is_none() {
            return Err(anyhow!(
                "the job did not start on the head ({}): {}",
                self.transport.describe(),
                started.tail(15)
            ));
        }
        Ok(())
    }

    /// The job's environment as the launch reads it on stdin: KEY=VALUE, NUL-separated.
    fn env_input(&self) -> Vec<u8> {
        nul_env(&self.env)
    }
}

/// An environment as KEY=VALUE entries, each ended by a NUL (what the job scripts read).
fn nul_env(env: &BTreeMap<String, String>) -> Vec<u8> {
    let mut input = Vec::new();
    for (k, v) in env {
        input.extend_from_slice(format!("{k}={v}").as_bytes());
        input.push(0);
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn several_words_are_one_argument_each_and_one_word_is_a_command_line() {
        let c = job_command(&words(&["python", "-c", "import sys; sys.exit(7)"]), None).unwrap();
        assert_eq!(c, "python -c 'import sys; sys.exit(7)'");
        let c = job_command(&words(&["echo", "it's", "a b", "$HOME", ""]), None).unwrap();
        assert_eq!(c, r#"echo 'it'\''s' 'a b' '$HOME' ''"#);
        let c = job_command(&words(&["python a.py && python b.py"]), None).unwrap();
        assert_eq!(c, "python a.py && python b.py");
    }

    #[test]
    fn no_words_run_the_configured_command_else_a_usage_error_names_both_ways() {
        assert_eq!(
            job_command(&[], Some("python main.py")).unwrap(),
            "python main.py"
        );
        let e = job_command(&[], None).unwrap_err();
        let (code, text) = crate::error::classify(&e);
        assert_eq!(code, 2);
        let text = text.unwrap();
        assert!(
            text.contains("after `--`") && text.contains("[run]"),
            "{text}"
        );
    }

    #[test]
    fn env_flags_override_the_config_and_bad_ones_are_usage_errors() {
        let mut cfg = BTreeMap::new();
        cfg.insert("A".to_string(), "1".to_string());
        cfg.insert("B".to_string(), "2".to_string());
        let env = job_env(&cfg, &words(&["B=x=y", "C="])).unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "x=y");
        assert_eq!(env["C"], "");
        for bad in ["NOEQUALS", "1A=b", "A-B=c", "=v"] {
            let e = job_env(&cfg, &words(&[bad])).unwrap_err();
            assert_eq!(crate::error::classify(&e).0, 2, "{bad}");
        }
    }

    #[test]
    fn the_job_helpers_prologue_is_the_environment_setup_commands_get() {
        let prologue = format!(
            "{}\n. \"$CL/venv/bin/activate\"\n{}",
            crate::bootstrap::PRE_ENV,
            crate::bootstrap::CLUSTER_ENV
        );
        assert!(
            crate::templates::JOBS.contains(&format!("PROLOGUE = r'''{prologue}'''")),
            "templates/jobs.py's PROLOGUE is not bootstrap::PRE_ENV + activate + CLUSTER_ENV"
        );
    }

    #[test]
    fn a_jobs_spec_carries_its_variables_and_an_arrays_spec_none() {
        let sync = vec!["lib".to_string()];
        let spec = JobSpec {
            command: Some("python main.py"),
            env: [("TOKEN".to_string(), "s3cret".to_string())].into(),
            ..JobSpec::new("/h/a.zip", &sync)
        };
        let v: serde_json::Value = serde_json::from_str(&spec.json()).unwrap();
        assert_eq!(v["env"]["TOKEN"], "s3cret");
        assert_eq!(v["vars"]["RAY_USAGE_STATS_ENABLED"], "0");
        assert_eq!(v["sync"], serde_json::json!(["lib"]));
        // A job array's script carries its spec on its command line: never the variables.
        let script = array_script(
            "$HOME/.daft",
            "$HOME/.daft/clusters/c",
            &JobSpec::new("/h/a.zip", &sync),
        );
        assert!(
            script.contains("task ") && script.contains("/h/a.zip"),
            "{script}"
        );
        assert!(!script.contains("\"env\""), "{script}");
        // The job's start sends only the helper's path and the directories.
        let start = start_command(
            "$HOME/.daft",
            "$HOME/.daft/clusters/c",
            "$HOME/.daft/clusters/c/jobs/j",
        );
        assert!(start.len() < 400, "{} bytes: {start}", start.len());
    }

    #[test]
    fn job_ids_sort_by_time_and_differ_when_made_at_once() {
        let a = new_job_id("0123456789abcdef");
        let b = new_job_id("0123456789abcdef");
        assert_ne!(a, b);
        assert!(a.contains("-012345-"), "{a}");
    }
}
