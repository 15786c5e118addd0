//! The user's `~/.ssh/config` for the hosts daft reaches over SSH (SSH hosts, a Slurm login
//! node): `HostName`, `Port`, `User`, `IdentityFile` and `ProxyJump` (one or more hops), read
//! with ssh2-config's parser. What `.daft.toml` (or `-i`) sets wins; `RUST_LOG=debug` says
//! where each value came from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ssh2_config::{ParseRule, SshConfig};

use super::ssh::{SshTarget, SshTransport, Via};
use super::Transport;
use crate::config::HostAddr;

/// One SSH connection of a route: where, as whom, with which key.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    pub addr: HostAddr,
    pub user: String,
    pub key: Option<PathBuf>,
}

/// How to reach a host: through `jumps` (in order), then `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub target: Hop,
    pub jumps: Vec<Hop>,
}

/// `~/.ssh/config` of `$HOME`, when there is one that parses (a broken one is said in the debug
/// log and left out, as if absent).
fn user_config() -> Option<SshConfig> {
    let path = PathBuf::from(std::env::var_os("HOME")?).join(".ssh/config");
    let file = std::fs::File::open(&path).ok()?;
    match SshConfig::default().parse(
        &mut std::io::BufReader::new(file),
        ParseRule::ALLOW_UNKNOWN_FIELDS,
    ) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(target: "daft::ssh", "ignoring {}: {e}", path.display());
            None
        }
    }
}

fn expand(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    PathBuf::from(shellexpand::tilde(&s).to_string())
}

/// One host as the config file says it (its own settings only where `.daft.toml` gave none).
fn hop(
    cfg: Option<&SshConfig>,
    host: &HostAddr,
    user: Option<&str>,
    key: Option<PathBuf>,
    default_user: &str,
) -> (Hop, Vec<String>) {
    let p = cfg.map(|c| c.query(&host.host));
    let from = |what: &str, value: &str, src: &str| {
        tracing::debug!(target: "daft::ssh", host = %host.host, what, value, source = src, "ssh setting");
    };
    let name = match p.as_ref().and_then(|p| p.host_name.clone()) {
        Some(h) => {
            from("HostName", &h, "~/.ssh/config");
            h
        }
        None => host.host.clone(),
    };
    let port = if host.port != 22 {
        from("Port", &host.port.to_string(), ".daft.toml");
        host.port
    } else if let Some(port) = p.as_ref().and_then(|p| p.port) {
        from("Port", &port.to_string(), "~/.ssh/config");
        port
    } else {
        22
    };
    let user = match (user, p.as_ref().and_then(|p| p.user.clone())) {
        (Some(u), _) => {
            from("User", u, ".daft.toml");
            u.to_string()
        }
        (None, Some(u)) => {
            from("User", &u, "~/.ssh/config");
            u
        }
        (None, None) => default_user.to_string(),
    };
    let key = match (key, p.as_ref().and_then(|p| p.identity_file.clone())) {
        (Some(k), _) => {
            from("IdentityFile", &k.display().to_string(), ".daft.toml or -i");
            Some(k)
        }
        (None, Some(files)) => files.first().map(|f| {
            let f = expand(f);
            from("IdentityFile", &f.display().to_string(), "~/.ssh/config");
            f
        }),
        (None, None) => None,
    };
    let jumps = p
        .and_then(|p| p.proxy_jump)
        .unwrap_or_default()
        .into_iter()
        .filter(|j| !j.eq_ignore_ascii_case("none"))
        .collect();
    (
        Hop {
            addr: HostAddr { host: name, port },
            user,
            key,
        },
        jumps,
    )
}

/// The route to `host`: `user` and `key` are `.daft.toml`'s (None: not set there), `default_user`
/// what daft uses when neither file names one.
pub fn route(
    host: &HostAddr,
    user: Option<&str>,
    key: Option<PathBuf>,
    default_user: &str,
) -> Route {
    let cfg = user_config();
    let (target, jump_specs) = hop(cfg.as_ref(), host, user, key.clone(), default_user);
    let mut jumps = Vec::new();
    for spec in jump_specs {
        // `[user@]host[:port]`, itself looked up in the config file (its own HostName, …).
        let (juser, rest) = match spec.split_once('@') {
            Some((u, r)) => (Some(u.to_string()), r.to_string()),
            None => (None, spec.clone()),
        };
        let Ok(addr) = crate::config::parse_host(&rest) else {
            tracing::debug!(target: "daft::ssh", jump = %spec, "ignoring a ProxyJump that is not host[:port]");
            continue;
        };
        tracing::debug!(target: "daft::ssh", host = %host.host, jump = %spec, source = "~/.ssh/config", "ssh setting");
        let (h, _) = hop(cfg.as_ref(), &addr, juser.as_deref(), None, default_user);
        // (A jump without a key of its own uses the target's, as one key usually opens both.)
        let key = h.key.clone().or_else(|| target.key.clone());
        jumps.push(Hop { key, ..h });
    }
    Route { target, jumps }
}

/// Connect along `route` (each jump through the one before), checking every host key.
pub async fn connect(route: &Route, daft_home: &Path) -> anyhow::Result<SshTransport> {
    let mut via: Option<Arc<dyn Transport>> = None;
    for j in &route.jumps {
        let mut t = SshTarget::new(j.addr.clone(), &j.user, j.key.clone(), daft_home);
        t.via = via.take().map(Via);
        via = Some(Arc::new(SshTransport::connect(t).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the jump host {} (ProxyJump in ~/.ssh/config): {e:#}",
                j.addr
            )
        })?));
    }
    let t = &route.target;
    let mut target = SshTarget::new(t.addr.clone(), &t.user, t.key.clone(), daft_home);
    target.via = via.map(Via);
    SshTransport::connect(target).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SshConfig {
        SshConfig::default()
            .parse(
                &mut std::io::BufReader::new(text.as_bytes()),
                ParseRule::ALLOW_UNKNOWN_FIELDS,
            )
            .unwrap()
    }

    #[test]
    fn the_file_fills_in_what_daft_toml_leaves_out() {
        let c = parse(
            "Host gpu-box\n  HostName 10.1.2.3\n  Port 2200\n  User alice\n  IdentityFile /k/alice\n  ProxyJump bastion\n\
             Host bastion\n  HostName 203.0.113.9\n  User jump\n",
        );
        let host = HostAddr {
            host: "gpu-box".into(),
            port: 22,
        };
        let (h, jumps) = hop(Some(&c), &host, None, None, "me");
        assert_eq!(h.addr.to_string(), "10.1.2.3:2200");
        assert_eq!(h.user, "alice");
        assert_eq!(h.key, Some(PathBuf::from("/k/alice")));
        assert_eq!(jumps, ["bastion"]);
        // .daft.toml's port, user and key win.
        let host = HostAddr {
            host: "gpu-box".into(),
            port: 2222,
        };
        let (h, _) = hop(
            Some(&c),
            &host,
            Some("bob"),
            Some(PathBuf::from("/k/bob")),
            "me",
        );
        assert_eq!(h.addr.to_string(), "10.1.2.3:2222");
        assert_eq!(
            (h.user.as_str(), h.key),
            ("bob", Some(PathBuf::from("/k/bob")))
        );
        // A host the file does not name: as written.
        let other = HostAddr {
            host: "10.9.9.9".into(),
            port: 22,
        };
        let (h, jumps) = hop(Some(&c), &other, None, None, "me");
        assert_eq!(
            (h.addr.to_string(), h.user.as_str()),
            ("10.9.9.9".to_string(), "me")
        );
        assert!(jumps.is_empty());
    }
}
