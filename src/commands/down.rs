//! `daft down`: the plan to an empty cluster, applied.

use crate::printer::Printer;
use std::path::PathBuf;
use std::time::Instant;

use crate::apply::apply;
use crate::cli::DownArgs;
use crate::config::Config;
use crate::model::DesiredCluster;
use crate::planner::{plan, render};
use crate::provider::{Backend, DeclarativeProvider, UpOptions};
use crate::ui::{elapsed, Progress};

/// What a `down` is asked to do, apart from the command line that asked.
#[derive(Debug, Clone, Default)]
pub struct Down {
    /// `-i`: the SSH key, over the config's.
    pub identity: Option<PathBuf>,
    /// Fail at once when another `up`/`down` holds the cluster's lock.
    pub no_wait_lock: bool,
    /// Apply without asking.
    pub yes: bool,
    /// Forget nodes that cannot be reached.
    pub force: bool,
}

impl From<&DownArgs> for Down {
    fn from(args: &DownArgs) -> Self {
        Down {
            identity: args.key.identity.clone(),
            no_wait_lock: args.lock.no_wait_lock,
            yes: args.yes,
            force: args.force,
        }
    }
}

pub async fn run(args: &DownArgs, pr: &Printer) -> anyhow::Result<()> {
    let start = Instant::now();
    let cfg = super::load(&args.config.config)?;
    down(&cfg, &Down::from(args), start, pr).await
}

/// Take the cluster of `cfg` down; `start` is when the command began.
pub async fn down(cfg: &Config, args: &Down, start: Instant, pr: &Printer) -> anyhow::Result<()> {
    let _lock = super::lock(cfg, "down", args.no_wait_lock).await?;
    let provider = match crate::provider::backend(cfg, args.identity.clone()).await? {
        Backend::Nodes(p) => p,
        Backend::Declarative(p) => return down_resource(cfg, p, args, start, pr).await,
        Backend::ReadOnly(_, why) => {
            return Err(crate::error::usage(format!(
                "`daft down` leaves this cluster alone: {why}"
            )))
        }
    };
    let observed = provider.query().await?;
    let desired = DesiredCluster::empty(&cfg.setup.name);
    let p = plan(&desired, &observed);
    if p.actions.is_empty() {
        crate::outln!(
            pr,
            "Nothing to remove: cluster {:?} has no nodes ({}).",
            cfg.setup.name,
            provider.context()
        )?;
        return Ok(());
    }
    crate::out!(pr, "{}", render(&p, &provider.context()))?;
    super::up::confirm_destruction(&p, args.yes, "down")?;
    // (The head down observed, through the same provider: nothing is asked twice.)
    if let Some(head) =
        crate::provider::alive_head(&observed).filter(|_| !provider.jobs_outlive_down())
    {
        super::jobs::saved::save_before_down(cfg, provider.as_ref(), head, pr).await;
    }
    let ui = Progress::new();
    let opts = UpOptions {
        force: args.force,
        max_parallel: cfg.setup.max_parallel,
        ..UpOptions::default()
    };
    let report = apply(provider, &desired, &observed, &p, opts, &ui).await?;
    crate::outln!(
        pr,
        "Cluster {:?} is down: {} node(s) and {} other resource(s) removed in {}.",
        cfg.setup.name,
        report.terminated.len(),
        report.support_deleted.len(),
        elapsed(start.elapsed())
    )?;
    Ok(())
}

/// `down` of a declarative back-end: delete the resource, wait until its pods are gone.
async fn down_resource(
    cfg: &Config,
    p: std::sync::Arc<dyn DeclarativeProvider>,
    args: &Down,
    start: Instant,
    pr: &Printer,
) -> anyhow::Result<()> {
    use crate::planner::{plan_resource, render_resource, ResourceAction};
    let have = p.observe_resource().await?;
    let plan = plan_resource(&cfg.setup.name, None, &have);
    if plan.action == ResourceAction::Absent && have.pods.is_empty() {
        crate::outln!(
            pr,
            "Nothing to remove: cluster {:?} has no {} ({}).",
            cfg.setup.name,
            plan.kind,
            p.context()
        )?;
        return Ok(());
    }
    crate::out!(pr, "{}", render_resource(&plan, &p.context(), None))?;
    if let ResourceAction::Refuse { reason } = &plan.action {
        return Err(anyhow::anyhow!("nothing was removed: {reason}"));
    }
    super::up::confirm(
        true,
        args.yes,
        "down",
        "This plan deletes the cluster. Apply it?",
    )?;
    let head = have.pods.iter().find(|n| {
        n.role == crate::model::Role::Head && n.state == crate::model::NodeState::Running
    });
    if let Some(head) = head.filter(|_| !p.jobs_outlive_down()) {
        super::jobs::saved::save_before_down(cfg, p.as_ref(), head, pr).await;
    }
    let ui = Progress::new();
    let pb = ui.line(
        format!("{:<8}", "cluster"),
        format!("deleting {} {}", plan.kind, plan.name),
    );
    p.delete_resource(&pb).await?;
    crate::ui::done(&pb, format!("deleted {} {}", plan.kind, plan.name));
    crate::outln!(
        pr,
        "Cluster {:?} is down: {} {} and its {} {}(s) deleted in {}.",
        cfg.setup.name,
        plan.kind,
        plan.name,
        plan.pods.len(),
        crate::model::member_word(&plan.kind),
        elapsed(start.elapsed())
    )?;
    Ok(())
}
