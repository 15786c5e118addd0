//! The `.daft.toml` schema and its strict, helpful loader.
//!
//! Loading happens in three passes over a span-preserving TOML document:
//! 1. shape: every table and key is known (else "did you mean"), every value has the right type,
//!    no template placeholder is left;
//! 2. serde turns the document into the typed [`ConfigFile`];
//! 3. meaning: ranges, names, host addresses, key files, provider sections.
//!
//! Every error names the file, line and column and says what to do.

pub mod launch;
mod schema;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml_edit::{Document, Item, Value};

use crate::error::ConfigError;
pub use schema::{Ty, KEYS};

/// Default config file name.
pub const DEFAULT_CONFIG: &str = ".daft.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Aws,
    Ssh,
    Local,
    Slurm,
    Kubernetes,
}

impl ProviderKind {
    pub const ALL: [&'static str; 5] = ["aws", "ssh", "local", "slurm", "kubernetes"];
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Aws => "aws",
            ProviderKind::Ssh => "ssh",
            ProviderKind::Local => "local",
            ProviderKind::Slurm => "slurm",
            ProviderKind::Kubernetes => "kubernetes",
        }
    }
}

fn default_provider() -> ProviderKind {
    ProviderKind::Aws
}
fn default_region() -> String {
    "us-west-2".into()
}
fn default_ssh_user() -> String {
    String::new()
}

/// `ssh_user` when the file gives none: EC2's `ec2-user` on AWS; elsewhere (your own hosts, a
/// Slurm cluster) your user name on this machine, as plain `ssh` would use.
pub fn default_ssh_user_for(provider: ProviderKind) -> String {
    match provider {
        ProviderKind::Aws => "ec2-user".into(),
        _ => ["USER", "LOGNAME"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into()),
    }
}
fn default_workers() -> i64 {
    2
}
fn default_max_parallel() -> i64 {
    DEFAULT_MAX_PARALLEL as i64
}
/// Nodes set up (or stopped) at once, unless `max_parallel` says otherwise.
pub const DEFAULT_MAX_PARALLEL: usize = 32;
/// How long one remote set-up command (an install, a start, a setup command) may take.
pub const DEFAULT_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
fn default_instance_type() -> String {
    "m7g.medium".into()
}
fn default_local_address() -> String {
    "127.0.0.1".into()
}
fn default_dashboard_port() -> i64 {
    8265
}
fn default_ray_port() -> i64 {
    6379
}

/// The file as written (after serde; before meaning checks).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub setup: SetupFile,
    #[serde(default)]
    pub run: Run,
    #[serde(default)]
    pub slurm: Option<SlurmTop>,
}

/// `[slurm.presets.NAME]`: named sets of `[setup.slurm]` settings (doodad's SLURM_CONFIGS).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmTop {
    #[serde(default)]
    pub presets: BTreeMap<String, SlurmFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupFile {
    pub name: String,
    #[serde(default = "default_provider")]
    pub provider: ProviderKind,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_ssh_user")]
    pub ssh_user: String,
    #[serde(default)]
    pub ssh_private_key: Option<String>,
    #[serde(default = "default_workers")]
    pub number_of_workers: i64,
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub python_version: Option<String>,
    #[serde(default)]
    pub ray_version: Option<String>,
    #[serde(default)]
    pub command_timeout: Option<String>,
    #[serde(default = "default_max_parallel")]
    pub max_parallel: i64,
    #[serde(default)]
    pub ssh: Option<SshHostsFile>,
    #[serde(default)]
    pub local: Option<LocalFile>,
    #[serde(default)]
    pub aws: Option<AwsFile>,
    #[serde(default)]
    pub slurm: Option<SlurmFile>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesFile>,
}

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmFile {
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub qos: Option<String>,
    #[serde(default)]
    pub cpus_per_task: Option<i64>,
    #[serde(default)]
    pub mem: Option<String>,
    #[serde(default)]
    pub gpus: Option<String>,
    #[serde(default)]
    pub constraint: Option<String>,
    #[serde(default)]
    pub extra_flags: Vec<String>,
    #[serde(default)]
    pub node_access: Option<String>,
    #[serde(default)]
    pub node_ssh_port: Option<i64>,
    #[serde(default)]
    pub pre_commands: Vec<String>,
}

/// How daft reaches a Slurm allocation's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeAccess {
    /// Through Slurm itself (`srun --jobid=ID --overlap -w NODE …` from the submit host or the
    /// login node): no SSH into compute nodes needed, as many sites allow none.
    #[default]
    Srun,
    /// Over SSH to the node (through the login node when there is one).
    Ssh,
}

/// Where and how the Slurm allocation is asked for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlurmSetup {
    /// The login node daft reaches over SSH; None: `sbatch` on this machine.
    pub login: Option<HostAddr>,
    /// `sbatch` options, in order: (flag, value), e.g. ("--partition", "debug").
    pub options: Vec<(String, String)>,
    /// `extra_flags`, as given (each one argument, starting with `-`).
    pub extra_flags: Vec<String>,
    /// How commands, files and the dashboard reach the allocation's nodes.
    pub node_access: NodeAccess,
    /// The port of the compute nodes' sshd (with `node_access = "ssh"`).
    pub node_ssh_port: u16,
    /// Shell lines every node runs before Ray starts, and every job before it runs
    /// (`module load …`, doodad's SSS_PRE_CMDS).
    pub pre_commands: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshHostsFile {
    pub head: String,
    #[serde(default)]
    pub workers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFile {
    #[serde(default = "default_local_address")]
    pub address: String,
    #[serde(default = "default_ray_port")]
    pub ray_port: i64,
    #[serde(default = "default_dashboard_port")]
    pub dashboard_port: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFile {
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub ssh_ingress_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Run {
    #[serde(default)]
    pub setup_commands: Vec<String>,
    /// What `daft submit` runs when no command follows `--` (a shell command line).
    #[serde(default)]
    pub command: Option<String>,
    /// Environment variables every job gets.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Variables whose values every job takes from this machine's environment at submit time.
    #[serde(default)]
    pub env_from_local: Vec<String>,
    /// More directories sent with every job (as given; relative to the config file).
    #[serde(default)]
    pub sync: Vec<String>,
    /// `sync`, resolved: existing directories with distinct names.
    #[serde(skip)]
    pub sync_dirs: Vec<PathBuf>,
}

/// `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct HostAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.port == 22 {
            write!(f, "{}", self.host)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SshHosts {
    pub head: HostAddr,
    pub workers: Vec<HostAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LocalSetup {
    pub address: IpAddr,
    pub ray_port: u16,
    pub dashboard_port: u16,
}

impl Default for LocalSetup {
    fn default() -> Self {
        LocalSetup {
            address: default_local_address()
                .parse()
                .expect("valid default address"),
            ray_port: 6379,
            dashboard_port: 8265,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AwsSetup {
    pub key_name: Option<String>,
    /// Empty: the caller's public address /32.
    pub ssh_ingress_cidrs: Vec<String>,
}

/// The validated setup, ready for the providers.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub name: String,
    pub provider: ProviderKind,
    pub region: String,
    pub ssh_user: String,
    pub ssh_private_key: Option<PathBuf>,
    pub number_of_workers: u32,
    pub instance_type: String,
    pub image_id: Option<String>,
    pub dependencies: Vec<String>,
    pub python_version: Option<String>,
    pub ray_version: Option<String>,
    /// The time limit of each remote set-up command.
    pub command_timeout: std::time::Duration,
    /// Nodes set up or stopped at once.
    pub max_parallel: usize,
    pub ssh: Option<SshHosts>,
    pub local: LocalSetup,
    pub aws: AwsSetup,
    pub slurm: SlurmSetup,
    pub kubernetes: KubernetesSetup,
}

impl Setup {
    /// Whether `[setup.slurm]` sets `key` (its sbatch option is in the allocation's request).
    pub fn slurm_key_given(&self, key: &str) -> bool {
        let flag = match key {
            "partition" => "--partition",
            "account" => "--account",
            "time" => "--time",
            "qos" => "--qos",
            "mem" => "--mem",
            "gpus" => "--gpus-per-node",
            "constraint" => "--constraint",
            _ => return false,
        };
        self.slurm.options.iter().any(|(f, _)| f == flag)
    }
}

/// A loaded config: the typed values plus the source, for errors found later.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub display_path: String,
    pub setup: Setup,
    pub run: Run,
    source: String,
    ssh_key_span: Option<Range<usize>>,
}

/// The largest cluster daft will plan.
pub const MAX_WORKERS: i64 = 10_000;

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let source = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError {
                    file: display.clone(),
                    source: None,
                    span: None,
                    title: "config file not found".into(),
                    label: String::new(),
                    help: Some(format!(
                        "create one with `daft init-config {}` (add `--provider local` to try daft on this machine), or name another with `-c FILE`",
                        if display == DEFAULT_CONFIG { "" } else { display.as_str() }
                    ).replace("  ", " ")),
                });
            }
            Err(e) => {
                return Err(ConfigError {
                    file: display,
                    source: None,
                    span: None,
                    title: format!("cannot read the config file: {e}"),
                    label: String::new(),
                    help: Some("check the path and its permissions".into()),
                })
            }
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&display, &source, &base).map(|mut c| {
            c.path = path.to_path_buf();
            c
        })
    }

    /// Validate config text. `file` names it in errors; `base` resolves relative key paths.
    pub fn parse(file: &str, source: &str, base: &Path) -> Result<Config, ConfigError> {
        let doc = Document::parse(source.to_string()).map_err(|e| {
            let msg = e.message().trim().to_string();
            let first = msg.lines().next().unwrap_or("invalid TOML").to_string();
            ConfigError::new(file, source, e.span(), format!("this is not valid TOML: {first}"))
                .label(first)
                .help("fix the TOML syntax at the marked place (strings need quotes, tables are written [name], each key once)")
        })?;
        let cx = Checker {
            file,
            source,
            keys: KEYS,
        };
        cx.check_shape(doc.as_table(), &[])?;

        let file_cfg: ConfigFile = toml_edit::de::from_document(doc.clone()).map_err(|e| {
            ConfigError::new(file, source, e.span(), e.message().trim().to_string())
                .label("here")
                .help("see the configuration reference in the README")
        })?;
        cx.check_meaning(&doc, file_cfg, base)
    }

    /// The config file's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A problem with the value at `path` (e.g. `["setup", "slurm", "partition"]`) found after
    /// loading (a back-end refused it), located in the file.
    pub fn located(&self, path: &[&str], title: String, label: &str, help: &str) -> ConfigError {
        let span = Document::parse(self.source.clone()).ok().and_then(|doc| {
            let mut item = doc.as_item();
            for p in path {
                item = item.get(p)?;
            }
            item_span(item)
        });
        ConfigError {
            file: self.display_path.clone(),
            source: Some(self.source.clone()),
            span,
            title,
            label: label.into(),
            help: Some(help.into()),
        }
    }

    /// An error about the `ssh_private_key` value (or about the file, when the key was given elsewhere).
    pub fn key_error(&self, title: String, help: String) -> ConfigError {
        ConfigError {
            file: self.display_path.clone(),
            source: Some(self.source.clone()),
            span: self.ssh_key_span.clone(),
            title,
            label: "this key file".into(),
            help: Some(help),
        }
    }
}

/// Is this string a template placeholder left unedited (`"$NAME - required"`)?
pub fn is_placeholder(s: &str) -> bool {
    let s = s.trim();
    s.starts_with('$')
        && s[1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
        && (s.contains(" - required") || s.contains(" - optional"))
}

pub(crate) struct Checker<'a> {
    pub(crate) file: &'a str,
    pub(crate) source: &'a str,
    /// The file's keys (`.daft.toml`'s [`KEYS`], or `launch.toml`'s).
    pub(crate) keys: &'static [schema::Key],
}

fn item_span(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
        Item::None => None,
    }
}

/// A POSIX environment variable name: letters, digits and `_`, not starting with a digit.
pub fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a date-time",
        Item::Value(Value::Array(_)) => "a list",
        Item::Value(Value::InlineTable(_)) | Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "a list of tables",
        Item::None => "nothing",
    }
}

impl Checker<'_> {
    pub(crate) fn err(&self, span: Option<Range<usize>>, title: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, self.source, span, title)
    }

    fn doc_key_span(&self, table: &toml_edit::Table, key: &str) -> Option<Range<usize>> {
        table
            .key(key)
            .and_then(|k| k.span())
            .or_else(|| table.get(key).and_then(item_span))
    }

    /// Pass 1: known keys, right types, no placeholders.
    pub(crate) fn check_shape(
        &self,
        table: &toml_edit::Table,
        path: &[&str],
    ) -> Result<(), ConfigError> {
        let here = path.join(".");
        let known: Vec<&schema::Key> = self.keys.iter().filter(|k| k.parent == here).collect();
        for (key, item) in table.iter() {
            let full = if here.is_empty() {
                key.to_string()
            } else {
                format!("{here}.{key}")
            };
            let Some(spec) = known.iter().find(|k| k.name == key) else {
                let names: Vec<&str> = known.iter().map(|k| k.name).collect();
                let what = if here.is_empty() {
                    "top-level table".to_string()
                } else {
                    format!("key in [{here}]")
                };
                let mut e = self
                    .err(
                        self.doc_key_span(table, key),
                        format!("unknown {what}: `{key}`"),
                    )
                    .label("not a daft setting");
                let valid = names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                e = match suggest(key, &names) {
                    Some(s) => e.help(format!("did you mean `{s}`? (valid here: {valid})")),
                    None => e.help(format!("remove it; valid here: {valid}")),
                };
                return Err(e);
            };
            let span = item_span(item).or_else(|| self.doc_key_span(table, key));
            let ok = match (spec.ty, item) {
                (Ty::Table | Ty::Sweep, Item::Table(_)) => true,
                (Ty::Sweep, Item::Value(Value::InlineTable(_))) => true,
                (Ty::Table, Item::Value(Value::InlineTable(_))) => true,
                (Ty::Str, Item::Value(Value::String(_))) => true,
                (Ty::Int, Item::Value(Value::Integer(_))) => true,
                (Ty::StrMap, Item::Table(_) | Item::Value(Value::InlineTable(_))) => {
                    let t = match item {
                        Item::Table(t) => t.clone(),
                        Item::Value(Value::InlineTable(t)) => t.clone().into_table(),
                        _ => unreachable!("matched above"),
                    };
                    for (k, v) in t.iter() {
                        if !matches!(v, Item::Value(Value::String(_))) {
                            return Err(self
                                .err(
                                    item_span(v).or_else(|| self.doc_key_span(&t, k)),
                                    format!("`{full}.{k}` must be a string, not {}", type_name(v)),
                                )
                                .label("expected a string")
                                .help(format!("quote the value, for example {}", spec.example)));
                        }
                        if full == "run.env" && !is_env_name(k) {
                            return Err(self
                                .err(
                                    self.doc_key_span(&t, k),
                                    format!("`{full}.{k}` is not an environment variable name"),
                                )
                                .label("expected letters, digits and _, not starting with a digit")
                                .help("name it like WANDB_PROJECT"));
                        }
                    }
                    // Its keys are the user's: not checked against the schema below.
                    continue;
                }
                (Ty::Presets, Item::Table(presets)) => {
                    // Each preset holds [setup.slurm] settings.
                    for (name, preset) in presets.iter() {
                        let Item::Table(t) = preset else {
                            return Err(self
                                .err(item_span(preset).or_else(|| self.doc_key_span(presets, name)), format!("`{full}.{name}` must be a table"))
                                .label("expected a table")
                                .help(format!("write it as [{full}.{name}] with partition, time, … as in [setup.slurm]")));
                        };
                        if t.contains_key("preset") || t.contains_key("login") {
                            let k = if t.contains_key("preset") {
                                "preset"
                            } else {
                                "login"
                            };
                            return Err(self
                                .err(
                                    self.doc_key_span(t, k),
                                    format!("`{k}` cannot be part of a preset"),
                                )
                                .label("not a preset setting")
                                .help(format!("set `{k}` in [setup.slurm]")));
                        }
                        let known: Vec<&str> = KEYS
                            .iter()
                            .filter(|k| {
                                k.parent == "setup.slurm" && !matches!(k.name, "preset" | "login")
                            })
                            .map(|k| k.name)
                            .collect();
                        for (k, _) in t.iter() {
                            if !known.contains(&k) {
                                let valid = known
                                    .iter()
                                    .map(|n| format!("`{n}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                let e = self
                                    .err(
                                        self.doc_key_span(t, k),
                                        format!("unknown key in [{full}.{name}]: `{k}`"),
                                    )
                                    .label("not a preset setting");
                                return Err(match suggest(k, &known) {
                                    Some(s) => {
                                        e.help(format!("did you mean `{s}`? (valid here: {valid})"))
                                    }
                                    None => e.help(format!("remove it; valid here: {valid}")),
                                });
                            }
                        }
                        // (Types and placeholders as in [setup.slurm].)
                        self.check_shape(t, &["setup", "slurm"])?;
                    }
                    continue;
                }
                (Ty::StrList, Item::Value(Value::Array(a))) => {
                    for v in a.iter() {
                        if !matches!(v, Value::String(_)) {
                            return Err(self
                                .err(v.span(), format!("`{full}` must be a list of strings"))
                                .label(format!("this is {}", type_name(&Item::Value(v.clone()))))
                                .help(format!("quote each entry, for example {}", spec.example)));
                        }
                    }
                    true
                }
                _ => false,
            };
            if !ok {
                let want = match spec.ty {
                    Ty::Table => "a table",
                    Ty::Str => "a string",
                    Ty::Int => "an integer",
                    Ty::StrList => "a list of strings",
                    Ty::StrMap => "a table of strings",
                    Ty::Presets => "a table of presets",
                    Ty::Sweep => "a [sweep] table",
                };
                return Err(self
                    .err(
                        span,
                        format!("`{full}` must be {want}, not {}", type_name(item)),
                    )
                    .label(format!("expected {want}"))
                    .help(format!("write it like {}", spec.example)));
            }
            if full == "setup.provider" {
                if let Item::Value(Value::String(v)) = item {
                    let val = v.value().as_str();
                    if !ProviderKind::ALL.contains(&val) && !is_placeholder(val) {
                        let mut e = self
                            .err(
                                v.span(),
                                format!("`setup.provider` = {val:?} is not a provider daft knows"),
                            )
                            .label(
                                "expected \"aws\", \"ssh\", \"local\", \"slurm\" or \"kubernetes\"",
                            );
                        e = match suggest(val, &ProviderKind::ALL) {
                            Some(s) => e.help(format!("did you mean \"{s}\"? daft runs clusters on aws (EC2), ssh (your own hosts), local (this machine), slurm (a Slurm allocation) or kubernetes (a KubeRay cluster)")),
                            None => e.help("use \"aws\" (EC2), \"ssh\" (your own hosts), \"local\" (this machine), \"slurm\" (a Slurm allocation) or \"kubernetes\" (a KubeRay cluster)"),
                        };
                        return Err(e);
                    }
                }
            }
            // Placeholders left from `init-config`.
            let strings: Vec<&toml_edit::Formatted<String>> = match item {
                Item::Value(Value::String(s)) => vec![s],
                Item::Value(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| {
                        if let Value::String(s) = v {
                            Some(s)
                        } else {
                            None
                        }
                    })
                    .collect(),
                _ => vec![],
            };
            for s in strings {
                if is_placeholder(s.value()) {
                    let help = if s.value().contains(" - required") {
                        format!("replace it with a real value, for example {}", spec.example)
                    } else {
                        format!(
                            "set a value (for example {}) or delete the line to use the default",
                            spec.example
                        )
                    };
                    return Err(self
                        .err(
                            s.span(),
                            format!("`{full}` still holds the template placeholder"),
                        )
                        .label("placeholder from `daft init-config`")
                        .help(help));
                }
            }
            match item {
                // (A sweep is checked by its own loader, with the same located errors.)
                _ if spec.ty == Ty::Sweep => {}
                Item::Table(t) => {
                    let mut p = path.to_vec();
                    p.push(key);
                    self.check_shape(t, &p)?;
                }
                Item::Value(Value::InlineTable(t)) => {
                    let mut p = path.to_vec();
                    p.push(key);
                    self.check_shape(&t.clone().into_table(), &p)?;
                }
                _ => {}
            }
        }
        // Required keys.
        for spec in known.iter().filter(|k| k.required) {
            if !table.contains_key(spec.name) {
                let (span, title) = if here.is_empty() {
                    (
                        Some(0..0),
                        format!("the config has no [{}] table", spec.name),
                    )
                } else {
                    (
                        table.span().or(Some(0..0)),
                        format!("[{here}] is missing the required key `{}`", spec.name),
                    )
                };
                let help = if spec.ty == Ty::Table {
                    format!(
                        "add a {} table; `daft init-config` writes a complete example",
                        spec.example
                    )
                } else {
                    format!("add `{} = {}`", spec.name, spec.example)
                };
                return Err(self.err(span, title).label("required").help(help));
            }
        }
        Ok(())
    }

    pub(crate) fn value_span(&self, doc: &Document<String>, path: &[&str]) -> Option<Range<usize>> {
        let mut item = doc.as_item();
        for p in path {
            item = item.get(p)?;
        }
        item_span(item)
    }

    /// The span of entry `i` of the list at `path`.
    pub(crate) fn element_span(
        &self,
        doc: &Document<String>,
        path: &[&str],
        i: usize,
    ) -> Option<Range<usize>> {
        let mut item = doc.as_item();
        for p in path {
            item = item.get(p)?;
        }
        item.as_array()?.get(i)?.span()
    }

    fn key_span(&self, doc: &Document<String>, path: &[&str]) -> Option<Range<usize>> {
        let (last, parents) = path.split_last()?;
        let mut item = doc.as_item();
        for p in parents {
            item = item.get(p)?;
        }
        match item {
            Item::Table(t) => self.doc_key_span(t, last),
            Item::Value(Value::InlineTable(t)) => t.key(last).and_then(|k| k.span()),
            _ => None,
        }
    }

    /// Pass 3: values that have the right type but the wrong meaning.
    fn check_meaning(
        &self,
        doc: &Document<String>,
        f: ConfigFile,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let mut s = f.setup;
        let f_slurm_presets = f.slurm.clone().map(|t| t.presets).unwrap_or_default();
        let v = |p: &[&str]| self.value_span(doc, p);
        if v(&["setup", "ssh_user"]).is_none() {
            s.ssh_user = default_ssh_user_for(s.provider);
        }

        // name
        let name = s.name.trim().to_string();
        if name.is_empty() {
            return Err(self
                .err(v(&["setup", "name"]), "`setup.name` is empty")
                .label("empty name")
                .help("name the cluster, for example name = \"my-cluster\""));
        }
        if name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || !name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            return Err(self
                .err(v(&["setup", "name"]), format!("`setup.name` = {name:?} is not a valid cluster name"))
                .label("letters, digits, '-' and '_' only")
                .help("use at most 63 letters, digits, '-' or '_', starting with a letter or digit (it becomes a tag and a directory name)"));
        }

        // number_of_workers
        if s.number_of_workers < 0 || s.number_of_workers > MAX_WORKERS {
            return Err(self
                .err(v(&["setup", "number_of_workers"]), format!(
                    "`setup.number_of_workers` = {} is out of range",
                    s.number_of_workers
                ))
                .label(format!("must be between 0 and {MAX_WORKERS}"))
                .help("set the number of worker nodes besides the head, for example number_of_workers = 2"));
        }
        // Slurm: the head alone in its allocation unless workers are asked for.
        let number_of_workers =
            if s.provider == ProviderKind::Slurm && v(&["setup", "number_of_workers"]).is_none() {
                0
            } else {
                s.number_of_workers as u32
            };

        // region
        if !is_region(&s.region) {
            return Err(self
                .err(
                    v(&["setup", "region"]),
                    format!("`setup.region` = {:?} is not an AWS region name", s.region),
                )
                .label("expected a name like us-west-2")
                .help("use a region code such as us-west-2, eu-central-1 or ap-southeast-1"));
        }
        if s.ssh_user.trim().is_empty() || s.ssh_user.contains(char::is_whitespace) {
            return Err(self
                .err(
                    v(&["setup", "ssh_user"]),
                    "`setup.ssh_user` must be a user name without spaces",
                )
                .label("invalid user name")
                .help("for Amazon Linux use ssh_user = \"ec2-user\", for Ubuntu \"ubuntu\""));
        }
        if s.instance_type.trim().is_empty() || !s.instance_type.contains('.') {
            return Err(self
                .err(
                    v(&["setup", "instance_type"]),
                    format!(
                        "`setup.instance_type` = {:?} is not an EC2 instance type",
                        s.instance_type
                    ),
                )
                .label("expected family.size")
                .help("use an instance type such as m7g.medium or t3.large"));
        }
        if let Some(img) = &s.image_id {
            if !img.starts_with("ami-") || img.len() < 12 {
                return Err(self
                    .err(v(&["setup", "image_id"]), format!("`setup.image_id` = {img:?} is not an AMI id"))
                    .label("expected ami-…")
                    .help("give an AMI id such as ami-0123456789abcdef0, or delete the line to let daft pick a current Amazon Linux image"));
            }
        }
        for (key, val, example) in [
            ("python_version", &s.python_version, "\"3.11\""),
            ("ray_version", &s.ray_version, "\"2.40.0\""),
        ] {
            if let Some(val) = val {
                let ok = !val.is_empty()
                    && val
                        .split('.')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
                if !ok {
                    return Err(self
                        .err(v(&["setup", key]), format!("`setup.{key}` = {val:?} is not a version number"))
                        .label("expected digits and dots")
                        .help(format!("write a version like {key} = {example}, or delete the line for the default")));
                }
            }
        }
        for (i, dep) in s.dependencies.iter().enumerate() {
            if dep.trim().is_empty() || dep.trim_start().starts_with('-') {
                let span = self.element_span(doc, &["setup", "dependencies"], i);
                return Err(self
                    .err(span, format!("`setup.dependencies` entry {:?} is not a requirement", dep))
                    .label("expected a pip requirement")
                    .help("list pip requirements such as \"numpy>=1.26\" or \"pandas\" (no pip options)"));
            }
        }
        for (i, name) in f.run.env_from_local.iter().enumerate() {
            if !is_env_name(name) {
                let span = self.element_span(doc, &["run", "env_from_local"], i);
                return Err(self
                    .err(span, format!("`run.env_from_local` entry {name:?} is not an environment variable name"))
                    .label("expected letters, digits and _, not starting with a digit")
                    .help("list the names of variables set on this machine, for example env_from_local = [\"WANDB_API_KEY\"]"));
            }
        }
        for (i, cmd) in f.run.setup_commands.iter().enumerate() {
            if cmd.trim().is_empty() {
                let span = self.element_span(doc, &["run", "setup_commands"], i);
                return Err(self
                    .err(span, "`run.setup_commands` has an empty command")
                    .label("empty")
                    .help("remove the empty entry"));
            }
        }

        // Values that reach a shell on the nodes: no control characters (a newline could end a
        // quoted block and run the rest as commands). Setup commands are shell code: newlines
        // and tabs are allowed there, nothing else.
        let mut shell_values: Vec<(Option<Range<usize>>, String, &str, bool)> = vec![
            (
                v(&["setup", "ssh_user"]),
                "setup.ssh_user".into(),
                s.ssh_user.as_str(),
                false,
            ),
            (
                v(&["setup", "instance_type"]),
                "setup.instance_type".into(),
                s.instance_type.as_str(),
                false,
            ),
        ];
        for (key, val) in [
            ("ssh_private_key", &s.ssh_private_key),
            ("image_id", &s.image_id),
            ("python_version", &s.python_version),
            ("ray_version", &s.ray_version),
        ] {
            if let Some(val) = val {
                shell_values.push((
                    v(&["setup", key]),
                    format!("setup.{key}"),
                    val.as_str(),
                    false,
                ));
            }
        }
        for (i, dep) in s.dependencies.iter().enumerate() {
            shell_values.push((
                self.element_span(doc, &["setup", "dependencies"], i),
                "setup.dependencies".into(),
                dep.as_str(),
                false,
            ));
        }
        for (i, cmd) in f.run.setup_commands.iter().enumerate() {
            shell_values.push((
                self.element_span(doc, &["run", "setup_commands"], i),
                "run.setup_commands".into(),
                cmd.as_str(),
                true,
            ));
        }
        if let Some(a) = &s.aws {
            if let Some(k) = &a.key_name {
                shell_values.push((
                    v(&["setup", "aws", "key_name"]),
                    "setup.aws.key_name".into(),
                    k.as_str(),
                    false,
                ));
            }
        }
        for (span, key, val, code) in shell_values {
            if let Some(c) = val
                .chars()
                .find(|c| c.is_control() && !(code && (*c == '\n' || *c == '\t')))
            {
                let what = match c {
                    '\n' => "a line break".to_string(),
                    '\r' => "a carriage return".to_string(),
                    '\t' => "a tab".to_string(),
                    c => format!("the control character U+{:04X}", c as u32),
                };
                return Err(self
                    .err(span, format!("`{key}` contains {what}"))
                    .label("control characters are not allowed here")
                    .help(if key == "setup.dependencies" {
                        "write one requirement per list entry, each on one line, for example dependencies = [\"numpy\", \"pandas>=2\"]".to_string()
                    } else {
                        format!("write `{key}` on one line, without control characters")
                    }));
            }
        }
        if !s
            .ssh_user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(self
                .err(
                    v(&["setup", "ssh_user"]),
                    format!("`setup.ssh_user` = {:?} is not a user name", s.ssh_user),
                )
                .label("letters, digits, '.', '_' and '-' only")
                .help("for Amazon Linux use ssh_user = \"ec2-user\", for Ubuntu \"ubuntu\""));
        }
        let command_timeout = match &s.command_timeout {
            None => DEFAULT_COMMAND_TIMEOUT,
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => d,
                _ => {
                    return Err(self
                        .err(v(&["setup", "command_timeout"]), format!("`setup.command_timeout` = {t:?} is not a duration"))
                        .label("expected a duration such as \"30m\" or \"90s\"")
                        .help("give how long one remote set-up step may take, for example command_timeout = \"45m\" (at least 1s)"));
                }
            },
        };
        if !(1..=1000).contains(&s.max_parallel) {
            return Err(self
                .err(v(&["setup", "max_parallel"]), format!("`setup.max_parallel` = {} is out of range", s.max_parallel))
                .label("must be between 1 and 1000")
                .help(format!("set how many nodes daft sets up at once, for example max_parallel = {DEFAULT_MAX_PARALLEL}")));
        }

        // ssh_private_key
        let ssh_key_span = v(&["setup", "ssh_private_key"]);
        let ssh_private_key = match &s.ssh_private_key {
            None => None,
            Some(raw) => {
                let expanded = shellexpand::full(raw).map_err(|e| {
                    self.err(
                        ssh_key_span.clone(),
                        format!("`setup.ssh_private_key` cannot be expanded: {e}"),
                    )
                    .label("bad path")
                    .help("use an absolute path, a path relative to the config file, or ~/…")
                })?;
                let p = PathBuf::from(expanded.as_ref());
                let p = if p.is_relative() { base.join(p) } else { p };
                if let Err(e) = crate::keys::check_private_key_file(&p) {
                    return Err(self
                        .err(
                            ssh_key_span.clone(),
                            format!("`setup.ssh_private_key`: {}", e.title),
                        )
                        .label(e.label)
                        .help(e.help));
                }
                Some(p)
            }
        };

        // provider sections
        let sections = [
            ("ssh", s.ssh.is_some(), ProviderKind::Ssh),
            ("local", s.local.is_some(), ProviderKind::Local),
            ("aws", s.aws.is_some(), ProviderKind::Aws),
            ("slurm", s.slurm.is_some(), ProviderKind::Slurm),
            (
                "kubernetes",
                s.kubernetes.is_some(),
                ProviderKind::Kubernetes,
            ),
        ];
        for (sec, present, kind) in sections {
            if present && kind != s.provider {
                return Err(self
                    .err(
                        self.key_span(doc, &["setup", sec])
                            .or_else(|| v(&["setup", sec])),
                        format!(
                            "[setup.{sec}] does not match provider = \"{}\"",
                            s.provider.as_str()
                        ),
                    )
                    .label(format!("only read when provider = \"{sec}\""))
                    .help(format!(
                        "set provider = \"{sec}\" to use these settings, or remove [setup.{sec}]"
                    )));
            }
        }
        let ssh = match (&s.ssh, s.provider) {
            (None, ProviderKind::Ssh) => {
                return Err(self
                    .err(v(&["setup", "provider"]), "provider = \"ssh\" needs a [setup.ssh] table with the hosts")
                    .label("no [setup.ssh] in this file")
                    .help("add\n[setup.ssh]\nhead = \"10.0.0.1\"\nworkers = [\"10.0.0.2\", \"10.0.0.3:2222\"]"));
            }
            (Some(h), _) => {
                let head =
                    self.parse_host(&h.head, v(&["setup", "ssh", "head"]), "setup.ssh.head")?;
                let mut seen = HashSet::from([head.clone()]);
                let mut workers = Vec::new();
                for (i, w) in h.workers.iter().enumerate() {
                    let span = self.element_span(doc, &["setup", "ssh", "workers"], i);
                    let addr = self.parse_host(w, span.clone(), "setup.ssh.workers")?;
                    if !seen.insert(addr.clone()) {
                        return Err(self
                            .err(span, format!("host {addr} appears twice in [setup.ssh]"))
                            .label("duplicate host")
                            .help("list each machine once; the head is not also a worker"));
                    }
                    workers.push(addr);
                }
                Some(SshHosts { head, workers })
            }
            (None, _) => None,
        };
        let local = match &s.local {
            None => LocalSetup::default(),
            Some(l) => {
                let address: IpAddr = l.address.parse().map_err(|_| {
                    self.err(
                        v(&["setup", "local", "address"]),
                        format!(
                            "`setup.local.address` = {:?} is not an IP address",
                            l.address
                        ),
                    )
                    .label("expected an IP address")
                    .help("remove `address`: the local cluster listens on 127.0.0.1")
                })?;
                // Ray keeps every server on loopback only when its node address is 127.0.0.1
                // itself; at any other address its GCS and raylets listen on all interfaces.
                if address != IpAddr::from([127, 0, 0, 1]) {
                    let why = if address.is_loopback() {
                        "Ray listens on loopback only at 127.0.0.1; at any other address its \
                         GCS and raylets listen on every interface"
                    } else {
                        "the local cluster only listens on loopback"
                    };
                    return Err(self
                        .err(
                            v(&["setup", "local", "address"]),
                            format!("`setup.local.address` = {address} is not 127.0.0.1"),
                        )
                        .label(why)
                        .help("remove `address` (or set it to \"127.0.0.1\"); separate local clusters use separate `ray_port` and `dashboard_port`"));
                }
                let port = |key: &str, val: i64| -> Result<u16, ConfigError> {
                    u16::try_from(val)
                        .ok()
                        .filter(|p| *p >= 1024)
                        .ok_or_else(|| {
                            self.err(
                                v(&["setup", "local", key]),
                                format!("`setup.local.{key}` = {val} is not a usable port"),
                            )
                            .label("expected 1024..=65535")
                            .help(format!("pick a free port between 1024 and 65535 for {key}"))
                        })
                };
                let ray_port = port("ray_port", l.ray_port)?;
                let dashboard_port = port("dashboard_port", l.dashboard_port)?;
                if ray_port == dashboard_port {
                    return Err(self
                        .err(
                            v(&["setup", "local", "dashboard_port"]),
                            "`setup.local.dashboard_port` is the same as `ray_port`",
                        )
                        .label("port already used by ray_port")
                        .help("give the dashboard and the Ray head different ports"));
                }
                LocalSetup {
                    address,
                    ray_port,
                    dashboard_port,
                }
            }
        };
        let aws = match &s.aws {
            None => AwsSetup::default(),
            Some(a) => {
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
                            .err(span, "`setup.aws.ssh_ingress_cidrs` would open SSH to the whole internet")
                            .label("0.0.0.0/0 is refused")
                            .help("list the networks you connect from, such as \"203.0.113.0/24\""));
                    }
                }
                AwsSetup {
                    key_name: a.key_name.clone(),
                    ssh_ingress_cidrs: a.ssh_ingress_cidrs.clone(),
                }
            }
        };

        // [setup.slurm]: values that become `#SBATCH` lines: one line each, flags as flags.
        let slurm = {
            let mut f = s.slurm.clone().unwrap_or_default();
            // A preset's settings, under the ones [setup.slurm] gives itself.
            if let Some(name) = &f.preset {
                let presets = &f_slurm_presets;
                let Some(p) = presets.get(name) else {
                    let known: Vec<String> = presets.keys().map(|k| format!("\"{k}\"")).collect();
                    return Err(self
                        .err(
                            v(&["setup", "slurm", "preset"]),
                            format!("`setup.slurm.preset` = {name:?} is not defined"),
                        )
                        .label("no [slurm.presets] table of this name")
                        .help(if known.is_empty() {
                            format!("define it: [slurm.presets.{name}] with partition, time, …")
                        } else {
                            format!(
                                "use one of {}, or define [slurm.presets.{name}]",
                                known.join(", ")
                            )
                        }));
                };
                let p = p.clone();
                f.partition = f.partition.or(p.partition);
                f.account = f.account.or(p.account);
                f.time = f.time.or(p.time);
                f.qos = f.qos.or(p.qos);
                f.cpus_per_task = f.cpus_per_task.or(p.cpus_per_task);
                f.mem = f.mem.or(p.mem);
                f.gpus = f.gpus.or(p.gpus);
                f.constraint = f.constraint.or(p.constraint);
                f.node_ssh_port = f.node_ssh_port.or(p.node_ssh_port);
                f.node_access = f.node_access.or(p.node_access);
                if f.pre_commands.is_empty() {
                    f.pre_commands = p.pre_commands;
                }
                if f.extra_flags.is_empty() {
                    f.extra_flags = p.extra_flags;
                }
            }
            let login = match &f.login {
                None => None,
                Some(h) => Some(self.parse_host(
                    h,
                    v(&["setup", "slurm", "login"]),
                    "setup.slurm.login",
                )?),
            };
            let mut options = Vec::new();
            let strings = [
                ("partition", "--partition", &f.partition),
                ("account", "--account", &f.account),
                ("time", "--time", &f.time),
                ("qos", "--qos", &f.qos),
                ("mem", "--mem", &f.mem),
                ("gpus", "--gpus-per-node", &f.gpus),
                ("constraint", "--constraint", &f.constraint),
            ];
            for (key, flag, val) in strings {
                let Some(val) = val else { continue };
                if val.is_empty() || val.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(self
                        .err(
                            v(&["setup", "slurm", key]),
                            format!("`setup.slurm.{key}` = {val:?} is not one word"),
                        )
                        .label("spaces, line breaks and control characters are not allowed here")
                        .help(format!(
                            "give `{key}` as Slurm writes it, for example {}",
                            match key {
                                "time" => "\"1:00:00\"",
                                "mem" => "\"16G\"",
                                "gpus" => "\"1\" or \"a100:2\"",
                                _ => "\"debug\"",
                            }
                        )));
                }
                options.push((flag.to_string(), val.clone()));
            }
            if let Some(c) = f.cpus_per_task {
                if !(1..=4096).contains(&c) {
                    return Err(self
                        .err(
                            v(&["setup", "slurm", "cpus_per_task"]),
                            format!("`setup.slurm.cpus_per_task` = {c} is not a CPU count"),
                        )
                        .label("expected 1..=4096")
                        .help("write it like cpus_per_task = 4"));
                }
                options.push(("--cpus-per-task".into(), c.to_string()));
            }
            for (i, flag) in f.extra_flags.iter().enumerate() {
                let span = self.element_span(doc, &["setup", "slurm", "extra_flags"], i);
                if !flag.starts_with('-') || flag.chars().any(|c| c.is_control()) {
                    return Err(self
                        .err(span, format!("`setup.slurm.extra_flags` entry {flag:?} is not an sbatch flag"))
                        .label("expected --flag or --flag=value, on one line")
                        .help("write each flag as one entry, like extra_flags = [\"--exclusive\", \"--mail-type=END\"]"));
                }
            }
            let node_access = match f.node_access.as_deref() {
                None | Some("srun") => NodeAccess::Srun,
                Some("ssh") => NodeAccess::Ssh,
                Some(other) => {
                    return Err(self
                        .err(
                            v(&["setup", "slurm", "node_access"]),
                            format!("`setup.slurm.node_access` = {other:?} is not a way to reach the nodes"),
                        )
                        .label("expected \"srun\" or \"ssh\"")
                        .help("\"srun\" (the default) reaches the nodes through Slurm itself; \"ssh\" over SSH, where the site allows SSH into your allocation's nodes"))
                }
            };
            if node_access == NodeAccess::Srun && f.node_ssh_port.is_some() {
                return Err(self
                    .err(
                        v(&["setup", "slurm", "node_ssh_port"]),
                        "`setup.slurm.node_ssh_port` is for nodes reached over SSH",
                    )
                    .label("the nodes are reached through srun")
                    .help("add node_access = \"ssh\" to [setup.slurm] to reach them over SSH, or leave node_ssh_port out"));
            }
            let node_ssh_port = match f.node_ssh_port {
                None => 22,
                Some(p) => u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                    self.err(
                        v(&["setup", "slurm", "node_ssh_port"]),
                        format!("`setup.slurm.node_ssh_port` = {p} is not a port"),
                    )
                    .label("expected 1..=65535")
                    .help("the compute nodes' SSH port, usually 22")
                })?,
            };
            for (i, cmd) in f.pre_commands.iter().enumerate() {
                if cmd.trim().is_empty() || cmd.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(self
                        .err(self.element_span(doc, &["setup", "slurm", "pre_commands"], i), format!("`setup.slurm.pre_commands` entry {cmd:?} is not one line of shell"))
                        .label("empty, or holds a line break or control character")
                        .help("write one command per entry, like pre_commands = [\"module load cuda/12.2\"]"));
                }
            }
            SlurmSetup {
                login,
                options,
                extra_flags: f.extra_flags.clone(),
                node_access,
                node_ssh_port,
                pre_commands: f.pre_commands.clone(),
            }
        };
        let kubernetes = self.check_kubernetes(doc, &s, &name)?;
        // [run] sync: existing directories, each under a name of its own.
        let mut run = f.run.clone();
        let mut names = std::collections::BTreeSet::new();
        for (i, raw) in f.run.sync.iter().enumerate() {
            let span = self.element_span(doc, &["run", "sync"], i);
            let expanded = shellexpand::tilde(raw);
            let p = PathBuf::from(expanded.as_ref());
            let p = if p.is_relative() { base.join(p) } else { p };
            if !p.is_dir() {
                return Err(self
                    .err(span, format!("`run.sync` entry {raw:?} is not a directory"))
                    .label(format!("{} does not exist or is not a directory", p.display()))
                    .help("list directories to send with every job, relative to the config file (\"../shared-lib\")"));
            }
            let name = p
                .canonicalize()
                .ok()
                .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(self
                    .err(span, format!("`run.sync` entry {raw:?} has the same name ({name:?}) as another"))
                    .label("names must differ")
                    .help("jobs find each synced directory under its own name in $DAFT_SYNC_DIR: rename one"));
            }
            run.sync_dirs.push(p);
        }
        Ok(Config {
            path: PathBuf::from(self.file),
            display_path: self.file.to_string(),
            setup: Setup {
                name,
                provider: s.provider,
                region: s.region,
                ssh_user: s.ssh_user,
                ssh_private_key,
                number_of_workers,
                instance_type: s.instance_type,
                image_id: s.image_id,
                dependencies: s.dependencies,
                python_version: s.python_version,
                ray_version: s.ray_version,
                command_timeout,
                max_parallel: s.max_parallel as usize,
                ssh,
                local,
                aws,
                slurm,
                kubernetes,
            },
            run,
            source: self.source.to_string(),
            ssh_key_span,
        })
    }

    /// `[setup.kubernetes]`: names Kubernetes accepts, quantities, tolerations.
    fn check_kubernetes(
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

    fn parse_host(
        &self,
        raw: &str,
        span: Option<Range<usize>>,
        key: &str,
    ) -> Result<HostAddr, ConfigError> {
        parse_host(raw).map_err(|why| {
            self.err(span, format!("`{key}` entry {raw:?} is not a host address: {why}"))
                .label("expected host or host:port")
                .help("write a host name or IP address, optionally with :port, for example \"10.0.0.5\" or \"node1:2222\"")
        })
    }
}

/// Parse `host[:port]` (IPv6 as `[addr]:port`).
pub fn parse_host(raw: &str) -> Result<HostAddr, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("it is empty".into());
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or("missing ']'")?;
        (h.to_string(), tail.strip_prefix(':'))
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (raw.to_string(), None),
        }
    };
    if host.is_empty()
        || host.contains(char::is_whitespace)
        || host.contains('/')
        || host.contains('@')
    {
        return Err("the host name is not valid".into());
    }
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => n as u16,
            _ => return Err(format!("port {p:?} is not between 1 and 65535")),
        },
    };
    Ok(HostAddr { host, port })
}

fn is_region(s: &str) -> bool {
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

fn is_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|n| n <= 32)
}

/// The closest known name, if close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse() {
        assert_eq!(
            parse_host("a").unwrap(),
            HostAddr {
                host: "a".into(),
                port: 22
            }
        );
        assert_eq!(parse_host("10.0.0.1:2222").unwrap().port, 2222);
        assert_eq!(
            parse_host("[::1]:23").unwrap(),
            HostAddr {
                host: "::1".into(),
                port: 23
            }
        );
        assert!(parse_host("a:0").is_err());
        assert!(parse_host("a:70000").is_err());
        assert!(parse_host("").is_err());
    }

    #[test]
    fn placeholders() {
        assert!(is_placeholder("$NAME - required"));
        assert!(is_placeholder(
            "$DEPENDENCIES - optional, defaults to an empty list"
        ));
        assert!(!is_placeholder("$HOME/x"));
        assert!(!is_placeholder("my-cluster"));
    }

    #[test]
    fn regions() {
        assert!(is_region("us-west-2"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("uswest2"));
        assert!(!is_region("us-west"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("numer_of_workers", &["name", "number_of_workers"]),
            Some("number_of_workers")
        );
        assert_eq!(suggest("zzz", &["name", "number_of_workers"]), None);
    }
}
