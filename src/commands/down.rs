//! `daft down`: the plan to an empty cluster, applied.

use std::time::Instant;

use crate::apply::apply;
use crate::cli::DownArgs;
use crate::model::DesiredCluster;
use crate::planner::{plan, render};
use crate::provider::UpOptions;
use crate::ui::{elapsed, Progress};

pub async fn run(args: &DownArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let cfg = super::load(&args.config.config)?;
    let _lock = super::lock(&cfg, "down", args.lock.no_wait_lock).await?;
    let (provider, observed) = super::observe(&cfg, args.key.identity.clone()).await?;
    let desired = DesiredCluster::empty(&cfg.setup.name);
    let p = plan(&desired, &observed);
    if p.actions.is_empty() {
        println!(
            "Nothing to remove: cluster {:?} has no nodes ({}).",
            cfg.setup.name,
            provider.context()
        );
        return Ok(());
    }
    print!("{}", render(&p, &provider.context()));
    super::up::confirm_destruction(&p, args.yes, "down")?;
    let ui = Progress::new();
    let opts = UpOptions {
        force: args.force,
        max_parallel: cfg.setup.max_parallel,
        ..UpOptions::default()
    };
    let report = apply(provider, &desired, &observed, &p, opts, &ui).await?;
    println!(
        "Cluster {:?} is down: {} node(s) and {} other resource(s) removed in {}.",
        cfg.setup.name,
        report.terminated.len(),
        report.support_deleted.len(),
        elapsed(start.elapsed())
    );
    Ok(())
}
