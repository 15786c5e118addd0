//! The provider trait: SkyPilot's provisioning verbs (query, run instances, wait, terminate,
//! clean up), one implementation per back-end.

pub mod aws;
pub mod hosts;
pub mod kubernetes;
pub mod slurm;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use indicatif::ProgressBar;

use crate::config::{Config, ProviderSetup};
use crate::model::{
    DesiredCluster, DesiredResource, NodeSpec, Observed, ObservedNode, ObservedResource, Role,
    SupportResource,
};
use crate::transport::Transport;

/// Launch `count` nodes of one role (one batch).
#[derive(Debug, Clone)]
pub struct LaunchRequest<'a> {
    pub role: Role,
    /// The worker group ("": the head, or the unnamed group), recorded on each node.
    pub group: &'a str,
    pub count: u32,
    pub spec: &'a NodeSpec,
    pub setup_hash: &'a str,
    /// The head the workers join (None when launching the head).
    pub head: Option<&'a ObservedNode>,
    /// Ids of this cluster's live nodes that stay (the plan's observation less the nodes this
    /// apply removes): places a new node must not take, for providers that pick places.
    pub taken: &'a [String],
    /// Ids of every node of the cluster the plan observed, in any state: what the launch is
    /// based on (EC2 derives its idempotency token from it).
    pub seen: &'a [String],
}

/// How `up` should wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Return once instances run, without connecting (self-starting providers only).
    pub no_wait: bool,
    /// Wait for workers too.
    pub wait_workers: bool,
    /// `down --force`: forget nodes that cannot be reached.
    pub force: bool,
    /// Nodes set up at once (0: the default).
    pub max_parallel: usize,
}

impl UpOptions {
    pub fn parallel(&self) -> usize {
        if self.max_parallel == 0 {
            crate::config::DEFAULT_MAX_PARALLEL
        } else {
            self.max_parallel
        }
    }
}

/// A sweep as the back-end's own job array: one task per prepared job directory.
pub struct ArrayRequest<'a> {
    /// The sweep's name (the array is named after it).
    pub name: &'a str,
    /// The tasks' job directories on the head, task i = `job_dirs[i]`.
    pub job_dirs: &'a [String],
    /// The bash script each task runs with the job-directory list's path as `$1`.
    pub script: &'a str,
    /// Tasks at once.
    pub max_parallel: usize,
    /// The jobs' environment, KEY=VALUE NUL-separated (never written to a file by daft).
    pub env_input: Vec<u8>,
}

/// A back-end with job arrays (Slurm): a sweep is one submission, the scheduler runs its tasks.
#[async_trait]
pub trait JobArrays: Send + Sync {
    /// Submit the array; its id.
    async fn submit_array(&self, req: &ArrayRequest<'_>) -> anyhow::Result<String>;
    /// Cancel every task of the array that has not ended.
    async fn cancel_array(&self, id: &str) -> anyhow::Result<()>;
}

/// How plain `ssh` reaches a node (`daft ssh-config`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SshEntry {
    /// "" for the head, else the node's name in the cluster ("worker-1").
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The private key daft uses (None: ssh-agent).
    pub key: Option<PathBuf>,
    /// The name daft pins the host key under when it is not the address (an EC2 instance id).
    pub host_key_alias: Option<String>,
}

/// Where the Ray dashboard is, and how to reach it.
#[derive(Debug, Clone)]
pub enum DashboardRoute {
    /// Directly reachable from here (the local provider).
    Direct { url: String },
    /// Through a tunnel to host:port as the head sees it.
    Tunnel { host: String, port: u16 },
}

/// What every back-end does: say where it is, observe its cluster, reach the head. How a
/// back-end's cluster is changed is its [`Lifecycle`]: node by node, one declared resource, or
/// not at all.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Which back-end and where, for plan headers ("aws us-west-2").
    fn context(&self) -> String;

    /// Observe the cluster: every node (machine, allocation node, pod) carrying its tag, and
    /// its supporting resources.
    async fn query(&self) -> anyhow::Result<Observed>;

    /// A transport to the head, for `submit` and `dashboard` (with the key the provider was
    /// built with).
    async fn head_transport(&self, head: &ObservedNode) -> anyhow::Result<Arc<dyn Transport>>;

    /// Where the head's dashboard is.
    fn dashboard_route(&self, head: &ObservedNode) -> DashboardRoute;

    /// The head's autostop after `after` idle, when this back-end's head can stop its own
    /// cluster (`daft_home`: the head's daft directory); None where it cannot (yet).
    fn autostop(
        &self,
        _head: &ObservedNode,
        _daft_home: &str,
        _after: std::time::Duration,
    ) -> Option<crate::autostop::Autostop> {
        None
    }

    /// `head_transport` reaches any node of the cluster, not only the head (SSH hosts, this
    /// machine, EC2): `daft exec` runs on workers too.
    fn reaches_every_node(&self) -> bool {
        false
    }

    /// A job's files stay where they are after `down` (a host's disk, a shared home); false
    /// where the head takes them with it (an EC2 instance, a pod): `down` saves them first.
    fn jobs_outlive_down(&self) -> bool {
        true
    }

    /// How plain `ssh` reaches each node, where nodes are reached over SSH (SSH hosts, EC2);
    /// None elsewhere (this machine, Slurm's job steps, Kubernetes' exec).
    async fn ssh_entries(&self) -> Option<anyhow::Result<Vec<SshEntry>>> {
        None
    }

    /// The back-end's job arrays, when it has them (sweeps then become one array).
    fn job_arrays(&self) -> Option<&dyn JobArrays> {
        None
    }
}

/// A back-end that launches, sets up and removes nodes one by one (EC2, SSH hosts, this
/// machine, a Slurm allocation): SkyPilot's provisioning verbs.
#[async_trait]
pub trait NodeProvider: Provider {
    /// The cluster the config asks for, in this provider's terms.
    async fn desired(&self) -> DesiredCluster;

    /// Nodes set themselves up once launched (EC2 user data); `up --no-wait` may skip connecting.
    fn self_starting(&self) -> bool {
        false
    }

    /// What the nodes of `desired` cost per hour, where the back-end has prices (EC2).
    async fn estimate(&self, _desired: &DesiredCluster) -> Option<crate::cost::Estimate> {
        None
    }

    /// The most the cluster may cost per hour (`up` refuses a plan above it).
    fn max_hourly_cost(&self) -> Option<f64> {
        None
    }

    /// A replacement node takes its predecessor's place (same host, same node directory), so
    /// the old one must be stopped before the new one starts. Cloud nodes are new machines.
    fn replaces_in_place(&self) -> bool {
        false
    }

    /// Create a supporting resource (a security group); returns it with its id.
    async fn create_support(&self, resource: &SupportResource) -> anyhow::Result<SupportResource> {
        Ok(resource.clone())
    }

    /// Bring a supporting resource's rules to `resource.rules` (security group drift).
    async fn update_support(
        &self,
        _resource: &SupportResource,
        _pb: &ProgressBar,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    /// Launch a batch of nodes. May return fewer than asked (partial capacity).
    async fn run_instances(
        &self,
        req: &LaunchRequest<'_>,
        pb: &ProgressBar,
    ) -> anyhow::Result<Vec<ObservedNode>>;

    /// Make a node ready: install the environment, start Ray (joining `head`), run the head's
    /// setup commands, record the setup hash. Used after launch and for updates in place.
    async fn setup_node(
        &self,
        node: &ObservedNode,
        head: &ObservedNode,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode>;

    /// Terminate nodes (stop Ray, or terminate instances). Every node that can be is, even when
    /// others fail; the error lists those that could not be. With `force`, nodes that cannot be
    /// reached are forgotten instead (their records removed where the provider keeps any).
    async fn terminate(
        &self,
        nodes: &[ObservedNode],
        force: bool,
        pb: &ProgressBar,
    ) -> anyhow::Result<()>;

    /// Delete a supporting resource once the nodes using it are gone.
    async fn delete_support(
        &self,
        _resource: &SupportResource,
        _pb: &ProgressBar,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A back-end where the cluster is one declared resource that an operator reconciles
/// (Kubernetes: a KubeRay RayCluster). daft applies it, waits for its pods, deletes it; it has
/// no per-node verbs.
#[async_trait]
pub trait DeclarativeProvider: Provider {
    /// The resource the config asks for.
    async fn desired_resource(&self) -> DesiredResource;

    /// The resource as the back-end has it (absent or not), with its pods.
    async fn observe_resource(&self) -> anyhow::Result<ObservedResource>;

    /// Create or update the resource (server-side apply).
    async fn apply_resource(&self, want: &DesiredResource, pb: &ProgressBar) -> anyhow::Result<()>;

    /// Wait until the head (and with `wait_workers`, every worker) is ready, or say why it
    /// cannot get there; then run what the config asks to run on the head. Returns the head.
    async fn wait_ready(
        &self,
        want: &DesiredResource,
        opts: UpOptions,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode>;

    /// Delete the resource and wait until its pods are gone.
    async fn delete_resource(&self, pb: &ProgressBar) -> anyhow::Result<()>;
}

/// How `up` and `down` change a back-end's cluster.
#[derive(Clone)]
pub enum Backend {
    Nodes(Arc<dyn NodeProvider>),
    Declarative(Arc<dyn DeclarativeProvider>),
    /// A cluster daft only uses (Kubernetes `existing`): why it is not daft's to change.
    ReadOnly(Arc<dyn Provider>, String),
}

impl Backend {
    /// The back-end's common verbs.
    pub fn provider(&self) -> Arc<dyn Provider> {
        match self {
            Backend::Nodes(p) => p.clone(),
            Backend::Declarative(p) => p.clone(),
            Backend::ReadOnly(p, _) => p.clone(),
        }
    }
}

/// The back-end a config names.
pub async fn backend(cfg: &Config, key: Option<PathBuf>) -> anyhow::Result<Backend> {
    Ok(match &cfg.setup.provider {
        ProviderSetup::Local(l) => Backend::Nodes(Arc::new(hosts::HostsProvider::local(
            cfg.clone(),
            l.clone(),
        ))),
        ProviderSetup::Ssh(h) => Backend::Nodes(Arc::new(hosts::HostsProvider::ssh(
            cfg.clone(),
            h.clone(),
            key,
        ))),
        ProviderSetup::Aws(a) => Backend::Nodes(Arc::new(
            aws::AwsProvider::new(cfg.clone(), a.clone(), key).await?,
        )),
        ProviderSetup::Slurm(s) => Backend::Declarative(Arc::new(slurm::SlurmProvider::new(
            cfg.clone(),
            s.clone(),
            key,
        ))),
        ProviderSetup::Kubernetes(k) => {
            let p = Arc::new(kubernetes::KubernetesProvider::new(cfg.clone(), k.clone()).await?);
            match &k.existing {
                Some(name) => Backend::ReadOnly(
                    p,
                    format!(
                        "the RayCluster {name:?} was not created by daft (`existing` in [setup.kubernetes]): \
                         daft submits to it and opens its dashboard, but leaves creating and deleting it to \
                         whoever manages it"
                    ),
                ),
                None => Backend::Declarative(p),
            }
        }
    })
}

/// The provider a config names (its common verbs).
pub async fn for_config(cfg: &Config, key: Option<PathBuf>) -> anyhow::Result<Arc<dyn Provider>> {
    Ok(backend(cfg, key).await?.provider())
}

/// The head among observed nodes that runs (not pending, stopped or unreachable).
pub fn alive_head(obs: &Observed) -> Option<&ObservedNode> {
    obs.alive()
        .find(|n| n.role == Role::Head && n.state == crate::model::NodeState::Running)
}

/// A head that is there but does not run (pending, stopping, stopped, unreachable).
pub fn head_not_running(obs: &Observed) -> Option<&ObservedNode> {
    obs.alive()
        .find(|n| n.role == Role::Head && n.state != crate::model::NodeState::Running)
}
