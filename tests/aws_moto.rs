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
        let port = common::free_port("127.0.0.1");
        let child = StdCommand::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs (pip install 'moto[server]': .ci/setup does)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// (instance id, role, type, state) of the cluster's instances.
async fn instances(name: &str) -> Vec<(String, String, String, String)> {
    let out = ec2()
        .await
        .describe_instances()
        .filters(tag_filter(name))
        .send()
        .await
        .unwrap();
    let mut v = Vec::new();
    for r in out.reservations() {
        for i in r.instances() {
            let tag = |k: &str| {
                i.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .unwrap_or("")
                    .to_string()
            };
            v.push((
                i.instance_id().unwrap().to_string(),
                tag("daft:role"),
                i.instance_type().unwrap().as_str().to_string(),
                i.state().unwrap().name().unwrap().as_str().to_string(),
            ));
        }
    }
    v
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
        for k in [
            "daft:cluster",
            "daft:role",
            "daft:spec-hash",
            "daft:setup-hash",
            "Name",
        ] {
            assert!(keys.contains(&k), "{k} missing: {keys:?}");
        }
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
    let attr = c
        .describe_instance_attribute()
        .instance_id(&head.0)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    use base64::Engine;
    let ud = base64::engine::general_purpose::STANDARD
        .decode(attr.user_data().unwrap().value().unwrap())
        .unwrap();
    let ud = String::from_utf8(ud).unwrap();
    assert!(
        ud.starts_with("#!/bin/sh")
            && ud.contains("DAFT_CLUSTER=moto-life")
            && ud.contains("install start"),
        "{ud}"
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

    // plan --output json on a converged cluster.
    let plan: serde_json::Value = serde_json::from_str(&ok(case
        .daft()
        .args(["plan", "-c", cfg, "--output", "json"])))
    .unwrap();
    assert_eq!(plan["noop"], true);

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
fn bootstrap_user_data_runs_on_this_machine() {
    // The exact user data the AWS provider renders, executed here in a scratch HOME (settings
    // pointed at loopback): it installs uv's environment with Ray and starts a Ray head.
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port("127.0.0.2");
    let dash = common::free_port("127.0.0.2");
    let user = common::run("id -un").trim().to_string();
    let text = format!("[setup]\nname = \"ud-test\"\nprovider = \"aws\"\nssh_user = \"{user}\"\n");
    let cfg = daft::config::Config::parse("c.toml", &text, dir.path()).unwrap();
    let ud = daft::provider::aws::render_user_data(&cfg, daft::model::Role::Head, None);
    let ud = ud
        .replace("DAFT_NODE_IP=''", "DAFT_NODE_IP=127.0.0.2")
        .replace("DAFT_RAY_PORT=6379", &format!("DAFT_RAY_PORT={port}"))
        .replace(
            "DAFT_DASHBOARD_PORT=8265",
            &format!("DAFT_DASHBOARD_PORT={dash}"),
        )
        .replace(
            "DAFT_RAY_TMP=/tmp/daft-head",
            &format!("DAFT_RAY_TMP={}/raytmp", dir.path().display()),
        )
        .replace(
            "/tmp/daft-bootstrap.sh",
            &format!("{}/bootstrap.sh", dir.path().display()),
        );
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
    // Stop it the way daft does: by PID, through the same script.
    let stop = format!("{}/bootstrap.sh", dir.path().display());
    let o = StdCommand::new("sh")
        .arg(&stop)
        .arg("stop-cluster")
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(Duration::from_secs(1));
    let left = common::run(&format!(
        "grep -l -a '{}/[r]aytmp' /proc/[0-9]*/cmdline 2>/dev/null || true",
        dir.path().display()
    ));
    assert!(left.trim().is_empty(), "left behind: {left}");
}
