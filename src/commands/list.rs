//! `daft list`: every daft cluster this machine can see, grouped by state.

use crate::printer::Printer;
use std::path::PathBuf;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

use crate::cli::ListArgs;
use crate::config::{Config, ProviderKind, DEFAULT_CONFIG};
use crate::cost::money;
use crate::model::{NodeState, ObservedNode};
use crate::provider::{aws, hosts};

/// One row of `daft list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub state: NodeState,
    pub cluster: String,
    pub provider: String,
    pub role: String,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub public_ip: Option<String>,
    pub launched: String,
    /// The head's autostop ("30m, idle 3m"), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autostop: Option<String>,
    /// Why the node ended when the back-end ended it (an EC2 spot interruption).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the node costs per hour (USD; AWS, running nodes, when its price is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_hour: Option<f64>,
    /// What it has cost since it was launched (USD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_so_far: Option<f64>,
}

impl Row {
    pub fn new(provider: &str, n: &ObservedNode) -> Row {
        Row {
            state: n.state,
            cluster: n.cluster.clone(),
            provider: provider.to_string(),
            role: n.role.as_str().to_string(),
            id: n.id.clone(),
            kind: n.detail.get("type").cloned().unwrap_or_default(),
            public_ip: n.public_ip.clone(),
            launched: if n.created == 0 {
                String::new()
            } else {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(n.created),
                )
                .to_string()
            },
            autostop: n.detail.get("autostop").cloned(),
            note: n.detail.get("interrupted").cloned(),
            usd_per_hour: None,
            cost_so_far: None,
        }
    }

    /// The row with the node's price: its cost so far from its launch to `now`.
    pub fn priced(mut self, n: &ObservedNode, per_hour: Option<f64>, now: u64) -> Row {
        self.usd_per_hour = per_hour;
        self.cost_so_far = per_hour
            .filter(|_| n.created > 0)
            .map(|p| crate::cost::so_far(p, n.created, now));
        self
    }
}

pub async fn run(args: &ListArgs, pr: &Printer) -> anyhow::Result<()> {
    // A config (given, or ./.daft.toml) adds its own provider's clusters.
    let cfg_path = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()));
    let cfg = match &cfg_path {
        Some(p) => Some(Config::load(p)?),
        None => None,
    };
    let mut rows = Vec::new();
    for n in hosts::list_local().await? {
        rows.push(Row::new("local", &n));
    }
    if let Some(cfg) = &cfg {
        if matches!(
            cfg.setup.provider.kind(),
            ProviderKind::Ssh | ProviderKind::Slurm
        ) {
            let (_, obs) = super::observe(cfg, args.key.identity.clone()).await?;
            let p = cfg.setup.provider.kind().as_str();
            rows.extend(obs.nodes.iter().map(|n| Row::new(p, n)));
        }
    }
    // Kubernetes: the config's context and namespace, else (no config) the current context's
    // when a kubeconfig exists; a context that cannot be read is a warning there.
    if !args.local_only {
        let k8s_cfg = cfg
            .as_ref()
            .filter(|c| c.setup.provider.kind() == ProviderKind::Kubernetes);
        if k8s_cfg.is_some() || cfg.is_none() {
            match crate::provider::kubernetes::list_current_context(k8s_cfg).await {
                Some(Ok(nodes)) => rows.extend(nodes.iter().map(|n| Row::new("kubernetes", n))),
                Some(Err(e)) if k8s_cfg.is_some() => return Err(e),
                Some(Err(e)) => crate::warn!(pr, "daft: skipping Kubernetes: {e:#}"),
                None => {}
            }
        }
    }
    let aws_regions: Vec<String> = if args.local_only {
        vec![]
    } else if args.all_regions {
        aws::all_regions(cfg.as_ref()).await?
    } else if let Some(r) = &args.region {
        vec![r.clone()]
    } else if let Some(crate::config::ProviderSetup::Aws(a)) =
        cfg.as_ref().map(|c| &c.setup.provider)
    {
        vec![a.region.clone()]
    } else if cfg.is_none() {
        // A plain `daft list`: the AWS configuration's region, when it has credentials.
        aws::configured_region().await.into_iter().collect()
    } else {
        vec![]
    };
    let now = crate::time::now_secs();
    for region in aws_regions {
        let nodes = aws::list_region(&region).await?;
        let prices = aws::node_prices(&region, &nodes).await;
        for (n, p) in nodes.iter().zip(prices) {
            rows.push(Row::new("aws", n).priced(n, p, now));
        }
    }
    rows.sort_by(|a, b| {
        (a.state, &a.cluster, &a.role, &a.id).cmp(&(b.state, &b.cluster, &b.role, &b.id))
    });
    pr.show(&rows, |v| render(v))?;
    Ok(())
}

/// The text listing: one table per state, like the seed's `daft list`.
pub fn render(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "No daft clusters found.\n".to_string();
    }
    let mut out = String::new();
    let mut states: Vec<NodeState> = rows.iter().map(|r| r.state).collect();
    states.dedup();
    for state in states {
        out.push_str(&format!("{}:\n", state.title()));
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        let these: Vec<&Row> = rows.iter().filter(|r| r.state == state).collect();
        // The autostop column only where some cluster has one.
        let autostop = these.iter().any(|r| r.autostop.is_some());
        let mut header = vec![
            "cluster",
            "provider",
            "role",
            "node",
            "type",
            "public ip",
            "launched",
        ];
        if autostop {
            header.push("autostop");
        }
        let note = these.iter().any(|r| r.note.is_some());
        if note {
            header.push("note");
        }
        // The cost column only where some node has a price.
        let cost = these.iter().any(|r| r.usd_per_hour.is_some());
        if cost {
            header.push("cost so far");
        }
        t.set_header(header);
        for r in these {
            let mut row = vec![
                r.cluster.clone(),
                r.provider.clone(),
                r.role.clone(),
                r.id.clone(),
                r.kind.clone(),
                r.public_ip.clone().unwrap_or_else(|| "-".into()),
                r.launched.clone(),
            ];
            if autostop {
                row.push(r.autostop.clone().unwrap_or_default());
            }
            if note {
                row.push(r.note.clone().unwrap_or_default());
            }
            if cost {
                row.push(match (r.cost_so_far, r.usd_per_hour) {
                    (Some(so_far), Some(p)) => format!("{} at {}/h", money(so_far), money(p)),
                    _ => String::new(),
                });
            }
            t.add_row(row);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    // Each cluster with prices: what it costs now and has cost since its first node.
    let mut clusters: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.usd_per_hour.is_some())
        .map(|r| (r.provider.as_str(), r.cluster.as_str()))
        .collect();
    clusters.sort_unstable();
    clusters.dedup();
    for (provider, cluster) in clusters {
        let these = rows
            .iter()
            .filter(|r| r.provider == provider && r.cluster == cluster);
        let per_hour: f64 = these.clone().filter_map(|r| r.usd_per_hour).sum();
        let so_far: f64 = these.filter_map(|r| r.cost_so_far).sum();
        out.push_str(&format!(
            "Cluster {cluster:?} ({provider}): {}/h now, {} so far.\n",
            money(per_hour),
            money(so_far)
        ));
    }
    out
}
