//! Real Ray clusters, brought up by the `daft` binary: the local provider on this machine and the
//! SSH-hosts provider over real sshd on 127.0.0.2 / 127.0.0.3. Environments are created by daft
//! itself with uv (from PyPI, with uv's cache). These tests run one at a time (they share ports).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::Sshd;

static SERIAL: Mutex<()> = Mutex::new(());

struct DownOnPanic(StdCommand);

impl Drop for DownOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.output();
        }
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("daft-home")
    }
    /// A guard that takes the cluster of `cfg` down if the test fails before it does, so a
    /// failed test leaves no Ray running (daft down stops the nodes by PID).
    fn down_on_panic(&self, cfg: &str) -> DownOnPanic {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"));
        cmd.current_dir(self.dir.path())
            .env("DAFT_HOME", self.home())
            .env("HOME", self.dir.path())
            .args(["down", "-c", cfg, "--yes"]);
        DownOnPanic(cmd)
    }

    fn daft(&self) -> Command {
        let mut c = Command::from_std(self.std_daft());
        c.timeout(Duration::from_secs(900));
        c
    }
    /// The same daft as a plain process (for its own stdout, such as a closed pipe).
    fn std_daft(&self) -> StdCommand {
        let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"));
        c.current_dir(self.dir.path())
            .env("DAFT_HOME", self.home())
            .env("HOME", self.dir.path())
            .env("UV_CACHE_DIR", common::uv_cache())
            .env("DAFT_SSH_DEADLINE_SECS", "20")
            // (`[run] env_from_local` of the local test's config.)
            .env("FROM_LOCAL", "local-default")
            .env("RUST_LOG", "warn");
        c
    }
    /// `daft ARGS...`, which must succeed.
    fn ok(&self, args: &[&str]) -> std::process::Output {
        let o = self.daft().args(args).output().unwrap();
        assert!(o.status.success(), "daft {args:?} failed:\n{}", out(&o));
        o
    }
    /// `daft submit -c CFG -w DIR -- CMD...`
    fn submit(&self, cfg: &str, dir: &str, cmd: &[&str]) -> std::process::Output {
        let mut args = vec!["submit", "-c", cfg, "-w", dir, "--"];
        args.extend_from_slice(cmd);
        self.daft().args(args).output().unwrap()
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn out(o: &std::process::Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Files below `dir` whose name ends with `suffix`.
fn count_files(dir: &Path, suffix: &str) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path(), suffix),
            Ok(t) if t.is_file() && e.file_name().to_string_lossy().ends_with(suffix) => 1,
            _ => 0,
        })
        .sum()
}

/// `o`'s standard output contains `needle` (both outputs shown if not).
fn assert_stdout(o: &std::process::Output, needle: &str) {
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(needle),
        "expected {needle:?} in\n{}",
        out(o)
    );
}

/// (local address, process) of every listening TCP socket held by a process whose command line
/// mentions one of `needles`, read from /proc/net/tcp{,6} and the processes' fds.
fn listeners_of(needles: &[String]) -> Vec<(String, String)> {
    let mut inodes = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !needles.iter().any(|n| cmd.contains(n.as_str())) {
            continue;
        }
        if let Ok(fds) = std::fs::read_dir(e.path().join("fd")) {
            for fd in fds.flatten() {
                if let Ok(l) = std::fs::read_link(fd.path()) {
                    let l = l.to_string_lossy().to_string();
                    if let Some(i) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                        inodes.insert(
                            i.to_string(),
                            cmd.split(' ').next().unwrap_or("").to_string(),
                        );
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let Some(who) = inodes.get(f[9]) else {
                continue;
            };
            let (ip, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let addr = if v6 {
                if ip.chars().all(|c| c == '0') {
                    format!("[::]:{port}")
                } else {
                    format!("[{ip}]:{port}")
                }
            } else {
                let n = u32::from_str_radix(ip, 16).unwrap();
                let b = n.to_le_bytes();
                format!("{}.{}.{}.{}:{port}", b[0], b[1], b[2], b[3])
            };
            found.push((addr, who.clone()));
        }
    }
    found
}

fn node_tmp_dirs(home: &Path, cluster: &str) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(home.join("clusters").join(cluster).join("nodes")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path().join("ray.tmp")) {
                v.push(t.trim().to_string());
            }
        }
    }
    v
}

/// Jobs on a running cluster (`cfg`: `[run] command = "python probe.py"`, `[run] env` with
/// FROM_CONFIG and FROM_FLAG): arguments, the configured command, environment, detached jobs,
/// `jobs`, `logs [-f]`, `cancel`.
fn jobs_on(env: &Env, cfg: &str) {
    let dir = env.write(
        "probe/probe.py",
        "import json, os, sys\nmylib = None\ntry:\n    import mylib\nexcept ImportError:\n    pass\nprint(json.dumps({'argv': sys.argv[1:], 'env': {k: os.environ.get(k) for k in ['FROM_CONFIG', 'FROM_FLAG', 'FROM_LOCAL', 'DAFT_JOB_ID', 'DAFT_JOB_NAME', 'SECRET_TOKEN']}, 'log_dir': os.path.isdir(os.environ['DAFT_LOG_DIR']), 'synced': getattr(mylib, 'VALUE', None), 'sync_dir': os.path.isdir(os.path.join(os.environ.get('DAFT_SYNC_DIR', '/nonexistent'), 'shared-lib', 'mylib'))}))\n",
    );
    let dir = dir.parent().unwrap().to_str().unwrap();
    // Several words after `--`: each reaches the program as one argument.
    let argv = env.submit(
        cfg,
        dir,
        &[
            "python",
            "probe.py",
            "a b",
            "it's",
            "x; exit 9",
            "$HOME",
            "\"q\"",
        ],
    );
    assert!(argv.status.success(), "{}", out(&argv));
    assert_stdout(
        &argv,
        r#""argv": ["a b", "it's", "x; exit 9", "$HOME", "\"q\""]"#,
    );
    // The exit status passes through.
    let seven = env.submit(cfg, dir, &["python", "-c", "import sys; sys.exit(7)"]);
    assert_eq!(seven.status.code(), Some(7), "{}", out(&seven));
    // One word stays a shell command line.
    let line = env.submit(cfg, dir, &["echo one && echo two"]);
    assert_stdout(&line, "one\ntwo");

    // No command: `[run] command`; its environment: `[run] env`, `--env` (which wins), the
    // job's id, name and log directory. A secret given with --env is not in the debug log.
    let secret = "s3cr3t-value-8d1f";
    let local_secret = "l0cal-s3cret-77e2";
    let probe = env
        .daft()
        .env("RUST_LOG", "debug")
        .env("FROM_LOCAL", local_secret)
        .args(["submit", "-c", cfg, "-w", dir, "--name", "probe-job"])
        .args(["--env", "FROM_FLAG=flag", "--env"])
        .arg(format!("SECRET_TOKEN={secret}"))
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", out(&probe));
    let line = String::from_utf8_lossy(&probe.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("probe prints JSON");
    assert_eq!(v["argv"], serde_json::json!([]));
    assert_eq!(v["env"]["FROM_CONFIG"], "c");
    assert_eq!(v["env"]["FROM_FLAG"], "flag");
    assert_eq!(v["env"]["DAFT_JOB_NAME"], "probe-job");
    assert_eq!(v["env"]["SECRET_TOKEN"], secret);
    assert_eq!(v["env"]["FROM_LOCAL"], local_secret);
    assert_eq!(v["log_dir"], true);
    assert_eq!(v["synced"], 42, "the synced code is not importable: {v}");
    assert_eq!(v["sync_dir"], true);
    let log = String::from_utf8_lossy(&probe.stderr);
    assert!(log.contains("daft::remote"), "no debug log: {log}");
    assert!(
        !log.contains(secret) && !log.contains(local_secret),
        "a secret is in the debug log"
    );
    // Nor in any file daft wrote (the cluster's directory holds the jobs; the job's own
    // stdout.log holds what the probe printed).
    let clusters = env.home().join("clusters");
    let holders = common::run(&format!(
        "grep -rlF --exclude=stdout.log -e {secret} -e {local_secret} {} || true",
        clusters.display()
    ));
    assert!(holders.trim().is_empty(), "secrets written to: {holders}");
    let probe_id = v["env"]["DAFT_JOB_ID"].as_str().unwrap().to_string();

    // Detached: the id at once; `logs -f` follows to the end with the job's status.
    let d = env.ok(&[
        "submit",
        "-c",
        cfg,
        "-w",
        dir,
        "-d",
        "--",
        "python",
        "-c",
        "import time, sys; print('tick', flush=True); time.sleep(3); print('done'); sys.exit(5)",
    ]);
    let id = String::from_utf8_lossy(&d.stdout).trim().to_string();
    assert!(!id.is_empty() && !id.contains(' '), "{}", out(&d));
    let listed = env.ok(&["jobs", "-c", cfg, "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let find = |jobs: &serde_json::Value, id: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("job {id} not listed: {jobs}"))
    };
    let j = find(&jobs, &id);
    assert!(j["state"] == "running" || j["state"] == "queued", "{j}");
    assert_eq!(find(&jobs, &probe_id)["state"], "succeeded");
    assert_eq!(find(&jobs, &probe_id)["name"], "probe-job");
    let followed = env
        .daft()
        .args(["logs", "-c", cfg, "-f", &id])
        .output()
        .unwrap();
    assert_eq!(followed.status.code(), Some(5), "{}", out(&followed));
    assert_stdout(&followed, "tick\ndone");
    let again = env.ok(&["logs", "-c", cfg, &id]);
    assert_stdout(&again, "tick\ndone");
    // pull: the job's directory (not its unpacked code), then only what changed.
    let dest = env.dir.path().join("pulled");
    let pulled = env.ok(&["pull", "-c", cfg, &id, dest.to_str().unwrap()]);
    assert_stdout(&pulled, "unchanged");
    assert_eq!(
        std::fs::read_to_string(dest.join("stdout.log")).unwrap(),
        "tick\ndone\n"
    );
    assert!(dest.join("job.json").exists() && dest.join("exit-status").exists());
    assert!(
        !dest.join("work").exists(),
        "the unpacked code came back too"
    );
    let n = std::fs::read_dir(&dest).unwrap().count();
    std::fs::write(dest.join("stdout.log"), "changed here").unwrap();
    let again = env.ok(&["pull", "-c", cfg, &id, dest.to_str().unwrap()]);
    assert_stdout(&again, "1 file(s)");
    assert_stdout(&again, &format!("{} unchanged", n - 1));
    assert_eq!(
        std::fs::read_to_string(dest.join("stdout.log")).unwrap(),
        "tick\ndone\n"
    );
    let table = env.ok(&["jobs", "-c", cfg]);
    assert_stdout(&table, "STATE");
    assert_stdout(&table, "failed");

    // cancel: the job's processes are gone, and it is recorded as cancelled.
    let d = env.ok(&[
        "submit", "-c", cfg, "-w", dir, "-d", "--name", "sleeper", "--", "sleep", "987",
    ]);
    let id = String::from_utf8_lossy(&d.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::procs_with("sleep 987").is_empty() {
        assert!(Instant::now() < deadline, "the detached job did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = env.ok(&["cancel", "-c", cfg, "sleeper"]);
    assert_stdout(&c, "cancelled");
    // (The job is gone when `cancel` returns; its supervisor ends right after recording it.)
    assert!(
        !common::procs_with("sleep 987")
            .iter()
            .any(|p| p.ends_with(" sleep 987 ")),
        "{:?}",
        common::procs_with("sleep 987")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !common::procs_with("sleep 987").is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            common::procs_with("sleep 987")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = env.ok(&["jobs", "-c", cfg, "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(find(&jobs, &id)["state"], "cancelled");
    provenance_on(env, cfg);
    sweep_on(env, cfg);
    sweep_interrupted_on(env, cfg);
    // A word that names no job is a usage error.
    let none = env
        .daft()
        .args(["logs", "-c", cfg, "no-such-job"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", out(&none));
}

/// A 2×3 grid sweep, two at a time, one variant failing: six jobs named <sweep>-<n>, each saw
/// its own variant (environment, variant.json, arguments), never more than two ran at once,
/// the summary says which failed and submit exits 1.
fn sweep_on(env: &Env, cfg: &str) {
    let dir = env.write(
        "sweepjob/job.py",
        "import json, os, sys, time\nv = json.loads(os.environ['DAFT_VARIANT'])\nt0 = time.time()\ntime.sleep(1.5)\nopen(os.path.join(os.environ['DAFT_LOG_DIR'], 'times'), 'w').write('%f %f' % (t0, time.time()))\nprint(json.dumps({'variant': v, 'argv': sys.argv[1:], 'file': json.load(open(os.path.join(os.environ['DAFT_JOB_DIR'], 'variant.json')))}))\nsys.exit(3 if (v['lr'] == 0.01 and v['batch'] == 64) else 0)\n",
    );
    let dir = dir.parent().unwrap().to_str().unwrap();
    let sweep = env.write(
        "grid.toml",
        "[sweep]\nname = \"grid\"\nmax_parallel = 2\nargs = true\n[sweep.parameters]\nlr = [0.1, 0.01]\nbatch = [16, 32, 64]\n",
    );
    let run = env
        .daft()
        .args([
            "submit",
            "-c",
            cfg,
            "-w",
            dir,
            "--sweep",
            sweep.to_str().unwrap(),
        ])
        .args(["--", "python", "job.py"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", out(&run));
    let table = String::from_utf8_lossy(&run.stdout);
    assert_eq!(table.matches("succeeded").count(), 5, "{table}");
    assert_eq!(table.matches("failed").count(), 1, "{table}");
    assert!(table.contains("batch=64 lr=0.01"), "{table}");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("[6/6] grid-6") && err.contains("5 of 6 succeeded"),
        "{err}"
    );

    let listed = env.ok(&["jobs", "-c", cfg, "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let ran = common::sweep_jobs(&jobs, "grid", 6);
    for j in &ran {
        // (variant.json in its directory says the same.)
        assert_eq!(j.said["variant"], j.said["file"]);
    }
    assert!(common::most_at_once(&ran) <= 2, "more than two at once");
}

/// Ctrl-C during `submit --sweep`: the running jobs are cancelled, no more start, and daft ends
/// within a bound with status 130.
fn sweep_interrupted_on(env: &Env, cfg: &str) {
    let dir = env.write(
        "sleepy/job.py",
        "import time\nprint('up', flush=True)\ntime.sleep(600)\n",
    );
    let sweep = env.write(
        "sleepy.toml",
        "[sweep]\nname = \"sleepy\"\nmax_parallel = 2\n[sweep.parameters]\nn = [1, 2, 3, 4]\n",
    );
    let mut child = env
        .std_daft()
        .args([
            "submit",
            "-c",
            cfg,
            "-w",
            dir.parent().unwrap().to_str().unwrap(),
            "--sweep",
            sweep.to_str().unwrap(),
            "--",
            "python",
            "job.py",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two jobs run (each printed "up").
    let deadline = Instant::now() + Duration::from_secs(120);
    let running = |jobs: &serde_json::Value| {
        jobs.as_array()
            .unwrap()
            .iter()
            .filter(|j| j["name"].as_str().is_some_and(|n| n.starts_with("sleepy-")))
            .filter(|j| {
                std::fs::read_to_string(Path::new(j["dir"].as_str().unwrap()).join("stdout.log"))
                    .unwrap_or_default()
                    .contains("up")
            })
            .count()
    };
    loop {
        let listed = env.ok(&["jobs", "-c", cfg, "-o", "json"]);
        let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        if running(&jobs) >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep's jobs did not start: {jobs}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = common::interrupt_and_wait(&mut child, Duration::from_secs(90), "submit --sweep");
    let said = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&said.stderr);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("stopping the sweep (Ctrl-C)"), "{err}");
    let listed = env.ok(&["jobs", "-c", cfg, "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let sleepy: Vec<&serde_json::Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["name"].as_str().is_some_and(|n| n.starts_with("sleepy-")))
        .collect();
    assert_eq!(
        sleepy.len(),
        2,
        "only the two running jobs were started: {jobs}"
    );
    for j in sleepy {
        assert_eq!(j["state"], "cancelled", "{j}");
    }
}

/// The job record of the newest job, read from its job.json on the (local) head.
fn last_record(env: &Env, cfg: &str) -> serde_json::Value {
    let listed = env.ok(&["jobs", "-c", cfg, "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let newest = jobs
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|j| {
            (
                j["submitted"].as_str().unwrap().to_string(),
                j["id"].as_str().unwrap().to_string(),
            )
        })
        .unwrap()
        .clone();
    let dir = newest["dir"].as_str().unwrap();
    serde_json::from_str(&std::fs::read_to_string(Path::new(dir).join("job.json")).unwrap())
        .unwrap()
}

/// Git provenance with a real repository: recorded when clean, a dirty tree refused, then
/// accepted with --allow-dirty and the real diff recorded; outside any repository, said so.
fn provenance_on(env: &Env, cfg: &str) {
    let outside = env.ok(&[
        "submit",
        "-c",
        cfg,
        "-w",
        env.dir.path().join("probe").to_str().unwrap(),
        "--",
        "true",
    ]);
    drop(outside);
    assert_eq!(last_record(env, cfg)["git"]["repository"], "none");

    let repo = env.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &str| {
        common::run(&format!(
            "cd {} && GIT_CONFIG_GLOBAL=/dev/null git -c user.name=t -c user.email=t@example.com {args}",
            repo.display()
        ))
    };
    git("init -q -b main .");
    std::fs::write(repo.join("main.py"), "print('v1')\n").unwrap();
    git("add main.py");
    git("commit -q -m first");
    let head = git("rev-parse HEAD").trim().to_string();
    let r = repo.to_str().unwrap();
    let clean = env.ok(&["submit", "-c", cfg, "-w", r, "--", "python", "main.py"]);
    assert_stdout(&clean, "v1");
    let rec = last_record(env, cfg);
    assert_eq!(rec["git"]["repository"], "git");
    assert_eq!(rec["git"]["commit"], head.as_str());
    assert_eq!(rec["git"]["branch"], "main");
    assert_eq!(rec["git"]["dirty"], false);

    std::fs::write(repo.join("main.py"), "print('v2')\n").unwrap();
    let refused = env
        .daft()
        .args(["submit", "-c", cfg, "-w", r, "--", "python", "main.py"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", out(&refused));
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(
        e.contains("uncommitted changes") && e.contains("main.py") && e.contains("--allow-dirty"),
        "{e}"
    );
    let dirty = env.ok(&[
        "submit",
        "-c",
        cfg,
        "-w",
        r,
        "--allow-dirty",
        "--",
        "python",
        "main.py",
    ]);
    assert_stdout(&dirty, "v2");
    let rec = last_record(env, cfg);
    assert_eq!(rec["git"]["dirty"], true);
    assert_eq!(rec["git"]["diff"], git("diff --no-color").as_str());
    assert!(rec["git"]["diff"]
        .as_str()
        .unwrap()
        .contains("+print('v2')"));
}

/// A Ray client without the cluster's token cannot connect to its GCS at `address`.
fn assert_refused_without_token(python: &Path, address: &str) {
    let out = StdCommand::new("timeout")
        .arg("120")
        .arg(python)
        .args([
            "-c",
            "import sys, ray\nray.init(address=sys.argv[1])\nprint('connected', len(ray.nodes()))",
            address,
        ])
        .env_remove("RAY_AUTH_MODE")
        .env_remove("RAY_AUTH_TOKEN")
        .env_remove("RAY_AUTH_TOKEN_PATH")
        .env("HOME", "/nonexistent")
        .env("RAY_USAGE_STATS_ENABLED", "0")
        // (As daft's jobs do: without it Ray's client would look for 127.0.0.1 elsewhere.)
        .env(
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
            if address.starts_with("127.0.0.1:") {
                "0"
            } else {
                "1"
            },
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && !text.contains("connected"),
        "a client without the token connected: {text}"
    );
    assert!(
        text.to_lowercase().contains("token") || text.to_lowercase().contains("unauthenticated"),
        "refused, but not for want of the token: {text}"
    );
}

/// `daft ARGS` writing into a pipe whose reader is already gone (`| head -1` after its line):
/// it must end at once, with status 0 and no panic.
fn assert_ends_quietly_on_a_closed_pipe(env: &Env, args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let t = Instant::now();
    let o = env
        .std_daft()
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(0),
        "daft {args:?} into a closed pipe: {err}"
    );
    assert!(!err.contains("panicked"), "daft {args:?} panicked: {err}");
    assert!(
        !err.contains("Reconnecting"),
        "daft {args:?} took its closed stdout for a lost connection: {err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "daft {args:?} took {:?}",
        t.elapsed()
    );
}

/// `daft logs -f`, `jobs`, `list`, `plan` into `head -1`: each ends at once, status 0.
fn pipes_end_quietly(env: &Env, cfg: &str) {
    // A job that prints for a long time: following it into `head -1` ends after its first line.
    let chatty = env.write(
        "chatty/main.py",
        "import time\nfor i in range(100000):\n    print('line', i, flush=True)\n    time.sleep(0.05)\n",
    );
    let sub = env.ok(&[
        "submit",
        "-c",
        cfg,
        "-d",
        "-w",
        chatty.parent().unwrap().to_str().unwrap(),
        "--",
        "python",
        "main.py",
    ]);
    let job = String::from_utf8_lossy(&sub.stdout).trim().to_string();
    for args in [
        vec!["logs", "-c", cfg, "-f", job.as_str()],
        vec!["jobs", "-c", cfg],
        vec!["jobs", "-c", cfg, "--output", "json"],
        vec!["list", "-c", cfg],
        vec!["plan", "-c", cfg],
    ] {
        assert_ends_quietly_on_a_closed_pipe(env, &args);
    }
    // And through a real `head -1`, which closes the pipe after the first line.
    let daft = assert_cmd::cargo::cargo_bin("daft");
    let t = Instant::now();
    let o = StdCommand::new("timeout")
        .arg("60")
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "{} logs -c {cfg} -f {job} | head -1",
            daft.display()
        ))
        .current_dir(env.dir.path())
        .env("DAFT_HOME", env.home())
        .env("HOME", env.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("line "), "{}", out(&o));
    assert!(
        t.elapsed() < Duration::from_secs(60) && o.status.code() == Some(0),
        "`daft logs -f | head -1` did not end: {}",
        out(&o)
    );
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{}",
        out(&o)
    );
    env.ok(&["cancel", "-c", cfg, &job]);
}

/// Ray's own Jobs API (`ray job submit`, what the Jobs SDK and `JobSubmissionClient` use) works
/// against the address `daft dashboard` gives, with the cluster's token.
fn ray_job_submit_works(env: &Env, cfg: &str, ray: &Path, token: &str) {
    let dash = env.ok(&["dashboard", "-c", cfg, "--no-browser"]);
    let text = String::from_utf8_lossy(&dash.stdout);
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no dashboard address in {text}"))
        .trim_end_matches(['/', ',', ')'])
        .to_string();
    ray_job_submit_to(env, &url, ray, token);
}

/// `ray job submit --address URL -- python -c 'print(6 * 7)'` succeeds and prints 42.
fn ray_job_submit_to(env: &Env, url: &str, ray: &Path, token: &str) {
    common::ray_job_submit(url, ray, token, env.dir.path());
}

const NODES_SCRIPT: &str = "import os, ray\nray.init()\nprint('nodes=%d' % len([n for n in ray.nodes() if n['Alive']]))\nprint('cwd-is-job-dir=%s' % os.getcwd().endswith('/work'))\n";

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn local_cluster_up_submit_noop_down() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let ray_port = common::free_port("127.0.0.1");
    let dash_port = common::free_port("127.0.0.1");
    // `[run] sync`: a code directory beside the config, importable by every job.
    env.write("shared-lib/mylib/__init__.py", "VALUE = 42\n");
    let cfg = env.write(
        "local.toml",
        &format!(
            "[setup]\nname = \"t-local\"\nprovider = \"local\"\nnumber_of_workers = 1\n\n[setup.local]\nray_port = {ray_port}\ndashboard_port = {dash_port}\n\n[run]\nsetup_commands = [\"echo setup-ran > setup-marker\"]\ncommand = \"python probe.py\"\nenv = {{ FROM_CONFIG = \"c\", FROM_FLAG = \"config-value\" }}\nenv_from_local = [\"FROM_LOCAL\"]\nsync = [\"shared-lib\"]\n"
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    // As on machines that set it: Python then never saves bytecode itself (see below).
    let up = env
        .daft()
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["up", "-c", cfg])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", out(&up));
    let text = String::from_utf8_lossy(&up.stdout);
    assert!(
        text.contains("+ create     head") && text.contains("is up"),
        "{text}"
    );

    // The environment carries compiled bytecode: Ray's dozen Python processes do not compile
    // their imports at every start (and cannot keep them where PYTHONDONTWRITEBYTECODE is set).
    let pyc = count_files(&env.home().join("envs"), ".pyc");
    assert!(pyc > 1000, "only {pyc} .pyc files in the environment");

    let tmps = node_tmp_dirs(&env.home(), "t-local");
    assert_eq!(tmps.len(), 2, "a temp dir per node");
    assert_ne!(tmps[0], tmps[1]);
    // Temp dirs are the user's own: under /tmp/daft-UID, mode 0700.
    for t in &tmps {
        let base = Path::new(t).parent().unwrap();
        assert!(
            base.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("daft-"),
            "{t}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(base).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", base.display());
    }
    // Every listener of the cluster's processes (both nodes, their agents, the dashboard, the
    // GCS and raylets, the metrics servers) is on 127.0.0.1: nothing on 0.0.0.0, ::, or the
    // machine's other addresses.
    let bound = listeners_of(&tmps);
    assert!(bound.len() >= 8, "found too few Ray listeners: {bound:?}");
    assert!(
        bound
            .iter()
            .any(|(a, _)| a == &format!("127.0.0.1:{dash_port}")),
        "the dashboard is not on 127.0.0.1:{dash_port}: {bound:?}"
    );
    for (addr, who) in &bound {
        // (IPv6 listeners: the v4-mapped 127.0.0.1 or ::1, as /proc/net/tcp6 spells them.)
        let loopback = addr.starts_with("127.0.0.1:")
            || addr.starts_with("[0000000000000000FFFF00000100007F]:")
            || addr.starts_with("[00000000000000000000000001000000]:");
        assert!(loopback, "{addr} is bound beyond loopback by {who}");
    }
    // Ray's token authentication is on: a client without the cluster's token is refused.
    let token_file = env.home().join("clusters/t-local/ray-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.trim().len(), 64, "{token:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token is {mode:o}");
    }
    let address = std::fs::read_to_string(env.home().join("clusters/t-local/ray-address")).unwrap();
    let python = env.home().join("clusters/t-local/venv/bin/python");
    assert_refused_without_token(&python, address.trim());
    let shown = env.ok(&["dashboard", "-c", cfg, "--show-token"]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), token.trim());
    let pid_before =
        std::fs::read_to_string(env.home().join("clusters/t-local/nodes/head/ray.pid")).unwrap();

    // A submitted script sees both nodes, runs in its job directory.
    let job = env.write("job/nodes.py", NODES_SCRIPT);
    let sub = env.submit(
        cfg,
        job.parent().unwrap().to_str().unwrap(),
        &["python", "nodes.py"],
    );
    assert!(sub.status.success(), "{}", out(&sub));
    let s = String::from_utf8_lossy(&sub.stdout);
    assert!(s.contains("nodes=2"), "{}", out(&sub));
    assert!(s.contains("cwd-is-job-dir=True"), "{}", out(&sub));
    // Unchanged resubmit sends nothing.
    let again = env.submit(
        cfg,
        job.parent().unwrap().to_str().unwrap(),
        &["python", "nodes.py"],
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing sent"),
        "{}",
        out(&again)
    );
    // The job's exit status is daft's.
    let fail = env.submit(
        cfg,
        job.parent().unwrap().to_str().unwrap(),
        &["python", "-c", "import sys; sys.exit(3)"],
    );
    assert_eq!(fail.status.code(), Some(3), "{}", out(&fail));
    jobs_on(&env, cfg);
    pipes_end_quietly(&env, cfg);
    ray_job_submit_works(
        &env,
        cfg,
        &env.home().join("clusters/t-local/venv/bin/ray"),
        token.trim(),
    );
    // Ray's Jobs API started more of Ray's processes (the job's supervisor and driver): every
    // listener of the cluster is still on loopback.
    for (addr, who) in &listeners_of(&tmps) {
        let loopback = addr.starts_with("127.0.0.1:")
            || addr.starts_with("[0000000000000000FFFF00000100007F]:")
            || addr.starts_with("[00000000000000000000000001000000]:");
        assert!(
            loopback,
            "{addr} is bound beyond loopback by {who} (after ray job submit)"
        );
    }

    // The example Daft job really runs on the cluster.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/daft-job");
    // (--allow-dirty: the example is in daft's own repository, which may hold edits.)
    let ex = env
        .daft()
        .args([
            "submit",
            "-c",
            cfg,
            "-w",
            example.to_str().unwrap(),
            "--allow-dirty",
        ])
        .args(["--", "python", "main.py"])
        .output()
        .unwrap();
    assert!(ex.status.success(), "{}", out(&ex));
    let ex_out = String::from_utf8_lossy(&ex.stdout);
    assert!(
        ex_out.contains("ray cluster: 2 node(s)")
            && ex_out.contains("Lisbon: 225")
            && ex_out.contains("daft job: OK"),
        "{}",
        out(&ex)
    );

    // Ctrl-C stops the remote job (its whole process group), and daft exits 130.
    let sleeper = env.write(
        "sleeper/main.py",
        "import time\nprint('started', flush=True)\ntime.sleep(600)\n",
    );
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"))
        .current_dir(env.dir.path())
        .env("DAFT_HOME", env.home())
        .env("HOME", env.dir.path())
        .args([
            "submit",
            "-c",
            cfg,
            "-w",
            sleeper.parent().unwrap().to_str().unwrap(),
            "--",
            "python",
            "main.py",
        ])
        .env("FROM_LOCAL", "local-default")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "started");
    }
    StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // The job's process group (its pid file in the job directory) is gone.
    let jobs = env.home().join("clusters/t-local/jobs");
    let job = std::fs::read_dir(&jobs)
        .unwrap()
        .flatten()
        .find(|j| {
            std::fs::read_to_string(j.path().join("stdout.log"))
                .unwrap_or_default()
                .contains("started")
        })
        .expect("the sleeper's job directory");
    let pid = std::fs::read_to_string(job.path().join("pid"))
        .unwrap()
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if st.is_empty()
            || st
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {pid} still runs after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // setup_commands ran on the head, in the home directory.
    assert!(
        env.home().parent().unwrap().join("setup-marker").exists()
            || env.home().join("setup-marker").exists()
    );

    // `up` again: nothing to do, Ray untouched.
    let noop = env.ok(&["up", "-c", cfg]);
    assert_stdout(&noop, "Nothing to do");
    let pid_after =
        std::fs::read_to_string(env.home().join("clusters/t-local/nodes/head/ray.pid")).unwrap();
    assert_eq!(pid_before, pid_after, "no-op up restarted Ray");

    // list shows both nodes, as a table and as JSON.
    let list = env
        .daft()
        .args(["list", "--output", "json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(
        rows.iter()
            .filter(|r| r["cluster"] == "t-local" && r["state"] == "running")
            .count(),
        2,
        "{rows:?}"
    );

    // dashboard of a local cluster prints its URL.
    let dash = env
        .daft()
        .args(["dashboard", "-c", cfg, "--no-browser"])
        .output()
        .unwrap();
    assert_stdout(&dash, &format!("http://127.0.0.1:{dash_port}"));

    // down: no process of the cluster is left.
    env.ok(&["down", "-c", cfg, "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    for t in &tmps {
        while !common::procs_with(t).is_empty() {
            assert!(
                Instant::now() < deadline,
                "left behind: {:?}",
                common::procs_with(t)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Gone, or a zombie nobody reaps (this sandbox's init does not): either way, not running.
    assert!(
        !pid_runs(&pid_before),
        "ray start --block of the head still runs"
    );
    let again = env
        .daft()
        .args(["down", "-c", cfg, "--yes"])
        .output()
        .unwrap();
    assert_stdout(&again, "Nothing to remove");
}

/// Whether `pid` runs (a zombie nobody reaps, as this sandbox's init leaves them, does not).
fn pid_runs(pid: &str) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap_or_default();
    !state.is_empty()
        && !state
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
}

/// A spec change replaces a node in its own place (same node directory on the same machine):
/// the old Ray is stopped before the new one starts, and the new one runs as asked.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn local_head_is_replaced_in_place_when_its_ray_port_changes() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let dash_port = common::free_port("127.0.0.1");
    let config = |ray_port: u16| {
        format!(
            "[setup]\nname = \"t-replace\"\nprovider = \"local\"\nnumber_of_workers = 0\n\n[setup.local]\nray_port = {ray_port}\ndashboard_port = {dash_port}\n"
        )
    };
    let (port1, port2) = (
        common::free_port("127.0.0.1"),
        common::free_port("127.0.0.1"),
    );
    let cfg = env.write("local.toml", &config(port1));
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    env.ok(&["up", "-c", cfg]);
    let pid_file = env.home().join("clusters/t-replace/nodes/head/ray.pid");
    let old_pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(pid_runs(&old_pid));

    env.write("local.toml", &config(port2));
    let replace = env.ok(&["up", "-c", cfg, "--yes"]);
    assert_stdout(
        &replace,
        &format!("± replace    head     head  (ray_port {port1} → {port2})"),
    );
    let new_pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_ne!(old_pid, new_pid);
    assert!(!pid_runs(&old_pid), "the replaced head still runs");
    let job = env.write(
        "job/ips.py",
        "import ray\nray.init()\nprint('ips=%s' % sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']))\nprint('gcs=%s' % ray.get_runtime_context().gcs_address)\n",
    );
    let sub = env.submit(
        cfg,
        job.parent().unwrap().to_str().unwrap(),
        &["python", "ips.py"],
    );
    assert_stdout(&sub, "ips=['127.0.0.1']");
    assert_stdout(&sub, &format!("gcs=127.0.0.1:{port2}"));
    env.ok(&["down", "-c", cfg, "--yes"]);
    assert!(!pid_runs(&new_pid), "down left the head running");
}

/// Two sshd on 127.0.0.2 and 127.0.0.3 that accept the same key.
fn two_hosts() -> (Sshd, Sshd) {
    common::two_ssh_hosts()
}

fn ssh_config(env: &Env, a: &Sshd, workers: &[&Sshd], setup: &str) -> PathBuf {
    let w: Vec<String> = workers.iter().map(|s| s.host()).collect();
    ssh_config_named(env, "t-ssh", a, &w, setup)
}

/// An SSH-hosts config: `head` runs the head, `workers` are host:port strings.
fn ssh_config_named(
    env: &Env,
    name: &str,
    head: &Sshd,
    workers: &[String],
    setup: &str,
) -> PathBuf {
    let w: Vec<String> = workers.iter().map(|h| format!("\"{h}\"")).collect();
    env.write(
        &format!("{name}.toml"),
        &format!(
            "[setup]\nname = \"{name}\"\nprovider = \"ssh\"\nssh_user = \"{}\"\nssh_private_key = \"{}\"\n\n[setup.ssh]\nhead = \"{}\"\nworkers = [{}]\n\n[run]\nsetup_commands = [{setup}]\n",
            head.user,
            head.key.display(),
            head.host(),
            w.join(", ")
        ),
    )
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn ssh_hosts_cluster_up_submit_dashboard_down() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let (a, b) = two_hosts();
    let cfg = ssh_config(&env, &a, &[&b], "\"python -c 'import ray'\"");
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    env.ok(&["up", "-c", cfg]);

    // exec: every node at once, each line prefixed with its node; a failure anywhere: exit 1.
    let o = env
        .daft()
        .args(["exec", "-c", cfg, "--all", "--", "echo home=$HOME"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains(&format!("[head] home={}", a.home.display()))
            && said.contains(&format!("[worker-1] home={}", b.home.display())),
        "{said}"
    );
    let o = env
        .daft()
        .args(["exec", "-c", cfg, "worker-1", "--", "echo bad >&2; exit 3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[worker-1] bad") && err.contains("[worker-1] exit status 3"),
        "{err}"
    );

    let job = env.write("job/nodes.py", NODES_SCRIPT);
    let sub = env.submit(
        cfg,
        job.parent().unwrap().to_str().unwrap(),
        &["python", "nodes.py"],
    );
    assert!(sub.status.success(), "{}", out(&sub));
    assert_stdout(&sub, "nodes=2");
    // The cluster's Ray token: made by the head (0600), copied to the worker, required by Ray.
    let head_dir = a.home.join(".daft/clusters/t-ssh");
    let token = std::fs::read_to_string(head_dir.join("ray-token")).unwrap();
    assert_eq!(token.len(), 64, "{token:?}");
    assert_eq!(
        std::fs::read_to_string(b.home.join(".daft/clusters/t-ssh/ray-token")).unwrap(),
        token
    );
    for h in [&a, &b] {
        use std::os::unix::fs::PermissionsExt;
        let f = h.home.join(".daft/clusters/t-ssh/ray-token");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", f.display());
    }
    let address = std::fs::read_to_string(head_dir.join("ray-address")).unwrap();
    assert_refused_without_token(&head_dir.join("venv/bin/python"), address.trim());
    // Never in the debug log.
    let debug = env
        .daft()
        .env("RUST_LOG", "debug")
        .args(["dashboard", "-c", cfg, "--show-token"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&debug.stdout).trim(), token);
    assert!(
        !String::from_utf8_lossy(&debug.stderr).contains(&token),
        "the token is in the debug log"
    );
    // The job's output is kept on the head.
    let jobs = a.home.join(".daft/clusters/t-ssh/jobs");
    let kept: Vec<_> = std::fs::read_dir(&jobs).unwrap().flatten().collect();
    assert_eq!(kept.len(), 1);
    assert!(std::fs::read_to_string(kept[0].path().join("stdout.log"))
        .unwrap()
        .contains("nodes=2"));

    // dashboard: a tunnel on 127.0.0.1 to the head's Ray dashboard.
    let port = common::free_port("127.0.0.1");
    let mut dash = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"))
        .current_dir(env.dir.path())
        .env("DAFT_HOME", env.home())
        .env("HOME", env.dir.path())
        .args([
            "dashboard",
            "-c",
            cfg,
            "--no-browser",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let token = std::fs::read_to_string(a.home.join(".daft/clusters/t-ssh/ray-token")).unwrap();
    let token = token.trim();
    let body = common::dashboard_version(port, Some(token));
    assert!(body.contains("200"), "{body}");
    // Without the token the dashboard answers 401.
    let anon = common::dashboard_get(port, "/api/version", None).unwrap();
    assert!(
        anon.starts_with("HTTP/1.") && anon.contains(" 401 ") && anon.contains("token"),
        "{anon}"
    );
    // Ray's own Jobs API through the tunnel.
    ray_job_submit_to(
        &env,
        &format!("http://127.0.0.1:{port}"),
        &head_dir.join("venv/bin/ray"),
        token,
    );
    // Ctrl-C closes the tunnel at once: status 0, the port free again.
    let status = common::interrupt_and_wait(&mut dash, Duration::from_secs(10), "daft dashboard");
    let said = dash.wait_with_output().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&said.stderr)
    );
    assert!(
        String::from_utf8_lossy(&said.stderr).contains("tunnel closed"),
        "{}",
        String::from_utf8_lossy(&said.stderr)
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the tunnel's port still answers after Ctrl-C"
    );

    // Nothing changed: nothing to do.
    let noop = env.daft().args(["up", "-c", cfg]).output().unwrap();
    assert_stdout(&noop, "Nothing to do");

    // A worker host removed from the config is stopped.
    let cfg1 = ssh_config(&env, &a, &[], "\"python -c 'import ray'\"");
    let shrink = env.ok(&["up", "-c", cfg1.to_str().unwrap(), "--yes"]);
    assert!(
        String::from_utf8_lossy(&shrink.stdout)
            .contains(&format!("- terminate  worker   {}", b.host())),
        "{}",
        out(&shrink)
    );
    let sub1 = env.submit(
        cfg1.to_str().unwrap(),
        job.parent().unwrap().to_str().unwrap(),
        &["python", "nodes.py"],
    );
    assert_stdout(&sub1, "nodes=1");

    env.ok(&["down", "-c", cfg1.to_str().unwrap(), "--yes"]);
    let status = env
        .daft()
        .args(["plan", "-c", cfg1.to_str().unwrap()])
        .output()
        .unwrap();
    assert_stdout(&status, "+ create     head");
    // down removes nothing else: the environment stays for next time.
    assert!(a.home.join(".daft/envs").is_dir());
}

/// A worker host that refuses SSH is one unreachable node in the plan, named with the reason,
/// found within seconds (a refused port of an existing host is not waited for like a booting
/// instance); the rest of the cluster stays plannable.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn ssh_submit_goes_on_when_its_connection_is_cut_and_the_job_keeps_running() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let a = Sshd::start("127.0.0.2");
    let cfg = ssh_config_named(&env, "t-cut", &a, &[], "\"true\"");
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    env.ok(&["up", "-c", cfg]);
    let job = env.write(
        "cut/main.py",
        "import sys, time\nfor i in range(1, 13):\n    print('line', i, flush=True)\n    time.sleep(0.5)\nsys.exit(4)\n",
    );
    let child = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"))
        .current_dir(env.dir.path())
        .env("DAFT_HOME", env.home())
        .env("HOME", env.dir.path())
        .args([
            "submit",
            "-c",
            cfg,
            "-w",
            job.parent().unwrap().to_str().unwrap(),
        ])
        .args(["--", "python", "main.py"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the job has printed a little on the head, cut the connection from the server side.
    let jobs = a.home.join(".daft/clusters/t-cut/jobs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let printed = std::fs::read_dir(&jobs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|j| {
                std::fs::read_to_string(j.path().join("stdout.log"))
                    .map(|s| s.contains("line 2\n"))
                    .unwrap_or(false)
            });
        if printed {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(a.cut_connections() >= 1, "no connection to cut");
    let done = child.wait_with_output().unwrap();
    // The job went on; submit reconnected and printed every line once, in order, and passed on
    // the job's exit status.
    assert_eq!(done.status.code(), Some(4), "{}", out(&done));
    let expected: String = (1..13).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        expected,
        "{}",
        out(&done)
    );
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(
        err.contains("lost the connection") && err.contains("reconnected"),
        "{err}"
    );
    env.ok(&["down", "-c", cfg, "--yes"]);
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn ssh_host_that_refuses_is_named_in_the_plan_within_seconds() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let a = Sshd::start("127.0.0.2");
    let port = common::free_port("127.0.0.3");
    let cfg = ssh_config_named(&env, "t-refuse", &a, &[format!("127.0.0.3:{port}")], "");
    let t = Instant::now();
    let o = env
        .daft()
        .env_remove("DAFT_SSH_DEADLINE_SECS")
        .args(["plan", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "plan took {:?}",
        t.elapsed()
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_stdout(&o, "+ create     head");
    assert_stdout(
        &o,
        &format!("! unreachable worker  127.0.0.3:{port}  (connection to"),
    );
    assert_stdout(&o, "refused");
}

/// A head that cannot be reached makes an incomplete plan: it says so in its summary (not "No
/// changes") and exits 1, as `up` on it would fail.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn plan_whose_head_cannot_be_reached_says_it_is_incomplete_and_exits_1() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    // (Its user and key only: the head in the config is an address where nothing listens.)
    let a = Sshd::start("127.0.0.2");
    let port = common::free_port("127.0.0.4");
    let cfg = env.write(
        "t-nohead.toml",
        &format!(
            "[setup]\nname = \"t-nohead\"\nprovider = \"ssh\"\nssh_user = \"{}\"\nssh_private_key = \"{}\"\n\n[setup.ssh]\nhead = \"127.0.0.4:{port}\"\nworkers = []\n",
            a.user,
            a.key.display(),
        ),
    );
    let t = Instant::now();
    let o = env
        .daft()
        .env_remove("DAFT_SSH_DEADLINE_SECS")
        .args(["plan", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "plan took {:?}",
        t.elapsed()
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert_stdout(
        &o,
        &format!("Incomplete: the head 127.0.0.4:{port} could not be observed"),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!stdout.contains("No changes"), "{}", out(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the plan is incomplete") && stderr.contains("refused"),
        "{}",
        out(&o)
    );
    // JSON says it too.
    let j = env
        .daft()
        .env_remove("DAFT_SSH_DEADLINE_SECS")
        .args(["plan", "-c", cfg.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(j.status.code(), Some(1), "{}", out(&j));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["complete"], false, "{v}");
}

/// The worker's sshd goes away under a running cluster: `plan` answers within a bound and names
/// it, `down` stops the head and reports the worker (exit 1), `down --force` forgets it.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn ssh_worker_gone_plan_names_it_down_reports_it_force_forgets_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let (a, mut b) = two_hosts();
    let cfg = ssh_config(&env, &a, &[&b], "");
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    env.ok(&["up", "-c", cfg]);
    let worker_tmp: Vec<String> = std::fs::read_dir(b.home.join(".daft/clusters/t-ssh/nodes"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("ray.tmp")).ok())
        .map(|t| t.trim().to_string())
        .collect();
    assert_eq!(worker_tmp.len(), 1);
    let head_pid = std::fs::read_to_string(
        std::fs::read_dir(a.home.join(".daft/clusters/t-ssh/nodes"))
            .unwrap()
            .flatten()
            .find(|e| e.path().is_dir())
            .unwrap()
            .path()
            .join("ray.pid"),
    )
    .unwrap();
    b.stop();

    let t = Instant::now();
    let plan = env.ok(&["plan", "-c", cfg]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "plan took {:?}",
        t.elapsed()
    );
    assert_stdout(&plan, &format!("! unreachable worker  {}", b.host()));
    assert_stdout(&plan, "1 unreachable");
    // `up` leaves it as it is, with the reason, and does not fail for it.
    let up = env.ok(&["up", "-c", cfg]);
    assert_stdout(&up, "Nothing to do");

    let t = Instant::now();
    let down = env
        .daft()
        .args(["down", "-c", cfg, "--yes"])
        .output()
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "down took {:?}",
        t.elapsed()
    );
    assert_eq!(down.status.code(), Some(1), "{}", out(&down));
    let e = String::from_utf8_lossy(&down.stderr);
    assert!(
        e.contains(&b.host()) && e.contains("unreachable") && e.contains("--force"),
        "{e}"
    );
    assert!(!pid_runs(&head_pid), "down left the head running");

    let force = env.ok(&["down", "-c", cfg, "--yes", "--force"]);
    assert!(
        String::from_utf8_lossy(&force.stdout).contains("is down")
            || String::from_utf8_lossy(&force.stdout).contains("Nothing to remove"),
        "{}",
        out(&force)
    );
    // The host comes back: its Ray (still running: both "hosts" are this machine) is found
    // again from the config and stopped.
    b.start_again();
    env.ok(&["down", "-c", cfg, "--yes"]);
    for t in &worker_tmp {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !common::procs_with(t).is_empty() {
            assert!(
                Instant::now() < deadline,
                "left: {:?}",
                common::procs_with(t)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn ssh_host_without_python3_is_named_with_the_step() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    // A host whose PATH has the shell tools but neither python3 nor uv.
    let bin = env.dir.path().join("nopython-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "sh", "bash", "mkdir", "rm", "ln", "cat", "printf", "tr", "grep", "kill", "sleep",
        "setsid", "touch", "flock", "tail", "echo", "dirname", "id", "mv", "mktemp", "chmod",
        "awk",
    ] {
        if let Ok(p) = which(tool) {
            std::os::unix::fs::symlink(p, bin.join(tool)).unwrap();
        }
    }
    let a = Sshd::start_with("127.0.0.2", &format!("SetEnv PATH={}", bin.display()));
    let cfg = ssh_config_named(&env, "t-nopy", &a, &[], "");
    let o = env
        .daft()
        .args(["up", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&a.host()) && e.contains("python3 is not installed"),
        "{e}"
    );
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn failing_setup_command_is_named_with_host_and_output() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let a = Sshd::start("127.0.0.2");
    let cfg = ssh_config(
        &env,
        &a,
        &[],
        // (Secrets in its command line: a flag's, a password's, a header's.)
        "\"echo fine\", \"true --token tok-SECRET-1 -p pw-SECRET-2 -H 'Authorization: Bearer bearer-SECRET-3'; echo broken-step-output >&2; exit 4\"",
    );
    let _down = env.down_on_panic(cfg.to_str().unwrap());
    let o = env
        .daft()
        .env("RUST_LOG", "debug")
        .args(["up", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let all = out(&o);
    assert!(
        !all.contains("SECRET-"),
        "a secret of the setup command is in the error or the debug log: {all}"
    );
    assert!(
        all.contains("--token ***") && all.contains("Bearer ***"),
        "{all}"
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("setup command 2")
            && e.contains(&a.host())
            && e.contains("broken-step-output")
            && e.contains("exit status 4"),
        "{e}"
    );
    // The setup hash was not recorded: once the command is fixed, the next `up` runs it.
    let cfg = ssh_config(
        &env,
        &a,
        &[],
        "\"echo fine\", \"echo fixed > $HOME/fixed-marker\"",
    );
    let again = env
        .daft()
        .env("RUST_LOG", "daft::remote=debug")
        .args(["up", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", out(&again));
    assert_stdout(&again, "~ update");
    assert!(a.home.join("fixed-marker").exists(), "{}", out(&again));
    let noop = env.ok(&["up", "-c", cfg.to_str().unwrap()]);
    assert_stdout(&noop, "Nothing to do");
    env.ok(&["down", "-c", cfg.to_str().unwrap(), "--yes"]);
}

/// Setup commands get no stdin (one that reads it sees end-of-file at once) and a time limit:
/// one that never ends fails `up` within `command_timeout`, with a message saying so.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn setup_command_reading_stdin_ends_and_one_that_never_ends_times_out() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let (ray_port, dash_port) = (
        common::free_port("127.0.0.1"),
        common::free_port("127.0.0.1"),
    );
    let config = |cmds: &str| {
        format!(
            "[setup]\nname = \"t-timeout\"\nprovider = \"local\"\nnumber_of_workers = 0\ncommand_timeout = \"75s\"\n\n[setup.local]\nray_port = {ray_port}\ndashboard_port = {dash_port}\n\n[run]\nsetup_commands = [{cmds}]\n"
        )
    };
    let cfg = env.write(
        "local.toml",
        &config("\"cat > stdin-copy; echo read-done\", \"sleep 600\""),
    );
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    let t = Instant::now();
    let o = env.daft().args(["up", "-c", cfg]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("setup command 2 (`sleep 600`) did not finish") && e.contains("within 1m 15s"),
        "{e}"
    );
    // The install, Ray's start and the first command took their time; the hung one its limit.
    assert!(t.elapsed() < Duration::from_secs(240), "{:?}", t.elapsed());
    assert!(t.elapsed() >= Duration::from_secs(75), "{:?}", t.elapsed());
    assert!(
        env.dir.path().join("stdin-copy").exists(),
        "the first command did not run"
    );
    assert!(
        common::procs_with("sleep 600").is_empty(),
        "the timed-out command still runs"
    );
    env.ok(&["down", "-c", cfg, "--yes"]);
}

fn which(tool: &str) -> Result<PathBuf, ()> {
    for d in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(d).join(tool);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(())
}

/// The Ray temp dirs the cluster's node records on the hosts name.
fn ray_tmps_of(homes: &[&Path], cluster: &str) -> Vec<String> {
    let mut tmps = Vec::new();
    for h in homes {
        tmps.extend(node_tmp_dirs(&h.join(".daft"), cluster));
    }
    tmps.sort();
    tmps.dedup();
    tmps
}

/// Processes running in any of `tmps` right now (`down` returns only once they are gone).
fn left_in(tmps: &[String]) -> Vec<String> {
    tmps.iter().flat_map(|t| common::procs_with(t)).collect()
}

/// `up` and `down` on SSH hosts killed with SIGKILL at 20 points of their run (the remote steps
/// they leave behind go on); then one `up` converges to exactly a head and a worker, and `down`
/// leaves no Ray process. Then two `up`s started together: still exactly two nodes.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn ssh_hosts_sigkill_at_20_points_then_converge_and_two_ups_at_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let (a, b) = two_hosts();
    let cfg = ssh_config(&env, &a, &[&b], "");
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    let homes = [a.home.as_path(), b.home.as_path()];
    let t = Instant::now();
    env.ok(&["up", "-c", cfg]);
    let up_time = t.elapsed();
    let t = Instant::now();
    env.ok(&["down", "-c", cfg, "--yes"]);
    let down_time = t.elapsed();
    let spawn = |args: &[&str]| {
        StdCommand::new(assert_cmd::cargo::cargo_bin("daft"))
            .current_dir(env.dir.path())
            .env("DAFT_HOME", env.home())
            .env("HOME", env.dir.path())
            .env("UV_CACHE_DIR", common::uv_cache())
            .env("RUST_LOG", "warn")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for i in 0..20u32 {
        let (args, total) = if i % 3 == 2 {
            (vec!["down", "-c", cfg, "--yes"], down_time)
        } else {
            (vec!["up", "-c", cfg, "--yes"], up_time)
        };
        // From 50 ms to 80% of a whole run's time, spaced geometrically.
        let first = Duration::from_millis(50);
        let last = total.mul_f64(0.8).max(first * 2);
        let at = first.mul_f64((last.as_secs_f64() / first.as_secs_f64()).powf(i as f64 / 19.0));
        let mut child = spawn(&args);
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    env.ok(&["up", "-c", cfg, "--yes"]);
    let plan = env.ok(&["plan", "-c", cfg]);
    assert_stdout(&plan, "No changes: 2 node(s) up to date");
    let job = env.write("job/nodes.py", NODES_SCRIPT);
    let sub = env.submit(
        cfg,
        job.parent().unwrap().to_str().unwrap(),
        &["python", "nodes.py"],
    );
    assert_stdout(&sub, "nodes=2");
    // The same node places every time: the temp dirs any killed start used are these.
    let tmps = ray_tmps_of(&homes, "t-ssh");
    assert_eq!(tmps.len(), 2, "{tmps:?}");
    env.ok(&["down", "-c", cfg, "--yes"]);
    let left = left_in(&tmps);
    assert!(left.is_empty(), "down left Ray running: {left:?}");

    // Two `up`s at once: the second waits for the first (and says so), then has nothing to do.
    let (x, y) = (spawn(&["up", "-c", cfg]), spawn(&["up", "-c", cfg]));
    let (x, y) = (x.wait_with_output().unwrap(), y.wait_with_output().unwrap());
    assert!(
        x.status.success() && y.status.success(),
        "{}\n{}",
        out(&x),
        out(&y)
    );
    let both = format!("{}{}", out(&x), out(&y));
    assert!(
        both.contains("holds the lock for cluster \"t-ssh\""),
        "{both}"
    );
    assert!(both.contains("Nothing to do"), "{both}");
    let plan = env.ok(&["plan", "-c", cfg]);
    assert_stdout(&plan, "No changes: 2 node(s) up to date");
    let sub = env.submit(
        cfg,
        job.parent().unwrap().to_str().unwrap(),
        &["python", "nodes.py"],
    );
    assert_stdout(&sub, "nodes=2");
    env.ok(&["down", "-c", cfg, "--yes"]);
    let left = left_in(&tmps);
    assert!(left.is_empty(), "down left Ray running: {left:?}");
}

/// Processes whose command line names `needle` (and `also`).
fn processes_naming(needle: &str, also: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) || !pid_runs(&name) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && cmd.contains(also) {
            out.push(name);
        }
    }
    out
}

/// The rows `daft list -o json` gives for `cluster`.
fn list_rows(env: &Env, cluster: &str) -> Vec<serde_json::Value> {
    let o = env.ok(&["list", "--local-only", "-o", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    rows.into_iter()
        .filter(|r| r["cluster"] == cluster)
        .collect()
}

/// Wait up to `limit` for `f`, saying what for; how long it took.
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    t.elapsed()
}

/// A local cluster with `autostop` stays up while a job runs, stops itself (head and worker)
/// once idle that long after it, shows so in `list`, comes back with `up`; `daft autostop
/// --cancel` keeps it, `daft autostop 10s` arms it again; `down` takes the watcher along.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs Ray from PyPI"]
fn local_autostop_waits_for_the_job_then_stops_the_cluster_and_cancel_keeps_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let ray_port = common::free_port("127.0.0.1");
    let dash_port = common::free_port("127.0.0.1");
    let cfg = env.write(
        "local.toml",
        &format!(
            "[setup]\nname = \"t-auto\"\nprovider = \"local\"\nnumber_of_workers = 1\nautostop = \"10s\"\n\n[setup.local]\nray_port = {ray_port}\ndashboard_port = {dash_port}\n"
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    let up = env.ok(&["up", "-c", cfg]);
    // The plan says how long the cluster may sit idle.
    assert_stdout(
        &up,
        "Autostop: idle 10s (no job, no Ray task or actor), the cluster takes itself down",
    );
    let nodes = env.home().join("clusters/t-auto/nodes");
    let pid =
        |node: &str| std::fs::read_to_string(nodes.join(node).join("ray.pid")).unwrap_or_default();
    let (head, worker) = (pid("head"), pid("worker-1"));
    assert!(pid_runs(&head) && pid_runs(&worker), "{head} {worker}");
    let rows = list_rows(&env, "t-auto");
    let head_row = rows.iter().find(|r| r["role"] == "head").unwrap();
    assert!(
        head_row["autostop"]
            .as_str()
            .unwrap_or("")
            .starts_with("10s"),
        "{rows:?}"
    );

    // A job longer than the autostop keeps the cluster up; it stops only once idle 10s after.
    let work = env.write("job/run.sh", "sleep 14; echo job-done\n");
    let job = env.submit(
        cfg,
        work.parent().unwrap().to_str().unwrap(),
        &["sh", "run.sh"],
    );
    assert!(
        job.status.success(),
        "the cluster stopped under its job:\n{}",
        out(&job)
    );
    assert_stdout(&job, "job-done");
    let ended = Instant::now();
    let took = wait_for(
        "the head's Ray stopped by autostop",
        Duration::from_secs(90),
        || !pid_runs(&head),
    );
    assert!(
        took >= Duration::from_secs(6),
        "stopped {took:?} after the job: not idle 10s"
    );
    wait_for(
        "the worker's Ray stopped too",
        Duration::from_secs(30),
        || !pid_runs(&worker),
    );
    eprintln!(
        "autostop: stopped {:?} after the job ended",
        ended.elapsed()
    );
    let rows = list_rows(&env, "t-auto");
    assert_eq!(rows.len(), 2, "the nodes' records stay: {rows:?}");
    assert!(rows.iter().all(|r| r["state"] == "stopped"), "{rows:?}");
    let head_row = rows.iter().find(|r| r["role"] == "head").unwrap();
    assert!(
        head_row["autostop"]
            .as_str()
            .unwrap_or("")
            .starts_with("stopped itself at"),
        "{rows:?}"
    );

    // `up` starts it again (and arms autostop again); `--cancel` keeps it up past the time.
    let up = env.ok(&["up", "-c", cfg, "--yes"]);
    assert_stdout(&up, "node is stopped");
    let head = pid("head");
    assert!(pid_runs(&head));
    env.ok(&["autostop", "-c", cfg, "--cancel"]);
    std::thread::sleep(Duration::from_secs(20));
    assert!(pid_runs(&head), "stopped although autostop was cancelled");
    assert!(
        list_rows(&env, "t-auto")
            .iter()
            .all(|r| r.get("autostop").is_none()),
        "a cancelled autostop still shows"
    );
    // Armed again at run time: down again within its time.
    let armed = env.ok(&["autostop", "-c", cfg, "10s"]);
    assert_stdout(&armed, "takes itself down after 10s");
    wait_for(
        "autostop armed by `daft autostop`",
        Duration::from_secs(60),
        || !pid_runs(&head),
    );

    // down after an autostop: nothing left, the watcher included.
    env.ok(&["up", "-c", cfg, "--yes"]);
    let cluster_dir = env.home().join("clusters/t-auto");
    let dir = cluster_dir.to_string_lossy().to_string();
    assert!(
        !processes_naming("autostop", &dir).is_empty(),
        "no watcher after up"
    );
    env.ok(&["down", "-c", cfg, "--yes"]);
    wait_for(
        "the watcher to end after down",
        Duration::from_secs(30),
        || processes_naming("autostop", &dir).is_empty(),
    );
    assert!(list_rows(&env, "t-auto").is_empty());
    // Bad input is a usage error, before anything connects.
    let o = env
        .daft()
        .args(["autostop", "-c", cfg, "soon"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a duration of at least 10s"));
}

/// On SSH hosts the idle head halts its own Ray; the worker's Ray ends as it loses its head
/// (Ray's raylet gives up on an unreachable GCS), and both show as stopped.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs sshd and Ray from PyPI"]
fn ssh_autostop_stops_the_head_and_the_worker_follows() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let (a, b) = two_hosts();
    let cfg = ssh_config(&env, &a, &[&b], "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "provider = \"ssh\"\n",
        "provider = \"ssh\"\nautostop = \"10s\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap();
    let _down = env.down_on_panic(cfg);
    env.ok(&["up", "-c", cfg]);
    // Each host has one node of the cluster: its directory, whatever its name.
    let pid = |home: &Path| {
        let nodes = home.join(".daft/clusters/t-ssh/nodes");
        let dir = std::fs::read_dir(&nodes)
            .unwrap()
            .flatten()
            .find(|e| e.path().is_dir())
            .unwrap_or_else(|| panic!("no node under {}", nodes.display()));
        std::fs::read_to_string(dir.path().join("ray.pid")).unwrap_or_default()
    };
    let (head, worker) = (pid(&a.home), pid(&b.home));
    assert!(pid_runs(&head) && pid_runs(&worker), "{head:?} {worker:?}");
    wait_for(
        "the idle head stopped by autostop",
        Duration::from_secs(60),
        || !pid_runs(&head),
    );
    let took = wait_for(
        "the worker's Ray to end without its head",
        Duration::from_secs(150),
        || !pid_runs(&worker),
    );
    eprintln!("autostop on SSH hosts: the worker's Ray ended {took:?} after the head's");
    let o = env.ok(&["plan", "-c", cfg]);
    let plan = String::from_utf8_lossy(&o.stdout);
    assert_eq!(plan.matches("node is stopped").count(), 2, "{plan}");
    env.ok(&["down", "-c", cfg, "--yes"]);
}
