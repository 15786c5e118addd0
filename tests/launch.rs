//! `launch.toml` and `daft launch`: the config's errors, the Job and RayJob manifests
//! (snapshots, validated by `kubernetes-validate --strict` and KubeRay's CRD schema), `--dry-run`,
//! `--local`; and a real image built by buildah from a base the test makes, pushed to a real
//! registry (Debian's docker-registry) on loopback, then run as a Job by the Kubernetes API
//! server fake, whose stand-in kubelet runs the Job's command inside that image with buildah.

mod common;

use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use assert_cmd::Command;
use common::out;
use daft::config::launch::LaunchConfig;
use daft::launch::Manifests;
use serde_json::json;

#[allow(clippy::result_large_err)]
fn parse(text: &str) -> Result<LaunchConfig, daft::error::ConfigError> {
    LaunchConfig::parse("launch.toml", text, Path::new("."))
}

#[test]
fn launch_toml_errors_are_located_and_say_what_to_do() {
    let cases = [
        ("unknown_key", "name = \"t\"\n[resources]\ngpu = 1\n"),
        ("bad_name", "name = \"Train_Job\"\n"),
        (
            "bad_memory",
            "name = \"t\"\n[resources]\nmemory = \"16 GB\"\n",
        ),
        (
            "gpu_memory_without_gpus",
            "name = \"t\"\n[resources]\ngpu_memory = \"40Gi\"\n",
        ),
        (
            "bad_builder",
            "name = \"t\"\n[image]\nbuilder = \"kaniko\"\n",
        ),
        (
            "missing_dockerfile",
            "name = \"t\"\n[image]\ndockerfile = \"nope/Dockerfile\"\n",
        ),
        (
            "bad_toleration",
            "name = \"t\"\n[kubernetes]\ntolerations = [\"gpu:Maybe\"]\n",
        ),
    ];
    let mut all = String::new();
    for (name, text) in cases {
        let e = parse(text).expect_err(name);
        let (line, _) = e.line_col().expect("located");
        assert!(line >= 1);
        assert!(e.help.is_some(), "{name}: no help");
        all.push_str(&format!("== {name}\n{}\n", e.render()));
    }
    insta::assert_snapshot!("launch_toml_errors", all);
}

fn shapes() -> Vec<(&'static str, LaunchConfig)> {
    vec![
        (
            "job",
            parse("name = \"train\"\ncommand = \"python train.py\"\nbackoff_limit = 1\nttl_seconds_after_finished = 3600\nenv = { WANDB_PROJECT = \"demo\" }\nsecrets = [\"wandb-credentials\"]\n[image]\nregistry = \"registry.example.com/team\"\n[resources]\ncpu = \"4\"\nmemory = \"16Gi\"\ngpus = 1\ngpu_memory = \"40Gi\"\n[kubernetes]\nnamespace = \"ml\"\nnode_selector = { \"nvidia.com/gpu.product\" = \"NVIDIA-A100-SXM4-80GB\" }\ntolerations = [\"nvidia.com/gpu:NoSchedule\"]\nservice_account = \"trainer\"\n").unwrap(),
        ),
        (
            "rayjob",
            parse("name = \"sweep\"\ncommand = \"python tune.py\"\nworkers = 3\n[image]\nregistry = \"registry.example.com/team\"\n[resources]\ncpu = \"2\"\nmemory = \"8Gi\"\n").unwrap(),
        ),
    ]
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs kubernetes-validate and python3 with jsonschema"]
fn launch_manifests_snapshot_and_validate_against_kubernetes_and_kuberay_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let tag = daft::launch::ImageTag {
        tag: "0123456789abcdef0123456789abcdef01234567".into(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        branch: Some("main".into()),
        dirty: false,
    };
    let ann = daft::launch::annotations(&tag, "alice");
    let image = "registry.example.com/team/train:0123456789abcdef0123456789abcdef01234567@sha256:5e0cba2f8a7d6e4d7b9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";
    for (name, cfg) in shapes() {
        let job = format!("{}-20261121-102640-x7k2", cfg.name);
        let ns = cfg.namespace.clone().unwrap_or_else(|| "default".into());
        let cmd = cfg.command.clone().unwrap();
        let m = Manifests {
            cfg: &cfg,
            namespace: &ns,
            image,
            command: &cmd,
            annotations: &ann,
        }
        .for_launch(&job);
        insta::assert_snapshot!(
            format!("launch_{name}"),
            serde_json::to_string_pretty(&m).unwrap()
        );
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        let o = if cfg.workers > 0 {
            StdCommand::new("python3")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/validate_crd.py"))
                .arg(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/data/kuberay-crds/ray.io_rayjobs.yaml"),
                )
                .arg("v1")
                .arg(&path)
                .output()
                .unwrap()
        } else {
            StdCommand::new("kubernetes-validate")
                .args(["--strict", "-k", "1.34.0"])
                .arg(&path)
                .output()
                .expect("kubernetes-validate (PyPI; .ci/setup installs it)")
        };
        assert!(o.status.success(), "{name} does not validate:\n{}", out(&o));
    }
    // A Katib sweep (Katib's CRD publishes no schema: a snapshot, and the fake's round trip in
    // the build test).
    let k = parse("name = \"tune\"\ncommand = \"python train.py\"\n[image]\nregistry = \"registry.example.com/team\"\n[sweep]\nkatib = true\nmethod = \"random\"\nsamples = 12\nmax_parallel = 3\nobjective = \"loss\"\ndirection = \"minimize\"\nmax_failed = 2\n[sweep.parameters]\nlr = { log_uniform = [0.0001, 0.1] }\ndropout = { uniform = [0.0, 0.5] }\noptimizer = { choice = [\"adam\", \"sgd\"] }\n").unwrap();
    let (sweep, spec) = (
        k.sweep.clone().unwrap(),
        k.sweep.clone().unwrap().katib.unwrap(),
    );
    let m = Manifests {
        cfg: &k,
        namespace: "default",
        image,
        command: "python train.py",
        annotations: &ann,
    }
    .katib_experiment(&sweep, &spec, "tune-20261121-102640-x7k2");
    insta::assert_snapshot!(
        "launch_katib_experiment",
        serde_json::to_string_pretty(&m).unwrap()
    );
    // The check bites: an unknown field in the Job's pod is refused.
    let (_, cfg) = &shapes()[0];
    let mut bad = Manifests {
        cfg,
        namespace: "ml",
        image,
        command: "true",
        annotations: &ann,
    }
    .job("train-x");
    bad["spec"]["template"]["spec"]["restartPolicyy"] = json!("Never");
    let path = dir.path().join("bad.json");
    std::fs::write(&path, bad.to_string()).unwrap();
    let o = StdCommand::new("kubernetes-validate")
        .args(["--strict", "-k", "1.34.0"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!o.status.success(), "an unknown field passed:\n{}", out(&o));
}

/// `daft ARGS...` in `dir`, to its end.
fn daft_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::cargo_bin("daft")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn launch_dry_run_prints_the_job_and_local_runs_the_command_here() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("launch.toml"),
        "name = \"hello\"\ncommand = \"echo hello from $DAFT_JOB_NAME; exit 3\"\nenv = { GREETING = \"hi\" }\n[image]\nregistry = \"127.0.0.1:5999/team\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("requirements.txt"), "numpy\n").unwrap();
    let o = daft_in(dir.path(), &["launch", "--dry-run"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("# image: 127.0.0.1:5999/team/hello:files-"),
        "{text}"
    );
    assert!(text.contains("#   FROM python:3.11-slim"), "{text}");
    assert!(
        text.contains("RUN uv pip install --system --no-cache -r /app/requirements.txt"),
        "{text}"
    );
    let json_start = text.find("\n{").unwrap();
    let m: serde_json::Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert_eq!(m["kind"], "Job");
    assert_eq!(
        m["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "daft"
    );
    assert!(m["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("hello-"));
    assert_eq!(m["spec"]["backoffLimit"], 0);

    // --local: the same command here, its status passed through.
    let o = daft_in(dir.path(), &["launch", "--local"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello from hello"),
        "{}",
        out(&o)
    );
    let o = daft_in(
        dir.path(),
        &[
            "launch",
            "--local",
            "--",
            "sh",
            "-c",
            "echo $GREETING-$DAFT_JOB_NAME",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hi-hello");
    // A sweep does not run here: said, exit 2.
    let with_sweep = std::fs::read_to_string(dir.path().join("launch.toml")).unwrap()
        + "[sweep]\n[sweep.parameters]\nlr = [1, 2]\n";
    std::fs::write(dir.path().join("launch.toml"), with_sweep).unwrap();
    let o = daft_in(dir.path(), &["launch", "--local"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has a [sweep]"),
        "{}",
        out(&o)
    );
    // No registry: a cluster launch says what is missing (exit 2).
    std::fs::write(
        dir.path().join("launch.toml"),
        "name = \"hello\"\ncommand = \"true\"\n",
    )
    .unwrap();
    let o = daft_in(dir.path(), &["launch"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sets no `registry`"),
        "{}",
        out(&o)
    );
}

/// Debian's docker-registry on a free loopback port, storage in `dir`; stopped by PID.
struct Registry {
    child: std::process::Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        Self::start_with(dir, "")
    }

    /// A registry that wants a login (HTTP Basic against an htpasswd file, as Distribution
    /// does it): `user`/`password`.
    fn start_with_login(dir: &Path, user: &str, password: &str) -> Registry {
        let o = StdCommand::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd (Debian's apache2-utils; .ci/setup installs it)");
        assert!(o.status.success(), "{}", out(&o));
        let file = dir.join("htpasswd");
        std::fs::write(&file, &o.stdout).unwrap();
        Self::start_with(
            dir,
            &format!(
                "auth:\n  htpasswd:\n    realm: daft-test\n    path: {}\n",
                file.display()
            ),
        )
    }

    fn start_with(dir: &Path, extra: &str) -> Registry {
        let port = common::free_port("127.0.0.1");
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                dir.join("registry-data").display()
            ),
        )
        .unwrap();
        let child = StdCommand::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry (Debian package; .ci/setup installs it)");
        common::wait_listening(port, "the registry");
        Registry { child, port }
    }
    /// (status, headers and body) of a request to the registry's HTTP API.
    fn http(&self, method: &str, path: &str) -> (u16, String) {
        self.http_as(method, path, None)
    }

    /// The same, as `user:password` (HTTP Basic).
    fn http_as(&self, method: &str, path: &str, login: Option<&str>) -> (u16, String) {
        let mut c = StdCommand::new("curl");
        c.args(["-sS", "-i", "--max-time", "20"]);
        if let Some(l) = login {
            c.args(["-u", l]);
        }
        // (`-X HEAD` would wait for a body.)
        if method == "HEAD" {
            c.arg("-I");
        } else {
            c.args(["-X", method]);
        }
        let o = c
            .arg("-H")
            .arg("Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, text)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = StdCommand::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", out(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// What a real build needs here: a registry on loopback; containers-storage in the test's
/// directory (vfs, chroot isolation: what runs as root here; buildah and podman share it); a base
/// image the test makes itself (a static busybox: nothing is pulled from anywhere).
struct BuildLab {
    registry: Registry,
    env: Vec<(&'static str, String)>,
}

impl BuildLab {
    fn start(root: &Path) -> BuildLab {
        Self::with_registry(root, Registry::start(root))
    }

    fn with_registry(root: &Path, registry: Registry) -> BuildLab {
        let storage = root.join("storage.conf");
        std::fs::write(
            &storage,
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/run\"\ngraphroot = \"{0}/graph\"\n",
                root.display()
            ),
        )
        .unwrap();
        let lab = BuildLab {
            registry,
            env: vec![
                ("CONTAINERS_STORAGE_CONF", storage.display().to_string()),
                ("STORAGE_DRIVER", "vfs".to_string()),
                ("BUILDAH_ISOLATION", "chroot".to_string()),
            ],
        };
        lab.sh("c=$(buildah from scratch) && buildah copy $c /bin/busybox /bin/busybox >/dev/null && buildah run $c -- /bin/busybox --install -s /bin && buildah commit --quiet $c localhost/daft-test-base:1 >/dev/null && buildah rm $c >/dev/null");
        lab
    }

    /// A shell command with the lab's storage settings; its stdout.
    fn sh(&self, cmd: &str) -> String {
        let mut c = StdCommand::new("sh");
        c.arg("-c").arg(cmd).envs(self.env.iter().cloned());
        let o = c.output().unwrap();
        assert!(o.status.success(), "{cmd}: {}", out(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The Kubernetes API server fake, its stand-in kubelet running images with buildah in the
    /// lab's storage.
    fn apiserver(&self, root: &Path) -> common::kube::FakeApiServer {
        let benv: serde_json::Map<String, serde_json::Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        common::kube::FakeApiServer::start(
            &root.join("apiserver"),
            json!({ "home": root.join("pod-home").display().to_string(), "run_images_with": "buildah", "buildah_env": benv }),
        )
    }

    /// daft in `project` against `fake`, as user alice, with the lab's storage settings.
    fn daft(
        &self,
        project: &Path,
        fake: &common::kube::FakeApiServer,
        args: &[&str],
    ) -> std::process::Output {
        let mut c = Command::from_std(self.command(project, fake));
        c.timeout(Duration::from_secs(300));
        c.args(args).output().unwrap()
    }

    /// The same daft as a plain process (to be spawned, its pipes read as they come).
    fn command(&self, project: &Path, fake: &common::kube::FakeApiServer) -> StdCommand {
        let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("daft"));
        c.current_dir(project)
            .env("KUBECONFIG", &fake.kubeconfig)
            .env("HOME", project.parent().unwrap())
            .env("USER", "alice")
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().cloned());
        c
    }
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root, buildah, docker-registry and python3 with aiohttp"]
fn real_buildah_build_pushed_to_a_real_registry_runs_as_a_job_on_the_fake_apiserver() {
    let case = tempfile::tempdir().unwrap();
    let root = case.path();
    let lab = BuildLab::start(root);
    let registry = &lab.registry;

    // The project: a git repository with its own Dockerfile.
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("Dockerfile"),
        "FROM localhost/daft-test-base:1\nCOPY . /app\nWORKDIR /app\n",
    )
    .unwrap();
    std::fs::write(project.join("main.sh"), "echo \"job $DAFT_JOB_NAME says $GREETING\"\necho \"files: $(ls /app | tr '\\n' ' ')\"\nexit \"${EXIT:-0}\"\n").unwrap();
    let launch = |extra: &str| {
        format!(
            "name = \"hello\"\ncommand = \"sh /app/main.sh\"\n{extra}env = {{ GREETING = \"hi\" }}\n\n[image]\nregistry = \"127.0.0.1:{}/team\"\ndockerfile = \"Dockerfile\"\nbuilder = \"buildah\"\n",
            registry.port
        )
    };
    std::fs::write(project.join("launch.toml"), launch("")).unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["add", "."]);
    git(&project, &["commit", "-q", "-m", "first"]);
    let commit = git(&project, &["rev-parse", "HEAD"]);

    let fake = lab.apiserver(root);
    let daft = |args: &[&str]| lab.daft(&project, &fake, args);

    // 1. Built, pushed, run: the tag is the commit; the job runs in the image.
    let o = daft(&["launch"]);
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let image = format!("127.0.0.1:{}/team/hello:{commit}", registry.port);
    assert!(
        stdout.contains(&format!("image: {image}@sha256:")),
        "{}",
        out(&o)
    );
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("image: {image}@")))
        .unwrap()
        .to_string();
    assert!(stderr.contains("building"), "{}", out(&o));
    assert!(
        stderr.contains("is on no remote"),
        "the unpushed commit is not warned about:\n{}",
        out(&o)
    );
    let job_line = stdout
        .lines()
        .find(|l| l.starts_with("job: hello-"))
        .unwrap();
    let job = job_line.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        stdout.contains(&format!("] job {job} says hi")),
        "{}",
        out(&o)
    );
    assert!(
        stdout.contains("files: Dockerfile launch.toml main.sh"),
        "{}",
        out(&o)
    );
    assert!(
        stdout.contains(&format!("[{job}-")),
        "lines carry their pod: {}",
        out(&o)
    );
    // The registry has it, under the commit, with this digest and its layers.
    let (code, head) = registry.http("HEAD", &format!("/v2/team/hello/manifests/{commit}"));
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains(&format!("docker-content-digest: {digest}")),
        "{head}"
    );
    let (code, manifest) = registry.http("GET", &format!("/v2/team/hello/manifests/{digest}"));
    assert_eq!(code, 200, "{manifest}");
    let body = &manifest[manifest.find("\r\n\r\n").unwrap() + 4..];
    let m: serde_json::Value = serde_json::from_str(body).unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    for l in layers {
        let (code, _) = registry.http(
            "HEAD",
            &format!("/v2/team/hello/blobs/{}", l["digest"].as_str().unwrap()),
        );
        assert_eq!(code, 200);
    }
    // The Job: pinned to the digest, with its provenance.
    let state = fake.state();
    let j = &state["jobs"][0];
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{image}@{digest}")
    );
    assert_eq!(
        j["metadata"]["annotations"]["daft.io/git-commit"],
        commit.as_str()
    );
    assert_eq!(j["metadata"]["annotations"]["daft.io/git-branch"], "main");
    assert_eq!(j["metadata"]["annotations"]["daft.io/user"], "alice");
    assert_eq!(state["ran_images"], json!([format!("{image}@{digest}")]));
    // Following it, daft watched the launch's pods (woken by their changes, not only by polls).
    assert!(
        state["watches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["labelSelector"] == "daft.io/launch=hello" && w["sent"].as_u64() >= Some(1)),
        "{}",
        state["watches"]
    );

    // 2. Nothing changed: nothing built.
    let o = daft(&["launch", "--allow-unpushed"]);
    assert!(o.status.success(), "{}", out(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("in the registry already") && stderr.contains("nothing to build"),
        "{}",
        out(&o)
    );
    assert!(
        !stderr.contains("building") && !stderr.contains("is on no remote"),
        "{}",
        out(&o)
    );

    // 3. A dirty tree: refused, then built under a tag that carries the diff's hash.
    std::fs::write(
        project.join("main.sh"),
        "echo changed\nexit \"${EXIT:-0}\"\n",
    )
    .unwrap();
    let o = daft(&["launch"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("uncommitted changes"),
        "{}",
        out(&o)
    );
    let o = daft(&["launch", "--allow-dirty", "--allow-unpushed"]);
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("/team/hello:{}-dirty-", &commit[..12])),
        "{}",
        out(&o)
    );
    assert!(stdout.contains("] changed"), "{}", out(&o));

    // 4. A failing job: exit 1, with the Job's own reason.
    git(&project, &["commit", "-qam", "second"]);
    std::fs::write(project.join("launch.toml"), launch("")).unwrap();
    let o = daft(&[
        "launch",
        "--allow-unpushed",
        "--",
        "sh",
        "-c",
        "echo failing; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("] failing"),
        "{}",
        out(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("failed: BackoffLimitExceeded"),
        "{}",
        out(&o)
    );

    // 5. An image that cannot be pulled: said at once, exit 1.
    fake.scenario(json!({"job": "imagepull"}));
    let o = daft(&["launch", "--allow-unpushed"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot pull its image"),
        "{}",
        out(&o)
    );
    // A pod that cannot be scheduled: waited for up to --start-timeout, then the scheduler's words.
    fake.scenario(json!({"job": "unschedulable"}));
    let o = daft(&["launch", "--allow-unpushed", "--start-timeout", "2s"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("did not start within 2s")
            && err.contains("Insufficient nvidia.com/gpu")
            && err.contains("--delete"),
        "{}",
        out(&o)
    );
    fake.scenario(json!({"job": "run"}));

    // 6. With workers: a RayJob, decided from its deployment and job statuses.
    std::fs::write(project.join("launch.toml"), launch("workers = 2\n")).unwrap();
    git(&project, &["commit", "-qam", "rayjob"]);
    fake.scenario(json!({"job_log": "ray says done\n", "rayjob": [["Initializing", "", {}], ["Running", "RUNNING", {}], ["Complete", "SUCCEEDED", {}]]}));
    let o = daft(&["launch", "--allow-unpushed"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("] ray says done"),
        "{}",
        out(&o)
    );
    let rj = &fake.state()["rayjobs"][0];
    assert_eq!(
        rj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"],
        2
    );
    fake.scenario(json!({"rayjob": [["Running", "RUNNING", {}], ["Failed", "RUNNING", {"reason": "SubmissionFailed", "message": "submitter pod exited"}]]}));
    let o = daft(&["launch", "--allow-unpushed"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("deployment failed while Ray's job was RUNNING")
            && err.contains("SubmissionFailed: submitter pod exited"),
        "{}",
        out(&o)
    );
    fake.scenario(json!({"rayjob": [["ValidationFailed", "", {"reason": "ValidationFailed", "message": "spec.entrypoint is required"}]]}));
    let o = daft(&["launch", "--allow-unpushed"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("KubeRay refused the RayJob (ValidationFailed)"),
        "{}",
        out(&o)
    );
    // 7. A sweep: one Job per variant, two at a time, each handed its variant; one fails.
    std::fs::write(
        project.join("launch.toml"),
        launch("") + "\n[sweep]\nmethod = \"grid\"\nmax_parallel = 2\nargs = true\n[sweep.parameters]\nlr = [1, 2, 3]\n",
    )
    .unwrap();
    git(&project, &["commit", "-qam", "sweep"]);
    let o = daft(&[
        "launch",
        "--allow-unpushed",
        "--",
        "sh",
        "-c",
        "echo \"variant $DAFT_VARIANT args $*\"; [ \"$1\" != --lr=2 ]",
        "sh",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for lr in [1, 2, 3] {
        assert!(
            stdout.contains(&format!("] variant {{\"lr\":{lr}}} args --lr={lr}")),
            "{}",
            out(&o)
        );
    }
    let summary: Vec<&str> = stdout.lines().filter(|l| l.contains("lr=")).collect();
    assert!(
        summary
            .iter()
            .any(|l| l.contains("lr=2") && l.contains("failed")),
        "{}",
        out(&o)
    );
    assert_eq!(
        summary.iter().filter(|l| l.contains("succeeded")).count(),
        2,
        "{}",
        out(&o)
    );
    let jobs = fake.state()["jobs"].clone();
    let swept: Vec<&serde_json::Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["metadata"]["labels"]["daft.io/sweep"] == "hello")
        .collect();
    assert_eq!(swept.len(), 3, "{jobs}");

    // 8. A Katib sweep: one Experiment, followed to its last condition (one it does not know
    //    on the way), its best trial printed; a failed one exits 1.
    std::fs::write(
        project.join("launch.toml"),
        launch("") + "\n[sweep]\nkatib = true\nobjective = \"accuracy\"\ngoal = 0.99\nmax_parallel = 2\n[sweep.parameters]\nlr = [0.1, 0.01]\noptimizer = [\"adam\", \"sgd\"]\n",
    )
    .unwrap();
    git(&project, &["commit", "-qam", "katib"]);
    fake.scenario(json!({"katib": [["Created", "ExperimentCreated", "created"], ["Reticulating", "NewInKatib", "a condition daft does not know"], ["Succeeded", "ExperimentGoalReached", "goal reached"]]}));
    let o = daft(&["launch", "--allow-unpushed", "--", "python", "train.py"]);
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("best trial: lr=0.1 optimizer=adam: accuracy=0.93"),
        "{}",
        out(&o)
    );
    assert!(
        stdout.contains("] trial ran: /bin/sh -c python train.py --lr=0.1 --optimizer=adam"),
        "{}",
        out(&o)
    );
    let exp = fake.state()["experiments"][0].clone();
    assert_eq!(
        exp["spec"]["objective"],
        json!({"type": "maximize", "objectiveMetricName": "accuracy", "goal": 0.99})
    );
    assert_eq!(exp["spec"]["algorithm"]["algorithmName"], "grid");
    assert_eq!(exp["spec"]["maxTrialCount"], 4);
    assert_eq!(exp["spec"]["parallelTrialCount"], 2);
    assert_eq!(
        exp["spec"]["parameters"],
        json!([
            {"name": "lr", "parameterType": "categorical", "feasibleSpace": {"list": ["0.1", "0.01"]}},
            {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["adam", "sgd"]}},
        ])
    );
    assert_eq!(
        exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
            ["command"][2],
        "python train.py --lr=${trialParameters.lr} --optimizer=${trialParameters.optimizer}"
    );
    fake.scenario(json!({"katib": [["Running", "ExperimentRunning", "running"], ["Failed", "ExperimentMaxFailedTrialsReached", "3 trials failed"]]}));
    let o = daft(&["launch", "--allow-unpushed", "--", "python", "train.py"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("ExperimentMaxFailedTrialsReached: 3 trials failed"),
        "{}",
        out(&o)
    );
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root, podman, buildah, docker-registry and python3 with aiohttp"]
fn real_podman_build_with_a_run_step_pushed_to_a_real_registry_runs_and_is_not_built_twice() {
    let case = tempfile::tempdir().unwrap();
    let root = case.path();
    let lab = BuildLab::start(root);
    // The project: its Dockerfile has a RUN step (podman runs it, chroot isolation).
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("Dockerfile"),
        "FROM localhost/daft-test-base:1\nCOPY . /app\nRUN echo built-by-a-run-step > /app/stamp\nWORKDIR /app\n",
    )
    .unwrap();
    std::fs::write(
        project.join("launch.toml"),
        format!(
            "name = \"pm\"\ncommand = \"cat /app/stamp\"\n\n[image]\nregistry = \"127.0.0.1:{}/team\"\ndockerfile = \"Dockerfile\"\nbuilder = \"podman\"\n",
            lab.registry.port
        ),
    )
    .unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["add", "."]);
    git(&project, &["commit", "-q", "-m", "first"]);
    let commit = git(&project, &["rev-parse", "HEAD"]);
    let fake = lab.apiserver(root);

    let o = lab.daft(&project, &fake, &["launch", "--allow-unpushed"]);
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("building") && stderr.contains("podman"),
        "{}",
        out(&o)
    );
    // The job ran in the image podman built: the RUN step's file is there.
    assert!(stdout.contains("] built-by-a-run-step"), "{}", out(&o));
    // The registry has the commit's tag, with the digest daft printed and the job refers to.
    let image = format!("127.0.0.1:{}/team/pm:{commit}", lab.registry.port);
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("image: {image}@")))
        .unwrap_or_else(|| panic!("no digest printed: {}", out(&o)))
        .to_string();
    let (code, head) = lab
        .registry
        .http("HEAD", &format!("/v2/team/pm/manifests/{commit}"));
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains(&format!("docker-content-digest: {digest}")),
        "{head}"
    );
    assert_eq!(
        fake.state()["ran_images"],
        json!([format!("{image}@{digest}")])
    );

    // Nothing changed: podman is not run again.
    let o = lab.daft(&project, &fake, &["launch", "--allow-unpushed"]);
    assert!(o.status.success(), "{}", out(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("nothing to build") && !stderr.contains("podman:"),
        "{}",
        out(&o)
    );
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs Ray from PyPI"]
fn launch_local_with_workers_runs_on_a_local_ray_cluster_it_takes_down_after() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("launch.toml"),
        "name = \"local-ray\"\ncommand = \"python job.py\"\nworkers = 1\nenv = { GREETING = \"hi\" }\n",
    )
    .unwrap();
    std::fs::write(
        project.join("job.py"),
        "import os, ray\nray.init()\nprint('ray nodes', len([n for n in ray.nodes() if n['Alive']]), os.environ['GREETING'])\n",
    )
    .unwrap();
    let home = dir.path().join("daft-home");
    let daft = |args: &[&str]| {
        Command::cargo_bin("daft")
            .unwrap()
            .current_dir(&project)
            .env("DAFT_HOME", &home)
            .env("HOME", dir.path())
            .env("UV_CACHE_DIR", common::uv_cache())
            .env("RUST_LOG", "warn")
            .timeout(Duration::from_secs(600))
            .args(args)
            .output()
            .unwrap()
    };
    let o = daft(&["launch", "--local"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ray nodes 2 hi"),
        "{}",
        out(&o)
    );
    // Taken down after: no node of the cluster is left.
    let o = daft(&["list", "--local-only", "-o", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !rows
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["cluster"] == "launch-local-ray" && r["state"] != "terminated"),
        "{rows}"
    );
}

#[test]
fn the_auto_builder_passes_over_a_docker_client_without_an_engine() {
    let dir = tempfile::tempdir().unwrap();
    // A docker client whose engine does not answer (as on machines with the client only).
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("docker"),
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n",
    )
    .unwrap();
    common::run(&format!("chmod 755 {}", bin.join("docker").display()));
    std::fs::write(
        dir.path().join("launch.toml"),
        "name = \"t\"\ncommand = \"true\"\n",
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::cargo_bin("daft")
        .unwrap()
        .current_dir(dir.path())
        .env("PATH", path)
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .args(["doctor", "-f", "launch.toml", "-o", "json"])
        .output()
        .unwrap();
    let checks: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)));
    let builder = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "image builder")
        .cloned()
        .unwrap();
    assert_eq!(builder["ok"], true, "{builder}");
    assert_eq!(builder["detail"], "buildah", "{builder}");
    // (No kubeconfig here: said, with the fix; exit 1.)
    assert_eq!(o.status.code(), Some(1));
}

/// The files of an image as the registry serves it (every layer's tar, listed), read as `login`.
fn image_files(registry: &Registry, repo: &str, tag: &str, login: &str) -> Vec<String> {
    let (code, manifest) =
        registry.http_as("GET", &format!("/v2/{repo}/manifests/{tag}"), Some(login));
    assert_eq!(code, 200, "{manifest}");
    let body = &manifest[manifest.find("\r\n\r\n").unwrap() + 4..];
    let m: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut files = Vec::new();
    for l in m["layers"].as_array().unwrap() {
        let digest = l["digest"].as_str().unwrap();
        let o = StdCommand::new("sh")
            .arg("-c")
            .arg(format!(
                "curl -sS --fail --max-time 60 -u {login} http://127.0.0.1:{}/v2/{repo}/blobs/{digest} | tar -tzf - 2>/dev/null || curl -sS --fail --max-time 60 -u {login} http://127.0.0.1:{}/v2/{repo}/blobs/{digest} | tar -tf -",
                registry.port, registry.port
            ))
            .output()
            .unwrap();
        assert!(o.status.success(), "layer {digest}: {}", out(&o));
        files.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim_start_matches("./").to_string()),
        );
    }
    files
}

/// The image holds exactly the files its tag is computed from: a gitignored `.env` and a
/// `.dockerignore`d directory stay out, a tracked file goes in; an ignored file's change keeps
/// the tag, a tracked one's changes it; and a registry that wants a login (the real
/// docker-registry with htpasswd) is asked with the credentials of the auth file, so an unchanged
/// project is not built again.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs root, buildah, docker-registry, htpasswd and python3 with aiohttp"]
fn real_buildah_image_has_exactly_the_hashed_files_and_a_login_registry_is_not_rebuilt() {
    let case = tempfile::tempdir().unwrap();
    let root = case.path();
    let registry = Registry::start_with_login(root, "alice", "s3cret-pw");
    let mut lab = BuildLab::with_registry(root, registry);
    let auth = root.join("auth.json");
    use base64::Engine;
    std::fs::write(
        &auth,
        json!({ "auths": { format!("127.0.0.1:{}", lab.registry.port): {
            "auth": base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pw")
        }}})
        .to_string(),
    )
    .unwrap();
    // daft and buildah read the same auth file.
    lab.env
        .push(("REGISTRY_AUTH_FILE", auth.display().to_string()));

    let project = root.join("project");
    std::fs::create_dir_all(project.join("data")).unwrap();
    std::fs::write(
        project.join("Dockerfile"),
        "FROM localhost/daft-test-base:1\nCOPY . /app\nWORKDIR /app\n",
    )
    .unwrap();
    std::fs::write(project.join("main.sh"), "echo tracked-ran\n").unwrap();
    std::fs::write(project.join(".gitignore"), ".env\n").unwrap();
    std::fs::write(project.join(".env"), "API_TOKEN=do-not-ship\n").unwrap();
    std::fs::write(project.join(".dockerignore"), "data\n").unwrap();
    std::fs::write(project.join("data/big.bin"), "not for the image\n").unwrap();
    std::fs::write(
        project.join("launch.toml"),
        format!(
            "name = \"ctx\"\ncommand = \"sh /app/main.sh\"\n\n[image]\nregistry = \"127.0.0.1:{}/team\"\ndockerfile = \"Dockerfile\"\nbuilder = \"buildah\"\n",
            lab.registry.port
        ),
    )
    .unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["add", "."]);
    git(&project, &["commit", "-q", "-m", "first"]);
    let commit = git(&project, &["rev-parse", "HEAD"]);
    let fake = lab.apiserver(root);
    let daft = |args: &[&str]| lab.daft(&project, &fake, args);
    let image_of = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("image: "))
            .map(|l| l.split('@').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no image line: {}", out(o)))
    };

    // 1. Built and pushed (the push itself needs the login: buildah reads the auth file).
    let o = daft(&["launch", "--allow-unpushed"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("building"),
        "{}",
        out(&o)
    );
    let first = image_of(&o);
    assert!(first.ends_with(&format!(":{commit}")), "{first}");
    let files = image_files(&lab.registry, "team/ctx", &commit, "alice:s3cret-pw");
    assert!(files.iter().any(|f| f == "app/main.sh"), "{files:?}");
    assert!(files.iter().any(|f| f == "app/Dockerfile"), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.contains(".env") || f.contains("data/big.bin")),
        "an ignored file is in the pushed image: {files:?}"
    );
    // Without the login the registry tells nothing: it really wants one.
    let (code, _) = lab
        .registry
        .http("HEAD", &format!("/v2/team/ctx/manifests/{commit}"));
    assert_eq!(code, 401);

    // 2. Unchanged: the registry is asked with the auth file's login and nothing is built.
    let o = daft(&["launch", "--allow-unpushed"]);
    assert!(o.status.success(), "{}", out(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("in the registry already") && !stderr.contains("building"),
        "{}",
        out(&o)
    );

    // 3. An ignored file changes: same tag, nothing built.
    std::fs::write(project.join(".env"), "API_TOKEN=another\n").unwrap();
    let o = daft(&["launch", "--allow-unpushed"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(image_of(&o), first, "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in the registry already"),
        "{}",
        out(&o)
    );

    // 4. A tracked file changes: another tag, built, and the image has the change.
    std::fs::write(project.join("main.sh"), "echo tracked-changed\n").unwrap();
    let o = daft(&["launch", "--allow-unpushed", "--allow-dirty"]);
    assert!(o.status.success(), "{}", out(&o));
    let second = image_of(&o);
    assert_ne!(second, first);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tracked-changed"),
        "{}",
        out(&o)
    );

    // 5. A pod's log stream cut short while the pod runs is opened again: every line once.
    fake.scenario(json!({"cut_log_streams": 1}));
    let o = daft(&[
        "launch",
        "--allow-unpushed",
        "--allow-dirty",
        "--",
        "sh",
        "-c",
        "echo line-one; sleep 4; echo line-two; sleep 2; echo line-three",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for l in ["line-one", "line-two", "line-three"] {
        assert_eq!(
            stdout.matches(&format!("] {l}")).count(),
            1,
            "{l}: {}",
            out(&o)
        );
    }
    assert_eq!(
        fake.state()["cut_streams"].as_array().map(Vec::len),
        Some(1),
        "the fake did not cut the stream: the test shows nothing"
    );

    // 6. Ctrl-C while following a job: the Job is deleted (as `daft submit` cancels its job) and
    // daft ends within a bound, status 130.
    let mut child = lab
        .command(&project, &fake)
        .args([
            "launch",
            "--allow-unpushed",
            "--allow-dirty",
            "--",
            "sh",
            "-c",
            "echo started; sleep 617",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = common::lines_of(child.stdout.take().unwrap());
    let mut job = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the job did not start within 180 s");
        if let Some(j) = line.strip_prefix("job: ") {
            job = j.split_whitespace().next().map(str::to_string);
        }
        if line.ends_with("] started") {
            break;
        }
    }
    let job = job.expect("daft named the job");
    let status = common::interrupt_and_wait(&mut child, Duration::from_secs(60), "launch");
    let said = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&said.stderr);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains(&format!("stopping Job {job} (Ctrl-C)")),
        "{err}"
    );
    let state = fake.state();
    assert!(
        !state["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["metadata"]["name"] == job.as_str()),
        "the interrupted Job {job} is still there: {}",
        state["jobs"]
    );
    assert_gone("sleep 617");

    // 7. Ctrl-C during a [sweep]: its running Jobs are deleted, no more start (the same
    // scheduler as `daft submit --sweep`), status 130.
    let before = fake.state()["jobs"].as_array().unwrap().len();
    std::fs::write(
        project.join("launch.toml"),
        format!(
            "name = \"ctx\"\ncommand = \"sleep 618\"\n\n[image]\nregistry = \"127.0.0.1:{}/team\"\ndockerfile = \"Dockerfile\"\nbuilder = \"buildah\"\n\n[sweep]\nmax_parallel = 2\n[sweep.parameters]\nn = [1, 2, 3]\n",
            lab.registry.port
        ),
    )
    .unwrap();
    let mut child = lab
        .command(&project, &fake)
        .args(["launch", "--allow-unpushed", "--allow-dirty"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = common::lines_of(child.stderr.take().unwrap());
    let mut said = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while said
        .iter()
        .filter(|l: &&String| l.contains(" started ("))
        .count()
        < 2
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        said.push(
            rx.recv_timeout(left)
                .unwrap_or_else(|_| panic!("two sweep jobs did not start: {said:?}")),
        );
    }
    // (Both running: their pods are up.)
    std::thread::sleep(Duration::from_secs(2));
    let status = common::interrupt_and_wait(&mut child, Duration::from_secs(90), "the sweep");
    let rest: Vec<String> = rx.try_iter().collect();
    said.extend(rest);
    assert_eq!(status.code(), Some(130), "{said:?}");
    assert!(
        said.iter()
            .any(|l| l.contains("stopping the sweep (Ctrl-C)")),
        "{said:?}"
    );
    assert!(
        !said
            .iter()
            .any(|l| l.starts_with("[3/3]") && l.contains(" started (")),
        "a job started after Ctrl-C: {said:?}"
    );
    let jobs = fake.state()["jobs"].as_array().unwrap().clone();
    assert_eq!(
        jobs.len(),
        before,
        "the sweep's Jobs were not deleted (or a third one started): {jobs:?}"
    );
    assert_gone("sleep 618");
}

/// No process running `what` is left within 15 s (a deleted pod's container stops).
fn assert_gone(what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !common::procs_with(what).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what:?} still runs after its pod was deleted: {:?}",
            common::procs_with(what)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A builder whose output is not UTF-8 (and more than a pipe holds) does not hang `launch`: its
/// output is read to the end, the build's failure reported with its last lines.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs docker-registry"]
fn a_builder_writing_invalid_utf8_does_not_hang_launch() {
    let case = tempfile::tempdir().unwrap();
    let root = case.path();
    let registry = Registry::start(root);
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A stand-in buildah: a line that is not UTF-8, then 256 KiB more (past any pipe's buffer).
    std::fs::write(
        bin.join("buildah"),
        "#!/bin/sh\nprintf 'bad \\377\\376 bytes\\n'\nhead -c 262144 /dev/zero | tr '\\0' 'x' | fold -w 100\necho\necho 'the last line'\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("buildah"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("main.sh"), "echo hi\n").unwrap();
    std::fs::write(
        project.join("launch.toml"),
        format!(
            "name = \"utf\"\ncommand = \"sh main.sh\"\n\n[image]\nregistry = \"127.0.0.1:{}/team\"\nbuilder = \"buildah\"\n",
            registry.port
        ),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let o = Command::cargo_bin("daft")
        .unwrap()
        .current_dir(&project)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("HOME", root)
        .env("RUST_LOG", "warn")
        .timeout(Duration::from_secs(120))
        .args(["launch"])
        .output()
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "launch took {:?}",
        t.elapsed()
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("bad \u{fffd}\u{fffd} bytes"), "{}", out(&o));
    assert!(
        stderr.contains("buildah bud failed") && stderr.contains("the last line"),
        "{}",
        out(&o)
    );
}
