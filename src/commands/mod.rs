//! One module per command. `run` is the dispatcher; argument types live in `cli`.

pub mod autostop;
pub mod completions;
pub mod dashboard;
pub mod doctor;
pub mod down;
pub mod exec;
pub mod init_config;
pub mod jobs;
pub mod launch;
pub mod list;
pub mod plan;
pub mod schema;
pub mod ssh_config;
pub mod submit;
pub mod up;

use std::path::Path;
use std::sync::Arc;

use crate::cli::Command;
use crate::config::Config;
use crate::model::Observed;
use crate::printer::Printer;
use crate::provider::{self, Provider};

/// Run one command to completion, printing through `p` (made once, from the command line).
pub fn run(cmd: Command, pr: &Printer) -> anyhow::Result<()> {
    pr.install();
    // (The commands that only print or write a file need no runtime.)
    match &cmd {
        Command::InitConfig(args) => return init_config::run(args, pr),
        Command::Schema(args) => return schema::run(args, pr),
        Command::Completions(args) => return completions::run(args, pr),
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        crate::interrupt::install();
        match cmd {
            Command::InitConfig(_) | Command::Schema(_) | Command::Completions(_) => {
                unreachable!("handled above")
            }
            Command::Plan(a) => plan::run(&a, pr).await,
            Command::Up(a) => up::run(&a, pr).await,
            Command::Down(a) => down::run(&a, pr).await,
            Command::List(a) => list::run(&a, pr).await,
            Command::Submit(a) => submit::run(&a, pr).await,
            Command::Dashboard(a) => dashboard::run(&a, pr).await,
            Command::Autostop(a) => autostop::run(&a, pr).await,
            Command::Jobs(a) => jobs::list(&a, pr).await,
            Command::Logs(a) => jobs::logs(&a, pr).await,
            Command::Cancel(a) => jobs::cancel(&a, pr).await,
            Command::Pull(a) => jobs::pull(&a, pr).await,
            Command::Launch(a) => launch::run(&a, pr).await,
            Command::Doctor(a) => doctor::run(&a, pr).await,
            Command::SshConfig(a) => ssh_config::run(&a, pr).await,
            Command::Exec(a) => exec::run(&a, pr).await,
        }
    })
}

/// Load a config (errors exit with status 2).
pub fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// The config's provider and what it observes.
pub async fn observe(
    cfg: &Config,
    key: Option<std::path::PathBuf>,
) -> anyhow::Result<(Arc<dyn Provider>, Observed)> {
    let p = provider::for_config(cfg, key).await?;
    let obs = p.query().await?;
    Ok((p, obs))
}

/// Take `cfg`'s cluster lock for `command` (waiting for another holder unless `no_wait`).
pub async fn lock(
    cfg: &Config,
    command: &'static str,
    no_wait: bool,
) -> anyhow::Result<crate::lock::ClusterLock> {
    let cfg = cfg.clone();
    let wait = (!no_wait).then_some(crate::lock::DEFAULT_WAIT);
    tokio::task::spawn_blocking(move || {
        crate::lock::acquire(&crate::paths::daft_home(), &cfg, command, wait)
    })
    .await?
}

/// The key for SSH: `-i KEY`, else the config's `ssh_private_key` (else ssh-agent).
pub fn ssh_key(cfg: &Config, identity: &Option<std::path::PathBuf>) -> Option<std::path::PathBuf> {
    identity.clone().or(cfg.setup.ssh_private_key.clone())
}

/// The error for a cluster without a running head.
pub fn not_up(cfg: &Config) -> anyhow::Error {
    anyhow::anyhow!(
        "cluster {:?} has no running head; start it with `daft up -c {}`",
        cfg.setup.name,
        cfg.display_path
    )
}

/// The provider and the cluster's running head (an error when the cluster is not up).
pub async fn running_head(
    cfg: &Config,
    key: Option<std::path::PathBuf>,
) -> anyhow::Result<(Arc<dyn Provider>, crate::model::ObservedNode)> {
    let (provider, observed) = observe(cfg, key).await?;
    let head = match provider::alive_head(&observed) {
        Some(h) => h.clone(),
        None => {
            return Err(match provider::head_not_running(&observed) {
                Some(h) => match h.unreachable_reason() {
                    Some(why) => anyhow::anyhow!(
                        "the head of cluster {:?} ({}) could not be reached: {why}",
                        cfg.setup.name,
                        h.id
                    ),
                    None => anyhow::anyhow!(
                        "the head of cluster {:?} ({}) is {}, not running; `daft up -c {}` \
                         finishes or restarts it",
                        cfg.setup.name,
                        h.id,
                        format!("{:?}", h.state).to_lowercase(),
                        cfg.display_path
                    ),
                },
                None => not_up(cfg),
            })
        }
    };
    Ok((provider, head))
}
