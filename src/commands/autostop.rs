//! `daft autostop DURATION | --cancel`: arm, change or cancel the running cluster's autostop on
//! its head, without a restart (the head's watcher reads the setting at every check).

use crate::cli::AutostopArgs;
use crate::config::{can_autostop, parse_autostop};
use crate::error::usage;
use crate::printer::Printer;

pub async fn run(args: &AutostopArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let after = match &args.duration {
        Some(text) => Some(parse_autostop(text).ok_or_else(|| {
            usage(format!(
                "{text:?} is not a duration of at least 10s; give one such as 30m or 2h, or --cancel"
            ))
        })?),
        None => None,
    };
    let kind = cfg.setup.provider.kind();
    if !can_autostop(kind) {
        return Err(usage(format!(
            "autostop is not available with provider = {:?} yet (local, ssh, aws and slurm have it); run `daft down` when done",
            kind.as_str()
        )));
    }
    if matches!(&cfg.setup.provider, crate::config::ProviderSetup::Aws(a) if a.iam_instance_profile.is_none())
    {
        return Err(usage(
            "autostop on AWS needs `setup.aws.iam_instance_profile`: the head terminates the cluster with its instance's own credentials (the README has the role's policy); daft never copies yours to a node",
        ));
    }
    let key = super::ssh_key(&cfg, &args.key.identity);
    let (provider, head) = super::running_head(&cfg, key).await?;
    let t = provider.head_transport(&head).await?;
    let armed =
        match after {
            Some(d) => Some(provider.autostop(&head, &t.daft_home(), d).ok_or_else(|| {
                anyhow::anyhow!("this cluster's head cannot take it down by itself")
            })?),
            None => None,
        };
    crate::autostop::arm(t.as_ref(), &cfg.setup.name, armed.as_ref()).await?;
    match after {
        Some(d) => crate::outln!(pr,
            "Cluster {:?} takes itself down after {} with no job, task or actor (`daft list` shows how long it has been idle; `daft autostop --cancel` keeps it).",
            cfg.setup.name,
            humantime::format_duration(d)
        )?,
        None => crate::outln!(pr,
            "Cluster {:?}: autostop cancelled; it runs until `daft down` (the next `up` arms the config's `autostop` again, if it has one).",
            cfg.setup.name
        )?,
    }
    Ok(())
}
