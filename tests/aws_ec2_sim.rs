//! The AWS provider end to end, in the default (waiting) mode, against EC2 behaviour moto lacks:
//! moto behind the EC2 simulation of `tests/common/ec2sim.rs` (a simulation, not EC2: instances
//! are network namespaces on this machine, with a private address this machine cannot reach and
//! a public one it can). Real sshd, real Ray and Daft in every "instance", installed by daft's
//! own user data with uv.

mod common;

use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::ec2sim::Ec2Sim;

/// One simulation at a time: they share the host's address plan (198.18.0.0/15) and names.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Case<'a> {
    sim: &'a Ec2Sim,
    dir: tempfile::TempDir,
}

impl<'a> Case<'a> {
    fn new(sim: &'a Ec2Sim) -> Case<'a> {
        let dir = tempfile::tempdir().unwrap();
        common::keygen(&dir.path().join("id"), "ed25519");
        Case { sim, dir }
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("daft-home")
    }
    fn cmd(&self, c: &mut StdCommand) {
        c.current_dir(self.dir.path())
            .env("AWS_ENDPOINT_URL", self.sim.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", self.dir.path())
            .env("DAFT_HOME", self.home())
            .env("DAFT_SSH_DEADLINE_SECS", "120")
            .env("DAFT_USER_DATA_WAIT_SECS", "600")
            .env("RUST_LOG", "daft=debug")
            .env_remove("AWS_PROFILE");
    }
    fn daft(&self) -> Command {
        let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"));
        self.cmd(&mut c);
        let mut c = Command::from_std(c);
        c.timeout(Duration::from_secs(900));
        c
    }
    /// cluster.toml: a t3.medium head and one worker of group "gpu" of `types` (TOML strings,
    /// comma-separated) on `image`, with more of the group's keys in `extra`; its path.
    fn gpu_group(&self, image: &str, types: &str, extra: &str) -> String {
        let p = self.dir.path().join("cluster.toml");
        std::fs::write(
            &p,
            format!(
                "[setup]\nname = \"sim\"\nprovider = \"aws\"\nssh_user = \"root\"\nssh_private_key = \"id\"\n\
                 instance_type = \"t3.medium\"\n[setup.aws]\nssh_ingress_cidrs = [\"198.18.0.0/15\"]\n\
                 [[setup.aws.worker_groups]]\nname = \"gpu\"\ninstance_types = [{types}]\nworkers = 1\n\
                 image_id = \"{image}\"\n{extra}\n[run]\nsetup_commands = []\n"
            ),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    }
    fn config(&self, instance_type: &str, setup: &str) -> String {
        let p = self.dir.path().join("cluster.toml");
        std::fs::write(
            &p,
            format!(
                "[setup]\nname = \"sim\"\nprovider = \"aws\"\nssh_user = \"root\"\nssh_private_key = \"id\"\nnumber_of_workers = 2\ninstance_type = \"{instance_type}\"\n\n[setup.aws]\nssh_ingress_cidrs = [\"198.18.0.0/15\"]\n\n[run]\nsetup_commands = [{setup}]\n"
            ),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    }
    /// `daft ARGS`: (status, stdout, stderr); every address daft connected to is the
    /// simulation's own.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.daft().args(args).output().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        );
        let ours = self.sim.addresses();
        for line in err.lines().filter(|l| l.contains("ssh connect")) {
            let addr = line
                .split("addr=")
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("");
            let ip = addr
                .rsplit('@')
                .next()
                .unwrap_or("")
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or("");
            assert!(
                ours.iter().any(|a| a == ip),
                "daft connected to {ip:?}, which the simulation did not make ({ours:?})"
            );
        }
        (o.status.code().unwrap_or(-1), out, err)
    }
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(
            code,
            0,
            "daft {args:?}\n--- stdout\n{out}\n--- stderr\n{}\n--- sim\n{}",
            tail(&err),
            self.sim.log()
        );
        out
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

const PROBE: &str =
    "import ray\nray.init()\nprint('nodes=%d' % len([n for n in ray.nodes() if n['Alive']]))\n";
/// The same, after a head was replaced by an `up` that does not wait for the workers: they rejoin
/// the new head by themselves, in their own time (up to 90 s here).
const PROBE_REJOINED: &str = "import ray, time\nray.init()\nend = time.time() + 90\nwhile True:\n    n = len([n for n in ray.nodes() if n['Alive']])\n    if n >= 3 or time.time() > end:\n        break\n    time.sleep(1)\nprint('nodes=%d' % n)\n";

async fn ec2(sim: &Ec2Sim) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-west-2"))
        .endpoint_url(sim.endpoint())
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .http_client(daft::provider::aws::http_client())
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// (id, role, state, public ip) of the cluster's instances, through the simulation.
fn mine() -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name("tag:daft:cluster")
        .values("sim")
        .build()
}

async fn instances(sim: &Ec2Sim) -> Vec<(String, String, String, String)> {
    let out = ec2(sim)
        .await
        .describe_instances()
        .filters(mine())
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            let role = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("daft:role"))
                .and_then(|t| t.value())
                .unwrap_or("")
                .to_string();
            (
                i.instance_id().unwrap().to_string(),
                role,
                i.state().unwrap().name().unwrap().as_str().to_string(),
                i.public_ip_address().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The cluster's security groups, through the simulation.
async fn groups(sim: &Ec2Sim) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
    ec2(sim)
        .await
        .describe_security_groups()
        .filters(mine())
        .send()
        .await
        .unwrap()
        .security_groups()
        .to_vec()
}

async fn alive(sim: &Ec2Sim) -> Vec<(String, String, String, String)> {
    instances(sim)
        .await
        .into_iter()
        .filter(|i| i.2 == "running" || i.2 == "pending")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root (network namespaces), moto_server, sshd and Ray from PyPI"]
async fn simulated_ec2_waiting_up_submit_dashboard_setup_failure_update_replace_rejoin_down() {
    let _g = SERIAL.lock().await;
    let sim = Ec2Sim::start(3.0);
    let case = Case::new(&sim);
    let cfg = case.config("t3.medium", "'echo setup-ran > setup-marker'");
    let job = case.dir.path().join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(job.join("probe.py"), PROBE).unwrap();
    std::fs::write(job.join("probe_rejoined.py"), PROBE_REJOINED).unwrap();
    let job = job.to_str().unwrap().to_string();

    // 1. A waiting `up`: running + public address, SSH, user data, setup commands, workers.
    let t = Instant::now();
    let up = case.ok(&["up", "-c", &cfg, "--wait-workers"]);
    eprintln!("waiting up of 1 head + 2 workers: {:?}", t.elapsed());
    assert!(up.contains("is up: 1 head + 2 worker(s)"), "{up}");
    let nodes = alive(&sim).await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(
        nodes
            .iter()
            .all(|n| n.2 == "running" && n.3.starts_with("198.18.")),
        "{nodes:?}"
    );
    assert_eq!(sim.machines().len(), 3);
    let head = nodes.iter().find(|n| n.1 == "head").unwrap().0.clone();
    assert!(sim.machine_dir(&head).join("home/setup-marker").exists());
    // Recorded as set up only now: the tag is there.
    let again = case.ok(&["up", "-c", &cfg]);
    assert!(again.contains("Nothing to do"), "{again}");
    // Plain OpenSSH reaches the head and both workers through `daft ssh-config`, their host
    // keys checked under the instance ids daft pinned them by.
    let conf = case.dir.path().join("ssh.conf");
    std::fs::write(&conf, case.ok(&["ssh-config", "-c", &cfg])).unwrap();
    for host in ["sim", "sim-worker-1", "sim-worker-2"] {
        let o = StdCommand::new("ssh")
            .arg("-F")
            .arg(&conf)
            .args(["-o", "BatchMode=yes", host, "echo reached"])
            .env("HOME", case.dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("reached"),
            "{host}: {}\n{}",
            common::out(&o),
            std::fs::read_to_string(&conf).unwrap()
        );
    }

    // 2. submit: the job sees 3 Ray nodes; its exit status passes through.
    let (code, out, _) = case.run(&[
        "submit", "-i", "id", "-c", &cfg, "-w", &job, "--", "python", "probe.py",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nodes=3"), "{out}");
    let (code, _, _) = case.run(&[
        "submit",
        "-c",
        &cfg,
        "-w",
        &job,
        "--",
        "python",
        "-c",
        "import sys; sys.exit(7)",
    ]);
    assert_eq!(code, 7);

    // 3. dashboard: the tunnel serves the head's real dashboard.
    let port = common::free_port("127.0.0.1");
    let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"));
    case.cmd(&mut c);
    let mut dash = c
        .args([
            "dashboard",
            "-i",
            "id",
            "-c",
            &cfg,
            "--no-browser",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let body = common::dashboard_version(port, None);
    assert!(
        body.starts_with("HTTP/1.") && body.contains("200"),
        "{body}"
    );
    let _ = dash.kill();
    let _ = dash.wait();

    // 4. A failing setup command: exit 1 naming the node and the command, with its output;
    //    fixed, the next `up` runs it (an update in place, nothing replaced).
    let cfg = case.config("t3.medium", "'echo broken-output >&2; exit 5'");
    let (code, _, err) = case.run(&["up", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(
        err.contains("setup command 1")
            && err.contains("broken-output")
            && err.contains("exit status 5"),
        "{}",
        tail(&err)
    );
    let cfg = case.config("t3.medium", "'echo fixed > fixed-marker'");
    let fixed = case.ok(&["up", "-c", &cfg]);
    assert!(fixed.contains("~ update     head"), "{fixed}");
    assert!(sim.machine_dir(&head).join("home/fixed-marker").exists());
    assert_eq!(alive(&sim).await.len(), 3, "nothing replaced");

    // 5. The head goes away (terminated behind daft's back): `up` makes a new one, which EC2
    //    gives the address the old one had (a host key learned for the old instance does not
    //    stand in the way: keys are pinned per instance), and the surviving workers rejoin it.
    let old_head = nodes.iter().find(|n| n.1 == "head").unwrap().clone();
    ec2(&sim)
        .await
        .terminate_instances()
        .instance_ids(&head)
        .send()
        .await
        .unwrap();
    let rejoin = case.ok(&["up", "-c", &cfg]);
    assert!(
        rejoin.contains("+ create     head") && rejoin.contains("rejoin"),
        "{rejoin}"
    );
    let new_head = alive(&sim)
        .await
        .into_iter()
        .find(|n| n.1 == "head")
        .unwrap();
    assert_ne!(new_head.0, old_head.0);
    assert_eq!(
        new_head.3, old_head.3,
        "the simulation recycles the released address"
    );
    let (_, out, _) = case.run(&[
        "submit",
        "-c",
        &cfg,
        "-w",
        &job,
        "--",
        "python",
        "probe_rejoined.py",
    ]);
    assert!(out.contains("nodes=3"), "{out}");

    // 6. instance_type changes: head and workers replaced.
    let cfg = case.config("t3.large", "'echo fixed > fixed-marker'");
    let replaced = case.ok(&["up", "-c", &cfg, "--yes", "--wait-workers"]);
    assert_eq!(replaced.matches("± replace").count(), 3, "{replaced}");
    assert!(
        replaced.contains("instance_type t3.medium → t3.large"),
        "{replaced}"
    );
    let (_, out, _) = case.run(&["submit", "-c", &cfg, "-w", &job, "--", "python", "probe.py"]);
    assert!(out.contains("nodes=3"), "{out}");
    let now = alive(&sim).await;
    assert_eq!(now.len(), 3, "{now:?}");

    // 7. A changed key on the same instance is still refused.
    let head = now.iter().find(|n| n.1 == "head").unwrap().clone();
    let etc = sim.machine_dir(&head.0).join("etc-ssh");
    let kept = case.dir.path().join("kept-host-key");
    std::fs::create_dir_all(&kept).unwrap();
    for f in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        std::fs::copy(etc.join(f), kept.join(f)).unwrap();
    }
    std::fs::remove_file(etc.join("ssh_host_ed25519_key")).unwrap();
    std::fs::remove_file(etc.join("ssh_host_ed25519_key.pub")).unwrap();
    common::run(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        etc.join("ssh_host_ed25519_key").display()
    ));
    let (code, _, err) = case.run(&["submit", "-c", &cfg, "-w", &job, "--", "python", "probe.py"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("host key") && err.contains("changed"),
        "{}",
        tail(&err)
    );

    // (The head's own key back: sshd reads it for each connection.)
    for f in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        std::fs::copy(kept.join(f), etc.join(f)).unwrap();
    }

    // 8. down: the jobs' output saved first (it would go with the head), then every instance
    //    terminated, the security group gone, no namespace left.
    let (code, out, err) = case.run(&["down", "-c", &cfg, "--yes"]);
    assert_eq!(code, 0, "{out}\n{}", tail(&err));
    assert!(err.contains("Saved the output of"), "{}", tail(&err));
    assert!(alive(&sim).await.is_empty());
    assert!(sim.machines().is_empty(), "{:?}", sim.machines());
    assert!(groups(&sim).await.is_empty());
    // The cluster is gone; its jobs are not: `jobs` lists them, `logs` shows their output.
    let json = case.ok(&["jobs", "-c", &cfg, "--output", "json"]);
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    // (The head replaced in step 6 took the jobs before it: the one since is there.)
    assert_eq!(jobs.len(), 1, "{json}");
    assert_eq!(jobs[0]["exit_status"], 0, "{json}");
    let out = case.ok(&["logs", "-c", &cfg, "last"]);
    assert!(out.contains("nodes="), "{out}");
}

/// Autostop on AWS: the idle head terminates its whole cluster through its instance profile's
/// credentials (served by the simulation's metadata service; none of this machine's), after the
/// job that kept it busy; the next `down` removes the security group the head could not.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root (network namespaces), moto_server, sshd and Ray from PyPI"]
async fn simulated_ec2_autostop_terminates_the_cluster_through_its_instance_profile() {
    let _g = SERIAL.lock().await;
    let sim = Ec2Sim::start(3.0);
    let case = Case::new(&sim);
    let arn = common::create_instance_profile(&sim.endpoint(), "sim-head");
    let cfg = case.config("t3.medium", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "number_of_workers = 2\n",
            "number_of_workers = 1\nautostop = \"10s\"\n",
        )
        .replace(
            "[setup.aws]\n",
            &format!("[setup.aws]\niam_instance_profile = \"{arn}\"\n"),
        );
    std::fs::write(&cfg, text).unwrap();
    let up = case.ok(&["up", "-c", &cfg, "--wait-workers"]);
    assert!(up.contains("Autostop: idle 10s"), "{up}");
    assert_eq!(alive(&sim).await.len(), 2);
    let job = case.dir.path().join("job");
    std::fs::create_dir_all(&job).unwrap();
    let sub = case.ok(&[
        "submit",
        "-c",
        &cfg,
        "-w",
        job.to_str().unwrap(),
        "--",
        "sleep 12; echo busy-done",
    ]);
    assert!(
        sub.contains("busy-done"),
        "the cluster went under its job: {sub}"
    );
    let t = Instant::now();
    while !alive(&sim).await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the idle cluster did not terminate itself\n{}",
            sim.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "autostop on EC2: every instance terminated {:?} after the job",
        t.elapsed()
    );
    assert!(
        t.elapsed() >= Duration::from_secs(5),
        "stopped before it was idle 10s"
    );
    let log = sim.log();
    // The head asked EC2 with its profile's credentials, from the metadata service.
    assert!(
        log.contains("IMDS: credentials of instance profile sim-head to i-"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("TerminateInstances with key ASIASIM")),
        "{log}"
    );
    assert!(
        !log.contains("with key testing"),
        "an instance used this machine's credentials:\n{log}"
    );
    // What is left (the security group) goes with the next down; then nothing is.
    case.ok(&["down", "-c", &cfg, "--yes"]);
    assert!(groups(&sim).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root (network namespaces), moto_server, sshd and Ray from PyPI"]
async fn simulated_ec2_a_group_falls_back_to_its_next_type_and_with_none_left_fails_listing_each() {
    let _g = SERIAL.lock().await;
    // The simulation has no g5.xlarge nor g6.xlarge capacity; g4dn.xlarge it has.
    let sim = Ec2Sim::start_short_of(3.0, &["g5.xlarge", "g6.xlarge"]);
    let case = Case::new(&sim);
    // (moto has no image with the NVIDIA driver: the group names an image of its own.)
    let image = common::al2023_image(&ec2(&sim).await).await;
    let write = |types: &str| case.gpu_group(&image, types, "");
    let cfg = case.gpu_group(&image, "", "");
    // Every type refused: exit 1, each (type, EC2's reason) listed, no worker launched.
    write("\"g5.xlarge\", \"g6.xlarge\"");
    let (code, out, err) = case.run(&["up", "--no-wait", "-c", &cfg]);
    assert_eq!(code, 1, "{out}\n{}", tail(&err));
    for t in ["g5.xlarge", "g6.xlarge"] {
        assert!(
            err.contains(&format!("  - {t}: InsufficientInstanceCapacity")),
            "{}",
            tail(&err)
        );
    }
    assert!(err.contains("nothing was launched"), "{}", tail(&err));
    let workers =
        |v: &[(String, String, String, String)]| v.iter().filter(|n| n.1 == "worker").count();
    assert_eq!(workers(&alive(&sim).await), 0);
    // A type with capacity after them: the group falls back to it, saying so on one line each.
    write("\"g5.xlarge\", \"g6.xlarge\", \"g4dn.xlarge\"");
    let (code, out, err) = case.run(&["up", "--no-wait", "-c", &cfg]);
    assert_eq!(code, 0, "{out}\n{}", tail(&err));
    let said = format!("{out}{err}");
    assert!(
        said.contains("no capacity for g5.xlarge (worker of group gpu)")
            && said.contains("trying g6.xlarge")
            && said.contains("trying g4dn.xlarge"),
        "{said}"
    );
    assert_eq!(group_nodes(&sim).await, ["g4dn.xlarge on-demand"]);
    // down leaves nothing.
    case.ok(&["down", "--yes", "-c", &cfg]);
    assert!(alive(&sim).await.is_empty(), "{:?}", alive(&sim).await);
    assert!(groups(&sim).await.is_empty(), "a security group is left");
}

/// The lines of `daft plan`'s cost block.
fn cost_block(out: &str) -> String {
    out.lines()
        .skip_while(|l| !l.starts_with("Cost per hour"))
        .take_while(|l| l.starts_with("Cost per hour") || l.starts_with("  "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root (network namespaces), moto_server"]
async fn simulated_ec2_plan_prices_nodes_caches_them_and_up_refuses_over_max_hourly_cost() {
    let _g = SERIAL.lock().await;
    // The simulated Price List knows m7i.large and g5.xlarge on demand; EC2's spot history has
    // g5.xlarge at $0.45 in zone a and $0.36 in zone b.
    let sim = Ec2Sim::start_with(
        3.0,
        &[
            "--price",
            "m7i.large=0.1008",
            "--price",
            "g5.xlarge=1.006",
            "--spot-price",
            "g5.xlarge=0.45",
        ],
    );
    let case = Case::new(&sim);
    let p = case.dir.path().join("cluster.toml");
    let write = |extra: &str| {
        std::fs::write(
            &p,
            format!(
                "[setup]\nname = \"sim\"\nprovider = \"aws\"\nssh_user = \"root\"\nssh_private_key = \"id\"\n\
                 instance_type = \"m7i.large\"\n[setup.aws]\nssh_ingress_cidrs = [\"198.18.0.0/15\"]\n{extra}\
                 [[setup.aws.worker_groups]]\nname = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 2\n\
                 market = \"spot\"\n[[setup.aws.worker_groups]]\nname = \"cpu\"\ninstance_types = [\"m7i.large\"]\n\
                 workers = 1\n\n[run]\nsetup_commands = []\n"
            ),
        )
        .unwrap();
    };
    let cfg = p.to_str().unwrap().to_string();
    write("");
    let asked = |sim: &Ec2Sim| sim.log().matches("GetProducts ").count();
    // The plan prices every kind of node: the head and the cpu group on demand from the Price
    // List, the spot group at the highest zone's newest spot price.
    let (code, out, err) = case.run(&["plan", "-c", &cfg]);
    assert_eq!(code, 0, "{out}\n{}", tail(&err));
    let block = cost_block(&out);
    insta::assert_snapshot!("simulated_ec2_plan_cost_block", block);
    assert!(err.contains("operation=GetProducts"), "{}", tail(&err));
    let first = asked(&sim);
    assert_eq!(first, 1, "one GetProducts for m7i.large:\n{}", sim.log());
    // JSON says the same.
    let json = case.ok(&["plan", "-c", &cfg, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let per_hour = v["cost"]["usd_per_hour"].as_f64().unwrap();
    assert!(
        (per_hour - (0.1008 * 2.0 + 0.45 * 2.0)).abs() < 1e-6,
        "{json}"
    );
    // Cached for a day: the second and third plans asked the Price List nothing.
    let (_, _, err) = case.run(&["plan", "-c", &cfg]);
    assert!(!err.contains("operation=GetProducts"), "{}", tail(&err));
    assert!(err.contains("price from the cache"), "{}", tail(&err));
    assert_eq!(asked(&sim), first, "{}", sim.log());
    assert!(case.home().join("cache/prices.json").exists());
    // A Price List that cannot be reached (and no cache): the on-demand prices are unknown,
    // the plan still stands (exit 0) and says why in the debug log.
    let mut c = case.daft();
    let o = c
        .args(["plan", "-c", &cfg])
        .env("DAFT_HOME", case.dir.path().join("other-home"))
        .env(
            "AWS_ENDPOINT_URL_PRICING",
            format!("http://127.0.0.1:{}", common::free_port("127.0.0.1")),
        )
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", tail(&err));
    let block = cost_block(&out);
    assert!(
        block.contains("m7i.large  on-demand  unknown")
            && block.contains("total unknown (at least $0.9000/h)"),
        "{block}"
    );
    assert!(err.contains("price unknown: GetProducts"), "{}", tail(&err));
    // The plan says why in a few words (the whole error is in the debug log).
    assert!(
        block.contains("GetProducts: the Price List API cannot be reached")
            && !block.contains("DispatchFailure"),
        "{block}"
    );
    // max_hourly_cost below the plan's price: `up` refuses, says by how much, launches nothing.
    write("max_hourly_cost = 1.0\n");
    let (code, out, err) = case.run(&["up", "--no-wait", "-c", &cfg]);
    assert_eq!(code, 1, "{out}\n{}", tail(&err));
    assert!(
        err.contains("the cluster would cost $1.1016/h, $0.1016 over max_hourly_cost = $1.0000/h"),
        "{}",
        tail(&err)
    );
    assert!(out.contains("OVER it (`daft up` refuses)"), "{out}");
    assert!(
        instances(&sim).await.is_empty(),
        "{:?}",
        instances(&sim).await
    );
    assert!(groups(&sim).await.is_empty(), "a security group was made");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root (network namespaces), moto_server, sshd and Ray from PyPI"]
async fn simulated_ec2_a_spot_group_falls_back_to_on_demand_and_without_fallback_fails_listing_each(
) {
    let _g = SERIAL.lock().await;
    // No spot capacity for g5.xlarge (on-demand there is); g4dn.xlarge has spot capacity.
    let sim = Ec2Sim::start_with(
        3.0,
        &[
            "--no-capacity",
            "g5.xlarge/spot",
            "--spot-price",
            "g4dn.xlarge=0.2",
        ],
    );
    let case = Case::new(&sim);
    let image = common::al2023_image(&ec2(&sim).await).await;
    let write = |types: &str, extra: &str| {
        case.gpu_group(&image, types, &format!("market = \"spot\"\n{extra}"))
    };
    let cfg = case.gpu_group(&image, "", "");
    // Spot only: every type refused at the spot price: exit 1, each listed, no worker.
    write("\"g5.xlarge\"", "spot_fallback = false\n");
    let (code, out, err) = case.run(&["up", "--no-wait", "-c", &cfg]);
    assert_eq!(code, 1, "{out}\n{}", tail(&err));
    assert!(
        err.contains("  - g5.xlarge spot: InsufficientInstanceCapacity (There is no Spot capacity"),
        "{}",
        tail(&err)
    );
    assert!(err.contains("nothing was launched"), "{}", tail(&err));
    assert!(err.contains("spot_fallback = true"), "{}", tail(&err));
    let workers =
        |v: &[(String, String, String, String)]| v.iter().filter(|n| n.1 == "worker").count();
    assert_eq!(workers(&alive(&sim).await), 0);
    // With fallback (the default): the same type on demand, said on one line.
    write("\"g5.xlarge\"", "");
    let (code, out, err) = case.run(&["up", "--no-wait", "-c", &cfg]);
    assert_eq!(code, 0, "{out}\n{}", tail(&err));
    let said = format!("{out}{err}");
    assert!(
        said.contains("no capacity for g5.xlarge spot (worker of group gpu)")
            && said.contains("trying g5.xlarge on-demand"),
        "{said}"
    );
    assert_eq!(group_nodes(&sim).await, ["g5.xlarge on-demand"]);
    // A type with spot capacity first: the group's worker is bought at the spot price (its
    // spec changed: the on-demand one is replaced), and `list` prices it as spot.
    write("\"g4dn.xlarge\", \"g5.xlarge\"", "");
    let (code, out, err) = case.run(&["up", "--no-wait", "--yes", "-c", &cfg]);
    assert_eq!(code, 0, "{out}\n{}", tail(&err));
    assert_eq!(group_nodes(&sim).await, ["g4dn.xlarge spot"]);
    // (Priced once it runs: the simulation keeps it pending 3 s.)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let json = case.ok(&["list", "-c", &cfg, "--output", "json"]);
        let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
        let spot_row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "g4dn.xlarge" && r["state"] == "running")
            .cloned();
        if let Some(r) = spot_row {
            assert_eq!(r["usd_per_hour"].as_f64(), Some(0.2), "{json}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the spot worker never ran: {json}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // EC2 takes the spot worker back (the simulation's scripted interruption): plan and list
    // say so, and the next `up` launches a worker again.
    let spot_id = instances(&sim)
        .await
        .into_iter()
        .find(|i| i.1 == "worker" && i.2 == "running")
        .unwrap()
        .0;
    let ok = StdCommand::new("curl")
        .args([
            "-sf",
            "-o",
            "/dev/null",
            "-d",
            &format!("Action=SimInterruptSpot&InstanceId={spot_id}"),
        ])
        .arg(sim.endpoint())
        .status()
        .unwrap();
    assert!(ok.success());
    ec2(&sim)
        .await
        .terminate_instances()
        .instance_ids(&spot_id)
        .send()
        .await
        .unwrap();
    let out = case.ok(&["plan", "-c", &cfg]);
    assert!(
        out.contains(&format!(
            "Note: worker {spot_id} [gpu] (g4dn.xlarge) was interrupted by EC2 (spot capacity taken back"
        )),
        "{out}"
    );
    assert!(out.contains("+ create"), "{out}");
    let json = case.ok(&["list", "-c", &cfg, "--output", "json"]);
    assert!(
        json.contains(
            "interrupted by EC2 (spot capacity taken back: Server.SpotInstanceTermination)"
        ),
        "{json}"
    );
    case.ok(&["up", "--no-wait", "-c", &cfg]);
    assert_eq!(group_nodes(&sim).await, ["g4dn.xlarge spot"]);
    // down leaves nothing.
    case.ok(&["down", "--yes", "-c", &cfg]);
    assert!(alive(&sim).await.is_empty(), "{:?}", alive(&sim).await);
    assert!(groups(&sim).await.is_empty(), "a security group is left");
}

/// The cluster's instances that are not terminated, through the simulation.
async fn live(sim: &Ec2Sim) -> Vec<aws_sdk_ec2::types::Instance> {
    ec2(sim)
        .await
        .describe_instances()
        .filters(mine())
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .cloned()
        .collect()
}

/// "TYPE MARKET" of each live worker of a named group, through the simulation.
async fn group_nodes(sim: &Ec2Sim) -> Vec<String> {
    live(sim)
        .await
        .iter()
        .filter(|i| i.tags().iter().any(|t| t.key() == Some("daft:group")))
        .map(|i| {
            format!(
                "{} {}",
                i.instance_type().unwrap().as_str(),
                i.instance_lifecycle()
                    .map(|l| l.as_str())
                    .unwrap_or("on-demand")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root (network namespaces), moto_server, sshd and Ray from PyPI"]
async fn simulated_ec2_a_gpu_groups_nodes_reach_ray_with_the_types_gpus() {
    let _g = SERIAL.lock().await;
    let sim = Ec2Sim::start(3.0);
    let case = Case::new(&sim);
    // (moto has no image with the NVIDIA driver: the group names an image of its own. The
    // simulated machines have no GPU: Ray is told the type's count, as on EC2.)
    let image = common::al2023_image(&ec2(&sim).await).await;
    let cfg = case.gpu_group(&image, "\"g4dn.xlarge\"", "");
    let up = case.ok(&["up", "-c", &cfg, "--wait-workers"]);
    assert!(up.contains("is up: 1 head + 1 worker(s)"), "{up}");
    let job = case.dir.path().join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(
        job.join("gpus.py"),
        "import ray\nray.init()\nprint('gpus=%s' % ray.cluster_resources().get('GPU', 0))\n",
    )
    .unwrap();
    let out = case.ok(&[
        "submit",
        "-c",
        &cfg,
        "-w",
        job.to_str().unwrap(),
        "--",
        "python",
        "gpus.py",
    ]);
    // g4dn.xlarge has one NVIDIA T4, as EC2's DescribeInstanceTypes says.
    assert!(out.contains("gpus=1.0"), "{out}");
    case.ok(&["down", "--yes", "-c", &cfg]);
    assert!(alive(&sim).await.is_empty(), "{:?}", alive(&sim).await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root (network namespaces), moto_server, sshd and Ray from PyPI"]
async fn simulated_ec2_launches_try_the_next_zone_then_the_next_type() {
    let _g = SERIAL.lock().await;
    // No t3.medium capacity in zone a; no g5.xlarge anywhere.
    let sim = Ec2Sim::start_with(
        3.0,
        &[
            "--no-capacity",
            "t3.medium@us-west-2a",
            "--no-capacity",
            "g5.xlarge",
        ],
    );
    let case = Case::new(&sim);
    let image = common::al2023_image(&ec2(&sim).await).await;
    let p = case.dir.path().join("cluster.toml");
    std::fs::write(
        &p,
        format!(
            "[setup]\nname = \"sim\"\nprovider = \"aws\"\nregion = \"us-west-2\"\nssh_user = \"root\"\n\
             ssh_private_key = \"id\"\ninstance_type = \"t3.medium\"\n[setup.aws]\n\
             ssh_ingress_cidrs = [\"198.18.0.0/15\"]\nzones = [\"us-west-2a\", \"us-west-2b\"]\n\
             [[setup.aws.worker_groups]]\nname = \"gpu\"\ninstance_types = [\"g5.xlarge\", \"g4dn.xlarge\"]\n\
             workers = 1\nimage_id = \"{image}\"\n\n[run]\nsetup_commands = []\n"
        ),
    )
    .unwrap();
    let cfg = p.to_str().unwrap().to_string();
    let (code, out, err) = case.run(&["up", "--no-wait", "-c", &cfg]);
    assert_eq!(code, 0, "{out}\n{}", tail(&err));
    let said = format!("{out}{err}");
    for step in [
        "no capacity for t3.medium in us-west-2a (head)",
        "trying t3.medium in us-west-2b",
        "no capacity for g5.xlarge in us-west-2a (worker of group gpu)",
        "trying g5.xlarge in us-west-2b",
        "no capacity for g5.xlarge in us-west-2b (worker of group gpu)",
        "trying g4dn.xlarge in us-west-2a",
    ] {
        assert!(said.contains(step), "{step:?} not said:\n{said}");
    }
    let mut placed: Vec<String> = live(&sim)
        .await
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i.instance_type().unwrap().as_str(),
                i.placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap_or("?")
            )
        })
        .collect();
    placed.sort();
    assert_eq!(placed, ["g4dn.xlarge us-west-2a", "t3.medium us-west-2b"]);
    case.ok(&["down", "--yes", "-c", &cfg]);
    assert!(alive(&sim).await.is_empty(), "{:?}", alive(&sim).await);
    assert!(groups(&sim).await.is_empty(), "a security group is left");
}
