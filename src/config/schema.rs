//! Every key `.daft.toml` accepts: its table, type, whether it is required, and an example.
//! The shape check, the "did you mean" suggestions and the README reference all read this list.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Table,
    Str,
    Int,
    Bool,
    /// An integer or a float.
    Num,
    StrList,
    /// A table of any keys whose values are strings (`[run.env]`).
    StrMap,
    /// Named tables of `[setup.slurm]` settings (`[slurm.presets.NAME]`).
    Presets,
    /// A `[sweep]` table, checked by the sweep loader (`src/sweep.rs`).
    Sweep,
    /// A list of tables (`[[setup.aws.worker_groups]]`), each checked against the keys listed
    /// under its path.
    Tables,
    /// A table of any keys whose values are numbers (a group's Ray `resources`).
    NumMap,
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

pub(crate) const fn k(
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
    k("setup", "min_workers", Ty::Int, false, "0"),
    k("setup", "max_workers", Ty::Int, false, "8"),
    k("setup", "idle_timeout", Ty::Str, false, "\"5m\""),
    k("setup", "upscaling_speed", Ty::Num, false, "1.0"),
    k("setup", "autostop", Ty::Str, false, "\"30m\""),
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
        "setup",
        "kubernetes",
        Ty::Table,
        false,
        "[setup.kubernetes]",
    ),
    k("setup.kubernetes", "context", Ty::Str, false, "\"my-eks\""),
    k("setup.kubernetes", "namespace", Ty::Str, false, "\"ray\""),
    k(
        "setup.kubernetes",
        "image",
        Ty::Str,
        false,
        "\"rayproject/ray:2.60.0-py311\"",
    ),
    k(
        "setup.kubernetes",
        "existing",
        Ty::Str,
        false,
        "\"raycluster-kuberay\"",
    ),
    k("setup.kubernetes", "head_cpu", Ty::Str, false, "\"2\""),
    k("setup.kubernetes", "head_memory", Ty::Str, false, "\"8Gi\""),
    k("setup.kubernetes", "worker_cpu", Ty::Str, false, "\"4\""),
    k(
        "setup.kubernetes",
        "worker_memory",
        Ty::Str,
        false,
        "\"16Gi\"",
    ),
    k("setup.kubernetes", "worker_gpus", Ty::Int, false, "1"),
    k(
        "setup.kubernetes",
        "node_selector",
        Ty::StrMap,
        false,
        "{ \"node.kubernetes.io/instance-type\" = \"g5.xlarge\" }",
    ),
    k(
        "setup.kubernetes",
        "tolerations",
        Ty::StrList,
        false,
        "[\"nvidia.com/gpu:NoSchedule\"]",
    ),
    k(
        "setup.kubernetes",
        "service_account",
        Ty::Str,
        false,
        "\"ray\"",
    ),
    k(
        "setup.kubernetes",
        "image_pull_secrets",
        Ty::StrList,
        false,
        "[\"registry-creds\"]",
    ),
    k(
        "setup.kubernetes",
        "ready_timeout",
        Ty::Str,
        false,
        "\"10m\"",
    ),
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
    k("setup.slurm", "node_access", Ty::Str, false, "\"srun\""),
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
    k("setup.aws", "root_volume_gb", Ty::Int, false, "100"),
    k("setup.aws", "max_hourly_cost", Ty::Num, false, "5.0"),
    k(
        "setup.aws",
        "subnet_ids",
        Ty::StrList,
        false,
        "[\"subnet-0123456789abcdef0\"]",
    ),
    k(
        "setup.aws",
        "security_group_ids",
        Ty::StrList,
        false,
        "[\"sg-0123456789abcdef0\"]",
    ),
    k(
        "setup.aws",
        "zones",
        Ty::StrList,
        false,
        "[\"us-west-2a\", \"us-west-2b\"]",
    ),
    k(
        "setup.aws",
        "iam_instance_profile",
        Ty::Str,
        false,
        "\"ray-nodes\"",
    ),
    k(
        "setup.aws",
        "ssh_ingress_cidrs",
        Ty::StrList,
        false,
        "[\"203.0.113.7/32\"]",
    ),
    k(
        "setup.aws",
        "worker_groups",
        Ty::Tables,
        false,
        "[[setup.aws.worker_groups]]",
    ),
    k("setup.aws.worker_groups", "name", Ty::Str, true, "\"gpu\""),
    k(
        "setup.aws.worker_groups",
        "instance_types",
        Ty::StrList,
        true,
        "[\"g5.xlarge\", \"g6.xlarge\"]",
    ),
    k("setup.aws.worker_groups", "workers", Ty::Int, false, "2"),
    k(
        "setup.aws.worker_groups",
        "image_id",
        Ty::Str,
        false,
        "\"ami-0123456789abcdef0\"",
    ),
    k(
        "setup.aws.worker_groups",
        "iam_instance_profile",
        Ty::Str,
        false,
        "\"ray-gpu-nodes\"",
    ),
    k(
        "setup.aws.worker_groups",
        "root_volume_gb",
        Ty::Int,
        false,
        "200",
    ),
    k("setup.aws.worker_groups", "num_gpus", Ty::Int, false, "1"),
    k(
        "setup.aws.worker_groups",
        "market",
        Ty::Str,
        false,
        "\"spot\"",
    ),
    k(
        "setup.aws.worker_groups",
        "spot_fallback",
        Ty::Bool,
        false,
        "true",
    ),
    k(
        "setup.aws.worker_groups",
        "resources",
        Ty::NumMap,
        false,
        "{ accelerator_a10g = 1 }",
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

/// Checks that the key list, the serde structs and the templates say the same thing: a key added
/// to one and not the others fails a test.
#[cfg(test)]
pub(crate) mod drift {
    use std::collections::BTreeSet;

    use super::Key;

    /// Keys of `.daft.toml` the `init-config` templates leave out (fine-tuning, documented in the
    /// README's configuration reference); every other key is in a template.
    pub const NOT_IN_TEMPLATES: &[&str] = &[
        "slurm",
        "slurm.presets",
        "setup.command_timeout",
        "setup.max_parallel",
        "setup.slurm.preset",
        "setup.slurm.qos",
        "setup.slurm.constraint",
        "setup.slurm.node_ssh_port",
        "setup.local.address",
        "run.sync",
    ];

    /// The dotted path of a key.
    pub fn path(k: &Key) -> String {
        if k.parent.is_empty() {
            k.name.to_string()
        } else {
            format!("{}.{}", k.parent, k.name)
        }
    }

    /// The fields serde reads for table `parent` are exactly the list's keys under it.
    pub fn same_fields(keys: &[Key], parent: &str, serde_fields: &[&str]) {
        let listed: BTreeSet<&str> = keys
            .iter()
            .filter(|k| k.parent == parent)
            .map(|k| k.name)
            .collect();
        let read: BTreeSet<&str> = serde_fields.iter().copied().collect();
        assert_eq!(
            listed, read,
            "[{parent}]: the key list (left) and the serde struct (right) differ"
        );
    }

    /// Every table the list names has its struct checked by `same_fields`.
    pub fn tables_checked(keys: &[Key], checked: &[&str]) {
        use super::Ty;
        let tables: BTreeSet<String> = std::iter::once(String::new())
            .chain(
                keys.iter()
                    .filter(|k| matches!(k.ty, Ty::Table | Ty::Tables))
                    .map(path),
            )
            .collect();
        let checked: BTreeSet<String> = checked.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            tables, checked,
            "a table of the key list has no serde check"
        );
    }

    /// The dotted paths a template shows, written or commented out (`# key = …`), and its tables.
    pub fn template_keys(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut table = String::new();
        for line in text.lines() {
            let l = line.trim();
            // A table header, written or commented out (`# [[setup.aws.worker_groups]]`).
            let header = l.trim_start_matches('#').trim_start();
            if let Some(t) = header
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .filter(|t| !t.contains(' ') || t.starts_with('['))
            {
                // (`[[a.b]]`, a list of tables, names its table as `[a.b]` does.)
                let t = t
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .unwrap_or(t);
                table = t.trim().to_string();
                out.insert(table.clone());
                continue;
            }
            let l = l.trim_start_matches('#').trim_start();
            let Some((key, _)) = l.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            out.insert(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
        out
    }
}
