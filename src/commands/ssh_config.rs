//! `daft ssh-config`: `Host` entries for the cluster's nodes (`NAME`, `NAME-worker-N`) with the
//! address, user and key daft uses, checked against the host keys daft pinned (never
//! StrictHostKeyChecking=no), for `Include` in `~/.ssh/config`.

use std::path::{Path, PathBuf};

use crate::cli::SshConfigArgs;
use crate::error::usage;
use crate::printer::Printer;
use crate::provider::SshEntry;

pub async fn run(args: &SshConfigArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
    let provider = crate::provider::for_config(&cfg, key).await?;
    let entries = match provider.ssh_entries().await {
        Some(e) => e?,
        None => {
            return Err(usage(format!(
                "the nodes of provider = {:?} are not reached with plain ssh (this machine's \
                 processes, Slurm's job steps, Kubernetes' exec); use `daft submit` or the \
                 back-end's own tools",
                cfg.setup.provider.kind().as_str()
            )))
        }
    };
    let known = vec![
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".ssh/known_hosts"))
            .unwrap_or_else(|| PathBuf::from("~/.ssh/known_hosts")),
        crate::paths::daft_home().join("known_hosts"),
    ];
    crate::out!(
        pr,
        "{}",
        render(&cfg.setup.name, &provider.context(), &entries, &known)
    )?;
    if entries.is_empty() {
        crate::warn!(
            pr,
            "daft: cluster {:?} has no node to reach yet; run `daft up` first",
            cfg.setup.name
        );
    }
    Ok(())
}

/// A path as ssh_config(5) reads it: absolute, double-quoted when it has a space.
fn path_arg(p: &Path) -> String {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let s = p.display().to_string();
    if s.contains(' ') {
        format!("\"{s}\"")
    } else {
        s
    }
}

/// The entries as ssh_config(5) text: one `Host` block a node.
pub fn render(
    cluster: &str,
    context: &str,
    entries: &[SshEntry],
    known_hosts: &[PathBuf],
) -> String {
    let mut out = format!(
        "# daft: the nodes of cluster {cluster:?} ({context}), as `daft ssh-config` printed them.\n\
         # Include this file from ~/.ssh/config; host keys are the ones daft pinned.\n"
    );
    let known: Vec<String> = known_hosts.iter().map(|p| path_arg(p)).collect();
    for e in entries {
        let name = if e.name.is_empty() {
            cluster.to_string()
        } else {
            format!("{cluster}-{}", e.name)
        };
        out.push_str(&format!("\nHost {name}\n  HostName {}\n", e.host));
        if e.port != 22 {
            out.push_str(&format!("  Port {}\n", e.port));
        }
        out.push_str(&format!("  User {}\n", e.user));
        if let Some(k) = &e.key {
            out.push_str(&format!(
                "  IdentityFile {}\n  IdentitiesOnly yes\n",
                path_arg(k)
            ));
        }
        if let Some(a) = &e.host_key_alias {
            out.push_str(&format!("  HostKeyAlias {a}\n"));
        }
        out.push_str(&format!(
            "  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
            known.join(" ")
        ));
    }
    out
}
