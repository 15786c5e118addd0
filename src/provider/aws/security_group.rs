//! The cluster's security group: SSH from the caller only, Ray's ports between the cluster's
//! own instances only; created, brought back from drift, and deleted once its instances are gone.

use super::*;

/// This machine's public IPv4 address, from AWS's checkip service over HTTPS
/// (`DAFT_CHECKIP_URL` overrides the address, for tests).
pub(super) async fn public_ip() -> anyhow::Result<std::net::Ipv4Addr> {
    let url = std::env::var("DAFT_CHECKIP_URL")
        .unwrap_or_else(|_| "https://checkip.amazonaws.com/".to_string());
    let body = tokio::time::timeout(Duration::from_secs(10), crate::https::get(&url))
        .await
        .map_err(|_| anyhow!("{url} did not answer within 10s"))??;
    body.trim()
        .parse::<std::net::Ipv4Addr>()
        .map_err(|_| anyhow!("{url} answered {:?}, not an IPv4 address", body.trim()))
}

/// One rule line ("tcp 22 from 203.0.113.7/32", "all traffic from the group itself") as an EC2
/// permission of group `id`.
pub(super) fn rule_permission(id: &str, rule: &str) -> Option<IpPermission> {
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
pub(super) fn observed_rules(g: &aws_sdk_ec2::types::SecurityGroup) -> Vec<String> {
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

impl AwsProvider {
    /// The security group's rules as the planner compares them (Err: the caller's address could
    /// not be found, and what to do).
    pub(super) async fn wanted_rules(&self) -> Result<Vec<String>, &str> {
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

    pub(super) async fn security_group_id(&self) -> anyhow::Result<String> {
        let obs = self.support().await?;
        obs.into_iter().find_map(|s| s.id).ok_or_else(|| {
            anyhow!(
                "the cluster's security group {} is missing; run `daft up` again",
                self.sg_name()
            )
        })
    }

    pub(super) async fn support(&self) -> anyhow::Result<Vec<SupportResource>> {
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
    pub(super) fn permissions(id: &str, rules: &[String]) -> Vec<IpPermission> {
        rules
            .iter()
            .filter_map(|r| rule_permission(id, r))
            .collect()
    }

    /// The VPC the cluster's group is made in: its subnets' (one VPC), else the default one.
    async fn vpc_id(&self) -> anyhow::Result<String> {
        if !self.aws.subnet_ids.is_empty() {
            let out = self
                .client
                .describe_subnets()
                .set_subnet_ids(Some(self.aws.subnet_ids.clone()))
                .send()
                .await
                .map_err(|e| aws_err("DescribeSubnets", e))?;
            let mut vpcs: Vec<&str> = out.subnets().iter().filter_map(|s| s.vpc_id()).collect();
            vpcs.sort_unstable();
            vpcs.dedup();
            return match vpcs.as_slice() {
                [one] => Ok(one.to_string()),
                [] => bail!(
                    "none of [setup.aws] subnet_ids exists in {}",
                    self.aws.region
                ),
                many => bail!(
                    "[setup.aws] subnet_ids are in several VPCs ({}); a cluster's nodes share one \
                     VPC (its security group lets them reach each other): list subnets of one",
                    many.join(", ")
                ),
            };
        }
        let vpc = self
            .client
            .describe_vpcs()
            .filters(filter("isDefault", &["true"]))
            .send()
            .await
            .map_err(|e| aws_err("DescribeVpcs", e))?;
        vpc.vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "region {} has no default VPC; create one with `aws ec2 create-default-vpc`, \
                     or list subnets in [setup.aws] subnet_ids",
                    self.aws.region
                )
            })
    }

    pub(super) async fn create_group(
        &self,
        r: &SupportResource,
    ) -> anyhow::Result<SupportResource> {
        let vpc_id = self.vpc_id().await?;
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

    pub(super) async fn update_group(
        &self,
        r: &SupportResource,
        pb: &ProgressBar,
    ) -> anyhow::Result<()> {
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

    pub(super) async fn delete_group(
        &self,
        r: &SupportResource,
        pb: &ProgressBar,
    ) -> anyhow::Result<()> {
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
