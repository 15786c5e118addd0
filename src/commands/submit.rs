//! `daft submit -w DIR [-- CMD]`: pack DIR, send it to the head (unless it is already there),
//! unpack it into a fresh job directory and run CMD (else `[run] command`) there as a job of the
//! cluster's environment, under a supervisor that does not depend on this connection; then
//! follow its output (reconnecting if the connection drops) unless `--detach`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::jobs;
use crate::archive::{collect, human_bytes, manifest_hash, pack_files};
use crate::cli::SubmitArgs;
use crate::config::is_env_name;
use crate::error::{usage, JobExit};
use crate::model::TELEMETRY_OFF;
use crate::paths::daft_home;
use crate::shell::{dquote, shell_quote};
use crate::templates::UNPACK;
use crate::transport::RemoteCommand;
use crate::ui::elapsed;

pub async fn run(args: &SubmitArgs) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
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
    let (provider, head) = super::running_head(&cfg, key.clone()).await?;

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
            "daft: the head already has this working directory ({} file(s), {short}); nothing sent",
            files.len()
        );
    } else {
        let archive =
            tokio::task::spawn_blocking(move || pack_files(&files, hash, &daft_home().join("tmp")))
                .await
                .context("packing failed")??;
        crate::note!(
            "daft: packed {} file(s), {} ({} zipped) in {}",
            archive.files,
            human_bytes(archive.bytes),
            human_bytes(archive.zip_bytes),
            elapsed(t0.elapsed())
        );
        let t1 = Instant::now();
        transport.send_file(&archive.path, &remote_zip).await?;
        crate::note!(
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
        return run_sweep(&job, &sweep, &command, args.output, provider.job_arrays()).await;
    }
    let name = job_name(args);
    let (job_id, job_dir) = job.start(&name, &command, None).await?;
    crate::note!(
        "daft: job {job_id} ({name}) on {}: {command}",
        transport.describe(),
    );
    if args.detach {
        crate::outln!("{job_id}")?;
        crate::note!(
            "daft: it runs on without this connection. Follow it: daft logs -f {job_id}   \
             Stop it: daft cancel {job_id}   All jobs: daft jobs"
        );
        return Ok(());
    }
    let head = jobs::Head {
        transport: transport.clone(),
        cluster_dir: cluster_dir.clone(),
    };
    let following = jobs::follow(&cfg, key.clone(), head, &job_dir, true);
    tokio::pin!(following);
    let status = tokio::select! {
        r = &mut following => r?,
        _ = crate::interrupt::interrupted() => {
            crate::note!("\ndaft: stopping the job (Ctrl-C)");
            let head = jobs::Head { transport: transport.clone(), cluster_dir: cluster_dir.clone() };
            let stop = tokio::time::timeout(std::time::Duration::from_secs(30), jobs::cancel_job(&head, &job_dir)).await;
            if !matches!(stop, Ok(Ok(_))) {
                crate::note!("daft: could not confirm the job stopped; `daft cancel {job_id}` tries again");
            }
            130
        }
    };
    if status != 0 {
        crate::note!(
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
        // The job's environment travels on the command's stdin (KEY=VALUE, NUL-separated):
        // never on a command line, in a file or in a log.
        let input = nul_env(&env);
        let launch = job_script(
            &self.cluster_dir,
            job_dir,
            &self.remote_zip,
            command,
            name,
            &self.sync_names,
        );
        let shown = format!(
            "start job {job_id}: {} [environment: {}]",
            crate::transport::redact(command),
            env.keys().cloned().collect::<Vec<_>>().join(" ")
        );
        let started = self
            .transport
            .capture_cmd(
                &RemoteCommand::shown_as(format!("bash -c {}", shell_quote(&launch)), shown)
                    .with_input(input),
            )
            .await?;
        if started.status != 0 {
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

/// One row of a sweep's summary.
#[derive(Debug, Clone, serde::Serialize)]
struct SweepRow {
    job: String,
    variant: String,
    state: String,
    duration: String,
    exit_status: Option<i32>,
}

/// A sweep's jobs on the cluster's head, for the scheduler: each started under its supervisor
/// (or all at once as the back-end's job array), their ends read from the head's job records.
struct SubmitSweep<'a> {
    job: &'a Prepared,
    sweep: &'a crate::sweep::Sweep,
    commands: Vec<String>,
    head: jobs::Head,
    /// Per variant: (job id, since when it runs, whether its start was said).
    ids: BTreeMap<usize, (String, Instant, bool)>,
    rows: Vec<Option<SweepRow>>,
    arrays: Option<(&'a dyn crate::provider::JobArrays, String)>,
}

#[async_trait::async_trait]
impl crate::scheduler::SweepJobs for SubmitSweep<'_> {
    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let variant = &self.sweep.variants[i];
        let name = format!("{}-{}", self.sweep.name, i + 1);
        let (id, _) = self
            .job
            .start(&name, &self.commands[i], Some(variant))
            .await?;
        crate::note!(
            "[{}/{}] {name} started ({}): {id}",
            i + 1,
            self.rows.len(),
            crate::sweep::describe(variant)
        );
        self.ids.insert(i, (id, Instant::now(), true));
        Ok(())
    }

    async fn wait(
        &mut self,
        running: &std::collections::BTreeSet<usize>,
        within: Duration,
    ) -> anyhow::Result<Vec<usize>> {
        tokio::time::sleep(within).await;
        let records = jobs::records(&self.head).await?;
        let total = self.rows.len();
        let mut ended = Vec::new();
        for &i in running {
            let Some((id, started, said)) = self.ids.get_mut(&i) else {
                continue;
            };
            let rec = records.iter().find(|r| &r.id == id);
            if let Some(r) = rec.filter(|r| !*said && r.started.is_some()) {
                // A task of the array has started.
                *started = Instant::now();
                *said = true;
                crate::note!(
                    "[{}/{total}] {}-{} started ({}): {}",
                    i + 1,
                    self.sweep.name,
                    i + 1,
                    crate::sweep::describe(&self.sweep.variants[i]),
                    r.id
                );
            }
            if let Some(r) = rec.filter(|r| !matches!(r.state.as_str(), "queued" | "running")) {
                let took = elapsed(started.elapsed());
                let name = format!("{}-{}", self.sweep.name, i + 1);
                crate::note!(
                    "[{}/{total}] {name} {} in {took}{}",
                    i + 1,
                    r.state,
                    r.exit_status
                        .map(|c| format!(" (exit status {c})"))
                        .unwrap_or_default()
                );
                self.rows[i] = Some(SweepRow {
                    job: name,
                    variant: crate::sweep::describe(&self.sweep.variants[i]),
                    state: r.state.clone(),
                    duration: took,
                    exit_status: r.exit_status,
                });
                ended.push(i);
            }
        }
        Ok(ended)
    }

    /// Cancel the running jobs (an array's tasks through the back-end); they end as `wait`
    /// reads their records (cancelled).
    async fn stop(
        &mut self,
        running: &std::collections::BTreeSet<usize>,
    ) -> anyhow::Result<Vec<usize>> {
        let records = jobs::records(&self.head).await?;
        let dir_of = |i: &usize| {
            let id = &self.ids.get(i)?.0;
            records
                .iter()
                .find(|r| &r.id == id)
                .map(|r| (id.clone(), r.dir.clone()))
        };
        if let Some((arrays, array)) = &self.arrays {
            // Marked first: what the tasks record on their way out is a cancellation.
            for (id, dir) in running.iter().filter_map(dir_of) {
                if let Err(e) = self
                    .job
                    .transport
                    .write_file(b"", &format!("{dir}/cancelled"))
                    .await
                {
                    crate::note!("daft: could not mark job {id} as cancelled: {e:#}");
                }
            }
            arrays.cancel_array(array).await?;
        }
        for (id, dir) in running.iter().filter_map(dir_of) {
            match tokio::time::timeout(Duration::from_secs(30), jobs::cancel_job(&self.head, &dir)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => crate::note!("daft: could not cancel job {id}: {e:#}; `daft cancel {id}` tries again"),
                Err(_) => crate::note!("daft: job {id} did not confirm its cancellation within 30s; `daft cancel {id}` tries again"),
            }
        }
        Ok(Vec::new())
    }

    fn name(&self, i: usize) -> String {
        self.ids.get(&i).map(|j| j.0.clone()).unwrap_or_default()
    }
}

/// Start a sweep's jobs, `max_parallel` at a time; one line per job as it starts and ends; a
/// summary table. Fails (exit 1) when any job did not succeed.
async fn run_sweep(
    job: &Prepared,
    sweep: &crate::sweep::Sweep,
    command: &str,
    output: crate::cli::OutputFormat,
    arrays: Option<&dyn crate::provider::JobArrays>,
) -> anyhow::Result<()> {
    use crate::sweep::as_args;
    let total = sweep.variants.len();
    let command_of = |variant: &BTreeMap<String, serde_json::Value>| {
        let mut cmd = command.to_string();
        if sweep.args {
            for a in as_args(variant) {
                cmd.push(' ');
                cmd.push_str(&shell_quote(&a));
            }
        }
        cmd
    };
    let head = jobs::Head {
        transport: job.transport.clone(),
        cluster_dir: job.cluster_dir.clone(),
    };
    crate::note!(
        "daft: sweep {:?}: {total} job(s), {} at a time, on {}",
        sweep.name,
        sweep.max_parallel,
        job.transport.describe()
    );
    let t0 = Instant::now();
    let commands: Vec<String> = sweep.variants.iter().map(command_of).collect();
    let mut run = SubmitSweep {
        job,
        sweep,
        commands,
        head,
        ids: Default::default(),
        rows: vec![None; total],
        arrays: None,
    };
    let mut started = std::collections::BTreeSet::new();
    if let Some(arrays) = arrays {
        // The back-end's own job array: every variant's job prepared, one submission.
        let mut dirs = Vec::new();
        for (i, variant) in sweep.variants.iter().enumerate() {
            let name = format!("{}-{}", sweep.name, i + 1);
            let (id, dir) = job.prepare(&name, &run.commands[i], Some(variant)).await?;
            run.ids.insert(i, (id, Instant::now(), false));
            started.insert(i);
            dirs.push(dir);
        }
        let script = array_script(&job.cluster_dir, &job.remote_zip, &job.sync_names);
        let id = arrays
            .submit_array(&crate::provider::ArrayRequest {
                name: &sweep.name,
                job_dirs: &dirs,
                script: &script,
                max_parallel: sweep.max_parallel,
                env_input: job.env_input(),
            })
            .await?;
        crate::note!(
            "daft: sweep {:?} is job array {id}: {total} task(s), {} at a time",
            sweep.name,
            sweep.max_parallel
        );
        run.arrays = Some((arrays, id));
    }
    let outcome = crate::scheduler::run(
        &mut run,
        total,
        sweep.max_parallel,
        started,
        Duration::from_millis(500),
        STOP_WITHIN,
        crate::interrupt::token(),
    )
    .await?;
    if !outcome.left_running.is_empty() {
        crate::note!("daft: `daft jobs` shows them, `daft cancel JOB` stops one");
    }
    let interrupted = outcome.interrupted;
    let rows = run.rows;
    let rows: Vec<SweepRow> = rows.into_iter().flatten().collect();
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(["JOB", "VARIANT", "STATE", "DURATION", "EXIT"]);
    for r in &rows {
        t.add_row([
            r.job.clone(),
            r.variant.clone(),
            r.state.clone(),
            r.duration.clone(),
            r.exit_status.map(|c| c.to_string()).unwrap_or_default(),
        ]);
    }
    match output {
        crate::cli::OutputFormat::Json => {
            crate::outln!("{}", serde_json::to_string_pretty(&rows)?)?
        }
        crate::cli::OutputFormat::Text => crate::outln!("{t}")?,
    }
    let failed = rows.iter().filter(|r| r.state != "succeeded").count();
    let not_started = total - rows.len();
    crate::note!(
        "daft: sweep {:?}: {} of {total} succeeded{}{} in {}",
        sweep.name,
        rows.len() - failed,
        if failed > 0 {
            format!(", {failed} did not")
        } else {
            String::new()
        },
        if not_started > 0 {
            format!(", {not_started} not started")
        } else {
            String::new()
        },
        elapsed(t0.elapsed())
    );
    if interrupted {
        return Err(JobExit(130).into());
    }
    if failed > 0 || not_started > 0 {
        return Err(anyhow!(
            "{} of {total} job(s) of sweep {:?} did not succeed; `daft logs JOB` shows their output",
            failed + not_started,
            sweep.name
        ));
    }
    Ok(())
}

/// Shell lines shared by a job's launch and a job array's task, with `$CL` (the cluster's
/// directory) and `$J` (the job's) set: unpack the archive into `$J/work`, enter it, and export
/// the cluster's environment, the job's variables and `[run] sync`.
fn job_setup(archive: &str, sync_names: &[String]) -> String {
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
fn sync_env(sync_names: &[String]) -> String {
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

fn job_name(args: &SubmitArgs) -> String {
    if let Some(n) = &args.name {
        return n.clone();
    }
    std::fs::canonicalize(&args.working_dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "job".to_string())
}

/// `<UTC time>-<archive hash>-<random>`: sortable, and two jobs submitted at once differ.
fn new_job_id(archive: &str) -> String {
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
    fn job_ids_sort_by_time_and_differ_when_made_at_once() {
        let a = new_job_id("0123456789abcdef");
        let b = new_job_id("0123456789abcdef");
        assert_ne!(a, b);
        assert!(a.contains("-012345-"), "{a}");
    }
}
