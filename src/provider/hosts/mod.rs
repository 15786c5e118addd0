//! Providers over machines that already exist: this machine (`local.rs`) and a list of SSH
//! hosts (`ssh.rs`). What they share is here: the bootstrap over a transport, one connection
//! per host, status, set-up and stopping; what differs (where nodes are, how a host is reached,
//! a node's ports) is each one's [`Machines`]. State is observed from the nodes themselves (pid
//! files and the node records the script keeps), never remembered here.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use indicatif::ProgressBar;
use tokio::sync::Mutex;

use super::{DashboardRoute, LaunchRequest, NodeProvider, Provider};
use crate::agent::{NodeRecord, Said};
use crate::autostop::{Autostop, AutostopSetting};
use crate::bootstrap::{self, NodeParams};
use crate::config::{Config, LocalSetup, SshHosts};
use crate::model::{
    short_hash, DesiredCluster, NodeSpec, NodeState, Observed, ObservedNode, Role, WorkerGroup,
};
use crate::paths::daft_home;
use crate::setup::{self, Bootstrap, NodeSetup, SetupRecord};
use crate::time::now_secs;
use crate::transport::ssh::SshError;
use crate::transport::Transport;

mod local;
mod ssh;

pub use local::list_local;
pub use local::ThisMachine;
pub use ssh::SshHostList;

/// What differs between this machine and a list of SSH hosts.
#[async_trait]
pub trait Machines: Send + Sync + 'static {
    /// Which back-end and where, for plan headers.
    fn context(&self) -> String;
    /// How plain `ssh` reaches each host (SSH hosts only).
    fn ssh_entries(&self) -> Option<Vec<super::SshEntry>> {
        None
    }
    /// The host a node is on (its connection's key).
    fn host_of<'a>(&self, node_id: &'a str) -> &'a str;
    /// Open a connection to a host.
    async fn connect(&self, host: &str) -> anyhow::Result<Arc<dyn Transport>>;
    /// A node's spec (what a change of restarts it).
    fn spec(&self, role: Role) -> NodeSpec;
    /// The head's Ray address, as workers join it.
    fn head_address(&self, head: &ObservedNode) -> String;
    /// The hosts to ask, the head's first.
    fn hosts(&self) -> Vec<String>;
    /// Nodes are on hosts of their own: one node per host (records of co-located hosts are
    /// skipped), the head keeps the member list, a worker gets the Ray token from the head.
    fn separate_hosts(&self) -> bool;
    /// The role the config gives a host (for one that cannot be asked).
    fn role_of(&self, host: &str) -> Role;
    fn dashboard_route(&self) -> DashboardRoute;
    /// Workers the config asks for.
    fn workers(&self, cfg: &Config) -> u32;
    /// Node ids (with their addresses) for `count` new nodes of `role`, not in `taken`.
    fn place(&self, role: Role, count: u32, taken: &[String]) -> Vec<(String, Option<String>)>;
    /// A node's own bootstrap settings (address, ports), and the ports to record.
    fn node_settings(
        &self,
        node: &ObservedNode,
        p: &mut NodeParams,
        ports: &mut BTreeMap<String, u16>,
    ) -> anyhow::Result<()>;
}

/// A host's connection, made once.
type OnceTransport = tokio::sync::OnceCell<Arc<dyn Transport>>;

pub struct HostsProvider<M: Machines> {
    cfg: Config,
    machines: M,
    /// One connection per host, made once even when several tasks ask at the same time.
    conns: Mutex<HashMap<String, Arc<OnceTransport>>>,
}

impl HostsProvider<ThisMachine> {
    pub fn local(cfg: Config, local: LocalSetup) -> Self {
        HostsProvider {
            cfg,
            machines: ThisMachine {
                local,
                home: daft_home(),
            },
            conns: Mutex::new(HashMap::new()),
        }
    }
}

impl HostsProvider<SshHostList> {
    pub fn ssh(cfg: Config, hosts: SshHosts, key: Option<PathBuf>) -> Self {
        let key = key.or_else(|| cfg.setup.ssh_private_key.clone());
        let user = cfg.setup.ssh_user.clone();
        HostsProvider {
            cfg,
            machines: SshHostList {
                hosts,
                user,
                key,
                home: daft_home(),
            },
            conns: Mutex::new(HashMap::new()),
        }
    }
}

impl<M: Machines> HostsProvider<M> {
    fn name(&self) -> &str {
        &self.cfg.setup.name
    }

    /// The transport for a node id (the connection to its host).
    async fn transport(&self, node_id: &str) -> anyhow::Result<Arc<dyn Transport>> {
        let host = self.machines.host_of(node_id).to_string();
        // The host's cell, taken under the lock; the connection made outside it (other hosts
        // connect meanwhile), once: a second task for the same host waits for the first's.
        let cell = self
            .conns
            .lock()
            .await
            .entry(host.clone())
            .or_default()
            .clone();
        let t = cell
            .get_or_try_init(|| self.machines.connect(&host))
            .await?;
        Ok(t.clone())
    }

    /// The directory name of a node on its host.
    fn node_dir_name(node_id: &str) -> String {
        node_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    fn base_params(&self, t: &dyn Transport, node_id: &str) -> NodeParams {
        NodeParams {
            daft_home: t.daft_home(),
            cluster: self.name().to_string(),
            node: Self::node_dir_name(node_id),
            env_hash: bootstrap::env_hash(&self.cfg),
            requirements: bootstrap::requirements(&self.cfg),
            python_version: self.cfg.setup.python_version.clone(),
            ray_port: 6379,
            dashboard_host: "127.0.0.1".into(),
            dashboard_port: 8265,
            // Hosts have no security group: every connection to Ray carries the cluster's token.
            ray_auth: true,
            // Under the node user's own /tmp/daft-UID (0700), made by the script.
            ray_tmp: short_hash([t.daft_home().as_str(), self.name(), node_id])[..10].to_string(),
            ..Default::default()
        }
    }

    /// `add-member` or `remove-member` of `member` in the member list the head keeps.
    async fn member_list(&self, head: &str, member: &str, action: &str) -> anyhow::Result<()> {
        let ht = self.transport(head).await?;
        let mut p = self.base_params(ht.as_ref(), head);
        p.member = Some(member.to_string());
        bootstrap::run(ht.as_ref(), &p, &[action], bootstrap::QUICK).await?;
        Ok(())
    }

    /// The nodes of this cluster on a host, and the cluster's member list if the host keeps it
    /// (the head does): one command per host.
    async fn status(&self, node_host: &str) -> anyhow::Result<(Vec<ObservedNode>, Vec<String>)> {
        let t = self.transport(node_host).await?;
        let params = self.base_params(t.as_ref(), node_host);
        let out = bootstrap::run(t.as_ref(), &params, &["status"], bootstrap::QUICK).await?;
        Ok((
            parse_status(&out.stdout, self.name()),
            parse_members(&out.stdout),
        ))
    }

    /// A host that could not be asked, as an unreachable node (of the role the config gives it).
    fn unreachable_node(&self, host: &str, err: &anyhow::Error) -> ObservedNode {
        let role = self.machines.role_of(host);
        let reason = err
            .chain()
            .find_map(|c| c.downcast_ref::<SshError>())
            .map(|e| e.to_string())
            .unwrap_or_else(|| format!("{err:#}"));
        let ip = crate::config::parse_host(host).ok().map(|h| h.host);
        ObservedNode {
            id: host.to_string(),
            cluster: self.name().to_string(),
            role,
            group: String::new(),
            state: NodeState::Unreachable,
            spec_hash: String::new(),
            launch: BTreeMap::new(),
            setup_hash: None,
            joined_head: None,
            public_ip: ip.clone(),
            private_ip: ip,
            created: 0,
            detail: BTreeMap::from([("error".to_string(), reason)]),
        }
    }

    /// Ask `hosts` at once; the nodes each runs (records of co-located hosts skipped) and the
    /// member lists they keep.
    async fn observe_hosts(
        &self,
        hosts: &[String],
    ) -> anyhow::Result<(Vec<ObservedNode>, Vec<String>)> {
        let asks: Vec<_> = hosts
            .iter()
            .map(|h| async move { (h.clone(), self.status(h).await) })
            .collect();
        let results: Vec<_> = stream::iter(asks)
            .buffer_unordered(self.cfg.setup.max_parallel)
            .collect()
            .await;
        let (mut nodes, mut members) = (Vec::new(), Vec::new());
        for (h, r) in results {
            match r {
                // A host runs one node of a cluster; records of co-located hosts are skipped.
                Ok((ns, ms)) => {
                    let one = self.machines.separate_hosts();
                    nodes.extend(ns.into_iter().filter(|n| !one || n.id == h));
                    members.extend(ms);
                }
                // A host that cannot be reached is one node we cannot ask, not a failure of
                // the whole cluster: the plan shows it, the others stay manageable.
                Err(e) if is_unreachable(&e) => {
                    tracing::warn!("host {h} is unreachable: {e:#}");
                    nodes.push(self.unreachable_node(&h, &e));
                }
                Err(e) => return Err(e.context(format!("cannot observe host {h}"))),
            }
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((nodes, members))
    }
}

#[async_trait]
impl<M: Machines> Provider for HostsProvider<M> {
    fn context(&self) -> String {
        self.machines.context()
    }

    async fn ssh_entries(&self) -> Option<anyhow::Result<Vec<super::SshEntry>>> {
        self.machines.ssh_entries().map(Ok)
    }

    fn reaches_every_node(&self) -> bool {
        true
    }

    async fn query(&self) -> anyhow::Result<Observed> {
        // Every configured host at once; the head's answer also lists the hosts that were
        // members before (removed from the config since), asked in a second round.
        let hosts = self.machines.hosts();
        let (mut nodes, members) = self.observe_hosts(&hosts).await?;
        let mut former: Vec<String> = Vec::new();
        for m in members {
            if !hosts.contains(&m) && !former.contains(&m) {
                former.push(m);
            }
        }
        if !former.is_empty() {
            nodes.extend(self.observe_hosts(&former).await?.0);
        }
        Ok(Observed {
            nodes,
            support: vec![],
        })
    }

    async fn head_transport(&self, head: &ObservedNode) -> anyhow::Result<Arc<dyn Transport>> {
        // The connection `query` opened to the head, reused.
        self.transport(&head.id).await
    }

    fn dashboard_route(&self, _head: &ObservedNode) -> DashboardRoute {
        self.machines.dashboard_route()
    }

    /// The head watches for idleness and halts the cluster's nodes on its host (local: all of
    /// them; SSH hosts: the head's, and the workers' Ray ends as it loses the head).
    fn autostop(
        &self,
        _head: &ObservedNode,
        daft_home: &str,
        after: std::time::Duration,
    ) -> Option<Autostop> {
        let dashboard = match self.machines.dashboard_route() {
            DashboardRoute::Direct { url } => url,
            DashboardRoute::Tunnel { host, port } => format!("http://{host}:{port}"),
        };
        Some(Autostop {
            after,
            dashboard,
            halt: crate::autostop::halt_on_host(daft_home, self.name()),
        })
    }
}

#[async_trait]
impl<M: Machines> NodeProvider for HostsProvider<M> {
    async fn desired(&self) -> DesiredCluster {
        let workers = self.machines.workers(&self.cfg);
        DesiredCluster {
            name: self.name().to_string(),
            head: Some(self.machines.spec(Role::Head)),
            groups: vec![WorkerGroup::fixed(
                self.machines.spec(Role::Worker),
                workers,
            )],
            setup_hash: bootstrap::setup_hash(&self.cfg),
            support: vec![],
        }
    }

    fn replaces_in_place(&self) -> bool {
        true
    }

    async fn run_instances(
        &self,
        req: &LaunchRequest<'_>,
        _pb: &ProgressBar,
    ) -> anyhow::Result<Vec<ObservedNode>> {
        // Nothing to launch: pick node ids (local) or hosts (ssh) that carry no node that stays.
        Ok(self
            .machines
            .place(req.role, req.count, req.taken)
            .into_iter()
            .map(|(id, ip)| ObservedNode {
                id,
                cluster: self.name().to_string(),
                role: req.role,
                group: String::new(),
                state: NodeState::Pending,
                spec_hash: req.spec.hash(),
                launch: req.spec.launch.clone(),
                setup_hash: None,
                joined_head: req.head.map(|h| h.id.clone()),
                public_ip: ip.clone(),
                private_ip: ip,
                created: now_secs(),
                detail: BTreeMap::new(),
            })
            .collect())
    }

    async fn setup_node(
        &self,
        node: &ObservedNode,
        head: &ObservedNode,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode> {
        let t = self.transport(&node.id).await?;
        let mut p = self.base_params(t.as_ref(), &node.id);
        p.role = Some(node.role);
        let mut ports = BTreeMap::new();
        p.head_address = Some(self.machines.head_address(head));
        if node.role == Role::Worker {
            p.head_id = Some(head.id.clone());
        }
        self.machines.node_settings(node, &mut p, &mut ports)?;
        let setup_hash = bootstrap::setup_hash(&self.cfg);
        // The setup hash is recorded only once setup has succeeded: for a head with
        // setup_commands, after them (a failed one is run again by the next `up`); otherwise
        // the bootstrap records it as Ray starts.
        let after_commands = setup::commands_follow(&self.cfg, node.role);
        let rec = NodeRecord {
            id: node.id.clone(),
            cluster: self.name().to_string(),
            role: node.role,
            provider: None,
            spec_hash: node.spec_hash.clone(),
            setup_hash: (!after_commands).then(|| setup_hash.clone()),
            joined_head: (node.role == Role::Worker).then(|| head.id.clone()),
            created: node.created,
            launch: node.launch.clone(),
            ip: node.private_ip.clone(),
            ports,
        };
        p.node_json = rec.json();
        p.node_json_pending = NodeRecord {
            setup_hash: None,
            ..rec.clone()
        }
        .json();
        if node.role == Role::Head {
            // The cluster's Ray token: the head keeps it (local workers share its directory).
            bootstrap::ensure_head_token(t.as_ref(), self.name()).await?;
        }
        if node.role == Role::Worker && self.machines.separate_hosts() {
            // The cluster's Ray token, from the head (whose set-up gives it one first thing).
            pb.set_message(format!(
                "waiting for the head's Ray token, up to {}",
                humantime::format_duration(bootstrap::QUICK)
            ));
            let ht = self.transport(&head.id).await?;
            let token = bootstrap::read_token(ht.as_ref(), self.name()).await?;
            bootstrap::send_token(t.as_ref(), self.name(), &token).await?;
            // The head remembers its workers, so a host removed from the config is still found.
            // Recorded before the worker starts: an interrupted `up` leaves no node the head does
            // not know (and the worker waits for the head's Ray port anyway).
            self.member_list(&head.id, &node.id, "add-member").await?;
        }
        let record = NodeFile {
            t: t.clone(),
            params: p.clone(),
            record: rec,
            written: !after_commands,
        };
        // One command for both steps (each command costs the host's login-shell start-up).
        let doing = format!(
            "installing the environment and starting Ray on {}",
            t.describe()
        );
        let autostop = AutostopSetting::for_node(node.role, self.cfg.setup.autostop, |d| {
            Provider::autostop(self, head, &t.daft_home(), d)
        });
        let bootstrap = Bootstrap::Run {
            params: Box::new(p),
            doing,
        };
        setup::set_up(
            &self.cfg,
            NodeSetup {
                node,
                head,
                hash: &setup_hash,
                bootstrap,
                autostop,
            },
            || async { Ok(t.clone()) },
            &record,
            pb,
        )
        .await
    }

    async fn terminate(
        &self,
        nodes: &[ObservedNode],
        force: bool,
        pb: &ProgressBar,
    ) -> anyhow::Result<()> {
        pb.set_message("stopping Ray");
        // SSH hosts: the head keeps the member list a stopped worker leaves.
        let head_id = self
            .machines
            .separate_hosts()
            .then(|| self.machines.hosts()[0].clone());
        let head_id = &head_id;
        let stops: Vec<_> = nodes
            .iter()
            .map(|n| async move {
                let r = async {
                    if let Some(why) = n.unreachable_reason() {
                        if !force {
                            anyhow::bail!(
                                "{} is unreachable ({why}); not stopped. If the host is gone for good, \
                                 `daft down --force` forgets it",
                                n.id
                            );
                        }
                    } else {
                        let t = self.transport(&n.id).await?;
                        let p = self.base_params(t.as_ref(), &n.id);
                        bootstrap::run(t.as_ref(), &p, &["stop"], bootstrap::QUICK).await?;
                    }
                    if let (Some(head_id), Role::Worker) = (head_id, n.role) {
                        // The head forgets it (best effort when the head itself is going).
                        let r = self.member_list(head_id, &n.id, "remove-member").await;
                        if let Err(e) = r {
                            tracing::debug!("could not update the head's member list: {e:#}");
                        }
                    }
                    Ok(if n.state == NodeState::Unreachable {
                        "forgotten"
                    } else {
                        "stopped"
                    })
                }
                .await;
                (n.id.clone(), r)
            })
            .collect();
        let results: Vec<(String, anyhow::Result<&'static str>)> = stream::iter(stops)
            .buffer_unordered(self.cfg.setup.max_parallel)
            .collect()
            .await;
        let mut failed = Vec::new();
        for (id, r) in results {
            match r {
                Ok("forgotten") => {
                    pb.println(format!("warning: forgot {id} (unreachable, not stopped)"))
                }
                Ok(_) => {}
                Err(e) => failed.push(format!("  {id}: {e:#}")),
            }
        }
        if !failed.is_empty() {
            return Err(anyhow!(
                "{} of {} node(s) could not be stopped (the others were):\n{}",
                failed.len(),
                nodes.len(),
                failed.join("\n")
            ));
        }
        Ok(())
    }
}

/// A node's `node.json` on its host, as its set-up's record: rewritten with the setup hash
/// once the head's setup commands ran (unless the bootstrap already wrote it so as Ray started).
struct NodeFile {
    t: Arc<dyn Transport>,
    params: NodeParams,
    record: NodeRecord,
    written: bool,
}

#[async_trait]
impl SetupRecord for NodeFile {
    async fn record(&self, _: &ObservedNode, _: &ObservedNode, hash: &str) -> anyhow::Result<()> {
        if self.written {
            return Ok(());
        }
        let mut p = self.params.clone();
        p.node_json = NodeRecord {
            setup_hash: Some(hash.to_string()),
            ..self.record.clone()
        }
        .json();
        bootstrap::run(self.t.as_ref(), &p, &["record"], bootstrap::QUICK).await?;
        Ok(())
    }
}

/// The member hosts the script's `status` lists.
fn parse_members(stdout: &str) -> Vec<String> {
    crate::agent::said(stdout)
        .into_iter()
        .filter_map(|s| match s {
            Said::Member { host } => Some(host),
            _ => None,
        })
        .collect()
}

/// The nodes of `cluster` the script's `status` lists (the head's `detail.autostop` says the
/// autostop watcher's last record, when it has one).
fn parse_status(stdout: &str, cluster: &str) -> Vec<ObservedNode> {
    let mut nodes = Vec::new();
    let mut autostop = None;
    for said in crate::agent::said(stdout) {
        if let Said::Autostop { state } = &said {
            autostop = Some(state.clone());
        }
        let Said::Node { alive, record: rec } = said else {
            continue;
        };
        if rec.cluster != cluster || rec.id.is_empty() {
            continue;
        }
        let mut detail: BTreeMap<String, String> = rec
            .ports
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        detail.insert("type".into(), "ray node".into());
        nodes.push(ObservedNode {
            id: rec.id.clone(),
            cluster: rec.cluster,
            role: rec.role,
            group: String::new(),
            state: if alive {
                NodeState::Running
            } else {
                NodeState::Stopped
            },
            spec_hash: rec.spec_hash,
            launch: rec.launch,
            setup_hash: rec.setup_hash,
            joined_head: rec.joined_head,
            public_ip: rec.ip.clone(),
            private_ip: rec.ip,
            created: rec.created,
            detail,
        });
    }
    if let Some(a) = autostop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        for n in nodes.iter_mut().filter(|n| n.role == Role::Head) {
            n.detail.insert("autostop".into(), a.describe(now));
        }
    }
    nodes
}

/// An error that means the host could not be reached or logged into (as opposed to a failure of
/// a command on it).
fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<SshError>())
}
