//! The AWS provider against moto's EC2 server (a real EC2 API emulator) on 127.0.0.1, reached by
//! the ordinary SDK through AWS_ENDPOINT_URL, with AMI and key-pair validation on.
//! Never connects to an address moto invents: only `up --no-wait` is exercised here (the SSH half
//! of `up` is proven against sshd in the SSH and Ray tests).

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use aws_sdk_ec2::types::Filter;

/// One moto server for this test binary (tests use distinct cluster names), stopped at exit.
fn moto() -> u16 {
    static MOTO: OnceLock<u16> = OnceLock::new();
    *MOTO.get_or_init(|| {
        let (child, port) = common::start_moto(&[
            ("MOTO_ENABLE_AMI_VALIDATION", "true"),
            ("MOTO_ENABLE_KEYPAIR_VALIDATION", "true"),
        ]);
        // Stopped by PID when the test process exits.
        let pid = child.id();
        std::mem::forget(child);
        extern "C" fn stop() {
            if let Some(pid) = MOTO_PID.get() {
                let _ = StdCommand::new("kill").arg(pid.to_string()).status();
            }
        }
        MOTO_PID.set(pid).ok();
        unsafe { atexit(stop) };
        port
    })
}
static MOTO_PID: OnceLock<u32> = OnceLock::new();
extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

struct Case {
    dir: tempfile::TempDir,
    name: String,
    region: &'static str,
}

impl Case {
    fn new(name: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        common::keygen(&dir.path().join("id"), "ed25519");
        Case {
            dir,
            name: name.to_string(),
            region: "us-west-2",
        }
    }
    fn env(&self, c: &mut Command) {
        c.current_dir(self.dir.path())
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", moto()))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", self.dir.path())
            .env("DAFT_HOME", self.dir.path().join("daft-home"))
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG");
    }
    fn daft(&self) -> Command {
        let mut c = Command::cargo_bin("daft").unwrap();
        self.env(&mut c);
        c
    }
    fn config(&self, workers: u32, instance_type: &str, extra: &str) -> PathBuf {
        let p = self.dir.path().join("aws.toml");
        std::fs::write(
            &p,
            format!(
                "[setup]\nname = \"{}\"\nprovider = \"aws\"\nregion = \"{}\"\nssh_private_key = \"id\"\nnumber_of_workers = {workers}\ninstance_type = \"{instance_type}\"\n{extra}\n[setup.aws]\nssh_ingress_cidrs = [\"203.0.113.7/32\"]\n\n[run]\nsetup_commands = []\n",
                self.name, self.region
            ),
        )
        .unwrap();
        p
    }
}

async fn ec2() -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-west-2"))
        .endpoint_url(format!("http://127.0.0.1:{}", moto()))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .http_client(daft::provider::aws::http_client())
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

fn tag_filter(name: &str) -> Filter {
    Filter::builder()
        .name("tag:daft:cluster")
        .values(name)
        .build()
}

/// The cluster's instances, as DescribeInstances has them.
async fn described(name: &str) -> Vec<aws_sdk_ec2::types::Instance> {
    let out = ec2()
        .await
        .describe_instances()
        .filters(tag_filter(name))
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect()
}

/// (instance id, role, type, state) of the cluster's instances.
async fn instances(name: &str) -> Vec<(String, String, String, String)> {
    described(name)
        .await
        .iter()
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
                i.instance_type().unwrap().as_str().to_string(),
                i.state().unwrap().name().unwrap().as_str().to_string(),
            )
        })
        .collect()
}

async fn alive(name: &str) -> Vec<(String, String, String, String)> {
    instances(name)
        .await
        .into_iter()
        .filter(|i| i.3 != "terminated" && i.3 != "shutting-down")
        .collect()
}

async fn alive_workers(name: &str) -> usize {
    alive(name).await.iter().filter(|n| n.1 == "worker").count()
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn lifecycle_create_noop_scale_replace_down() {
    let case = Case::new("moto-life");
    let cfg = case.config(2, "m7g.medium", "");
    let cfg = cfg.to_str().unwrap();

    let up = ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    assert!(
        up.contains("+ create     security-group daft-moto-life"),
        "{up}"
    );
    let nodes = alive("moto-life").await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert_eq!(nodes.iter().filter(|n| n.1 == "head").count(), 1);
    assert_eq!(nodes.iter().filter(|n| n.1 == "worker").count(), 2);

    // Every instance is tagged at creation: cluster, role, spec hash, Name.
    let c = ec2().await;
    let out = c
        .describe_instances()
        .filters(tag_filter("moto-life"))
        .send()
        .await
        .unwrap();
    for i in out.reservations().iter().flat_map(|r| r.instances()) {
        let keys: Vec<&str> = i.tags().iter().filter_map(|t| t.key()).collect();
        for k in ["daft:cluster", "daft:role", "daft:spec-hash", "Name"] {
            assert!(keys.contains(&k), "{k} missing: {keys:?}");
        }
        // The setup hash is recorded only once daft has seen the node set up, never at launch
        // (`up --no-wait` does not connect).
        assert!(!keys.contains(&"daft:setup-hash"), "{keys:?}");
        assert_eq!(
            i.key_name().map(|k| k.starts_with("daft-")),
            Some(true),
            "imported key pair used"
        );
        // m7g is arm64: the image resolved is an arm64 Amazon Linux 2023.
        let img = c
            .describe_images()
            .image_ids(i.image_id().unwrap())
            .send()
            .await
            .unwrap();
        let img = &img.images()[0];
        assert_eq!(img.architecture().unwrap().as_str(), "arm64");
        assert!(
            img.name().unwrap().starts_with("al2023-ami-2023"),
            "{:?}",
            img.name()
        );
    }

    // One security group: SSH from the configured CIDR, everything within the group, nothing else.
    let sgs = c
        .describe_security_groups()
        .filters(tag_filter("moto-life"))
        .send()
        .await
        .unwrap();
    assert_eq!(sgs.security_groups().len(), 1);
    let sg = &sgs.security_groups()[0];
    let perms = sg.ip_permissions();
    assert_eq!(perms.len(), 2, "{perms:?}");
    let ssh = perms
        .iter()
        .find(|p| p.from_port() == Some(22))
        .expect("ssh rule");
    assert_eq!(ssh.ip_protocol(), Some("tcp"));
    assert_eq!(ssh.to_port(), Some(22));
    let cidrs: Vec<_> = ssh.ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect();
    assert_eq!(cidrs, ["203.0.113.7/32"]);
    let internal = perms
        .iter()
        .find(|p| p.ip_protocol() == Some("-1"))
        .expect("internal rule");
    assert!(
        internal.ip_ranges().is_empty(),
        "nothing opened to addresses"
    );
    assert_eq!(internal.user_id_group_pairs()[0].group_id(), sg.group_id());

    // The user data is rendered, base64 on the wire, and names the cluster.
    let head = nodes.iter().find(|n| n.1 == "head").unwrap();
    let ud = user_data_of(&head.0).await;
    assert!(
        ud.starts_with("#!/bin/sh") && ud.contains("install start"),
        "{ud}"
    );
    // Values travel base64-encoded (no here-document a value could end): the bootstrap and
    // the host key daft made for the batch.
    let blobs = blobs_of(&ud);
    assert!(
        blobs.iter().any(|b| b.contains("DAFT_CLUSTER=moto-life")),
        "{ud}"
    );
    let host_key = blobs
        .iter()
        .find(|b| b.contains("OPENSSH PRIVATE KEY"))
        .expect("a host key in the user data");
    // ... whose public half daft pinned under the instance id before connecting.
    let key = russh::keys::decode_secret_key(host_key, None).unwrap();
    let known = case.dir.path().join("daft-home/known_hosts");
    assert!(
        russh::keys::check_known_hosts_path(&head.0, 22, key.public_key(), &known).unwrap(),
        "host key of {} not pinned in {}",
        head.0,
        known.display()
    );

    // up again: nothing to do.
    let again = ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    assert!(again.contains("Nothing to do"), "{again}");
    assert_eq!(alive("moto-life").await.len(), 3);

    // 2 -> 4 workers adds 2.
    case.config(4, "m7g.medium", "");
    let grow = ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    assert!(grow.contains("+ create     worker   2 workers"), "{grow}");
    assert_eq!(alive_workers("moto-life").await, 4);

    // 4 -> 1 terminates 3 (destructive: refused without --yes when not on a terminal).
    case.config(1, "m7g.medium", "");
    let refused = case
        .daft()
        .args(["up", "--no-wait", "-c", cfg])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let shrink = ok(case.daft().args(["up", "--no-wait", "--yes", "-c", cfg]));
    assert_eq!(shrink.matches("- terminate  worker").count(), 3, "{shrink}");
    assert_eq!(alive_workers("moto-life").await, 1);

    // Changing instance_type replaces, and says why.
    case.config(1, "m7g.large", "");
    let replace = ok(case.daft().args(["up", "--no-wait", "--yes", "-c", cfg]));
    assert!(
        replace.contains("instance_type m7g.medium → m7g.large"),
        "{replace}"
    );
    let now = alive("moto-life").await;
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.iter().all(|n| n.2 == "m7g.large"), "{now:?}");

    // plan --output json: nothing to create or replace; the nodes `up --no-wait` never
    // connected to are not recorded as set up (the next waiting `up` checks them).
    let plan: serde_json::Value = serde_json::from_str(&ok(case
        .daft()
        .args(["plan", "-c", cfg, "--output", "json"])))
    .unwrap();
    for a in plan["actions"].as_array().unwrap() {
        assert!(
            a["action"] == "keep"
                || (a["action"] == "update"
                    && a["reasons"] == serde_json::json!(["not set up yet"])),
            "{a}"
        );
    }
    assert_eq!(plan["summary"]["update"], 2, "{plan}");

    // down: no instance left running, no security group; twice is harmless.
    let down = ok(case.daft().args(["down", "--yes", "-c", cfg]));
    assert!(down.contains("is down"), "{down}");
    assert!(alive("moto-life").await.is_empty());
    let sgs = c
        .describe_security_groups()
        .filters(tag_filter("moto-life"))
        .send()
        .await
        .unwrap();
    assert!(sgs.security_groups().is_empty());
    let again = ok(case.daft().args(["down", "--yes", "-c", cfg]));
    assert!(again.contains("Nothing to remove"), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn list_table_and_json() {
    // A region of its own, so the listing holds only this test's cluster.
    let mut case = Case::new("moto-list");
    case.region = "eu-west-1";
    let cfg = case.config(1, "t3.large", "");
    let cfg = cfg.to_str().unwrap();
    ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    let json: serde_json::Value = serde_json::from_str(&ok(case
        .daft()
        .args(["list", "-c", cfg, "--output", "json"])))
    .unwrap();
    let mine: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["cluster"] == "moto-list")
        .collect();
    assert_eq!(mine.len(), 2);
    for r in &mine {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cluster",
                "id",
                "launched",
                "provider",
                "public_ip",
                "role",
                "state",
                "type"
            ]
        );
        assert_eq!(r["provider"], "aws");
        assert_eq!(r["state"], "running");
        assert_eq!(r["type"], "t3.large");
        assert!(r["id"].as_str().unwrap().starts_with("i-"));
    }
    let text = ok(case.daft().args(["list", "-c", cfg]));
    let mine = text;
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"i-[0-9a-f]{17}", "i-[ID]");
    settings.add_filter(r"\d+\.\d+\.\d+\.\d+ ", "[IP] ");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    settings.add_filter(r"[─═]+", "─");
    settings.add_filter(r" {2,}", " ");
    settings.bind(|| insta::assert_snapshot!(mine));
    ok(case.daft().args(["down", "--yes", "-c", cfg]));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn scale_500_workers_api_calls_grow_with_batches() {
    let case = Case::new("moto-scale");
    let cfg = case.config(500, "m7g.medium", "");
    let cfg = cfg.to_str().unwrap();
    let o = case
        .daft()
        .env("RUST_LOG", "daft::aws=debug")
        .args(["up", "--no-wait", "-c", cfg])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = String::from_utf8_lossy(&o.stderr);
    let calls = |op: &str| {
        log.lines()
            .filter(|l| l.contains("api call") && l.contains(&format!("operation={op}")))
            .count()
    };
    assert_eq!(alive("moto-scale").await.len(), 501);
    // One RunInstances for the head, five batches of 100 for the workers.
    assert_eq!(calls("RunInstances"), 6, "{log}");
    let total = log.lines().filter(|l| l.contains("api call")).count();
    assert!(total < 40, "{total} calls for 501 instances:\n{log}");
    eprintln!(
        "api calls for 1 + 500 instances: {total} (RunInstances {})",
        calls("RunInstances")
    );
    let d = case
        .daft()
        .env("RUST_LOG", "daft::aws=debug")
        .args(["down", "--yes", "-c", cfg])
        .output()
        .unwrap();
    assert!(d.status.success());
    let dlog = String::from_utf8_lossy(&d.stderr);
    assert_eq!(
        dlog.lines()
            .filter(|l| l.contains("api call") && l.contains("operation=TerminateInstances"))
            .count(),
        1
    );
    assert!(alive("moto-scale").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn bad_image_fails_with_the_aws_message_and_what_to_do() {
    let case = Case::new("moto-badimg");
    let cfg = case.config(1, "m7g.medium", "image_id = \"ami-0000000000000dead\"");
    let o = case
        .daft()
        .args(["up", "--no-wait", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("InvalidAMIID") && e.contains("image_id"), "{e}");
    assert!(alive("moto-badimg").await.is_empty());
    // What was created (the security group) is tagged, so down removes it.
    ok(case
        .daft()
        .args(["down", "--yes", "-c", cfg.to_str().unwrap()]));
    let sgs = ec2()
        .await
        .describe_security_groups()
        .filters(tag_filter("moto-badimg"))
        .send()
        .await
        .unwrap();
    assert!(sgs.security_groups().is_empty());
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
fn missing_credentials_say_how_to_provide_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[setup]\nname = \"nocreds\"\nprovider = \"aws\"\n",
    )
    .unwrap();
    let o = Command::cargo_bin("daft")
        .unwrap()
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("DAFT_HOME", dir.path().join("h"))
        .args(["plan", "-c", "c.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no AWS credentials found")
            && e.contains("AWS_ACCESS_KEY_ID")
            && e.contains("aws sso login"),
        "{e}"
    );
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
fn bootstrap_user_data_runs_on_this_machine() {
    // The exact user data the AWS provider renders, executed here in a scratch HOME (settings
    // pointed at loopback): it installs uv's environment with Ray and starts a Ray head.
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port("127.0.0.2");
    let dash = common::free_port("127.0.0.2");
    let user = common::run("id -un").trim().to_string();
    let text = format!("[setup]\nname = \"ud-test\"\nprovider = \"aws\"\nssh_user = \"{user}\"\n");
    let cfg = daft::config::Config::parse("c.toml", &text, dir.path()).unwrap();
    // The provider's settings for a head, pointed at loopback ports of this machine.
    let mut p = daft::provider::aws::node_params(&cfg, daft::model::Role::Head, None);
    p.node_ip = Some("127.0.0.2".into());
    p.ray_port = port;
    p.dashboard_port = dash;
    p.ray_tmp = format!("ud-{port}");
    let bootstrap = daft::bootstrap::render(&p);
    let ud = daft::provider::aws::user_data_script(&user, "ud-test", &bootstrap, None);
    assert!(!ud.contains("<<"), "no here-document in the user data");
    let script = dir.path().join("user-data.sh");
    std::fs::write(&script, &ud).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let o = StdCommand::new("sh")
        .arg(&script)
        .env("HOME", &home)
        .env("UV_CACHE_DIR", common::uv_cache())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let node = home.join(".daft/clusters/ud-test/nodes/head");
    assert!(node.join("ray.pid").exists());
    assert!(std::fs::read_to_string(node.join("ray.log"))
        .unwrap()
        .contains("Ray runtime started"));
    // It recorded its exit status where a waiting `up` looks for it.
    assert_eq!(
        std::fs::read_to_string(home.join(".daft/clusters/ud-test/bootstrap.exit"))
            .unwrap()
            .trim(),
        "0"
    );
    let tmp = std::fs::read_to_string(node.join("ray.tmp")).unwrap();
    // Stop it the way daft does: by PID, through the same script.
    let stop = dir.path().join("bootstrap.sh");
    std::fs::write(&stop, &bootstrap).unwrap();
    let o = StdCommand::new("sh")
        .arg(&stop)
        .arg("stop-cluster")
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // `stop-cluster` returns once its processes are gone.
    // (The pattern's first character in brackets: this grep does not find itself.)
    let tmp = tmp.trim();
    let left = common::run(&format!(
        "grep -l -a '[{}]{}/' /proc/[0-9]*/cmdline 2>/dev/null || true",
        &tmp[..1],
        &tmp[1..]
    ));
    assert!(left.trim().is_empty(), "left behind: {left}");
}

/// Instances of the region that carry no tags at all (leaked: launched without TagSpecifications).
async fn untagged() -> Vec<String> {
    let out = ec2().await.describe_instances().send().await.unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| !i.tags().iter().any(|t| t.key() == Some("daft:cluster")))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

async fn groups(name: &str) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
    ec2()
        .await
        .describe_security_groups()
        .filters(tag_filter(name))
        .send()
        .await
        .unwrap()
        .security_groups()
        .to_vec()
}

fn spawn(case: &Case, args: &[&str]) -> std::process::Child {
    let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"));
    c.current_dir(case.dir.path())
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", moto()))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", case.dir.path())
        .env("DAFT_HOME", case.dir.path().join("daft-home"))
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// `up` and `down` killed with SIGKILL at 20 points spread over their run: nothing is ever
/// untagged, the next `up` converges to exactly the desired nodes, and `down` leaves nothing.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn sigkill_at_20_points_of_up_and_down_then_converges_and_down_leaves_nothing() {
    let case = Case::new("moto-kill");
    let cfg = case.config(3, "m7g.medium", "");
    let cfg = cfg.to_str().unwrap();
    // How long a whole `up` and `down` take here: the kill points are spread over that.
    let t = Instant::now();
    ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    let up_time = t.elapsed();
    let t = Instant::now();
    ok(case.daft().args(["down", "--yes", "-c", cfg]));
    let down_time = t.elapsed();
    let mut killed_mid_run = 0;
    for i in 0..20u32 {
        // Every run has work to do: the worker count changes between runs (1, 3, 5, ...).
        case.config(1 + 2 * (i % 3), "m7g.medium", "");
        let (cmd, total) = if i % 3 == 2 {
            (vec!["down", "--yes", "-c", cfg], down_time)
        } else {
            (vec!["up", "--no-wait", "--yes", "-c", cfg], up_time)
        };
        // From 20 ms to 80% of a whole first run's time, spaced geometrically: a resize has
        // less to do than the first `up`, so early points are dense.
        let first = Duration::from_millis(20);
        let last = total.mul_f64(0.8).max(first * 2);
        let at = first.mul_f64((last.as_secs_f64() / first.as_secs_f64()).powf(i as f64 / 19.0));
        let mut child = spawn(&case, &cmd);
        std::thread::sleep(at);
        match child.try_wait().unwrap() {
            None => killed_mid_run += 1,
            Some(st) => {
                let mut e = String::new();
                use std::io::Read;
                let _ = child.stderr.take().unwrap().read_to_string(&mut e);
                eprintln!("{cmd:?} ended before {at:?}: {st} {e}");
            }
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let loose = untagged().await;
        assert!(
            loose.is_empty(),
            "untagged instances after a kill at {at:?}: {loose:?}"
        );
    }
    assert!(
        killed_mid_run >= 10,
        "only {killed_mid_run} of 20 kills hit a running command"
    );
    // The next `up` finishes what the killed ones started: exactly 1 head + 3 workers, one
    // security group with its rules.
    case.config(3, "m7g.medium", "");
    ok(case.daft().args(["up", "--no-wait", "--yes", "-c", cfg]));
    let nodes = alive("moto-kill").await;
    assert_eq!(
        nodes.iter().filter(|n| n.1 == "head").count(),
        1,
        "{nodes:?}"
    );
    assert_eq!(
        nodes.iter().filter(|n| n.1 == "worker").count(),
        3,
        "{nodes:?}"
    );
    let sgs = groups("moto-kill").await;
    assert_eq!(sgs.len(), 1);
    assert_eq!(
        sgs[0].ip_permissions().len(),
        2,
        "{:?}",
        sgs[0].ip_permissions()
    );
    let again = ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    assert!(again.contains("Nothing to do"), "{again}");
    ok(case.daft().args(["down", "--yes", "-c", cfg]));
    assert!(alive("moto-kill").await.is_empty());
    assert!(groups("moto-kill").await.is_empty());
}

/// Two `up`s of one cluster started together: the lock makes the second wait for the first
/// (and say so), then find the cluster built: exactly the desired nodes.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn two_ups_at_once_launch_exactly_the_desired_nodes() {
    let case = Case::new("moto-race");
    let cfg = case.config(2, "m7g.medium", "");
    let cfg = cfg.to_str().unwrap();
    let a = spawn(&case, &["up", "--no-wait", "-c", cfg]);
    let b = spawn(&case, &["up", "--no-wait", "-c", cfg]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let nodes = alive("moto-race").await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert_eq!(groups("moto-race").await.len(), 1);
    let said: String = [&a, &b]
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
        })
        .collect();
    assert!(said.contains("Nothing to do"), "{said}");
    // With --no-wait-lock, a command that finds the lock taken fails at once, naming the holder
    // (held here by this test itself, through daft's own lock: no race with another command).
    let loaded = daft::config::Config::load(std::path::Path::new(cfg)).unwrap();
    let home = case.dir.path().join("daft-home");
    let held = daft::lock::acquire(&home, &loaded, "down", None).unwrap();
    let t = std::time::Instant::now();
    let quick = case
        .daft()
        .args(["down", "--yes", "--no-wait-lock", "-c", cfg])
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let e = String::from_utf8_lossy(&quick.stderr);
    assert_eq!(quick.status.code(), Some(1), "{e}");
    assert!(
        e.contains("holds the lock for cluster \"moto-race\"")
            && e.contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    // Nothing was removed by the refused command.
    assert_eq!(alive("moto-race").await.len(), 3);
    drop(held);
    ok(case
        .daft()
        .args(["down", "--yes", "--no-wait-lock", "-c", cfg]));
    assert!(alive("moto-race").await.is_empty());
}

/// The security group is reconciled on every `up`: a missing SSH rule is restored, a changed
/// `ssh_ingress_cidrs` applied (the old range revoked); the plan shows both.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn security_group_rules_are_reconciled_and_planned() {
    let case = Case::new("moto-sg");
    let write = |cidr: &str| {
        let p = case.dir.path().join("aws.toml");
        std::fs::write(
            &p,
            format!("[setup]\nname = \"moto-sg\"\nprovider = \"aws\"\nssh_private_key = \"id\"\nnumber_of_workers = 0\n\n[setup.aws]\nssh_ingress_cidrs = [\"{cidr}\"]\n"),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    };
    let cfg = write("203.0.113.7/32");
    ok(case.daft().args(["up", "--no-wait", "-c", &cfg]));
    let sg = groups("moto-sg").await.remove(0);
    let id = sg.group_id().unwrap().to_string();
    // An `up` killed between CreateSecurityGroup and its rules, or a hand edit: SSH rule gone.
    ec2()
        .await
        .revoke_security_group_ingress()
        .group_id(&id)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("203.0.113.7/32")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let plan = ok(case.daft().args(["plan", "-c", &cfg]));
    assert!(
        plan.contains(
            "~ update     security-group daft-moto-sg  (allow tcp 22 from 203.0.113.7/32)"
        ),
        "{plan}"
    );
    ok(case.daft().args(["up", "--no-wait", "-c", &cfg]));
    let ssh = |sg: &aws_sdk_ec2::types::SecurityGroup| -> Vec<String> {
        sg.ip_permissions()
            .iter()
            .filter(|p| p.from_port() == Some(22))
            .flat_map(|p| {
                p.ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip().map(str::to_string))
            })
            .collect()
    };
    assert_eq!(ssh(&groups("moto-sg").await[0]), ["203.0.113.7/32"]);
    assert!(!ok(case.daft().args(["plan", "-c", &cfg])).contains("security-group"));

    let cfg = write("198.51.100.0/24");
    let plan = ok(case.daft().args(["plan", "-c", &cfg]));
    assert!(
        plan.contains("(allow tcp 22 from 198.51.100.0/24; revoke tcp 22 from 203.0.113.7/32)"),
        "{plan}"
    );
    ok(case.daft().args(["up", "--no-wait", "-c", &cfg]));
    let now = groups("moto-sg").await;
    assert_eq!(
        now[0].group_id(),
        Some(id.as_str()),
        "the group is kept, not replaced"
    );
    assert_eq!(ssh(&now[0]), ["198.51.100.0/24"]);
    ok(case.daft().args(["down", "--yes", "-c", &cfg]));
}

/// Without `ssh_ingress_cidrs` daft allows SSH from this machine's public address, looked up
/// over HTTPS (here a TLS server on loopback, trusted through SSL_CERT_FILE); when the lookup
/// fails, the error says how to set the CIDRs.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn callers_address_is_looked_up_over_https_and_a_failure_says_what_to_set() {
    let case = Case::new("moto-myip");
    let p = case.dir.path().join("aws.toml");
    std::fs::write(
        &p,
        "[setup]\nname = \"moto-myip\"\nprovider = \"aws\"\nssh_private_key = \"id\"\nnumber_of_workers = 0\n",
    )
    .unwrap();
    let cfg = p.to_str().unwrap();
    // Nothing listens there: a clear error, exit 1, nothing launched.
    let closed = common::free_port("127.0.0.1");
    let o = case
        .daft()
        .env("DAFT_CHECKIP_URL", format!("https://127.0.0.1:{closed}/"))
        .args(["up", "--no-wait", "-c", cfg])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cannot find this machine's public address")
            && e.contains("ssh_ingress_cidrs = ["),
        "{e}"
    );
    assert!(alive("moto-myip").await.is_empty());

    // A real HTTPS answer: the address becomes the /32 SSH rule.
    let d = case.dir.path();
    // A test CA and a server certificate for 127.0.0.1 signed by it.
    common::run(&format!(
        "cd {} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=daft-test-ca 2>/dev/null \
         && openssl req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null \
         && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf \
         && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 -extfile ext.cnf 2>/dev/null",
        d.display()
    ));
    let port = common::free_port("127.0.0.1");
    let server = format!(
        "import http.server, ssl\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200); self.end_headers(); self.wfile.write(b'198.51.100.23\\n')\n    def log_message(self, *a): pass\ns = http.server.HTTPServer(('127.0.0.1', {port}), H)\nc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain('{d}/cert.pem', '{d}/key.pem')\ns.socket = c.wrap_socket(s.socket, server_side=True)\ns.serve_forever()\n",
        d = d.display()
    );
    let mut srv = StdCommand::new("python3")
        .arg("-c")
        .arg(server)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS test server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = case
        .daft()
        .env("DAFT_CHECKIP_URL", format!("https://127.0.0.1:{port}/"))
        .env("SSL_CERT_FILE", d.join("ca.pem"))
        .args(["up", "--no-wait", "-c", cfg])
        .output()
        .unwrap();
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sg = groups("moto-myip").await.remove(0);
    let cidrs: Vec<&str> = sg
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(22))
        .flat_map(|p| p.ip_ranges().iter().filter_map(|r| r.cidr_ip()))
        .collect();
    assert_eq!(cidrs, ["198.51.100.23/32"]);
    ok(case
        .daft()
        .env("DAFT_CHECKIP_URL", format!("https://127.0.0.1:{closed}/"))
        .args(["down", "--yes", "-c", cfg]));
    assert!(groups("moto-myip").await.is_empty());
}

/// A plain `daft list` (no config in the directory, as the seed's) shows the AWS clusters of
/// the AWS configuration's region when credentials are there.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn plain_list_shows_the_aws_clusters_of_the_configured_region() {
    let mut case = Case::new("moto-plainlist");
    case.region = "ap-southeast-2";
    let cfg = case.config(0, "t3.large", "");
    let cfg = cfg.to_str().unwrap();
    ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    let elsewhere = tempfile::tempdir().unwrap();
    let json: serde_json::Value = serde_json::from_str(&ok(case
        .daft()
        .current_dir(elsewhere.path())
        .env("AWS_REGION", "ap-southeast-2")
        .args(["list", "--output", "json"])))
    .unwrap();
    let mine: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["cluster"] == "moto-plainlist")
        .collect();
    assert_eq!(mine.len(), 1, "{json}");
    assert_eq!(mine[0]["provider"], "aws");
    ok(case.daft().args(["down", "--yes", "-c", cfg]));
}

/// `[setup.aws] iam_instance_profile`: every node launched with it (by name or by ARN), the plan
/// a no-op after, another profile a replacement that says why.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn nodes_run_with_the_configured_instance_profile() {
    let case = Case::new("moto-iam");
    let arn =
        common::create_instance_profile(&format!("http://127.0.0.1:{}", moto()), "daft-test-nodes");
    let other =
        common::create_instance_profile(&format!("http://127.0.0.1:{}", moto()), "daft-test-other");
    let write = |profile: &str| {
        let p = case.config(1, "m7g.medium", "");
        let text = std::fs::read_to_string(&p).unwrap().replace(
            "[setup.aws]\n",
            &format!("[setup.aws]\niam_instance_profile = \"{profile}\"\n"),
        );
        std::fs::write(&p, text).unwrap();
        p
    };
    let cfg = write("daft-test-nodes");
    let cfg = cfg.to_str().unwrap();
    ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    let profiles = || async {
        described("moto-iam")
            .await
            .iter()
            .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
            .map(|i| {
                i.iam_instance_profile()
                    .and_then(|p| p.arn())
                    .unwrap_or("none")
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(profiles().await, vec![arn.clone(), arn.clone()]);
    let plan = ok(case.daft().args(["plan", "-c", cfg]));
    // (Not set up yet after --no-wait; nothing to launch or replace.)
    assert!(
        plan.contains("0 to create, 2 to update, 0 to replace"),
        "{plan}"
    );

    // Another profile, by ARN: each node is replaced, saying so.
    let cfg2 = write(&other);
    let plan = ok(case.daft().args(["plan", "-c", cfg2.to_str().unwrap()]));
    assert!(
        plan.contains("iam_instance_profile daft-test-nodes → daft-test-other"),
        "{plan}"
    );
    ok(case.daft().args(["down", "--yes", "-c", cfg]));
    assert!(alive("moto-iam").await.is_empty());
}

/// `[setup.aws] root_volume_gb`: every node's root volume is that size, gp3, encrypted, on the
/// image's root device, and goes with the instance.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn nodes_get_the_configured_root_volume() {
    let case = Case::new("moto-disk");
    let p = case.config(1, "m7g.medium", "");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("[setup.aws]\n", "[setup.aws]\nroot_volume_gb = 120\n");
    std::fs::write(&p, text).unwrap();
    let cfg = p.to_str().unwrap();
    ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    let c = ec2().await;
    let instances = described("moto-disk").await;
    assert_eq!(instances.len(), 2);
    for i in &instances {
        let image = c
            .describe_images()
            .image_ids(i.image_id().unwrap())
            .send()
            .await
            .unwrap();
        let root = image.images()[0].root_device_name().unwrap().to_string();
        let vols = c
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("attachment.instance-id")
                    .values(i.instance_id().unwrap())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let v = vols
            .volumes()
            .iter()
            .find(|v| {
                v.attachments()
                    .iter()
                    .any(|a| a.device() == Some(root.as_str()))
            })
            .unwrap_or_else(|| panic!("no volume on {root}: {:?}", vols.volumes()));
        assert_eq!(v.size(), Some(120), "{v:?}");
        assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp3"), "{v:?}");
        assert_eq!(v.encrypted(), Some(true), "{v:?}");
        // Tagged at creation, like the instance.
        assert!(
            v.tags()
                .iter()
                .any(|t| t.key() == Some("daft:cluster") && t.value() == Some("moto-disk")),
            "{v:?}"
        );
    }
    ok(case.daft().args(["down", "--yes", "-c", cfg]));
    assert!(alive("moto-disk").await.is_empty());
}

/// An instance's user data, as EC2 returns it (decoded).
async fn user_data_of(instance: &str) -> String {
    use base64::Engine;
    let attr = ec2()
        .await
        .describe_instance_attribute()
        .instance_id(instance)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let ud = base64::engine::general_purpose::STANDARD
        .decode(attr.user_data().unwrap().value().unwrap())
        .unwrap();
    String::from_utf8(ud).unwrap()
}

/// The values user data carries base64-encoded (`echo B64 | base64 -d`): the bootstrap, the
/// host key.
fn blobs_of(ud: &str) -> Vec<String> {
    use base64::Engine;
    ud.lines()
        .filter_map(|l| l.strip_prefix("echo "))
        .filter_map(|l| l.split_once(" | base64 -d"))
        .map(|(b, _)| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        })
        .collect()
}

/// The Ray flags a node's user data starts Ray with (`DAFT_RAY_ARGS`, inside its bootstrap).
async fn ray_args_of(instance: &str) -> String {
    blobs_of(&user_data_of(instance).await)
        .iter()
        .flat_map(|b| {
            b.lines()
                .filter_map(|l| l.strip_prefix("DAFT_RAY_ARGS="))
                .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
                .collect::<Vec<_>>()
        })
        .next()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn worker_groups_launch_their_own_types_with_their_gpus_tagged_and_down_leaves_nothing() {
    let case = Case::new("moto-groups");
    // (moto has no image with the NVIDIA driver: the GPU group names an image of its own.)
    let image = common::al2023_image(&ec2().await).await;
    let p = case.dir.path().join("aws.toml");
    let write = |gpu_workers: u32| {
        std::fs::write(
            &p,
            format!(
                "[setup]\nname = \"moto-groups\"\nprovider = \"aws\"\nregion = \"us-west-2\"\n\
                 ssh_private_key = \"id\"\ninstance_type = \"t3.small\"\n\
                 [setup.aws]\nssh_ingress_cidrs = [\"203.0.113.7/32\"]\n\
                 [[setup.aws.worker_groups]]\nname = \"cpu\"\ninstance_types = [\"m7i.large\"]\nworkers = 1\n\
                 resources = {{ fast_disk = 1 }}\n\
                 [[setup.aws.worker_groups]]\nname = \"gpu\"\ninstance_types = [\"g4dn.12xlarge\", \"g5.xlarge\"]\n\
                 workers = {gpu_workers}\nimage_id = \"{image}\"\n\n[run]\nsetup_commands = []\n"
            ),
        )
        .unwrap();
    };
    write(2);
    let cfg = p.to_str().unwrap();
    let up = ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    assert!(up.contains("+ create     worker   1 worker [cpu]"), "{up}");
    assert!(up.contains("+ create     worker   2 workers [gpu]"), "{up}");
    let all = described("moto-groups").await;
    let alive: Vec<_> = all
        .iter()
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .collect();
    assert_eq!(alive.len(), 4, "{all:#?}");
    let tag = |i: &aws_sdk_ec2::types::Instance, k: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    for i in &alive {
        let id = i.instance_id().unwrap();
        let itype = i.instance_type().unwrap().as_str();
        match tag(i, "daft:group").as_deref() {
            None => {
                assert_eq!(tag(i, "daft:role").as_deref(), Some("head"));
                assert_eq!(itype, "t3.small");
                assert_eq!(ray_args_of(id).await, "");
            }
            Some("cpu") => {
                assert_eq!(itype, "m7i.large");
                assert_eq!(tag(i, "Name").as_deref(), Some("daft-moto-groups-cpu"));
                assert_eq!(ray_args_of(id).await, r#"--resources={"fast_disk":1.0}"#);
            }
            Some("gpu") => {
                // The first type of the list (EC2 had capacity for it), its 4 GPUs given to Ray
                // as EC2's DescribeInstanceTypes counts them, on the group's own image.
                assert_eq!(itype, "g4dn.12xlarge");
                assert_eq!(i.image_id(), Some(image.as_str()));
                assert_eq!(ray_args_of(id).await, "--num-gpus=4");
            }
            Some(other) => panic!("unexpected group {other}"),
        }
    }
    // Again: nothing to do; then the gpu group shrinks and only its newest node goes.
    let again = ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    assert!(again.contains("Nothing to do"), "{again}");
    write(1);
    let shrink = ok(case.daft().args(["up", "--no-wait", "--yes", "-c", cfg]));
    assert!(
        shrink.contains("[gpu]  (") && shrink.contains("surplus (1 wanted)"),
        "{shrink}"
    );
    assert!(!shrink.contains("[cpu]  ("), "{shrink}");
    let down = ok(case.daft().args(["down", "--yes", "-c", cfg]));
    assert!(down.contains("terminate"), "{down}");
    assert!(
        instances("moto-groups")
            .await
            .iter()
            .all(|n| n.3 == "terminated" || n.3 == "shutting-down"),
        "down left instances"
    );
}

/// `[setup.aws] subnet_ids` and `security_group_ids`: nodes launch into the first subnet, the
/// cluster's own group is made in that subnet's VPC, and every node has both groups; `down`
/// removes the cluster's group and leaves the user's.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs moto_server (.ci/setup installs it)"]
async fn nodes_launch_into_the_listed_subnets_with_the_extra_security_groups() {
    let case = Case::new("moto-subnets");
    let c = ec2().await;
    let vpc = c
        .create_vpc()
        .cidr_block("10.77.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let mut subnets = Vec::new();
    for (cidr, zone) in [
        ("10.77.1.0/24", "us-west-2b"),
        ("10.77.2.0/24", "us-west-2c"),
    ] {
        let s = c
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(cidr)
            .availability_zone(zone)
            .send()
            .await
            .unwrap();
        subnets.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
    }
    let extra = c
        .create_security_group()
        .group_name("moto-subnets-users")
        .description("the user's own group")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let p = case.config(1, "m7g.medium", "");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "[setup.aws]\n",
        &format!(
            "[setup.aws]\nsubnet_ids = [\"{}\", \"{}\"]\nsecurity_group_ids = [\"{extra}\"]\n",
            subnets[0], subnets[1]
        ),
    );
    std::fs::write(&p, text).unwrap();
    let cfg = p.to_str().unwrap();
    ok(case.daft().args(["up", "--no-wait", "-c", cfg]));
    let instances = described("moto-subnets").await;
    assert_eq!(instances.len(), 2);
    let ours = c
        .describe_security_groups()
        .filters(tag_filter("moto-subnets"))
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .clone();
    assert_eq!(ours.vpc_id(), Some(vpc.as_str()), "{ours:?}");
    for i in &instances {
        assert_eq!(i.subnet_id(), Some(subnets[0].as_str()), "{i:?}");
        let mut groups: Vec<&str> = i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .collect();
        groups.sort_unstable();
        let mut want = vec![ours.group_id().unwrap(), extra.as_str()];
        want.sort_unstable();
        assert_eq!(groups, want, "{i:?}");
    }
    ok(case.daft().args(["down", "--yes", "-c", cfg]));
    let left: Vec<String> = c
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap()
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    assert!(
        left.contains(&extra),
        "the user's group was removed: {left:?}"
    );
    assert!(
        !left.iter().any(|g| Some(g.as_str()) == ours.group_id()),
        "the cluster's group is left: {left:?}"
    );
}
