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
}
