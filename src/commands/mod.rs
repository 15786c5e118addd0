//! One module per command. `run` is the dispatcher; argument types live in `cli`.

pub mod dashboard;
pub mod down;
pub mod init_config;
pub mod list;
pub mod plan;
pub mod submit;
pub mod up;

use std::path::Path;
use std::sync::Arc;

use crate::cli::Command;
use crate::config::Config;
use crate::model::Observed;
use crate::provider::{self, Provider};

/// Run one command to completion.
pub fn run(cmd: Command) -> anyhow::Result<()> {
    if let Command::InitConfig(args) = cmd {
        return init_config::run(&args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cmd {
            Command::InitConfig(_) => unreachable!("handled above"),
            Command::Plan(a) => plan::run(&a).await,
            Command::Up(a) => up::run(&a).await,
            Command::Down(a) => down::run(&a).await,
            Command::List(a) => list::run(&a).await,
            Command::Submit(a) => submit::run(&a).await,
            Command::Dashboard(a) => dashboard::run(&a).await,
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
