//! `[setup.kubernetes]`: its typed section, the checks of names, quantities and tolerations that
//! Kubernetes applies, and the section's meaning pass.

use super::*;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesFile {
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub existing: Option<String>,
    #[serde(default)]
    pub head_cpu: Option<String>,
    #[serde(default)]
    pub head_memory: Option<String>,
    #[serde(default)]
    pub worker_cpu: Option<String>,
    #[serde(default)]
    pub worker_memory: Option<String>,
    #[serde(default)]
    pub worker_gpus: Option<i64>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub image_pull_secrets: Vec<String>,
    #[serde(default)]
    pub ready_timeout: Option<String>,
}

/// A pod toleration, from `key[=value][:Effect]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Toleration {
    pub key: String,
    /// None: any value (`Exists`).
    pub value: Option<String>,
    /// None: every effect.
    pub effect: Option<String>,
}

/// Where and how the KubeRay cluster runs.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSetup {
    /// The kubeconfig context (None: the current one).
    pub context: Option<String>,
    /// None: the context's namespace, else `default`.
    pub namespace: Option<String>,
    /// The Ray image of every pod.
    pub image: String,
    /// A RayCluster daft did not create: `list`, `submit`, `dashboard` only.
    pub existing: Option<String>,
    pub head_cpu: String,
    pub head_memory: String,
    pub worker_cpu: String,
    pub worker_memory: String,
    /// `nvidia.com/gpu` of each worker.
    pub worker_gpus: u32,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub service_account: Option<String>,
    pub image_pull_secrets: Vec<String>,
    /// How long `up` waits for the pods to be ready.
    pub ready_timeout: std::time::Duration,
}

/// The Ray version of the default image when `ray_version` is not set.
pub const DEFAULT_IMAGE_RAY_VERSION: &str = "2.60.0";

impl Default for KubernetesSetup {
    fn default() -> Self {
        KubernetesSetup {
            context: None,
            namespace: None,
            image: default_ray_image(None, None, false),
            existing: None,
            head_cpu: "2".into(),
            head_memory: "4Gi".into(),
            worker_cpu: "2".into(),
            worker_memory: "4Gi".into(),
            worker_gpus: 0,
            node_selector: BTreeMap::new(),
            tolerations: vec![],
            service_account: None,
            image_pull_secrets: vec![],
            ready_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// `rayproject/ray:<ray>-py<python>[-gpu]`, the image matching the config's versions.
pub fn default_ray_image(ray: Option<&str>, python: Option<&str>, gpu: bool) -> String {
    let ray = ray.unwrap_or(DEFAULT_IMAGE_RAY_VERSION);
    let py: String = python
        .unwrap_or("3.11")
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .concat();
    format!(
        "rayproject/ray:{ray}-py{py}{}",
        if gpu { "-gpu" } else { "" }
    )
}

/// A Kubernetes resource quantity ("2", "500m", "4Gi", "1.5").
pub fn is_quantity(s: &str) -> bool {
    const SUFFIXES: [&str; 14] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit())
        && SUFFIXES.contains(&suffix)
}

/// A DNS-1123 label (namespaces, secret and account names): lowercase letters, digits, '-'.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label key: an optional DNS prefix and '/', then a name of letters, digits, '-', '_', '.'.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns_label));
    name_ok && prefix_ok
}

/// A label value: empty, or up to 63 letters, digits, '-', '_', '.' starting and ending with
/// a letter or digit.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// `key[=value][:Effect]` as a toleration; Err says what is wrong.
pub fn parse_toleration(raw: &str) -> Result<Toleration, String> {
    let (kv, effect) = match raw.rsplit_once(':') {
        Some((kv, e)) => (kv, Some(e)),
        None => (raw, None),
    };
    if let Some(e) = effect {
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&e) {
            return Err(format!(
                "the effect {e:?} is not NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if !is_label_key(key) {
        return Err(format!("{key:?} is not a taint key"));
    }
    if let Some(v) = value {
        if !is_label_value(v) {
            return Err(format!("{v:?} is not a taint value"));
        }
    }
    Ok(Toleration {
        key: key.to_string(),
        value: value.map(str::to_string),
        effect: effect.map(str::to_string),
    })
}

impl Checker<'_> {
    /// `[setup.kubernetes]`: names Kubernetes accepts, quantities, tolerations.
    pub(super) fn check_kubernetes(
        &self,
        doc: &Document<String>,
        s: &SetupFile,
        name: &str,
    ) -> Result<KubernetesSetup, ConfigError> {
        let v = |p: &[&str]| self.value_span(doc, p);
        let k = s.kubernetes.clone().unwrap_or_default();
        let mut out = KubernetesSetup::default();
        if s.provider != ProviderKind::Kubernetes {
            return Ok(out);
        }
        // The RayCluster's name, and its head service's (`NAME-head-svc`): a DNS-1035 label.
        if k.existing.is_none()
            && (name.len() > 50
                || !name.starts_with(|c: char| c.is_ascii_lowercase())
                || !is_dns_label(name))
        {
            return Err(self
                .err(v(&["setup", "name"]), format!("`setup.name` = {name:?} cannot name a Kubernetes RayCluster"))
                .label("Kubernetes names are lowercase letters, digits and '-', starting with a letter")
                .help("use at most 50 lowercase letters, digits or '-', starting with a letter, for example name = \"my-cluster\""));
        }
        for key in ["namespace", "existing", "service_account"] {
            let val = match key {
                "namespace" => &k.namespace,
                "existing" => &k.existing,
                _ => &k.service_account,
            };
            if let Some(val) = val {
                if !is_dns_label(val) {
                    return Err(self
                        .err(
                            v(&["setup", "kubernetes", key]),
                            format!("`setup.kubernetes.{key}` = {val:?} is not a Kubernetes name"),
                        )
                        .label("lowercase letters, digits and '-', at most 63")
                        .help(format!(
                            "give the {} as Kubernetes spells it, for example {key} = \"ray\"",
                            key.replace('_', " ")
                        )));
                }
            }
        }
        if let Some(c) = &k.context {
            if c.trim().is_empty() {
                return Err(self
                    .err(v(&["setup", "kubernetes", "context"]), "`setup.kubernetes.context` is empty")
                    .label("empty context")
                    .help("name a context of your kubeconfig, or remove the key to use the current one"));
            }
        }
        if let Some(img) = &k.image {
            if img.trim().is_empty() || img.chars().any(char::is_whitespace) {
                return Err(self
                    .err(v(&["setup", "kubernetes", "image"]), format!("`setup.kubernetes.image` = {img:?} is not an image reference"))
                    .label("empty, or holds whitespace")
                    .help("give an image with Ray in it, for example image = \"rayproject/ray:2.60.0-py311\""));
            }
        }
        let quantities = [
            (
                "head_cpu",
                &k.head_cpu,
                &mut out.head_cpu,
                "\"2\" or \"500m\"",
            ),
            (
                "head_memory",
                &k.head_memory,
                &mut out.head_memory,
                "\"8Gi\"",
            ),
            ("worker_cpu", &k.worker_cpu, &mut out.worker_cpu, "\"4\""),
            (
                "worker_memory",
                &k.worker_memory,
                &mut out.worker_memory,
                "\"16Gi\"",
            ),
        ];
        for (key, given, slot, example) in quantities {
            if let Some(q) = given {
                if !is_quantity(q) || q.trim_start_matches(['0', '.']).is_empty() {
                    return Err(self
                        .err(
                            v(&["setup", "kubernetes", key]),
                            format!(
                                "`setup.kubernetes.{key}` = {q:?} is not a Kubernetes quantity"
                            ),
                        )
                        .label("a positive number with an optional unit (m, Ki, Mi, Gi, …)")
                        .help(format!(
                            "write it as Kubernetes does, for example {key} = {example}"
                        )));
                }
                *slot = q.clone();
            }
        }
        if let Some(g) = k.worker_gpus {
            if !(0..=64).contains(&g) {
                return Err(self
                    .err(v(&["setup", "kubernetes", "worker_gpus"]), format!("`setup.kubernetes.worker_gpus` = {g} is not a GPU count"))
                    .label("must be between 0 and 64")
                    .help("give the GPUs of each worker (nvidia.com/gpu), for example worker_gpus = 1"));
            }
            out.worker_gpus = g as u32;
        }
        for (key, val) in &k.node_selector {
            if !is_label_key(key) || !is_label_value(val) {
                return Err(self
                    .err(
                        v(&["setup", "kubernetes", "node_selector", key]).or_else(|| v(&["setup", "kubernetes", "node_selector"])),
                        format!("`setup.kubernetes.node_selector` entry {key:?} = {val:?} is not a node label"),
                    )
                    .label("label keys are [prefix/]name; values up to 63 letters, digits, '-', '_', '.'")
                    .help("select nodes by their labels, for example node_selector = { \"cloud.google.com/gke-accelerator\" = \"nvidia-l4\" }"));
            }
        }
        for (i, raw) in k.tolerations.iter().enumerate() {
            match parse_toleration(raw) {
                Ok(t) => out.tolerations.push(t),
                Err(why) => {
                    return Err(self
                        .err(self.element_span(doc, &["setup", "kubernetes", "tolerations"], i), format!("`setup.kubernetes.tolerations` entry {raw:?} is not a toleration: {why}"))
                        .label("expected key[=value][:Effect]")
                        .help("tolerate a taint as `kubectl taint` writes it, for example tolerations = [\"nvidia.com/gpu:NoSchedule\"]"));
                }
            }
        }
        for (i, secret) in k.image_pull_secrets.iter().enumerate() {
            if !is_dns_label(secret) && !secret.split('.').all(is_dns_label) {
                return Err(self
                    .err(self.element_span(doc, &["setup", "kubernetes", "image_pull_secrets"], i), format!("`setup.kubernetes.image_pull_secrets` entry {secret:?} is not a Secret name"))
                    .label("lowercase letters, digits, '-' and '.'")
                    .help("name Secrets of type kubernetes.io/dockerconfigjson in the cluster's namespace"));
            }
        }
        if let Some(t) = &k.ready_timeout {
            match humantime::parse_duration(t) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => out.ready_timeout = d,
                _ => {
                    return Err(self
                        .err(v(&["setup", "kubernetes", "ready_timeout"]), format!("`setup.kubernetes.ready_timeout` = {t:?} is not a duration"))
                        .label("expected a duration like \"10m\"")
                        .help("give how long `daft up` waits for the pods to be ready, for example ready_timeout = \"15m\""));
                }
            }
        }
        out.image = k.image.clone().unwrap_or_else(|| {
            default_ray_image(
                s.ray_version.as_deref(),
                s.python_version.as_deref(),
                out.worker_gpus > 0,
            )
        });
        out.context = k.context.clone();
        out.namespace = k.namespace.clone();
        out.existing = k.existing.clone();
        out.node_selector = k.node_selector.clone();
        out.service_account = k.service_account.clone();
        out.image_pull_secrets = k.image_pull_secrets.clone();
        Ok(out)
    }
}
