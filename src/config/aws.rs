//! `[setup.aws]`: the key pair, who may reach the instances over SSH, and the nodes' instance
//! profile.

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
}

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
        Ok(AwsSetup {
            region: s.region.clone(),
            instance_type: s.instance_type.clone(),
            image_id: s.image_id.clone(),
            key_name: a.key_name.clone(),
            ssh_ingress_cidrs: a.ssh_ingress_cidrs.clone(),
            iam_instance_profile: a.iam_instance_profile.clone(),
            root_volume_gb: a.root_volume_gb.map(|g| g as u32),
        })
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
