//! The AWS EC2 provider (aws-sdk-ec2).
//!
//! The cloud's tags are the truth: every instance and security group is tagged at creation with
//! its cluster (`daft:cluster`), role, spec hash and a readable `Name`; `query` is one paginated
//! `DescribeInstances` with a tag filter. Launches are one `RunInstances` per role and batch,
//! with a `ClientToken`, and the cluster is re-observed before any retry of our own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    Filter, Instance, InstanceType, IpPermission, IpRange, ResourceType, Tag, TagSpecification,
    UserIdGroupPair,
};
use aws_sdk_ec2::Client;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use base64::Engine;
use indicatif::ProgressBar;

use super::{DashboardRoute, LaunchRequest, NodeProvider, Provider};
use crate::agent::{NodeRecord, Said};
use crate::bootstrap::{self, NodeParams};
use crate::config::{AwsSetup, Config, HostAddr, ProviderSetup};
use crate::model::{
    DesiredCluster, NodeSpec, NodeState, Observed, ObservedNode, Role, SupportResource, WorkerGroup,
};
use crate::paths::daft_home;
use crate::setup::{self, Bootstrap, NodeSetup, SetupRecord};
use crate::transport::ssh::{SshTarget, SshTransport};
use crate::transport::Transport;

pub const TAG_CLUSTER: &str = "daft:cluster";
pub const TAG_ROLE: &str = "daft:role";
pub const TAG_SPEC: &str = "daft:spec-hash";
pub const TAG_SETUP: &str = "daft:setup-hash";
pub const TAG_HEAD: &str = "daft:head";
pub const TAG_IMAGE: &str = "daft:image";
mod api;
mod groups;
mod nodes;
mod price;
mod security_group;
mod user_data;

use api::*;
pub use api::{all_regions, architecture, client, configured_region, http_client, list_region};
pub use groups::{group_spec, image_spec, is_capacity_error, ray_args, TypeInfo, TAG_GROUP};
pub use nodes::client_token;
pub use price::{node_market, node_prices, on_demand_of};
pub use user_data::{node_params, render_user_data, user_data_script};

/// Instances per `RunInstances` call.
pub const BATCH: u32 = 100;
/// The security group's rule between its own members (Ray's ports, only inside the cluster).
const INTRA_GROUP: &str = "all traffic from the group itself";

pub struct AwsProvider {
    cfg: Config,
    /// `[setup.aws]` with the top-level region, instance type and image.
    aws: AwsSetup,
    client: Client,
    key: Option<PathBuf>,
    /// Who may reach SSH: the config's CIDRs, else this machine's public address /32, looked up
    /// over HTTPS the first time a plan needs it (not by `submit` or `dashboard`); the error says
    /// how to set them when the lookup failed.
    ssh_cidrs: tokio::sync::OnceCell<Result<Vec<String>, String>>,
    /// What EC2 said of each instance type asked about in this run.
    types: tokio::sync::Mutex<BTreeMap<String, groups::TypeInfo>>,
    /// Prices of this region's instances (plans' cost, `max_hourly_cost`).
    prices: price::Prices,
}

impl AwsProvider {
    pub async fn new(cfg: Config, aws: AwsSetup, key: Option<PathBuf>) -> anyhow::Result<Self> {
        let client = client(&aws.region).await?;
        let key = key.or_else(|| cfg.setup.ssh_private_key.clone());
        Ok(AwsProvider {
            prices: price::Prices::new(&aws.region, &aws.zones, client.clone()),
            cfg,
            aws,
            client,
            key,
            ssh_cidrs: tokio::sync::OnceCell::new(),
            types: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    fn name(&self) -> &str {
        &self.cfg.setup.name
    }

    fn sg_name(&self) -> String {
        format!("daft-{}", self.name())
    }

    /// The head's launch spec.
    fn head_spec(&self) -> NodeSpec {
        let mut launch = vec![
            ("instance_type", self.aws.instance_type.clone()),
            (
                "image_id",
                groups::image_spec(
                    self.aws.image_id.as_deref(),
                    std::slice::from_ref(&self.aws.instance_type),
                ),
            ),
            ("ssh_user", self.cfg.setup.ssh_user.clone()),
        ];
        // (Only when set: nodes launched before the key existed keep their spec hash.)
        if let Some(p) = &self.aws.iam_instance_profile {
            launch.push(("iam_instance_profile", profile_name(p).to_string()));
        }
        if let Some(gb) = self.aws.root_volume_gb {
            launch.push(("root_volume_gb", gb.to_string()));
        }
        NodeSpec::new(Role::Head, launch)
    }

    /// A node's tags: its cluster, role, group (a named one's) and readable name.
    fn tags(&self, role: Role, group: &str, extra: &[(&str, String)]) -> Vec<Tag> {
        let label = if group.is_empty() {
            role.as_str()
        } else {
            group
        };
        let mut t = vec![
            Tag::builder().key(TAG_CLUSTER).value(self.name()).build(),
            Tag::builder().key(TAG_ROLE).value(role.as_str()).build(),
            Tag::builder()
                .key("Name")
                .value(format!("daft-{}-{label}", self.name()))
                .build(),
        ];
        if !group.is_empty() {
            t.push(Tag::builder().key(TAG_GROUP).value(group).build());
        }
        for (k, v) in extra {
            t.push(Tag::builder().key(*k).value(v).build());
        }
        t
    }

    /// The root volume to launch with (`root_volume_gb`), on the image's own root device.
    async fn root_volume(
        &self,
        image: &str,
        gb: Option<u32>,
    ) -> anyhow::Result<Option<aws_sdk_ec2::types::BlockDeviceMapping>> {
        let Some(gb) = gb else {
            return Ok(None);
        };
        let out = self
            .client
            .describe_images()
            .image_ids(image)
            .send()
            .await
            .map_err(|e| aws_err("DescribeImages", e))?;
        let device = out
            .images()
            .first()
            .and_then(|i| i.root_device_name())
            .unwrap_or("/dev/xvda")
            .to_string();
        tracing::debug!(target: "daft::aws", image, %device, gb, "root volume");
        Ok(Some(
            aws_sdk_ec2::types::BlockDeviceMapping::builder()
                .device_name(device)
                .ebs(
                    aws_sdk_ec2::types::EbsBlockDevice::builder()
                        .volume_size(gb as i32)
                        .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        ))
    }

    /// The key pair to launch with: `[setup.aws] key_name` if it exists, else the public half of
    /// the private key imported under a name derived from its fingerprint.
    async fn key_pair(&self) -> anyhow::Result<String> {
        if let Some(name) = &self.aws.key_name {
            self.client
                .describe_key_pairs()
                .key_names(name)
                .send()
                .await
                .map_err(|e| aws_err(&format!("DescribeKeyPairs ({name})"), e))?;
            return Ok(name.clone());
        }
        let path = self.key.as_ref().ok_or_else(|| {
            crate::error::usage("the AWS provider needs an SSH key: pass -i KEY, set ssh_private_key, or name an EC2 key pair in [setup.aws] key_name")
        })?;
        if let Err(p) = crate::keys::check_private_key_file(path) {
            return Err(crate::error::usage(format!("{}; {}", p.title, p.help)));
        }
        let text = std::fs::read_to_string(path)?;
        let key = russh::keys::decode_secret_key(&text, None)
            .map_err(|e| anyhow!("cannot read {} to import its public half: {e} (an encrypted key needs [setup.aws] key_name)", path.display()))?;
        let public = key
            .public_key()
            .to_openssh()
            .context("cannot encode the public key")?;
        let fp = key
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        let digest = crate::model::short_hash([fp.as_str()]);
        let name = format!("daft-{digest}");
        let found = self
            .client
            .describe_key_pairs()
            .key_names(&name)
            .send()
            .await;
        match found {
            Ok(_) => Ok(name),
            Err(e)
                if e.as_service_error()
                    .and_then(|s| s.code())
                    .is_some_and(|c| c.starts_with("InvalidKeyPair")) =>
            {
                self.client
                    .import_key_pair()
                    .key_name(&name)
                    .public_key_material(Blob::new(public.into_bytes()))
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::KeyPair)
                            .tags(Tag::builder().key("daft:key").value("imported").build())
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| aws_err("ImportKeyPair", e))?;
                Ok(name)
            }
            Err(e) => Err(aws_err("DescribeKeyPairs", e)),
        }
    }
}

/// The client token of one `RunInstances` batch: the same for every retry of that batch and for
/// another machine that observed the same cluster and plans the same launch (so EC2 launches it
/// once), different for anything else. At most 64 characters, as EC2 requires.
// Each argument is one input of the token; a struct for them would only be built here.

#[async_trait]
impl Provider for AwsProvider {
    fn context(&self) -> String {
        format!("aws {}", self.aws.region)
    }

    async fn query(&self) -> anyhow::Result<Observed> {
        let (nodes, support) = tokio::try_join!(
            describe(
                &self.client,
                vec![filter(&format!("tag:{TAG_CLUSTER}"), &[self.name()])]
            ),
            self.support()
        )?;
        Ok(Observed { nodes, support })
    }

    async fn head_transport(&self, head: &ObservedNode) -> anyhow::Result<Arc<dyn Transport>> {
        let ip = head
            .public_ip
            .as_deref()
            .ok_or_else(|| anyhow!("the head {} has no public address", head.id))?;
        self.connect(&head.id, ip, false, None).await
    }

    fn dashboard_route(&self, _head: &ObservedNode) -> DashboardRoute {
        DashboardRoute::Tunnel {
            host: "127.0.0.1".into(),
            port: 8265,
        }
    }

    fn jobs_outlive_down(&self) -> bool {
        false
    }

    fn reaches_every_node(&self) -> bool {
        true
    }

    /// Every running instance with a public address, named as `daft exec` names them (the head,
    /// `worker-N`); host keys are pinned under the instance id.
    async fn ssh_entries(&self) -> Option<anyhow::Result<Vec<super::SshEntry>>> {
        let obs = match self.query().await {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(crate::model::named_nodes(&obs)
            .into_iter()
            .filter(|(_, n)| n.public_ip.is_some())
            .map(|(name, n)| super::SshEntry {
                name: if n.role == Role::Head {
                    String::new()
                } else {
                    name
                },
                host: n.public_ip.clone().unwrap_or_default(),
                port: 22,
                user: self.cfg.setup.ssh_user.clone(),
                key: self.key.clone(),
                host_key_alias: Some(n.id.clone()),
            })
            .collect()))
    }

    /// The head terminates every instance of its cluster (itself last in the same call) with
    /// its instance profile's credentials, through the job helper's `halt-aws`; the security
    /// group it cannot delete while it runs is left for the next `daft down`. Only with an
    /// instance profile (the config refuses autostop without one).
    fn autostop(
        &self,
        _head: &ObservedNode,
        daft_home: &str,
        after: Duration,
    ) -> Option<crate::autostop::Autostop> {
        self.aws.iam_instance_profile.as_ref()?;
        let cluster_dir = format!("{daft_home}/clusters/{}", self.name());
        Some(crate::autostop::Autostop {
            after,
            dashboard: "http://127.0.0.1:8265".into(),
            halt: crate::agent::JOBS.run_python(
                daft_home,
                &cluster_dir,
                &format!(
                    "halt-aws {} {}",
                    crate::shell::shell_quote(&self.aws.region),
                    crate::shell::shell_quote(self.name()),
                ),
            ),
        })
    }
}

#[async_trait]
impl NodeProvider for AwsProvider {
    async fn desired(&self) -> DesiredCluster {
        DesiredCluster {
            name: self.name().to_string(),
            head: Some(self.head_spec()),
            groups: self
                .aws
                .groups
                .iter()
                .map(|g| WorkerGroup {
                    name: g.name.clone(),
                    spec: group_spec(g, &self.cfg.setup.ssh_user),
                    min: g.workers,
                    max: g.workers,
                })
                .collect(),
            setup_hash: bootstrap::setup_hash(&self.cfg),
            support: vec![SupportResource {
                kind: "security-group".into(),
                name: self.sg_name(),
                id: None,
                // Without the caller's address the rules cannot be compared: said, not hidden.
                rules: match self.wanted_rules().await {
                    Ok(r) => Some(r),
                    Err(e) => {
                        crate::warning!(
                            "daft: warning: the security group's SSH rules are not checked for drift: {e}"
                        );
                        None
                    }
                },
            }],
        }
    }

    fn self_starting(&self) -> bool {
        true
    }

    async fn estimate(&self, desired: &DesiredCluster) -> Option<crate::cost::Estimate> {
        Some(self.estimate_cost(desired).await)
    }

    fn max_hourly_cost(&self) -> Option<f64> {
        self.aws.max_hourly_cost
    }

    async fn create_support(&self, r: &SupportResource) -> anyhow::Result<SupportResource> {
        self.create_group(r).await
    }

    async fn update_support(&self, r: &SupportResource, pb: &ProgressBar) -> anyhow::Result<()> {
        self.update_group(r, pb).await
    }

    async fn run_instances(
        &self,
        req: &LaunchRequest<'_>,
        pb: &ProgressBar,
    ) -> anyhow::Result<Vec<ObservedNode>> {
        self.launch(req, pb).await
    }

    async fn setup_node(
        &self,
        node: &ObservedNode,
        head: &ObservedNode,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode> {
        self.set_up_node(node, head, pb).await
    }

    async fn terminate(
        &self,
        nodes: &[ObservedNode],
        _force: bool,
        pb: &ProgressBar,
    ) -> anyhow::Result<()> {
        for chunk in nodes.chunks(1000) {
            pb.set_message(format!("terminating {} instance(s)", chunk.len()));
            self.client
                .terminate_instances()
                .set_instance_ids(Some(chunk.iter().map(|n| n.id.clone()).collect()))
                .send()
                .await
                .map_err(|e| aws_err("TerminateInstances", e))?;
        }
        Ok(())
    }

    async fn delete_support(&self, r: &SupportResource, pb: &ProgressBar) -> anyhow::Result<()> {
        self.delete_group(r, pb).await
    }
}

/// An instance profile's name, from its name or its ARN (`…:instance-profile/PATH/NAME`).
pub(super) fn profile_name(p: &str) -> &str {
    if p.starts_with("arn:") {
        p.rsplit('/').next().unwrap_or(p)
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::{architecture, client_token};
    use crate::model::Role;

    #[test]
    fn client_token_fits_ec2_and_is_the_same_for_the_same_launch() {
        let name = "n".repeat(63);
        let seen = vec!["i-2".to_string(), "i-1".to_string()];
        let t = client_token(&name, "us-west-2", Role::Worker, "abc", &seen, 1, 100, 0);
        assert!(t.len() <= 64, "{} chars: {t}", t.len());
        // Same observation (in any order), same batch: the same token, here or elsewhere.
        let again = ["i-1".to_string(), "i-2".to_string()];
        assert_eq!(
            t,
            client_token(&name, "us-west-2", Role::Worker, "abc", &again, 1, 100, 0)
        );
        // Anything else: another token.
        for other in [
            client_token(&name, "us-west-2", Role::Worker, "abc", &seen, 2, 100, 0),
            client_token(
                &name,
                "us-west-2",
                Role::Worker,
                "abc",
                &seen[..1],
                1,
                100,
                0,
            ),
            client_token(&name, "us-west-2", Role::Head, "abc", &seen, 1, 100, 0),
            client_token(&name, "us-west-2", Role::Worker, "abd", &seen, 1, 100, 0),
            client_token(&name, "eu-west-1", Role::Worker, "abc", &seen, 1, 100, 0),
            client_token(&name, "us-west-2", Role::Worker, "abc", &seen, 1, 100, 1),
        ] {
            assert_ne!(t, other);
        }
    }

    #[test]
    fn graviton_is_arm() {
        assert_eq!(architecture("m7g.medium"), "arm64");
        assert_eq!(architecture("c7gn.large"), "arm64");
        assert_eq!(architecture("t4g.micro"), "arm64");
        assert_eq!(architecture("a1.large"), "arm64");
        assert_eq!(architecture("m7i.large"), "x86_64");
        assert_eq!(architecture("t3.large"), "x86_64");
        assert_eq!(architecture("g5.xlarge"), "x86_64");
    }
}
