//! The EC2 client: its HTTP stack, its call log, errors in words, and reading instances back
//! from their tags.

use super::*;

/// Logs every EC2 API request (calls and their retries) at debug level (`RUST_LOG=debug`);
/// the scale test and the benchmark count these lines.
#[derive(Debug)]
pub(super) struct CallLog;

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

pub(super) fn no_credentials() -> anyhow::Error {
    anyhow!(
        "no AWS credentials found. Provide them in one of these ways: \
         set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; \
         or log in with `aws sso login --profile NAME` and set AWS_PROFILE=NAME; \
         or add a profile to ~/.aws/credentials; \
         or run daft on an instance with an IAM role"
    )
}

/// An AWS error with the AWS message and what to do.
pub(super) fn aws_err<E, R>(op: &str, e: SdkError<E, R>) -> anyhow::Error
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
        "InvalidParameterValue" if msg.contains("iamInstanceProfile") => "the instance profile does not exist in this account (a new one takes a few seconds to be usable), or your identity may not pass its role (iam:PassRole); fix [setup.aws] iam_instance_profile",
        "InvalidParameterValue" | "InvalidParameterCombination" | "Unsupported" => "check instance_type and image_id in the config (an arm64 type such as m7g needs an arm64 image)",
        "RequestLimitExceeded" | "Throttling" => "EC2 is throttling requests; wait a minute and run the command again",
        _ => "see the AWS message above",
    };
    anyhow!("{op} failed: {code}: {msg}\n  what to do: {hint}")
}

pub(super) fn tag_value<'a>(i: &'a Instance, key: &str) -> Option<&'a str> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

pub(super) fn to_node(i: &Instance) -> Option<ObservedNode> {
    let cluster = tag_value(i, TAG_CLUSTER)?.to_string();
    let role = Role::parse(tag_value(i, TAG_ROLE).unwrap_or("worker"))?;
    let mut launch = BTreeMap::new();
    if let Some(t) = i.instance_type() {
        launch.insert("instance_type".to_string(), t.as_str().to_string());
    }
    if let Some(img) = tag_value(i, TAG_IMAGE) {
        launch.insert("image_id".to_string(), img.to_string());
    }
    if let Some(arn) = i.iam_instance_profile().and_then(|p| p.arn()) {
        launch.insert(
            "iam_instance_profile".to_string(),
            super::profile_name(arn).to_string(),
        );
    }
    let mut detail = BTreeMap::new();
    detail.insert(
        "type".to_string(),
        i.instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
    );
    if i.instance_lifecycle() == Some(&aws_sdk_ec2::types::InstanceLifecycleType::Spot) {
        detail.insert("market".to_string(), "spot".to_string());
    }
    // EC2 took a spot instance back: said as such by plans and `list`.
    if let Some(r) = i
        .state_reason()
        .filter(|r| r.code() == Some("Server.SpotInstanceTermination"))
    {
        detail.insert(
            "interrupted".to_string(),
            format!(
                "interrupted by EC2 (spot capacity taken back: {})",
                r.code().unwrap_or("")
            ),
        );
    }
    if let Some(az) = i.placement().and_then(|p| p.availability_zone()) {
        detail.insert("zone".to_string(), az.to_string());
    }
    Some(ObservedNode {
        id: i.instance_id()?.to_string(),
        cluster,
        role,
        group: tag_value(i, TAG_GROUP).unwrap_or("").to_string(),
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
pub(super) async fn describe(
    client: &Client,
    filters: Vec<Filter>,
) -> anyhow::Result<Vec<ObservedNode>> {
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

pub(super) fn filter(name: &str, values: &[&str]) -> Filter {
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
