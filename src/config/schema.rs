//! Every key `.daft.toml` accepts: its table, type, whether it is required, and an example.
//! The shape check, the "did you mean" suggestions and the README reference all read this list.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Table,
    Str,
    Int,
    StrList,
    /// A table of any keys whose values are strings (`[run.env]`).
    StrMap,
    /// Named tables of `[setup.slurm]` settings (`[slurm.presets.NAME]`).
    Presets,
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted path of the enclosing table ("" for the top level).
    pub parent: &'static str,
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// A valid value, as TOML.
    pub example: &'static str,
}

const fn k(
    parent: &'static str,
    name: &'static str,
    ty: Ty,
    required: bool,
    example: &'static str,
) -> Key {
    Key {
        parent,
        name,
        ty,
        required,
        example,
    }
}

pub const KEYS: &[Key] = &[
    k("", "setup", Ty::Table, true, "[setup]"),
    k("", "run", Ty::Table, false, "[run]"),
    k("", "slurm", Ty::Table, false, "[slurm]"),
    k(
        "slurm",
        "presets",
        Ty::Presets,
        false,
        "[slurm.presets.gpu]",
    ),
    k("setup", "name", Ty::Str, true, "\"my-cluster\""),
    k("setup", "provider", Ty::Str, false, "\"aws\""),
    k("setup", "region", Ty::Str, false, "\"us-west-2\""),
    k("setup", "ssh_user", Ty::Str, false, "\"ec2-user\""),
    k(
        "setup",
        "ssh_private_key",
        Ty::Str,
        false,
        "\"~/.ssh/id_ed25519\"",
    ),
    k("setup", "number_of_workers", Ty::Int, false, "2"),
    k("setup", "instance_type", Ty::Str, false, "\"m7g.medium\""),
    k(
        "setup",
        "image_id",
        Ty::Str,
        false,
        "\"ami-0123456789abcdef0\"",
    ),
    k(
        "setup",
        "dependencies",
        Ty::StrList,
        false,
        "[\"numpy\", \"pandas>=2\"]",
    ),
    k("setup", "python_version", Ty::Str, false, "\"3.11\""),
    k("setup", "ray_version", Ty::Str, false, "\"2.40.0\""),
    k("setup", "command_timeout", Ty::Str, false, "\"30m\""),
    k("setup", "max_parallel", Ty::Int, false, "32"),
    k("setup", "ssh", Ty::Table, false, "[setup.ssh]"),
    k("setup", "local", Ty::Table, false, "[setup.local]"),
    k("setup", "aws", Ty::Table, false, "[setup.aws]"),
    k("setup", "slurm", Ty::Table, false, "[setup.slurm]"),
    k(
        "setup.slurm",
        "login",
        Ty::Str,
        false,
        "\"login.cluster.org\"",
    ),
    k("setup.slurm", "preset", Ty::Str, false, "\"gpu\""),
    k(
        "setup.slurm",
        "pre_commands",
        Ty::StrList,
        false,
        "[\"module load cuda/12.2\"]",
    ),
    k("setup.slurm", "partition", Ty::Str, false, "\"gpu\""),
    k("setup.slurm", "account", Ty::Str, false, "\"my-lab\""),
    k("setup.slurm", "time", Ty::Str, false, "\"4:00:00\""),
    k("setup.slurm", "qos", Ty::Str, false, "\"normal\""),
    k("setup.slurm", "cpus_per_task", Ty::Int, false, "8"),
    k("setup.slurm", "mem", Ty::Str, false, "\"32G\""),
    k("setup.slurm", "gpus", Ty::Str, false, "\"1\""),
    k("setup.slurm", "constraint", Ty::Str, false, "\"a100\""),
    k(
        "setup.slurm",
        "extra_flags",
        Ty::StrList,
        false,
        "[\"--exclusive\"]",
    ),
    k("setup.slurm", "node_ssh_port", Ty::Int, false, "22"),
    k("setup.ssh", "head", Ty::Str, true, "\"10.0.0.1\""),
    k(
        "setup.ssh",
        "workers",
        Ty::StrList,
        false,
        "[\"10.0.0.2\", \"10.0.0.3:2222\"]",
    ),
    k("setup.local", "address", Ty::Str, false, "\"127.0.0.1\""),
    k("setup.local", "ray_port", Ty::Int, false, "6379"),
    k("setup.local", "dashboard_port", Ty::Int, false, "8265"),
    k("setup.aws", "key_name", Ty::Str, false, "\"my-keypair\""),
    k(
        "setup.aws",
        "ssh_ingress_cidrs",
        Ty::StrList,
        false,
        "[\"203.0.113.7/32\"]",
    ),
    k(
        "run",
        "setup_commands",
        Ty::StrList,
        false,
        "['echo \"Hello, World!\"']",
    ),
    k("run", "command", Ty::Str, false, "\"python main.py\""),
    k(
        "run",
        "env",
        Ty::StrMap,
        false,
        "{ WANDB_PROJECT = \"demo\" }",
    ),
    k(
        "run",
        "env_from_local",
        Ty::StrList,
        false,
        "[\"WANDB_API_KEY\"]",
    ),
    k("run", "sync", Ty::StrList, false, "[\"../shared-lib\"]"),
];
