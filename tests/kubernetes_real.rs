//! The Kubernetes provider against a real control plane (`real_k8s`): etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok (playing the kubelet) and the KubeRay operator,
//! built from their Go modules by tests/k8s/build.sh and started on loopback by the test. What
//! the operator makes of a RayCluster (its pods, their names and labels, scaling, deletion) is
//! the real operator's doing here, not the fake's.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::out;
use common::real_k8s::RealK8s;

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
    fn daft(&self, k: &RealK8s) -> Command {
        let mut c = Command::cargo_bin("daft").unwrap();
        c.current_dir(self.path())
            .env("DAFT_HOME", self.path().join("daft-home"))
            .env("HOME", self.path())
            .env("KUBECONFIG", &k.kubeconfig)
            .env("RUST_LOG", "warn")
            .timeout(Duration::from_secs(300));
        c
    }
    fn run(&self, k: &RealK8s, args: &[&str]) -> std::process::Output {
        self.daft(k).args(args).output().unwrap()
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn config(name: &str, workers: u32) -> String {
    format!(
        "[setup]\nname = \"{name}\"\nprovider = \"kubernetes\"\nnumber_of_workers = {workers}\n\n\
         [setup.kubernetes]\nnamespace = \"default\"\nready_timeout = \"120s\"\n"
    )
}

/// The pods of a RayCluster, as the API server has them.
fn pods(k: &RealK8s, cluster: &str) -> Vec<serde_json::Value> {
    k.items(&format!(
        "/api/v1/namespaces/default/pods?labelSelector=ray.io%2Fcluster%3D{cluster}"
    ))
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs the real control plane (Go, tests/k8s/build.sh)"]
fn real_k8s_up_makes_the_operators_pods_then_noop_scale_list_and_down() {
    let case = Case::new();
    let k = RealK8s::start(&case.path().join("control-plane"));
    case.write("k8s.toml", &config("demo", 1));

    // up: server-side applied; the operator makes a head and a worker pod, the scheduler binds
    // them to kwok's node, kwok runs them; daft returns when the head is ready.
    let t = Instant::now();
    let o = case.run(&k, &["up", "-c", "k8s.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Cluster \"demo\" is up"), "{stdout}");
    eprintln!("real_k8s: up in {:.1?}", t.elapsed());
    let rc = k.api(
        "GET",
        "/apis/ray.io/v1/namespaces/default/rayclusters/demo",
        None,
    );
    assert_eq!(
        rc["metadata"]["labels"]["app.kubernetes.io/managed-by"], "daft",
        "{rc}"
    );
    let managers: Vec<&str> = rc["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["operation"] == "Apply")
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"daft"), "{managers:?}");
    let ps = pods(&k, "demo");
    let heads: Vec<_> = ps
        .iter()
        .filter(|p| p["metadata"]["labels"]["ray.io/node-type"] == "head")
        .collect();
    assert_eq!(heads.len(), 1, "{ps:?}");
    assert_eq!(heads[0]["spec"]["nodeName"], "kwok-node-0");
    assert_eq!(heads[0]["status"]["phase"], "Running");
    // KubeRay 1.5's RayCluster has no authOptions, networkPolicy or upgradeStrategy: daft sent
    // none of them (the API server refuses an apply with an undeclared field), said so, and
    // applied a NetworkPolicy of its own, owned by the RayCluster.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("has no authOptions (Ray's token authentication)"),
        "{stderr}"
    );
    assert!(rc["spec"].get("networkPolicy").is_none(), "{rc}");
    let np = k.api(
        "GET",
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/demo-daft-ingress",
        None,
    );
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"]["ray.io/cluster"], "demo",
        "{np}"
    );
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["ray.io/cluster"], "demo",
        "{np}"
    );
    assert_eq!(
        np["metadata"]["ownerReferences"][0]["uid"], rc["metadata"]["uid"],
        "{np}"
    );
    // The operator's own service for the head.
    let svcs = k.items("/api/v1/namespaces/default/services?labelSelector=ray.io%2Fcluster%3Ddemo");
    assert!(!svcs.is_empty(), "the operator made no service");

    // submit through the real exec path (kwok's exec runs it on this machine, in the pod's
    // home): the archive on stdin, the output streamed, the job's own exit status.
    let work = case.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("data.txt"), "from the archive\n").unwrap();
    let o = case.run(
        &k,
        &[
            "submit",
            "-c",
            "k8s.toml",
            "-w",
            "work",
            "--",
            "cat data.txt; echo out-$((6*7)); exit 7",
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("from the archive") && stdout.contains("out-42"),
        "{}",
        out(&o)
    );
    let o = case.run(
        &k,
        &["submit", "-c", "k8s.toml", "-w", "work", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));

    // Again: nothing to do.
    let o = case.run(&k, &["up", "-c", "k8s.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Nothing to do"),
        "{}",
        out(&o)
    );

    // Three workers: the operator scales the group.
    case.write("k8s.toml", &config("demo", 3));
    let o = case.run(&k, &["up", "-c", "k8s.toml", "--yes", "--wait-workers"]);
    assert!(o.status.success(), "{}", out(&o));
    k.wait("4 running pods of demo", Duration::from_secs(60), || {
        pods(&k, "demo")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 4
    });
    let o = case.run(&k, &["list", "-c", "k8s.toml", "-o", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");

    // down: the RayCluster deleted, back when the garbage collector has taken its pods.
    let o = case.run(&k, &["down", "-c", "k8s.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(pods(&k, "demo").is_empty());
    let rcs = k.items("/apis/ray.io/v1/namespaces/default/rayclusters");
    assert!(rcs.is_empty(), "{rcs:?}");
    // The garbage collector takes daft's NetworkPolicy with its owner.
    k.wait(
        "the NetworkPolicy deleted with its RayCluster",
        Duration::from_secs(60),
        || {
            k.items("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies")
                .is_empty()
        },
    );
}

/// `daft up` fails with exit 1 within `bound`, its error saying each of `needles`.
fn assert_up_fails(
    case: &Case,
    k: &RealK8s,
    kubeconfig: &Path,
    cfg: &str,
    bound: Duration,
    needles: &[&str],
) {
    let t = Instant::now();
    let o = case
        .daft(k)
        .env("KUBECONFIG", kubeconfig)
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
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs the real control plane (Go, tests/k8s/build.sh)"]
fn real_k8s_unschedulable_pods_and_rbac_refusals_are_clear_errors_and_doctor_asks_the_real_rbac() {
    let case = Case::new();
    let k = RealK8s::start(&case.path().join("control-plane"));

    // The real scheduler finds no node with this label: said in its words once ready_timeout
    // has passed.
    case.write(
        "nowhere.toml",
        &(config("nowhere", 0).replace("ready_timeout = \"120s\"", "ready_timeout = \"5s\"")
            + "node_selector = { \"disk\" = \"nvme\" }\n"),
    );
    assert_up_fails(
        &case,
        &k,
        &k.kubeconfig,
        "nowhere.toml",
        Duration::from_secs(60),
        &[
            "was not ready within 5s",
            "Unschedulable",
            "didn't match Pod's node affinity/selector",
        ],
    );
    // (down waits up to ready_timeout for the garbage collector to take the pods: give it time.)
    case.write("nowhere.toml", &config("nowhere", 0));
    let o = case.run(&k, &["down", "-c", "nowhere.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));

    // A user with no role at all: the real RBAC's 403, with what to ask for.
    case.write("rbac.toml", &config("rbac", 0));
    assert_up_fails(
        &case,
        &k,
        &k.narrow_kubeconfig,
        "rbac.toml",
        Duration::from_secs(30),
        &["cannot get resource \"rayclusters\"", "daft-narrow", "RBAC"],
    );
    // Given a Role that reads but does not write RayClusters: the apply is what is refused.
    let role = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "read-only", "namespace": "default"},
        "rules": [
            {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
        ],
    });
    k.api(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        Some(&role),
    );
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "read-only", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-only"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "daft-narrow"}],
    });
    k.api(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        Some(&binding),
    );
    assert_up_fails(
        &case,
        &k,
        &k.narrow_kubeconfig,
        "rbac.toml",
        Duration::from_secs(30),
        &[
            "not allowed to apply the RayCluster",
            "cannot patch resource \"rayclusters\"",
        ],
    );

    // doctor asks the real RBAC (SelfSubjectAccessReview): allowed for the admin, refused for
    // the read-only user, each said.
    let doctor = |kc: &Path| -> serde_json::Value {
        let o = case
            .daft(&k)
            .env("KUBECONFIG", kc)
            .args(["doctor", "-c", "rbac.toml", "-o", "json"])
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)))
    };
    let permission = |checks: &serde_json::Value, what: &str| -> bool {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["check"] == "permission" && c["detail"].as_str().unwrap_or("").contains(what)
            })
            .unwrap_or_else(|| panic!("no permission check for {what:?} in {checks:#}"))["ok"]
            .as_bool()
            .unwrap()
    };
    let admin = doctor(&k.kubeconfig);
    assert!(permission(&admin, "patch rayclusters.ray.io"), "{admin:#}");
    assert!(permission(&admin, "create pods/exec"), "{admin:#}");
    let narrow = doctor(&k.narrow_kubeconfig);
    assert!(
        !permission(&narrow, "patch rayclusters.ray.io"),
        "{narrow:#}"
    );
    assert!(!permission(&narrow, "create pods/exec"), "{narrow:#}");
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs the real control plane (Go, tests/k8s/build.sh) and Ray from PyPI"]
fn real_k8s_submit_runs_a_real_ray_job_through_exec_and_the_dashboard_through_the_real_port_forward(
) {
    let case = Case::new();
    // The head pod's Ray: a real head started by daft's local provider on this machine.
    let head = common::PodRay::start(case.path());
    let (dash_port, token) = (head.dash_port, head.token.as_str());
    let k = RealK8s::start_with(
        &case.path().join("control-plane"),
        serde_json::json!({
            "exec_env": head.pod_env(),
            "ports": { "8265": dash_port },
        }),
    );
    case.write("k8s.toml", &config("ray-on-k8s", 0));
    let o = case.run(&k, &["up", "-c", "k8s.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));

    // submit: a real Ray job in the "pod", its output followed, its exit status passed through.
    let job = case.path().join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(
        job.join("job.py"),
        "import sys, ray\nray.init()\n\n@ray.remote\ndef sq(x):\n    return x * x\n\nprint('sum of squares', sum(ray.get([sq.remote(i) for i in range(10)])))\nsys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)\n",
    )
    .unwrap();
    let submit = |extra: &[&str]| {
        let mut args = vec![
            "submit", "-c", "k8s.toml", "-w", "job", "--", "python", "job.py",
        ];
        args.extend_from_slice(extra);
        case.daft(&k).args(args).output().unwrap()
    };
    let o = submit(&[]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("sum of squares 285"),
        "{}",
        out(&o)
    );
    let o = submit(&["3"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));

    // dashboard: 127.0.0.1 only, through the API server's port-forward and kwok's, to the real
    // dashboard (which wants the token).
    let port = common::free_port("127.0.0.1");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("daft"))
        .current_dir(case.path())
        .env("DAFT_HOME", case.path().join("daft-home-k8s"))
        .env("HOME", case.path())
        .env("KUBECONFIG", &k.kubeconfig)
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
    // (Read by Content-Length, as browsers do: kwok's port-forward does not pass on the
    // dashboard's close of a connection, so a read to the end of the stream would wait.)
    let get = |p: u16| -> String {
        let o = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "15", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("http://127.0.0.1:{p}/api/version"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let real = get(dash_port);
    assert!(real.contains("ray_version"), "{real}");
    let t = Instant::now();
    let mut through = get(port);
    while through != real && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        through = get(port);
    }
    assert_eq!(through, real, "the dashboard through the tunnel");

    let o = case.run(&k, &["down", "-c", "k8s.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs the real control plane (Go, tests/k8s/build.sh)"]
fn real_k8s_a_cluster_without_kuberay_is_a_clear_error_for_plan_up_and_doctor() {
    let case = Case::new();
    let k = RealK8s::start_with(
        &case.path().join("control-plane"),
        serde_json::json!({ "no_kuberay": true }),
    );
    case.write("k8s.toml", &config("nokuberay", 1));
    assert_up_fails(
        &case,
        &k,
        &k.kubeconfig,
        "k8s.toml",
        Duration::from_secs(30),
        &["KubeRay is not installed", "helm install kuberay-operator"],
    );
    let o = case.run(&k, &["plan", "-c", "k8s.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("KubeRay is not installed"),
        "{}",
        out(&o)
    );
    // Nothing ran: no pod anywhere.
    assert!(k.items("/api/v1/pods").is_empty());
    let o = case.run(&k, &["doctor", "-c", "k8s.toml", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let checks: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let crd = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "KubeRay CRD")
        .unwrap_or_else(|| panic!("no CRD check in {checks:#}"));
    assert_eq!(crd["ok"], false, "{crd}");
}

/// Worker pods of a RayCluster that are running.
fn running_workers(k: &RealK8s, cluster: &str) -> usize {
    pods(k, cluster)
        .iter()
        .filter(|p| {
            p["metadata"]["labels"]["ray.io/node-type"] == "worker"
                && p["status"]["phase"] == "Running"
        })
        .count()
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs the real control plane (Go, tests/k8s/build.sh)"]
fn real_k8s_an_autoscaled_cluster_gets_kuberays_autoscaler_and_up_never_fights_its_count() {
    let case = Case::new();
    let k = RealK8s::start(&case.path().join("control-plane"));
    let text = "[setup]\nname = \"elastic\"\nprovider = \"kubernetes\"\nmin_workers = 1\nmax_workers = 3\n\
                idle_timeout = \"90s\"\n\n[setup.kubernetes]\nnamespace = \"default\"\nready_timeout = \"120s\"\n";
    case.write("auto.toml", text);

    let o = case.run(&k, &["plan", "-c", "auto.toml"]);
    assert!(o.status.success(), "{}", out(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        plan.contains("+ create     RayCluster elastic  (1 head + 1 worker(s), autoscaled 1–3)"),
        "{plan}"
    );
    let o = case.run(&k, &["up", "-c", "auto.toml", "--yes", "--wait-workers"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 worker(s) asked for (autoscaled 1–3)"),
        "{}",
        out(&o)
    );
    let path = "/apis/ray.io/v1/namespaces/default/rayclusters/elastic";
    let rc = k.api("GET", path, None);
    assert_eq!(rc["spec"]["enableInTreeAutoscaling"], true, "{rc}");
    assert_eq!(
        rc["spec"]["autoscalerOptions"]["idleTimeoutSeconds"], 90,
        "{rc}"
    );
    let group = &rc["spec"]["workerGroupSpecs"][0];
    assert_eq!(
        (group["minReplicas"].clone(), group["maxReplicas"].clone()),
        (1.into(), 3.into())
    );
    // The real operator put Ray's autoscaler beside the head (its sidecar), and made the
    // minimum of workers.
    let head = pods(&k, "elastic")
        .into_iter()
        .find(|p| p["metadata"]["labels"]["ray.io/node-type"] == "head")
        .expect("a head pod");
    let containers: Vec<&str> = head["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(containers.contains(&"autoscaler"), "{containers:?}");
    k.wait(
        "1 running worker of elastic",
        Duration::from_secs(60),
        || running_workers(&k, "elastic") == 1,
    );

    // The autoscaler asks for 3 (here the test patches `replicas` as Ray's autoscaler does: kwok
    // runs no Ray in the sidecar); the operator makes them.
    k.merge_patch(
        path,
        "autoscaler-stand-in",
        &serde_json::json!({"spec": {"workerGroupSpecs": [{
            "groupName": group["groupName"],
            "replicas": 3,
            "minReplicas": 1,
            "maxReplicas": 3,
            "rayStartParams": {},
            "template": group["template"],
        }]}}),
    );
    k.wait(
        "3 running workers of elastic",
        Duration::from_secs(60),
        || running_workers(&k, "elastic") == 3,
    );
    // `plan` and `up` leave the autoscaler's count alone: nothing to do, still 3.
    let o = case.run(&k, &["plan", "-c", "auto.toml"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Plan: nothing to change."),
        "{}",
        out(&o)
    );
    let o = case.run(&k, &["up", "-c", "auto.toml", "--yes"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Nothing to do"),
        "{}",
        out(&o)
    );
    let rc = k.api("GET", path, None);
    assert_eq!(rc["spec"]["workerGroupSpecs"][0]["replicas"], 3, "{rc}");

    // A new range is an update of the bounds only.
    case.write(
        "auto.toml",
        &text.replace("max_workers = 3", "max_workers = 5"),
    );
    let o = case.run(&k, &["plan", "-c", "auto.toml"]);
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        plan.contains("~ update") && plan.contains("autoscaled 1–5"),
        "{plan}"
    );
    let o = case.run(&k, &["up", "-c", "auto.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    let rc = k.api("GET", path, None);
    let group = &rc["spec"]["workerGroupSpecs"][0];
    assert_eq!(
        (group["replicas"].clone(), group["maxReplicas"].clone()),
        (3.into(), 5.into()),
        "{rc}"
    );

    let o = case.run(&k, &["down", "-c", "auto.toml", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(pods(&k, "elastic").is_empty());
}
