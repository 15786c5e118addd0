//! The key list and the serde structs cannot drift apart (the templates: `templates.rs`).

use serde_aux::serde_introspection::serde_introspect as fields;

use super::schema::drift::{same_fields, tables_checked};
use super::*;

#[test]
fn every_listed_key_is_read_by_serde_and_every_field_is_listed() {
    let checks: &[(&str, &[&str])] = &[
        ("", fields::<ConfigFile>()),
        ("slurm", fields::<SlurmTop>()),
        ("setup", fields::<SetupFile>()),
        ("run", fields::<Run>()),
        ("setup.ssh", fields::<SshHostsFile>()),
        ("setup.local", fields::<LocalFile>()),
        ("setup.aws", fields::<AwsFile>()),
        ("setup.aws.worker_groups", fields::<WorkerGroupFile>()),
        ("setup.slurm", fields::<SlurmFile>()),
        ("setup.kubernetes", fields::<KubernetesFile>()),
    ];
    for (parent, serde_fields) in checks {
        same_fields(KEYS, parent, serde_fields);
    }
    let checked: Vec<&str> = checks.iter().map(|(p, _)| *p).collect();
    tables_checked(KEYS, &checked);
}
