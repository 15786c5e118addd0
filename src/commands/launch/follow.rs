//! Following a launched job: every pod's logs as they come (streams reopened when cut), the
//! job's own status as its controller writes it, and its pods' problems in words.

use super::*;

/// Follow a launched job: its pods' logs (each line prefixed with its pod), the reason a pod
/// cannot start, the job's end; exit with its status.
pub(super) async fn follow(
    c: &Connection,
    cfg: &LaunchConfig,
    job: &str,
    start_timeout: Duration,
    start: Instant,
    interactive: bool,
    pr: &Printer,
) -> anyhow::Result<()> {
    let api = objects(c, cfg);
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut followed: BTreeSet<String> = BTreeSet::new();
    let mut streams = tokio::task::JoinSet::new();
    let began = Instant::now();
    let mut started = false;
    let mut last_wait = String::new();
    let interrupted = crate::interrupt::interrupted();
    tokio::pin!(interrupted);
    let mut changes = PodChanges::watch(pods.clone(), watch_selector(cfg, job));
    let verdict = loop {
        while let Ok(line) = rx.try_recv() {
            crate::outln!(pr, "{line}")?;
        }
        let obj = call(&format!("read the {}", kind(cfg)), api.get_opt(job)).await?;
        let Some(obj) = obj else {
            return Err(anyhow!(
                "{} {job} is gone from {} (deleted, or removed after its ttl)",
                kind(cfg),
                c.namespace
            ));
        };
        let status = &obj.data["status"];
        let verdict = if katib(cfg).is_some() {
            manifests::katib_verdict(status)
        } else if cfg.workers > 0 {
            manifests::rayjob_verdict(status)
        } else {
            manifests::job_verdict(status)
        };
        // Every pod of the job: its logs once it runs, its reason while it cannot.
        for sel in pod_selectors(cfg, job, Some(&obj)) {
            let list = call(
                "list the job's pods",
                pods.list(&ListParams::default().labels(&sel)),
            )
            .await?;
            for p in list.items {
                let name = p.metadata.name.clone().unwrap_or_default();
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                if matches!(phase.as_str(), "Running" | "Succeeded" | "Failed") {
                    started = true;
                    if followed.insert(name.clone()) {
                        let pods = pods.clone();
                        let tx = tx.clone();
                        streams.spawn(async move { stream_logs(pods, name, tx).await });
                    }
                } else if let Some(problem) = pod_problem(&p, &[]) {
                    if problem.fatal {
                        return Err(anyhow!(
                            "{} {job} cannot start: {}\nThe job is left as it is: delete it with `daft launch -f {} --delete {job}`",
                            kind(cfg),
                            problem.text,
                            cfg.display_path
                        ));
                    }
                    if problem.text != last_wait {
                        crate::note!(
                            pr,
                            "daft: waiting up to {} for the job to start: {}",
                            humantime::format_duration(start_timeout),
                            problem.text
                        );
                        last_wait = problem.text.clone();
                    }
                }
            }
        }
        match verdict {
            Verdict::Running(_) => {}
            v => break v,
        }
        if !started && began.elapsed() > start_timeout {
            return Err(anyhow!(
                "{} {job} did not start within {} ({}); it is left as it is: follow it with `daft launch -f {f} --follow {job}` or delete it with `daft launch -f {f} --delete {job}`",
                kind(cfg),
                humantime::format_duration(start_timeout),
                if last_wait.is_empty() { "no pod yet".to_string() } else { last_wait.clone() },
                f = cfg.display_path
            ));
        }
        tokio::select! {
            _ = changes.next(Duration::from_millis(500)) => {}
            _ = &mut interrupted, if interactive => {
                return interrupted_job(c, cfg, job, pr).await;
            }
        }
    };
    // The job ended: the rest of its pods' output (bounded), then its status.
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while streams.join_next().await.is_some() {}
    })
    .await;
    drop(tx);
    while let Some(line) = rx.recv().await {
        crate::outln!(pr, "{line}")?;
    }
    match verdict {
        Verdict::Succeeded => {
            if katib(cfg).is_some() {
                if let Ok(Some(o)) = api.get_opt(job).await {
                    if let Some(best) = manifests::katib_best(&o.data["status"]) {
                        crate::outln!(pr, "best trial: {best}")?;
                    }
                }
            }
            crate::note!(
                pr,
                "daft: {} {job} succeeded in {}",
                kind(cfg),
                elapsed(start.elapsed())
            );
            Ok(())
        }
        Verdict::Failed(why) => {
            crate::note!(pr, "daft: {} {job} failed: {why}", kind(cfg));
            Err(JobExit(1).into())
        }
        Verdict::Running(_) => unreachable!("the loop ends on an ending"),
    }
}

/// How often a pod's log stream that ended while the pod still runs is opened again.
pub(super) const LOG_REOPENS: usize = 20;

/// One pod's log, followed to its end, line by line with the pod's name in front. A stream that
/// ends while the pod still runs (an API server or kubelet dropping it) is opened again, from the
/// start, its lines already printed skipped; once the pod has ended, one last read brings what
/// the stream missed.
pub(super) async fn stream_logs(
    pods: Api<Pod>,
    name: String,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) {
    let mut printed = 0usize;
    let mut send = |i: usize, l: &str| {
        if i >= printed {
            let _ = tx.send(format!("[{name}] {l}"));
            printed = i + 1;
        }
    };
    // (Followed once the pod runs; after a stream that ended early, the pod's phase decides.)
    let mut ended = false;
    for attempt in 0..=LOG_REOPENS {
        let lp = LogParams {
            follow: !ended,
            ..Default::default()
        };
        tracing::debug!(target: "daft::kube", pod = %name, attempt, follow = !ended, "pod log");
        match call("read the pod's log", pods.log_stream(&name, &lp)).await {
            Ok(stream) => {
                let mut lines = stream.lines();
                let mut i = 0usize;
                while let Some(Ok(l)) = lines.next().await {
                    send(i, &l);
                    i += 1;
                }
            }
            Err(e) => {
                let _ = tx.send(format!(
                    "[{name}] (daft: cannot read this pod's log: {e:#})"
                ));
                return;
            }
        }
        if ended {
            return;
        }
        // The stream ended: over (one last read brings what it missed), or cut short while the
        // pod runs on (opened again)?
        ended = pod_ended(&pods, &name).await;
        if !ended {
            tracing::debug!(target: "daft::kube", pod = %name, "the log stream ended while the pod runs: opening it again");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The pod has ended (Succeeded or Failed), or is gone.
pub(super) async fn pod_ended(pods: &Api<Pod>, name: &str) -> bool {
    match call("read the pod", pods.get_opt(name)).await {
        Ok(Some(p)) => matches!(
            p.status.and_then(|s| s.phase).as_deref(),
            Some("Succeeded" | "Failed")
        ),
        Ok(None) => true,
        Err(_) => true,
    }
}
