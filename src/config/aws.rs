//! `[setup.aws]`: the key pair, who may reach the instances over SSH, the nodes' instance
//! profile and disk, and the worker groups (`[[setup.aws.worker_groups]]`).

use super::*;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFile {
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub ssh_ingress_cidrs: Vec<String>,
    #[serde(default)]
    pub iam_instance_profile: Option<String>,
    #[serde(default)]
    pub root_volume_gb: Option<i64>,
    #[serde(default)]
    pub max_hourly_cost: Option<f64>,
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    #[serde(default)]
    pub worker_groups: Vec<WorkerGroupFile>,
}

/// One `[[setup.aws.worker_groups]]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerGroupFile {
    pub name: String,
    pub instance_types: Vec<String>,
    #[serde(default)]
    pub workers: Option<i64>,
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub iam_instance_profile: Option<String>,
    #[serde(default)]
    pub root_volume_gb: Option<i64>,
    #[serde(default)]
    pub num_gpus: Option<i64>,
    #[serde(default)]
    pub resources: BTreeMap<String, f64>,
    #[serde(default)]
    pub market: Option<String>,
    #[serde(default)]
    pub spot_fallback: Option<bool>,
}

/// One kind of worker: its instance types (the first EC2 has capacity for wins), count, image,
/// profile, disk and the Ray resources it offers.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsWorkerGroup {
    /// "" for the one group of a config without `[[setup.aws.worker_groups]]` (its nodes carry
    /// no group tag, as before groups existed).
    pub name: String,
    /// At least one, in the order they are tried.
    pub instance_types: Vec<String>,
    pub workers: u32,
    /// None: the current image for the type (Amazon Linux 2023; with the NVIDIA driver for a
    /// GPU type).
    pub image_id: Option<String>,
    pub iam_instance_profile: Option<String>,
    pub root_volume_gb: Option<u32>,
    /// None: the instance type's own GPUs.
    pub num_gpus: Option<u32>,
    /// Ray custom resources each node offers.
    pub resources: BTreeMap<String, f64>,
    /// Spot or on-demand.
    pub market: Market,
    /// A spot group may launch on-demand when EC2 has no spot capacity for any of its types.
    pub spot_fallback: bool,
}

/// Names of Ray's own resources: given through `num_gpus` and the instance type, never as custom.
const RAY_RESOURCES: &[&str] = &["CPU", "GPU", "memory", "object_store_memory"];

#[derive(Debug, Clone, PartialEq)]
pub struct AwsSetup {
    /// `[setup] region`, `instance_type`, `image_id` (top-level keys, as the seed's file has them).
    pub region: String,
    pub instance_type: String,
    /// None: the current Amazon Linux image for the type's architecture.
    pub image_id: Option<String>,
    pub key_name: Option<String>,
    /// Empty: the caller's public address /32.
    pub ssh_ingress_cidrs: Vec<String>,
    /// An existing instance profile (name or ARN) every node is launched with: how jobs reach
    /// AWS (S3, …) without credentials copied off this machine.
    pub iam_instance_profile: Option<String>,
    /// Every node's root volume (gp3, encrypted, deleted with the instance), in GiB; None: the
    /// image's own size.
    pub root_volume_gb: Option<u32>,
    /// `up` refuses a plan whose nodes would cost more per hour (USD).
    pub max_hourly_cost: Option<f64>,
    /// Availability zones to launch in, tried in order when EC2 has no capacity in one (empty:
    /// wherever EC2 places them).
    pub zones: Vec<String>,
    /// Subnets to launch in (one VPC), tried in order like zones; empty: the default VPC's.
    pub subnet_ids: Vec<String>,
    /// Security groups every node gets besides the cluster's own.
    pub security_group_ids: Vec<String>,
    /// The worker groups, never empty of meaning: without `[[setup.aws.worker_groups]]`, one
    /// unnamed group of `number_of_workers` nodes like the head.
    pub groups: Vec<AwsWorkerGroup>,
}

impl AwsSetup {
    /// Workers of every group.
    pub fn workers(&self) -> u32 {
        self.groups.iter().map(|g| g.workers).sum()
    }
}

/// A group's name: lowercase letters, digits and `-`, starting with a letter, at most 32.
fn is_group_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An EC2 instance type's shape: family and size, such as `g5.xlarge` or `m7i-flex.large`.
fn is_instance_type(s: &str) -> bool {
    let Some((family, size)) = s.split_once('.') else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    ok(family) && ok(size) && family.starts_with(|c: char| c.is_ascii_lowercase())
}

/// An IAM name (`[\w+=,.@-]`, 1 to 128 characters) or an instance profile's ARN.
fn is_instance_profile(s: &str) -> bool {
    let name_ok = |n: &str| {
        (1..=128).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    };
    match s.strip_prefix("arn:") {
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            matches!(parts.as_slice(), [partition, "iam", "", account, resource]
                if partition.starts_with("aws")
                    && account.len() == 12
                    && account.chars().all(|c| c.is_ascii_digit())
                    && resource
                        .strip_prefix("instance-profile/")
                        .and_then(|p| p.rsplit('/').next())
                        .is_some_and(name_ok))
        }
        None => name_ok(s),
    }
}

impl Checker<'_> {
    /// `[setup.aws]`: SSH ingress blocks (never the whole internet).
    pub(super) fn check_aws(
        &self,
        doc: &Document<String>,
        s: &SetupFile,
    ) -> Result<AwsSetup, ConfigError> {
        let a = s.aws.clone().unwrap_or_default();
        for (i, c) in a.ssh_ingress_cidrs.iter().enumerate() {
            let span = self.element_span(doc, &["setup", "aws", "ssh_ingress_cidrs"], i);
            if !is_cidr(c) {
                return Err(self
                            .err(span, format!("`setup.aws.ssh_ingress_cidrs` entry {c:?} is not an IPv4 CIDR block"))
                            .label("expected a.b.c.d/n")
                            .help("write blocks like \"203.0.113.7/32\"; leave the list out to allow only your current public address"));
            }
            if c.ends_with("/0") {
                return Err(self
                    .err(
                        span,
                        "`setup.aws.ssh_ingress_cidrs` would open SSH to the whole internet",
                    )
                    .label("0.0.0.0/0 is refused")
                    .help("list the networks you connect from, such as \"203.0.113.0/24\""));
            }
        }
        if let Some(p) = &a.iam_instance_profile {
            if !is_instance_profile(p) {
                return Err(self
                    .err(
                        self.value_span(doc, &["setup", "aws", "iam_instance_profile"]),
                        format!("`setup.aws.iam_instance_profile` = {p:?} is not an instance profile name or ARN"),
                    )
                    .label("expected a name such as \"ray-nodes\" or arn:aws:iam::123456789012:instance-profile/ray-nodes")
                    .help("name an existing IAM instance profile (letters, digits and _+=,.@-, at most 128), or its ARN; leave it out for nodes without AWS access"));
            }
        }
        if let Some(gb) = a.root_volume_gb {
            if !(8..=16384).contains(&gb) {
                return Err(self
                    .err(
                        self.value_span(doc, &["setup", "aws", "root_volume_gb"]),
                        format!("`setup.aws.root_volume_gb` = {gb} is out of range"),
                    )
                    .label("must be between 8 and 16384 (GiB)")
                    .help("give each node's root disk in GiB, for example root_volume_gb = 100 (Ray spills objects and keeps logs there)"));
            }
        }
        if let Some(usd) = a.max_hourly_cost {
            if !(usd.is_finite() && usd > 0.0) {
                return Err(self
                    .err(
                        self.value_span(doc, &["setup", "aws", "max_hourly_cost"]),
                        format!("`setup.aws.max_hourly_cost` = {usd} is not a price"),
                    )
                    .label("expected US dollars per hour, more than 0")
                    .help("give the most the whole cluster may cost per hour, for example max_hourly_cost = 5.0; leave it out for no limit"));
            }
        }
        for (i, z) in a.zones.iter().enumerate() {
            let span = self.element_span(doc, &["setup", "aws", "zones"], i);
            let rest = z.strip_prefix(s.region.as_str()).unwrap_or("");
            let zone_like = !rest.is_empty()
                && rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '-')
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !zone_like {
                return Err(self
                    .err(span, format!("`setup.aws.zones` entry {z:?} is not an availability zone of {}", s.region))
                    .label(format!("expected {}a, {}b, …", s.region, s.region))
                    .help("list zones of the config's region, in the order to try them (`aws ec2 describe-availability-zones`)"));
            }
            if a.zones[..i].contains(z) {
                return Err(self
                    .err(span, format!("`setup.aws.zones` lists {z:?} twice"))
                    .label("already listed")
                    .help("list each zone once, in the order to try them"));
            }
        }
        self.check_ids(
            doc,
            "subnet_ids",
            &a.subnet_ids,
            "subnet-",
            "subnet-0123456789abcdef0",
        )?;
        self.check_ids(
            doc,
            "security_group_ids",
            &a.security_group_ids,
            "sg-",
            "sg-0123456789abcdef0",
        )?;
        if !a.zones.is_empty() && !a.subnet_ids.is_empty() {
            return Err(self
                .err(self.key_span(doc, &["setup", "aws", "subnet_ids"]), "`setup.aws.zones` and `setup.aws.subnet_ids` both say where nodes go")
                .label("a subnet is in one zone already")
                .help("keep subnet_ids (their zones are tried in their order) or zones (the default VPC's subnets), not both"));
        }
        let root_volume_gb = a.root_volume_gb.map(|g| g as u32);
        let groups = if a.worker_groups.is_empty() {
            vec![AwsWorkerGroup {
                name: String::new(),
                instance_types: vec![s.instance_type.clone()],
                workers: s.number_of_workers.clamp(0, MAX_WORKERS) as u32,
                image_id: s.image_id.clone(),
                iam_instance_profile: a.iam_instance_profile.clone(),
                root_volume_gb,
                num_gpus: None,
                resources: BTreeMap::new(),
                market: Market::OnDemand,
                spot_fallback: true,
            }]
        } else {
            self.check_worker_groups(doc, &a, root_volume_gb)?
        };
        Ok(AwsSetup {
            region: s.region.clone(),
            instance_type: s.instance_type.clone(),
            image_id: s.image_id.clone(),
            key_name: a.key_name.clone(),
            ssh_ingress_cidrs: a.ssh_ingress_cidrs.clone(),
            iam_instance_profile: a.iam_instance_profile.clone(),
            root_volume_gb,
            max_hourly_cost: a.max_hourly_cost,
            zones: a.zones.clone(),
            subnet_ids: a.subnet_ids.clone(),
            security_group_ids: a.security_group_ids.clone(),
            groups,
        })
    }

    /// A list of EC2 ids (`subnet-…`, `sg-…`): each of the form, none twice.
    fn check_ids(
        &self,
        doc: &Document<String>,
        key: &str,
        ids: &[String],
        prefix: &str,
        example: &str,
    ) -> Result<(), ConfigError> {
        for (i, id) in ids.iter().enumerate() {
            let span = self.element_span(doc, &["setup", "aws", key], i);
            let hex = id.strip_prefix(prefix).unwrap_or("");
            if !((8..=17).contains(&hex.len())
                && hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
            {
                return Err(self
                    .err(span, format!("`setup.aws.{key}` entry {id:?} is not an EC2 id"))
                    .label(format!("expected {prefix} and 8 to 17 hex digits, such as {example}"))
                    .help("copy the ids from the EC2 console or `aws ec2 describe-subnets` / `describe-security-groups`"));
            }
            if ids[..i].contains(id) {
                return Err(self
                    .err(span, format!("`setup.aws.{key}` lists {id:?} twice"))
                    .label("already listed")
                    .help("list each once"));
            }
        }
        Ok(())
    }

    /// `[[setup.aws.worker_groups]]`: each group's values, its defaults from `[setup.aws]`.
    fn check_worker_groups(
        &self,
        doc: &Document<String>,
        a: &AwsFile,
        root_volume_gb: Option<u32>,
    ) -> Result<Vec<AwsWorkerGroup>, ConfigError> {
        let table = |i: usize| {
            doc.get("setup")
                .and_then(|t| t.get("aws"))
                .and_then(|t| t.get("worker_groups"))
                .and_then(|t| t.as_array_of_tables())
                .and_then(|t| t.get(i))
        };
        let at = |i: usize, key: &str| {
            table(i).and_then(|t| t.get(key).and_then(item_span).or_else(|| t.span()))
        };
        let top = |k: &str| self.key_span(doc, &["setup", k]);
        if let Some(k) = ["number_of_workers", "min_workers", "max_workers"]
            .into_iter()
            .find(|k| top(k).is_some())
        {
            return Err(self
                .err(top(k), format!("`setup.{k}` and `[[setup.aws.worker_groups]]` both say how many workers"))
                .label("the groups give the workers")
                .help("remove it and give each worker group its own `workers = N`; the head is always one node of `setup.instance_type`"));
        }
        let mut groups: Vec<AwsWorkerGroup> = Vec::new();
        let mut total = 0i64;
        for (i, g) in a.worker_groups.iter().enumerate() {
            let field = |k: &str| format!("`setup.aws.worker_groups[{i}].{k}`");
            if !is_group_name(&g.name) {
                return Err(self
                    .err(at(i, "name"), format!("{} = {:?} is not a group name", field("name"), g.name))
                    .label("expected lowercase letters, digits and -, starting with a letter (at most 32)")
                    .help("name the group for what it is, for example name = \"gpu\""));
            }
            if groups.iter().any(|o| o.name == g.name) {
                return Err(self
                    .err(
                        at(i, "name"),
                        format!("two worker groups are named {:?}", g.name),
                    )
                    .label("a second group of this name")
                    .help("give every [[setup.aws.worker_groups]] its own name"));
            }
            if g.instance_types.is_empty() {
                return Err(self
                    .err(at(i, "instance_types"), format!("{} is empty", field("instance_types")))
                    .label("no instance type to launch")
                    .help("list at least one, in the order to try them: instance_types = [\"g5.xlarge\", \"g6.xlarge\"]"));
            }
            for (j, t) in g.instance_types.iter().enumerate() {
                let span = table(i)
                    .and_then(|tb| tb.get("instance_types"))
                    .and_then(|v| v.as_array())
                    .and_then(|arr| arr.get(j))
                    .and_then(|v| v.span())
                    .or_else(|| at(i, "instance_types"));
                if !is_instance_type(t) {
                    return Err(self
                        .err(span, format!("{} entry {t:?} is not an EC2 instance type", field("instance_types")))
                        .label("expected family.size, such as g5.xlarge")
                        .help("write EC2's names of the types, as `aws ec2 describe-instance-types` lists them"));
                }
                if g.instance_types[..j].contains(t) {
                    return Err(self
                        .err(
                            span,
                            format!("{} lists {t:?} twice", field("instance_types")),
                        )
                        .label("already listed")
                        .help("list each instance type once, in the order to try them"));
                }
            }
            let workers = match g.workers {
                None => {
                    return Err(self
                        .err(
                            at(i, "name"),
                            format!(
                                "worker group {:?} does not say how many workers it has",
                                g.name
                            ),
                        )
                        .label("no `workers`")
                        .help("add `workers = N` to the group (0 keeps the group with no nodes)"));
                }
                Some(n) if !(0..=MAX_WORKERS).contains(&n) => {
                    return Err(self
                        .err(
                            at(i, "workers"),
                            format!("{} = {n} is out of range", field("workers")),
                        )
                        .label(format!("must be between 0 and {MAX_WORKERS}"))
                        .help("give the group's number of nodes, for example workers = 2"));
                }
                Some(n) => n,
            };
            total += workers;
            if total > MAX_WORKERS {
                return Err(self
                    .err(
                        at(i, "workers"),
                        format!("the worker groups have more than {MAX_WORKERS} workers together"),
                    )
                    .label("the total passes the limit here")
                    .help("make the groups smaller"));
            }
            if let Some(p) = &g.iam_instance_profile {
                if !is_instance_profile(p) {
                    return Err(self
                        .err(at(i, "iam_instance_profile"), format!("{} = {p:?} is not an instance profile name or ARN", field("iam_instance_profile")))
                        .label("expected a name such as \"ray-nodes\" or an instance profile's ARN")
                        .help("name an existing IAM instance profile, or leave it out to use [setup.aws] iam_instance_profile"));
                }
            }
            if let Some(gb) = g.root_volume_gb {
                if !(8..=16384).contains(&gb) {
                    return Err(self
                        .err(
                            at(i, "root_volume_gb"),
                            format!("{} = {gb} is out of range", field("root_volume_gb")),
                        )
                        .label("must be between 8 and 16384 (GiB)")
                        .help(
                            "give each node's root disk in GiB, for example root_volume_gb = 200",
                        ));
                }
            }
            if let Some(n) = g.num_gpus {
                if !(0..=64).contains(&n) {
                    return Err(self
                        .err(
                            at(i, "num_gpus"),
                            format!("{} = {n} is out of range", field("num_gpus")),
                        )
                        .label("must be between 0 and 64")
                        .help("leave it out to give Ray the instance type's own GPUs"));
                }
            }
            for (k, v) in &g.resources {
                let span = table(i)
                    .and_then(|tb| tb.get("resources"))
                    .and_then(|r| r.get(k.as_str()))
                    .and_then(item_span)
                    .or_else(|| at(i, "resources"));
                if RAY_RESOURCES.contains(&k.as_str()) {
                    return Err(self
                        .err(span, format!("{} names Ray's own resource {k:?}", field("resources")))
                        .label("not a custom resource")
                        .help("Ray counts CPUs, memory and the object store itself; give GPUs with num_gpus; custom resources have names of your own, such as resources = { accelerator_a10g = 1 }"));
                }
                if !(v.is_finite() && *v >= 0.0) {
                    return Err(self
                        .err(span, format!("{} {k:?} = {v} is not a quantity", field("resources")))
                        .label("expected a number of at least 0")
                        .help("give how much of it each node offers, for example resources = { accelerator_a10g = 1 }"));
                }
            }
            let market = match g.market.as_deref() {
                None => Market::OnDemand,
                Some(m) => Market::parse(m).ok_or_else(|| {
                    self.err(at(i, "market"), format!("{} = {m:?} is not a market", field("market")))
                        .label("expected \"spot\" or \"on-demand\"")
                        .help("market = \"spot\" buys the group's nodes at EC2's spot price (cheaper, may be interrupted); leave it out for on-demand")
                })?,
            };
            if market == Market::OnDemand && g.spot_fallback.is_some() {
                return Err(self
                    .err(
                        at(i, "spot_fallback"),
                        format!("{} is set on an on-demand group", field("spot_fallback")),
                    )
                    .label("only a spot group falls back")
                    .help("add market = \"spot\" to the group, or remove spot_fallback"));
            }
            groups.push(AwsWorkerGroup {
                name: g.name.clone(),
                instance_types: g.instance_types.clone(),
                workers: workers as u32,
                image_id: g.image_id.clone(),
                iam_instance_profile: g
                    .iam_instance_profile
                    .clone()
                    .or_else(|| a.iam_instance_profile.clone()),
                root_volume_gb: g.root_volume_gb.map(|x| x as u32).or(root_volume_gb),
                num_gpus: g.num_gpus.map(|x| x as u32),
                resources: g.resources.clone(),
                market,
                spot_fallback: g.spot_fallback.unwrap_or(true),
            });
        }
        Ok(groups)
    }
}

pub(super) fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

pub(super) fn is_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|n| n <= 32)
}

#[cfg(test)]
mod tests {
    use super::is_instance_profile;

    #[test]
    fn instance_profiles_by_name_or_arn() {
        for ok in [
            "ray-nodes",
            "a_b+c=d,e.f@g-h",
            "arn:aws:iam::123456789012:instance-profile/ray-nodes",
            "arn:aws-cn:iam::123456789012:instance-profile/team/ray-nodes",
        ] {
            assert!(is_instance_profile(ok), "{ok}");
        }
        for bad in [
            "",
            "my profile",
            "arn:aws:iam::12345:instance-profile/x",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:s3:::bucket",
        ] {
            assert!(!is_instance_profile(bad), "{bad}");
        }
    }
}
