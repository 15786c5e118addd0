//! `daft up`: print the plan, then apply it.

use std::time::Instant;

use anyhow::anyhow;

use crate::apply::apply;
use crate::cli::UpArgs;
use crate::error::usage;
use crate::planner::{plan, render, Action, NOT_SET_UP};
use crate::provider::UpOptions;
use crate::ui::{confirm, elapsed, Progress};

pub async fn run(args: &UpArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let cfg = super::load(&args.config.config)?;
    // One `up`/`down` of a cluster at a time; observed only once the lock is ours.
    let _lock = super::lock(&cfg, "up", args.lock.no_wait_lock).await?;
    let (provider, observed) = super::observe(&cfg, args.key.identity.clone()).await?;
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
    print!("{}", render(&p, &provider.context()));
    if let Some((head, why)) = p.unreachable_head() {
        return Err(crate::apply::unreachable_head(&head.id, why));
    }
    if p.is_noop() {
        println!(
            "Nothing to do: cluster {:?} is up to date ({}).",
            cfg.setup.name,
            elapsed(start.elapsed())
        );
        return Ok(());
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
    println!(
        "Cluster {:?} is up: 1 head + {} worker(s); {} created, {} updated, {} removed in {}. Head: {head}.",
        cfg.setup.name,
        desired.workers.saturating_sub(report.shortfall),
        report.created.len(),
        report.updated.len(),
        report.terminated.len(),
        elapsed(start.elapsed()),
    );
    let flag = if cfg.display_path == crate::config::DEFAULT_CONFIG {
        String::new()
    } else {
        format!(" -c {}", cfg.display_path)
    };
    println!(
        "Next: daft submit{flag} -w DIR -- python main.py   (dashboard: daft dashboard{flag})"
    );
    if report.shortfall > 0 {
        return Err(anyhow!(
            "{} worker(s) could not be launched (not enough capacity); run `daft up` again to fill the gap",
            report.shortfall
        ));
    }
    Ok(())
}

/// Destructive plans need a yes: from --yes, or from the terminal.
pub fn confirm_destruction(p: &crate::planner::Plan, yes: bool, cmd: &str) -> anyhow::Result<()> {
    if !p.destroys() || yes {
        return Ok(());
    }
    match confirm("This plan removes or replaces nodes. Apply it?")? {
        Some(true) => Ok(()),
        Some(false) => Err(usage("nothing was changed (not confirmed)")),
        None => Err(usage(format!(
            "this plan removes or replaces nodes and there is no terminal to confirm it; run `daft {cmd} --yes` to apply it anyway"
        ))),
    }
}
