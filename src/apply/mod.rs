//! Applying a plan through a provider: independent actions run concurrently, each node has a
//! progress line, and the caller gets a report for its one-line summary.
//!
//! The plan is read into its phases first ([`phases`], pure); each phase below is one function
//! (supporting resources before, terminations, the head and the workers, supporting resources
//! after); what the user sees is in [`view`].

mod phases;
mod view;

use std::sync::Arc;

use anyhow::{anyhow, Context};
use futures::stream::{self, StreamExt};

pub use phases::{HeadStep, Phases, SupportStep};
use view::View;

use crate::model::{DesiredCluster, Observed, ObservedNode, Role};
use crate::planner::Plan;
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

/// Everything one apply shares between its phases.
struct Run<'a> {
    provider: Arc<dyn NodeProvider>,
    desired: &'a DesiredCluster,
    observed: &'a Observed,
    opts: UpOptions,
    view: View<'a>,
    /// Nodes are connected to and set up (not `--no-wait` on a self-starting provider).
    connect: bool,
    /// Ids seen by the observation, and the live ones that stay (places a new node must not take).
    seen: Vec<String>,
    taken: Vec<String>,
}

/// What the head-and-workers phase built.
struct Built {
    head: ObservedNode,
    head_created: bool,
    launched: Vec<ObservedNode>,
    updated: Vec<String>,
    shortfall: u32,
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
    let phases = Phases::of(plan, observed);
    let run = Run {
        connect: !(opts.no_wait && provider.self_starting()),
        provider,
        desired,
        observed,
        opts,
        view: View::new(ui),
        seen: observed.nodes.iter().map(|n| n.id.clone()).collect(),
        taken: observed
            .alive()
            .filter(|n| !phases.doomed.iter().any(|d| d.id == n.id))
            .map(|n| n.id.clone())
            .collect(),
    };
    let mut report = Report {
        support_created: run.support_before(&phases.support_before).await?,
        ..Report::default()
    };

    // Terminations run alongside the head and the workers, unless the replacements take the
    // same places: then the old nodes stop first.
    let (terminated, built) = if phases.replacing && run.provider.replaces_in_place() {
        match run.terminate(&phases.doomed).await {
            Ok(t) => (Ok(t), run.build(&phases).await),
            Err(e) => (Err(e), Ok(None)),
        }
    } else {
        tokio::join!(run.terminate(&phases.doomed), run.build(&phases))
    };
    report.terminated = terminated?;
    if let Some(b) = built? {
        if b.head_created {
            report.created.push(b.head.id.clone());
        }
        report
            .created
            .extend(b.launched.iter().map(|n| n.id.clone()));
        report.updated = b
            .updated
            .into_iter()
            .filter(|id| !report.created.contains(id))
            .collect();
        report.shortfall = b.shortfall;
        report.head = Some(b.head);
    }

    report.support_deleted = run.support_after(&phases.support_after).await?;
    Ok(report)
}

impl Run<'_> {
    fn find(&self, id: &str) -> Option<ObservedNode> {
        self.observed.nodes.iter().find(|n| n.id == id).cloned()
    }

    /// Supporting resources first: nodes are launched into them. Returns the ones created.
    async fn support_before(&self, steps: &[SupportStep<'_>]) -> anyhow::Result<Vec<String>> {
        let mut created = Vec::new();
        for step in steps {
            match step {
                SupportStep::Update { resource, reasons } => {
                    let pb = self.view.support(
                        resource,
                        format!("updating {} ({})", resource.name, reasons.join("; ")),
                    );
                    self.provider.update_support(resource, &pb).await?;
                    done(&pb, format!("updated {}", resource.name));
                }
                SupportStep::Create { resource } => {
                    let pb = self
                        .view
                        .support(resource, format!("creating {}", resource.name));
                    let r = self.provider.create_support(resource).await?;
                    let id = r.id.clone().unwrap_or(r.name.clone());
                    done(&pb, format!("created {id}"));
                    created.push(id);
                }
            }
        }
        Ok(created)
    }

    /// Surplus and replaced nodes. Returns their ids.
    async fn terminate(&self, doomed: &[ObservedNode]) -> anyhow::Result<Vec<String>> {
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        let pb = self.view.removing(doomed.len());
        self.provider
            .terminate(doomed, self.opts.force, &pb)
            .await?;
        let ids: Vec<String> = doomed.iter().map(|n| n.id.clone()).collect();
        self.view.removed(&pb, &ids);
        Ok(ids)
    }

    /// The head (launched or found first, so workers know where to join), then its set-up
    /// beside the workers' launch and set-up: a worker's bootstrap waits for the head's Ray port
    /// before it joins. None when the desired cluster has no head (`down`).
    async fn build(&self, phases: &Phases<'_>) -> anyhow::Result<Option<Built>> {
        let Some(head_spec) = self.desired.head.as_ref() else {
            return Ok(None);
        };
        // The head, and its line with the word it ends on when it is set up in this apply.
        let (head, head_created, head_setup) = match &phases.head {
            HeadStep::Launch => {
                let pb = self.view.head_launching();
                let req = LaunchRequest {
                    role: Role::Head,
                    group: "",
                    count: 1,
                    spec: head_spec,
                    setup_hash: &self.desired.setup_hash,
                    head: None,
                    taken: &self.taken,
                    seen: &self.seen,
                };
                let mut nodes = self
                    .provider
                    .run_instances(&req, &pb)
                    .await
                    .context("launching the head failed")?;
                let h = nodes.pop().ok_or_else(|| {
                    anyhow!("the provider launched no head (no capacity?); run `daft up` again")
                })?;
                self.view.head_is(&pb, &h.id);
                let setup = if self.connect {
                    Some((pb, "ready"))
                } else {
                    done(&pb, "running (not waited for)");
                    None
                };
                (Some(h), true, setup)
            }
            HeadStep::Update { id, reasons } => {
                let n = self.find(id).ok_or_else(|| anyhow!("head {id} vanished"))?;
                let pb = self
                    .view
                    .head(&n.id, format!("updating ({})", reasons.join("; ")));
                (Some(n), false, Some((pb, "updated")))
            }
            HeadStep::Keep { id } => (self.find(id), false, None),
            HeadStep::Unreachable { id, reason } => return Err(unreachable_head(id, reason)),
            HeadStep::None => (None, false, None),
        };
        let head = head.ok_or_else(|| anyhow!("no head after applying the plan"))?;
        let head_updated = head_setup.is_some() && !head_created;

        let head_task = async {
            match head_setup {
                None => anyhow::Ok(head.clone()),
                Some((pb, what)) => {
                    let r = self.provider.setup_node(&head, &head, &pb).await;
                    self.view.set_up(&pb, &r, what);
                    r
                }
            }
        };
        // A failed head cancels the workers' work at once (and the other way round).
        let (head, (launched, mut updated, shortfall)) =
            tokio::try_join!(head_task, self.workers(phases, &head))?;
        if head_updated {
            updated.insert(0, head.id.clone());
        }
        Ok(Some(Built {
            head,
            head_created,
            launched,
            updated,
            shortfall,
        }))
    }

    /// New workers launched, then they and the updated ones set up, at most `max_parallel` at
    /// once; the first failure stops the rest (dropped). Returns (launched, set up, shortfall).
    async fn workers(
        &self,
        phases: &Phases<'_>,
        head: &ObservedNode,
    ) -> anyhow::Result<(Vec<ObservedNode>, Vec<String>, u32)> {
        let mut launched = Vec::new();
        let mut shortfall = 0;
        let wanted = phases.new_worker_count();
        if wanted > 0 {
            let pb = self.view.workers(format!("launching {wanted}"));
            for (group, count) in &phases.new_workers {
                let spec = &self
                    .desired
                    .group(group)
                    .ok_or_else(|| anyhow::anyhow!("the plan launches workers of group {group:?}, which the config does not have"))?
                    .spec;
                let req = LaunchRequest {
                    role: Role::Worker,
                    group,
                    count: *count,
                    spec,
                    setup_hash: &self.desired.setup_hash,
                    head: Some(head),
                    taken: &self.taken,
                    seen: &self.seen,
                };
                let got =
                    self.provider
                        .run_instances(&req, &pb)
                        .await
                        .with_context(|| match group.as_str() {
                            "" => "launching workers failed".to_string(),
                            g => format!("launching workers of group {g} failed"),
                        })?;
                shortfall += count.saturating_sub(got.len() as u32);
                launched.extend(got);
            }
            done(&pb, format!("launched {}", launched.len()));
        }
        let set_up_new = self.connect && (!self.provider.self_starting() || self.opts.wait_workers);
        let mut jobs: Vec<(ObservedNode, String)> = Vec::new();
        if set_up_new {
            jobs.extend(launched.iter().map(|n| (n.clone(), "joining".to_string())));
        }
        jobs.extend(phases.worker_updates.iter().cloned());
        for (id, reason) in &phases.worker_skips {
            self.view.worker_skipped(id, reason);
        }
        let mut setups = stream::iter(jobs.iter().map(|(n, what)| {
            let pb = self.view.worker(&n.id, what.clone());
            async move {
                let r = self.provider.setup_node(n, head, &pb).await;
                self.view.set_up(&pb, &r, "ready");
                r
            }
        }))
        .buffer_unordered(self.opts.parallel());
        let mut set_up = Vec::new();
        while let Some(r) = setups.next().await {
            set_up.push(r?.id);
        }
        Ok((launched, set_up, shortfall))
    }

    /// Supporting resources last, once their nodes are gone. Returns the ones deleted.
    async fn support_after(
        &self,
        resources: &[&crate::model::SupportResource],
    ) -> anyhow::Result<Vec<String>> {
        let mut deleted = Vec::new();
        for resource in resources {
            let pb = self
                .view
                .support(resource, format!("deleting {}", resource.name));
            self.provider.delete_support(resource, &pb).await?;
            deleted.push(resource.id.clone().unwrap_or(resource.name.clone()));
            done(&pb, "deleted");
        }
        Ok(deleted)
    }
}
