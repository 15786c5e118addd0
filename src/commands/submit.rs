//! `daft submit -w DIR -- CMD`: pack DIR, send it to the head (unless it is already there),
//! unpack it into a fresh job directory and run CMD there in the cluster's environment.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::archive::{collect, human_bytes, manifest_hash, pack_files};
use crate::bootstrap::{dquote, TELEMETRY_OFF};
use crate::cli::SubmitArgs;
use crate::error::JobExit;
use crate::provider::daft_home;
use crate::templates::UNPACK;
use crate::transport::{shell_quote, Transport};
use crate::ui::elapsed;

pub async fn run(args: &SubmitArgs) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
    let (provider, head) = super::running_head(&cfg, key).await?;

    // Hash the working directory's content while connecting; pack only what the head lacks.
    let dir = args.working_dir.clone();
    let t0 = Instant::now();
    let hashing = tokio::task::spawn_blocking(move || {
        let files = collect(&dir)?;
        let hash = manifest_hash(&files)?;
        anyhow::Ok((files, hash))
    });
    let transport = provider.head_transport(&head).await?;
    let (files, hash) = hashing
        .await
        .context("reading the working directory failed")??;
    let short = hash[..16].to_string();
    let cluster_dir = format!("{}/clusters/{}", transport.daft_home(), cfg.setup.name);
    let remote_zip = format!("{cluster_dir}/archives/{short}.zip");
    let present = transport
        .capture(&format!("test -f {} && echo present", dquote(&remote_zip)))
        .await?;
    if present.stdout.trim() == "present" {
        eprintln!(
            "daft: the head already has this working directory ({} file(s), {short}); nothing sent",
            files.len()
        );
    } else {
        let archive =
            tokio::task::spawn_blocking(move || pack_files(&files, hash, &daft_home().join("tmp")))
                .await
                .context("packing failed")??;
        eprintln!(
            "daft: packed {} file(s), {} ({} zipped) in {}",
            archive.files,
            human_bytes(archive.bytes),
            human_bytes(archive.zip_bytes),
            elapsed(t0.elapsed())
        );
        let t1 = Instant::now();
        transport.send_file(&archive.path, &remote_zip).await?;
        eprintln!(
            "daft: sent {} to {} in {}",
            human_bytes(archive.zip_bytes),
            transport.describe(),
            elapsed(t1.elapsed())
        );
    }

    let job_id = format!(
        "{}-{}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace([':', 'T'], "-")
            .trim_end_matches('Z'),
        &short[..8]
    );
    let job_dir = format!("{cluster_dir}/jobs/{job_id}");
    eprintln!(
        "daft: job {job_id} on {}: {}",
        transport.describe(),
        args.command.join(" ")
    );
    let status = run_job(
        transport,
        &cluster_dir,
        &job_dir,
        &remote_zip,
        &args.command.join(" "),
    )
    .await?;
    if status != 0 {
        eprintln!(
            "daft: job {job_id} exited with status {status}; its output is kept in {job_dir}"
        );
        return Err(JobExit(status).into());
    }
    Ok(())
}

/// The shell script that unpacks and runs the job on the head (bash, for process substitution).
pub fn job_script(cluster_dir: &str, job_dir: &str, archive: &str, command: &str) -> String {
    let env: String = TELEMETRY_OFF
        .iter()
        .map(|(k, v)| format!(" {k}={v}"))
        .collect();
    format!(
        r#"set -e
CL={cl}
J={j}
mkdir -p "$J/work"
"$CL/venv/bin/python" - {zip} "$J/work" > /dev/null <<'DAFT_UNPACK_EOF'
{unpack}
DAFT_UNPACK_EOF
cd "$J/work"
. "$CL/venv/bin/activate"
{cluster_env}
export PYTHONUNBUFFERED=1 DAFT_JOB_DIR="$J"{env}
set +e
setsid --wait sh -c 'echo $$ > "$0/pid"; exec sh -c "$1"' "$J" {cmd} > >(tee "$J/stdout.log") 2> >(tee "$J/stderr.log" >&2)
rc=$?
echo "$rc" > "$J/exit-status"
exit "$rc"
"#,
        cl = dquote(cluster_dir),
        j = dquote(job_dir),
        zip = dquote(archive),
        unpack = UNPACK.trim_end(),
        cluster_env = crate::bootstrap::CLUSTER_ENV,
        cmd = shell_quote(command),
    )
}

async fn run_job(
    t: Arc<dyn Transport>,
    cluster_dir: &str,
    job_dir: &str,
    archive: &str,
    command: &str,
) -> anyhow::Result<i32> {
    let script = job_script(cluster_dir, job_dir, archive, command);
    let cmd = format!("bash -c {}", shell_quote(&script));
    let runner = {
        let t = t.clone();
        tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            let mut err = tokio::io::stderr();
            t.run(&cmd, &mut out, &mut err).await
        })
    };
    tokio::pin!(runner);
    tokio::select! {
        r = &mut runner => return r.context("the job runner stopped")?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ndaft: stopping the job (Ctrl-C)");
        }
    }
    // Ctrl-C: interrupt the job's process group, then kill it if it lingers.
    let kill = format!(
        "p=$(cat {j}/pid 2>/dev/null) || exit 0; kill -INT -$p 2>/dev/null; i=0; \
         while kill -0 -$p 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; kill -KILL -$p 2>/dev/null; true",
        j = dquote(job_dir)
    );
    let _ = t.capture(&kill).await;
    match tokio::time::timeout(std::time::Duration::from_secs(10), &mut runner).await {
        Ok(r) => Ok(r.context("the job runner stopped")?.unwrap_or(130)),
        Err(_) => Ok(130),
    }
}
