//! `[setup.ssh]` (your own hosts) and `[setup.local]` (this machine): host addresses, ports,
//! and the loopback rule of local clusters.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshHostsFile {
    pub head: String,
    #[serde(default)]
    pub workers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFile {
    #[serde(default = "default_local_address")]
    pub address: String,
    #[serde(default = "default_ray_port")]
    pub ray_port: i64,
    #[serde(default = "default_dashboard_port")]
    pub dashboard_port: i64,
}

/// `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct HostAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.port == 22 {
            write!(f, "{}", self.host)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SshHosts {
    pub head: HostAddr,
    pub workers: Vec<HostAddr>,
    /// `setup.ssh_user` is in the file (else `~/.ssh/config`'s `User` may name one).
    pub user_given: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LocalSetup {
    pub address: IpAddr,
    pub ray_port: u16,
    pub dashboard_port: u16,
}

impl Default for LocalSetup {
    fn default() -> Self {
        LocalSetup {
            address: default_local_address()
                .parse()
                .expect("valid default address"),
            ray_port: 6379,
            dashboard_port: 8265,
        }
    }
}

impl Checker<'_> {
    /// `[setup.ssh]`: the head and workers, each host once.
    pub(super) fn check_ssh(
        &self,
        doc: &Document<String>,
        s: &SetupFile,
    ) -> Result<SshHosts, ConfigError> {
        let v = |p: &[&str]| self.value_span(doc, p);
        Ok(match &s.ssh {
            None => {
                return Err(self
                    .err(v(&["setup", "provider"]), "provider = \"ssh\" needs a [setup.ssh] table with the hosts")
                    .label("no [setup.ssh] in this file")
                    .help("add\n[setup.ssh]\nhead = \"10.0.0.1\"\nworkers = [\"10.0.0.2\", \"10.0.0.3:2222\"]"));
            }
            Some(h) => {
                let head =
                    self.parse_host(&h.head, v(&["setup", "ssh", "head"]), "setup.ssh.head")?;
                let mut seen = HashSet::from([head.clone()]);
                let mut workers = Vec::new();
                for (i, w) in h.workers.iter().enumerate() {
                    let span = self.element_span(doc, &["setup", "ssh", "workers"], i);
                    let addr = self.parse_host(w, span.clone(), "setup.ssh.workers")?;
                    if !seen.insert(addr.clone()) {
                        return Err(self
                            .err(span, format!("host {addr} appears twice in [setup.ssh]"))
                            .label("duplicate host")
                            .help("list each machine once; the head is not also a worker"));
                    }
                    workers.push(addr);
                }
                SshHosts {
                    head,
                    workers,
                    user_given: v(&["setup", "ssh_user"]).is_some(),
                }
            }
        })
    }

    /// `[setup.local]`: 127.0.0.1 only (Ray stays on loopback only there), two free ports.
    pub(super) fn check_local(
        &self,
        doc: &Document<String>,
        s: &SetupFile,
    ) -> Result<LocalSetup, ConfigError> {
        let v = |p: &[&str]| self.value_span(doc, p);
        Ok(match &s.local {
            None => LocalSetup::default(),
            Some(l) => {
                let address: IpAddr = l.address.parse().map_err(|_| {
                    self.err(
                        v(&["setup", "local", "address"]),
                        format!(
                            "`setup.local.address` = {:?} is not an IP address",
                            l.address
                        ),
                    )
                    .label("expected an IP address")
                    .help("remove `address`: the local cluster listens on 127.0.0.1")
                })?;
                // Ray keeps every server on loopback only when its node address is 127.0.0.1
                // itself; at any other address its GCS and raylets listen on all interfaces.
                if address != IpAddr::from([127, 0, 0, 1]) {
                    let why = if address.is_loopback() {
                        "Ray listens on loopback only at 127.0.0.1; at any other address its \
                         GCS and raylets listen on every interface"
                    } else {
                        "the local cluster only listens on loopback"
                    };
                    return Err(self
                        .err(
                            v(&["setup", "local", "address"]),
                            format!("`setup.local.address` = {address} is not 127.0.0.1"),
                        )
                        .label(why)
                        .help("remove `address` (or set it to \"127.0.0.1\"); separate local clusters use separate `ray_port` and `dashboard_port`"));
                }
                let port = |key: &str, val: i64| -> Result<u16, ConfigError> {
                    u16::try_from(val)
                        .ok()
                        .filter(|p| *p >= 1024)
                        .ok_or_else(|| {
                            self.err(
                                v(&["setup", "local", key]),
                                format!("`setup.local.{key}` = {val} is not a usable port"),
                            )
                            .label("expected 1024..=65535")
                            .help(format!("pick a free port between 1024 and 65535 for {key}"))
                        })
                };
                let ray_port = port("ray_port", l.ray_port)?;
                let dashboard_port = port("dashboard_port", l.dashboard_port)?;
                if ray_port == dashboard_port {
                    return Err(self
                        .err(
                            v(&["setup", "local", "dashboard_port"]),
                            "`setup.local.dashboard_port` is the same as `ray_port`",
                        )
                        .label("port already used by ray_port")
                        .help("give the dashboard and the Ray head different ports"));
                }
                LocalSetup {
                    address,
                    ray_port,
                    dashboard_port,
                }
            }
        })
    }

    pub(super) fn parse_host(
        &self,
        raw: &str,
        span: Option<Range<usize>>,
        key: &str,
    ) -> Result<HostAddr, ConfigError> {
        parse_host(raw).map_err(|why| {
            self.err(span, format!("`{key}` entry {raw:?} is not a host address: {why}"))
                .label("expected host or host:port")
                .help("write a host name or IP address, optionally with :port, for example \"10.0.0.5\" or \"node1:2222\"")
        })
    }
}

/// Parse `host[:port]` (IPv6 as `[addr]:port`).
pub fn parse_host(raw: &str) -> Result<HostAddr, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("it is empty".into());
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or("missing ']'")?;
        (h.to_string(), tail.strip_prefix(':'))
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (raw.to_string(), None),
        }
    };
    if host.is_empty()
        || host.contains(char::is_whitespace)
        || host.contains('/')
        || host.contains('@')
    {
        return Err("the host name is not valid".into());
    }
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => n as u16,
            _ => return Err(format!("port {p:?} is not between 1 and 65535")),
        },
    };
    Ok(HostAddr { host, port })
}
