//! `daft exec [--all | --workers | NODE] -- CMD`: one command on several nodes at once, over
//! each back-end's own path to them (the same connections and pinned host keys as every other
//! command); every line prefixed with its node; exit 1 when it failed anywhere.

use anyhow::anyhow;

use crate::cli::ExecArgs;
use crate::error::usage;
use crate::model::{ObservedNode, Role};
use crate::printer::Printer;

/// The command line to run: one word as it is (a shell line), several quoted one by one.
pub fn command_line(words: &[String]) -> String {
    match words {
        [one] => one.clone(),
        many => many
            .iter()
            .map(|w| crate::shell::shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

pub async fn run(args: &ExecArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
    let (provider, observed) = super::observe(&cfg, key).await?;
    let nodes = crate::model::named_nodes(&observed);
    if nodes.is_empty() {
        return Err(super::not_up(&cfg));
    }
    let targets: Vec<&(String, &ObservedNode)> = if args.all {
        nodes.iter().collect()
    } else if args.workers {
        nodes
            .iter()
            .filter(|(_, n)| n.role == Role::Worker)
            .collect()
    } else {
        let want = args.node.as_deref().unwrap_or("head");
        let found: Vec<_> = nodes
            .iter()
            .filter(|(name, n)| name == want || n.id == want)
            .collect();
        if found.is_empty() {
            let names: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
            return Err(usage(format!(
                "cluster {:?} has no running node {want:?}; its nodes: {}",
                cfg.setup.name,
                names.join(", ")
            )));
        }
        found
    };
    if targets.is_empty() {
        crate::outln!(pr, "Cluster {:?} has no running worker.", cfg.setup.name)?;
        return Ok(());
    }
    if !provider.reaches_every_node() && targets.iter().any(|(_, n)| n.role != Role::Head) {
        return Err(usage(format!(
            "daft reaches only the head of a {} cluster; run it there (`daft exec -- …`) or \
             through `daft submit`",
            cfg.setup.provider.kind().as_str()
        )));
    }
    let line = command_line(&args.command);
    let runs = futures::future::join_all(targets.iter().map(|(name, node)| {
        let (provider, line) = (provider.clone(), line.clone());
        async move {
            tracing::debug!(target: "daft::exec", node = %name, command = %line, "exec");
            let t = provider.head_transport(node).await?;
            t.capture(&line).await
        }
    }))
    .await;
    let mut failed = Vec::new();
    for ((name, _), run) in targets.iter().zip(runs) {
        match run {
            Ok(out) => {
                for l in out.stdout.lines() {
                    crate::outln!(pr, "[{name}] {l}")?;
                }
                for l in out.stderr.lines() {
                    crate::warn!(pr, "[{name}] {l}");
                }
                if out.status != 0 {
                    crate::warn!(pr, "[{name}] exit status {}", out.status);
                    failed.push(format!("{name} (exit status {})", out.status));
                }
            }
            Err(e) => {
                crate::warn!(pr, "[{name}] {e:#}");
                failed.push(format!("{name} (not reached)"));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "the command failed on {} of {} node(s): {}",
            failed.len(),
            targets.len(),
            failed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_is_a_shell_line_and_several_are_quoted() {
        assert_eq!(command_line(&["df -h | tail -1".into()]), "df -h | tail -1");
        assert_eq!(
            command_line(&["python".into(), "-c".into(), "print(1 + 1)".into()]),
            "python -c 'print(1 + 1)'"
        );
    }
}
