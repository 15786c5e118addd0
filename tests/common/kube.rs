//! The Kubernetes API server fake (`tests/support/fake_apiserver.py`): HTTPS on a free loopback
//! port with a test CA, a bearer token, and a kubeconfig pointing at it. Started, waited for
//! and stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "fake-apiserver-token-0123456789";

pub struct FakeApiServer {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// A kubeconfig whose current context `fake` (namespace `ray-test`) uses the token.
    pub kubeconfig: PathBuf,
}

impl FakeApiServer {
    /// Start the fake with `conf` (see the script's docstring) in `dir`.
    pub fn start(dir: &Path, conf: serde_json::Value) -> FakeApiServer {
        std::fs::create_dir_all(dir).unwrap();
        super::run(&format!(
            "cd {} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=fake-apiserver-ca 2>/dev/null \
             && openssl req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null \
             && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf \
             && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 -extfile ext.cnf 2>/dev/null",
            dir.display()
        ));
        let conf_path = dir.join("fake.json");
        std::fs::write(&conf_path, conf.to_string()).unwrap();
        let port = super::free_port("127.0.0.1");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_apiserver.py");
        let log = std::fs::File::create(dir.join("fake.log")).unwrap();
        let child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--token", TOKEN])
            .arg("--cert")
            .arg(dir.join("cert.pem"))
            .arg("--key")
            .arg(dir.join("key.pem"))
            .arg("--config")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3 runs the fake API server (aiohttp: .ci/setup installs it)");
        let ca = base64(&std::fs::read(dir.join("ca.pem")).unwrap());
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\n\
                 users:\n- name: alice\n  user:\n    token: {TOKEN}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: alice\n    namespace: ray-test\ncurrent-context: fake\n"
            ),
        )
        .unwrap();
        let f = FakeApiServer {
            child,
            port,
            dir: dir.to_path_buf(),
            kubeconfig,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the fake API server did not listen: {}",
                std::fs::read_to_string(dir.join("fake.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        f
    }

    fn curl(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let mut c = Command::new("curl");
        c.args(["-sS", "--fail-with-body", "--max-time", "20", "-X", method])
            .arg("--cacert")
            .arg(self.dir.join("ca.pem"))
            .arg(format!("https://127.0.0.1:{}{path}", self.port));
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
        }
        let o = c.output().expect("curl runs");
        assert!(
            o.status.success(),
            "{method} {path}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Script the pods' fate: {"head": "ready" | "unschedulable" | "imagepull" | "crashloop" |
    /// "failedmount", "workers": …}.
    pub fn scenario(&self, v: serde_json::Value) {
        self.curl("POST", "/fake/scenario", Some(&v));
    }

    /// Change the fake's configuration (forbid, no_crd, exec_env, ports).
    pub fn config(&self, v: serde_json::Value) {
        self.curl("POST", "/fake/config", Some(&v));
    }

    /// Everything the fake holds and saw.
    pub fn state(&self) -> serde_json::Value {
        self.curl("GET", "/fake/state", None)
    }

    /// The head pod goes; the stand-in operator makes a new one.
    pub fn kill_head(&self) {
        self.curl("POST", "/fake/kill-head", None);
    }

    /// Apply an object as another field manager would (a cluster daft did not create).
    pub fn apply_as(&self, manager: &str, ns: &str, obj: &serde_json::Value) {
        let name = obj["metadata"]["name"].as_str().unwrap();
        let o = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--max-time", "20", "-X", "PATCH"])
            .arg("--cacert")
            .arg(self.dir.join("ca.pem"))
            .args([
                "-H",
                &format!("Authorization: Bearer {TOKEN}"),
                "-H",
                "Content-Type: application/apply-patch+yaml",
                "-d",
                &obj.to_string(),
            ])
            .arg(format!(
                "https://127.0.0.1:{}/apis/ray.io/v1/namespaces/{ns}/rayclusters/{name}?fieldManager={manager}",
                self.port
            ))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }

    /// Pods of `cluster` in the fake.
    pub fn pods(&self, cluster: &str) -> Vec<serde_json::Value> {
        self.state()["pods"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["labels"]["ray.io/cluster"] == cluster)
            .cloned()
            .collect()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
