//! Providers over machines that already exist: this machine (`local`) and a list of SSH hosts
//! (`ssh`). Both run the same bootstrap script through a transport; state is observed from the
//! nodes themselves (pid files and the node records the script keeps), never remembered here.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use indicatif::ProgressBar;
use tokio::sync::Mutex;

use super::{DashboardRoute, LaunchRequest, NodeProvider, Provider};
use crate::bootstrap::{self, NodeParams, NodeRecord, Said};
use crate::config::{Config, HostAddr, LocalSetup, SshHosts};
use crate::model::{short_hash, DesiredCluster, NodeSpec, NodeState, Observed, ObservedNode, Role};
use crate::paths::daft_home;
use crate::setup::{self, Bootstrap, NodeSetup, SetupRecord};
use crate::time::now_secs;
use crate::transport::local::LocalTransport;
use crate::transport::ssh::{SshError, SshTarget, SshTransport};
use crate::transport::Transport;

/// Which of the two, with its own section of the config.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Local(LocalSetup),
    Ssh(SshHosts),
}

/// A host's connection, made once.
type OnceTransport = tokio::sync::OnceCell<Arc<dyn Transport>>;

pub struct HostsProvider {
    cfg: Config,
    mode: Mode,
    key: Option<PathBuf>,
    local_home: PathBuf,
    /// One connection per host, made once even when several tasks ask at the same time.
    conns: Mutex<HashMap<String, Arc<OnceTransport>>>,
}

impl HostsProvider {
    pub fn local(cfg: Config, local: LocalSetup) -> Self {
        HostsProvider {
            cfg,
            mode: Mode::Local(local),
            key: None,
            local_home: daft_home(),
            conns: Mutex::new(HashMap::new()),
        }
    }

    pub fn ssh(cfg: Config, hosts: SshHosts, key: Option<PathBuf>) -> Self {
        let key = key.or_else(|| cfg.setup.ssh_private_key.clone());
        HostsProvider {
            cfg,
            mode: Mode::Ssh(hosts),
            key,
            local_home: daft_home(),
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn name(&self) -> &str {
        &self.cfg.setup.name
    }

    /// The head and worker hosts (none for this machine).
    fn hosts(&self) -> (Option<&HostAddr>, &[HostAddr]) {
        match &self.mode {
            Mode::Ssh(h) => (Some(&h.head), &h.workers),
            Mode::Local(_) => (None, &[]),
        }
    }

    /// The transport for a node id (local: this machine; ssh: the node's host).
    async fn transport(&self, node_id: &str) -> anyhow::Result<Arc<dyn Transport>> {
        let key = match self.mode {
            Mode::Local(_) => "local".to_string(),
            Mode::Ssh(_) => node_id.to_string(),
        };
        // The host's cell, taken under the lock; the connection made outside it (other hosts
        // connect meanwhile), once: a second task for the same host waits for the first's.
        let cell = self.conns.lock().await.entry(key).or_default().clone();
        let t = cell
            .get_or_try_init(|| async {
                let t: Arc<dyn Transport> = match self.mode {
                    Mode::Local(_) => Arc::new(LocalTransport::new(self.local_home.clone())),
                    Mode::Ssh(_) => {
                        let addr = crate::config::parse_host(node_id)
                            .map_err(|e| anyhow!("bad host {node_id}: {e}"))?;
                        let target = SshTarget::new(
                            addr,
                            &self.cfg.setup.ssh_user,
                            self.key.clone(),
                            &self.local_home,
                        );
                        Arc::new(SshTransport::connect(target).await?)
                    }
                };
                anyhow::Ok(t)
            })
            .await?;
        Ok(t.clone())
    }

    fn spec(&self, role: Role) -> NodeSpec {
        match &self.mode {
            // The ports a node's Ray runs with: a change restarts the cluster on the new ones.
            Mode::Local(l) => NodeSpec::new(
                role,
                [
                    ("address", l.address.to_string()),
                    ("ray_port", l.ray_port.to_string()),
                    ("dashboard_port", l.dashboard_port.to_string()),
                ],
            ),
            Mode::Ssh(_) => NodeSpec::new(role, [("ssh_user", self.cfg.setup.ssh_user.clone())]),
        }
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

    fn head_address(&self, head: &ObservedNode) -> String {
        match &self.mode {
            Mode::Local(l) => format!("{}:{}", l.address, l.ray_port),
            Mode::Ssh(_) => {
                let ip = head.private_ip.clone().unwrap_or_else(|| head.id.clone());
                format!("{ip}:6379")
            }
        }
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
        let role = match self.hosts().0 {
            Some(head) if head.to_string() != host => Role::Worker,
            _ => Role::Head,
        };
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
                    nodes.extend(ns.into_iter().filter(|n| n.id == h));
                    members.extend(ms);
                }
                // A host that cannot be reached is one node we cannot ask, not a failure of
                // the whole cluster: the plan shows it, the others stay manageable.
                Err(e) if matches!(self.mode, Mode::Ssh(_)) && is_unreachable(&e) => {
                    tracing::warn!("host {h} is unreachable: {e:#}");
                    nodes.push(self.unreachable_node(&h, &e));
                }
                Err(e) => return Err(e.context(format!("cannot observe host {h}"))),
            }
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((nodes, members))
    }

    fn free_port(address: std::net::IpAddr) -> anyhow::Result<u16> {
        let l = std::net::TcpListener::bind((address, 0))
            .or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
            .context("cannot find a free port")?;
        Ok(l.local_addr()?.port())
    }
}

#[async_trait]
impl Provider for HostsProvider {
    fn context(&self) -> String {
        match &self.mode {
            Mode::Local(l) => format!("local, {}", l.address),
            Mode::Ssh(h) => {
                let w = &h.workers;
                format!(
                    "ssh, {} host{}",
                    w.len() + 1,
                    if w.is_empty() { "" } else { "s" }
                )
            }
        }
    }

    async fn query(&self) -> anyhow::Result<Observed> {
        let nodes = match &self.mode {
            Mode::Local(_) => self.status("local").await?.0,
            Mode::Ssh(h) => {
                // Every configured host at once; the head's answer also lists the hosts that
                // were members before (removed from the config since), asked in a second round.
                let hosts: Vec<String> = std::iter::once(&h.head)
                    .chain(h.workers.iter())
                    .map(|h| h.to_string())
                    .collect();
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
                nodes
            }
        };
        Ok(Observed {
            nodes,
            support: vec![],
        })
    }

    async fn head_transport(&self, head: &ObservedNode) -> anyhow::Result<Arc<dyn Transport>> {
        // The connection `query` opened to the head, reused.
        self.transport(&head.id).await
    }

    fn dashboard_route(&self, head: &ObservedNode) -> DashboardRoute {
        match &self.mode {
            Mode::Local(l) => DashboardRoute::Direct {
                url: format!("http://{}:{}", l.address, l.dashboard_port),
            },
            Mode::Ssh(_) => {
                let _ = head;
                DashboardRoute::Tunnel {
                    host: "127.0.0.1".into(),
                    port: 8265,
                }
            }
        }
    }
}

#[async_trait]
impl NodeProvider for HostsProvider {
    async fn desired(&self) -> DesiredCluster {
        let workers = match &self.mode {
            Mode::Local(_) => self.cfg.setup.number_of_workers,
            // The hosts are the cluster: every listed worker host runs a worker.
            Mode::Ssh(h) => h.workers.len() as u32,
        };
        DesiredCluster {
            name: self.name().to_string(),
            head: Some(self.spec(Role::Head)),
            worker: self.spec(Role::Worker),
            workers,
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
        let taken = req.taken;
        let mut ids = Vec::new();
        match (&self.mode, req.role) {
            (Mode::Local(_), Role::Head) => ids.push("head".to_string()),
            (Mode::Local(_), Role::Worker) => {
                let mut k = 1;
                while ids.len() < req.count as usize {
                    let id = format!("worker-{k}");
                    if !taken.contains(&id) {
                        ids.push(id);
                    }
                    k += 1;
                }
            }
            (Mode::Ssh(h), Role::Head) => ids.push(h.head.to_string()),
            (Mode::Ssh(h), Role::Worker) => {
                for h in &h.workers {
                    let id = h.to_string();
                    if ids.len() < req.count as usize && !taken.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        Ok(ids
            .into_iter()
            .map(|id| {
                let ip = match &self.mode {
                    Mode::Local(l) => Some(l.address.to_string()),
                    Mode::Ssh(_) => crate::config::parse_host(&id).ok().map(|h| h.host),
                };
                ObservedNode {
                    id,
                    cluster: self.name().to_string(),
                    role: req.role,
                    state: NodeState::Pending,
                    spec_hash: req.spec.hash(),
                    launch: req.spec.launch.clone(),
                    setup_hash: None,
                    joined_head: req.head.map(|h| h.id.clone()),
                    public_ip: ip.clone(),
                    private_ip: ip,
                    created: now_secs(),
                    detail: BTreeMap::new(),
                }
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
        p.head_address = Some(self.head_address(head));
        if node.role == Role::Worker {
            p.head_id = Some(head.id.clone());
        }
        match &self.mode {
            Mode::Local(l) => {
                let free = || Self::free_port(l.address);
                p.node_ip = Some(l.address.to_string());
                p.ray_port = l.ray_port;
                p.dashboard_host = l.address.to_string();
                p.dashboard_port = l.dashboard_port;
                let agent = free()?;
                ports.insert("dashboard_agent".to_string(), agent);
                p.ray_args = format!("--dashboard-agent-listen-port {agent}");
                if node.role == Role::Head {
                    let client = free()?;
                    p.ray_args
                        .push_str(&format!(" --ray-client-server-port {client}"));
                    // Ray's metrics servers (fixed ports otherwise): one local cluster's do
                    // not stop another's.
                    let (autoscaler, dashboard) = (free()?, free()?);
                    p.ray_env = format!(
                        "AUTOSCALER_METRIC_PORT={autoscaler} DASHBOARD_METRIC_PORT={dashboard}"
                    );
                    ports.insert("ray".into(), p.ray_port);
                    ports.insert("dashboard".into(), p.dashboard_port);
                }
            }
            Mode::Ssh(_) => {
                let host = crate::config::parse_host(&node.id)
                    .map(|h| h.host)
                    .unwrap_or_default();
                if host.parse::<std::net::IpAddr>().is_ok() {
                    p.node_ip = Some(host);
                }
            }
        }
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
        if node.role == Role::Worker && matches!(self.mode, Mode::Ssh(_)) {
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
        let head_id = self.hosts().0.map(|h| h.to_string());
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
    bootstrap::said(stdout)
        .into_iter()
        .filter_map(|s| match s {
            Said::Member(h) => Some(h),
            _ => None,
        })
        .collect()
}

/// The nodes of `cluster` the script's `status` lists.
fn parse_status(stdout: &str, cluster: &str) -> Vec<ObservedNode> {
    let mut nodes = Vec::new();
    for said in bootstrap::said(stdout) {
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
    nodes
}

/// Every local cluster's nodes (for `daft list`), observed from this machine's node records.
pub async fn list_local() -> anyhow::Result<Vec<ObservedNode>> {
    let home = daft_home();
    let dir = home.join("clusters");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(vec![]);
    };
    let t = LocalTransport::new(home);
    let mut out = Vec::new();
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("nodes").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let p = NodeParams {
            daft_home: t.daft_home(),
            cluster: name.clone(),
            ..Default::default()
        };
        let c = bootstrap::run(&t, &p, &["status"], bootstrap::QUICK).await?;
        out.extend(parse_status(&c.stdout, &name));
    }
    Ok(out)
}

/// An error that means the host could not be reached or logged into (as opposed to a failure of
/// a command on it).
fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<SshError>())
}
