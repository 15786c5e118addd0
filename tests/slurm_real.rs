//! The real Slurm the Slurm provider is built against (Debian's slurm-wlm and munge, started by
//! the test on free loopback ports): it queues and runs batch jobs, shows why a job waits, and
//! runs a job array at most N tasks at a time — what `provider = "slurm"` and sweeps rely on.

mod common;

use std::time::Duration;

use common::slurm::Slurm;

#[test]
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
