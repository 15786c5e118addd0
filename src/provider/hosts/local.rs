//! This machine (`provider = "local"`): every node is a Ray node here, at `[setup.local]`'s
//! address and ports, in one daft directory.

use super::*;
use crate::transport::local::LocalTransport;

/// This machine, with `[setup.local]`.
pub struct ThisMachine {
    pub(super) local: LocalSetup,
    pub(super) home: PathBuf,
}

/// A free TCP port on `address` (else on 127.0.0.1).
fn free_port(address: std::net::IpAddr) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind((address, 0))
        .or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

#[async_trait]
impl Machines for ThisMachine {
    fn context(&self) -> String {
        format!("local, {}", self.local.address)
    }

    fn host_of<'a>(&self, _node_id: &'a str) -> &'a str {
        "local"
    }

    async fn connect(&self, _host: &str) -> anyhow::Result<Arc<dyn Transport>> {
        Ok(Arc::new(LocalTransport::new(self.home.clone())))
    }

    fn spec(&self, role: Role) -> NodeSpec {
        // The ports a node's Ray runs with: a change restarts the cluster on the new ones.
        let l = &self.local;
        NodeSpec::new(
            role,
            [
                ("address", l.address.to_string()),
                ("ray_port", l.ray_port.to_string()),
                ("dashboard_port", l.dashboard_port.to_string()),
            ],
        )
    }

    fn head_address(&self, _head: &ObservedNode) -> String {
        format!("{}:{}", self.local.address, self.local.ray_port)
    }

    fn hosts(&self) -> Vec<String> {
        vec!["local".into()]
    }

    fn separate_hosts(&self) -> bool {
        false
    }

    fn role_of(&self, _host: &str) -> Role {
        Role::Head
    }

    fn dashboard_route(&self) -> DashboardRoute {
        DashboardRoute::Direct {
            url: format!(
                "http://{}:{}",
                self.local.address, self.local.dashboard_port
            ),
        }
    }

    fn workers(&self, cfg: &Config) -> u32 {
        cfg.setup.number_of_workers
    }

    fn place(&self, role: Role, count: u32, taken: &[String]) -> Vec<(String, Option<String>)> {
        let ip = Some(self.local.address.to_string());
        let mut ids = Vec::new();
        match role {
            Role::Head => ids.push("head".to_string()),
            Role::Worker => {
                let mut k = 1;
                while ids.len() < count as usize {
                    let id = format!("worker-{k}");
                    if !taken.contains(&id) {
                        ids.push(id);
                    }
                    k += 1;
                }
            }
        }
        ids.into_iter().map(|id| (id, ip.clone())).collect()
    }

    fn node_settings(
        &self,
        node: &ObservedNode,
        p: &mut NodeParams,
        ports: &mut BTreeMap<String, u16>,
    ) -> anyhow::Result<()> {
        let l = &self.local;
        let free = || free_port(l.address);
        p.node_ip = Some(l.address.to_string());
        p.ray_port = l.ray_port;
        p.dashboard_host = l.address.to_string();
        p.dashboard_port = l.dashboard_port;
        let agent = free()?;
        ports.insert("dashboard_agent".to_string(), agent);
        p.ray_args = format!("--dashboard-agent-listen-port {agent}");
        if node.role == Role::Head {
            let client = free()?;
            p.ray_args
                .push_str(&format!(" --ray-client-server-port {client}"));
            // Ray's metrics servers (fixed ports otherwise): one local cluster's do not stop
            // another's.
            let (autoscaler, dashboard) = (free()?, free()?);
            p.ray_env =
                format!("AUTOSCALER_METRIC_PORT={autoscaler} DASHBOARD_METRIC_PORT={dashboard}");
            ports.insert("ray".into(), p.ray_port);
            ports.insert("dashboard".into(), p.dashboard_port);
        }
        Ok(())
    }
}

/// Every local cluster's nodes (for `daft list`), observed from this machine's node records.
pub async fn list_local() -> anyhow::Result<Vec<ObservedNode>> {
    let home = daft_home();
    let dir = home.join("clusters");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(vec![]);
    };
    let t = LocalTransport::new(home);
    let mut out = Vec::new();
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("nodes").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let p = NodeParams {
            daft_home: t.daft_home(),
            cluster: name.clone(),
            ..Default::default()
        };
        let c = bootstrap::run(&t, &p, &["status"], bootstrap::QUICK).await?;
        out.extend(parse_status(&c.stdout, &name));
    }
    Ok(out)
}
