//! The provider-agnostic model: what the config wants and what a provider observes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Head,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Head => "head",
            Role::Worker => "worker",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "head" => Some(Role::Head),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

/// Lifecycle state of a node, in EC2's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    /// Could not be asked (its host does not answer): it may still run.
    Unreachable,
}

impl NodeState {
    /// Terminated and shutting-down nodes are gone as far as the planner cares.
    pub fn is_alive(self) -> bool {
        !matches!(self, NodeState::Terminated | NodeState::ShuttingDown)
    }
    /// Titles as `daft list` groups them.
    pub fn title(self) -> &'static str {
        match self {
            NodeState::Pending => "Pending",
            NodeState::Running => "Running",
            NodeState::Stopping => "Stopping",
            NodeState::Stopped => "Stopped",
            NodeState::ShuttingDown => "Shutting-down",
            NodeState::Terminated => "Terminated",
            NodeState::Unreachable => "Unreachable",
        }
    }
    pub fn from_ec2(s: &str) -> NodeState {
        match s {
            "pending" => NodeState::Pending,
            "running" => NodeState::Running,
            "stopping" => NodeState::Stopping,
            "stopped" => NodeState::Stopped,
            "shutting-down" => NodeState::ShuttingDown,
            _ => NodeState::Terminated,
        }
    }
}

/// What a node is launched with. A change to any of it needs a new node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSpec {
    pub role: Role,
    /// Launch settings by name (instance_type, image_id, …), shown in "why" messages.
    pub launch: BTreeMap<String, String>,
}

impl NodeSpec {
    pub fn new(role: Role, launch: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        NodeSpec {
            role,
            launch: launch
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
    /// A short stable hash of the role and the launch settings.
    pub fn hash(&self) -> String {
        let mut parts = vec![format!("role={}", self.role.as_str())];
        parts.extend(self.launch.iter().map(|(k, v)| format!("{k}={v}")));
        short_hash(parts.iter().map(String::as_str))
    }
}

/// sha256 over the parts (each followed by a newline), first 16 hex digits.
pub fn short_hash<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
}

/// A resource the cluster needs besides its nodes (for AWS: its security group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupportResource {
    /// e.g. "security-group".
    pub kind: String,
    /// Its name (unique per cluster and kind).
    pub name: String,
    /// The provider's id, once it exists.
    pub id: Option<String>,
    /// What it allows, as sorted lines ("tcp 22 from 203.0.113.7/32"), where the provider
    /// reconciles it; None when unknown or not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<String>>,
}

impl SupportResource {
    fn same(&self, other: &SupportResource) -> bool {
        self.kind == other.kind && self.name == other.name
    }
}

/// The cluster the config asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredCluster {
    pub name: String,
    /// None: no cluster at all (what `down` wants).
    pub head: Option<NodeSpec>,
    /// The kinds of worker, in the config's order (one unnamed group without worker groups).
    pub groups: Vec<WorkerGroup>,
    /// Hash of what setup installs and runs; a change is an update in place.
    pub setup_hash: String,
    pub support: Vec<SupportResource>,
}

impl DesiredCluster {
    /// The empty cluster: `down` plans towards it.
    pub fn empty(name: &str) -> Self {
        DesiredCluster {
            name: name.to_string(),
            head: None,
            groups: vec![],
            setup_hash: String::new(),
            support: vec![],
        }
    }
    /// The workers `up` makes: every group's minimum.
    pub fn workers(&self) -> u32 {
        self.groups.iter().map(|g| g.min).sum()
    }
    /// The spec of the head, or of the first worker group's workers.
    pub fn spec(&self, role: Role) -> Option<&NodeSpec> {
        match role {
            Role::Head => self.head.as_ref(),
            Role::Worker => self.groups.first().map(|g| &g.spec),
        }
    }
    /// The group named `name` ("" is the unnamed one).
    pub fn group(&self, name: &str) -> Option<&WorkerGroup> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// One kind of worker: what it is launched with and how many of it there may be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerGroup {
    /// Its name, recorded on each of its nodes; "" for the one group of a config without
    /// worker groups (its nodes carry no group).
    pub name: String,
    pub spec: NodeSpec,
    /// `up` keeps the count within min..=max (equal for a fixed count; between them, the
    /// autoscaler decides and the plan leaves it alone).
    pub min: u32,
    pub max: u32,
}

impl WorkerGroup {
    /// The one unnamed group of `count` workers.
    pub fn fixed(spec: NodeSpec, count: u32) -> Self {
        WorkerGroup {
            name: String::new(),
            spec,
            min: count,
            max: count,
        }
    }
    /// A named group of `count` workers.
    pub fn named(name: &str, spec: NodeSpec, count: u32) -> Self {
        WorkerGroup {
            name: name.to_string(),
            ..WorkerGroup::fixed(spec, count)
        }
    }
}

/// A node as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedNode {
    pub id: String,
    pub cluster: String,
    pub role: Role,
    /// A worker's group as recorded at its creation ("": the unnamed one).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub state: NodeState,
    /// The spec hash recorded when the node was created.
    pub spec_hash: String,
    /// Launch settings as far as the provider can tell (for "why" messages).
    pub launch: BTreeMap<String, String>,
    /// The setup hash recorded when the node was last set up (None: not yet set up).
    pub setup_hash: Option<String>,
    /// For workers: the id of the head they joined.
    pub joined_head: Option<String>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Provider-specific detail for `list` (instance type, region, …); `error` says why an
    /// unreachable node could not be asked.
    pub detail: BTreeMap<String, String>,
}

impl ObservedNode {
    /// A node with only its identity and state known (no addresses, records or detail yet).
    pub fn bare(id: &str, cluster: &str, role: Role, state: NodeState) -> Self {
        ObservedNode {
            id: id.into(),
            cluster: cluster.into(),
            role,
            group: String::new(),
            state,
            spec_hash: String::new(),
            launch: BTreeMap::new(),
            setup_hash: None,
            joined_head: None,
            public_ip: None,
            private_ip: None,
            created: 0,
            detail: BTreeMap::new(),
        }
    }

    /// Why the node could not be asked, when it is unreachable.
    pub fn unreachable_reason(&self) -> Option<&str> {
        (self.state == NodeState::Unreachable).then(|| {
            self.detail
                .get("error")
                .map(String::as_str)
                .unwrap_or("no answer")
        })
    }
}

/// The running nodes with the names users give them (`daft exec`, `daft ssh-config`): `head`,
/// then `worker-N` by group, launch time and id.
pub fn named_nodes(observed: &Observed) -> Vec<(String, &ObservedNode)> {
    let mut nodes: Vec<&ObservedNode> = observed
        .alive()
        .filter(|n| n.state == NodeState::Running)
        .collect();
    nodes.sort_by(|a, b| {
        (a.role != Role::Head, &a.group, a.created, &a.id).cmp(&(
            b.role != Role::Head,
            &b.group,
            b.created,
            &b.id,
        ))
    });
    let mut w = 0;
    nodes
        .into_iter()
        .map(|n| {
            let name = if n.role == Role::Head {
                "head".to_string()
            } else {
                w += 1;
                format!("worker-{w}")
            };
            (name, n)
        })
        .collect()
}

/// Everything a provider observes of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observed {
    pub nodes: Vec<ObservedNode>,
    pub support: Vec<SupportResource>,
}

impl Observed {
    pub fn alive(&self) -> impl Iterator<Item = &ObservedNode> {
        self.nodes.iter().filter(|n| n.state.is_alive())
    }
    pub fn has_support(&self, r: &SupportResource) -> bool {
        self.support.iter().any(|s| s.same(r))
    }
}

/// What turns the rules `have` into `want`: (to allow, to revoke), each in its list's order.
pub fn rules_diff(want: &[String], have: &[String]) -> (Vec<String>, Vec<String>) {
    let allow = want.iter().filter(|w| !have.contains(w)).cloned().collect();
    let revoke = have.iter().filter(|h| !want.contains(h)).cloned().collect();
    (allow, revoke)
}

pub(crate) fn support_same(a: &SupportResource, b: &SupportResource) -> bool {
    a.same(b)
}

/// A cluster that is one declared resource (a KubeRay RayCluster), as the config asks for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredResource {
    /// The resource's kind ("RayCluster").
    pub kind: String,
    pub name: String,
    /// What a plan compares with the live resource, by name ("worker replicas" → "2"): read
    /// from the manifest by the same function that reads the live object.
    pub settings: BTreeMap<String, String>,
    /// The worker pods it asks for (the autoscaler's minimum, when it has one).
    pub workers: u32,
    /// "autoscaled 0–8" when Ray's autoscaler picks the count.
    pub scaling: Option<String>,
    /// The whole object as applied.
    pub manifest: serde_json::Value,
}

/// What a declared resource's members are called: a RayCluster's pods, a Slurm allocation's
/// job (one, as daft sees it).
pub fn member_word(kind: &str) -> &'static str {
    if kind == "RayCluster" {
        "pod"
    } else {
        "job"
    }
}

/// The declared resource as the back-end has it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObservedResource {
    pub kind: String,
    pub name: String,
    pub exists: bool,
    /// Created by daft (its `app.kubernetes.io/managed-by` label says so).
    pub managed_by_daft: bool,
    /// Being deleted already.
    pub deleting: bool,
    /// The same settings as [`DesiredResource::settings`], read from the live object.
    pub settings: BTreeMap<String, String>,
    /// Its pods, as nodes (state from the pod's phase; `detail.phase` says it in Kubernetes'
    /// words).
    pub pods: Vec<ObservedNode>,
}

/// The environment telemetry switches every process daft starts gets.
pub const TELEMETRY_OFF: [(&str, &str); 4] = [
    ("RAY_USAGE_STATS_ENABLED", "0"),
    ("DO_NOT_TRACK", "1"),
    ("SCARF_NO_ANALYTICS", "true"),
    ("DAFT_ANALYTICS_ENABLED", "0"),
];

/// The autostop watcher's last record on the head (`autostop.state`, written by
/// templates/jobs.py): its setting, since when the cluster is idle, and whether it stopped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutostopState {
    /// Idle this many seconds, the cluster stops.
    pub after: u64,
    /// Since when (Unix seconds) nothing ran; None while something runs.
    #[serde(default)]
    pub idle_since: Option<f64>,
    /// When the watcher last looked.
    #[serde(default)]
    pub checked: f64,
    /// What keeps the cluster busy, when something does.
    #[serde(default)]
    pub busy: Option<String>,
    /// When the watcher stopped the cluster, if it did.
    #[serde(default)]
    pub stopped: Option<f64>,
}

impl AutostopState {
    /// How `list` says it at `now` (Unix seconds): "30m, idle 3m", "30m, busy", "stopped itself
    /// at 2026-12-02T06:00:00Z".
    pub fn describe(&self, now: f64) -> String {
        let dur = |s: f64| {
            humantime::format_duration(std::time::Duration::from_secs(s.max(0.0) as u64))
                .to_string()
        };
        if let Some(t) = self.stopped {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0.0) as u64);
            return format!(
                "stopped itself at {} (idle {})",
                humantime::format_rfc3339_seconds(at),
                dur(self.after as f64)
            );
        }
        match self.idle_since {
            Some(since) => format!("{}, idle {}", dur(self.after as f64), dur(now - since)),
            None => format!("{}, busy", dur(self.after as f64)),
        }
    }
}

#[cfg(test)]
mod autostop_tests {
    use super::AutostopState;

    #[test]
    fn the_watchers_record_reads_as_list_shows_it() {
        let s: AutostopState = serde_json::from_str(
            r#"{"after": 1800, "idle_since": 1000.5, "checked": 1180.0, "busy": null}"#,
        )
        .unwrap();
        assert_eq!(s.describe(1180.5), "30m, idle 3m");
        let busy: AutostopState = serde_json::from_str(
            r#"{"after": 600, "idle_since": null, "checked": 1.0, "busy": "daft job x is running"}"#,
        )
        .unwrap();
        assert_eq!(busy.describe(5.0), "10m, busy");
        let stopped = AutostopState {
            stopped: Some(1_796_191_200.0),
            ..s
        };
        assert_eq!(
            stopped.describe(0.0),
            "stopped itself at 2026-12-02T06:00:00Z (idle 30m)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_first_then_workers_by_group_and_launch() {
        let mk = |id: &str, role: Role, group: &str, created: u64| {
            let mut n = ObservedNode::bare(id, "c", role, NodeState::Running);
            n.group = group.into();
            n.created = created;
            n
        };
        let mut stopped = mk("i-5", Role::Worker, "", 1);
        stopped.state = NodeState::Stopped;
        let obs = Observed {
            nodes: vec![
                mk("i-3", Role::Worker, "gpu", 1),
                mk("i-2", Role::Worker, "", 9),
                mk("i-1", Role::Head, "", 5),
                mk("i-4", Role::Worker, "", 2),
                stopped,
            ],
            support: vec![],
        };
        let names: Vec<(String, String)> = named_nodes(&obs)
            .into_iter()
            .map(|(name, n)| (name, n.id.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("head".to_string(), "i-1".to_string()),
                ("worker-1".to_string(), "i-4".to_string()),
                ("worker-2".to_string(), "i-2".to_string()),
                ("worker-3".to_string(), "i-3".to_string()),
            ]
        );
    }
}
