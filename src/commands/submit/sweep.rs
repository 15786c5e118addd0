//! `submit --sweep`: every variant a job of its own, run through the one sweep scheduler (or
//! as the back-end's job array), with a table of how each ended.

use super::*;

/// One row of a sweep's summary.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct SweepRow {
    job: String,
    variant: String,
    state: String,
    duration: String,
    exit_status: Option<i32>,
}

/// A sweep's jobs on the cluster's head, for the scheduler: each started under its supervisor
/// (or all at once as the back-end's job array), their ends read from the head's job records.
pub(super) struct SubmitSweep<'a> {
    job: &'a Prepared,
    sweep: &'a crate::sweep::Sweep,
    commands: Vec<String>,
    head: jobs::Head,
    /// Per variant: (job id, since when it runs, whether its start was said).
    ids: BTreeMap<usize, (String, Instant, bool)>,
    rows: Vec<Option<SweepRow>>,
    arrays: Option<(&'a dyn crate::provider::JobArrays, String)>,
    pr: &'a Printer,
}

#[async_trait::async_trait]
impl crate::scheduler::SweepJobs for SubmitSweep<'_> {
    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let variant = &self.sweep.variants[i];
        let name = format!("{}-{}", self.sweep.name, i + 1);
        let (id, _) = self
            .job
            .start(&name, &self.commands[i], Some(variant))
            .await?;
        crate::note!(
            self.pr,
            "[{}/{}] {name} started ({}): {id}",
            i + 1,
            self.rows.len(),
            crate::sweep::describe(variant)
        );
        self.ids.insert(i, (id, Instant::now(), true));
        Ok(())
    }

    async fn wait(
        &mut self,
        running: &std::collections::BTreeSet<usize>,
        within: Duration,
    ) -> anyhow::Result<Vec<usize>> {
        tokio::time::sleep(within).await;
        let records = jobs::records(&self.head).await?;
        let total = self.rows.len();
        let mut ended = Vec::new();
        for &i in running {
            let Some((id, started, said)) = self.ids.get_mut(&i) else {
                continue;
            };
            let rec = records.iter().find(|r| &r.id == id);
            if let Some(r) = rec.filter(|r| !*said && r.started.is_some()) {
                // A task of the array has started.
                *started = Instant::now();
                *said = true;
                crate::note!(
                    self.pr,
                    "[{}/{total}] {}-{} started ({}): {}",
                    i + 1,
                    self.sweep.name,
                    i + 1,
                    crate::sweep::describe(&self.sweep.variants[i]),
                    r.id
                );
            }
            if let Some(r) = rec.filter(|r| !matches!(r.state.as_str(), "queued" | "running")) {
                let took = elapsed(started.elapsed());
                let name = format!("{}-{}", self.sweep.name, i + 1);
                crate::note!(
                    self.pr,
                    "[{}/{total}] {name} {} in {took}{}",
                    i + 1,
                    r.state,
                    r.exit_status
                        .map(|c| format!(" (exit status {c})"))
                        .unwrap_or_default()
                );
                self.rows[i] = Some(SweepRow {
                    job: name,
                    variant: crate::sweep::describe(&self.sweep.variants[i]),
                    state: r.state.clone(),
                    duration: took,
                    exit_status: r.exit_status,
                });
                ended.push(i);
            }
        }
        Ok(ended)
    }

    /// Cancel the running jobs (an array's tasks through the back-end); they end as `wait`
    /// reads their records (cancelled).
    async fn stop(
        &mut self,
        running: &std::collections::BTreeSet<usize>,
    ) -> anyhow::Result<Vec<usize>> {
        let records = jobs::records(&self.head).await?;
        let dir_of = |i: &usize| {
            let id = &self.ids.get(i)?.0;
            records
                .iter()
                .find(|r| &r.id == id)
                .map(|r| (id.clone(), r.dir.clone()))
        };
        if let Some((arrays, array)) = &self.arrays {
            // Marked first: what the tasks record on their way out is a cancellation.
            for (id, dir) in running.iter().filter_map(dir_of) {
                if let Err(e) = self
                    .job
                    .transport
                    .write_file(b"", &format!("{dir}/cancelled"))
                    .await
                {
                    crate::warn!(self.pr, "daft: could not mark job {id} as cancelled: {e:#}");
                }
            }
            arrays.cancel_array(array).await?;
        }
        for (id, dir) in running.iter().filter_map(dir_of) {
            match tokio::time::timeout(Duration::from_secs(30), jobs::cancel_job(&self.head, &dir)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => crate::warn!(self.pr, "daft: could not cancel job {id}: {e:#}; `daft cancel {id}` tries again"),
                Err(_) => crate::warn!(self.pr, "daft: job {id} did not confirm its cancellation within 30s; `daft cancel {id}` tries again"),
            }
        }
        Ok(Vec::new())
    }

    fn name(&self, i: usize) -> String {
        self.ids.get(&i).map(|j| j.0.clone()).unwrap_or_default()
    }
}

/// Start a sweep's jobs, `max_parallel` at a time; one line per job as it starts and ends; a
/// summary table. Fails (exit 1) when any job did not succeed.
pub(super) async fn run_sweep(
    job: &Prepared,
    sweep: &crate::sweep::Sweep,
    command: &str,
    arrays: Option<&dyn crate::provider::JobArrays>,
    pr: &Printer,
) -> anyhow::Result<()> {
    use crate::sweep::as_args;
    let total = sweep.variants.len();
    let command_of = |variant: &BTreeMap<String, serde_json::Value>| {
        let mut cmd = command.to_string();
        if sweep.args {
            for a in as_args(variant) {
                cmd.push(' ');
                cmd.push_str(&shell_quote(&a));
            }
        }
        cmd
    };
    let head = jobs::Head {
        transport: job.transport.clone(),
        cluster_dir: job.cluster_dir.clone(),
    };
    crate::note!(
        pr,
        "daft: sweep {:?}: {total} job(s), {} at a time, on {}",
        sweep.name,
        sweep.max_parallel,
        job.transport.describe()
    );
    let t0 = Instant::now();
    let commands: Vec<String> = sweep.variants.iter().map(command_of).collect();
    let mut run = SubmitSweep {
        job,
        sweep,
        commands,
        head,
        ids: Default::default(),
        rows: vec![None; total],
        arrays: None,
        pr,
    };
    let mut started = std::collections::BTreeSet::new();
    if let Some(arrays) = arrays {
        // The back-end's own job array: every variant's job prepared, one submission.
        let mut dirs = Vec::new();
        for (i, variant) in sweep.variants.iter().enumerate() {
            let name = format!("{}-{}", sweep.name, i + 1);
            let (id, dir) = job.prepare(&name, &run.commands[i], Some(variant)).await?;
            run.ids.insert(i, (id, Instant::now(), false));
            started.insert(i);
            dirs.push(dir);
        }
        // (The tasks run the head's job helper: it is there before they are queued.)
        agent::JOBS.ensure(job.transport.as_ref()).await?;
        let spec = JobSpec::new(&job.remote_zip, &job.sync_names);
        let script = array_script(&job.transport.daft_home(), &job.cluster_dir, &spec);
        let id = arrays
            .submit_array(&crate::provider::ArrayRequest {
                name: &sweep.name,
                job_dirs: &dirs,
                script: &script,
                max_parallel: sweep.max_parallel,
                env_input: job.env_input(),
            })
            .await?;
        crate::note!(
            pr,
            "daft: sweep {:?} is job array {id}: {total} task(s), {} at a time",
            sweep.name,
            sweep.max_parallel
        );
        run.arrays = Some((arrays, id));
    }
    let outcome = crate::scheduler::run(
        &mut run,
        total,
        sweep.max_parallel,
        started,
        Duration::from_millis(500),
        STOP_WITHIN,
        crate::interrupt::token(),
    )
    .await?;
    if !outcome.left_running.is_empty() {
        crate::note!(
            pr,
            "daft: `daft jobs` shows them, `daft cancel JOB` stops one"
        );
    }
    let interrupted = outcome.interrupted;
    let rows = run.rows;
    let rows: Vec<SweepRow> = rows.into_iter().flatten().collect();
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(["JOB", "VARIANT", "STATE", "DURATION", "EXIT"]);
    for r in &rows {
        t.add_row([
            r.job.clone(),
            r.variant.clone(),
            r.state.clone(),
            r.duration.clone(),
            r.exit_status.map(|c| c.to_string()).unwrap_or_default(),
        ]);
    }
    match pr.format() {
        crate::cli::OutputFormat::Json => pr.json(&rows)?,
        crate::cli::OutputFormat::Text => crate::outln!(pr, "{t}")?,
    }
    let failed = rows.iter().filter(|r| r.state != "succeeded").count();
    let not_started = total - rows.len();
    crate::note!(
        pr,
        "daft: sweep {:?}: {} of {total} succeeded{}{} in {}",
        sweep.name,
        rows.len() - failed,
        if failed > 0 {
            format!(", {failed} did not")
        } else {
            String::new()
        },
        if not_started > 0 {
            format!(", {not_started} not started")
        } else {
            String::new()
        },
        elapsed(t0.elapsed())
    );
    if interrupted {
        return Err(JobExit(130).into());
    }
    if failed > 0 || not_started > 0 {
        return Err(anyhow!(
            "{} of {total} job(s) of sweep {:?} did not succeed; `daft logs JOB` shows their output",
            failed + not_started,
            sweep.name
        ));
    }
    Ok(())
}
