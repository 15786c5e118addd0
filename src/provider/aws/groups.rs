//! Worker groups on EC2: each group's launch spec, what EC2 says of its instance types (the
//! architecture, the GPUs Ray is given), its image, and which refusals mean "no capacity here"
//! (the launch then tries the group's next instance type).

use super::*;
use crate::config::AwsWorkerGroup;

/// Tag of a worker's group (absent on the unnamed group's nodes, as before groups existed).
pub const TAG_GROUP: &str = "daft:group";

/// EC2's error codes that say this instance type cannot be had here now (or not within the
/// account's limits): the next choice may succeed where this one did not.
pub const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "Unsupported",
    "InstanceLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "InsufficientFreeAddressesInSubnet",
    "InsufficientCapacity",
];

pub fn is_capacity_error(code: &str) -> bool {
    CAPACITY_CODES.contains(&code)
}

/// What `DescribeInstanceTypes` says of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    /// `arm64` or `x86_64`.
    pub arch: &'static str,
    /// NVIDIA GPUs (0 for none, or another maker's).
    pub gpus: u32,
}

/// The Amazon image name daft looks up for a GPU type: the Deep Learning Base AMI with the
/// NVIDIA driver (and CUDA), on Amazon Linux 2023.
pub const NVIDIA_IMAGE_NAME: &str =
    "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) *";

/// The image of a node of these instance types, as its spec records it: the config's, else
/// `auto:al2023-ARCH`, or `auto:al2023-nvidia-ARCH` when the first type has NVIDIA GPUs
/// (by its family's name; the launch asks EC2 for the type it launches).
pub fn image_spec(image_id: Option<&str>, instance_types: &[String]) -> String {
    if let Some(id) = image_id {
        return id.to_string();
    }
    let first = instance_types.first().map(String::as_str).unwrap_or("");
    let nvidia = if is_nvidia_family(first) {
        "nvidia-"
    } else {
        ""
    };
    format!("auto:al2023-{nvidia}{}", architecture(first))
}

/// NVIDIA GPU families by name: g3…g6e, gr6, p2…p6 (not g4ad, whose GPUs are AMD's).
pub fn is_nvidia_family(instance_type: &str) -> bool {
    let family = instance_type.split('.').next().unwrap_or("");
    if family.starts_with("g4ad") {
        return false;
    }
    let rest = family
        .strip_prefix("gr")
        .or_else(|| family.strip_prefix('g'))
        .or_else(|| family.strip_prefix('p'));
    rest.is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

/// Ray's start flags for a node of `group` on a type with `info`: its GPUs (the group's
/// `num_gpus`, else the type's own) and its custom resources.
pub fn ray_args(group: Option<&AwsWorkerGroup>, info: Option<TypeInfo>) -> String {
    let mut args = Vec::new();
    let gpus = group
        .and_then(|g| g.num_gpus)
        .or_else(|| info.map(|i| i.gpus))
        .unwrap_or(0);
    if gpus > 0 {
        args.push(format!("--num-gpus={gpus}"));
    }
    if let Some(g) = group.filter(|g| !g.resources.is_empty()) {
        // One shell word: compact JSON has no spaces, and the names are the config's checked keys.
        let json = serde_json::to_string(&g.resources).unwrap_or_default();
        args.push(format!("--resources={json}"));
    }
    args.join(" ")
}

/// A group's launch spec: what a change of replaces its nodes. The unnamed group's is exactly
/// the worker spec of before groups (its nodes keep their spec hash).
pub fn group_spec(g: &AwsWorkerGroup, ssh_user: &str) -> NodeSpec {
    let mut launch = Vec::new();
    match g.instance_types.as_slice() {
        [one] => launch.push(("instance_type", one.clone())),
        many => launch.push(("instance_types", many.join(","))),
    }
    launch.push((
        "image_id",
        image_spec(g.image_id.as_deref(), &g.instance_types),
    ));
    launch.push(("ssh_user", ssh_user.to_string()));
    if let Some(p) = &g.iam_instance_profile {
        launch.push(("iam_instance_profile", profile_name(p).to_string()));
    }
    if let Some(gb) = g.root_volume_gb {
        launch.push(("root_volume_gb", gb.to_string()));
    }
    if let Some(n) = g.num_gpus {
        launch.push(("num_gpus", n.to_string()));
    }
    // (Only for spot: an on-demand group's nodes keep their spec hash.)
    if g.market == crate::cost::Market::Spot {
        launch.push(("market", "spot".to_string()));
    }
    if !g.resources.is_empty() {
        let r: Vec<String> = g
            .resources
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        launch.push(("resources", r.join(",")));
    }
    NodeSpec::new(Role::Worker, launch)
}

impl AwsProvider {
    /// The worker group a launch or a node belongs to (None: the head).
    pub(super) fn group(&self, role: Role, name: &str) -> Option<&AwsWorkerGroup> {
        (role == Role::Worker)
            .then(|| self.aws.groups.iter().find(|g| g.name == name))
            .flatten()
    }

    /// What EC2 says of `instance_type` (asked once per run).
    pub(super) async fn type_info(&self, instance_type: &str) -> anyhow::Result<TypeInfo> {
        if let Some(i) = self.types.lock().await.get(instance_type) {
            return Ok(*i);
        }
        let out = self
            .client
            .describe_instance_types()
            .instance_types(InstanceType::from(instance_type))
            .send()
            .await
            .map_err(|e| aws_err(&format!("DescribeInstanceTypes ({instance_type})"), e))?;
        let t = out.instance_types().first().ok_or_else(|| {
            anyhow!(
                "EC2 does not know the instance type {instance_type} in {}; check the name \
                 (`aws ec2 describe-instance-types`)",
                self.aws.region
            )
        })?;
        let arm = t
            .processor_info()
            .map(|p| {
                p.supported_architectures()
                    .iter()
                    .any(|a| a.as_str() == "arm64")
            })
            .unwrap_or(architecture(instance_type) == "arm64");
        let gpus = t
            .gpu_info()
            .map(|g| {
                g.gpus()
                    .iter()
                    .filter(|d| {
                        d.manufacturer()
                            .is_some_and(|m| m.eq_ignore_ascii_case("NVIDIA"))
                    })
                    .map(|d| d.count().unwrap_or(0).max(0) as u32)
                    .sum()
            })
            .unwrap_or(0);
        let info = TypeInfo {
            arch: if arm { "arm64" } else { "x86_64" },
            gpus,
        };
        tracing::debug!(target: "daft::aws", instance_type, ?info, "instance type");
        self.types
            .lock()
            .await
            .insert(instance_type.to_string(), info);
        Ok(info)
    }

    /// The image to launch on `info`'s type: `image_id`, else the newest Amazon Linux 2023 for
    /// its architecture (the Deep Learning Base image with the NVIDIA driver for a GPU type).
    pub(super) async fn resolve_image(
        &self,
        image_id: Option<&str>,
        info: TypeInfo,
    ) -> anyhow::Result<String> {
        if let Some(id) = image_id {
            return Ok(id.to_string());
        }
        let arch = info.arch;
        let name = if info.gpus > 0 {
            NVIDIA_IMAGE_NAME.to_string()
        } else {
            format!("al2023-ami-2023.*-{arch}")
        };
        let out = self
            .client
            .describe_images()
            .owners("amazon")
            .filters(filter("name", &[&name]))
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
            let what = if info.gpus > 0 {
                "Amazon Linux 2023 image with the NVIDIA driver (\"Deep Learning Base OSS Nvidia Driver GPU AMI\")"
            } else {
                "Amazon Linux 2023 image"
            };
            anyhow!(
                "no {what} for {arch} found in {}; set image_id in the config",
                self.aws.region
            )
        })?;
        tracing::debug!(target: "daft::aws", image = img, arch, gpus = info.gpus, "resolved image");
        Ok(img.to_string())
    }

    /// Ray's start flags for `node` (its group's, on its own instance type).
    pub(super) async fn node_ray_args(&self, node: &ObservedNode) -> anyhow::Result<String> {
        let Some(group) = self.group(node.role, &node.group) else {
            return Ok(String::new());
        };
        let info = match node.detail.get("type").filter(|t| !t.is_empty()) {
            Some(t) => Some(self.type_info(t).await?),
            None => None,
        };
        Ok(ray_args(Some(group), info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(types: &[&str]) -> AwsWorkerGroup {
        AwsWorkerGroup {
            name: "gpu".into(),
            instance_types: types.iter().map(|t| t.to_string()).collect(),
            workers: 1,
            image_id: None,
            iam_instance_profile: None,
            root_volume_gb: None,
            num_gpus: None,
            resources: BTreeMap::new(),
            market: crate::cost::Market::OnDemand,
            spot_fallback: true,
        }
    }

    #[test]
    fn nvidia_families_by_name() {
        for t in [
            "g5.xlarge",
            "g4dn.xlarge",
            "g6e.2xlarge",
            "p4d.24xlarge",
            "p5.48xlarge",
            "gr6.4xlarge",
            "g5g.xlarge",
        ] {
            assert!(is_nvidia_family(t), "{t}");
        }
        for t in [
            "m7i.large",
            "g4ad.xlarge",
            "t3.micro",
            "inf2.xlarge",
            "c7g.large",
        ] {
            assert!(!is_nvidia_family(t), "{t}");
        }
    }

    #[test]
    fn images_follow_the_first_type() {
        assert_eq!(image_spec(None, &["m7g.large".into()]), "auto:al2023-arm64");
        assert_eq!(
            image_spec(None, &["g5.xlarge".into(), "m7i.large".into()]),
            "auto:al2023-nvidia-x86_64"
        );
        assert_eq!(image_spec(Some("ami-1"), &["g5.xlarge".into()]), "ami-1");
    }

    #[test]
    fn ray_is_given_the_types_gpus_unless_the_group_says_and_its_resources() {
        let info = TypeInfo {
            arch: "x86_64",
            gpus: 4,
        };
        let mut g = group(&["g5.12xlarge"]);
        assert_eq!(ray_args(Some(&g), Some(info)), "--num-gpus=4");
        g.num_gpus = Some(2);
        g.resources.insert("a10g".into(), 1.0);
        g.resources.insert("fast_disk".into(), 0.5);
        assert_eq!(
            ray_args(Some(&g), Some(info)),
            r#"--num-gpus=2 --resources={"a10g":1.0,"fast_disk":0.5}"#
        );
        assert_eq!(ray_args(None, None), "");
    }

    #[test]
    fn a_groups_spec_names_its_types_and_the_unnamed_one_is_as_before() {
        let one = group(&["m7i.large"]);
        let spec = group_spec(&one, "ec2-user");
        assert_eq!(spec.launch["instance_type"], "m7i.large");
        assert!(!spec.launch.contains_key("instance_types"));
        let two = group(&["g5.xlarge", "g4dn.xlarge"]);
        let spec = group_spec(&two, "ec2-user");
        assert_eq!(spec.launch["instance_types"], "g5.xlarge,g4dn.xlarge");
        assert_eq!(spec.launch["image_id"], "auto:al2023-nvidia-x86_64");
    }

    #[test]
    fn launches_try_the_next_zone_then_the_next_type_then_on_demand() {
        use crate::cost::Market::{OnDemand, Spot};
        let pairs = |g: &AwsWorkerGroup, zones: &[&str]| {
            let zones: Vec<super::super::nodes::Place> = zones
                .iter()
                .map(|z| super::super::nodes::Place::Zone(z.to_string()))
                .collect();
            super::super::nodes::launch_choices(
                &g.instance_types,
                g.market,
                g.spot_fallback,
                &zones,
            )
            .into_iter()
            .map(|c| {
                format!(
                    "{}/{}{}",
                    c.instance_type,
                    c.market.as_str(),
                    c.place
                        .map(|p| format!("@{}", p.name()))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
        };
        let mut g = group(&["g5.xlarge", "g6.xlarge"]);
        assert_eq!(
            pairs(&g, &[]),
            ["g5.xlarge/on-demand", "g6.xlarge/on-demand"]
        );
        assert_eq!(
            pairs(&g, &["z-a", "z-b"]),
            [
                "g5.xlarge/on-demand@z-a",
                "g5.xlarge/on-demand@z-b",
                "g6.xlarge/on-demand@z-a",
                "g6.xlarge/on-demand@z-b"
            ]
        );
        g.market = Spot;
        assert_eq!(
            pairs(&g, &[]),
            [
                "g5.xlarge/spot",
                "g6.xlarge/spot",
                "g5.xlarge/on-demand",
                "g6.xlarge/on-demand"
            ]
        );
        g.spot_fallback = false;
        assert_eq!(pairs(&g, &[]), ["g5.xlarge/spot", "g6.xlarge/spot"]);
        // A spot group's nodes are told from an on-demand one's by their spec.
        assert_eq!(group_spec(&g, "u").launch["market"], "spot");
        g.market = OnDemand;
        assert!(!group_spec(&g, "u").launch.contains_key("market"));
    }

    #[test]
    fn capacity_refusals_are_told_from_other_errors() {
        assert!(is_capacity_error("InsufficientInstanceCapacity"));
        assert!(is_capacity_error("SpotMaxPriceTooLow"));
        assert!(!is_capacity_error("InvalidAMIID.NotFound"));
        assert!(!is_capacity_error("UnauthorizedOperation"));
    }
}
