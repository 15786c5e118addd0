//! Sweeps on Slurm: one `sbatch --array=0-N%max_parallel`, each task running its variant's job
//! in its own small allocation.

use super::*;

/// Sweeps on Slurm: one `sbatch --array=0-N%max_parallel`, each task running its variant's job
/// in its own small allocation (the allocation's settings of `[setup.slurm]`).
#[async_trait]
impl JobArrays for SlurmProvider {
    async fn submit_array(&self, req: &ArrayRequest<'_>) -> anyhow::Result<String> {
        let t = self.transport().await?;
        let dir = self.abs_dir(t.as_ref()).await?;
        let stamp = format!("{}-{}", req.name, crate::time::now_secs());
        let list = format!("{dir}/sweep-{stamp}.jobs");
        t.write_file(format!("{}\n", req.job_dirs.join("\n")).as_bytes(), &list)
            .await?;
        let mut lines = vec![
            "#!/bin/bash".to_string(),
            format!("#SBATCH --job-name={}-sweep", self.job_name()),
            format!(
                "#SBATCH --comment=\"daft-sweep:{} {}\"",
                self.name(),
                req.name
            ),
            format!(
                "#SBATCH --array=0-{}%{}",
                req.job_dirs.len().saturating_sub(1),
                req.max_parallel
            ),
            "#SBATCH --ntasks=1".into(),
            format!("#SBATCH --output={dir}/sweep-{stamp}-%a.log"),
        ];
        lines.extend(self.sbatch_options());
        let script = format!("{}\n{}", lines.join("\n"), req.script);
        let script_path = format!("{dir}/sweep-{stamp}.sbatch");
        t.write_file(script.as_bytes(), &script_path).await?;
        // The jobs' environment: read from stdin into sbatch's own (Slurm hands it to every
        // task), never on a command line or in a file of daft's.
        let cmd = format!(
            "bash -c {}",
            shell_quote(&format!(
                "while IFS= read -r -d '' kv; do export \"$kv\"; done; exec sbatch --parsable --export=ALL {} {}",
                dquote(&script_path),
                dquote(&list)
            ))
        );
        let out = t
            .capture_cmd(
                &RemoteCommand::shown_as(cmd, format!("sbatch --array {script_path} {list}"))
                    .with_input(req.env_input.clone()),
            )
            .await?;
        if out.status != 0 {
            return Err(self.refused(anyhow::anyhow!(
                "`sbatch` failed on {} (exit status {}): {}",
                t.describe(),
                out.status,
                out.stderr.trim()
            )));
        }
        let id = out
            .stdout
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            bail!("sbatch answered {:?}, not a job id", out.stdout.trim());
        }
        // Each job knows its task: `daft cancel` reaches it through Slurm, queued or running.
        for (i, d) in req.job_dirs.iter().enumerate() {
            t.write_file(format!("{id}_{i}\n").as_bytes(), &format!("{d}/slurm-task"))
                .await?;
        }
        Ok(id)
    }

    async fn cancel_array(&self, id: &str) -> anyhow::Result<()> {
        let t = self.transport().await?;
        self.slurm(t.as_ref(), &["scancel".into(), id.to_string()])
            .await?;
        Ok(())
    }
}
