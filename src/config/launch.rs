//! `launch.toml`: a job to build into an image and run on Kubernetes (a `batch/v1` Job, or a
//! KubeRay RayJob when it has workers). Loaded as strictly as `.daft.toml`: unknown keys,
//! wrong types and bad values are located errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml_edit::Document;

use super::schema::{k, Key, Ty};
use super::{
    is_dns_label, is_env_name, is_label_key, is_label_value, is_quantity, parse_toleration,
    Checker, Toleration,
};
use crate::error::ConfigError;

/// The default file name.
pub const DEFAULT_LAUNCH: &str = "launch.toml";

/// Every key `launch.toml` accepts.
pub const LAUNCH_KEYS: &[Key] = &[
    k("", "name", Ty::Str, true, "\"train\""),
    k("", "command", Ty::Str, false, "\"python train.py\""),
    k("", "workers", Ty::Int, false, "0"),
    k("", "python_version", Ty::Str, false, "\"3.11\""),
    k("", "backoff_limit", Ty::Int, false, "0"),
    k("", "ttl_seconds_after_finished", Ty::Int, false, "86400"),
    k("", "env", Ty::StrMap, false, "{ WANDB_PROJECT = \"demo\" }"),
    k("", "secrets", Ty::StrList, false, "[\"wandb-credentials\"]"),
    k("", "image", Ty::Table, false, "[image]"),
    k("", "resources", Ty::Table, false, "[resources]"),
    k("", "kubernetes", Ty::Table, false, "[kubernetes]"),
    k("", "sweep", Ty::Sweep, false, "[sweep]"),
    k("image", "base", Ty::Str, false, "\"python:3.11-slim\""),
    k(
        "image",
        "registry",
        Ty::Str,
        false,
        "\"registry.example.com/team\"",
    ),
    k("image", "dockerfile", Ty::Str, false, "\"Dockerfile\""),
    k("image", "builder", Ty::Str, false, "\"auto\""),
    k("resources", "cpu", Ty::Str, false, "\"4\""),
    k("resources", "memory", Ty::Str, false, "\"16Gi\""),
    k("resources", "gpus", Ty::Int, false, "1"),
    k("resources", "gpu_memory", Ty::Str, false, "\"40Gi\""),
    k("kubernetes", "context", Ty::Str, false, "\"my-eks\""),
    k("kubernetes", "namespace", Ty::Str, false, "\"ml\""),
    k(
        "kubernetes",
        "node_selector",
        Ty::StrMap,
        false,
        "{ \"node.kubernetes.io/instance-type\" = \"g5.xlarge\" }",
    ),
    k(
        "kubernetes",
        "tolerations",
        Ty::StrList,
        false,
        "[\"nvidia.com/gpu:NoSchedule\"]",
    ),
    k(
        "kubernetes",
        "service_account",
        Ty::Str,
        false,
        "\"trainer\"",
    ),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchFile {
    name: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    workers: i64,
    #[serde(default)]
    python_version: Option<String>,
    #[serde(default)]
    backoff_limit: i64,
    #[serde(default)]
    ttl_seconds_after_finished: Option<i64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    image: ImageFile,
    #[serde(default)]
    resources: ResourcesFile,
    #[serde(default)]
    kubernetes: KubernetesFile,
    /// (Read by the sweep loader.)
    #[serde(default, rename = "sweep")]
    _sweep: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageFile {
    base: Option<String>,
    registry: Option<String>,
    dockerfile: Option<String>,
    builder: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesFile {
    cpu: Option<String>,
    memory: Option<String>,
    gpus: Option<i64>,
    gpu_memory: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesFile {
    context: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    node_selector: BTreeMap<String, String>,
    #[serde(default)]
    tolerations: Vec<String>,
    service_account: Option<String>,
}

/// Which tool builds the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderKind {
    /// The first of docker, buildah, podman found.
    Auto,
    Docker,
    Buildah,
    Podman,
}

/// A validated `launch.toml`.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    pub path: PathBuf,
    pub display_path: String,
    /// The project: the directory holding `launch.toml` (the image's build context).
    pub project_dir: PathBuf,
    pub name: String,
    pub command: Option<String>,
    pub workers: u32,
    pub python_version: String,
    pub backoff_limit: u32,
    pub ttl_seconds_after_finished: Option<u32>,
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<String>,
    /// The base image (default: Python of `python_version`; with workers, Ray's image).
    pub base: String,
    /// Where images are pushed (`host[:port]/path`); None: only `--local` and `--dry-run` work.
    pub registry: Option<String>,
    /// The project's own Dockerfile (else one generated from `templates/`).
    pub dockerfile: Option<PathBuf>,
    pub builder: BuilderKind,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub gpus: u32,
    /// GPU memory a node's GPUs must have, in MiB (`nvidia.com/gpu.memory`).
    pub gpu_memory_mib: Option<u64>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub service_account: Option<String>,
    /// `[sweep]`: one job per variant.
    pub sweep: Option<crate::sweep::Sweep>,
}

/// A quantity in MiB ("40Gi" → 40960, "24000Mi", "80G").
pub fn mebibytes(q: &str) -> Option<u64> {
    let digits = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, unit) = q.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let bytes: u128 = match unit {
        "Mi" => (n as u128) << 20,
        "Gi" => (n as u128) << 30,
        "Ti" => (n as u128) << 40,
        "M" => n as u128 * 1_000_000,
        "G" => n as u128 * 1_000_000_000,
        "T" => n as u128 * 1_000_000_000_000,
        _ => return None,
    };
    Some((bytes >> 20) as u64)
}

impl LaunchConfig {
    pub fn load(path: &Path) -> Result<LaunchConfig, ConfigError> {
        let display = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: display.clone(),
            source: None,
            span: None,
            title: if e.kind() == std::io::ErrorKind::NotFound {
                "launch file not found".into()
            } else {
                format!("cannot read the launch file: {e}")
            },
            label: String::new(),
            help: Some(format!(
                "write one with `daft init-config --launch {display}`, or name another with `-f FILE`"
            )),
        })?;
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let mut c = Self::parse(&display, &source, dir)?;
        c.path = path.to_path_buf();
        Ok(c)
    }

    pub fn parse(file: &str, source: &str, dir: &Path) -> Result<LaunchConfig, ConfigError> {
        let doc = Document::parse(source.to_string()).map_err(|e| {
            let msg = e.message().trim().to_string();
            let first = msg.lines().next().unwrap_or("invalid TOML").to_string();
            ConfigError::new(
                file,
                source,
                e.span(),
                format!("this is not valid TOML: {first}"),
            )
            .label(first)
            .help("fix the TOML syntax at the marked place")
        })?;
        let cx = Checker {
            file,
            source,
            keys: LAUNCH_KEYS,
        };
        cx.check_shape(doc.as_table(), &[])?;
        let f: LaunchFile = toml_edit::de::from_document(doc.clone()).map_err(|e| {
            ConfigError::new(file, source, e.span(), e.message().trim().to_string())
                .label("here")
                .help("see launch.toml in the README")
        })?;
        let v = |p: &[&str]| cx.value_span(&doc, p);
        // A Job's name gets a time stamp, a suffix and a sweep's variant number: 32 characters
        // leave room under Kubernetes' 63.
        if f.name.len() > 32
            || !f.name.starts_with(|c: char| c.is_ascii_lowercase())
            || !is_dns_label(&f.name)
        {
            return Err(cx
                .err(
                    v(&["name"]),
                    format!("`name` = {:?} cannot name a Kubernetes job", f.name),
                )
                .label("lowercase letters, digits and '-', starting with a letter, at most 32")
                .help("name the job as Kubernetes allows, for example name = \"train-resnet\""));
        }
        if let Some(c) = &f.command {
            if c.trim().is_empty() {
                return Err(cx
                    .err(v(&["command"]), "`command` is empty")
                    .label("empty command")
                    .help("give the command the job runs, for example command = \"python train.py\", or remove it and pass one after `--`"));
            }
        }
        if !(0..=1000).contains(&f.workers) {
            return Err(cx
                .err(v(&["workers"]), format!("`workers` = {} is out of range", f.workers))
                .label("must be between 0 and 1000")
                .help("0 runs the command as one pod (a Job); more runs it on a Ray cluster of that many workers (a RayJob)"));
        }
        if !(0..=100).contains(&f.backoff_limit) {
            return Err(cx
                .err(
                    v(&["backoff_limit"]),
                    format!("`backoff_limit` = {} is out of range", f.backoff_limit),
                )
                .label("must be between 0 and 100")
                .help(
                    "give how often a failed job is retried, for example backoff_limit = 0 (never)",
                ));
        }
        if let Some(t) = f.ttl_seconds_after_finished {
            if !(0..=(i32::MAX as i64)).contains(&t) {
                return Err(cx
                    .err(v(&["ttl_seconds_after_finished"]), format!("`ttl_seconds_after_finished` = {t} is out of range"))
                    .label("seconds, 0 or more")
                    .help("give how long a finished job is kept, for example ttl_seconds_after_finished = 86400 (a day)"));
            }
        }
        let python_version = f.python_version.clone().unwrap_or_else(|| "3.11".into());
        if !python_version
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(cx
                .err(
                    v(&["python_version"]),
                    format!("`python_version` = {python_version:?} is not a Python version"),
                )
                .label("expected digits and dots")
                .help("for example python_version = \"3.11\""));
        }
        for key in f.env.keys() {
            if !is_env_name(key) {
                return Err(cx
                    .err(
                        v(&["env", key]).or_else(|| v(&["env"])),
                        format!("`env.{key}` is not an environment variable name"),
                    )
                    .label("letters, digits and '_', not starting with a digit")
                    .help("for example env = { WANDB_PROJECT = \"demo\" }"));
            }
        }
        for (i, s) in f.secrets.iter().enumerate() {
            if !s.split('.').all(is_dns_label) {
                return Err(cx
                    .err(cx.element_span(&doc, &["secrets"], i), format!("`secrets` entry {s:?} is not a Secret name"))
                    .label("lowercase letters, digits, '-' and '.'")
                    .help("name Kubernetes Secrets in the job's namespace; each key becomes an environment variable of the job"));
            }
        }
        let builder = match f.image.builder.as_deref() {
            None | Some("auto") => BuilderKind::Auto,
            Some("docker") => BuilderKind::Docker,
            Some("buildah") => BuilderKind::Buildah,
            Some("podman") => BuilderKind::Podman,
            Some(other) => {
                return Err(cx
                    .err(
                        v(&["image", "builder"]),
                        format!("`image.builder` = {other:?} is not a builder daft knows"),
                    )
                    .label("expected \"auto\", \"docker\", \"buildah\" or \"podman\"")
                    .help("use \"auto\" (the first one installed) or name one"));
            }
        };
        for (key, val) in [("base", &f.image.base), ("registry", &f.image.registry)] {
            if let Some(val) = val {
                if val.trim().is_empty() || val.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(cx
                        .err(v(&["image", key]), format!("`image.{key}` = {val:?} is not an image reference"))
                        .label("empty, or holds whitespace")
                        .help(if key == "base" {
                            "give the image to build on, for example base = \"python:3.11-slim\""
                        } else {
                            "give where to push, for example registry = \"registry.example.com/team\""
                        }));
                }
            }
        }
        let dockerfile = match &f.image.dockerfile {
            None => None,
            Some(d) => {
                let p = dir.join(d);
                if !p.is_file() {
                    return Err(cx
                        .err(v(&["image", "dockerfile"]), format!("`image.dockerfile` = {d:?} is not a file"))
                        .label(format!("{} does not exist", p.display()))
                        .help("name the project's Dockerfile relative to launch.toml, or remove the key to have daft write one"));
                }
                Some(p)
            }
        };
        let quantity = |key: &str, val: &Option<String>, example: &str| {
            if let Some(q) = val {
                if !is_quantity(q) || q.trim_start_matches(['0', '.']).is_empty() {
                    return Err(cx
                        .err(
                            v(&["resources", key]),
                            format!("`resources.{key}` = {q:?} is not a Kubernetes quantity"),
                        )
                        .label("a positive number with an optional unit (m, Ki, Mi, Gi, …)")
                        .help(format!(
                            "write it as Kubernetes does, for example {key} = {example}"
                        )));
                }
            }
            Ok(())
        };
        quantity("cpu", &f.resources.cpu, "\"4\"")?;
        quantity("memory", &f.resources.memory, "\"16Gi\"")?;
        let gpus = match f.resources.gpus {
            None => 0,
            Some(g) if (0..=64).contains(&g) => g as u32,
            Some(g) => {
                return Err(cx
                    .err(
                        v(&["resources", "gpus"]),
                        format!("`resources.gpus` = {g} is not a GPU count"),
                    )
                    .label("must be between 0 and 64")
                    .help(
                        "give the GPUs of the job's pod (nvidia.com/gpu), for example gpus = 1",
                    ));
            }
        };
        let gpu_memory_mib = match &f.resources.gpu_memory {
            None => None,
            Some(q) => {
                match mebibytes(q) {
                    Some(m) if m > 0 => Some(m),
                    _ => {
                        return Err(cx
                        .err(v(&["resources", "gpu_memory"]), format!("`resources.gpu_memory` = {q:?} is not an amount of GPU memory"))
                        .label("a whole number with Mi, Gi, Ti, M, G or T")
                        .help("give the memory each GPU must have, for example gpu_memory = \"40Gi\""));
                    }
                }
            }
        };
        if gpu_memory_mib.is_some() && gpus == 0 {
            return Err(cx
                .err(
                    v(&["resources", "gpu_memory"]),
                    "`resources.gpu_memory` without `resources.gpus`",
                )
                .label("asks for GPU memory, but for no GPU")
                .help("set gpus = 1 (or more) beside it, or remove gpu_memory"));
        }
        let k8s = &f.kubernetes;
        for (key, val) in [
            ("namespace", &k8s.namespace),
            ("service_account", &k8s.service_account),
        ] {
            if let Some(val) = val {
                if !is_dns_label(val) {
                    return Err(cx
                        .err(
                            v(&["kubernetes", key]),
                            format!("`kubernetes.{key}` = {val:?} is not a Kubernetes name"),
                        )
                        .label("lowercase letters, digits and '-', at most 63")
                        .help(format!(
                            "give the {} as Kubernetes spells it",
                            key.replace('_', " ")
                        )));
                }
            }
        }
        for (key, val) in &k8s.node_selector {
            if !is_label_key(key) || !is_label_value(val) {
                return Err(cx
                    .err(v(&["kubernetes", "node_selector", key]).or_else(|| v(&["kubernetes", "node_selector"])), format!("`kubernetes.node_selector` entry {key:?} = {val:?} is not a node label"))
                    .label("label keys are [prefix/]name; values up to 63 letters, digits, '-', '_', '.'")
                    .help("select nodes by their labels, for example node_selector = { \"nvidia.com/gpu.product\" = \"NVIDIA-A100-SXM4-80GB\" }"));
            }
        }
        let mut tolerations = Vec::new();
        for (i, raw) in k8s.tolerations.iter().enumerate() {
            tolerations.push(parse_toleration(raw).map_err(|why| {
                cx.err(cx.element_span(&doc, &["kubernetes", "tolerations"], i), format!("`kubernetes.tolerations` entry {raw:?} is not a toleration: {why}"))
                    .label("expected key[=value][:Effect]")
                    .help("tolerate a taint as `kubectl taint` writes it, for example tolerations = [\"nvidia.com/gpu:NoSchedule\"]")
            })?);
        }
        let sweep = if doc.as_table().contains_key("sweep") {
            Some(crate::sweep::parse(file, source, &f.name)?)
        } else {
            None
        };
        let workers = f.workers as u32;
        let base = f.image.base.clone().unwrap_or_else(|| {
            if workers > 0 {
                super::default_ray_image(None, Some(&python_version), gpus > 0)
            } else {
                format!("python:{python_version}-slim")
            }
        });
        Ok(LaunchConfig {
            path: PathBuf::from(file),
            display_path: file.to_string(),
            project_dir: dir.to_path_buf(),
            name: f.name,
            command: f.command,
            workers,
            python_version,
            backoff_limit: f.backoff_limit as u32,
            ttl_seconds_after_finished: f.ttl_seconds_after_finished.map(|t| t as u32),
            env: f.env,
            secrets: f.secrets,
            base,
            registry: f.image.registry,
            dockerfile,
            builder,
            cpu: f.resources.cpu,
            memory: f.resources.memory,
            gpus,
            gpu_memory_mib,
            context: k8s.context.clone(),
            namespace: k8s.namespace.clone(),
            node_selector: k8s.node_selector.clone(),
            tolerations,
            service_account: k8s.service_account.clone(),
            sweep,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_aux::serde_introspection::serde_introspect as fields;

    use super::super::schema::drift::{same_fields, tables_checked};
    use super::*;

    #[test]
    fn the_launch_key_list_matches_serde() {
        let checks: &[(&str, &[&str])] = &[
            ("", fields::<LaunchFile>()),
            ("image", fields::<ImageFile>()),
            ("resources", fields::<ResourcesFile>()),
            ("kubernetes", fields::<KubernetesFile>()),
        ];
        for (parent, serde_fields) in checks {
            same_fields(LAUNCH_KEYS, parent, serde_fields);
        }
        let checked: Vec<&str> = checks.iter().map(|(p, _)| *p).collect();
        tables_checked(LAUNCH_KEYS, &checked);
    }

    #[test]
    fn gpu_memory_in_mebibytes() {
        assert_eq!(mebibytes("40Gi"), Some(40960));
        assert_eq!(mebibytes("24000Mi"), Some(24000));
        assert_eq!(mebibytes("80G"), Some(76293));
        assert_eq!(mebibytes("40"), None);
        assert_eq!(mebibytes("x"), None);
    }
}
