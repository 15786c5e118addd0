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
mod kubernetes;
pub mod launch;
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

impl Checker<'_> {
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
        let scaling = self.check_scaling(doc, &s, number_of_workers)?;
        let autostop = self.check_autostop(doc, &s)?;
        let number_of_workers = scaling.min_workers;

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
        // The provider's own section (another provider's was refused above).
        let provider = match s.provider {
            ProviderKind::Local => ProviderSetup::Local(self.check_local(doc, &s)?),
            ProviderKind::Ssh => ProviderSetup::Ssh(self.check_ssh(doc, &s)?),
            ProviderKind::Aws => ProviderSetup::Aws(self.check_aws(doc, &s)?),
            // [setup.slurm]: values that become `#SBATCH` lines: one line each, flags as flags.
            ProviderKind::Slurm => {
                ProviderSetup::Slurm(self.check_slurm(doc, &s, &f_slurm_presets)?)
            }
            ProviderKind::Kubernetes => {
                ProviderSetup::Kubernetes(self.check_kubernetes(doc, &s, &name)?)
            }
        };
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
                ssh_user: s.ssh_user,
                ssh_private_key,
                number_of_workers,
                scaling,
                autostop,
                dependencies: s.dependencies,
                python_version: s.python_version,
                ray_version: s.ray_version,
                command_timeout,
                max_parallel: s.max_parallel as usize,
                provider,
            },
            run,
            source: self.source.to_string(),
            ssh_key_span,
        })
    }
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
