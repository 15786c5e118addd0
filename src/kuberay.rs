//! KubeRay manifests: the `RayCluster` (`ray.io/v1`) a `.daft.toml` asks for, and the settings a
//! plan compares, read the same way from the manifest and from the live object. Pure.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::{Config, KubernetesSetup, DEFAULT_IMAGE_RAY_VERSION};
use crate::model::DesiredResource;
use crate::model::TELEMETRY_OFF;

/// The label every object daft creates carries, with this value.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The label naming the daft cluster an object belongs to.
pub const CLUSTER_LABEL: &str = "daft.io/cluster";
/// KubeRay's labels on the pods of a RayCluster.
pub const RAY_CLUSTER_LABEL: &str = "ray.io/cluster";
pub const RAY_NODE_TYPE_LABEL: &str = "ray.io/node-type";
/// The annotation recording the setup (dependencies and setup commands) last run on the head.
pub const SETUP_ANNOTATION: &str = "daft.io/setup-hash";
/// The worker group's name.
pub const WORKER_GROUP: &str = "workers";
/// The head's dashboard port in the pod.
pub const DASHBOARD_PORT: u16 = 8265;

/// Ray's token authentication needs Ray 2.52 or newer (KubeRay refuses it below).
fn supports_token_auth(ray_version: &str) -> bool {
    let mut parts = ray_version
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 52)
}

/// The Ray version of the cluster's pods: `ray_version`, else the default image's.
pub fn ray_version(cfg: &Config) -> String {
    cfg.setup
        .ray_version
        .clone()
        .unwrap_or_else(|| DEFAULT_IMAGE_RAY_VERSION.to_string())
}

/// Ray ≥ 2.60 answers a pod's TERM by asking the GCS to drain the node, for up to 30 s. daft
/// deletes a whole cluster at once (the GCS with it) or replaces every pod of it: a drain would
/// only hold each pod that long (the templates' bootstrap does the same).
const NO_DRAIN: (&str, &str) = ("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0");

/// Which optional RayCluster fields the cluster's KubeRay knows, read from its CRD's schema
/// (the API server's OpenAPI document, readable by any signed-in user). The released KubeRay
/// 1.5 has none of the three; a field the CRD does not declare makes the API server refuse the
/// whole apply, so daft sends only what the operator understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `spec.authOptions`: Ray's token authentication, set up by the operator.
    pub auth_options: bool,
    /// `spec.networkPolicy`: the operator's NetworkPolicy (else daft applies its own).
    pub network_policy: bool,
    /// `spec.upgradeStrategy`: a changed pod template recreates the pods.
    pub upgrade_strategy: bool,
}

impl Features {
    /// Everything (a CRD whose schema could not be read is taken to be current).
    pub const ALL: Features = Features {
        auth_options: true,
        network_policy: true,
        upgrade_strategy: true,
    };

    /// From the names of the CRD's `spec` properties.
    pub fn from_spec_fields(fields: &[String]) -> Features {
        let has = |f: &str| fields.iter().any(|x| x == f);
        Features {
            auth_options: has("authOptions"),
            network_policy: has("networkPolicy"),
            upgrade_strategy: has("upgradeStrategy"),
        }
    }

    /// What this KubeRay leaves out, in words (empty: nothing).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if !self.auth_options {
            m.push("authOptions (Ray's token authentication)");
        }
        if !self.network_policy {
            m.push("networkPolicy (daft applies a NetworkPolicy of its own instead)");
        }
        if !self.upgrade_strategy {
            m.push("upgradeStrategy (a changed image or resources reaches new pods only)");
        }
        m
    }
}

/// The NetworkPolicy daft applies where KubeRay has no `networkPolicy`: the cluster's pods take
/// connections from each other only (what KubeRay's `DenyAllIngress` does). Owned by the
/// RayCluster (`uid`), so the garbage collector deletes it with the cluster.
pub fn network_policy(name: &str, namespace: &str, uid: &str) -> Value {
    let pods = json!({ "matchLabels": { RAY_CLUSTER_LABEL: name } });
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": format!("{name}-daft-ingress"),
            "namespace": namespace,
            "labels": { MANAGED_BY: "daft", CLUSTER_LABEL: name },
            "ownerReferences": [{
                "apiVersion": "ray.io/v1",
                "kind": "RayCluster",
                "name": name,
                "uid": uid,
            }],
        },
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": [{ "podSelector": pods }] }],
        },
    })
}

/// The RayCluster for `cfg` in `namespace`, with the fields this KubeRay knows.
pub fn raycluster(cfg: &Config, k: &KubernetesSetup, namespace: &str, features: Features) -> Value {
    let name = &cfg.setup.name;
    let labels = json!({ MANAGED_BY: "daft", CLUSTER_LABEL: name });
    let ray = ray_version(cfg);
    let env: Vec<Value> = TELEMETRY_OFF
        .iter()
        .chain([&NO_DRAIN])
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    // Dependencies are installed when each pod starts, before KubeRay's own `ray start`.
    let deps = &cfg.setup.dependencies;
    let install = (!deps.is_empty()).then(|| {
        let quoted: Vec<String> = deps.iter().map(|d| crate::shell::shell_quote(d)).collect();
        format!(
            "pip install --no-cache-dir {} && exec /bin/bash -c \"$KUBERAY_GEN_RAY_START_CMD\"",
            quoted.join(" ")
        )
    });
    let pod = |container: &str, cpu: &str, memory: &str, gpus: u32, ports: Value| {
        let mut limits = json!({ "cpu": cpu, "memory": memory });
        if gpus > 0 {
            limits["nvidia.com/gpu"] = json!(gpus.to_string());
        }
        let mut c = json!({
            "name": container,
            "image": k.image,
            "resources": { "requests": { "cpu": cpu, "memory": memory }, "limits": limits },
            "env": env,
        });
        if ports.as_array().is_some_and(|p| !p.is_empty()) {
            c["ports"] = ports;
        }
        let mut meta = json!({ "labels": labels });
        if let Some(cmd) = &install {
            c["command"] = json!(["/bin/bash", "-c", "--"]);
            c["args"] = json!([cmd]);
            meta["annotations"] = json!({ "ray.io/overwrite-container-cmd": "true" });
        }
        let mut spec = json!({ "containers": [c] });
        if let Some(sa) = &k.service_account {
            spec["serviceAccountName"] = json!(sa);
        }
        if !k.image_pull_secrets.is_empty() {
            spec["imagePullSecrets"] = k
                .image_pull_secrets
                .iter()
                .map(|s| json!({ "name": s }))
                .collect();
        }
        if !k.node_selector.is_empty() {
            spec["nodeSelector"] = json!(k.node_selector);
        }
        if !k.tolerations.is_empty() {
            spec["tolerations"] = tolerations(&k.tolerations);
        }
        json!({ "metadata": meta, "spec": spec })
    };
    let head_ports = json!([
        { "containerPort": 6379, "name": "gcs-server" },
        { "containerPort": DASHBOARD_PORT, "name": "dashboard" },
        { "containerPort": 10001, "name": "client" },
    ]);
    let workers = cfg.setup.number_of_workers;
    let mut spec = json!({
        "rayVersion": ray,
        // Pods of other workloads cannot reach Ray's ports: only the cluster's own pods.
        "networkPolicy": { "mode": "DenyAllIngress" },
        // A changed pod template (image, resources, …) restarts the pods with it.
        "upgradeStrategy": { "type": "Recreate" },
        "headGroupSpec": {
            "rayStartParams": {},
            "template": pod("ray-head", &k.head_cpu, &k.head_memory, 0, head_ports),
        },
        "workerGroupSpecs": [{
            "groupName": WORKER_GROUP,
            "replicas": workers,
            "minReplicas": workers,
            "maxReplicas": workers,
            "rayStartParams": {},
            "template": pod("ray-worker", &k.worker_cpu, &k.worker_memory, k.worker_gpus, json!([])),
        }],
    });
    let scaling = &cfg.setup.scaling;
    if scaling.autoscaled() {
        // KubeRay's in-tree autoscaler (Ray's own, as a sidecar of the head) moves `replicas`
        // within the bounds: a new cluster starts at the minimum, and an apply carries the live
        // count (`with_live_replicas`), so an `up` never fights the autoscaler.
        spec["enableInTreeAutoscaling"] = json!(true);
        let mut options = json!({ "idleTimeoutSeconds": scaling.idle_timeout.as_secs() });
        if let Some(mode) = upscaling_mode(scaling) {
            options["upscalingMode"] = json!(mode);
        }
        spec["autoscalerOptions"] = options;
        let group = &mut spec["workerGroupSpecs"][0];
        group["minReplicas"] = json!(scaling.min_workers);
        group["maxReplicas"] = json!(scaling.max_workers);
    }
    if !features.network_policy {
        spec.as_object_mut().map(|s| s.remove("networkPolicy"));
    }
    if !features.upgrade_strategy {
        spec.as_object_mut().map(|s| s.remove("upgradeStrategy"));
    }
    if supports_token_auth(&ray) && features.auth_options {
        spec["authOptions"] = json!({ "mode": "token" });
    }
    json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": { "daft.io/version": env!("CARGO_PKG_VERSION") },
        },
        "spec": spec,
    })
}

/// The manifest to apply over `live` (the RayCluster as it is, if it exists): an autoscaled
/// group keeps the autoscaler's `replicas`, brought within the (maybe new) bounds.
pub fn with_live_replicas(manifest: &Value, live: Option<&Value>) -> Value {
    let mut m = manifest.clone();
    if m["spec"]["enableInTreeAutoscaling"] != json!(true) {
        return m;
    }
    let live_groups = live
        .and_then(|l| l["spec"]["workerGroupSpecs"].as_array().cloned())
        .unwrap_or_default();
    if let Some(groups) = m["spec"]["workerGroupSpecs"].as_array_mut() {
        for g in groups {
            let (Some(min), Some(max)) = (g["minReplicas"].as_u64(), g["maxReplicas"].as_u64())
            else {
                continue;
            };
            let now = live_groups
                .iter()
                .find(|l| l["groupName"] == g["groupName"])
                .and_then(|l| l["replicas"].as_u64());
            if let Some(n) = now {
                g["replicas"] = json!(n.clamp(min, max));
            }
        }
    }
    m
}

/// KubeRay's `upscalingMode` for `upscaling_speed`, when the file gives one: KubeRay knows
/// two speeds, Ray's rate-limited one (`Conservative`, speed 1) and unlimited (`Default`).
pub fn upscaling_mode(scaling: &crate::config::Scaling) -> Option<&'static str> {
    let mode = if scaling.upscaling_speed <= 1.0 {
        "Conservative"
    } else {
        "Default"
    };
    scaling.upscaling_speed_given.then_some(mode)
}

/// Tolerations as a pod spec lists them.
pub fn tolerations(list: &[crate::config::Toleration]) -> Value {
    list.iter()
        .map(|t| {
            let mut v = json!({ "key": t.key });
            match &t.value {
                Some(val) => {
                    v["operator"] = json!("Equal");
                    v["value"] = json!(val);
                }
                None => v["operator"] = json!("Exists"),
            }
            if let Some(e) = &t.effect {
                v["effect"] = json!(e);
            }
            v
        })
        .collect()
}

/// The settings of a RayCluster that a plan compares, by the names a plan shows.
pub fn settings(obj: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let s = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let spec = &obj["spec"];
    let head = &spec["headGroupSpec"]["template"]["spec"];
    let group = spec["workerGroupSpecs"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["groupName"] == WORKER_GROUP))
        .cloned()
        .unwrap_or(Value::Null);
    let worker = &group["template"]["spec"];
    out.insert("ray version".into(), s(&spec["rayVersion"]));
    out.insert("image".into(), s(&head["containers"][0]["image"]));
    out.insert(
        "head cpu".into(),
        s(&head["containers"][0]["resources"]["limits"]["cpu"]),
    );
    out.insert(
        "head memory".into(),
        s(&head["containers"][0]["resources"]["limits"]["memory"]),
    );
    if spec["enableInTreeAutoscaling"] == json!(true) {
        // The autoscaler moves `replicas`: what daft set is the range.
        out.insert(
            "worker replicas".into(),
            format!(
                "autoscaled {}–{}",
                s(&group["minReplicas"]),
                s(&group["maxReplicas"])
            ),
        );
        out.insert(
            "idle timeout".into(),
            s(&spec["autoscalerOptions"]["idleTimeoutSeconds"]),
        );
        out.insert(
            "upscaling mode".into(),
            s(&spec["autoscalerOptions"]["upscalingMode"]),
        );
    } else {
        out.insert("worker replicas".into(), s(&group["replicas"]));
    }
    out.insert("worker image".into(), s(&worker["containers"][0]["image"]));
    out.insert(
        "worker cpu".into(),
        s(&worker["containers"][0]["resources"]["limits"]["cpu"]),
    );
    out.insert(
        "worker memory".into(),
        s(&worker["containers"][0]["resources"]["limits"]["memory"]),
    );
    out.insert(
        "worker gpus".into(),
        s(&worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]),
    );
    out.insert("dependencies".into(), s(&head["containers"][0]["args"]));
    out.insert("node selector".into(), s(&head["nodeSelector"]));
    out.insert("tolerations".into(), s(&head["tolerations"]));
    out.insert("service account".into(), s(&head["serviceAccountName"]));
    out.insert("image pull secrets".into(), s(&head["imagePullSecrets"]));
    out.insert(
        "token authentication".into(),
        s(&spec["authOptions"]["mode"]),
    );
    out.insert(
        "setup".into(),
        s(&obj["metadata"]["annotations"][SETUP_ANNOTATION]),
    );
    out
}

/// The hash of what runs on the head after it is ready (`[run] setup_commands`).
pub fn setup_hash(cfg: &Config) -> String {
    crate::model::short_hash(cfg.run.setup_commands.iter().map(String::as_str))
}

/// The RayCluster `cfg` asks for, as the planner sees it.
pub fn desired(
    cfg: &Config,
    k: &KubernetesSetup,
    namespace: &str,
    features: Features,
) -> DesiredResource {
    let manifest = raycluster(cfg, k, namespace, features);
    let mut settings = settings(&manifest);
    settings.insert("setup".into(), setup_hash(cfg));
    DesiredResource {
        kind: "RayCluster".into(),
        name: cfg.setup.name.clone(),
        settings,
        workers: cfg.setup.number_of_workers,
        scaling: cfg.setup.scaling.describe(),
        manifest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_auth_from_ray_2_52() {
        assert!(supports_token_auth("2.52.0"));
        assert!(supports_token_auth("2.60.1"));
        assert!(supports_token_auth("3.0.0"));
        assert!(!supports_token_auth("2.51.2"));
        assert!(!supports_token_auth("2.9.3"));
    }
}
