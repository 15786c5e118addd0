//! The real Slurm the Slurm provider is built against (Debian's slurm-wlm and munge, started by
//! the test on free loopback ports): it queues and runs batch jobs, shows why a job waits, and
//! runs a job array at most N tasks at a time — what `provider = "slurm"` and sweeps rely on.

mod common;

use std::time::Duration;

use common::slurm::Slurm;

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root, slurm-wlm and munge"]
fn real_slurm_queues_runs_and_limits_an_array() {
    let slurm = Slurm::start(2);
    let d = slurm.dir.path();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();

    // A batch job that holds both CPUs, then one that must wait behind it: its pending reason.
    let first = slurm.client(
        "sbatch",
        &[
            "--parsable",
            "-J",
            "daft-hold",
            "--comment",
            "daft:test",
            "-c",
            "2",
            "-o",
            out.join("hold.out").to_str().unwrap(),
            "--wrap",
            "sleep 3; echo held",
        ],
    );
    let first: u32 = first
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("sbatch: {first}"));
    let second = slurm.client(
        "sbatch",
        &[
            "--parsable",
            "-c",
            "2",
            "-o",
            out.join("second.out").to_str().unwrap(),
            "--wrap",
            "echo second",
        ],
    );
    let second: u32 = second
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("sbatch: {second}"));
    let mut reason = String::new();
    for _ in 0..50 {
        reason = slurm.client("squeue", &["-h", "-j", &second.to_string(), "-o", "%T %r"]);
        if reason.starts_with("PENDING") && !reason.contains("None") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reason.starts_with("PENDING")
            && (reason.contains("Resources") || reason.contains("Priority")),
        "{reason}"
    );
    // Tagged by name and comment, as daft tags its allocations.
    let tagged = slurm.client("squeue", &["-h", "-j", &first.to_string(), "-o", "%j %k"]);
    assert_eq!(tagged.trim(), "daft-hold daft:test");
    slurm.wait_queue_empty(60);
    assert_eq!(
        std::fs::read_to_string(out.join("hold.out")).unwrap(),
        "held\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("second.out")).unwrap(),
        "second\n"
    );

    // An array of 6 one-CPU tasks, at most 2 at once: each records when it ran.
    let arr = slurm.client(
        "sbatch",
        &[
            "--parsable",
            "--array=0-5%2",
            "-c",
            "1",
            "-o",
            out.join("task-%a.out").to_str().unwrap(),
            "--wrap",
            "python3 -c 'import time,os; t=time.time(); time.sleep(1); print(os.environ[\"SLURM_ARRAY_TASK_ID\"], t, time.time())'",
        ],
    );
    assert!(arr.trim().parse::<u32>().is_ok(), "sbatch: {arr}");
    slurm.wait_queue_empty(120);
    let mut spans = Vec::new();
    for i in 0..6 {
        let line = std::fs::read_to_string(out.join(format!("task-{i}.out"))).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[0], i.to_string(), "{line}");
        spans.push((f[1].parse::<f64>().unwrap(), f[2].parse::<f64>().unwrap()));
    }
    for (s, _) in &spans {
        let at_once = spans.iter().filter(|(a, b)| a <= s && s < b).count();
        assert!(at_once <= 2, "{at_once} tasks at once: {spans:?}");
    }
}

fn daft(home: &std::path::Path, slurm: &Slurm) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("daft").unwrap();
    c.current_dir(home)
        .env("DAFT_HOME", home.join(".daft"))
        .env("HOME", home)
        .env("UV_CACHE_DIR", common::uv_cache())
        .envs(slurm.env())
        .env("RUST_LOG", "warn")
        .timeout(Duration::from_secs(900));
    c
}

fn text(o: &std::process::Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// No process of the cluster's environment under `home` is left (within 20 s of `down`); when
/// one is, the message shows each one's state, parent, group and session, and the tails of the
/// allocation's, the nodes' and Slurm's logs.
fn assert_no_ray_left(home: &std::path::Path, slurm: &Slurm) {
    let envs = format!("{}/.daft/envs", home.display());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !common::procs_with(&envs).is_empty() {
        if std::time::Instant::now() > deadline {
            panic!("left behind:\n{}", leftover_report(home, slurm, &envs));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn leftover_report(home: &std::path::Path, slurm: &Slurm, envs: &str) -> String {
    let mut r = String::new();
    for p in common::procs_with(envs) {
        let pid = p.split(' ').next().unwrap_or_default();
        // stat: pid (comm) state ppid pgrp session …
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().take(4).collect())
            .unwrap_or_default();
        r += &format!(
            "[state ppid pgrp session] {fields:?} {}\n",
            p.chars().take(300).collect::<String>()
        );
    }
    let mut logs = Vec::new();
    let mut stack = vec![home.join(".daft"), slurm.dir.path().join("log")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if path.is_dir() && name != "envs" && name != "venv" {
                stack.push(path);
            } else if name.ends_with(".log") {
                logs.push(path);
            }
        }
    }
    for l in logs {
        let text = std::fs::read_to_string(&l).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        r += &format!(
            "--- {}\n{}\n",
            l.display(),
            lines[lines.len().saturating_sub(25)..].join("\n")
        );
    }
    r
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root, slurm-wlm and munge"]
fn slurm_cluster_waits_in_the_queue_runs_jobs_replaces_and_goes() {
    // The allocation's node is this machine at 127.0.0.2, with no sshd there: jobs, setup
    // commands, files and the dashboard reach the head node through Slurm itself (srun, the
    // template's default), as at sites that allow no SSH into compute nodes. The node and this
    // machine share the user's home, as a cluster's nodes and login node do.
    let home = tempfile::tempdir().unwrap();
    // (4 CPUs as Slurm counts them, whatever this machine has: config_overrides.)
    let slurm = Slurm::start_at(4, "127.0.0.2");
    let h = home.path();
    assert!(
        std::net::TcpStream::connect(("127.0.0.2", 22)).is_err(),
        "something listens for SSH on the node: this test is about nodes without it"
    );
    let cfg = h.join("slurm.toml");
    let write_cfg = |time: &str| {
        // (No ssh_user, key or port: the template's defaults.)
        std::fs::write(
            &cfg,
            format!(
                "[setup]\nname = \"t-slurm\"\nprovider = \"slurm\"\n\n[setup.slurm]\ntime = \"{time}\"\ncpus_per_task = 1\npre_commands = [\"export DAFT_TEST_PRE=loaded\"]\n\n[run]\nsetup_commands = [\"echo set-up > $HOME/setup-marker\"]\n",
            ),
        )
        .unwrap();
    };
    write_cfg("0:30:00");
    let c = cfg.to_str().unwrap();
    // Every CPU is taken for a few seconds: the cluster's allocation waits behind them.
    let hold = slurm.client("sbatch", &["--parsable", "-c", "4", "--wrap", "sleep 6"]);
    assert!(hold.trim().parse::<u32>().is_ok(), "{hold}");

    let plan = daft(h, &slurm).args(["plan", "-c", c]).output().unwrap();
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout)
            .contains("+ create     Slurm job daft-t-slurm  (1 head + 0 worker(s))"),
        "{}",
        text(&plan)
    );
    // --no-wait: back once queued.
    let queued = daft(h, &slurm)
        .args(["up", "-c", c, "--no-wait"])
        .output()
        .unwrap();
    assert!(queued.status.success(), "{}", text(&queued));
    let q = slurm.client("squeue", &["-h", "--name=daft-t-slurm", "-o", "%T"]);
    assert_eq!(q.trim(), "PENDING", "{}", text(&queued));
    // The next `up` waits through the queue, saying why, then sets the head up.
    let up = daft(h, &slurm).args(["up", "-c", c]).output().unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let all = text(&up);
    assert!(
        all.contains("is queued: Resources") || all.contains("is queued: Priority"),
        "{all}"
    );
    let queue = slurm.client("squeue", &["-h", "--name=daft-t-slurm", "-o", "%i %T %k"]);
    let first_id = queue.split_whitespace().next().unwrap().to_string();
    assert!(
        queue.contains("RUNNING") && queue.contains("daft:t-slurm"),
        "{queue}"
    );
    // setup_commands ran on the head node (its $HOME is the shared home).
    assert!(h.join("setup-marker").exists());

    // list: the allocation, its node and the time it has left.
    let list = daft(h, &slurm)
        .args(["list", "-c", c, "--local-only", "-o", "json"])
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", text(&list));
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == "slurm")
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(row["id"], first_id.as_str());
    assert_eq!(row["state"], "running");
    assert!(row["type"].as_str().unwrap().contains("left"), "{row}");

    // Nothing changed: nothing to do.
    let again = daft(h, &slurm).args(["up", "-c", c]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("Nothing to do"),
        "{}",
        text(&again)
    );

    // A job sees the cluster's Ray (through its token).
    let job = h.join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(
        job.join("nodes.py"),
        "import os, ray\nray.init()\nprint('nodes=%d' % len([n for n in ray.nodes() if n['Alive']]))\n@ray.remote\ndef pre():\n    return os.environ.get('DAFT_TEST_PRE')\nprint('job-pre=%s ray-pre=%s' % (os.environ.get('DAFT_TEST_PRE'), ray.get(pre.remote())))\n",
    )
    .unwrap();
    let sub = daft(h, &slurm)
        .args([
            "submit",
            "-c",
            c,
            "-w",
            job.to_str().unwrap(),
            "--",
            "python",
            "nodes.py",
        ])
        .output()
        .unwrap();
    assert!(sub.status.success(), "{}", text(&sub));
    assert!(
        String::from_utf8_lossy(&sub.stdout).contains("nodes=1"),
        "{}",
        text(&sub)
    );
    // pre_commands ran before Ray started on the node, and before the job.
    assert!(
        String::from_utf8_lossy(&sub.stdout).contains("job-pre=loaded ray-pre=loaded"),
        "{}",
        text(&sub)
    );
    // The job's exit status passes through srun; its output is there for `logs`.
    let failing = daft(h, &slurm)
        .args([
            "submit",
            "-c",
            c,
            "-w",
            job.to_str().unwrap(),
            "--name",
            "seven",
            "--",
            "python",
            "-c",
            "print('about to exit'); import sys; sys.exit(7)",
        ])
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(7), "{}", text(&failing));
    let logs = daft(h, &slurm)
        .args(["logs", "-c", c, "seven"])
        .output()
        .unwrap();
    assert!(
        logs.status.success() && String::from_utf8_lossy(&logs.stdout).contains("about to exit"),
        "{}",
        text(&logs)
    );

    // The dashboard through the tunnel, with the cluster's token.
    let port = common::free_port("127.0.0.1");
    let mut dash = std::process::Command::new(assert_cmd::cargo::cargo_bin("daft"))
        .current_dir(h)
        .env("DAFT_HOME", h.join(".daft"))
        .env("HOME", h)
        .envs(slurm.env())
        .args([
            "dashboard",
            "-c",
            c,
            "--no-browser",
            "--port",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let token = std::fs::read_to_string(h.join(".daft/clusters/t-slurm/ray-token")).unwrap();
    let body = common::dashboard_version(port, Some(token.trim()));
    assert!(body.contains("ray_version"), "{body}");
    // Ray's own Jobs API through the same tunnel (a relay step of the allocation).
    common::ray_job_submit(
        &format!("http://127.0.0.1:{port}"),
        &h.join(".daft/clusters/t-slurm/venv/bin/ray"),
        token.trim(),
        h,
    );
    let _ = dash.kill();
    let _ = dash.wait();

    // A sweep is one job array: 6 tasks, 2 at a time, each with its variant; one fails.
    let sweep_dir = h.join("sweepjob");
    std::fs::create_dir_all(&sweep_dir).unwrap();
    std::fs::write(
        sweep_dir.join("job.py"),
        "import json, os, sys, time\nv = json.loads(os.environ['DAFT_VARIANT'])\nt0 = time.time()\ntime.sleep(1.5)\nopen(os.path.join(os.environ['DAFT_LOG_DIR'], 'times'), 'w').write('%f %f' % (t0, time.time()))\nprint(json.dumps({'variant': v, 'argv': sys.argv[1:], 'task': os.environ.get('SLURM_ARRAY_TASK_ID')}))\nsys.exit(3 if v['lr'] == 0.01 and v['batch'] == 64 else 0)\n",
    )
    .unwrap();
    let grid = h.join("grid.toml");
    std::fs::write(
        &grid,
        "[sweep]\nname = \"grid\"\nmax_parallel = 2\nargs = true\n[sweep.parameters]\nlr = [0.1, 0.01]\nbatch = [16, 32, 64]\n",
    )
    .unwrap();
    let sweep = daft(h, &slurm)
        .args([
            "submit",
            "-c",
            c,
            "-w",
            sweep_dir.to_str().unwrap(),
            "--sweep",
            grid.to_str().unwrap(),
        ])
        .args(["--", "python", "job.py"])
        .output()
        .unwrap();
    assert_eq!(sweep.status.code(), Some(1), "{}", text(&sweep));
    let err = String::from_utf8_lossy(&sweep.stderr);
    assert!(
        err.contains("is job array") && err.contains("5 of 6 succeeded"),
        "{}",
        text(&sweep)
    );
    let listed = daft(h, &slurm)
        .args(["jobs", "-c", c, "-o", "json"])
        .output()
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let ran = common::sweep_jobs(&jobs, "grid", 6);
    let mut tasks = std::collections::BTreeSet::new();
    for (n, j) in ran.iter().enumerate() {
        assert_eq!(j.said["task"], n.to_string(), "{}", j.said);
        tasks.insert(std::fs::read_to_string(j.dir.join("slurm-task")).unwrap());
    }
    assert_eq!(tasks.len(), 6, "{tasks:?}");
    assert_eq!(common::most_at_once(&ran), 2, "not two at a time");

    // cancel maps to the array's tasks: a queued one and a running one.
    let long = h.join("long.toml");
    std::fs::write(
        &long,
        "[sweep]\nname = \"long\"\nmax_parallel = 1\n[[sweep.variants]]\nx = 1\n[[sweep.variants]]\nx = 2\n",
    )
    .unwrap();
    let running = std::process::Command::new(assert_cmd::cargo::cargo_bin("daft"))
        .current_dir(h)
        .env("DAFT_HOME", h.join(".daft"))
        .env("HOME", h)
        .envs(slurm.env())
        .args(["submit", "-c", c, "-w", sweep_dir.to_str().unwrap()])
        .args(["--sweep", long.to_str().unwrap(), "--", "sleep", "300"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let state_of = |name: &str| -> String {
        let listed = daft(h, &slurm)
            .args(["jobs", "-c", c, "-o", "json"])
            .output()
            .unwrap();
        let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap_or_default();
        jobs.as_array()
            .into_iter()
            .flatten()
            .find(|j| j["name"] == name)
            .map(|j| j["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while state_of("long-1") != "running" {
        assert!(std::time::Instant::now() < deadline, "long-1 did not start");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(state_of("long-2"), "queued");
    let c2 = daft(h, &slurm)
        .args(["cancel", "-c", c, "long-2"])
        .output()
        .unwrap();
    assert!(c2.status.success(), "{}", text(&c2));
    let c1 = daft(h, &slurm)
        .args(["cancel", "-c", c, "long-1"])
        .output()
        .unwrap();
    assert!(c1.status.success(), "{}", text(&c1));
    let done = running.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(1), "{}", text(&done));
    assert_eq!(
        String::from_utf8_lossy(&done.stdout)
            .matches("cancelled")
            .count(),
        2,
        "{}",
        text(&done)
    );
    assert_eq!(state_of("long-1"), "cancelled");
    assert_eq!(state_of("long-2"), "cancelled");
    assert!(
        common::procs_with("sleep 300").is_empty(),
        "{:?}",
        common::procs_with("sleep 300")
    );
    let q = slurm.client("squeue", &["-h", "--name=daft-t-slurm-sweep"]);
    assert_eq!(q.trim(), "", "{q}");

    // A new time limit replaces the allocation.
    write_cfg("0:20:00");
    let replace = daft(h, &slurm)
        .args(["up", "-c", c, "--yes"])
        .output()
        .unwrap();
    assert!(replace.status.success(), "{}", text(&replace));
    assert!(
        String::from_utf8_lossy(&replace.stdout)
            .contains("~ update     Slurm job daft-t-slurm  (time 0:30:00 → 0:20:00)"),
        "{}",
        text(&replace)
    );
    let queue = slurm.client("squeue", &["-h", "--name=daft-t-slurm", "-o", "%i %T %l"]);
    let lines: Vec<&str> = queue.lines().collect();
    assert_eq!(lines.len(), 1, "{queue}");
    assert!(
        !lines[0].starts_with(&first_id)
            && lines[0].contains("RUNNING")
            && lines[0].contains("20:00"),
        "{queue}"
    );

    // down: the queue is empty, and no Ray process of the cluster is left.
    let down = daft(h, &slurm)
        .args(["down", "-c", c, "--yes"])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(slurm.client("squeue", &["-h"]).trim(), "");
    assert_no_ray_left(h, &slurm);
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root, slurm-wlm and munge"]
fn slurm_refusal_is_slurms_own_message_and_exit_1() {
    let slurm = Slurm::start(1);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let cfg = h.join("slurm.toml");
    std::fs::write(
        &cfg,
        "[setup]\nname = \"t-bad\"\nprovider = \"slurm\"\n\n[setup.slurm]\npartition = \"nosuchpartition\"\n",
    )
    .unwrap();
    let up = daft(h, &slurm)
        .args(["up", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    let e = String::from_utf8_lossy(&up.stderr);
    assert!(e.contains("Invalid partition name specified"), "{e}");
    // Located at the key it is about.
    assert!(
        e.contains("slurm.toml:6:13") && e.contains("nosuchpartition"),
        "{e}"
    );
    assert_eq!(slurm.client("squeue", &["-h"]).trim(), "");
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root, slurm-wlm and munge"]
fn slurm_two_node_allocation_through_a_login_node_runs_the_head_and_a_worker() {
    // Two Slurm nodes, each a network namespace of its own with an sshd on port 22; one shared
    // home (as a cluster's nodes share it).
    let slurm = Slurm::start_cluster(2, 2);
    let shared = tempfile::tempdir().unwrap();
    let h = shared.path();
    let net = slurm.net.as_ref().unwrap();
    let sshds: Vec<common::Sshd> = slurm
        .nodes
        .iter()
        .zip(&net.namespaces)
        .map(|((_, addr), ns)| common::Sshd::start_in_netns(addr, ns, h))
        .collect();
    // One key for every node.
    let auth = sshds[0].dir.path().join("authorized_keys");
    for s in &sshds[1..] {
        std::fs::copy(&auth, s.dir.path().join("authorized_keys")).unwrap();
    }
    // The login node: this machine at 127.0.0.3, over SSH (Slurm's commands there find this
    // Slurm; its sessions share the home); daft reaches the head node through it.
    let login = common::Sshd::start_with_home(
        "127.0.0.3",
        &format!("SetEnv SLURM_CONF={} UV_OFFLINE=1", slurm.conf.display()),
        h,
    );
    std::fs::copy(&auth, login.dir.path().join("authorized_keys")).unwrap();
    // The login node by the name the user's ~/.ssh/config gives it (its HostName and Port).
    std::fs::create_dir_all(h.join(".ssh")).unwrap();
    std::fs::write(
        h.join(".ssh/config"),
        format!(
            "Host slurm-login\n  HostName {}\n  Port {}\n",
            login.addr, login.port
        ),
    )
    .unwrap();
    let cfg = h.join("slurm.toml");
    std::fs::write(
        &cfg,
        format!(
            "[setup]\nname = \"t-slurm2\"\nprovider = \"slurm\"\nnumber_of_workers = 1\nssh_user = \"{}\"\nssh_private_key = \"{}\"\n\n[setup.slurm]\nlogin = \"slurm-login\"\nnode_access = \"ssh\"\ntime = \"0:30:00\"\ncpus_per_task = 1\n",
            sshds[0].user,
            sshds[0].key.display(),
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    // (The nodes' namespaces reach no package index: uv installs from this machine's cache.)
    // (No SLURM_CONF here: every Slurm command runs on the login node.)
    let up = daft(h, &slurm)
        .env_remove("SLURM_CONF")
        .env("UV_OFFLINE", "1")
        .args(["up", "-c", c])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let queue = slurm.client("squeue", &["-h", "--name=daft-t-slurm2", "-o", "%T %D %N"]);
    assert!(queue.starts_with("RUNNING 2 "), "{queue}");

    // A job on the head sees both Ray nodes, each at its node's own address.
    let job = h.join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(
        job.join("nodes.py"),
        "import time, ray\nray.init()\nfor _ in range(120):\n    alive = [n for n in ray.nodes() if n['Alive']]\n    if len(alive) >= 2:\n        break\n    time.sleep(0.5)\nprint('nodes=%d' % len(alive))\nprint('ips=%s' % sorted(n['NodeManagerAddress'] for n in alive))\n",
    )
    .unwrap();
    let sub = daft(h, &slurm)
        .env_remove("SLURM_CONF")
        .env("RUST_LOG", "debug")
        .args([
            "submit",
            "-c",
            c,
            "-w",
            job.to_str().unwrap(),
            "--",
            "python",
            "nodes.py",
        ])
        .output()
        .unwrap();
    assert!(sub.status.success(), "{}", text(&sub));
    let out = String::from_utf8_lossy(&sub.stdout);
    assert!(out.contains("nodes=2"), "{}", text(&sub));
    let mut ips: Vec<String> = slurm.nodes.iter().map(|(_, a)| a.clone()).collect();
    ips.sort();
    let py_list = format!(
        "[{}]",
        ips.iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(out.contains(&format!("ips={py_list}")), "{}", text(&sub));
    // squeue ran on the login node, and the head node was reached through it.
    let log = String::from_utf8_lossy(&sub.stderr);
    assert!(
        log.contains(&login.host()) && log.contains("squeue") && log.contains("direct-tcpip"),
        "{log}"
    );

    let down = daft(h, &slurm)
        .env_remove("SLURM_CONF")
        .args(["down", "-c", c, "--yes"])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(slurm.client("squeue", &["-h"]).trim(), "");
    assert_no_ray_left(h, &slurm);
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root, slurm-wlm and munge"]
fn slurm_autostop_ends_an_idle_allocation_by_itself() {
    // The allocation holds the watcher (the batch script runs it), the head's set-up arms it;
    // idle for the setting, the watcher `scancel`s its own allocation.
    // (This Slurm tracks processes with proctrack/linuxproc; a site's proctrack/cgroup, which
    // ends whatever a finished job step started, cannot run here: the watcher is a child of
    // the batch script for exactly that reason.)
    let slurm = Slurm::start(2);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let cfg = h.join("slurm.toml");
    std::fs::write(
        &cfg,
        "[setup]\nname = \"t-idle\"\nprovider = \"slurm\"\nautostop = \"10s\"\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let up = daft(h, &slurm).args(["up", "-c", cfg]).output().unwrap();
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("Autostop: idle 10s"),
        "{}",
        text(&up)
    );
    let started = std::time::Instant::now();
    let log = h.join(".daft/clusters/t-idle/autostop.log");
    // The watcher is the batch script's (`autostop-watch`, run by the allocation's holder), not
    // one forked by the job step that armed it.
    while common::procs_with("autostop-watch").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no watcher held by the allocation:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    while !slurm.client("squeue", &["-h"]).trim().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the idle allocation is still in the queue after 120 s:\n{}\n{}",
            slurm.client("squeue", &["-h"]),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("daft autostop: idle for"), "{said}");
    assert_no_ray_left(h, &slurm);
    // Gone by itself: the next plan creates it again.
    let plan = daft(h, &slurm).args(["plan", "-c", cfg]).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("+ create"),
        "{}",
        text(&plan)
    );
}
