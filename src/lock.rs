//! The per-cluster lock: one `up` or `down` at a time per cluster from this machine.
//!
//! An advisory `flock` on `$DAFT_HOME/locks/<cluster key>.lock`. The kernel releases it when its
//! holder exits, however it exits (a `kill -9` included), so a lock left by a dead process is
//! simply taken by the next command; nothing is ever "stale" on disk. The holder writes who it is
//! (pid, command, since) into the file so a waiting command can say whom it waits for.
//!
//! Across machines the cloud's own records do this job: EC2 launches carry an idempotency token
//! derived from what was observed, so two machines that plan the same launch get the same
//! instances (see the AWS provider).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ProviderSetup};

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// Seconds since the Unix epoch.
    pub since: u64,
}

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
    pub path: PathBuf,
}

/// How long a command waits for another one's lock by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30 * 60);

/// The file that locks `cfg`'s cluster: per provider, place and name.
pub fn lock_path(home: &Path, cfg: &Config) -> PathBuf {
    let place = match &cfg.setup.provider {
        ProviderSetup::Aws(a) => a.region.clone(),
        ProviderSetup::Ssh(h) => h.head.to_string(),
        ProviderSetup::Local(l) => l.address.to_string(),
        ProviderSetup::Kubernetes(k) => format!(
            "{}/{}",
            k.context.as_deref().unwrap_or("current"),
            k.namespace.as_deref().unwrap_or("default")
        ),
        ProviderSetup::Slurm(s) => s.login.as_ref().map(|h| h.to_string()).unwrap_or_default(),
    };
    let key = crate::model::short_hash([place.as_str()]);
    home.join("locks").join(format!(
        "{}-{}-{}.lock",
        cfg.setup.provider.kind().as_str(),
        cfg.setup.name,
        &key[..8]
    ))
}

fn read_holder(path: &Path) -> Option<Holder> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

fn describe(cluster: &str, h: &Option<Holder>) -> String {
    match h {
        Some(h) => format!(
            "another `daft {}` holds the lock for cluster {cluster:?} since {} (pid {})",
            h.command,
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(h.since)),
            h.pid
        ),
        None => format!("another daft command holds the lock for cluster {cluster:?}"),
    }
}

/// Take the lock of `cfg`'s cluster for `command`. When another process holds it: fail at once
/// (`wait` is None) or wait up to `wait`, saying for whom and how long.
pub fn acquire(
    home: &Path,
    cfg: &Config,
    command: &str,
    wait: Option<Duration>,
) -> anyhow::Result<ClusterLock> {
    let path = lock_path(home, cfg);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the lock directory {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    let start = Instant::now();
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&path);
                let who = describe(&cfg.setup.name, &holder);
                let Some(limit) = wait else {
                    return Err(anyhow!(
                        "{who}; wait for it to finish, or leave out --no-wait-lock to wait for it"
                    ));
                };
                if start.elapsed() >= limit {
                    return Err(anyhow!(
                        "{who}; gave up after waiting {}",
                        humantime::format_duration(limit)
                    ));
                }
                if !said {
                    crate::notice!(
                        "{who}; waiting for it, up to {} (Ctrl-C to stop; --no-wait-lock fails instead)",
                        humantime::format_duration(limit)
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(anyhow!("cannot lock {}: {e}", path.display()))
            }
        }
    }
    let holder = Holder {
        pid: std::process::id(),
        command: command.to_string(),
        since: crate::time::now_secs(),
    };
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(serde_json::to_string(&holder)?.as_bytes())?;
    file.flush()?;
    tracing::debug!(path = %path.display(), "cluster lock taken");
    Ok(ClusterLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::parse(
            "t.toml",
            "[setup]\nname = \"lockme\"\nprovider = \"local\"\n",
            Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn second_taker_fails_or_waits_then_gets_it() {
        let home = tempfile::tempdir().unwrap();
        let c = cfg();
        let first = acquire(home.path(), &c, "up", None).unwrap();
        let e = acquire(home.path(), &c, "down", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another `daft up` holds the lock for cluster \"lockme\""),
            "{e}"
        );
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        let e = acquire(home.path(), &c, "down", Some(Duration::from_millis(300)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gave up after waiting"), "{e}");
        let path = first.path.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let second = acquire(home.path(), &c, "down", Some(Duration::from_secs(10))).unwrap();
        releaser.join().unwrap();
        assert_eq!(read_holder(&path).unwrap().command, "down");
        drop(second);
    }
}
