//! `launch --local`: the job's command on this machine, alone or as a job of a Ray cluster
//! brought up here for the run.

use super::*;

/// `--local`: the command on this machine, in the project directory, with the job's variables.
pub(super) async fn run_local(
    cfg: &LaunchConfig,
    command: &str,
    pr: &Printer,
) -> anyhow::Result<()> {
    if cfg.workers > 0 {
        return run_local_ray(cfg, command, pr).await;
    }
    let t = Instant::now();
    crate::note!(
        pr,
        "daft: running {command:?} here in {}",
        cfg.project_dir.display()
    );
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(&cfg.project_dir)
        .envs(&cfg.env)
        .env("DAFT_JOB_NAME", &cfg.name)
        .kill_on_drop(true)
        .spawn()
        .context("cannot run /bin/sh")?;
    let status = tokio::select! {
        s = child.wait() => s?,
        _ = crate::interrupt::interrupted() => {
            let _ = child.kill().await;
            return Err(JobExit(130).into());
        }
    };
    let code = status.code().unwrap_or(1);
    if code != 0 {
        crate::note!(
            pr,
            "daft: the job exited with status {code} after {}",
            elapsed(t.elapsed())
        );
        return Err(JobExit(code).into());
    }
    crate::note!(pr, "daft: the job succeeded in {}", elapsed(t.elapsed()));
    Ok(())
}

/// `--local` with workers: the same command as a job of a Ray cluster of `workers` workers on
/// this machine, brought up by the local provider for this run and taken down after it.
pub(super) async fn run_local_ray(
    cfg: &LaunchConfig,
    command: &str,
    pr: &Printer,
) -> anyhow::Result<()> {
    use crate::commands::{down, submit, up};
    let free = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port())
    };
    let dir = crate::paths::daft_home().join("launch-local");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.toml", cfg.name));
    std::fs::write(
        &path,
        format!(
            "# Written by `daft launch --local` for {file}: its Ray cluster on this machine.\n\
             [setup]\nname = \"launch-{name}\"\nprovider = \"local\"\nnumber_of_workers = {workers}\n\
             python_version = \"{py}\"\n\n[setup.local]\nray_port = {ray}\ndashboard_port = {dash}\n",
            file = cfg.display_path,
            name = cfg.name,
            workers = cfg.workers,
            py = cfg.python_version,
            ray = free()?,
            dash = free()?,
        ),
    )?;
    let cluster = crate::commands::load(&path)?;
    crate::note!(
        pr,
        "daft: --local with {} worker(s): a Ray cluster on this machine for this run ({})",
        cfg.workers,
        path.display()
    );
    up::up(
        &cluster,
        &up::Up {
            yes: true,
            wait_workers: true,
            ..up::Up::default()
        },
        Instant::now(),
        pr,
    )
    .await?;
    let result = submit::submit(
        &cluster,
        &submit::Submit {
            identity: None,
            working_dir: cfg.project_dir.clone(),
            detach: false,
            name: Some(cfg.name.clone()),
            env: cfg.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            sweep: None,
            allow_dirty: true,
            command: vec![command.to_string()],
        },
        pr,
    )
    .await;
    let down = down::down(
        &cluster,
        &down::Down {
            yes: true,
            ..down::Down::default()
        },
        Instant::now(),
        pr,
    )
    .await;
    if let Err(e) = &down {
        crate::warn!(
            pr,
            "daft: taking the local Ray cluster down failed: {e:#} (`daft down -c {}` tries again)",
            path.display()
        );
    }
    result
}
