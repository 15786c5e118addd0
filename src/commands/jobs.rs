//! Jobs on the head: `daft jobs`, `daft logs JOB [-f]`, `daft cancel JOB`, and what `submit`
//! shares with them (following a job's output across dropped connections).
//!
//! A job runs under a supervisor on the head (its own session, output to files, exit status
//! recorded: `templates/jobs.py` reads them), so the connection only watches it.

use crate::printer::Printer;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;

use crate::agent;
use crate::cli::{CancelArgs, JobsArgs, LogsArgs, OutputFormat, PullArgs};
use crate::config::Config;
use crate::error::JobExit;
use crate::shell::dquote;
use crate::transport::{RemoteCommand, Transport};

/// A job's record on the head, with its state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub command: String,
    pub submitted: String,
    /// queued, running, succeeded, failed, cancelled or lost (the head restarted under it)
    pub state: String,
    pub exit_status: Option<i32>,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub dir: String,
    /// A sweep's variant (none for a single job).
    #[serde(default)]
    pub variant: Option<serde_json::Value>,
    /// Where the code came from: commit, branch, dirty (the diffs stay in the job's job.json).
    #[serde(default)]
    pub git: Option<serde_json::Value>,
    /// A task of a Slurm job array (`ARRAYID_INDEX`): cancelled through Slurm.
    #[serde(default)]
    pub slurm_task: Option<String>,
}

/// The head's cluster directory and a connection to it.
pub struct Head {
    pub transport: Arc<dyn Transport>,
    pub cluster_dir: String,
}

impl Head {
    /// A connection to `node`, the head of `cluster`, through its back-end.
    pub async fn open(
        provider: &dyn crate::provider::Provider,
        node: &crate::model::ObservedNode,
        cluster: &str,
    ) -> anyhow::Result<Head> {
        let transport = provider.head_transport(node).await?;
        let cluster_dir = format!("{}/clusters/{cluster}", transport.daft_home());
        Ok(Head {
            transport,
            cluster_dir,
        })
    }
}

pub async fn connect(cfg: &Config, key: Option<PathBuf>) -> anyhow::Result<Head> {
    let (provider, head) = super::running_head(cfg, key).await?;
    Head::open(provider.as_ref(), &head, &cfg.setup.name).await
}

/// A shell command running the node's copy of the job helper (`templates/jobs.py`, uploaded
/// once per version: see [`crate::agent`]) with `args` in the cluster's environment.
/// (Arguments are daft's own paths and numbers, double-quoted: a `$HOME/...` path expands on the
/// head.) Run it with [`agent::capture`], or after [`agent::AgentFile::ensure`] when its output
/// streams.
pub fn helper(head: &Head, args: &[&str]) -> String {
    helper_text(&head.transport.daft_home(), &head.cluster_dir, args)
}

/// [`helper`] for a head whose daft directory is `daft_home`.
pub fn helper_text(daft_home: &str, cluster_dir: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| dquote(a)).collect();
    agent::JOBS.run_python(daft_home, cluster_dir, &args.join(" "))
}

pub async fn records(head: &Head) -> anyhow::Result<Vec<JobRecord>> {
    let jobs_dir = format!("{}/jobs", head.cluster_dir);
    let cmd = RemoteCommand::shown_as(
        helper(head, &["list", &jobs_dir]),
        format!("jobs.py list {jobs_dir}"),
    );
    let out = agent::capture(head.transport.as_ref(), &agent::JOBS, &cmd).await?;
    if out.status != 0 {
        return Err(anyhow!(
            "cannot list the jobs on the head ({}): {}",
            head.transport.describe(),
            out.tail(10)
        ));
    }
    serde_json::from_str(out.stdout.trim()).with_context(|| {
        format!(
            "the head ({}) answered the job list with something else: {}",
            head.transport.describe(),
            out.tail(5)
        )
    })
}

/// The job a user's word names: an exact id, `last`, the newest job of that name, or the one id
/// that contains it.
pub fn resolve<'a>(jobs: &'a [JobRecord], word: &str) -> anyhow::Result<&'a JobRecord> {
    if let Some(j) = jobs.iter().find(|j| j.id == word) {
        return Ok(j);
    }
    if word == "last" {
        return jobs
            .iter()
            .max_by(|a, b| a.submitted.cmp(&b.submitted).then(a.id.cmp(&b.id)))
            .ok_or_else(|| crate::error::usage("the cluster has no jobs yet"));
    }
    if let Some(j) = jobs
        .iter()
        .filter(|j| j.name == word)
        .max_by(|a, b| a.submitted.cmp(&b.submitted).then(a.id.cmp(&b.id)))
    {
        return Ok(j);
    }
    let hits: Vec<&JobRecord> = jobs.iter().filter(|j| j.id.contains(word)).collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(crate::error::usage(format!(
            "no job {word:?} on this cluster; `daft jobs` lists them"
        ))),
        many => Err(crate::error::usage(format!(
            "{word:?} names {} jobs ({}); give more of the id",
            many.len(),
            many.iter()
                .map(|j| j.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A writer that counts what went through it (where to resume after a reconnect).
struct Counting<W> {
    inner: W,
    count: u64,
    /// Writing here failed (our own stdout or stderr was closed): not the connection's fault.
    failed: bool,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counting<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        match &r {
            Poll::Ready(Ok(n)) => self.count += *n as u64,
            Poll::Ready(Err(_)) => self.failed = true,
            Poll::Pending => {}
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Err(_)) = &r {
            self.failed = true;
        }
        r
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long `follow` keeps trying to reach the head again after the connection dropped.
const RECONNECT_FOR: Duration = Duration::from_secs(300);

/// Print a job's output from the start; with `follow`, until it ends, reconnecting when the
/// connection drops (the job goes on meanwhile). Returns the job's exit status when followed
/// to its end, else 0.
pub async fn follow(
    cfg: &Config,
    key: Option<PathBuf>,
    mut head: Head,
    job_dir: &str,
    follow: bool,
    pr: &Printer,
) -> anyhow::Result<i32> {
    let mut out = Counting {
        inner: tokio::io::stdout(),
        count: 0,
        failed: false,
    };
    let mut err = Counting {
        inner: tokio::io::stderr(),
        count: 0,
        failed: false,
    };
    // (The output streams as it comes: the helper is on the head before it runs.)
    agent::JOBS.ensure(head.transport.as_ref()).await?;
    loop {
        let (o, e) = (out.count.to_string(), err.count.to_string());
        let cmd = RemoteCommand::shown_as(
            helper(
                &head,
                &["follow", job_dir, &o, &e, if follow { "1" } else { "0" }],
            ),
            format!("jobs.py follow {job_dir} {o} {e}"),
        );
        match head.transport.run_cmd(&cmd, &mut out, &mut err).await {
            // A followed job that did not succeed: its status as its record has it (some exec
            // paths, kwok's kubelet among them, report a failure without its exit code).
            Ok(status) if follow && status != 0 => {
                return Ok(recorded_exit(&head, job_dir).await.unwrap_or(status))
            }
            Ok(status) => return Ok(status),
            // Our own output was closed (`daft logs -f JOB | head`): the reader is done, and
            // reconnecting would only fail again. The job goes on.
            Err(_) if out.failed => return Err(anyhow::Error::new(crate::printer::OutputClosed)),
            Err(e) if err.failed => return Err(e.context("cannot write to standard error")),
            Err(e) if follow => {
                crate::note!(
                    pr,
                    "\ndaft: lost the connection to the head ({e:#}); the job goes on. \
                     Reconnecting, for up to {}",
                    humantime::format_duration(RECONNECT_FOR)
                );
                head = reconnect(cfg, key.clone()).await?;
                crate::note!(pr, "daft: reconnected; the output goes on where it stopped");
            }
            Err(e) => return Err(e),
        }
    }
}

/// A job's exit status as its record on the head has it: 130 when cancelled, else its
/// `exit-status`; None when it has none (yet) or it cannot be read.
async fn recorded_exit(head: &Head, job_dir: &str) -> Option<i32> {
    let d = crate::shell::dquote(job_dir);
    let cmd = RemoteCommand::shown_as(
        format!("if [ -f {d}/cancelled ]; then echo 130; else cat {d}/exit-status 2>/dev/null; fi"),
        format!("read the exit status of {job_dir}"),
    );
    let out = head.transport.capture_cmd(&cmd).await.ok()?;
    out.stdout.trim().parse().ok()
}

async fn reconnect(cfg: &Config, key: Option<PathBuf>) -> anyhow::Result<Head> {
    let deadline = Instant::now() + RECONNECT_FOR;
    let mut delays = crate::wait::delays(Duration::from_secs(1), Duration::from_secs(15));
    loop {
        let delay = delays.next().unwrap_or(Duration::from_secs(15));
        match connect(cfg, key.clone()).await {
            Ok(h) => return Ok(h),
            Err(e) if Instant::now() + delay < deadline => {
                tracing::debug!("reconnecting: {e:#}");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "could not reach the head again within {}; the job may still run: \
                     `daft jobs` and `daft logs -f JOB` find it",
                    humantime::format_duration(RECONNECT_FOR)
                )))
            }
        }
    }
}

/// Stop a job's process group; the supervisor records it as cancelled.
pub async fn cancel_job(head: &Head, job_dir: &str) -> anyhow::Result<String> {
    let cmd = RemoteCommand::shown_as(
        helper(head, &["cancel", job_dir]),
        format!("jobs.py cancel {job_dir}"),
    );
    let out = agent::capture(head.transport.as_ref(), &agent::JOBS, &cmd).await?;
    let outcome = crate::agent::said(&out.stdout)
        .into_iter()
        .find_map(|s| match s {
            crate::agent::Said::Cancel { outcome } => Some(outcome),
            _ => None,
        });
    match (out.status, outcome) {
        (0, Some(outcome)) => Ok(outcome),
        _ => Err(anyhow!(
            "cancelling the job on the head ({}) failed: {}",
            head.transport.describe(),
            out.tail(10)
        )),
    }
}

pub async fn list(args: &JobsArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
    let head = match connect(&cfg, key).await {
        Ok(h) => h,
        Err(e) => return saved::list(&cfg, e, pr),
    };
    let jobs = records(&head).await?;
    match pr.format() {
        OutputFormat::Json => pr.json(&jobs)?,
        OutputFormat::Text => {
            if jobs.is_empty() {
                crate::outln!(pr, "No jobs on cluster {:?} yet.", cfg.setup.name)?;
                return Ok(());
            }
            crate::outln!(pr, "{}", table(&jobs))?;
        }
    }
    Ok(())
}

pub fn table(jobs: &[JobRecord]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(["ID", "NAME", "STATE", "EXIT", "SUBMITTED", "COMMAND"]);
    for j in jobs {
        let mut command = j.command.clone();
        if command.chars().count() > 48 {
            command = command.chars().take(47).collect::<String>() + "…";
        }
        t.add_row([
            j.id.clone(),
            j.name.clone(),
            j.state.clone(),
            j.exit_status.map(|c| c.to_string()).unwrap_or_default(),
            j.submitted.clone(),
            command,
        ]);
    }
    t
}

pub async fn logs(args: &LogsArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
    let head = match connect(&cfg, key.clone()).await {
        Ok(h) => h,
        Err(e) => {
            return match saved::logs(&cfg, e, &args.job, pr)? {
                Some(s) if args.follow && s != 0 => Err(JobExit(s).into()),
                _ => Ok(()),
            }
        }
    };
    let jobs = records(&head).await?;
    let job = resolve(&jobs, &args.job)?.clone();
    let status = follow(&cfg, key, head, &job.dir, args.follow, pr).await?;
    if args.follow && status != 0 {
        return Err(JobExit(status).into());
    }
    Ok(())
}

pub async fn cancel(args: &CancelArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
    let (provider, head_node) = super::running_head(&cfg, key).await?;
    let head = Head::open(provider.as_ref(), &head_node, &cfg.setup.name).await?;
    let jobs = records(&head).await?;
    let job = resolve(&jobs, &args.job)?.clone();
    // A task of the scheduler's job array: the scheduler stops it, queued or running.
    if let (Some(task), Some(arrays)) = (&job.slurm_task, provider.job_arrays()) {
        if !matches!(job.state.as_str(), "succeeded" | "failed" | "cancelled") {
            // Marked first: the status the task records on its way out is a cancellation.
            head.transport
                .write_file(b"", &format!("{}/cancelled", job.dir))
                .await?;
            arrays.cancel_array(task).await?;
        }
    }
    match cancel_job(&head, &job.dir).await?.as_str() {
        "ended" => crate::outln!(
            pr,
            "Job {} had already ended ({}).",
            job.id,
            job.exit_status
                .map(|c| format!("exit status {c}"))
                .unwrap_or_else(|| job.state.clone())
        )?,
        _ => crate::outln!(pr, "Job {} cancelled.", job.id)?,
    }
    Ok(())
}

/// One file of a job directory on the head.
#[derive(Debug, Deserialize)]
struct Entry {
    path: String,
    size: u64,
    sha256: String,
}

pub async fn pull(args: &PullArgs, pr: &Printer) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
    let head = connect(&cfg, key).await?;
    let jobs = records(&head).await?;
    let job = resolve(&jobs, &args.job)?.clone();
    let dest = args
        .dest
        .clone()
        .unwrap_or_else(|| PathBuf::from("daft-jobs").join(&job.id));
    let (fetched, bytes, same) = pull_job(&head, &job, &dest).await?;
    crate::outln!(
        pr,
        "Pulled job {} to {}: {fetched} file(s) ({}) copied, {same} unchanged, in {}",
        job.id,
        dest.display(),
        crate::archive::human_bytes(bytes),
        crate::ui::elapsed(t0.elapsed())
    )?;
    Ok(())
}

/// Copy `job`'s directory (not its unpacked code) from the head to `dest`, only the files whose
/// SHA-256 differs: (copied, their bytes, unchanged).
pub async fn pull_job(
    head: &Head,
    job: &JobRecord,
    dest: &std::path::Path,
) -> anyhow::Result<(usize, u64, usize)> {
    let cmd = RemoteCommand::shown_as(
        helper(head, &["manifest", &job.dir]),
        format!("jobs.py manifest {}", job.dir),
    );
    let out = agent::capture(head.transport.as_ref(), &agent::JOBS, &cmd).await?;
    if out.status != 0 {
        return Err(anyhow!(
            "cannot list the job's files on the head ({}): {}",
            head.transport.describe(),
            out.tail(10)
        ));
    }
    let entries: Vec<Entry> = serde_json::from_str(out.stdout.trim())
        .context("the head answered the file list with something else")?;
    let (mut fetched, mut bytes, mut same) = (0usize, 0u64, 0usize);
    for e in &entries {
        // Paths come from the head: only plain relative ones are written.
        let rel = std::path::Path::new(&e.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(anyhow!("the head listed an unsafe path {:?}", e.path));
        }
        let local = dest.join(rel);
        // The local copy's hash, streamed off the async runtime.
        let (path, size, want) = (local.clone(), e.size, e.sha256.clone());
        let unchanged =
            tokio::task::spawn_blocking(move || same_file(&path, size, &want).unwrap_or(false))
                .await?;
        if unchanged {
            same += 1;
            continue;
        }
        if let Some(parent) = local.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let n = head
            .transport
            .fetch_file(&format!("{}/{}", job.dir, e.path), &local)
            .await?;
        fetched += 1;
        bytes += n;
    }
    Ok((fetched, bytes, same))
}

/// `path` has `size` bytes whose SHA-256 is `sha256` (read in chunks, never whole).
fn same_file(path: &std::path::Path, size: u64, sha256: &str) -> std::io::Result<bool> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    if f.metadata()?.len() != size {
        return Ok(false);
    }
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()) == sha256)
}

/// Jobs that outlive their cluster: `down` of a back-end whose head takes its files with it
/// (an EC2 instance, a pod) first copies every job's directory (output, logs, records; not the
/// unpacked code) to `$DAFT_HOME/saved-jobs/CLUSTER/JOB`, and `daft jobs` and `daft logs` read
/// them there once the cluster is gone.
pub mod saved {
    use std::path::{Path, PathBuf};

    use super::{pull_job, records, resolve, Head, JobRecord};
    use crate::config::Config;
    use crate::model::ObservedNode;
    use crate::printer::Printer;
    use crate::provider::Provider;

    /// Where a cluster's jobs are saved.
    pub fn saved_dir(cluster: &str) -> PathBuf {
        crate::paths::daft_home().join("saved-jobs").join(cluster)
    }

    /// Copy every job of the cluster whose head is `node` to [`saved_dir`], with its record as
    /// the head last listed it (`record.json`); how many were saved.
    pub async fn save_all(
        cfg: &Config,
        provider: &dyn Provider,
        node: &ObservedNode,
    ) -> anyhow::Result<usize> {
        let head = Head::open(provider, node, &cfg.setup.name).await?;
        let jobs = records(&head).await?;
        let dir = saved_dir(&cfg.setup.name);
        for job in &jobs {
            let dest = dir.join(&job.id);
            pull_job(&head, job, &dest).await?;
            std::fs::write(dest.join("record.json"), serde_json::to_vec_pretty(job)?)?;
        }
        Ok(jobs.len())
    }

    /// Before `down` removes `node`, a head that takes its files with it: save its jobs, saying
    /// so; a failure is a warning (the cluster still goes: it costs money).
    pub async fn save_before_down(
        cfg: &Config,
        provider: &dyn Provider,
        node: &ObservedNode,
        pr: &Printer,
    ) {
        match save_all(cfg, provider, node).await {
            Ok(0) => {}
            Ok(n) => crate::note!(
                pr,
                "Saved the output of {n} job(s) to {} (`daft jobs` and `daft logs` read it once the cluster is gone).",
                saved_dir(&cfg.setup.name).display()
            ),
            Err(e) => crate::warn!(
                pr,
                "daft: warning: the jobs' output could not be saved before down ({e:#}); it goes with the head"
            ),
        }
    }

    /// The saved jobs of a cluster, oldest first, each `dir` its local directory.
    pub fn saved_records(cluster: &str) -> Vec<JobRecord> {
        let dir = saved_dir(cluster);
        let mut out: Vec<JobRecord> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let text = std::fs::read(e.path().join("record.json")).ok()?;
                let mut r: JobRecord = serde_json::from_slice(&text).ok()?;
                r.dir = e.path().display().to_string();
                Some(r)
            })
            .collect();
        out.sort_by(|a, b| (&a.submitted, &a.id).cmp(&(&b.submitted, &b.id)));
        out
    }

    /// `daft jobs` of a cluster that is not up: its saved jobs, or `not_up` when it has none.
    pub fn list(cfg: &Config, not_up: anyhow::Error, pr: &Printer) -> anyhow::Result<()> {
        let jobs = saved_records(&cfg.setup.name);
        if jobs.is_empty() {
            return Err(not_up);
        }
        crate::note!(
            pr,
            "Cluster {:?} is not up ({not_up:#}); its jobs as saved at its last `daft down`:",
            cfg.setup.name
        );
        pr.show(&jobs, |j| format!("{}\n", super::table(j)))
    }

    /// `daft logs JOB` of a cluster that is not up: the saved job's output (stdout, then stderr);
    /// its exit status when it failed and `follow` asked for it.
    pub fn logs(
        cfg: &Config,
        not_up: anyhow::Error,
        word: &str,
        pr: &Printer,
    ) -> anyhow::Result<Option<i32>> {
        let jobs = saved_records(&cfg.setup.name);
        if jobs.is_empty() {
            return Err(not_up);
        }
        let job = resolve(&jobs, word)?;
        crate::note!(
            pr,
            "Cluster {:?} is not up; job {} as saved at its last `daft down`:",
            cfg.setup.name,
            job.id
        );
        let read = |name: &str| std::fs::read(Path::new(&job.dir).join(name)).unwrap_or_default();
        crate::out!(pr, "{}", String::from_utf8_lossy(&read("stdout.log")))?;
        let err = read("stderr.log");
        if !err.is_empty() {
            crate::warn!(pr, "{}", String::from_utf8_lossy(&err).trim_end());
        }
        Ok(job.exit_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, name: &str, submitted: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            name: name.into(),
            command: "python main.py".into(),
            submitted: submitted.into(),
            state: "running".into(),
            exit_status: None,
            started: None,
            finished: None,
            dir: format!("/j/{id}"),
            variant: None,
            git: None,
            slurm_task: None,
        }
    }

    #[test]
    fn a_word_names_a_job_by_id_last_name_or_a_unique_part() {
        let jobs = vec![
            job("2026-01-01-00-00-00-aaaa", "train", "2026-01-01T00:00:00Z"),
            job("2026-01-02-00-00-00-bbbb", "train", "2026-01-02T00:00:00Z"),
            job("2026-01-03-00-00-00-cccc", "eval", "2026-01-03T00:00:00Z"),
        ];
        assert_eq!(resolve(&jobs, "last").unwrap().id, jobs[2].id);
        assert_eq!(resolve(&jobs, "train").unwrap().id, jobs[1].id);
        assert_eq!(resolve(&jobs, "aaaa").unwrap().id, jobs[0].id);
        assert_eq!(resolve(&jobs, &jobs[0].id).unwrap().id, jobs[0].id);
        let many = resolve(&jobs, "2026-01").unwrap_err().to_string();
        assert!(many.contains("names 3 jobs"), "{many}");
        let none = resolve(&jobs, "zzz").unwrap_err().to_string();
        assert!(none.contains("`daft jobs` lists them"), "{none}");
        assert!(resolve(&[], "last").is_err());
    }
}
