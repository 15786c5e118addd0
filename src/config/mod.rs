//! The `.daft.toml` schema and its strict, helpful loader.
//!
//! Loading happens in three passes over a span-preserving TOML document:
//! 1. shape: every table and key is known (else "did you mean"), every value has the right type,
//!    no template placeholder is left;
//! 2. serde turns the document into the typed [`ConfigFile`];
//! 3. meaning: ranges, names, host addresses, key files, provider sections.
//!
//! Every error names the file, line and column and says what to do.

mod aws;
mod check;
mod hosts;
pub mod json_schema;
mod kubernetes;
pub mod launch;
mod meaning;
mod scaling;
mod schema;
mod slurm;

pub use aws::*;
pub use check::*;
pub use hosts::*;
pub use kubernetes::*;
pub use scaling::*;
pub use slurm::*;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml_edit::{Document, Item, Value};

use crate::cost::Market;
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
    #[serde(default)]
    pub min_workers: Option<i64>,
    #[serde(default)]
    pub max_workers: Option<i64>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub upscaling_speed: Option<f64>,
    #[serde(default)]
    pub autostop: Option<String>,
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

/// The validated setup, ready for the providers.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub name: String,
    pub ssh_user: String,
    pub ssh_private_key: Option<PathBuf>,
    /// The workers `up` starts: the fixed count, or the autoscaler's minimum.
    pub number_of_workers: u32,
    /// Fixed, or the range Ray's autoscaler moves within.
    pub scaling: Scaling,
    /// Idle this long, the cluster takes itself down (None: never).
    pub autostop: Option<std::time::Duration>,
    pub dependencies: Vec<String>,
    pub python_version: Option<String>,
    pub ray_version: Option<String>,
    /// The time limit of each remote set-up command.
    pub command_timeout: std::time::Duration,
    /// Nodes set up or stopped at once.
    pub max_parallel: usize,
    /// The back-end and its own settings.
    pub provider: ProviderSetup,
}

/// The back-end a config names, with its own section's settings (and only its own: a provider
/// never sees another's keys, and no provider has to assume its section is there).
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderSetup {
    Local(LocalSetup),
    Ssh(SshHosts),
    Aws(AwsSetup),
    Slurm(SlurmSetup),
    Kubernetes(KubernetesSetup),
}

impl ProviderSetup {
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderSetup::Local(_) => ProviderKind::Local,
            ProviderSetup::Ssh(_) => ProviderKind::Ssh,
            ProviderSetup::Aws(_) => ProviderKind::Aws,
            ProviderSetup::Slurm(_) => ProviderKind::Slurm,
            ProviderSetup::Kubernetes(_) => ProviderKind::Kubernetes,
        }
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

/// The key list and the serde structs cannot drift apart.
#[cfg(test)]
mod key_list_matches_serde;
#[cfg(test)]
pub(crate) use schema::drift;
