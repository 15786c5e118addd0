//! The job supervisor in daft's job helper (`templates/jobs.py start` and `task`), run here with
//! this machine's python3 on a stand-in cluster directory: the cluster's environment is a venv
//! whose `python` is python3 and whose `activate` sets what a venv's does. No Ray, no root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daft::commands::submit::JobSpec;

struct Cluster {
    _dir: tempfile::TempDir,
    cl: PathBuf,
    helper: PathBuf,
}

fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let cl = dir.path().join("clusters/c");
    let bin = cl.join("venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let py = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v python3"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(py.trim(), bin.join("python")).unwrap();
    std::fs::write(
        bin.join("activate"),
        format!(
            "export VIRTUAL_ENV={v}\nexport PATH={v}/bin:$PATH\n",
            v = cl.join("venv").display()
        ),
    )
    .unwrap();
    std::fs::write(cl.join("ray-address"), "127.0.0.1:6379\n").unwrap();
    let helper = dir.path().join("jobs.py");
    std::fs::write(&helper, daft::templates::JOBS).unwrap();
    Cluster {
        _dir: dir,
        cl,
        helper,
    }
}

fn archive(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("a.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, text) in files {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(text.as_bytes()).unwrap();
    }
    z.finish().unwrap();
    path
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The processes of process group `group` that are not zombies (pid, command line).
fn living_in_group(group: i32) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = read(&e.path().join("stat"));
        // pid (comm) state ppid pgrp ...: the fields after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2] == group.to_string() {
            found.push(format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                read(&e.path().join("cmdline")).replace('\0', " ")
            ));
        }
    }
    found
}

/// `jobs.py start CL JOB` with `spec` on stdin, `$HOME` the cluster's parent directory.
fn start(c: &Cluster, job: &Path, spec: &JobSpec<'_>) -> std::process::Output {
    let mut p = Command::new("python3")
        .env("HOME", c.cl.parent().unwrap())
        .arg(&c.helper)
        .args(["start", c.cl.to_str().unwrap(), job.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(spec.json().as_bytes())
        .unwrap();
    p.wait_with_output().unwrap()
}

/// Until the job's exit status is recorded (at most 20 s).
fn exit_status(job: &Path) -> String {
    let t = Instant::now();
    while !job.join("exit-status").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no exit status in {}",
            job.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    read(&job.join("exit-status")).trim().to_string()
}

#[test]
fn a_started_job_runs_apart_in_the_clusters_environment_and_its_status_is_recorded() {
    let c = cluster();
    let job = c.cl.join("jobs/j1");
    std::fs::create_dir_all(&job).unwrap();
    let zip = archive(
        c.cl.parent().unwrap(),
        &[
            (
                "main.sh",
                "echo \"in $(basename \"$PWD\")\"; echo oops >&2; exit 7\n",
            ),
            (".daft-sync/lib/x.py", "X = 1\n"),
        ],
    );
    let sync = vec!["lib".to_string()];
    let spec = JobSpec {
        command: Some("sh main.sh; s=$?; env > env.txt; exit $s"),
        name: Some("demo"),
        env: [
            ("WANDB_PROJECT".to_string(), "it's $HOME".to_string()),
            ("PATH".to_string(), "/user/bin:/usr/bin:/bin".to_string()),
        ]
        .into(),
        // (daft names the head's files as the head's shell would: `$HOME/...`.)
        ..JobSpec::new("$HOME/a.zip", &sync)
    };
    assert!(zip.ends_with("a.zip"));
    let t = Instant::now();
    let out = start(&c, &job, &spec);
    assert!(out.status.success(), "{out:?}");
    // It answers once the job runs, in the node protocol, and does not wait for the job.
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["daft"], "started", "{said}");
    assert_eq!(said["pid"].to_string(), read(&job.join("pid")).trim());
    assert_eq!(exit_status(&job), "7");
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(read(&job.join("stdout.log")), "in work\n");
    assert_eq!(read(&job.join("stderr.log")), "oops\n");
    for f in ["started", "finished", "supervisor"] {
        assert!(!read(&job.join(f)).trim().is_empty(), "{f}");
    }
    let env = read(&job.join("work/env.txt"));
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in the job's environment:\n{env}"))
            .to_string()
    };
    // The job's own variables are set last (they win, the venv's PATH included), as given.
    assert_eq!(var("WANDB_PROJECT"), "it's $HOME");
    assert_eq!(var("PATH"), "/user/bin:/usr/bin:/bin");
    // The cluster's environment (the venv, Ray's address) and daft's settings.
    assert_eq!(var("VIRTUAL_ENV"), c.cl.join("venv").display().to_string());
    assert_eq!(var("RAY_ADDRESS"), "127.0.0.1:6379");
    assert_eq!(var("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), "0");
    assert_eq!(var("RAY_USAGE_STATS_ENABLED"), "0");
    assert_eq!(var("DAFT_JOB_NAME"), "demo");
    assert_eq!(var("DAFT_JOB_ID"), "j1");
    assert_eq!(var("PYTHONUNBUFFERED"), "1");
    let sync_dir = job.join("work/.daft-sync");
    assert_eq!(var("DAFT_SYNC_DIR"), sync_dir.display().to_string());
    assert!(var("PYTHONPATH").starts_with(&format!("{}:", sync_dir.join("lib").display())));
    // What only the helper's shell had is not the job's.
    assert!(!env.lines().any(|l| l.starts_with("CL=")), "{env}");
    // The job's files are the node user's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(job.join("stdout.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn a_job_whose_archive_would_escape_does_not_start() {
    let c = cluster();
    let job = c.cl.join("jobs/j2");
    std::fs::create_dir_all(&job).unwrap();
    let zip = archive(
        c.cl.parent().unwrap(),
        &[("ok.txt", "1"), ("../escape", "2")],
    );
    let spec = JobSpec {
        command: Some("true"),
        ..JobSpec::new(zip.to_str().unwrap(), &[])
    };
    let out = start(&c, &job, &spec);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to unpack '../escape'"),
        "{out:?}"
    );
    assert!(!job.join("escape").exists() && !job.join("work/ok.txt").exists());
    assert!(!job.join("supervisor").exists(), "nothing started");
}

#[test]
fn a_job_array_task_is_its_jobs_supervisor_and_a_term_stops_the_jobs_group() {
    let c = cluster();
    let zip = archive(
        c.cl.parent().unwrap(),
        &[("run.sh", "echo \"v=$DAFT_VARIANT\"; sleep 60\n")],
    );
    let mut dirs = Vec::new();
    for i in 0..2 {
        let job = c.cl.join(format!("jobs/t{i}"));
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(
            job.join("job.json"),
            format!("{{\"name\": \"sweep-{i}\"}}\n"),
        )
        .unwrap();
        std::fs::write(job.join("variant.json"), format!("{{\"lr\": {i}}}\n")).unwrap();
        std::fs::write(job.join("command"), "sh run.sh\n").unwrap();
        dirs.push(job);
    }
    let list = c.cl.join("sweep.jobs");
    std::fs::write(
        &list,
        dirs.iter()
            .map(|d| format!("{}\n", d.display()))
            .collect::<String>(),
    )
    .unwrap();
    let spec = JobSpec::new(zip.to_str().unwrap(), &[]);
    let mut task = Command::new("python3")
        .arg(&c.helper)
        .args([
            "task",
            c.cl.to_str().unwrap(),
            list.to_str().unwrap(),
            &spec.json(),
        ])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_JOB_ID", "41")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = &dirs[1];
    let t = Instant::now();
    while read(&job.join("stdout.log")).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the task's job did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read(&job.join("stdout.log")), "v={\"lr\": 1}\n");
    assert_eq!(read(&job.join("slurm-task")).trim(), "41_1");
    assert_eq!(read(&job.join("supervisor")).trim(), task.id().to_string());
    assert!(
        !dirs[0].join("supervisor").exists(),
        "task 1 is the second job only"
    );
    let group: i32 = read(&job.join("pid")).trim().parse().unwrap();
    // scancel: TERM to the task; the job's whole group goes, its status is recorded.
    Command::new("kill")
        .args(["-TERM", &task.id().to_string()])
        .status()
        .unwrap();
    let status = task.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert_eq!(exit_status(job), "143");
    let t = Instant::now();
    while !living_in_group(group).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the job's group {group} lives on: {:?}",
            living_in_group(group)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
