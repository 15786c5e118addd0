//! Applying a plan through a provider: independent actions run concurrently, each node has a
//! progress line, and the caller gets a report for its one-line summary.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use futures::stream::{self, StreamExt};

use crate::model::{DesiredCluster, Observed, ObservedNode, Role};
use crate::planner::{Action, Plan};
use crate::provider::{LaunchRequest, NodeProvider, UpOptions};
use crate::ui::{done, Progress};

/// What an apply did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub terminated: Vec<String>,
    pub support_created: Vec<String>,
    pub support_deleted: Vec<String>,
    /// Nodes asked for but not launched (partial capacity); the next `up` fills the gap.
    pub shortfall: u32,
    pub head: Option<ObservedNode>,
}

/// The error for a plan whose head could not be asked: nothing can be set up without it.
pub fn unreachable_head(id: &str, why: &str) -> anyhow::Error {
    anyhow!(
        "the head {id} cannot be reached ({why}); nothing can be set up without it. \
         Bring the host back, or point [setup.ssh] head at another host"
    )
}

/// Apply `plan` (computed from `observed`) so the cluster becomes `desired`.
pub async fn apply(
    provider: Arc<dyn NodeProvider>,
    desired: &DesiredCluster,
    observed: &Observed,
    plan: &Plan,
    opts: UpOptions,
    ui: &Progress,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let find = |id: &str| observed.nodes.iter().find(|n| n.id == id).cloned();
    let connect = !(opts.no_wait && provider.self_starting());

    // 1. Supporting resources first: nodes are launched into them.
    for a in &plan.actions {
        if let Action::UpdateSupport { resource, reasons } = a {
            let pb = ui.line(
                format!("{:<8}", resource.kind),
                format!("updating {} ({})", resource.name, reasons.join("; ")),
            );
            provider.update_support(resource, &pb).await?;
            done(&pb, format!("updated {}", resource.name));
        }
        if let Action::CreateSupport { resource } = a {
            let pb = ui.line(
                format!("{:<8}", resource.kind),
                format!("creating {}", resource.name),
            );
            let r = provider.create_support(resource).await?;
            report
                .support_created
                .push(r.id.clone().unwrap_or(r.name.clone()));
            done(
                &pb,
                format!("created {}", r.id.as_deref().unwrap_or(&r.name)),
            );
        }
    }

    // 2. Terminations (surplus and replaced nodes) run alongside everything else, unless the
    //    replacements take the same places (see below).
    let mut doomed: Vec<ObservedNode> = Vec::new();
    for a in &plan.actions {
        match a {
            Action::Terminate { node, .. } | Action::Replace { node, .. } => {
                if let Some(n) = find(&node.id) {
                    doomed.push(n);
                }
            }
            _ => {}
        }
    }
    let terminate = {
        let provider = provider.clone();
        let doomed = doomed.clone();
        let pb =
            (!doomed.is_empty()).then(|| ui.line("remove  ", format!("{} node(s)", doomed.len())));
        async move {
            if doomed.is_empty() {
                return anyhow::Ok(Vec::new());
            }
            let pb = pb.expect("line exists");
            provider.terminate(&doomed, opts.force, &pb).await?;
            done(
                &pb,
                format!(
                    "removed {}",
                    doomed
                        .iter()
                        .map(|n| n.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            Ok(doomed.iter().map(|n| n.id.clone()).collect())
        }
    };

    let seen: Vec<String> = observed.nodes.iter().map(|n| n.id.clone()).collect();
    // Places a new node must not take: live nodes that stay.
    let taken: Vec<String> = observed
        .alive()
        .filter(|n| !doomed.iter().any(|d| d.id == n.id))
        .map(|n| n.id.clone())
        .collect();

    let build = async {
        // 3. The head: launched (or found) first, so workers know where to join.
        let head_spec = match desired.spec(Role::Head) {
            Some(s) => s,
            None => return anyhow::Ok(None),
        };
        let mut head: Option<ObservedNode> = None;
        let mut head_created = false;
        // (line, why) when the head must be set up in this apply.
        let mut head_setup: Option<(indicatif::ProgressBar, &'static str)> = None;
        for a in &plan.actions {
            match a {
                Action::Create {
                    role: Role::Head, ..
                }
                | Action::Replace {
                    node:
                        crate::planner::NodeRef {
                            role: Role::Head, ..
                        },
                    ..
                } => {
                    let pb = ui.line("head    ", "launching");
                    let req = LaunchRequest {
                        role: Role::Head,
                        count: 1,
                        spec: head_spec,
                        setup_hash: &desired.setup_hash,
                        head: None,
                        taken: &taken,
                        seen: &seen,
                    };
                    let mut nodes = provider
                        .run_instances(&req, &pb)
                        .await
                        .context("launching the head failed")?;
                    let h = nodes.pop().ok_or_else(|| {
                        anyhow!("the provider launched no head (no capacity?); run `daft up` again")
                    })?;
                    pb.set_prefix(format!("head     {}", h.id));
                    head_created = true;
                    if connect {
                        head_setup = Some((pb, "ready"));
                    } else {
                        done(&pb, "running (not waited for)");
                    }
                    head = Some(h);
                }
                Action::Update { node, reasons } if node.role == Role::Head => {
                    let n = find(&node.id).ok_or_else(|| anyhow!("head {} vanished", node.id))?;
                    let pb = ui.line(
                        format!("head     {}", n.id),
                        format!("updating ({})", reasons.join("; ")),
                    );
                    head_setup = Some((pb, "updated"));
                    head = Some(n);
                }
                Action::Keep { node } if node.role == Role::Head => {
                    head = find(&node.id);
                }
                Action::Skip { node, reason } if node.role == Role::Head => {
                    return Err(unreachable_head(&node.id, reason));
                }
                _ => {}
            }
        }
        let head = head.ok_or_else(|| anyhow!("no head after applying the plan"))?;
        let head_updated = head_setup.is_some() && !head_created;

        // 4. The head's set-up and the workers' launch and set-up run together: a worker's
        //    bootstrap waits for the head's Ray port before it joins.
        let head_task = async {
            match head_setup {
                None => anyhow::Ok(head.clone()),
                Some((pb, what)) => {
                    let r = provider.setup_node(&head, &head, &pb).await;
                    done(&pb, if r.is_ok() { what } else { "failed" });
                    r
                }
            }
        };
        let workers_task = async {
            let replaced_workers = plan
                .actions
                .iter()
                .filter(|a| matches!(a, Action::Replace { node, .. } if node.role == Role::Worker))
                .count() as u32;
            let new_workers: u32 = plan
                .actions
                .iter()
                .map(|a| match a {
                    Action::Create {
                        role: Role::Worker,
                        count,
                    } => *count,
                    _ => 0,
                })
                .sum::<u32>()
                + replaced_workers;
            let mut launched = Vec::new();
            let mut shortfall = 0;
            if new_workers > 0 {
                let pb = ui.line("workers ", format!("launching {new_workers}"));
                let req = LaunchRequest {
                    role: Role::Worker,
                    count: new_workers,
                    spec: &desired.worker,
                    setup_hash: &desired.setup_hash,
                    head: Some(&head),
                    taken: &taken,
                    seen: &seen,
                };
                launched = provider
                    .run_instances(&req, &pb)
                    .await
                    .context("launching workers failed")?;
                shortfall = new_workers.saturating_sub(launched.len() as u32);
                done(&pb, format!("launched {}", launched.len()));
            }
            let set_up_workers = connect && (!provider.self_starting() || opts.wait_workers);
            let mut jobs = Vec::new();
            if set_up_workers {
                jobs.extend(launched.iter().map(|n| (n.clone(), "joining".to_string())));
            }
            for a in &plan.actions {
                if let Action::Update { node, reasons } = a {
                    if node.role == Role::Worker {
                        if let Some(n) = find(&node.id) {
                            jobs.push((n, format!("updating ({})", reasons.join("; "))));
                        }
                    }
                }
            }
            for a in &plan.actions {
                if let Action::Skip { node, reason } = a {
                    if node.role == Role::Worker {
                        let pb = ui.line(format!("worker   {}", node.id), "");
                        done(&pb, format!("skipped: unreachable ({reason})"));
                    }
                }
            }
            // At most max_parallel at once; the first failure stops the rest (dropped).
            let mut setups = stream::iter(jobs.iter().map(|(n, what)| {
                let provider = provider.clone();
                let head = head.clone();
                let pb = ui.line(format!("worker   {}", n.id), what.clone());
                async move {
                    let r = provider.setup_node(n, &head, &pb).await;
                    done(&pb, if r.is_ok() { "ready" } else { "failed" });
                    r
                }
            }))
            .buffer_unordered(opts.parallel());
            let mut updated = Vec::new();
            while let Some(r) = setups.next().await {
                updated.push(r?.id);
            }
            anyhow::Ok((launched, updated, shortfall))
        };
        // A failed head cancels the workers' work at once (and the other way round).
        let (head, (launched, mut updated, shortfall)) = tokio::try_join!(head_task, workers_task)?;
        if head_updated {
            updated.insert(0, head.id.clone());
        }
        anyhow::Ok(Some((head, head_created, launched, updated, shortfall)))
    };

    let replacing = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::Replace { .. }));
    let (terminated, built) = if replacing && provider.replaces_in_place() {
        // The replacements come back in the same places: stop the old nodes first.
        match terminate.await {
            Ok(t) => (Ok(t), build.await),
            Err(e) => (Err(e), Ok(None)),
        }
    } else {
        tokio::join!(terminate, build)
    };
    let terminated = terminated?;
    report.terminated = terminated;
    if let Some((head, head_created, launched, updated, shortfall)) = built? {
        if head_created {
            report.created.push(head.id.clone());
        }
        report.created.extend(launched.iter().map(|n| n.id.clone()));
        report.updated = updated
            .into_iter()
            .filter(|id| !report.created.contains(id))
            .collect();
        report.shortfall = shortfall;
        report.head = Some(head);
    }

    // 5. Supporting resources last, once their nodes are gone.
    for a in &plan.actions {
        if let Action::DeleteSupport { resource } = a {
            let pb = ui.line(
                format!("{:<8}", resource.kind),
                format!("deleting {}", resource.name),
            );
            provider.delete_support(resource, &pb).await?;
            report
                .support_deleted
                .push(resource.id.clone().unwrap_or(resource.name.clone()));
            done(&pb, "deleted");
        }
    }
    Ok(report)
}
