//! A real Kubernetes control plane for the `real_k8s` tests (`tests/k8s/control_plane.py` over
//! the binaries `tests/k8s/build.sh` builds once per version): etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok and the KubeRay operator on free loopback
//! ports. Started, waited for (every component healthy), and stopped by PID (the supervisor
//! stops its components; they die with it in any case).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RealK8s {
    child: Child,
    pub dir: PathBuf,
    /// An admin's kubeconfig (group system:masters), namespace `default`.
    pub kubeconfig: PathBuf,
    /// A user with no roles (group `daft-testers`) until a test binds it one.
    pub narrow_kubeconfig: PathBuf,
    pub server: String,
    admin_token: String,
    ca: PathBuf,
    /// The HOME of kwok's exec: a command run "in a pod" runs here.
    pub pod_home: PathBuf,
}

/// The control plane's binaries, built (or found) by tests/k8s/build.sh.
pub fn cache() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new("bash")
        .arg(root.join("tests/k8s/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs tests/k8s/build.sh");
    assert!(
        o.status.success(),
        "tests/k8s/build.sh failed (it needs Go 1.26+ and the Go module proxy): {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    PathBuf::from(out.lines().last().unwrap_or_default().trim())
}

impl RealK8s {
    pub fn start(dir: &Path) -> RealK8s {
        Self::start_with(dir, serde_json::json!({}))
    }

    /// With `extra`: `{"exec_env": {..}, "ports": {"8265": LOCAL_PORT}}` (see the script).
    pub fn start_with(dir: &Path, extra: serde_json::Value) -> RealK8s {
        let cache = cache();
        std::fs::create_dir_all(dir).unwrap();
        let extra_path = dir.join("extra.json");
        std::fs::write(&extra_path, extra.to_string()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s/control_plane.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&cache)
            .arg(dir)
            .arg(&extra_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("supervisor.log")).unwrap())
            .spawn()
            .expect("python3 runs tests/k8s/control_plane.py");
        let stdout = child.stdout.take().unwrap();
        let lines = super::lines_of(stdout);
        let limit = Duration::from_secs(240);
        let t = Instant::now();
        loop {
            match lines.recv_timeout(Duration::from_millis(500)) {
                Ok(l) if l.trim() == "ready" => break,
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if t.elapsed() < limit => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the real control plane did not get ready within {limit:?} ({e}): {}\n{}",
                        std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default(),
                        logs_tail(dir)
                    );
                }
            }
        }
        eprintln!("real_k8s: control plane ready in {:.1?}", t.elapsed());
        let ready: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("ready.json")).unwrap())
                .unwrap();
        let s = |k: &str| ready[k].as_str().unwrap().to_string();
        RealK8s {
            child,
            dir: dir.to_path_buf(),
            kubeconfig: PathBuf::from(s("kubeconfig")),
            narrow_kubeconfig: PathBuf::from(s("narrow_kubeconfig")),
            server: s("server"),
            admin_token: s("admin_token"),
            ca: PathBuf::from(s("ca")),
            pod_home: PathBuf::from(s("pod_home")),
        }
    }

    /// An API request as the admin (curl, the test CA); the answer's JSON.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        self.request(method, path, body, "application/json")
    }

    /// A JSON merge patch of `path`, as another controller (field manager `manager`) makes it.
    pub fn merge_patch(
        &self,
        path: &str,
        manager: &str,
        body: &serde_json::Value,
    ) -> serde_json::Value {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.request(
            "PATCH",
            &format!("{path}{sep}fieldManager={manager}"),
            Some(body),
            "application/merge-patch+json",
        )
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        content_type: &str,
    ) -> serde_json::Value {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "20", "-X", method])
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.admin_token))
            .arg(format!("{}{path}", self.server));
        if let Some(b) = body {
            c.arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                .arg("--data-binary")
                .arg(b.to_string());
        }
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
    }

    /// Server-side apply `obj` to `path` as a dry run (nothing is stored), with strict field
    /// validation: whether the API server accepted it, and its answer.
    pub fn dry_run_apply(&self, path: &str, obj: &serde_json::Value) -> (bool, serde_json::Value) {
        let o = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-X",
                "PATCH",
                "-w",
                "\n%{http_code}",
            ])
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.admin_token))
            .args([
                "-H",
                "Content-Type: application/apply-patch+yaml",
                "--data-binary",
            ])
            .arg(obj.to_string())
            .arg(format!(
                "{}{path}?dryRun=All&fieldManager=daft-tests&fieldValidation=Strict&force=true",
                self.server
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        let v = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string()));
        (code.trim() == "200" || code.trim() == "201", v)
    }

    /// The items of a list.
    pub fn items(&self, path: &str) -> Vec<serde_json::Value> {
        self.api("GET", path, None)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Wait up to `limit` for `f` to hold, saying what it waits for.
    pub fn wait(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < limit,
                "{what}: not within {limit:?}\n{}",
                logs_tail(&self.dir)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The last lines of each component's log.
fn logs_tail(dir: &Path) -> String {
    let mut s = String::new();
    for name in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "ray-operator",
    ] {
        if let Ok(f) = std::fs::File::open(dir.join(format!("{name}.log"))) {
            let lines: Vec<String> = std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .collect();
            s.push_str(&format!("--- {name}.log (last 15 lines)\n"));
            for l in lines.iter().rev().take(15).rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

impl Drop for RealK8s {
    fn drop(&mut self) {
        // SIGTERM: the supervisor stops its components (each in its own group) and exits.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
