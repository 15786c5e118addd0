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
use common::out;
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
    /// `daft ARGS...` against `fake`, to its end.
    fn run(&self, fake: &FakeApiServer, args: &[&str]) -> std::process::Output {
        self.daft(fake).args(args).output().unwrap()
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn k8s_config(name: &str, workers: u32, extra: &str) -> String {
    format!(
        "[setup]\nname = \"{name}\"\nprovider = \"kubernetes\"\nnumber_of_workers = {workers}\n\n\
         [setup.kubernetes]\nready_timeout = \"60s\"\n{extra}\n"
    )
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs python3 with aiohttp, and Ray from PyPI"]
fn fake_apiserver_up_is_an_applied_raycluster_twice_a_noop_then_scaled_listed_and_deleted() {
    let case = Case::new();
    // (Its first watch is answered 410 Expired.)
    let fake = case.fake(json!({"expire_watches": 1}));
    case.write("k8s.toml", &k8s_config("demo", 2, ""));

    // plan: a RayCluster to create, in the context's namespace.
    let o = case.run(&fake, &["plan", "-c", "k8s.toml"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("kubernetes fake/ray-test"), "{text}");
    assert!(
        text.contains("+ create     RayCluster demo  (1 head + 2 worker(s))"),
        "{text}"
    );

    // up: server-side apply by field manager daft, then the head pod ready (after 3 s: what
    // changes meanwhile reaches the watch opened again after the 410).
    fake.scenario(json!({"ready_after": 3.0}));
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
    // The wait for the head pod watched the cluster's pods (from a list's resourceVersion) and
    // was sent their changes; a watch answered 410 Expired was opened again.
    let watches = state["watches"].as_array().unwrap();
    assert_eq!(watches[0]["expired"], true, "{watches:?}");
    let w = watches
        .iter()
        .find(|w| w["labelSelector"] == "ray.io/cluster=demo" && w["expired"] == false)
        .unwrap_or_else(|| panic!("no watch of the cluster's pods after the 410: {watches:?}"));
    assert!(
        w["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok(),
        "{w}"
    );
    assert!(w["sent"].as_u64().unwrap() >= 1, "{w}");
    assert!(debug.contains("watch pods"), "{debug}");
    assert!(!debug.contains("cannot watch pods"), "{debug}");
    fake.scenario(json!({"ready_after": 0.5}));

    // up again: nothing to do.
    let o = case.run(&fake, &["up", "-c", "k8s.toml"]);
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("= keep       RayCluster demo"), "{stdout}");
    assert!(stdout.contains("Nothing to do"), "{stdout}");

    // Four workers: the plan says what changes; up applies it.
    case.write("k8s.toml", &k8s_config("demo", 4, ""));
    let o = case.run(&fake, &["plan", "-c", "k8s.toml", "-o", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["resource"]["action"]["action"], "update");
    assert_eq!(
        plan["resource"]["action"]["reasons"],
        json!(["worker replicas 2 → 4"])
    );
    assert_eq!(plan["resource"]["pods"].as_array().unwrap().len(), 3);
    let o = case.run(&fake, &["up", "-c", "k8s.toml", "--wait-workers"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(fake.pods("demo").len(), 5);

    // list: the pods, grouped by state, table and JSON.
    let o = case.run(&fake, &["list", "-c", "k8s.toml", "-o", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["provider"] == "kubernetes" && r["cluster"] == "demo"));
    assert_eq!(rows.iter().filter(|r| r["role"] == "head").count(), 1);
    let o = case.run(&fake, &["list", "-c", "k8s.toml"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("Running:"), "{table}");
    assert!(table.contains("pod (ready)"), "{table}");

    // down: foreground deletion, back when the pods are gone.
    let o = case.run(&fake, &["down", "-c", "k8s.toml", "--yes"]);
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
    let o = case.run(&fake, &["down", "-c", "k8s.toml", "--yes"]);
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
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs python3 with aiohttp, and Ray from PyPI"]
fn fake_apiserver_pods_that_cannot_start_rbac_and_a_missing_crd_are_clear_errors_within_bounds() {
    let case = Case::new();
    let fake = case.fake(json!({}));

    // Each pod fate the fake can script: (fate, extra [setup.kubernetes] lines, what stderr says).
    // A bad image and a crash loop end the wait at once; Unschedulable and a failed mount are
    // waited for until `ready_timeout` (3 s here), then said in the scheduler's and kubelet's words.
    let fates: [(&str, &str, &[&str]); 4] = [
        (
            "imagepull",
            "image = \"rayproject/ray:no-such-tag\"",
            &[
                "cannot pull its image",
                "rayproject/ray:no-such-tag",
                "ImagePullBackOff",
            ],
        ),
        (
            "crashloop",
            "",
            &[
                "keeps crashing",
                "CrashLoopBackOff",
                "last exit status 1",
                "ModuleNotFoundError: No module named 'missing_dependency'",
            ],
        ),
        (
            "unschedulable",
            "",
            &[
                "was not ready within 3s",
                "cannot be scheduled (Unschedulable)",
                "Insufficient nvidia.com/gpu",
            ],
        ),
        (
            "failedmount",
            "",
            &["configmap \"training-data\" not found", "FailedMount"],
        ),
    ];
    for (fate, extra, needles) in fates {
        fake.scenario(json!({ "head": fate }));
        let file = format!("{fate}.toml");
        case.write(
            &file,
            &k8s_config(fate, 0, extra)
                .replace("ready_timeout = \"60s\"", "ready_timeout = \"3s\""),
        );
        assert_up_fails(&case, &fake, &file, Duration::from_secs(30), needles);
    }

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
    let o = case.run(&fake, &["plan", "-c", "rbac.toml"]);
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
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs python3 with aiohttp, and Ray from PyPI"]
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

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs python3 with aiohttp, and Ray from PyPI"]
fn fake_apiserver_submit_runs_a_real_ray_job_in_the_head_pod_and_the_dashboard_survives_a_new_head()
{
    let case = Case::new();
    // The head pod's Ray: a real head started by daft's local provider on this machine.
    let head = common::PodRay::start(case.path());
    let (dash_port, daft_home, token) = (head.dash_port, &head.daft_home, head.token.as_str());
    // KubeRay gives the head container RAY_ADDRESS and, with token authentication, the token.
    let fake = case.fake(json!({
        "exec_env": head.pod_env(),
        "ports": { "8265": dash_port },
    }));
    case.write("k8s.toml", &k8s_config("ray-on-k8s", 1, ""));
    let o = case.run(&fake, &["up", "-c", "k8s.toml"]);
    assert!(o.status.success(), "{}", out(&o));

    // submit: the archive through exec's stdin, the job under its supervisor in the pod, its
    // output followed, its exit status passed through.
    case.write(
        "job/job.py",
        "import sys, ray\nray.init()\n\n@ray.remote\ndef sq(x):\n    return x * x\n\nprint('sum of squares', sum(ray.get([sq.remote(i) for i in range(10)])))\nprint('ray nodes', len(ray.nodes()))\nsys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)\n",
    );
    let submit = |extra: &[&str]| {
        let mut args = vec![
            "submit",
            "-c",
            "k8s.toml",
            "-w",
            "job",
            "--allow-dirty",
            "--",
            "python",
            "job.py",
        ];
        args.extend_from_slice(extra);
        case.daft(&fake).args(args).output().unwrap()
    };
    let o = submit(&[]);
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("sum of squares 285"), "{}", out(&o));
    assert!(stdout.contains("ray nodes 1"), "{}", out(&o));
    let o = submit(&["3"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing sent"),
        "{}",
        out(&o)
    );
    let state = fake.state();
    let execs = state["execs"].as_array().unwrap();
    assert!(
        execs
            .iter()
            .all(|e| e["protocol"] == "v5.channel.k8s.io" && e["container"] == "ray-head"),
        "{execs:?}"
    );
    let o = case.run(&fake, &["jobs", "-c", "k8s.toml", "-o", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let jobs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut codes: Vec<i64> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["exit_status"].as_i64().unwrap())
        .collect();
    codes.sort();
    assert_eq!(codes, vec![0, 3], "{jobs}");

    // dashboard: 127.0.0.1 only, through the API server's port-forward, to the real dashboard.
    let port = common::free_port("127.0.0.1");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("daft"))
        .current_dir(case.path())
        .env("DAFT_HOME", daft_home)
        .env("HOME", case.path())
        .env("KUBECONFIG", &fake.kubeconfig)
        .args([
            "dashboard",
            "-c",
            "k8s.toml",
            "--no-browser",
            "--port",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _dash = common::KillOnDrop(child);
    common::wait_listening(port, "daft dashboard");
    let body = |r: String| r.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    let real = body(common::dashboard_version(dash_port, Some(token)));
    assert!(real.contains("ray_version"), "{real}");
    assert_eq!(body(common::dashboard_version(port, Some(token))), real);
    let refused = common::dashboard_get(port, "/api/version", None).unwrap();
    assert!(
        refused.starts_with("HTTP/1.") && refused.contains(" 401 Unauthorized"),
        "{refused}"
    );
    let first = fake.pods("ray-on-k8s");
    // A new head pod: the next connection finds it.
    fake.kill_head();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(body(common::dashboard_version(port, Some(token))), real);
    let forwards = fake.state()["forwards"].as_array().unwrap().clone();
    let pods: std::collections::BTreeSet<&str> = forwards
        .iter()
        .map(|f| f["pod"].as_str().unwrap())
        .collect();
    assert!(
        pods.len() >= 2,
        "every forward went to one pod: {forwards:?} (before: {first:?})"
    );
    assert!(forwards.iter().all(|f| f["ports"] == json!([8265])));
    let o = case.run(&fake, &["dashboard", "-c", "k8s.toml", "--show-token"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), token);

    let o = case.run(&fake, &["down", "-c", "k8s.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));

    // Bring your own cluster: a RayCluster someone else applied (no managed-by label).
    fake.apply_as(
        "helm",
        "ray-test",
        &json!({
            "apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": { "name": "byo", "namespace": "ray-test", "labels": { "team": "ml" } },
            "spec": {
                "headGroupSpec": { "rayStartParams": {}, "template": { "spec": { "containers": [
                    { "name": "ray-head", "image": "rayproject/ray:2.60.0" } ] } } },
                "workerGroupSpecs": [],
            },
        }),
    );
    case.write(
        "byo.toml",
        "[setup]\nname = \"byo-view\"\nprovider = \"kubernetes\"\n\n[setup.kubernetes]\nexisting = \"byo\"\n",
    );
    for cmd in ["up", "down"] {
        let o = case.run(&fake, &[cmd, "-c", "byo.toml", "--yes"]);
        assert_eq!(o.status.code(), Some(2), "{}", out(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("leaves this cluster alone") && err.contains("was not created by daft"),
            "{err}"
        );
    }
    let o = case.run(&fake, &["plan", "-c", "byo.toml"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("nothing daft may change"),
        "{}",
        out(&o)
    );
    let o = case.run(&fake, &["list", "-c", "byo.toml", "-o", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["cluster"] == "byo" && r["role"] == "head"),
        "{rows}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let o = loop {
        let o = case.run(
            &fake,
            &[
                "submit",
                "-c",
                "byo.toml",
                "-w",
                "job",
                "--allow-dirty",
                "--",
                "python",
                "job.py",
            ],
        );
        // (Until the stand-in operator's head pod runs.)
        if o.status.success() || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("sum of squares 285"),
        "{}",
        out(&o)
    );
    // A daft cluster of the same name as someone else's RayCluster: refused, nothing applied.
    case.write("clash.toml", &k8s_config("byo", 0, ""));
    let o = case.run(&fake, &["up", "-c", "clash.toml", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exists but was not created by daft"),
        "{}",
        out(&o)
    );
    let applied = fake.state()["applied"]["ray-test/byo"].clone();
    assert_eq!(
        applied.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["helm"],
        "{applied}"
    );
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs python3 with aiohttp, and Ray from PyPI"]
fn fake_apiserver_doctor_says_what_is_missing_and_how_to_fix_it() {
    let case = Case::new();
    let fake = case.fake(json!({}));
    case.write("k8s.toml", &k8s_config("doc", 1, ""));
    let dead_registry = common::free_port("127.0.0.1");
    case.write(
        "launch.toml",
        &format!("name = \"doc\"\ncommand = \"true\"\n[image]\nregistry = \"127.0.0.1:{dead_registry}/team\"\nbuilder = \"buildah\"\n"),
    );
    let doctor = |fake: &FakeApiServer| {
        let o = case
            .daft(fake)
            .args([
                "doctor",
                "-c",
                "k8s.toml",
                "-f",
                "launch.toml",
                "-o",
                "json",
            ])
            .output()
            .unwrap();
        let checks: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)));
        (o, checks)
    };
    let find = |checks: &serde_json::Value, name: &str, detail: &str| -> serde_json::Value {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name && c["detail"].as_str().unwrap_or("").contains(detail))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check about {detail:?} in {checks:#}"))
    };
    // Everything there but the registry (nothing listens): exit 1, and what to do.
    let (o, checks) = doctor(&fake);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert_eq!(find(&checks, "kubeconfig context", "fake")["ok"], true);
    assert_eq!(find(&checks, "KubeRay CRD", "rayclusters")["ok"], true);
    assert_eq!(
        find(&checks, "permission", "patch rayclusters.ray.io")["ok"],
        true
    );
    assert_eq!(find(&checks, "permission", "create jobs.batch")["ok"], true);
    assert_eq!(find(&checks, "permission", "create pods/exec")["ok"], true);
    assert_eq!(find(&checks, "image builder", "buildah")["ok"], true);
    assert_eq!(find(&checks, "git", "git")["ok"], true);
    let reg = find(&checks, "registry", "");
    assert_eq!(reg["ok"], false, "{reg}");
    assert!(reg["fix"].as_str().unwrap().contains("registry"), "{reg}");
    // RBAC refuses Jobs, and KubeRay is gone: both said, with the fix.
    fake.config(json!({"forbid": [["create", "jobs"]], "no_crd": true}));
    let (o, checks) = doctor(&fake);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let jobs = find(&checks, "permission", "may not create jobs.batch");
    assert!(jobs["fix"].as_str().unwrap().contains("RBAC"), "{jobs}");
    let crd = find(&checks, "KubeRay CRD", "rayclusters");
    assert_eq!(crd["ok"], false);
    assert!(
        crd["fix"]
            .as_str()
            .unwrap()
            .contains("helm install kuberay-operator"),
        "{crd}"
    );
    // The table a person reads.
    let o = case.run(&fake, &["doctor", "-c", "k8s.toml", "-f", "launch.toml"]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("MISSING") && text.contains("how to fix"),
        "{text}"
    );
}
