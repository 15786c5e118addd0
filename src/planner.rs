//! The planner: a pure function from (desired, observed) to a plan.
//!
//! Rules:
//! - a missing head is created; each worker group's workers are created up to its minimum and
//!   terminated above its maximum (surplus: pending before running, newest first); between the
//!   two the count is left to the autoscaler; workers of a group the config no longer has go;
//! - a node whose spec hash differs from the config is replaced, and the plan says why;
//! - a node whose setup hash differs (dependencies, versions, setup commands) is updated in place,
//!   and so is a worker that joined another head than the one the cluster keeps;
//! - terminated and shutting-down nodes are ignored; nodes of other clusters are never touched;
//! - `down` plans towards [`DesiredCluster::empty`], which also deletes supporting resources.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{
    rules_diff, support_same, DesiredCluster, DesiredResource, NodeSpec, NodeState, Observed,
    ObservedNode, ObservedResource, Role, SupportResource, WorkerGroup,
};

/// A node the plan refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    pub id: String,
    pub role: Role,
    /// A worker's group ("": the unnamed one).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub state: NodeState,
}

/// " [gpu]" after a named group's node, nothing otherwise.
fn group_suffix(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(" [{group}]")
    }
}

impl From<&ObservedNode> for NodeRef {
    fn from(n: &ObservedNode) -> Self {
        NodeRef {
            id: n.id.clone(),
            role: n.role,
            group: n.group.clone(),
            state: n.state,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    CreateSupport {
        resource: SupportResource,
    },
    /// A supporting resource whose rules drifted: `resource` carries the observed id and the
    /// wanted rules.
    UpdateSupport {
        resource: SupportResource,
        reasons: Vec<String>,
    },
    Create {
        role: Role,
        count: u32,
        /// The worker group ("": the unnamed one, or the head).
        #[serde(skip_serializing_if = "String::is_empty")]
        group: String,
    },
    Replace {
        node: NodeRef,
        reasons: Vec<String>,
    },
    Update {
        node: NodeRef,
        reasons: Vec<String>,
    },
    Keep {
        node: NodeRef,
    },
    /// A node that could not be asked: left as it is, with a warning.
    Skip {
        node: NodeRef,
        reason: String,
    },
    Terminate {
        node: NodeRef,
        reason: String,
    },
    DeleteSupport {
        resource: SupportResource,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub actions: Vec<Action>,
}

/// Counts per kind of action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: u32,
    pub update: u32,
    pub replace: u32,
    pub terminate: u32,
    pub keep: u32,
    pub unreachable: u32,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for a in &self.actions {
            match a {
                Action::Create { count, .. } => s.create += count,
                Action::CreateSupport { .. } => s.create += 1,
                Action::UpdateSupport { .. } => s.update += 1,
                Action::Update { .. } => s.update += 1,
                Action::Replace { .. } => s.replace += 1,
                Action::Terminate { .. } | Action::DeleteSupport { .. } => s.terminate += 1,
                Action::Keep { .. } => s.keep += 1,
                Action::Skip { .. } => s.unreachable += 1,
            }
        }
        s
    }
    /// Nothing to change (unreachable nodes are left as they are).
    pub fn is_noop(&self) -> bool {
        self.actions
            .iter()
            .all(|a| matches!(a, Action::Keep { .. } | Action::Skip { .. }))
    }
    /// The head, when it could not be asked.
    pub fn unreachable_head(&self) -> Option<(&NodeRef, &str)> {
        self.actions.iter().find_map(|a| match a {
            Action::Skip { node, reason } if node.role == Role::Head => {
                Some((node, reason.as_str()))
            }
            _ => None,
        })
    }
    /// Anything removed or replaced (asks for confirmation).
    pub fn destroys(&self) -> bool {
        self.actions.iter().any(|a| {
            matches!(
                a,
                Action::Replace { .. } | Action::Terminate { .. } | Action::DeleteSupport { .. }
            )
        })
    }
}

/// Order in which nodes are kept: matching spec first, then running before pending before stopped,
/// then oldest first (so the surplus is the pending and the newest), then by id for determinism.
fn keep_order(spec_hash: &str) -> impl Fn(&&ObservedNode, &&ObservedNode) -> Ordering + '_ {
    move |a, b| {
        let rank = |n: &ObservedNode| match n.state {
            NodeState::Running => 0,
            NodeState::Pending | NodeState::Unreachable => 1,
            _ => 2,
        };
        (a.spec_hash != spec_hash)
            .cmp(&(b.spec_hash != spec_hash))
            .then(rank(a).cmp(&rank(b)))
            .then(a.created.cmp(&b.created))
            .then(a.id.cmp(&b.id))
    }
}

/// Why a node must be replaced, or None when its launch spec matches and it can run.
fn replace_reasons(spec: &NodeSpec, hash: &str, node: &ObservedNode) -> Option<Vec<String>> {
    let mut reasons = Vec::new();
    if node.spec_hash != hash {
        for (k, want) in &spec.launch {
            match node.launch.get(k) {
                Some(have) if have == want => {}
                Some(have) => reasons.push(format!("{k} {have} → {want}")),
                None => reasons.push(format!("{k} (unknown) → {want}")),
            }
        }
        if reasons.is_empty() {
            reasons.push(format!(
                "launch settings changed (spec {} → {hash})",
                node.spec_hash
            ));
        }
    }
    if matches!(node.state, NodeState::Stopped | NodeState::Stopping) {
        reasons.push(format!("node is {}", node.state.title().to_lowercase()));
    }
    (!reasons.is_empty()).then_some(reasons)
}

/// Compute the plan. Pure: no I/O, deterministic for a given input.
pub fn plan(desired: &DesiredCluster, observed: &Observed) -> Plan {
    let mut actions = Vec::new();
    let mine: Vec<&ObservedNode> = observed
        .alive()
        .filter(|n| n.cluster == desired.name)
        .collect();

    for r in &desired.support {
        match observed.support.iter().find(|o| support_same(o, r)) {
            None => actions.push(Action::CreateSupport {
                resource: r.clone(),
            }),
            Some(o) => {
                if let (Some(want), Some(have)) = (&r.rules, &o.rules) {
                    let (allow, revoke) = rules_diff(want, have);
                    let mut reasons: Vec<String> =
                        allow.iter().map(|w| format!("allow {w}")).collect();
                    reasons.extend(revoke.iter().map(|h| format!("revoke {h}")));
                    if !reasons.is_empty() {
                        actions.push(Action::UpdateSupport {
                            resource: SupportResource {
                                id: o.id.clone(),
                                ..r.clone()
                            },
                            reasons,
                        });
                    }
                }
            }
        }
    }

    // Head.
    let mut heads: Vec<&ObservedNode> = mine
        .iter()
        .copied()
        .filter(|n| n.role == Role::Head)
        .collect();
    let mut terminations = Vec::new();
    // Some(id): the head the cluster keeps; None: a new head (or none at all).
    let mut kept_head: Option<String> = None;
    let mut head_is_new = false;
    match &desired.head {
        None => {
            for h in heads {
                terminations.push(Action::Terminate {
                    node: h.into(),
                    reason: "cluster is going down".into(),
                });
            }
        }
        Some(spec) => {
            let hash = spec.hash();
            heads.sort_by(keep_order(&hash));
            let mut it = heads.into_iter();
            match it.next() {
                None => {
                    actions.push(Action::Create {
                        role: Role::Head,
                        count: 1,
                        group: String::new(),
                    });
                    head_is_new = true;
                }
                Some(h) if h.state == NodeState::Unreachable => {
                    kept_head = Some(h.id.clone());
                    actions.push(Action::Skip {
                        node: h.into(),
                        reason: h.unreachable_reason().unwrap_or_default().to_string(),
                    });
                }
                Some(h) => match replace_reasons(spec, &hash, h) {
                    Some(reasons) => {
                        actions.push(Action::Replace {
                            node: h.into(),
                            reasons,
                        });
                        head_is_new = true;
                    }
                    None => {
                        kept_head = Some(h.id.clone());
                        if h.setup_hash.as_deref() != Some(desired.setup_hash.as_str()) {
                            actions.push(Action::Update {
                                node: h.into(),
                                reasons: vec![setup_reason(h)],
                            });
                        } else {
                            actions.push(Action::Keep { node: h.into() });
                        }
                    }
                },
            }
            for extra in it {
                terminations.push(Action::Terminate {
                    node: extra.into(),
                    reason: "a second head".into(),
                });
            }
        }
    }

    // Workers, group by group; then the workers of no group the config has.
    let joins = Joins {
        kept_head: kept_head.as_deref(),
        head_is_new,
    };
    for g in &desired.groups {
        plan_group(g, desired, &mine, joins, &mut actions, &mut terminations);
    }
    let mut orphans: Vec<&ObservedNode> = mine
        .iter()
        .copied()
        .filter(|n| n.role == Role::Worker && desired.group(&n.group).is_none())
        .collect();
    orphans.sort_by(surplus_order);
    for o in orphans {
        let reason = if desired.head.is_none() {
            "cluster is going down".to_string()
        } else if o.group.is_empty() {
            "in no worker group of the config".to_string()
        } else {
            format!("worker group {:?} is no longer in the config", o.group)
        };
        terminations.push(Action::Terminate {
            node: o.into(),
            reason,
        });
    }
    actions.extend(terminations);

    for r in &observed.support {
        if !desired.support.iter().any(|d| support_same(d, r)) {
            actions.push(Action::DeleteSupport {
                resource: r.clone(),
            });
        }
    }
    Plan {
        cluster: desired.name.clone(),
        actions,
    }
}

/// What a worker is checked against: the head the cluster keeps, or a new one.
#[derive(Clone, Copy)]
struct Joins<'a> {
    kept_head: Option<&'a str>,
    head_is_new: bool,
}

/// Surplus in the order it goes: pending before running, newest first.
fn surplus_order(a: &&ObservedNode, b: &&ObservedNode) -> Ordering {
    let pending = |n: &ObservedNode| n.state != NodeState::Pending;
    pending(a)
        .cmp(&pending(b))
        .then(b.created.cmp(&a.created))
        .then(a.id.cmp(&b.id))
}

/// One worker group: its nodes kept, updated or replaced, created up to its minimum, its
/// surplus above its maximum terminated (between the two, the count is the autoscaler's).
fn plan_group(
    g: &WorkerGroup,
    desired: &DesiredCluster,
    mine: &[&ObservedNode],
    joins: Joins<'_>,
    actions: &mut Vec<Action>,
    terminations: &mut Vec<Action>,
) {
    let hash = g.spec.hash();
    let mut workers: Vec<&ObservedNode> = mine
        .iter()
        .copied()
        .filter(|n| n.role == Role::Worker && n.group == g.name)
        .collect();
    workers.sort_by(keep_order(&hash));
    let mut surplus: Vec<&ObservedNode> = if workers.len() > g.max as usize {
        workers.split_off(g.max as usize)
    } else {
        vec![]
    };
    for w in &workers {
        if let Some(reason) = w.unreachable_reason() {
            actions.push(Action::Skip {
                node: (*w).into(),
                reason: reason.to_string(),
            });
            continue;
        }
        if let Some(reasons) = replace_reasons(&g.spec, &hash, w) {
            actions.push(Action::Replace {
                node: (*w).into(),
                reasons,
            });
            continue;
        }
        let mut reasons = Vec::new();
        if w.setup_hash.as_deref() != Some(desired.setup_hash.as_str()) {
            reasons.push(setup_reason(w));
        }
        match joins.kept_head {
            _ if joins.head_is_new => reasons.push("the head is new: rejoin it".into()),
            Some(h) if w.joined_head.as_deref() != Some(h) => {
                reasons.push(format!("joined another head: rejoin {h}"))
            }
            _ => {}
        }
        if reasons.is_empty() {
            actions.push(Action::Keep { node: (*w).into() });
        } else {
            actions.push(Action::Update {
                node: (*w).into(),
                reasons,
            });
        }
    }
    if g.min as usize > workers.len() {
        actions.push(Action::Create {
            role: Role::Worker,
            count: g.min - workers.len() as u32,
            group: g.name.clone(),
        });
    }
    surplus.sort_by(surplus_order);
    for s in surplus {
        let reason = if g.min == g.max {
            format!("surplus ({} wanted)", g.max)
        } else {
            format!("surplus (at most {} wanted)", g.max)
        };
        terminations.push(Action::Terminate {
            node: s.into(),
            reason,
        });
    }
}

/// Why a node that was never recorded as set up is updated.
pub const NOT_SET_UP: &str = "not set up yet";

fn setup_reason(n: &ObservedNode) -> String {
    match &n.setup_hash {
        None => NOT_SET_UP.into(),
        Some(_) => "setup changed (dependencies, versions or setup_commands)".into(),
    }
}

/// The plan as a person reads it, like `terraform plan`.
pub fn render(plan: &Plan, context: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Plan for cluster {:?} ({context}):", plan.cluster);
    if plan.actions.is_empty() {
        let _ = writeln!(out, "  (nothing exists and nothing is wanted)");
    }
    for a in &plan.actions {
        let line = match a {
            Action::CreateSupport { resource } => {
                format!("  + create     {:<8} {}", resource.kind, resource.name)
            }
            Action::UpdateSupport { resource, reasons } => format!(
                "  ~ update     {:<8} {}  ({})",
                resource.kind,
                resource.name,
                reasons.join("; ")
            ),
            Action::Create { role, count, group } => {
                let what = if *count == 1 {
                    format!("1 {}", role.as_str())
                } else {
                    format!("{count} {}s", role.as_str())
                };
                format!(
                    "  + create     {:<8} {what}{}",
                    role.as_str(),
                    group_suffix(group)
                )
            }
            Action::Replace { node, reasons } => {
                format!(
                    "  ± replace    {:<8} {}{}  ({})",
                    node.role.as_str(),
                    node.id,
                    group_suffix(&node.group),
                    reasons.join("; ")
                )
            }
            Action::Update { node, reasons } => {
                format!(
                    "  ~ update     {:<8} {}{}  ({})",
                    node.role.as_str(),
                    node.id,
                    group_suffix(&node.group),
                    reasons.join("; ")
                )
            }
            Action::Keep { node } => {
                format!(
                    "  = keep       {:<8} {}{}",
                    node.role.as_str(),
                    node.id,
                    group_suffix(&node.group)
                )
            }
            Action::Skip { node, reason } => format!(
                "  ! unreachable {:<7} {}{}  ({reason}; left as it is)",
                node.role.as_str(),
                node.id,
                group_suffix(&node.group)
            ),
            Action::Terminate { node, reason } => format!(
                "  - terminate  {:<8} {}{}  ({}, {})",
                node.role.as_str(),
                node.id,
                group_suffix(&node.group),
                node.state.title().to_lowercase(),
                reason
            ),
            Action::DeleteSupport { resource } => format!(
                "  - delete     {:<8} {}{}",
                resource.kind,
                resource.name,
                resource
                    .id
                    .as_ref()
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default()
            ),
        };
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let s = plan.summary();
    if let Some((head, why)) = plan.unreachable_head() {
        // Not "no changes": nothing could be observed behind the head.
        let _ = writeln!(
            out,
            "Incomplete: the head {} could not be observed ({why}); `up` can set nothing up without it.",
            head.id
        );
    } else if plan.is_noop() {
        let unreachable = if s.unreachable > 0 {
            format!(", {} unreachable", s.unreachable)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "No changes: {} node(s) up to date{unreachable}. Nothing to do.",
            s.keep
        );
    } else {
        let _ = writeln!(
            out,
            "Plan: {} to create, {} to update, {} to replace, {} to remove, {} unchanged{}.",
            s.create,
            s.update,
            s.replace,
            s.terminate,
            s.keep,
            if s.unreachable > 0 {
                format!(", {} unreachable", s.unreachable)
            } else {
                String::new()
            }
        );
    }
    out
}

/// What `up` or `down` does to a declared resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ResourceAction {
    Create,
    /// The live resource differs: what changes ("worker replicas 2 → 4").
    Update {
        reasons: Vec<String>,
    },
    Keep,
    Delete,
    /// Nothing exists and nothing is wanted.
    Absent,
    /// The resource exists but daft did not create it: left alone, and why.
    Refuse {
        reason: String,
    },
}

/// The plan of a declarative back-end: one action on one resource, with the pods it has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourcePlan {
    pub cluster: String,
    pub kind: String,
    pub name: String,
    pub action: ResourceAction,
    /// The pods observed now (node, role, phase).
    pub pods: Vec<NodeRef>,
}

impl ResourcePlan {
    pub fn is_noop(&self) -> bool {
        matches!(self.action, ResourceAction::Keep | ResourceAction::Absent)
    }
    /// Deletes the resource, or changes it in a way that restarts its pods.
    pub fn destroys(&self) -> bool {
        match &self.action {
            ResourceAction::Delete => true,
            ResourceAction::Update { reasons } => reasons
                .iter()
                .any(|r| !r.starts_with("worker replicas") && !r.starts_with("setup")),
            _ => false,
        }
    }
}

/// Plan a declared resource: `want` None is `down`. Pure.
pub fn plan_resource(
    cluster: &str,
    want: Option<&DesiredResource>,
    have: &ObservedResource,
) -> ResourcePlan {
    let pods: Vec<NodeRef> = have.pods.iter().map(NodeRef::from).collect();
    let action = match (want, have.exists) {
        (_, true) if !have.managed_by_daft => ResourceAction::Refuse {
            reason: format!(
                "{} {:?} exists but was not created by daft (no app.kubernetes.io/managed-by=daft label): \
                 choose another cluster name, or use it as it is with `existing = {:?}` in [setup.kubernetes]",
                have.kind, have.name, have.name
            ),
        },
        (None, true) => ResourceAction::Delete,
        (None, false) => ResourceAction::Absent,
        (Some(_), false) => ResourceAction::Create,
        (Some(w), true) => {
            let mut reasons = Vec::new();
            let keys: std::collections::BTreeSet<&String> =
                w.settings.keys().chain(have.settings.keys()).collect();
            for k in keys {
                let new = w.settings.get(k);
                let old = have.settings.get(k);
                if new != old {
                    let show = |v: Option<&String>| match v {
                        Some(v) if !v.is_empty() => v.clone(),
                        _ => "(none)".to_string(),
                    };
                    reasons.push(format!("{k} {} → {}", show(old), show(new)));
                }
            }
            if have.deleting {
                reasons.insert(0, "it is being deleted: created again once gone".into());
            }
            if reasons.is_empty() {
                ResourceAction::Keep
            } else {
                ResourceAction::Update { reasons }
            }
        }
    };
    ResourcePlan {
        cluster: cluster.to_string(),
        kind: want
            .map(|w| w.kind.clone())
            .unwrap_or_else(|| have.kind.clone()),
        name: want
            .map(|w| w.name.clone())
            .unwrap_or_else(|| have.name.clone()),
        action,
        pods,
    }
}

/// A resource plan as a person reads it.
pub fn render_resource(plan: &ResourcePlan, context: &str, workers: Option<u32>) -> String {
    render_resource_scaled(plan, context, workers, None)
}

/// [`render_resource`] of a resource whose workers Ray's autoscaler counts (`scaling`:
/// "autoscaled 0–8").
pub fn render_resource_scaled(
    plan: &ResourcePlan,
    context: &str,
    workers: Option<u32>,
    scaling: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Plan for cluster {:?} ({context}):", plan.cluster);
    let what = format!("{} {}", plan.kind, plan.name);
    let scaled = scaling.map(|s| format!(", {s}")).unwrap_or_default();
    let line = match &plan.action {
        ResourceAction::Create => format!(
            "  + create     {what}  (1 head + {} worker(s){scaled})",
            workers.unwrap_or(0)
        ),
        ResourceAction::Update { reasons } => {
            format!("  ~ update     {what}  ({})", reasons.join("; "))
        }
        ResourceAction::Keep => format!("  = keep       {what}"),
        ResourceAction::Delete => format!(
            "  - delete     {what}  (and its {} {}(s))",
            plan.pods.len(),
            crate::model::member_word(&plan.kind)
        ),
        ResourceAction::Absent => "  (nothing exists and nothing is wanted)".to_string(),
        ResourceAction::Refuse { reason } => format!("  ! leave      {what}  ({reason})"),
    };
    let _ = writeln!(out, "{line}");
    for p in &plan.pods {
        let _ = writeln!(
            out,
            "      {} {:<6} {}  ({})",
            crate::model::member_word(&plan.kind),
            p.role.as_str(),
            p.id,
            p.state.title().to_lowercase()
        );
    }
    let summary = match &plan.action {
        ResourceAction::Create => "Plan: 1 to create.",
        ResourceAction::Update { .. } => "Plan: 1 to update.",
        ResourceAction::Keep => "Plan: nothing to change.",
        ResourceAction::Delete => "Plan: 1 to delete.",
        ResourceAction::Absent => "Plan: nothing to change.",
        ResourceAction::Refuse { .. } => "Plan: nothing daft may change.",
    };
    let _ = writeln!(out, "{summary}");
    out
}
