//! Slurm: the cluster's Ray inside one Slurm allocation, asked for with `sbatch` (on this
//! machine, or on the login node over SSH) and observed with `squeue`. Slurm's own records are
//! the truth: the allocation carries the job name `daft-<cluster>` and a comment
//! `daft:<cluster> spec=… setup=… key=value…` (its settings, for the plan's "why").
//!
//! The allocation is one declared unit (`unit.rs`: planned, applied and deleted whole, like a
//! RayCluster): its first node runs the head, every other node a worker. The head is reached
//! through the machine `sbatch` runs on (the login node and the compute nodes share the user's
//! home, where the node bootstrap keeps its files).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_trait::async_trait;
use indicatif::ProgressBar;
use tokio::sync::Mutex;

mod arrays;
mod unit;

use super::{ArrayRequest, DashboardRoute, JobArrays, Provider};
use crate::agent::NodeRecord;
use crate::bootstrap::{self, NodeParams};
use crate::config::{Config, SlurmSetup};
use crate::model::{NodeSpec, NodeState, Observed, ObservedNode, Role};
use crate::paths::daft_home;
use crate::setup::{self, Bootstrap, NodeSetup, SetupRecord};
use crate::shell::{dquote, shell_quote};
use crate::templates::SLURM_BATCH;
use crate::transport::local::LocalTransport;
use crate::transport::ssh::{SshTarget, SshTransport};
use crate::transport::{RemoteCommand, Transport};

pub struct SlurmProvider {
    cfg: Config,
    /// `[setup.slurm]`.
    slurm: SlurmSetup,
    key: Option<PathBuf>,
    conn: Mutex<Option<Arc<dyn Transport>>>,
}

/// How long `up` waits in Slurm's queue by default (`DAFT_SLURM_QUEUE_WAIT_SECS`).
const QUEUE_WAIT: Duration = Duration::from_secs(3600);

impl SlurmProvider {
    pub fn new(cfg: Config, slurm: SlurmSetup, key: Option<PathBuf>) -> Self {
        // `-i KEY`, else the config's `ssh_private_key` (else ssh-agent).
        let key = key.or_else(|| cfg.setup.ssh_private_key.clone());
        SlurmProvider {
            cfg,
            slurm,
            key,
            conn: Mutex::new(None),
        }
    }

    fn name(&self) -> &str {
        &self.cfg.setup.name
    }

    fn job_name(&self) -> String {
        format!("daft-{}", self.name())
    }

    /// Where Slurm's commands run: this machine, or the login node.
    async fn transport(&self) -> anyhow::Result<Arc<dyn Transport>> {
        let mut conn = self.conn.lock().await;
        if let Some(t) = conn.as_ref() {
            return Ok(t.clone());
        }
        let t: Arc<dyn Transport> = match &self.slurm.login {
            None => Arc::new(LocalTransport::new(daft_home())),
            Some(addr) => {
                // As `ssh` would reach it: ~/.ssh/config's HostName, Port, User,
                // IdentityFile and ProxyJump where the config sets none.
                let user = self
                    .slurm
                    .user_given
                    .then_some(self.cfg.setup.ssh_user.as_str());
                let route = crate::transport::ssh_config::route(
                    addr,
                    user,
                    self.key.clone(),
                    &self.cfg.setup.ssh_user,
                );
                Arc::new(crate::transport::ssh_config::connect(&route, &daft_home()).await?)
            }
        };
        *conn = Some(t.clone());
        Ok(t)
    }

    /// Run a Slurm command (`sbatch`, `squeue`, …); its stdout, or an error with Slurm's own
    /// message.
    /// The first line of a Slurm command's output, trimmed.
    async fn slurm_first_line(&self, t: &dyn Transport, args: &[&str]) -> anyhow::Result<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Ok(self
            .slurm(t, &args)
            .await?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string())
    }

    async fn slurm(&self, t: &dyn Transport, args: &[String]) -> anyhow::Result<String> {
        let cmd = args
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let out = t.capture_cmd(&RemoteCommand::new(cmd.clone())).await?;
        if out.status != 0 {
            let msg = out.stderr.trim();
            bail!(
                "`{}` failed on {} (exit status {}): {}",
                args.first().map(String::as_str).unwrap_or("slurm"),
                t.describe(),
                out.status,
                if msg.is_empty() {
                    out.stdout.trim()
                } else {
                    msg
                }
            );
        }
        Ok(out.stdout)
    }

    /// The allocation's settings: what the plan compares.
    fn spec(&self) -> NodeSpec {
        let s = &self.slurm;
        let mut launch: Vec<(&'static str, String)> =
            vec![("nodes", (1 + self.cfg.setup.number_of_workers).to_string())];
        for (flag, value) in &s.options {
            let key: &'static str = match flag.as_str() {
                "--partition" => "partition",
                "--account" => "account",
                "--time" => "time",
                "--qos" => "qos",
                "--mem" => "mem",
                "--gpus-per-node" => "gpus",
                "--constraint" => "constraint",
                "--cpus-per-task" => "cpus_per_task",
                _ => continue,
            };
            launch.push((key, value.clone()));
        }
        if !s.pre_commands.is_empty() {
            // (Ray starts after them: a change starts a new allocation.)
            let joined = s.pre_commands.join("\n");
            launch.push((
                "pre_commands",
                crate::model::short_hash([joined.as_str()])[..8].to_string(),
            ));
        }
        if !s.extra_flags.is_empty() {
            let joined = s.extra_flags.join(" ");
            launch.push((
                "extra_flags",
                crate::model::short_hash([joined.as_str()])[..8].to_string(),
            ));
        }
        NodeSpec::new(Role::Head, launch)
    }

    fn comment(&self, spec_hash: &str, setup: Option<&str>) -> String {
        let mut c = format!(
            "daft:{} spec={spec_hash} setup={}",
            self.name(),
            setup.unwrap_or("-")
        );
        for (k, v) in &self.spec().launch {
            c.push_str(&format!(" {k}={v}"));
        }
        c
    }

    fn dir(&self, t: &dyn Transport) -> String {
        format!("{}/clusters/{}/slurm", t.daft_home(), self.name())
    }

    /// `dir` with `$HOME` spelled out (Slurm does not expand it in `#SBATCH --output`).
    async fn abs_dir(&self, t: &dyn Transport) -> anyhow::Result<String> {
        let dir = self.dir(t);
        match dir.strip_prefix("$HOME/") {
            None => Ok(dir),
            Some(rest) => {
                let home = t.capture("printf '%s' \"$HOME\"").await?.stdout;
                if home.is_empty() {
                    bail!("{} has no $HOME", t.describe());
                }
                Ok(format!("{}/{rest}", home.trim_end_matches('/')))
            }
        }
    }

    fn head_params(&self, t: &dyn Transport) -> NodeParams {
        NodeParams {
            daft_home: t.daft_home(),
            cluster: self.name().to_string(),
            node: "head".into(),
            role: Some(Role::Head),
            env_hash: bootstrap::env_hash(&self.cfg),
            requirements: bootstrap::requirements(&self.cfg),
            python_version: self.cfg.setup.python_version.clone(),
            ray_port: 6379,
            dashboard_host: "127.0.0.1".into(),
            dashboard_port: 8265,
            // No security group here: every connection to Ray carries the cluster's token.
            ray_auth: true,
            // Under the node user's /tmp/daft-UID: this cluster's own (short: Ray's socket paths).
            ray_tmp: format!("{}-h", self.tmp_tag(t)),
            node_json: NodeRecord::minimal(self.name(), Role::Head, Some("slurm")).json(),
            ..Default::default()
        }
    }

    /// A short tag of this cluster for its nodes' Ray temp dirs (clusters sharing a node must
    /// not share them).
    fn tmp_tag(&self, t: &dyn Transport) -> String {
        crate::model::short_hash([t.daft_home().as_str(), self.name(), "slurm"])[..8].to_string()
    }

    /// `#SBATCH` lines of `[setup.slurm]`'s options and extra flags.
    fn sbatch_options(&self) -> Vec<String> {
        let s = &self.slurm;
        s.options
            .iter()
            .map(|(flag, value)| format!("#SBATCH {flag}={value}"))
            .chain(s.extra_flags.iter().map(|f| format!("#SBATCH {f}")))
            .collect()
    }

    /// The batch script: `#SBATCH` lines from the config, then templates/slurm.sbatch.
    /// (`dir` is absolute: `$HOME/.daft/clusters/NAME/slurm` spelled out.)
    fn batch_script(&self, dir: &str, spec_hash: &str, tag: &str) -> String {
        let mut lines = vec![
            format!("#SBATCH --job-name={}", self.job_name()),
            format!("#SBATCH --comment=\"{}\"", self.comment(spec_hash, None)),
            format!("#SBATCH --nodes={}", 1 + self.cfg.setup.number_of_workers),
            "#SBATCH --ntasks-per-node=1".into(),
            format!("#SBATCH --output={dir}/allocation-%j.log"),
        ];
        lines.extend(self.sbatch_options());
        SLURM_BATCH
            .replace("#@SBATCH@", &lines.join("\n"))
            .replace("@DIR@", &dquote(dir))
            .replace("@TAG@", tag)
            .replace("@JOBS@", &dquote(&crate::agent::JOBS.path(&home_of(dir))))
    }

    /// The allocation's current line in the queue: (state, reason, node list), None when it has
    /// left the queue.
    async fn job_state(
        &self,
        t: &dyn Transport,
        id: &str,
    ) -> anyhow::Result<Option<(String, String, String)>> {
        let out = self
            .slurm(
                t,
                &[
                    "squeue".into(),
                    "-h".into(),
                    "-j".into(),
                    id.into(),
                    "-o".into(),
                    "%T|%r|%N".into(),
                ],
            )
            .await
            // A job that has left the queue: squeue says "Invalid job id" on some versions.
            .or_else(|e| {
                if format!("{e:#}").contains("Invalid job id") {
                    Ok(String::new())
                } else {
                    Err(e)
                }
            })?;
        Ok(out.lines().next().and_then(|l| {
            let f: Vec<&str> = l.trim().splitn(3, '|').collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        }))
    }

    /// sbatch's refusal, located at the key it is about when Slurm's message names one.
    fn refused(&self, e: anyhow::Error) -> anyhow::Error {
        let msg = format!("{e:#}");
        let lower = msg.to_lowercase();
        let key = [
            ("partition", "partition"),
            ("account", "account"),
            ("qos", "qos"),
            ("time limit", "time"),
            ("memory", "mem"),
            ("gres", "gpus"),
            ("gpu", "gpus"),
            ("constraint", "constraint"),
            ("feature", "constraint"),
        ]
        .iter()
        .find(|(word, _)| lower.contains(word))
        .map(|(_, key)| *key)
        .filter(|key| self.slurm.key_given(key));
        let slurm_says = msg
            .rsplit_once("): ")
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| msg.clone());
        match key {
            Some(key) => crate::error::Refused(self.cfg.located(
                &["setup", "slurm", key],
                format!("Slurm refused the allocation: {slurm_says}"),
                "Slurm does not accept this",
                "use a value this Slurm cluster has (`sinfo` lists partitions, `sacctmgr show assoc user=$USER` your accounts and QOS)",
            ))
            .into(),
            None => e.context("Slurm refused the allocation; check [setup.slurm]"),
        }
    }

    /// The allocation's (first) node and its address, from Slurm.
    async fn head_node(&self, t: &dyn Transport, id: &str) -> anyhow::Result<(String, String)> {
        let Some((state, _, nodes)) = self.job_state(t, id).await? else {
            bail!("Slurm job {id} is no longer in the queue");
        };
        if state != "RUNNING" || nodes.is_empty() {
            bail!("Slurm job {id} is {state}, not running on a node yet");
        }
        let first = self
            .slurm_first_line(t, &["scontrol", "show", "hostnames", &nodes])
            .await?;
        let addr = self
            .slurm_first_line(t, &["sinfo", "-h", "-N", "-n", &first, "-o", "%o"])
            .await?;
        if addr.is_empty() {
            bail!("Slurm does not say where node {first} (Slurm job {id}) is");
        }
        Ok((first, addr))
    }

    /// SSH to the allocation's head node (through the login node when there is one): where
    /// jobs, setup commands and the dashboard run. (A cluster that lets you SSH into your
    /// allocation's nodes, pam_slurm_adopt, keeps what starts there inside the allocation.)
    async fn node_transport(&self, id: &str) -> anyhow::Result<Arc<dyn Transport>> {
        let login = self.transport().await?;
        let (node, addr) = self.head_node(login.as_ref(), id).await?;
        if self.slurm.node_access == crate::config::NodeAccess::Srun {
            // Through Slurm itself: a job step on the head node, started where sbatch runs.
            return Ok(Arc::new(crate::transport::srun::SrunTransport::new(
                login, id, &node,
            )));
        }
        let mut target = SshTarget::new(
            crate::config::HostAddr {
                host: addr,
                port: self.slurm.node_ssh_port,
            },
            &self.cfg.setup.ssh_user,
            self.key.clone(),
            &daft_home(),
        );
        if self.slurm.login.is_some() {
            target.via = Some(crate::transport::ssh::Via(login.clone()));
        }
        let t = SshTransport::connect(target).await.with_context(|| {
            format!("cannot reach the head node {node} (Slurm job {id}) over SSH")
        })?;
        Ok(Arc::new(t))
    }

    async fn allocation_log(&self, t: &dyn Transport, id: &str) -> String {
        let path = format!("{}/allocation-{id}.log", self.dir(t));
        t.capture(&format!("tail -n 25 {} 2>/dev/null", dquote(&path)))
            .await
            .map(|c| c.stdout)
            .unwrap_or_default()
    }
}

/// A line above the progress bars, or on stderr when they are hidden (no terminal).
fn say(pb: &ProgressBar, line: String) {
    if pb.is_hidden() {
        crate::notice!("{line}");
    } else {
        pb.println(line);
    }
}

fn queue_wait() -> Duration {
    crate::wait::env_secs("DAFT_SLURM_QUEUE_WAIT_SECS", QUEUE_WAIT)
}

/// `daft:<cluster> spec=… setup=… k=v…` → its fields.
fn parse_comment(c: &str) -> Option<(String, BTreeMap<String, String>)> {
    let mut words = c.split_whitespace();
    let cluster = words.next()?.strip_prefix("daft:")?.to_string();
    let fields = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((cluster, fields))
}

#[async_trait]
impl Provider for SlurmProvider {
    fn context(&self) -> String {
        match &self.slurm.login {
            Some(h) => format!("slurm via {h}"),
            None => "slurm on this machine".into(),
        }
    }

    async fn query(&self) -> anyhow::Result<Observed> {
        let t = self.transport().await?;
        let out = self
            .slurm(
                t.as_ref(),
                &[
                    "squeue".into(),
                    "-h".into(),
                    format!("--name={}", self.job_name()),
                    "-o".into(),
                    "%i|%T|%r|%N|%L|%k".into(),
                ],
            )
            .await?;
        let mut nodes = Vec::new();
        for line in out.lines() {
            let f: Vec<&str> = line.trim().splitn(6, '|').collect();
            let [id, raw_state, reason, nodelist, left, comment] = f.as_slice() else {
                continue;
            };
            let Some((cluster, fields)) = parse_comment(comment) else {
                continue;
            };
            if cluster != self.name() {
                continue;
            }
            let state = match *raw_state {
                "PENDING" | "CONFIGURING" | "REQUEUED" | "RESIZING" | "SUSPENDED" => {
                    NodeState::Pending
                }
                "RUNNING" => NodeState::Running,
                "COMPLETING" | "STOPPED" | "SIGNALING" => NodeState::ShuttingDown,
                _ => NodeState::Terminated,
            };
            let mut detail = BTreeMap::new();
            // What `daft list` shows: where it runs and the time it has left, or why it waits.
            detail.insert(
                "type".into(),
                if *raw_state == "PENDING" {
                    format!("slurm job, queued ({reason})")
                } else {
                    format!("slurm job on {nodelist}, {left} left")
                },
            );
            detail.insert("reason".into(), reason.to_string());
            detail.insert("nodes".into(), nodelist.to_string());
            detail.insert("time_left".into(), left.to_string());
            let launch: BTreeMap<String, String> = fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "spec" | "setup"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            nodes.push(ObservedNode {
                id: id.to_string(),
                cluster: cluster.clone(),
                role: Role::Head,
                group: String::new(),
                state,
                spec_hash: fields.get("spec").cloned().unwrap_or_default(),
                launch,
                setup_hash: fields.get("setup").filter(|s| *s != "-").cloned(),
                joined_head: None,
                public_ip: None,
                private_ip: None,
                created: 0,
                detail,
            });
        }
        Ok(Observed {
            nodes,
            support: vec![],
        })
    }

    async fn head_transport(&self, head: &ObservedNode) -> anyhow::Result<Arc<dyn Transport>> {
        self.node_transport(&head.id).await
    }

    fn dashboard_route(&self, _head: &ObservedNode) -> DashboardRoute {
        DashboardRoute::Tunnel {
            host: "127.0.0.1".into(),
            port: 8265,
        }
    }

    /// The allocation holds the watcher (templates/slurm.sbatch runs it when the setting
    /// exists); idle, it ends the allocation with `scancel`.
    fn autostop(
        &self,
        head: &ObservedNode,
        _daft_home: &str,
        after: std::time::Duration,
    ) -> Option<crate::autostop::Autostop> {
        Some(crate::autostop::Autostop {
            after,
            dashboard: "http://127.0.0.1:8265".into(),
            halt: format!("scancel {}", shell_quote(&head.id)),
        })
    }

    fn job_arrays(&self) -> Option<&dyn JobArrays> {
        Some(self)
    }
}

/// An allocation's set-up is recorded in its comment (with its spec hash and settings).
#[async_trait]
impl SetupRecord for SlurmProvider {
    async fn record(
        &self,
        node: &ObservedNode,
        _: &ObservedNode,
        hash: &str,
    ) -> anyhow::Result<()> {
        let t = self.transport().await?;
        self.slurm(
            t.as_ref(),
            &[
                "scontrol".into(),
                "update".into(),
                format!("JobId={}", node.id),
                format!("Comment={}", self.comment(&node.spec_hash, Some(hash))),
            ],
        )
        .await?;
        Ok(())
    }
}

/// daft's directory on the node, from a cluster's Slurm directory (`HOME/clusters/NAME/slurm`).
fn home_of(slurm_dir: &str) -> String {
    let p = std::path::Path::new(slurm_dir);
    p.ancestors()
        .nth(3)
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_agent_lives_under_the_daft_directory_of_the_slurm_directory() {
        assert_eq!(
            super::home_of("/home/u/.daft/clusters/c/slurm"),
            "/home/u/.daft"
        );
    }

    use super::*;

    #[test]
    fn the_comment_carries_cluster_hashes_and_settings() {
        let (cluster, f) =
            parse_comment("daft:demo spec=abc setup=- nodes=1 time=1:00:00").unwrap();
        assert_eq!(cluster, "demo");
        assert_eq!(f["spec"], "abc");
        assert_eq!(f["setup"], "-");
        assert_eq!(f["time"], "1:00:00");
        assert!(parse_comment("someone else's job").is_none());
    }
}
