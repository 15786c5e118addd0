//! The RayCluster daft applies for each shape of `[setup.kubernetes]`: snapshots, and each one
//! validated against KubeRay's own CRD schema (`tests/data/kuberay-crds/`, a copy of `../shared/kubernetes/crds/`; defaults applied,
//! unknown fields refused) as the API server would.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use daft::config::Config;

fn config(text: &str) -> Config {
    Config::parse("k8s.toml", text, Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}

/// The config's `[setup.kubernetes]`.
fn k8s(cfg: &Config) -> &daft::config::KubernetesSetup {
    match &cfg.setup.provider {
        daft::config::ProviderSetup::Kubernetes(k) => k,
        other => panic!("not a Kubernetes setup: {other:?}"),
    }
}

fn crds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kuberay-crds")
}

/// Validate manifests with tests/support/validate_crd.py; (ok, its output).
fn validate(crd: &str, manifests: &[serde_json::Value]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        let p = dir.path().join(format!("m{i}.json"));
        std::fs::write(&p, serde_json::to_string_pretty(m).unwrap()).unwrap();
        paths.push(p);
    }
    let o = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/validate_crd.py"))
        .arg(crds().join(crd))
        .arg("v1")
        .args(&paths)
        .output()
        .expect("python3 with jsonschema and PyYAML (.ci/setup installs them)");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

const SHAPES: [(&str, &str); 5] = [
    (
        "default",
        "[setup]\nname = \"demo\"\nprovider = \"kubernetes\"\n",
    ),
    (
        "gpu_workers_scheduling_and_registry",
        "[setup]\nname = \"gpus\"\nprovider = \"kubernetes\"\nnumber_of_workers = 4\n\n[setup.kubernetes]\nnamespace = \"ml\"\nimage = \"registry.example.com/team/ray:2.60.0-py311-gpu\"\nhead_cpu = \"4\"\nhead_memory = \"16Gi\"\nworker_cpu = \"8\"\nworker_memory = \"64Gi\"\nworker_gpus = 2\nnode_selector = { \"nvidia.com/gpu.product\" = \"NVIDIA-A100-SXM4-80GB\" }\ntolerations = [\"nvidia.com/gpu:NoSchedule\", \"dedicated=ml:NoExecute\", \"spot\"]\nservice_account = \"ray-runner\"\nimage_pull_secrets = [\"registry-creds\"]\n",
    ),
    (
        "dependencies_and_an_older_ray",
        "[setup]\nname = \"deps\"\nprovider = \"kubernetes\"\nnumber_of_workers = 1\nray_version = \"2.40.0\"\npython_version = \"3.12\"\ndependencies = [\"numpy>=2\", \"pandas\"]\n",
    ),
    (
        "head_only",
        "[setup]\nname = \"solo\"\nprovider = \"kubernetes\"\nnumber_of_workers = 0\n\n[setup.kubernetes]\nhead_cpu = \"500m\"\nhead_memory = \"2Gi\"\n",
    ),
    (
        "autoscaled",
        "[setup]\nname = \"elastic\"\nprovider = \"kubernetes\"\nmin_workers = 1\nmax_workers = 8\nidle_timeout = \"2m\"\nupscaling_speed = 2\n",
    ),
];

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs python3 with jsonschema and PyYAML"]
fn raycluster_manifests_snapshot_and_validate_against_kuberays_crd() {
    let mut all = Vec::new();
    for (name, text) in SHAPES {
        let cfg = config(text);
        let ns = k8s(&cfg)
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let m = daft::kuberay::raycluster(&cfg, k8s(&cfg), &ns, daft::kuberay::Features::ALL);
        insta::assert_snapshot!(
            format!("raycluster_{name}"),
            serde_json::to_string_pretty(&m).unwrap()
        );
        all.push(m);
    }
    let (ok, text) = validate("ray.io_rayclusters.yaml", &all);
    assert!(ok, "{text}");
    assert!(text.contains("5 manifest(s) valid"), "{text}");
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs python3 with jsonschema and PyYAML"]
fn the_crd_check_refuses_what_the_api_server_would() {
    let cfg = config(SHAPES[0].1);
    let good = daft::kuberay::raycluster(&cfg, k8s(&cfg), "default", daft::kuberay::Features::ALL);
    // An unknown field, a wrong type, a value outside an enum: each refused.
    let mut unknown = good.clone();
    unknown["spec"]["headGroupSpec"]["replicas"] = serde_json::json!(1);
    let mut wrong_type = good.clone();
    wrong_type["spec"]["workerGroupSpecs"][0]["replicas"] = serde_json::json!("two");
    let mut bad_enum = good.clone();
    bad_enum["spec"]["upgradeStrategy"]["type"] = serde_json::json!("Rolling");
    for (what, m) in [
        ("replicas", unknown),
        ("'two' is not of type 'integer'", wrong_type),
        ("'Rolling' is not one of", bad_enum),
    ] {
        let (ok, text) = validate("ray.io_rayclusters.yaml", &[m]);
        assert!(
            !ok && text.contains(what),
            "expected a refusal naming {what:?}:\n{text}"
        );
    }
}

#[test]
fn the_plan_compares_what_it_applies_with_what_it_reads_back() {
    // The settings read from the manifest are those read from the live object: a RayCluster
    // as the API server returns it (with status, managed fields, defaults) compares equal.
    let cfg = config(SHAPES[1].1);
    let want = daft::kuberay::desired(&cfg, k8s(&cfg), "ml", daft::kuberay::Features::ALL);
    let mut live = want.manifest.clone();
    live["metadata"]["uid"] = serde_json::json!("1234");
    live["metadata"]["managedFields"] = serde_json::json!([{"manager": "daft"}]);
    live["spec"]["workerGroupSpecs"][0]["numOfHosts"] = serde_json::json!(1);
    live["status"] = serde_json::json!({"state": "ready"});
    let mut have = daft::kuberay::settings(&live);
    have.insert("setup".into(), daft::kuberay::setup_hash(&cfg));
    assert_eq!(have, want.settings);
    assert_eq!(want.settings["worker replicas"], "4");
    assert_eq!(want.settings["worker gpus"], "2");
    assert_eq!(want.settings["token authentication"], "token");
    let old = config(SHAPES[2].1);
    assert_eq!(
        daft::kuberay::desired(&old, k8s(&old), "default", daft::kuberay::Features::ALL).settings
            ["token authentication"],
        ""
    );
}

#[test]
fn an_autoscaled_group_gives_kuberay_the_bounds_and_keeps_the_autoscalers_count() {
    let cfg = config(SHAPES[4].1);
    let want = daft::kuberay::desired(&cfg, k8s(&cfg), "default", daft::kuberay::Features::ALL);
    let spec = &want.manifest["spec"];
    assert_eq!(spec["enableInTreeAutoscaling"], true);
    assert_eq!(spec["autoscalerOptions"]["idleTimeoutSeconds"], 120);
    // upscaling_speed 2 is more than Ray's rate-limited speed: KubeRay's unlimited mode.
    assert_eq!(spec["autoscalerOptions"]["upscalingMode"], "Default");
    let g = &spec["workerGroupSpecs"][0];
    assert_eq!(
        (
            g["replicas"].as_u64(),
            g["minReplicas"].as_u64(),
            g["maxReplicas"].as_u64()
        ),
        (Some(1), Some(1), Some(8))
    );
    assert_eq!(want.settings["worker replicas"], "autoscaled 1–8");
    assert_eq!(want.scaling.as_deref(), Some("autoscaled 1–8"));

    // The autoscaler moved the count to 5: the plan sees no change, and an apply carries the 5.
    let mut live = want.manifest.clone();
    live["spec"]["workerGroupSpecs"][0]["replicas"] = serde_json::json!(5);
    let mut have = daft::kuberay::settings(&live);
    have.insert("setup".into(), daft::kuberay::setup_hash(&cfg));
    assert_eq!(have, want.settings);
    let applied = daft::kuberay::with_live_replicas(&want.manifest, Some(&live));
    assert_eq!(applied["spec"]["workerGroupSpecs"][0]["replicas"], 5);
    // Above a new maximum it is brought down to it; a new cluster starts at the minimum.
    live["spec"]["workerGroupSpecs"][0]["replicas"] = serde_json::json!(12);
    let applied = daft::kuberay::with_live_replicas(&want.manifest, Some(&live));
    assert_eq!(applied["spec"]["workerGroupSpecs"][0]["replicas"], 8);
    let fresh = daft::kuberay::with_live_replicas(&want.manifest, None);
    assert_eq!(fresh["spec"]["workerGroupSpecs"][0]["replicas"], 1);

    // A fixed count is daft's: the live count is not carried over, and a change is a diff.
    let fixed = config(SHAPES[1].1);
    let want = daft::kuberay::desired(&fixed, k8s(&fixed), "ml", daft::kuberay::Features::ALL);
    let mut live = want.manifest.clone();
    live["spec"]["workerGroupSpecs"][0]["replicas"] = serde_json::json!(9);
    let applied = daft::kuberay::with_live_replicas(&want.manifest, Some(&live));
    assert_eq!(applied["spec"]["workerGroupSpecs"][0]["replicas"], 4);
    assert_eq!(daft::kuberay::settings(&live)["worker replicas"], "9");
    assert!(want.manifest["spec"]
        .get("enableInTreeAutoscaling")
        .is_none());
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs the real control plane (Go, tests/k8s/build.sh)"]
fn real_k8s_every_raycluster_shape_is_accepted_by_the_api_server_with_kuberays_own_crd() {
    let dir = tempfile::tempdir().unwrap();
    let k = common::real_k8s::RealK8s::start(&dir.path().join("control-plane"));
    // What the installed KubeRay's CRD declares, as daft reads it.
    let crd = k.api(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rayclusters.ray.io",
        None,
    );
    let v1 = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .unwrap();
    let fields: Vec<String> = v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let features = daft::kuberay::Features::from_spec_fields(&fields);
    for (name, text) in SHAPES {
        let cfg = config(text);
        let mut m = daft::kuberay::raycluster(&cfg, k8s(&cfg), "default", features);
        m["metadata"]["namespace"] = "default".into();
        let rc = m["metadata"]["name"].as_str().unwrap().to_string();
        let (ok, answer) = k.dry_run_apply(
            &format!("/apis/ray.io/v1/namespaces/default/rayclusters/{rc}"),
            &m,
        );
        assert!(ok, "{name}: the API server refused it: {answer:#}");
        // The same shape with every field of KubeRay's newest CRD is refused by this one, in the
        // API server's words: why daft reads the CRD first.
        if features != daft::kuberay::Features::ALL {
            let all =
                daft::kuberay::raycluster(&cfg, k8s(&cfg), "default", daft::kuberay::Features::ALL);
            let (ok, answer) = k.dry_run_apply(
                &format!("/apis/ray.io/v1/namespaces/default/rayclusters/{rc}"),
                &all,
            );
            assert!(!ok, "{name}: accepted with fields its CRD does not declare");
            assert!(
                answer.to_string().contains("field not declared in schema"),
                "{answer}"
            );
        }
    }
    // What was judged was a dry run: nothing is stored.
    assert!(k
        .items("/apis/ray.io/v1/namespaces/default/rayclusters")
        .is_empty());
}
