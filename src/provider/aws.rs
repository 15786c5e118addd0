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
use crate::bootstrap::{self, NodeParams, NodeRecord, Said};
use crate::config::{AwsSetup, Config, HostAddr, ProviderSetup};
use crate::model::{
    DesiredCluster, NodeSpec, NodeState, Observed, ObservedNode, Role, SupportResource,
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
/// Instances per `RunInstances` call.
pub const BATCH: u32 = 100;
/// The security group's rule between its own members (Ray's ports, only inside the cluster).
const INTRA_GROUP: &str = "all traffic from the group itself";

/// Logs every EC2 API request (calls and their retries) at debug level (`RUST_LOG=debug`);
/// the scale test and the benchmark count these lines.
#[derive(Debug)]
struct CallLog;

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "daft-call-log"
    }
    /// Each HTTP request (a call, or a retry of one).
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        tracing::debug!(target: "daft::aws", operation = %op, uri = %ctx.request().uri(), "api call");
        Ok(())
    }
}

/// The SDK's HTTP client: hyper with rustls on ring (set explicitly; no default features).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider as Tls};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Tls::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An EC2 client for a region: default credential chain (env, profiles, SSO, instance metadata),
/// `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_EC2` honoured by the SDK, standard retries with backoff.
pub async fn client(region: &str) -> anyhow::Result<Client> {
    let http = http_client();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .http_client(http)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
        .load()
        .await;
    use aws_credential_types::provider::ProvideCredentials;
    let creds = sdk.credentials_provider().ok_or_else(no_credentials)?;
    if let Err(e) = creds.provide_credentials().await {
        tracing::debug!("credentials: {e:?}");
        return Err(no_credentials());
    }
    let conf = aws_sdk_ec2::config::Builder::from(&sdk)
        .interceptor(CallLog)
        .build();
    Ok(Client::from_conf(conf))
}

fn no_credentials() -> anyhow::Error {
    anyhow!(
        "no AWS credentials found. Provide them in one of these ways: \
         set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; \
         or log in with `aws sso login --profile NAME` and set AWS_PROFILE=NAME; \
         or add a profile to ~/.aws/credentials; \
         or run daft on an instance with an IAM role"
    )
}

/// An AWS error with the AWS message and what to do.
fn aws_err<E, R>(op: &str, e: SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (code, msg) = match &e {
        SdkError::ServiceError(s) => (
            s.err().code().unwrap_or("").to_string(),
            s.err().message().unwrap_or("").to_string(),
        ),
        SdkError::DispatchFailure(d) => {
            return anyhow!(
                "{op}: cannot reach the EC2 API ({d:?}); check your network and AWS_ENDPOINT_URL"
            )
        }
        SdkError::TimeoutError(_) => return anyhow!("{op}: the EC2 API timed out; try again"),
        other => return anyhow!("{op} failed: {other}"),
    };
    let hint = match code.as_str() {
        "UnauthorizedOperation" | "AuthFailure" | "AccessDenied" | "OptInRequired" => {
            "your AWS identity lacks a permission daft needs (ec2:RunInstances, ec2:DescribeInstances, ec2:TerminateInstances, ec2:*SecurityGroup*, ec2:CreateTags, ec2:ImportKeyPair, ec2:DescribeImages); ask your administrator"
        }
        "InsufficientInstanceCapacity" | "InstanceLimitExceeded" | "VcpuLimitExceeded" | "MaxSpotInstanceCountExceeded" => {
            "EC2 has no capacity (or your quota is used up) for this instance type here; try another instance_type or region, or ask for a quota increase"
        }
        c if c.starts_with("InvalidAMIID") => "the image does not exist in this region; fix image_id or delete it to let daft pick a current Amazon Linux image",
        c if c.starts_with("InvalidKeyPair") => "the key pair does not exist in this region; fix [setup.aws] key_name or leave it out to import your key",
        "InvalidParameterValue" | "InvalidParameterCombination" | "Unsupported" => "check instance_type and image_id in the config (an arm64 type such as m7g needs an arm64 image)",
        "RequestLimitExceeded" | "Throttling" => "EC2 is throttling requests; wait a minute and run the command again",
        _ => "see the AWS message above",
    };
    anyhow!("{op} failed: {code}: {msg}\n  what to do: {hint}")
}

fn tag_value<'a>(i: &'a Instance, key: &str) -> Option<&'a str> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn to_node(i: &Instance) -> Option<ObservedNode> {
    let cluster = tag_value(i, TAG_CLUSTER)?.to_string();
    let role = Role::parse(tag_value(i, TAG_ROLE).unwrap_or("worker"))?;
    let mut launch = BTreeMap::new();
    if let Some(t) = i.instance_type() {
        launch.insert("instance_type".to_string(), t.as_str().to_string());
    }
    if let Some(img) = tag_value(i, TAG_IMAGE) {
        launch.insert("image_id".to_string(), img.to_string());
    }
    let mut detail = BTreeMap::new();
    detail.insert(
        "type".to_string(),
        i.instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
    );
    if let Some(az) = i.placement().and_then(|p| p.availability_zone()) {
        detail.insert("zone".to_string(), az.to_string());
    }
    Some(ObservedNode {
        id: i.instance_id()?.to_string(),
        cluster,
        role,
        state: NodeState::from_ec2(
            i.state()
                .and_then(|s| s.name())
                .map(|n| n.as_str())
                .unwrap_or("terminated"),
        ),
        spec_hash: tag_value(i, TAG_SPEC).unwrap_or("").to_string(),
        launch,
        setup_hash: tag_value(i, TAG_SETUP).map(str::to_string),
        joined_head: tag_value(i, TAG_HEAD).map(str::to_string),
        public_ip: i.public_ip_address().map(str::to_string),
        private_ip: i.private_ip_address().map(str::to_string),
        created: i.launch_time().map(|t| t.secs().max(0) as u64).unwrap_or(0),
        detail,
    })
}

/// Every instance matching `filters`, all pages.
async fn describe(client: &Client, filters: Vec<Filter>) -> anyhow::Result<Vec<ObservedNode>> {
    let mut pages = client
        .describe_instances()
        .set_filters(Some(filters))
        .max_results(1000)
        .into_paginator()
        .send();
    let mut nodes = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_err("DescribeInstances", e))?;
        for r in page.reservations() {
            nodes.extend(r.instances().iter().filter_map(to_node));
        }
    }
    Ok(nodes)
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|s| s.to_string()).collect()))
        .build()
}

/// Every daft node in a region (for `daft list`), terminated ones included.
pub async fn list_region(region: &str) -> anyhow::Result<Vec<ObservedNode>> {
    let c = client(region).await?;
    describe(&c, vec![filter("tag-key", &[TAG_CLUSTER])]).await
}

/// The region of the AWS configuration (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's
/// `region`) when credentials are there too: what a plain `daft list` looks at.
pub async fn configured_region() -> Option<String> {
    // Only an AWS configuration that is really there is consulted: never the instance metadata
    // service of a machine that may not be an instance.
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let home = env("HOME").map(PathBuf::from);
    let files = home
        .as_ref()
        .is_some_and(|h| h.join(".aws/config").exists() || h.join(".aws/credentials").exists());
    if env("AWS_ACCESS_KEY_ID").is_none() && env("AWS_PROFILE").is_none() && !files {
        return None;
    }
    use aws_config::meta::region::ProvideRegion;
    let region = match env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
        Some(r) => r,
        None => aws_config::profile::ProfileFileRegionProvider::new()
            .region()
            .await?
            .to_string(),
    };
    // Credentials present? (No network call: a static or profile provider answers locally.)
    match client(&region).await {
        Ok(_) => Some(region),
        Err(e) => {
            tracing::debug!("not listing AWS: {e:#}");
            None
        }
    }
}

/// The regions this account can use.
pub async fn all_regions(cfg: Option<&Config>) -> anyhow::Result<Vec<String>> {
    let region = cfg
        .and_then(|c| match &c.setup.provider {
            ProviderSetup::Aws(a) => Some(a.region.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "us-west-2".into());
    let c = client(&region).await?;
    let out = c
        .describe_regions()
        .send()
        .await
        .map_err(|e| aws_err("DescribeRegions", e))?;
    Ok(out
        .regions()
        .iter()
        .filter_map(|r| r.region_name().map(str::to_string))
        .collect())
}

/// The CPU architecture of an instance type: Graviton families (m7g, c7gn, t4g, a1…) are arm64.
pub fn architecture(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or("");
    let letters_after_gen: String = family
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .skip_while(|c| c.is_ascii_digit())
        .collect();
    if family == "a1" || letters_after_gen.contains('g') {
        "arm64"
    } else {
        "x86_64"
    }
}

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
}

impl AwsProvider {
    pub async fn new(cfg: Config, aws: AwsSetup, key: Option<PathBuf>) -> anyhow::Result<Self> {
        let client = client(&aws.region).await?;
        let key = key.or_else(|| cfg.setup.ssh_private_key.clone());
        Ok(AwsProvider {
            cfg,
            aws,
            client,
            key,
            ssh_cidrs: tokio::sync::OnceCell::new(),
        })
    }

    /// The security group's rules as the planner compares them (Err: the caller's address could
    /// not be found, and what to do).
    async fn wanted_rules(&self) -> Result<Vec<String>, &str> {
        let cidrs = self
            .ssh_cidrs
            .get_or_init(|| async {
                if !self.aws.ssh_ingress_cidrs.is_empty() {
                    return Ok(self.aws.ssh_ingress_cidrs.clone());
                }
                public_ip()
                    .await
                    .map(|ip| vec![format!("{ip}/32")])
                    .map_err(|e| {
                        format!(
                            "cannot find this machine's public address to allow SSH from it ({e:#}); \
                             list the networks you connect from in [setup.aws] ssh_ingress_cidrs, \
                             for example ssh_ingress_cidrs = [\"203.0.113.7/32\"]"
                        )
                    })
            })
            .await
            .as_ref()
            .map_err(String::as_str)?;
        let mut rules: Vec<String> = cidrs.iter().map(|c| format!("tcp 22 from {c}")).collect();
        rules.push(INTRA_GROUP.to_string());
        rules.sort();
        Ok(rules)
    }

    fn name(&self) -> &str {
        &self.cfg.setup.name
    }

    fn sg_name(&self) -> String {
        format!("daft-{}", self.name())
    }

    fn image_spec(&self) -> String {
        self.aws
            .image_id
            .clone()
            .unwrap_or_else(|| format!("auto:al2023-{}", architecture(&self.aws.instance_type)))
    }

    fn spec(&self, role: Role) -> NodeSpec {
        NodeSpec::new(
            role,
            [
                ("instance_type", self.aws.instance_type.clone()),
                ("image_id", self.image_spec()),
                ("ssh_user", self.cfg.setup.ssh_user.clone()),
            ],
        )
    }

    fn tags(&self, role: Role, extra: &[(&str, String)]) -> Vec<Tag> {
        let mut t = vec![
            Tag::builder().key(TAG_CLUSTER).value(self.name()).build(),
            Tag::builder().key(TAG_ROLE).value(role.as_str()).build(),
            Tag::builder()
                .key("Name")
                .value(format!("daft-{}-{}", self.name(), role.as_str()))
                .build(),
        ];
        for (k, v) in extra {
            t.push(Tag::builder().key(*k).value(v).build());
        }
        t
    }

    /// The image to launch: `image_id`, else the newest Amazon Linux 2023 for the architecture.
    async fn resolve_image(&self) -> anyhow::Result<String> {
        if let Some(id) = &self.aws.image_id {
            return Ok(id.clone());
        }
        let arch = architecture(&self.aws.instance_type);
        let out = self
            .client
            .describe_images()
            .owners("amazon")
            .filters(filter("name", &[&format!("al2023-ami-2023.*-{arch}")]))
            .filters(filter("architecture", &[arch]))
            .filters(filter("state", &["available"]))
            .send()
            .await
            .map_err(|e| aws_err("DescribeImages", e))?;
        let mut images: Vec<_> = out
            .images()
            .iter()
            .filter(|i| !i.name().unwrap_or("").contains("minimal"))
            .collect();
        images.sort_by_key(|i| i.creation_date().unwrap_or("").to_string());
        let img = images.last().and_then(|i| i.image_id()).ok_or_else(|| {
            anyhow!(
                "no Amazon Linux 2023 {arch} image found in {}; set image_id in the config",
                self.aws.region
            )
        })?;
        tracing::debug!(image = img, arch, "resolved image");
        Ok(img.to_string())
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

    async fn security_group_id(&self) -> anyhow::Result<String> {
        let obs = self.support().await?;
        obs.into_iter().find_map(|s| s.id).ok_or_else(|| {
            anyhow!(
                "the cluster's security group {} is missing; run `daft up` again",
                self.sg_name()
            )
        })
    }

    async fn support(&self) -> anyhow::Result<Vec<SupportResource>> {
        let out = self
            .client
            .describe_security_groups()
            .filters(filter(&format!("tag:{TAG_CLUSTER}"), &[self.name()]))
            .send()
            .await
            .map_err(|e| aws_err("DescribeSecurityGroups", e))?;
        Ok(out
            .security_groups()
            .iter()
            .map(|g| SupportResource {
                kind: "security-group".into(),
                name: g.group_name().unwrap_or("").to_string(),
                id: g.group_id().map(str::to_string),
                rules: Some(observed_rules(g)),
            })
            .collect())
    }

    /// The permissions that make up `rules` (as [`observed_rules`] writes them) for group `id`.
    fn permissions(id: &str, rules: &[String]) -> Vec<IpPermission> {
        rules
            .iter()
            .filter_map(|r| rule_permission(id, r))
            .collect()
    }
}

/// The user data for a node of `cfg`'s cluster: the bootstrap script with its settings, run as
/// the login user (`ssh_user`) at first boot; workers join the head's private address.
/// `host_key`: the OpenSSH private host key daft made for these instances (pinned before
/// connecting, so the first connection is no trust-on-first-use).
pub fn render_user_data(
    cfg: &Config,
    role: Role,
    head: Option<&ObservedNode>,
    host_key: Option<&str>,
) -> String {
    user_data_script(
        &cfg.setup.ssh_user,
        &cfg.setup.name,
        &bootstrap::render(&node_params(cfg, role, head)),
        host_key,
    )
}

/// The bootstrap settings of an EC2 node: in its user data, and for an update in place.
pub fn node_params(cfg: &Config, role: Role, head: Option<&ObservedNode>) -> NodeParams {
    NodeParams {
        daft_home: "$HOME/.daft".into(),
        cluster: cfg.setup.name.clone(),
        node: role.as_str().to_string(),
        role: Some(role),
        env_hash: bootstrap::env_hash(cfg),
        requirements: bootstrap::requirements(cfg),
        python_version: cfg.setup.python_version.clone(),
        node_ip: None,
        head_address: head
            .and_then(|h| h.private_ip.clone())
            .map(|ip| format!("{ip}:6379")),
        head_id: head.map(|h| h.id.clone()),
        ray_port: 6379,
        dashboard_host: "127.0.0.1".into(),
        dashboard_port: 8265,
        ray_args: String::new(),
        // EC2: the security group admits Ray's ports from the cluster's own instances only.
        ray_env: String::new(),
        ray_auth: false,
        ray_tmp: role.as_str().to_string(),
        node_json: NodeRecord::minimal(&cfg.setup.name, role, None).json(),
        node_json_pending: String::new(),
        member: None,
        from_env: vec![],
    }
}

/// EC2 user data (run as root once, by cloud-init): install the host key daft pinned, then run
/// the rendered bootstrap as the login user and record its exit status where daft looks for it
/// (`~/.daft/clusters/NAME/bootstrap.exit`). Everything is passed base64-encoded: no value can
/// end a quoted block.
pub fn user_data_script(
    user: &str,
    cluster: &str,
    bootstrap: &str,
    host_key: Option<&str>,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut s =
        String::from("#!/bin/sh\n# daft node bootstrap (EC2 user data)\nset -eu\numask 077\n");
    if let Some(key) = host_key {
        s.push_str(&format!(
            "# The host key daft made for this instance and pinned before connecting.\n\
             echo {k} | base64 -d > /etc/ssh/ssh_host_ed25519_key\n\
             chmod 600 /etc/ssh/ssh_host_ed25519_key\n\
             ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub\n\
             chmod 644 /etc/ssh/ssh_host_ed25519_key.pub\n\
             systemctl reload sshd 2>/dev/null || systemctl reload ssh 2>/dev/null || pkill -HUP -x sshd || true\n",
            k = b64(key)
        ));
    }
    let run = String::from(
        "sh \"$0\" install start; rc=$?; mkdir -p \"$HOME/.daft/clusters/$1\"; echo $rc > \"$HOME/.daft/clusters/$1/bootstrap.exit\"; exit $rc"
    );
    s.push_str(&format!(
        "f=$(mktemp /tmp/daft-bootstrap.XXXXXX)\n\
         echo {b} | base64 -d > \"$f\"\n\
         chmod 755 \"$f\"\n\
         if [ \"$(id -un)\" = {u} ]; then sh -c {r} \"$f\" {c}; else su - {u} -c {rq}; fi\n",
        b = b64(bootstrap),
        u = crate::shell::shell_quote(user),
        r = crate::shell::shell_quote(&run),
        c = crate::shell::shell_quote(cluster),
        rq = crate::shell::shell_quote(&format!(
            "sh -c {} \"$0\" {}",
            crate::shell::shell_quote(&run),
            crate::shell::shell_quote(cluster)
        )),
    ));
    s
}

/// This machine's public IPv4 address, from AWS's checkip service over HTTPS
/// (`DAFT_CHECKIP_URL` overrides the address, for tests).
async fn public_ip() -> anyhow::Result<std::net::Ipv4Addr> {
    let url = std::env::var("DAFT_CHECKIP_URL")
        .unwrap_or_else(|_| "https://checkip.amazonaws.com/".to_string());
    let body = tokio::time::timeout(Duration::from_secs(10), crate::https::get(&url))
        .await
        .map_err(|_| anyhow!("{url} did not answer within 10s"))??;
    body.trim()
        .parse::<std::net::Ipv4Addr>()
        .map_err(|_| anyhow!("{url} answered {:?}, not an IPv4 address", body.trim()))
}

/// The client token of one `RunInstances` batch: the same for every retry of that batch and for
/// another machine that observed the same cluster and plans the same launch (so EC2 launches it
/// once), different for anything else. At most 64 characters, as EC2 requires.
// Each argument is one input of the token; a struct for them would only be built here.
#[allow(clippy::too_many_arguments)]
pub fn client_token(
    cluster: &str,
    region: &str,
    role: Role,
    spec_hash: &str,
    seen: &[String],
    batch_no: u32,
    count: u32,
    salt: u32,
) -> String {
    let mut ids: Vec<&str> = seen.iter().map(String::as_str).collect();
    ids.sort_unstable();
    let ids = ids.join(",");
    let h = crate::model::short_hash([
        cluster,
        region,
        role.as_str(),
        spec_hash,
        ids.as_str(),
        batch_no.to_string().as_str(),
        count.to_string().as_str(),
        salt.to_string().as_str(),
    ]);
    format!("daft-{}-{h}", role.as_str())
}

/// One rule line ("tcp 22 from 203.0.113.7/32", "all traffic from the group itself") as an EC2
/// permission of group `id`.
fn rule_permission(id: &str, rule: &str) -> Option<IpPermission> {
    let (what, src) = rule.split_once(" from ")?;
    let mut p = IpPermission::builder();
    if what == "all traffic" {
        p = p.ip_protocol("-1");
    } else {
        let (proto, ports) = what.split_once(' ').unwrap_or((what, ""));
        p = p.ip_protocol(proto);
        if !ports.is_empty() {
            let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
            p = p.from_port(a.parse().ok()?).to_port(b.parse().ok()?);
        }
    }
    p = if src == "the group itself" {
        p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(id)
                .description("Ray: all traffic within the cluster")
                .build(),
        )
    } else if src.starts_with("sg-") {
        p.user_id_group_pairs(UserIdGroupPair::builder().group_id(src).build())
    } else if src.contains(':') {
        p.ipv6_ranges(
            aws_sdk_ec2::types::Ipv6Range::builder()
                .cidr_ipv6(src)
                .build(),
        )
    } else {
        p.ip_ranges(
            IpRange::builder()
                .cidr_ip(src)
                .description("SSH for daft")
                .build(),
        )
    };
    Some(p.build())
}

/// The rules of a security group, as [`AwsProvider::wanted_rules`] writes them.
fn observed_rules(g: &aws_sdk_ec2::types::SecurityGroup) -> Vec<String> {
    let own = g.group_id().unwrap_or_default();
    let mut rules = Vec::new();
    for p in g.ip_permissions() {
        let proto = p.ip_protocol().unwrap_or("-1");
        let what = match (proto, p.from_port(), p.to_port()) {
            ("-1", _, _) => "all traffic".to_string(),
            (pr, Some(a), Some(b)) if a == b => format!("{pr} {a}"),
            (pr, Some(a), Some(b)) => format!("{pr} {a}-{b}"),
            (pr, _, _) => pr.to_string(),
        };
        for r in p.ip_ranges() {
            rules.push(format!("{what} from {}", r.cidr_ip().unwrap_or("?")));
        }
        for r in p.ipv6_ranges() {
            rules.push(format!("{what} from {}", r.cidr_ipv6().unwrap_or("?")));
        }
        for pair in p.user_id_group_pairs() {
            if pair.group_id() == Some(own) {
                rules.push(format!("{what} from the group itself"));
            } else {
                rules.push(format!("{what} from {}", pair.group_id().unwrap_or("?")));
            }
        }
    }
    rules.sort();
    rules.dedup();
    rules
}

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
}

#[async_trait]
impl NodeProvider for AwsProvider {
    async fn desired(&self) -> DesiredCluster {
        DesiredCluster {
            name: self.name().to_string(),
            head: Some(self.spec(Role::Head)),
            worker: self.spec(Role::Worker),
            workers: self.cfg.setup.number_of_workers,
            setup_hash: bootstrap::setup_hash(&self.cfg),
            support: vec![SupportResource {
                kind: "security-group".into(),
                name: self.sg_name(),
                id: None,
                // Without the caller's address the rules cannot be compared: said, not hidden.
                rules: match self.wanted_rules().await {
                    Ok(r) => Some(r),
                    Err(e) => {
                        crate::note!(
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

    async fn create_support(&self, r: &SupportResource) -> anyhow::Result<SupportResource> {
        let vpc = self
            .client
            .describe_vpcs()
            .filters(filter("isDefault", &["true"]))
            .send()
            .await
            .map_err(|e| aws_err("DescribeVpcs", e))?;
        let vpc_id = vpc.vpcs().first().and_then(|v| v.vpc_id()).ok_or_else(|| {
            anyhow!(
                "region {} has no default VPC; create one with `aws ec2 create-default-vpc`",
                self.aws.region
            )
        })?;
        let rules = self.wanted_rules().await.map_err(|e| anyhow!("{e}"))?;
        let created = self
            .client
            .create_security_group()
            .group_name(&r.name)
            .description(format!(
                "daft cluster {}: SSH from its users, all traffic within the cluster",
                self.name()
            ))
            .vpc_id(vpc_id)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .set_tags(Some(vec![
                        Tag::builder().key(TAG_CLUSTER).value(self.name()).build(),
                        Tag::builder().key("Name").value(&r.name).build(),
                    ]))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_err("CreateSecurityGroup", e))?;
        let id = created.group_id().unwrap_or_default().to_string();
        self.client
            .authorize_security_group_ingress()
            .group_id(&id)
            .set_ip_permissions(Some(Self::permissions(&id, &rules)))
            .send()
            .await
            .map_err(|e| aws_err("AuthorizeSecurityGroupIngress", e))?;
        Ok(SupportResource {
            id: Some(id),
            rules: Some(rules),
            ..r.clone()
        })
    }

    async fn update_support(&self, r: &SupportResource, pb: &ProgressBar) -> anyhow::Result<()> {
        let id =
            r.id.clone()
                .ok_or_else(|| anyhow!("security group {} has no id", r.name))?;
        let want = match &r.rules {
            Some(w) => w.clone(),
            None => return Ok(()),
        };
        let have = self
            .support()
            .await?
            .into_iter()
            .find(|s| s.id.as_deref() == Some(id.as_str()))
            .and_then(|s| s.rules)
            .unwrap_or_default();
        let (add, drop) = crate::model::rules_diff(&want, &have);
        if !add.is_empty() {
            pb.set_message(format!("allowing {}", add.join(", ")));
            self.client
                .authorize_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(Self::permissions(&id, &add)))
                .send()
                .await
                .map_err(|e| aws_err("AuthorizeSecurityGroupIngress", e))?;
        }
        if !drop.is_empty() {
            pb.set_message(format!("revoking {}", drop.join(", ")));
            self.client
                .revoke_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(Self::permissions(&id, &drop)))
                .send()
                .await
                .map_err(|e| aws_err("RevokeSecurityGroupIngress", e))?;
        }
        Ok(())
    }

    async fn run_instances(
        &self,
        req: &LaunchRequest<'_>,
        pb: &ProgressBar,
    ) -> anyhow::Result<Vec<ObservedNode>> {
        let (image, key, sg) = tokio::try_join!(
            self.resolve_image(),
            self.key_pair(),
            self.security_group_id()
        )?;
        let mut launched = Vec::new();
        let mut left = req.count;
        let mut batch_no = 0;
        while left > 0 {
            let n = left.min(BATCH);
            batch_no += 1;
            pb.set_message(format!(
                "launching {n} {} instance(s) (batch {batch_no})",
                req.role.as_str()
            ));
            // The batch's host key: made here, handed over in the user data, pinned under each
            // instance id before anyone connects.
            let host_key =
                russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
                    .map_err(|e| anyhow!("cannot make a host key: {e}"))?;
            let host_key_text = host_key
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .map_err(|e| anyhow!("cannot encode a host key: {e}"))?;
            let user_data = base64::engine::general_purpose::STANDARD.encode(render_user_data(
                &self.cfg,
                req.role,
                req.head,
                Some(&host_key_text),
            ));
            // The setup hash is tagged only once daft has seen the node set up (setup_node).
            let mut extra = vec![(TAG_SPEC, req.spec.hash()), (TAG_IMAGE, self.image_spec())];
            if let Some(h) = req.head {
                extra.push((TAG_HEAD, h.id.clone()));
            }
            let tags = self.tags(req.role, &extra);
            let mut salt = 0;
            let before = Instant::now();
            let sent = loop {
                let token = client_token(
                    self.name(),
                    &self.aws.region,
                    req.role,
                    &req.spec.hash(),
                    req.seen,
                    batch_no,
                    n,
                    salt,
                );
                tracing::debug!(target: "daft::aws", %token, "RunInstances client token");
                let sent = self
                    .client
                    .run_instances()
                    .image_id(&image)
                    .instance_type(InstanceType::from(self.aws.instance_type.as_str()))
                    // All or nothing per batch (moto honours only MinCount; EC2 answers a batch it
                    // cannot fill with InsufficientInstanceCapacity). Batches that did launch are
                    // kept and the shortfall reported; the next `up` fills the gap.
                    .min_count(n as i32)
                    .max_count(n as i32)
                    .key_name(&key)
                    .security_group_ids(&sg)
                    .user_data(user_data.clone())
                    .client_token(token)
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::Instance)
                            .set_tags(Some(tags.clone()))
                            .build(),
                    )
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::Volume)
                            .set_tags(Some(tags.clone()))
                            .build(),
                    )
                    .send()
                    .await;
                // A token EC2 saw before, for instances that are gone since (the same launch
                // planned again from the same observation): launch anew under another token.
                if let Ok(out) = &sent {
                    let gone = !out.instances().is_empty()
                        && out.instances().iter().all(|i| {
                            !NodeState::from_ec2(
                                i.state()
                                    .and_then(|s| s.name())
                                    .map(|n| n.as_str())
                                    .unwrap_or(""),
                            )
                            .is_alive()
                        });
                    if gone && salt < 3 {
                        salt += 1;
                        continue;
                    }
                }
                break sent;
            };
            match sent {
                Ok(out) => {
                    let got: Vec<ObservedNode> =
                        out.instances().iter().filter_map(to_node).collect();
                    self.pin_host_keys(&got, &host_key)?;
                    if got.len() < n as usize {
                        tracing::warn!("asked for {n} instances, EC2 launched {}", got.len());
                        pb.println(format!("warning: asked for {n} {} instance(s), EC2 launched {} (partial capacity)", req.role.as_str(), got.len()));
                        launched.extend(got);
                        break;
                    }
                    left -= got.len() as u32;
                    launched.extend(got);
                }
                Err(e) => {
                    // Before anything is retried, look again: the call may have launched after all.
                    let err = aws_err("RunInstances", e);
                    let again = self.query().await?;
                    let since = before.elapsed().as_secs() + 5;
                    let now = crate::time::now_secs();
                    let appeared: Vec<ObservedNode> = again
                        .nodes
                        .into_iter()
                        .filter(|x| {
                            x.role == req.role
                                && x.state.is_alive()
                                && x.created + since >= now
                                && !launched.iter().any(|l| l.id == x.id)
                        })
                        .collect();
                    if appeared.is_empty() {
                        if launched.is_empty() {
                            return Err(err);
                        }
                        pb.println(format!("warning: {err}"));
                        break;
                    }
                    self.pin_host_keys(&appeared, &host_key)?;
                    left = left.saturating_sub(appeared.len() as u32);
                    launched.extend(appeared);
                }
            }
        }
        Ok(launched)
    }

    async fn setup_node(
        &self,
        node: &ObservedNode,
        head: &ObservedNode,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode> {
        // 1. Running, with a public address (RunInstances answers `pending` without one).
        let node = self.wait_running(node, pb).await?;
        let ip = node.public_ip.clone().ok_or_else(|| {
            anyhow!(
                "{} is running but has no public address; daft reaches nodes over their public \
                 address: launch into a subnet that assigns public IPv4 addresses",
                node.id
            )
        })?;
        // 2. SSH (the instance is still booting), its host key pinned under its id.
        let t = self.connect(&node.id, &ip, true, Some(pb.clone())).await?;
        // 3. The user data's bootstrap: its recorded exit status, or Ray alive.
        let wait = crate::wait::env_secs("DAFT_USER_DATA_WAIT_SECS", Duration::from_secs(900));
        pb.set_message(format!(
            "waiting for the user data to install the environment and start Ray on {ip}, up to {}",
            humantime::format_duration(wait)
        ));
        let params = NodeParams {
            daft_home: t.daft_home(),
            cluster: self.name().to_string(),
            node: node.role.as_str().to_string(),
            ..Default::default()
        };
        let exit_file = format!("{}/clusters/{}/bootstrap.exit", t.daft_home(), self.name());
        let deadline = Instant::now() + wait;
        loop {
            let st = bootstrap::run(t.as_ref(), &params, &["status"], bootstrap::QUICK).await?;
            let alive = bootstrap::said(&st.stdout)
                .iter()
                .any(|s| matches!(s, Said::Node { alive: true, .. }));
            if alive {
                break;
            }
            let exit = t
                .capture(&format!(
                    "cat {} 2>/dev/null || true",
                    crate::shell::dquote(&exit_file)
                ))
                .await?;
            let code = exit.stdout.trim();
            if code == "0" {
                // The user data finished; its Ray may have stopped since (a worker whose head
                // went away): the update below starts it again.
                break;
            }
            if !code.is_empty() {
                let log = t
                    .capture("tail -n 25 /var/log/cloud-init-output.log 2>/dev/null || sudo -n tail -n 25 /var/log/cloud-init-output.log 2>/dev/null || true")
                    .await?;
                bail!(
                    "the user data of {} ({ip}) failed with exit status {code}; the end of \
                     /var/log/cloud-init-output.log there:\n{}\nFix the cause (dependencies, \
                     python_version, ray_version), then replace the node: `daft down` and \
                     `daft up`",
                    node.id,
                    bootstrap::indent(log.stdout.trim_end())
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} ({ip}) did not start Ray within {}; see /var/log/cloud-init-output.log on it",
                    node.id,
                    humantime::format_duration(wait)
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // 4. Updates in place, and workers that must join another head: run the bootstrap
        //    again with the current settings (it restarts Ray only when they changed); then
        //    the head's setup commands, then the record (the node's tags).
        let want_setup = bootstrap::setup_hash(&self.cfg);
        let setup_changed =
            node.setup_hash.is_some() && node.setup_hash.as_deref() != Some(want_setup.as_str());
        let rejoin = node.role == Role::Worker && node.joined_head.as_deref() != Some(&head.id);
        let bootstrap = if setup_changed || rejoin {
            Bootstrap::Run {
                params: Box::new(node_params(&self.cfg, node.role, Some(head))),
                doing: if rejoin {
                    format!("joining the head {}", head.id)
                } else {
                    "updating the environment".to_string()
                },
            }
        } else {
            Bootstrap::Done
        };
        setup::set_up(
            &self.cfg,
            NodeSetup {
                node: &node,
                head,
                hash: &want_setup,
                bootstrap,
            },
            || async { Ok(t.clone()) },
            self,
            pb,
        )
        .await
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
        let Some(id) = r.id.clone() else {
            return Ok(());
        };
        // The group cannot go while instances use it: wait for them to terminate.
        let ids: Vec<String> = self
            .query()
            .await?
            .nodes
            .iter()
            .filter(|n| n.state != NodeState::Terminated)
            .map(|n| n.id.clone())
            .collect();
        if !ids.is_empty() {
            pb.set_message(format!(
                "waiting for {} instance(s) to terminate",
                ids.len()
            ));
            self.client
                .wait_until_instance_terminated()
                .set_instance_ids(Some(ids))
                .wait(Duration::from_secs(600))
                .await
                .map_err(|e| anyhow!("instances did not terminate within 10 minutes: {e}"))?;
        }
        pb.set_message(format!("deleting {id}"));
        let start = Instant::now();
        let mut delays = crate::wait::delays(Duration::from_secs(2), Duration::from_secs(15));
        loop {
            match self
                .client
                .delete_security_group()
                .group_id(&id)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let code = e
                        .as_service_error()
                        .and_then(|s| s.code())
                        .unwrap_or("")
                        .to_string();
                    if code == "InvalidGroup.NotFound" {
                        return Ok(());
                    }
                    if code == "DependencyViolation" && start.elapsed() < Duration::from_secs(300) {
                        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(15))).await;
                        continue;
                    }
                    return Err(aws_err("DeleteSecurityGroup", e));
                }
            }
        }
    }
}

impl AwsProvider {
    /// SSH to an instance at `ip`, its host key checked under the instance id (addresses are
    /// recycled by EC2, instance ids are not).
    async fn connect(
        &self,
        instance: &str,
        ip: &str,
        booting: bool,
        progress: Option<ProgressBar>,
    ) -> anyhow::Result<Arc<dyn Transport>> {
        let mut target = SshTarget::new(
            HostAddr {
                host: ip.to_string(),
                port: 22,
            },
            &self.cfg.setup.ssh_user,
            self.key.clone(),
            &daft_home(),
        );
        if booting {
            target = target.booting(progress);
        }
        target.host_key_alias = Some(instance.to_string());
        Ok(Arc::new(SshTransport::connect(target).await?))
    }

    /// Record `key`'s public half as the host key of each instance (daft's known_hosts).
    fn pin_host_keys(
        &self,
        nodes: &[ObservedNode],
        key: &russh::keys::PrivateKey,
    ) -> anyhow::Result<()> {
        let file = daft_home().join("known_hosts");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        for n in nodes {
            russh::keys::known_hosts::learn_known_hosts_path(&n.id, 22, key.public_key(), &file)
                .map_err(|e| {
                    anyhow!(
                        "cannot record the host key of {} in {}: {e}",
                        n.id,
                        file.display()
                    )
                })?;
        }
        Ok(())
    }

    /// Describe the instance until it runs with a public address (RunInstances answers
    /// `pending`, without one), saying so, up to `DAFT_INSTANCE_WAIT_SECS` (5 minutes).
    async fn wait_running(
        &self,
        node: &ObservedNode,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode> {
        let limit = crate::wait::env_secs("DAFT_INSTANCE_WAIT_SECS", Duration::from_secs(300));
        let start = Instant::now();
        let mut n = node.clone();
        loop {
            if n.state == NodeState::Running && n.public_ip.is_some() {
                return Ok(n);
            }
            if !n.state.is_alive() || matches!(n.state, NodeState::Stopping | NodeState::Stopped) {
                bail!(
                    "{} is {} instead of running; run `daft up` again to replace it",
                    n.id,
                    n.state.title().to_lowercase()
                );
            }
            if n.state == NodeState::Running {
                // Running without a public address: the subnet assigns none.
                return Ok(n);
            }
            if start.elapsed() > limit {
                bail!(
                    "{} was still {} after {}; check the EC2 console, then run `daft up` again",
                    n.id,
                    n.state.title().to_lowercase(),
                    humantime::format_duration(limit)
                );
            }
            pb.set_message(format!(
                "waiting for {} to be running with a public address ({}), up to {}",
                n.id,
                n.state.title().to_lowercase(),
                humantime::format_duration(limit)
            ));
            tokio::time::sleep(Duration::from_secs(2)).await;
            n = describe(&self.client, vec![filter("instance-id", &[n.id.as_str()])])
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("{} vanished while daft waited for it", node.id))?;
        }
    }
}

/// An EC2 node's set-up is recorded in its tags: the setup hash, and a worker's head.
#[async_trait]
impl SetupRecord for AwsProvider {
    async fn record(
        &self,
        node: &ObservedNode,
        head: &ObservedNode,
        hash: &str,
    ) -> anyhow::Result<()> {
        let mut tags = vec![Tag::builder().key(TAG_SETUP).value(hash).build()];
        if node.role == Role::Worker {
            tags.push(Tag::builder().key(TAG_HEAD).value(&head.id).build());
        }
        self.client
            .create_tags()
            .resources(&node.id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_err("CreateTags", e))?;
        Ok(())
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
