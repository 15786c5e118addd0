//! `daft launch`: build the project's image (unless the registry has it), push it, run it on
//! Kubernetes as a `batch/v1` Job (a KubeRay RayJob when it has workers), follow every pod's
//! logs and exit with the job's status. `--dry-run` prints the manifests; `--local` runs the
//! command here.

use crate::printer::Printer;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use futures::AsyncBufReadExt;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams, PropagationPolicy,
};
use kube::Api;

use crate::cli::LaunchArgs;
use crate::config::launch::LaunchConfig;
use crate::error::{usage, JobExit};
use crate::kube_api::{call, connect, Connection, PodChanges};
use crate::launch::{self as manifests, katib, Manifests, Verdict};
use crate::provider::kubernetes::pod_problem;
use crate::ui::elapsed;

mod follow;
mod local;

use follow::*;
use local::*;

pub async fn run(args: &LaunchArgs, pr: &Printer) -> anyhow::Result<()> {
    let start = Instant::now();
    let cfg = LaunchConfig::load(&args.file)?;
    if let Some(job) = &args.delete {
        let c = connect_for(&cfg).await?;
        return delete(&c, &cfg, job, pr).await;
    }
    if let Some(job) = &args.follow {
        let c = connect_for(&cfg).await?;
        return follow(&c, &cfg, job, args.start_timeout, start, true, pr).await;
    }
    let command = crate::commands::submit::job_command(&args.command, cfg.command.as_deref())?;
    if args.local {
        if cfg.sweep.is_some() {
            return Err(usage(format!(
                "{} has a [sweep]: its jobs run on Kubernetes. Here, run one variant with --local \
                 after removing [sweep], or sweep on a local Ray cluster with `daft submit --sweep FILE`",
                cfg.display_path
            )));
        }
        return run_local(&cfg, &command, pr).await;
    }

    // Provenance: what the image is built from.
    // (git runs as subprocesses: off the async runtime.)
    let provenance = {
        let dir = cfg.project_dir.clone();
        tokio::task::spawn_blocking(move || crate::git::provenance(&dir)).await?
    };
    if let Some(e) = crate::git::refuse_dirty(
        &provenance,
        args.allow_dirty,
        "the image's tag then carries a hash of the diff",
    ) {
        return Err(e);
    }
    if let crate::git::Provenance::Git {
        commit: Some(c), ..
    } = &provenance
    {
        let (dir, commit) = (cfg.project_dir.clone(), c.clone());
        let pushed =
            tokio::task::spawn_blocking(move || crate::git::on_a_remote(&dir, &commit)).await?;
        if !args.allow_unpushed && !pushed {
            crate::warn!(pr,
                "daft: warning: commit {} is on no remote: others cannot see the code this job runs \
                 (push it, or pass --allow-unpushed to silence this)",
                &c[..c.len().min(12)]
            );
        }
    }
    // The build context: the files the tag is computed from, and nothing else.
    let dir = cfg.project_dir.clone();
    let context = tokio::task::spawn_blocking(move || crate::build::BuildContext::stage(&dir))
        .await
        .context("reading the project failed")??;
    tracing::debug!(target: "daft::build", files = context.files, hash = %context.hash, dir = %context.path().display(), "build context");
    let tag = manifests::image_tag(&provenance, &context.hash);
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let annotations = manifests::annotations(&tag, &user);
    let suffix: String = {
        let n: u32 = rand::random();
        format!("{:04x}", n & 0xffff)
    };
    let job_name = manifests::job_name(&cfg.name, std::time::SystemTime::now(), &suffix);
    let registry = cfg.registry.clone();
    let image_ref = format!(
        "{}/{}:{}",
        registry.as_deref().unwrap_or("REGISTRY"),
        cfg.name,
        tag.tag
    );
    let namespace_hint = cfg.namespace.clone().unwrap_or_else(|| "default".into());
    if args.dry_run {
        let m = Manifests {
            cfg: &cfg,
            namespace: &namespace_hint,
            image: &image_ref,
            command: &command,
            annotations: &annotations,
        }
        .for_launch(&job_name);
        crate::outln!(
            pr,
            "# image: {image_ref} (built from {}; digest known after the push)",
            cfg.base
        )?;
        if cfg.dockerfile.is_none() {
            crate::outln!(
                pr,
                "# Dockerfile daft would write:\n{}",
                manifests::dockerfile(&cfg, context.path())
                    .lines()
                    .map(|l| format!("#   {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )?;
        }
        pr.json(&m)?;
        return Ok(());
    }
    let Some(_) = registry else {
        return Err(usage(format!(
            "{} sets no `registry` under [image]: daft needs one to push the image the cluster pulls \
             (or run it here with --local, or look with --dry-run)",
            cfg.display_path
        )));
    };

    // The image: built unless the registry has the tag already.
    let digest = match crate::registry::remote_digest(&image_ref).await? {
        Some(d) => {
            crate::note!(
                pr,
                "daft: {image_ref} is in the registry already ({d}): nothing to build"
            );
            d
        }
        None => {
            let builder = crate::build::choose(cfg.builder).await?;
            // (A generated Dockerfile is removed when the build is over, whatever its end.)
            let generated = match &cfg.dockerfile {
                Some(_) => None,
                None => Some(crate::build::TempPath::with_text(&manifests::dockerfile(
                    &cfg,
                    context.path(),
                ))?),
            };
            let dockerfile = match (&cfg.dockerfile, &generated) {
                (Some(p), _) => p.as_path(),
                (None, g) => g.as_ref().expect("generated above").path(),
            };
            let t = Instant::now();
            crate::note!(pr, "daft: building {image_ref} with {}", builder.name());
            let d = builder
                .build_and_push(&crate::build::BuildRequest {
                    dockerfile,
                    context: context.path(),
                    image: &image_ref,
                })
                .await?;
            crate::note!(
                pr,
                "daft: built and pushed {image_ref} in {}",
                elapsed(t.elapsed())
            );
            d
        }
    };
    let pinned = format!("{image_ref}@{digest}");
    crate::outln!(pr, "image: {pinned}")?;

    let c = connect_for(&cfg).await?;
    if let Some(sweep) = cfg.sweep.as_ref().filter(|s| s.katib.is_none()) {
        if args.detach {
            return Err(usage(
                "--detach and a [sweep] go separately: a sweep stays to start its jobs `max_parallel` at a time",
            ));
        }
        return run_sweep(
            &c,
            &cfg,
            sweep,
            &job_name,
            &pinned,
            &command,
            &annotations,
            args.start_timeout,
            pr,
        )
        .await;
    }
    let m = Manifests {
        cfg: &cfg,
        namespace: &c.namespace,
        image: &pinned,
        command: &command,
        annotations: &annotations,
    }
    .for_launch(&job_name);
    apply(&c, &cfg, &job_name, &m).await?;
    crate::outln!(
        pr,
        "job: {job_name} ({} in {}/{})",
        kind(&cfg),
        c.context,
        c.namespace
    )?;
    if args.detach {
        crate::note!(pr,
            "daft: it runs on. Follow it: daft launch -f {f} --follow {job_name}   Delete it: daft launch -f {f} --delete {job_name}",
            f = cfg.display_path
        );
        return Ok(());
    }
    follow(&c, &cfg, &job_name, args.start_timeout, start, true, pr).await
}
/// One row of a sweep's summary.
#[derive(Debug, Clone)]
struct SweepRow {
    job: String,
    variant: String,
    state: String,
}

/// A `[sweep]`'s jobs on Kubernetes, for the scheduler: each a Job (or RayJob) applied and
/// followed by a task of its own; stopped by deleting it.
struct LaunchSweep<'a> {
    c: &'a Connection,
    cfg: &'a LaunchConfig,
    sweep: &'a crate::sweep::Sweep,
    base: &'a str,
    image: &'a str,
    command: &'a str,
    ann: &'a std::collections::BTreeMap<String, String>,
    start_timeout: Duration,
    followers: tokio::task::JoinSet<anyhow::Result<()>>,
    /// Which variant (and job) each follower follows: a panicked one is reported, not "not run".
    tasks: std::collections::HashMap<tokio::task::Id, (usize, String)>,
    rows: Vec<Option<SweepRow>>,
    pr: &'a Printer,
}

#[async_trait::async_trait]
impl crate::scheduler::SweepJobs for LaunchSweep<'_> {
    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        use crate::sweep::{as_args, describe};
        let variant = &self.sweep.variants[i];
        let total = self.rows.len();
        let job = format!("{}-{}", self.base, i + 1);
        let mut cmd = self.command.to_string();
        if self.sweep.args {
            for a in as_args(variant) {
                cmd.push(' ');
                cmd.push_str(&crate::shell::shell_quote(&a));
            }
        }
        let mut vcfg = self.cfg.clone();
        vcfg.env
            .insert("DAFT_VARIANT".into(), serde_json::to_string(variant)?);
        let mut m = Manifests {
            cfg: &vcfg,
            namespace: &self.c.namespace,
            image: self.image,
            command: &cmd,
            annotations: self.ann,
        }
        .for_launch(&job);
        m["metadata"]["labels"]["daft.io/sweep"] = serde_json::json!(self.sweep.name);
        m["metadata"]["annotations"]["daft.io/variant"] =
            serde_json::json!(serde_json::to_string(variant)?);
        apply(self.c, self.cfg, &job, &m).await?;
        crate::note!(
            self.pr,
            "[{}/{total}] {job} started ({})",
            i + 1,
            describe(variant)
        );
        let c = self.c.clone();
        let name = job.clone();
        let start_timeout = self.start_timeout;
        let pr = self.pr.clone();
        let handle = self.followers.spawn(async move {
            follow(&c, &vcfg, &name, start_timeout, Instant::now(), false, &pr).await
        });
        self.tasks.insert(handle.id(), (i, job));
        Ok(())
    }

    async fn wait(
        &mut self,
        _running: &std::collections::BTreeSet<usize>,
        within: Duration,
    ) -> anyhow::Result<Vec<usize>> {
        let Ok(Some(done)) = tokio::time::timeout(within, self.followers.join_next_with_id()).await
        else {
            return Ok(Vec::new());
        };
        let (id, r) = match done {
            Ok((id, r)) => (id, Ok(r)),
            Err(e) => (e.id(), Err(e)),
        };
        let Some((i, job)) = self.tasks.remove(&id) else {
            return Ok(Vec::new());
        };
        let state = match r {
            Ok(Ok(())) => "succeeded".to_string(),
            Ok(Err(e)) if e.downcast_ref::<JobExit>().is_some() => "failed".to_string(),
            Ok(Err(e)) => format!("failed: {e:#}"),
            Err(e) => format!("failed: daft's follower of it stopped ({e})"),
        };
        crate::note!(self.pr, "[{}/{}] {job} {state}", i + 1, self.rows.len());
        self.rows[i] = Some(SweepRow {
            job,
            variant: crate::sweep::describe(&self.sweep.variants[i]),
            state,
        });
        Ok(vec![i])
    }

    /// Delete the running jobs (their pods stop), each within a bound.
    async fn stop(
        &mut self,
        _running: &std::collections::BTreeSet<usize>,
    ) -> anyhow::Result<Vec<usize>> {
        self.followers.abort_all();
        let mut ended = Vec::new();
        for (_, (i, job)) in self.tasks.drain() {
            let state =
                match tokio::time::timeout(STOP_WITHIN, delete(self.c, self.cfg, &job, self.pr))
                    .await
                {
                    Ok(Ok(())) => "cancelled".to_string(),
                    Ok(Err(e)) => format!("not stopped: {e:#}"),
                    Err(_) => format!("not stopped within {}s", STOP_WITHIN.as_secs()),
                };
            self.rows[i] = Some(SweepRow {
                job,
                variant: crate::sweep::describe(&self.sweep.variants[i]),
                state,
            });
            ended.push(i);
        }
        Ok(ended)
    }

    fn name(&self, i: usize) -> String {
        self.tasks
            .values()
            .find(|(j, _)| *j == i)
            .map(|(_, n)| n.clone())
            .unwrap_or_default()
    }
}

/// A `[sweep]` on Kubernetes: one Job (or RayJob) per variant, `max_parallel` at a time, each
/// handed its variant (`DAFT_VARIANT`, and `--key=value` arguments with `args = true`); their
/// logs followed; a summary; exit 1 if any failed.
#[allow(clippy::too_many_arguments)]
async fn run_sweep(
    c: &Connection,
    cfg: &LaunchConfig,
    sweep: &crate::sweep::Sweep,
    base: &str,
    image: &str,
    command: &str,
    ann: &std::collections::BTreeMap<String, String>,
    start_timeout: Duration,
    pr: &Printer,
) -> anyhow::Result<()> {
    use crate::sweep::describe;
    let t0 = Instant::now();
    let total = sweep.variants.len();
    crate::note!(
        pr,
        "daft: sweep {:?}: {total} {}(s), {} at a time",
        sweep.name,
        kind(cfg),
        sweep.max_parallel
    );
    let mut run = LaunchSweep {
        c,
        cfg,
        sweep,
        base,
        image,
        command,
        ann,
        start_timeout,
        followers: tokio::task::JoinSet::new(),
        tasks: Default::default(),
        rows: vec![None; total],
        pr,
    };
    let outcome = crate::scheduler::run(
        &mut run,
        total,
        sweep.max_parallel,
        Default::default(),
        Duration::from_millis(500),
        STOP_WITHIN,
        crate::interrupt::token(),
    )
    .await?;
    let stopping = outcome.interrupted;
    let rows = std::mem::take(&mut run.rows);
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec!["#", "job", "variant", "state"]);
    let mut failed = 0;
    for (i, r) in rows.iter().enumerate() {
        let (job, variant, state) = match r {
            Some(r) => (r.job.clone(), r.variant.clone(), r.state.clone()),
            None => (
                String::from("-"),
                describe(&sweep.variants[i]),
                "not run".to_string(),
            ),
        };
        if state != "succeeded" {
            failed += 1;
        }
        table.add_row(vec![(i + 1).to_string(), job, variant, state]);
    }
    crate::outln!(pr, "{table}")?;
    crate::note!(
        pr,
        "daft: sweep {:?}: {} of {total} succeeded in {}",
        sweep.name,
        total - failed,
        elapsed(t0.elapsed())
    );
    if stopping {
        return Err(JobExit(130).into());
    }
    if failed > 0 {
        return Err(JobExit(1).into());
    }
    Ok(())
}

/// The API server of the launch's `[kubernetes]` context and namespace.
async fn connect_for(cfg: &LaunchConfig) -> anyhow::Result<Connection> {
    connect(
        cfg.context.as_deref(),
        cfg.namespace.as_deref(),
        &cfg.display_path,
    )
    .await
}

/// Create (or update) a launched object by server-side apply with field manager `daft`.
async fn apply(
    c: &Connection,
    cfg: &LaunchConfig,
    name: &str,
    m: &serde_json::Value,
) -> anyhow::Result<()> {
    tracing::debug!(target: "daft::kube", namespace = %c.namespace, %name, "apply {} (field manager daft)", kind(cfg));
    call(
        &format!("create the {}", kind(cfg)),
        objects(c, cfg).patch(name, &PatchParams::apply("daft").force(), &Patch::Apply(m)),
    )
    .await?;
    Ok(())
}

fn kind(cfg: &LaunchConfig) -> &'static str {
    if katib(cfg).is_some() {
        "Experiment"
    } else if cfg.workers > 0 {
        "RayJob"
    } else {
        "Job"
    }
}

fn objects(c: &Connection, cfg: &LaunchConfig) -> Api<DynamicObject> {
    let ar = if katib(cfg).is_some() {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kubeflow.org", "v1beta1", "Experiment"),
            "experiments",
        )
    } else if cfg.workers > 0 {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("ray.io", "v1", "RayJob"),
            "rayjobs",
        )
    } else {
        ApiResource::erase::<Job>(&())
    };
    Api::namespaced_with(c.client.clone(), &c.namespace, &ar)
}

/// The label selector of the job's pods (the Job's own, or the RayJob's cluster and submitter).
fn pod_selectors(cfg: &LaunchConfig, job: &str, obj: Option<&DynamicObject>) -> Vec<String> {
    if katib(cfg).is_some() {
        // (Every trial's pod.)
        return vec![katib_pods(job)];
    }
    let mut s = vec![format!("job-name={job}")];
    if cfg.workers > 0 {
        if let Some(cluster) = obj.and_then(|o| o.data["status"]["rayClusterName"].as_str()) {
            s.push(format!("ray.io/cluster={cluster}"));
        }
    }
    s
}

/// The label selector of a Katib experiment's trial pods.
fn katib_pods(experiment: &str) -> String {
    format!("katib.kubeflow.org/experiment={experiment}")
}

/// The label selector a watch of the job's pods uses: every pod daft's templates make carries
/// the launch's label (Katib names its trials' pods by the experiment).
fn watch_selector(cfg: &LaunchConfig, job: &str) -> String {
    match katib(cfg) {
        Some(_) => katib_pods(job),
        None => format!("{}={}", manifests::LAUNCH_LABEL, cfg.name),
    }
}

/// How long stopping a job on Ctrl-C may take before daft says it could not.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Ctrl-C while following: the job is deleted (its pods stop), as `daft submit` cancels its job.
async fn interrupted_job(
    c: &Connection,
    cfg: &LaunchConfig,
    job: &str,
    pr: &Printer,
) -> anyhow::Result<()> {
    crate::note!(pr, "\ndaft: stopping {} {job} (Ctrl-C)", kind(cfg));
    match tokio::time::timeout(STOP_WITHIN, delete(c, cfg, job, pr)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => crate::warn!(pr,
            "daft: could not delete {} {job} ({e:#}); `daft launch -f {f} --delete {job}` tries again",
            kind(cfg),
            f = cfg.display_path
        ),
        Err(_) => crate::warn!(pr,
            "daft: {} {job} was not deleted within {}s; `daft launch -f {f} --delete {job}` tries again",
            kind(cfg),
            STOP_WITHIN.as_secs(),
            f = cfg.display_path
        ),
    }
    Err(JobExit(130).into())
}

/// Delete a launched job and its pods (foreground), waiting until they are gone.
async fn delete(c: &Connection, cfg: &LaunchConfig, job: &str, pr: &Printer) -> anyhow::Result<()> {
    let api = objects(c, cfg);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    tracing::debug!(target: "daft::kube", name = %job, "delete (foreground)");
    match tokio::time::timeout(Duration::from_secs(30), api.delete(job, &dp)).await {
        Err(_) => return Err(anyhow!("deleting {job}: no answer within 30s")),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
            crate::outln!(pr, "{} {job} does not exist (already deleted?)", kind(cfg))?;
            return Ok(());
        }
        Ok(Err(e)) => return Err(crate::kube_api::api_error(e, &format!("delete {job}"))),
        Ok(Ok(_)) => {}
    }
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = call(
            "list the job's pods",
            pods.list(&ListParams::default().labels(&format!("job-name={job}"))),
        )
        .await?;
        let obj = call("read the job", api.get_opt(job)).await?;
        if left.items.is_empty() && obj.is_none() {
            crate::outln!(pr, "Deleted {} {job} and its pods.", kind(cfg))?;
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "{job} still has {} pod(s) after 5 minutes",
                left.items.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
