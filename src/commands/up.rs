//! `daft up`: print the plan, then apply it.

use crate::printer::Printer;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;

use crate::apply::apply;
use crate::cli::UpArgs;
use crate::config::Config;
use crate::error::usage;
use crate::planner::{plan, render, Action, NOT_SET_UP};
use crate::provider::{Backend, DeclarativeProvider, UpOptions};
use crate::ui::{elapsed, Progress};

/// What an `up` is asked to do, apart from the command line that asked.
#[derive(Debug, Clone, Default)]
pub struct Up {
    /// `-i`: the SSH key, over the config's.
    pub identity: Option<PathBuf>,
    /// Fail at once when another `up`/`down` holds the cluster's lock.
    pub no_wait_lock: bool,
    /// Apply a destructive plan without asking.
    pub yes: bool,
    /// Return once nodes run (self-starting providers).
    pub no_wait: bool,
    /// Wait for the workers too.
    pub wait_workers: bool,
}

impl From<&UpArgs> for Up {
    fn from(args: &UpArgs) -> Self {
        Up {
            identity: args.key.identity.clone(),
            no_wait_lock: args.lock.no_wait_lock,
            yes: args.yes,
            no_wait: args.no_wait,
            wait_workers: args.wait_workers,
        }
    }
}

pub async fn run(args: &UpArgs, pr: &Printer) -> anyhow::Result<()> {
    let start = Instant::now();
    let cfg = super::load(&args.config.config)?;
    up(&cfg, &Up::from(args), start, pr).await
}

/// Bring the cluster of `cfg` to what it says; `start` is when the command began.
pub async fn up(cfg: &Config, args: &Up, start: Instant, pr: &Printer) -> anyhow::Result<()> {
    // One `up`/`down` of a cluster at a time; observed only once the lock is ours.
    let _lock = super::lock(cfg, "up", args.no_wait_lock).await?;
    let provider = match crate::provider::backend(cfg, args.identity.clone()).await? {
        Backend::Nodes(p) => p,
        Backend::Declarative(p) => return up_resource(cfg, p, args, start, pr).await,
        Backend::ReadOnly(_, why) => {
            return Err(usage(format!("`daft up` leaves this cluster alone: {why}")))
        }
    };
    let observed = provider.query().await?;
    let desired = provider.desired().await;
    let mut p = plan(&desired, &observed);
    if args.no_wait && provider.self_starting() {
        // Nodes still setting themselves up (user data) are not connected to without waiting:
        // the next waiting `up` checks them and records them as set up.
        for a in p.actions.iter_mut() {
            if let Action::Update { node, reasons } = a {
                if reasons.len() == 1 && reasons[0] == NOT_SET_UP {
                    *a = Action::Keep { node: node.clone() };
                }
            }
        }
    }
    let cost = provider.estimate(&desired).await;
    crate::out!(pr, "{}", render(&p, &provider.context()))?;
    crate::out!(
        pr,
        "{}",
        super::plan::after_plan(
            cfg.setup.autostop,
            cost.as_ref(),
            provider.max_hourly_cost(),
            &observed
        )
    )?;
    if let Some((head, why)) = p.unreachable_head() {
        return Err(crate::apply::unreachable_head(&head.id, why));
    }
    if p.is_noop() {
        crate::outln!(pr, "{}", up_to_date(&cfg.setup.name, start))?;
        return Ok(());
    }
    // A plan that launches must fit the config's budget (a plan that only removes or keeps
    // nodes costs no more than what runs).
    let launches = p
        .actions
        .iter()
        .any(|a| matches!(a, Action::Create { .. } | Action::Replace { .. }));
    if let (Some(max), Some(c), true) = (provider.max_hourly_cost(), &cost, launches) {
        if let Some(why) = c.refusal(max) {
            return Err(anyhow!("{why}"));
        }
    }
    confirm_destruction(&p, args.yes, "up")?;
    let ui = Progress::new();
    let report = apply(
        provider.clone(),
        &desired,
        &observed,
        &p,
        UpOptions {
            no_wait: args.no_wait,
            wait_workers: args.wait_workers,
            force: false,
            max_parallel: cfg.setup.max_parallel,
        },
        &ui,
    )
    .await?;
    let head = report
        .head
        .as_ref()
        .and_then(|h| h.public_ip.clone())
        .unwrap_or_else(|| "-".into());
    crate::outln!(pr,
        "Cluster {:?} is up: 1 head + {} worker(s); {} created, {} updated, {} removed in {}. Head: {head}.",
        cfg.setup.name,
        desired.workers().saturating_sub(report.shortfall),
        report.created.len(),
        report.updated.len(),
        report.terminated.len(),
        elapsed(start.elapsed()),
    )?;
    print_next_steps(cfg, pr)?;
    if report.shortfall > 0 {
        return Err(anyhow!(
            "{} worker(s) could not be launched (not enough capacity); run `daft up` again to fill the gap",
            report.shortfall
        ));
    }
    Ok(())
}

/// `up` of a declarative back-end: plan the resource, apply it, wait for its pods.
async fn up_resource(
    cfg: &Config,
    p: std::sync::Arc<dyn DeclarativeProvider>,
    args: &Up,
    start: Instant,
    pr: &Printer,
) -> anyhow::Result<()> {
    use crate::planner::{plan_resource, render_resource_scaled, ResourceAction};
    let want = p.desired_resource().await;
    let have = p.observe_resource().await?;
    let plan = plan_resource(&cfg.setup.name, Some(&want), &have);
    crate::out!(
        pr,
        "{}",
        render_resource_scaled(
            &plan,
            &p.context(),
            Some(want.workers),
            want.scaling.as_deref()
        )
    )?;
    if let Some(line) = super::plan::autostop_line(cfg.setup.autostop) {
        crate::outln!(pr, "{line}")?;
    }
    if let ResourceAction::Refuse { reason } = &plan.action {
        return Err(anyhow!("nothing was changed: {reason}"));
    }
    if plan.is_noop() {
        crate::outln!(pr, "{}", up_to_date(&cfg.setup.name, start))?;
        return Ok(());
    }
    confirm(
        plan.destroys(),
        args.yes,
        "up",
        &format!(
            "This plan restarts the cluster's {}s. Apply it?",
            crate::model::member_word(&want.kind)
        ),
    )?;
    let ui = Progress::new();
    let pb = ui.line(
        format!("{:<8}", "cluster"),
        format!("{} {}", want.kind, want.name),
    );
    p.apply_resource(&want, &pb).await?;
    if args.no_wait {
        crate::ui::done(&pb, "applied");
        crate::outln!(pr,
            "Cluster {:?}: {} {} applied in {}; not waiting for its {}s (--no-wait). `daft list -c {}` shows them.",
            cfg.setup.name,
            want.kind,
            want.name,
            elapsed(start.elapsed()),
            crate::model::member_word(&want.kind),
            cfg.display_path
        )?;
        return Ok(());
    }
    let opts = UpOptions {
        wait_workers: args.wait_workers,
        ..UpOptions::default()
    };
    let head = p.wait_ready(&want, opts, &pb).await?;
    crate::ui::done(
        &pb,
        format!(
            "head {} {} ready",
            crate::model::member_word(&want.kind),
            head.id
        ),
    );
    crate::outln!(
        pr,
        "Cluster {:?} is up: {} {} with 1 head + {} worker(s) asked for{}; {} in {}. Head {}: {}.",
        cfg.setup.name,
        want.kind,
        want.name,
        want.workers,
        want.scaling
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        match plan.action {
            ResourceAction::Create => "created",
            _ => "updated",
        },
        elapsed(start.elapsed()),
        crate::model::member_word(&want.kind),
        head.id
    )?;
    print_next_steps(cfg, pr)?;
    Ok(())
}

/// Destructive plans need a yes: from --yes, or from the terminal.
pub fn confirm_destruction(p: &crate::planner::Plan, yes: bool, cmd: &str) -> anyhow::Result<()> {
    confirm(
        p.destroys(),
        yes,
        cmd,
        "This plan removes or replaces nodes. Apply it?",
    )
}

/// A yes for a destructive change: from --yes, or from the terminal.
pub fn confirm(destroys: bool, yes: bool, cmd: &str, question: &str) -> anyhow::Result<()> {
    if !destroys || yes {
        return Ok(());
    }
    // (The terminal is read off the async runtime's threads.)
    match tokio::task::block_in_place(|| crate::ui::confirm(question))? {
        Some(true) => Ok(()),
        Some(false) => Err(usage("nothing was changed (not confirmed)")),
        None => Err(usage(format!(
            "this plan removes or replaces what runs and there is no terminal to confirm it; run `daft {cmd} --yes` to apply it anyway"
        ))),
    }
}

/// What `up` prints when there is nothing to do.
fn up_to_date(name: &str, start: Instant) -> String {
    format!(
        "Nothing to do: cluster {name:?} is up to date ({}).",
        elapsed(start.elapsed())
    )
}

/// What to run next, once a cluster is up.
fn print_next_steps(cfg: &Config, pr: &Printer) -> anyhow::Result<()> {
    let flag = if cfg.display_path == crate::config::DEFAULT_CONFIG {
        String::new()
    } else {
        format!(" -c {}", cfg.display_path)
    };
    crate::outln!(
        pr,
        "Next: daft submit{flag} -w DIR -- python main.py   (dashboard: daft dashboard{flag})"
    )
}
