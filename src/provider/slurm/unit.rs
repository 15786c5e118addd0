//! A Slurm allocation is one declared unit, like a RayCluster: the plan creates, updates
//! (a new allocation for new settings; the set-up again for new setup commands), keeps or
//! deletes it as a whole; its nodes come and go with it. Its settings are in its comment.

use super::*;
use crate::model::{DesiredResource, ObservedResource};
use crate::provider::{DeclarativeProvider, UpOptions};

/// What plans call an allocation.
pub const KIND: &str = "Slurm job";

impl SlurmProvider {
    /// What the plan compares: the allocation's settings and the set-up recorded in its comment.
    fn settings(
        launch: &BTreeMap<String, String>,
        setup: Option<&str>,
    ) -> BTreeMap<String, String> {
        let mut s = launch.clone();
        s.insert("setup".into(), setup.unwrap_or_default().to_string());
        s
    }

    /// The allocations of this cluster still in the queue, newest first (the one the plan is
    /// about; any other is an earlier one an interrupted `up` left).
    async fn allocations(&self) -> anyhow::Result<Vec<ObservedNode>> {
        let mut live: Vec<ObservedNode> = self
            .query()
            .await?
            .nodes
            .into_iter()
            .filter(|n| n.state.is_alive())
            .collect();
        live.sort_by(|a, b| {
            let num = |n: &ObservedNode| n.id.parse::<u64>().unwrap_or(0);
            num(b).cmp(&num(a))
        });
        Ok(live)
    }

    /// `sbatch` the allocation; its job id.
    async fn submit(&self, pb: &ProgressBar) -> anyhow::Result<ObservedNode> {
        let t = self.transport().await?;
        let dir = self.abs_dir(t.as_ref()).await?;
        pb.set_message("asking Slurm for an allocation (sbatch)");
        // The cluster's Ray token, its nodes' pre-commands, then the head's bootstrap and the
        // batch script, beside it.
        bootstrap::ensure_head_token(t.as_ref(), self.name()).await?;
        let pre = self.slurm.pre_commands.join("\n");
        t.write_file(
            format!("{pre}\n").trim_start().as_bytes(),
            &format!("{}/clusters/{}/pre.sh", t.daft_home(), self.name()),
        )
        .await?;
        let params = self.head_params(t.as_ref());
        t.write_file(
            bootstrap::render(&params).as_bytes(),
            &format!("{dir}/bootstrap-head.sh"),
        )
        .await?;
        // The workers' (one script for every other node of the allocation): each node's name,
        // the head's address and the allocation's id come from where it runs.
        let worker = NodeParams {
            role: Some(Role::Worker),
            from_env: vec![
                "DAFT_NODE",
                "DAFT_HEAD_ADDRESS",
                "DAFT_HEAD_ID",
                "DAFT_RAY_TMP",
            ],
            node_json: NodeRecord::minimal(self.name(), Role::Worker, Some("slurm")).json(),
            ..params
        };
        t.write_file(
            bootstrap::render(&worker).as_bytes(),
            &format!("{dir}/bootstrap-worker.sh"),
        )
        .await?;
        let spec = self.spec();
        let spec_hash = spec.hash();
        let script = format!("{dir}/allocation.sbatch");
        let tag = self.tmp_tag(t.as_ref());
        t.write_file(
            self.batch_script(&dir, &spec_hash, &tag).as_bytes(),
            &script,
        )
        .await?;
        let out = match self
            .slurm(
                t.as_ref(),
                &["sbatch".into(), "--parsable".into(), script.clone()],
            )
            .await
        {
            Ok(out) => out,
            Err(e) => return Err(self.refused(e)),
        };
        let id = out.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            bail!("sbatch answered {out:?}, not a job id");
        }
        say(pb, format!("  Slurm job {id} submitted"));
        Ok(ObservedNode {
            id,
            cluster: self.name().to_string(),
            role: Role::Head,
            group: String::new(),
            state: NodeState::Pending,
            spec_hash,
            launch: spec.launch.clone(),
            setup_hash: None,
            joined_head: None,
            public_ip: None,
            private_ip: None,
            created: crate::time::now_secs(),
            detail: BTreeMap::new(),
        })
    }

    /// Through the queue to a running head, then its setup commands, recorded in the comment.
    async fn wait_up(&self, node: &ObservedNode, pb: &ProgressBar) -> anyhow::Result<ObservedNode> {
        let t = self.transport().await?;
        let dir = self.dir(t.as_ref());
        let wait = queue_wait();
        let deadline = Instant::now() + wait;
        let mut last_reason = String::new();
        // Asked less and less often (from 0.5 s to every 3 s): slurmctld is shared.
        let mut delays = crate::wait::delays(Duration::from_millis(500), Duration::from_secs(3));
        // 1. Through the queue, saying why it waits.
        loop {
            match self.job_state(t.as_ref(), &node.id).await? {
                None => {
                    let log = self.allocation_log(t.as_ref(), &node.id).await;
                    bail!(
                        "Slurm job {} ended before its Ray head was up; the end of its log:\n{}",
                        node.id,
                        bootstrap::indent(log.trim_end())
                    );
                }
                Some((state, reason, nodes)) if state == "PENDING" => {
                    if reason != last_reason {
                        say(pb, format!("  Slurm job {} is queued: {reason}", node.id));
                        last_reason = reason.clone();
                    }
                    pb.set_message(format!(
                        "waiting in Slurm's queue ({reason}), up to {}; Ctrl-C leaves it queued",
                        humantime::format_duration(wait)
                    ));
                    let _ = nodes;
                }
                Some((state, _, nodes)) if state == "RUNNING" => {
                    // 2. The head's Ray: the batch script says so once it runs.
                    pb.set_message(format!(
                        "installing the environment and starting Ray on {nodes} (Slurm job {})",
                        node.id
                    ));
                    let ready = t
                        .capture(&format!(
                            "cat {} 2>/dev/null || true",
                            dquote(&format!("{dir}/ready-{}", node.id))
                        ))
                        .await?;
                    if ready.stdout.trim().starts_with(&node.id) {
                        break;
                    }
                }
                Some(_) => {}
            }
            if Instant::now() > deadline {
                bail!(
                    "Slurm job {} did not start its Ray head within {} ({}); it is still in the \
                     queue: `daft down` cancels it, DAFT_SLURM_QUEUE_WAIT_SECS waits longer",
                    node.id,
                    humantime::format_duration(wait),
                    if last_reason.is_empty() {
                        "running"
                    } else {
                        last_reason.as_str()
                    }
                );
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(3))).await;
        }
        // 3. setup_commands, then the setup hash in the allocation's comment.
        let hash = bootstrap::setup_hash(&self.cfg);
        let t = self.node_transport(&node.id).await?;
        let autostop = crate::autostop::AutostopSetting::for_node(
            crate::model::Role::Head,
            self.cfg.setup.autostop,
            |d| Provider::autostop(self, node, &t.daft_home(), d),
        );
        setup::set_up(
            &self.cfg,
            NodeSetup {
                node,
                head: node,
                hash: &hash,
                bootstrap: Bootstrap::Done,
                autostop,
            },
            || async { Ok(t.clone()) },
            self,
            pb,
        )
        .await
    }

    /// `scancel` these allocations and wait until they have left the queue.
    async fn cancel(&self, nodes: &[ObservedNode], pb: &ProgressBar) -> anyhow::Result<()> {
        let t = self.transport().await?;
        for n in nodes {
            pb.set_message(format!("cancelling Slurm job {}", n.id));
            self.slurm(t.as_ref(), &["scancel".into(), n.id.clone()])
                .await?;
        }
        // Gone when it has left the queue (its batch script stops Ray by PID first).
        let limit = Duration::from_secs(180);
        let deadline = Instant::now() + limit;
        let mut delays = crate::wait::delays(Duration::from_millis(500), Duration::from_secs(5));
        for n in nodes {
            pb.set_message(format!(
                "waiting for Slurm job {} to leave the queue, up to {}",
                n.id,
                humantime::format_duration(limit)
            ));
            while self.job_state(t.as_ref(), &n.id).await?.is_some() {
                if Instant::now() > deadline {
                    bail!(
                        "Slurm job {} is still in the queue {} after scancel",
                        n.id,
                        humantime::format_duration(limit)
                    );
                }
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
            }
            let _ = t
                .capture(&format!(
                    "rm -f {}",
                    dquote(&format!("{}/ready-{}", self.dir(t.as_ref()), n.id))
                ))
                .await;
        }
        Ok(())
    }
}

#[async_trait]
impl DeclarativeProvider for SlurmProvider {
    async fn desired_resource(&self) -> DesiredResource {
        let spec = self.spec();
        let launch: BTreeMap<String, String> = spec.launch.clone();
        DesiredResource {
            kind: KIND.into(),
            name: self.job_name(),
            settings: Self::settings(&launch, Some(&bootstrap::setup_hash(&self.cfg))),
            workers: self.cfg.setup.number_of_workers,
            scaling: None,
            manifest: serde_json::Value::Null,
        }
    }

    async fn observe_resource(&self) -> anyhow::Result<ObservedResource> {
        let live = self.allocations().await?;
        let current = live.first();
        Ok(ObservedResource {
            kind: KIND.into(),
            name: self.job_name(),
            exists: current.is_some(),
            // The comment names the cluster: every allocation found is daft's.
            managed_by_daft: true,
            deleting: current.is_some_and(|n| n.state == NodeState::ShuttingDown),
            settings: current
                .map(|n| Self::settings(&n.launch, n.setup_hash.as_deref()))
                .unwrap_or_default(),
            pods: live,
        })
    }

    async fn apply_resource(&self, want: &DesiredResource, pb: &ProgressBar) -> anyhow::Result<()> {
        let live = self.allocations().await?;
        let same = |n: &ObservedNode| {
            let have = Self::settings(&n.launch, None);
            let mut want = want.settings.clone();
            want.insert("setup".into(), String::new());
            have == want && n.state != NodeState::ShuttingDown
        };
        match live.first() {
            // The same settings: this allocation stays (its set-up is `wait_ready`'s); earlier
            // ones an interrupted `up` left go.
            Some(first) if same(first) => {
                if live.len() > 1 {
                    self.cancel(&live[1..], pb).await?;
                }
            }
            // New settings: a new allocation, once the old ones have gone (they share the
            // cluster's node directory).
            _ => {
                if !live.is_empty() {
                    self.cancel(&live, pb).await?;
                }
                self.submit(pb).await?;
            }
        }
        Ok(())
    }

    async fn wait_ready(
        &self,
        _want: &DesiredResource,
        _opts: UpOptions,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode> {
        // (The workers join as the batch script starts them: the head's readiness is the
        // allocation's.)
        let live = self.allocations().await?;
        let Some(node) = live.first() else {
            bail!("the Slurm job of cluster {:?} left the queue before it was up; `daft up` asks for a new one", self.name());
        };
        self.wait_up(node, pb).await
    }

    async fn delete_resource(&self, pb: &ProgressBar) -> anyhow::Result<()> {
        let live = self.allocations().await?;
        self.cancel(&live, pb).await
    }
}
