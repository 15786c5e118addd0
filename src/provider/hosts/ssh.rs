//! A list of SSH hosts (`provider = "ssh"`, `[setup.ssh]`): one Ray node per host, reached over
//! SSH with pinned host keys; the head keeps the list of hosts that joined it.

use super::*;

/// `[setup.ssh]`'s hosts, and how to log into them.
pub struct SshHostList {
    pub(super) hosts: SshHosts,
    pub(super) user: String,
    pub(super) key: Option<PathBuf>,
    pub(super) home: PathBuf,
}

#[async_trait]
impl Machines for SshHostList {
    fn context(&self) -> String {
        let w = &self.hosts.workers;
        format!(
            "ssh, {} host{}",
            w.len() + 1,
            if w.is_empty() { "" } else { "s" }
        )
    }

    fn host_of<'a>(&self, node_id: &'a str) -> &'a str {
        node_id
    }

    /// The config's hosts: the head, then `worker-N` in the order `workers` lists them.
    fn ssh_entries(&self) -> Option<Vec<crate::provider::SshEntry>> {
        let entry = |name: String, h: &crate::config::HostAddr| crate::provider::SshEntry {
            name,
            host: h.host.clone(),
            port: h.port,
            user: self.user.clone(),
            key: self.key.clone(),
            host_key_alias: None,
        };
        Some(
            std::iter::once(entry(String::new(), &self.hosts.head))
                .chain(
                    self.hosts
                        .workers
                        .iter()
                        .enumerate()
                        .map(|(i, h)| entry(format!("worker-{}", i + 1), h)),
                )
                .collect(),
        )
    }

    /// Over the route `~/.ssh/config` gives the host (HostName, Port, User, IdentityFile,
    /// ProxyJump), `.daft.toml`'s settings first.
    async fn connect(&self, host: &str) -> anyhow::Result<Arc<dyn Transport>> {
        let addr = crate::config::parse_host(host).map_err(|e| anyhow!("bad host {host}: {e}"))?;
        let user = self.hosts.user_given.then_some(self.user.as_str());
        let route = crate::transport::ssh_config::route(&addr, user, self.key.clone(), &self.user);
        Ok(Arc::new(
            crate::transport::ssh_config::connect(&route, &self.home).await?,
        ))
    }

    fn spec(&self, role: Role) -> NodeSpec {
        NodeSpec::new(role, [("ssh_user", self.user.clone())])
    }

    fn head_address(&self, head: &ObservedNode) -> String {
        let ip = head.private_ip.clone().unwrap_or_else(|| head.id.clone());
        format!("{ip}:6379")
    }

    fn hosts(&self) -> Vec<String> {
        std::iter::once(&self.hosts.head)
            .chain(self.hosts.workers.iter())
            .map(|h| h.to_string())
            .collect()
    }

    fn separate_hosts(&self) -> bool {
        true
    }

    fn role_of(&self, host: &str) -> Role {
        if self.hosts.head.to_string() == host {
            Role::Head
        } else {
            Role::Worker
        }
    }

    fn dashboard_route(&self) -> DashboardRoute {
        DashboardRoute::Tunnel {
            host: "127.0.0.1".into(),
            port: 8265,
        }
    }

    fn workers(&self, _cfg: &Config) -> u32 {
        // The hosts are the cluster: every listed worker host runs a worker.
        self.hosts.workers.len() as u32
    }

    fn place(&self, role: Role, count: u32, taken: &[String]) -> Vec<(String, Option<String>)> {
        let ids: Vec<String> = match role {
            Role::Head => vec![self.hosts.head.to_string()],
            Role::Worker => self
                .hosts
                .workers
                .iter()
                .map(|h| h.to_string())
                .filter(|id| !taken.contains(id))
                .take(count as usize)
                .collect(),
        };
        ids.into_iter()
            .map(|id| {
                let ip = crate::config::parse_host(&id).ok().map(|h| h.host);
                (id, ip)
            })
            .collect()
    }

    fn node_settings(
        &self,
        node: &ObservedNode,
        p: &mut NodeParams,
        _ports: &mut BTreeMap<String, u16>,
    ) -> anyhow::Result<()> {
        let host = crate::config::parse_host(&node.id)
            .map(|h| h.host)
            .unwrap_or_default();
        if host.parse::<std::net::IpAddr>().is_ok() {
            p.node_ip = Some(host);
        }
        Ok(())
    }
}
