//! The Kubernetes provider through the whole CLI, against a Kubernetes API server fake on
//! loopback that speaks the real wire protocol (no API server can be installed here). The fake
//! stands in for KubeRay's operator too; its exec runs commands on this machine and its
//! port-forward reaches local ports, so `submit` and `dashboard` meet a real Ray head that the
//! test starts with daft's local provider.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::kube::FakeApiServer;
use serde_json::json;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn fake(&self, conf: serde_json::Value) -> FakeApiServer {
        let mut conf = conf;
        if conf.get("home").is_none() {
            conf["home"] = json!(self.path().join("pod-home").display().to_string());
        }
        FakeApiServer::start(&self.path().join("apiserver"), conf)
    }
    fn daft(&self, fake: &FakeApiServer) -> Command {
        let mut c = Command::cargo_bin("daft").unwrap();
        c.current_dir(self.path())
            .env("DAFT_HOME", self.path().join("daft-home"))
            .env("HOME", self.path())
            .env("KUBECONFIG", &fake.kubeconfig)
            .env("RUST_LOG", "warn")
            .timeout(Duration::from_secs(300));
        c
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn out(o: &std::process::Output) -> String {
    format!(
        "--- status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn k8s_config(name: &str, workers: u32, extra: &str) -> String {
    format!(
        "[setup]\nname = \"{name}\"\nprovider = \"kubernetes\"\nnumber_of_workers = {workers}\n\n\
         [setup.kubernetes]\nready_timeout = \"60s\"\n{extra}\n"
    )
}

#[test]
fn fake_apiserver_up_is_an_applied_raycluster_twice_a_noop_then_scaled_listed_and_deleted() {
    let case = Case::new();
    let fake = case.fake(json!({}));
    case.write("k8s.toml", &k8s_config("demo", 2, ""));

    // plan: a RayCluster to create, in the context's namespace.
    let o = case
        .daft(&fake)
        .args(["plan", "-c", "k8s.toml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("kubernetes fake/ray-test"), "{text}");
    assert!(
        text.contains("+ create     RayCluster demo  (1 head + 2 worker(s))"),
        "{text}"
    );

    // up: server-side apply by field manager daft, then the head pod ready.
    let t = Instant::now();
    let o = case
        .daft(&fake)
        .args(["up", "-c", "k8s.toml"])
        .env("RUST_LOG", "daft=debug")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Cluster \"demo\" is up"), "{stdout}");
    assert!(stdout.contains("Head pod: demo-head-"), "{stdout}");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    let state = fake.state();
    let applies: Vec<&serde_json::Value> = state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "PATCH")
        .collect();
    assert!(!applies.is_empty());
    for a in &applies {
        assert_eq!(a["content_type"], "application/apply-patch+yaml", "{a}");
    }
    assert!(applies.iter().any(|a| a["query"]["fieldManager"] == "daft"));
    let rc = &state["rayclusters"][0];
    assert_eq!(
        rc["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "daft"
    );
    assert_eq!(rc["metadata"]["labels"]["daft.io/cluster"], "demo");
    assert_eq!(rc["metadata"]["namespace"], "ray-test");
    assert_eq!(rc["spec"]["workerGroupSpecs"][0]["replicas"], 2);
    assert_eq!(fake.pods("demo").len(), 3);
    // The debug log shows the API calls and the commands run in the pod.
    let debug = String::from_utf8_lossy(&o.stderr);
    assert!(debug.contains("apply RayCluster"), "{debug}");
    assert!(debug.contains("exec"), "{debug}");

    // up again: nothing to do.
    let o = case
        .daft(&fake)
        .args(["up", "-c", "k8s.toml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("= keep       RayCluster demo"), "{stdout}");
    assert!(stdout.contains("Nothing to do"), "{stdout}");

    // Four workers: the plan says what changes; up applies it.
    case.write("k8s.toml", &k8s_config("demo", 4, ""));
    let o = case
        .daft(&fake)
        .args(["plan", "-c", "k8s.toml", "-o", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["resource"]["action"]["action"], "update");
    assert_eq!(
        plan["resource"]["action"]["reasons"],
        json!(["worker replicas 2 → 4"])
    );
    assert_eq!(plan["resource"]["pods"].as_array().unwrap().len(), 3);
    let o = case
        .daft(&fake)
        .args(["up", "-c", "k8s.toml", "--wait-workers"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(fake.pods("demo").len(), 5);

    // list: the pods, grouped by state, table and JSON.
    let o = case
        .daft(&fake)
        .args(["list", "-c", "k8s.toml", "-o", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["provider"] == "kubernetes" && r["cluster"] == "demo"));
    assert_eq!(rows.iter().filter(|r| r["role"] == "head").count(), 1);
    let o = case
        .daft(&fake)
        .args(["list", "-c", "k8s.toml"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("Running:"), "{table}");
    assert!(table.contains("pod (ready)"), "{table}");

    // down: foreground deletion, back when the pods are gone.
    let o = case
        .daft(&fake)
        .args(["down", "-c", "k8s.toml", "--yes"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("- delete     RayCluster demo  (and its 5 pod(s))"),
        "{stdout}"
    );
    assert!(stdout.contains("is down"), "{stdout}");
    let state = fake.state();
    assert_eq!(
        state["deletes"],
        json!([{"name": "demo", "propagationPolicy": "Foreground"}])
    );
    assert!(state["rayclusters"].as_array().unwrap().is_empty());
    assert!(state["pods"].as_array().unwrap().is_empty());
    let o = case
        .daft(&fake)
        .args(["down", "-c", "k8s.toml", "--yes"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Nothing to remove"));
}

/// `daft up` against a scripted failure: exit 1 within `bound`, stderr mentioning each needle.
fn assert_up_fails(
    case: &Case,
    fake: &FakeApiServer,
    cfg: &str,
    bound: Duration,
    needles: &[&str],
) {
    let t = Instant::now();
    let o = case
        .daft(fake)
        .args(["up", "-c", cfg, "--yes"])
        .output()
        .unwrap();
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in\n{}", out(&o));
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(took < bound, "took {took:?} (bound {bound:?})");
}

#[test]
fn fake_apiserver_pods_that_cannot_start_rbac_and_a_missing_crd_are_clear_errors_within_bounds() {
    let case = Case::new();
    let fake = case.fake(json!({}));

    // A bad image: said at once, with the image.
    fake.scenario(json!({"head": "imagepull"}));
    case.write(
        "pull.toml",
        &k8s_config("pull", 0, "image = \"rayproject/ray:no-such-tag\""),
    );
    assert_up_fails(
        &case,
        &fake,
        "pull.toml",
        Duration::from_secs(30),
        &[
            "cannot pull its image",
            "rayproject/ray:no-such-tag",
            "ImagePullBackOff",
        ],
    );

    // A crashing head: its last output.
    fake.scenario(json!({"head": "crashloop"}));
    case.write("crash.toml", &k8s_config("crash", 0, ""));
    assert_up_fails(
        &case,
        &fake,
        "crash.toml",
        Duration::from_secs(30),
        &[
            "keeps crashing",
            "CrashLoopBackOff",
            "last exit status 1",
            "ModuleNotFoundError: No module named 'missing_dependency'",
        ],
    );

    // Unschedulable: waited for until the deadline, then the scheduler's words.
    fake.scenario(json!({"head": "unschedulable"}));
    case.write(
        "sched.toml",
        &k8s_config("sched", 0, "").replace("ready_timeout = \"60s\"", "ready_timeout = \"3s\""),
    );
    assert_up_fails(
        &case,
        &fake,
        "sched.toml",
        Duration::from_secs(30),
        &[
            "was not ready within 3s",
            "cannot be scheduled (Unschedulable)",
            "Insufficient nvidia.com/gpu",
        ],
    );

    // A volume that cannot be mounted: from the pod's events.
    fake.scenario(json!({"head": "failedmount"}));
    case.write(
        "mount.toml",
        &k8s_config("mount", 0, "").replace("ready_timeout = \"60s\"", "ready_timeout = \"3s\""),
    );
    assert_up_fails(
        &case,
        &fake,
        "mount.toml",
        Duration::from_secs(30),
        &["configmap \"training-data\" not found", "FailedMount"],
    );

    // RBAC: a 403, in the API server's words, with what to ask for.
    fake.scenario(json!({"head": "ready"}));
    fake.config(json!({"forbid": [["create", "rayclusters"]]}));
    case.write("rbac.toml", &k8s_config("rbac", 0, ""));
    assert_up_fails(
        &case,
        &fake,
        "rbac.toml",
        Duration::from_secs(30),
        &[
            "not allowed to apply the RayCluster",
            "cannot create resource \"rayclusters\"",
            "RBAC",
        ],
    );

    // No KubeRay: how to install it.
    fake.config(json!({"forbid": [], "no_crd": true}));
    assert_up_fails(
        &case,
        &fake,
        "rbac.toml",
        Duration::from_secs(30),
        &["KubeRay is not installed", "helm install kuberay-operator"],
    );
    let o = case
        .daft(&fake)
        .args(["plan", "-c", "rbac.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));

    // Wrong credentials: a 401 said as such.
    fake.config(json!({"no_crd": false}));
    let kc = std::fs::read_to_string(&fake.kubeconfig).unwrap();
    let bad = case.write(
        "bad-kubeconfig",
        &kc.replace(common::kube::TOKEN, "wrong-token"),
    );
    let o = case
        .daft(&fake)
        .env("KUBECONFIG", &bad)
        .args(["up", "-c", "rbac.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused daft's credentials"),
        "{}",
        out(&o)
    );
}

#[test]
fn fake_apiserver_an_exec_credential_plugin_and_another_context_are_used() {
    let case = Case::new();
    let fake = case.fake(json!({}));
    // An exec plugin (as EKS and GKE use) that hands out the token.
    let plugin = case.write(
        "get-token.sh",
        &format!(
            "#!/bin/sh\necho called >> {}\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{}\"}}}}'\n",
            case.path().join("plugin-calls").display(),
            common::kube::TOKEN
        ),
    );
    common::run(&format!("chmod 755 {}", plugin.display()));
    let kc = std::fs::read_to_string(&fake.kubeconfig).unwrap();
    let kc = kc
        .replace(
            "- name: alice\n",
            &format!(
                "- name: alice\n  user:\n    token: not-this-one\n- name: plugin\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}\n      interactiveMode: Never\n- name: unused\n",
                plugin.display()
            ),
        )
        .replace(
            "contexts:\n",
            "contexts:\n- name: eks-like\n  context:\n    cluster: fake\n    user: plugin\n    namespace: team-a\n",
        );
    let kcp = case.write("kubeconfig-plugin", &kc);
    case.write("k8s.toml", &k8s_config("plug", 0, "context = \"eks-like\""));
    let o = case
        .daft(&fake)
        .env("KUBECONFIG", &kcp)
        .args(["up", "-c", "k8s.toml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(case.path().join("plugin-calls").exists());
    let state = fake.state();
    assert_eq!(state["rayclusters"][0]["metadata"]["namespace"], "team-a");
    let o = case
        .daft(&fake)
        .env("KUBECONFIG", &kcp)
        .args(["down", "-c", "k8s.toml", "--yes"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
}
