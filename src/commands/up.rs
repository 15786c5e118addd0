//! `daft up`: print the plan, then apply it.

use std::time::Instant;

use anyhow::anyhow;

use crate::apply::apply;
use crate::cli::UpArgs;
use crate::error::usage;
use crate::planner::{plan, render};
use crate::provider::UpOptions;
use crate::ui::{confirm, elapsed, Progress};

pub async fn run(args: &UpArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let cfg = super::load(&args.config.config)?;
    let (provider, observed) = super::observe(&cfg, args.key.identity.clone()).await?;
    let desired = provider.desired();
    let p = plan(&desired, &observed);
    print!("{}", render(&p, &provider.context()));
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
