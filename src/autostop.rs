//! Autostop, armed on the head: the cluster's one watcher (templates/jobs.py) reads its setting
//! from `autostop.json` at every check, so arming, changing and cancelling need no restart.
//! The watcher asks Ray's own state API whether anything runs; daft only says how long and what
//! to run when the time is up (the back-end's `halt`).

use std::time::Duration;

use anyhow::anyhow;

use crate::bootstrap::{self, NodeParams};
use crate::shell::{dquote, shell_quote};
use crate::transport::{RemoteCommand, Transport};

/// What the head's watcher is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Autostop {
    /// Idle this long, the cluster stops.
    pub after: Duration,
    /// The head's Ray dashboard, as the head reaches it (`http://127.0.0.1:8265`).
    pub dashboard: String,
    /// The shell command, run on the head, that stops the cluster.
    pub halt: String,
}

/// What a set-up does about autostop.
#[derive(Debug, Clone, PartialEq)]
pub enum AutostopSetting {
    /// Nothing (a worker, or a back-end whose head cannot stop its cluster).
    Untouched,
    /// The config has none: a watcher armed before (`daft autostop`, an older config) is
    /// cancelled.
    Cancel,
    Arm(Autostop),
}

impl AutostopSetting {
    /// What a node's set-up does about autostop: the head arms the config's setting (`after`,
    /// as `build` makes it for this back-end) or cancels one armed before; a worker, nothing.
    pub fn for_node(
        role: crate::model::Role,
        after: Option<Duration>,
        build: impl FnOnce(Duration) -> Option<Autostop>,
    ) -> Self {
        match (role, after) {
            (crate::model::Role::Worker, _) => AutostopSetting::Untouched,
            (crate::model::Role::Head, None) => AutostopSetting::Cancel,
            (crate::model::Role::Head, Some(d)) => match build(d) {
                Some(a) => AutostopSetting::Arm(a),
                None => AutostopSetting::Untouched,
            },
        }
    }
}

/// The halt of SSH hosts and local clusters: the bootstrap's `halt` on the head's host (every
/// node of the cluster there stops its Ray, keeping its record).
pub fn halt_on_host(daft_home: &str, cluster: &str) -> String {
    let p = NodeParams {
        daft_home: daft_home.to_string(),
        cluster: cluster.to_string(),
        ..Default::default()
    };
    bootstrap::command(&p, &["halt"]).text
}

/// Arm (or, with None, cancel) the head's autostop. Returns what the head answered.
pub async fn arm(
    head: &dyn Transport,
    cluster: &str,
    autostop: Option<&Autostop>,
) -> anyhow::Result<Option<u64>> {
    let cluster_dir = format!("{}/clusters/{cluster}", head.daft_home());
    let (args, shown) = match autostop {
        Some(a) => (
            format!(
                "{} {} {}",
                a.after.as_secs(),
                shell_quote(&a.dashboard),
                shell_quote(&a.halt)
            ),
            format!(
                "jobs.py autostop {cluster_dir} {} {} HALT",
                a.after.as_secs(),
                a.dashboard
            ),
        ),
        None => (
            "cancel - -".to_string(),
            format!("jobs.py autostop {cluster_dir} cancel"),
        ),
    };
    let text = crate::agent::JOBS.run_python(
        &head.daft_home(),
        &cluster_dir,
        &format!("autostop {} {args}", dquote(&cluster_dir)),
    );
    let out = crate::agent::capture(
        head,
        &crate::agent::JOBS,
        &RemoteCommand::shown_as(text, shown),
    )
    .await?;
    let said = crate::agent::said(&out.stdout)
        .into_iter()
        .find_map(|s| match s {
            crate::agent::Said::AutostopArmed { seconds } => Some(seconds),
            _ => None,
        });
    match (out.status, said) {
        (0, Some(s)) => Ok(s),
        _ => Err(anyhow!(
            "the head ({}) could not arm autostop (exit status {}):\n{}",
            head.describe(),
            out.status,
            bootstrap::indent(&out.tail(10))
        )),
    }
}
