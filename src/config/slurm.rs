//! `[setup.slurm]` and `[slurm.presets.*]`: where and how the allocation is asked for, and how
//! its nodes are reached.

use super::*;

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
    /// `setup.ssh_user` is in the file (else `~/.ssh/config`'s `User` may name the login's).
    pub user_given: bool,
}

impl Checker<'_> {
    /// `[setup.slurm]` with its preset: values that become `#SBATCH` lines (one line each, flags
    /// as flags), the login node, how the nodes are reached.
    pub(super) fn check_slurm(
        &self,
        doc: &Document<String>,
        s: &SetupFile,
        f_slurm_presets: &BTreeMap<String, SlurmFile>,
    ) -> Result<SlurmSetup, ConfigError> {
        let v = |p: &[&str]| self.value_span(doc, p);
        let mut f = s.slurm.clone().unwrap_or_default();
        // A preset's settings, under the ones [setup.slurm] gives itself.
        if let Some(name) = &f.preset {
            let presets = f_slurm_presets;
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
            Some(h) => {
                Some(self.parse_host(h, v(&["setup", "slurm", "login"]), "setup.slurm.login")?)
            }
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
        Ok(SlurmSetup {
            login,
            options,
            extra_flags: f.extra_flags.clone(),
            node_access,
            node_ssh_port,
            pre_commands: f.pre_commands.clone(),
            user_given: v(&["setup", "ssh_user"]).is_some(),
        })
    }
}

impl SlurmSetup {
    /// Whether `[setup.slurm]` sets `key` (its sbatch option is in the allocation's request).
    pub fn key_given(&self, key: &str) -> bool {
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
        self.options.iter().any(|(f, _)| f == flag)
    }
}
