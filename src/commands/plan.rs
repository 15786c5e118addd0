//! `daft plan`: what `up` would change, as a person reads it or as JSON.

use crate::cli::{OutputFormat, PlanArgs};
use crate::planner::{plan, plan_resource, render, render_resource_scaled};
use crate::printer::Printer;
use crate::provider::Backend;

pub async fn run(args: &PlanArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let provider = match crate::provider::backend(&cfg, args.key.identity.clone()).await? {
        Backend::Nodes(p) => p,
        Backend::Declarative(p) => {
            let want = p.desired_resource().await;
            let have = p.observe_resource().await?;
            let plan = plan_resource(&cfg.setup.name, Some(&want), &have);
            match pr.format() {
                OutputFormat::Text => crate::out!(
                    pr,
                    "{}",
                    render_resource_scaled(
                        &plan,
                        &p.context(),
                        Some(want.workers),
                        want.scaling.as_deref()
                    )
                )
                .and_then(|_| match autostop_line(cfg.setup.autostop) {
                    Some(line) => crate::outln!(pr, "{line}"),
                    None => Ok(()),
                })?,
                OutputFormat::Json => {
                    let v = serde_json::json!({
                        "cluster": plan.cluster,
                        "context": p.context(),
                        "resource": plan,
                        "noop": plan.is_noop(),
                        "autostop_seconds": cfg.setup.autostop.map(|d| d.as_secs()),
                    });
                    pr.json(&v)?;
                }
            }
            return Ok(());
        }
        Backend::ReadOnly(p, why) => {
            match pr.format() {
                OutputFormat::Text => crate::outln!(
                    pr,
                    "Plan for cluster {:?} ({}): nothing daft may change: {why}",
                    cfg.setup.name,
                    p.context()
                )?,
                OutputFormat::Json => pr.json(&serde_json::json!({
                        "cluster": cfg.setup.name, "context": p.context(), "read_only": why, "noop": true,
                    }))?,
            }
            return Ok(());
        }
    };
    let observed = provider.query().await?;
    let desired = provider.desired().await;
    let p = plan(&desired, &observed);
    let cost = provider.estimate(&desired).await;
    match pr.format() {
        OutputFormat::Text => {
            crate::out!(pr, "{}", render(&p, &provider.context()))?;
            crate::out!(
                pr,
                "{}",
                after_plan(
                    cfg.setup.autostop,
                    cost.as_ref(),
                    provider.max_hourly_cost(),
                    &observed
                )
            )?;
        }
        OutputFormat::Json => {
            let v = serde_json::json!({
                "cluster": p.cluster,
                "context": provider.context(),
                "actions": p.actions,
                "summary": p.summary(),
                "noop": p.is_noop(),
                "complete": p.unreachable_head().is_none(),
                "autostop_seconds": cfg.setup.autostop.map(|d| d.as_secs()),
                "cost": cost.as_ref().map(|c| serde_json::json!({
                    "usd_per_hour": c.per_hour(),
                    "known_usd_per_hour": c.known_per_hour(),
                    "max_hourly_cost": provider.max_hourly_cost(),
                    "nodes": c.lines,
                })),
            });
            pr.json(&v)?;
        }
    }
    // A plan that could not see the head is no plan: say so, exit 1 (as `up` would fail).
    if let Some((head, why)) = p.unreachable_head() {
        return Err(anyhow::anyhow!(
            "the plan is incomplete: the head {} of cluster {:?} could not be observed ({why})",
            head.id,
            cfg.setup.name
        ));
    }
    Ok(())
}

/// What a plan says of the config's autostop: how long the cluster may sit idle before it takes
/// itself down (nothing when it never does).
pub fn autostop_line(autostop: Option<std::time::Duration>) -> Option<String> {
    autostop.map(|d| {
        format!(
            "Autostop: idle {} (no job, no Ray task or actor), the cluster takes itself down; `daft autostop` changes it.",
            humantime::format_duration(d)
        )
    })
}

/// What `plan` and `up` print after a plan's actions: the autostop, the cost (with the
/// config's limit) where the back-end has prices, and the nodes the back-end took back.
pub fn after_plan(
    autostop: Option<std::time::Duration>,
    cost: Option<&crate::cost::Estimate>,
    max: Option<f64>,
    observed: &crate::model::Observed,
) -> String {
    let mut s = String::new();
    if let Some(line) = autostop_line(autostop) {
        s.push_str(&line);
        s.push('\n');
    }
    if let Some(c) = cost {
        s.push_str(&cost_text(c, max));
    }
    for line in interruptions(observed) {
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// A plan's cost block, with the config's limit when it has one.
pub fn cost_text(c: &crate::cost::Estimate, max: Option<f64>) -> String {
    let mut s = c.render();
    if let Some(m) = max {
        s.push_str(&format!(
            "  max_hourly_cost {}/h: {}\n",
            crate::cost::money(m),
            match c.within(m) {
                Some(true) => "within it",
                Some(false) => "OVER it (`daft up` refuses)",
                None => "cannot be checked (`daft up` refuses)",
            }
        ));
    }
    s
}

/// A line for each node the back-end took back (an EC2 spot interruption): the plan replaces
/// it like any missing node, and says why it is missing.
pub fn interruptions(observed: &crate::model::Observed) -> Vec<String> {
    observed
        .nodes
        .iter()
        .filter(|n| !n.state.is_alive())
        .filter_map(|n| {
            let why = n.detail.get("interrupted")?;
            let group = if n.group.is_empty() {
                String::new()
            } else {
                format!(" [{}]", n.group)
            };
            Some(format!(
                "Note: {} {}{group} ({}) was {why}; a missing node is launched again by `daft up`.",
                n.role.as_str(),
                n.id,
                n.detail.get("type").map(String::as_str).unwrap_or("?"),
            ))
        })
        .collect()
}
