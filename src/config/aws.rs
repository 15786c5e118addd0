//! `[setup.aws]`: who may reach the instances over SSH.

use super::*;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFile {
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub ssh_ingress_cidrs: Vec<String>,
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
        Ok(AwsSetup {
            region: s.region.clone(),
            instance_type: s.instance_type.clone(),
            image_id: s.image_id.clone(),
            key_name: a.key_name.clone(),
            ssh_ingress_cidrs: a.ssh_ingress_cidrs.clone(),
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
