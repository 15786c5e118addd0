//! Test fixtures: a real OpenSSH `sshd` on a loopback address, started on a free port with its own
//! config, host key and authorized_keys, waited for until it answers, and stopped by PID.
#![allow(dead_code)]

pub mod ec2sim;
pub mod kube;
pub mod real_k8s;
pub mod slurm;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `len` pseudo-random bytes (xorshift64 from `seed`): incompressible test data, same every run.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x = seed;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}

/// uv's cache as this machine has it (tests that move HOME keep using it).
pub fn uv_cache() -> String {
    std::env::var("UV_CACHE_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/uv",
            std::env::var("HOME").unwrap_or("/root".into())
        )
    })
}

pub fn run(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET path` from a Ray dashboard at 127.0.0.1:`port` (a tunnel), with the cluster's token if
/// given; the whole answer.
pub fn dashboard_get(port: u16, path: &str, token: Option<&str>) -> std::io::Result<String> {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n").as_bytes())?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    Ok(r)
}

/// `GET /api/version` from a Ray dashboard at 127.0.0.1:`port` (a tunnel), retried until it
/// answers with Ray's version or a minute has passed; the whole answer.
pub fn dashboard_version(port: u16, token: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = dashboard_get(port, "/api/version", token);
        match got {
            Ok(r) if r.starts_with("HTTP/1.") && r.contains("ray_version") => return r,
            _ if Instant::now() > deadline => {
                panic!("the dashboard did not answer through the tunnel: {got:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// Start moto's EC2 server on a free loopback port (with `env`), wait until it answers.
pub fn start_moto(env: &[(&str, &str)]) -> (Child, u16) {
    let port = free_port("127.0.0.1");
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server runs (pip install 'moto[server]': .ci/setup does)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

/// A port nobody listens on right now, on `addr`.
pub fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn keygen(path: &Path, kind: &str) {
    let _ = std::fs::remove_file(path);
    let bits = if kind == "rsa" { "-b 3072" } else { "" };
    run(&format!(
        "ssh-keygen -q -t {kind} {bits} -N '' -C daft-test -f {}",
        path.display()
    ));
}

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub port: u16,
    pub user: String,
    /// ed25519 key in authorized_keys.
    pub key: PathBuf,
    /// RSA key in authorized_keys.
    pub rsa_key: PathBuf,
    /// $HOME of sessions (set with SetEnv).
    pub home: PathBuf,
    child: Option<Child>,
    extra_config: String,
    uv_cache: String,
    path: String,
    /// Runs in this network namespace (a simulated machine), on port 22 there.
    netns: Option<String>,
    /// More `NAME=VALUE` for the sessions' SetEnv.
    set_env: String,
}

impl Sshd {
    pub fn start(addr: &str) -> Sshd {
        Self::start_with(addr, "")
    }

    pub fn start_with(addr: &str, extra: &str) -> Sshd {
        Self::build(addr, extra, None, None)
    }

    /// As `start_with`, its sessions' $HOME being `home` (a home shared with other machines).
    pub fn start_with_home(addr: &str, extra: &str, home: &Path) -> Sshd {
        Self::build(addr, extra, None, Some(home.to_path_buf()))
    }

    /// An sshd on port 22 of `addr` inside network namespace `netns` (a node of a simulated
    /// cluster), its sessions' $HOME being `home` (shared by the cluster's nodes).
    pub fn start_in_netns(addr: &str, netns: &str, home: &Path) -> Sshd {
        Self::build(addr, "", Some(netns.to_string()), Some(home.to_path_buf()))
    }

    fn build(addr: &str, extra: &str, netns: Option<String>, home: Option<PathBuf>) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_ed25519"), "ed25519");
        keygen(&d.join("id_ed25519"), "ed25519");
        keygen(&d.join("id_rsa"), "rsa");
        let auth = format!(
            "{}{}",
            std::fs::read_to_string(d.join("id_ed25519.pub")).unwrap(),
            std::fs::read_to_string(d.join("id_rsa.pub")).unwrap()
        );
        std::fs::write(d.join("authorized_keys"), auth).unwrap();
        std::fs::create_dir_all(d.join("home")).unwrap();
        let user = run("id -un").trim().to_string();
        let uv_cache = std::env::var("UV_CACHE_DIR").unwrap_or_else(|_| {
            format!(
                "{}/.cache/uv",
                std::env::var("HOME").unwrap_or("/root".into())
            )
        });
        let mut path = std::env::var("PATH").unwrap_or_default();
        // A PATH for the host's sessions (sshd takes the first SetEnv of a name, so it goes here).
        let mut extra_lines = Vec::new();
        let mut set_env = String::new();
        for line in extra.lines() {
            match line.strip_prefix("SetEnv PATH=") {
                Some(p) => path = p.to_string(),
                // Other variables join the one SetEnv line.
                None => match line.strip_prefix("SetEnv ") {
                    Some(vars) => {
                        set_env.push(' ');
                        set_env.push_str(vars);
                    }
                    None => extra_lines.push(line),
                },
            }
        }
        let extra = extra_lines.join("\n");
        let key = d.join("id_ed25519");
        let rsa_key = d.join("id_rsa");
        let home = home.unwrap_or_else(|| d.join("home"));
        let mut s = Sshd {
            netns,
            dir,
            addr: addr.to_string(),
            port: 0,
            user,
            key,
            rsa_key,
            home,
            child: None,
            extra_config: extra.to_string(),
            set_env,
            uv_cache,
            path,
        };
        s.launch();
        s
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        format!(
            "ListenAddress {addr}:{port}\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n\
             StrictModes no\nPermitRootLogin yes\nPidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\n\
             AllowTcpForwarding yes\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n\
             SetEnv HOME={home} UV_CACHE_DIR={uv} PATH={path}{net}{set_env}\n{extra}\n",
            home = self.home.display(),
            set_env = self.set_env,
            addr = self.addr,
            port = self.port,
            uv = self.uv_cache,
            path = self.path,
            extra = self.extra_config,
            net = network_env(),
        )
    }

    /// Start (or restart) sshd on a free port (or the same port), and wait until it answers.
    fn launch(&mut self) {
        std::fs::create_dir_all("/run/sshd").unwrap();
        if self.port == 0 {
            // (In a namespace of its own every port is free.)
            self.port = if self.netns.is_some() {
                22
            } else {
                free_port(&self.addr)
            };
        }
        let cfg = self.dir.path().join("sshd_config");
        std::fs::write(&cfg, self.config()).unwrap();
        let mut cmd = match &self.netns {
            None => Command::new(sshd_path()),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, sshd_path()]);
                c
            }
        };
        let child = cmd
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts (install openssh-server: .ci/setup does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut s) = TcpStream::connect((self.addr.as_str(), self.port)) {
                let mut buf = [0u8; 8];
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                if s.read(&mut buf)
                    .map(|n| buf[..n].starts_with(b"SSH-"))
                    .unwrap_or(false)
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not answer on {}:{}",
                self.addr,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new host key, same port (as when a machine is rebuilt).
    pub fn restart_with_new_host_key(&mut self) {
        self.stop();
        keygen(&self.dir.path().join("host_ed25519"), "ed25519");
        self.launch();
    }

    /// Start sshd again on the same port (after `stop`), same host key.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// Cut every connection this sshd serves from the server side (kill its per-connection
    /// children, as a dropped network or a restarted sshd would); the listener stays.
    /// Returns how many were cut.
    pub fn cut_connections(&self) -> usize {
        let Some(c) = &self.child else { return 0 };
        let pid = c.id();
        let mut cut = 0;
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &e.file_name().to_string_lossy()])
                    .status();
                cut += 1;
            }
        }
        cut
    }

    /// Kill sshd and every session it serves (by PID: the listener and its children).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("pkill -KILL -P {pid}; kill -KILL {pid}"))
                .status();
            let _ = c.wait();
        }
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }
}

/// Two SSH hosts (127.0.0.2 and 127.0.0.3) that both take the first one's key, as a user's
/// hosts take theirs.
pub fn two_ssh_hosts() -> (Sshd, Sshd) {
    let a = Sshd::start("127.0.0.2");
    let b = Sshd::start("127.0.0.3");
    let pubkey = std::fs::read_to_string(a.key.with_extension("pub")).unwrap();
    let auth = b.dir.path().join("authorized_keys");
    let mut text = std::fs::read_to_string(&auth).unwrap();
    text.push_str(&pubkey);
    std::fs::write(auth, text).unwrap();
    (a, b)
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sshd_path() -> &'static str {
    if Path::new("/usr/sbin/sshd").exists() {
        "/usr/sbin/sshd"
    } else {
        "sshd"
    }
}

/// The network settings of this machine (CA bundle, proxies, package indexes) for the SSH host's
/// sessions: the "remote" hosts are this machine and must reach PyPI the same way it does.
fn network_env() -> String {
    let mut s = String::new();
    for (k, v) in std::env::vars() {
        let wanted = matches!(
            k.as_str(),
            "SSL_CERT_FILE"
                | "SSL_CERT_DIR"
                | "REQUESTS_CA_BUNDLE"
                | "CURL_CA_BUNDLE"
                | "HTTP_PROXY"
                | "HTTPS_PROXY"
                | "NO_PROXY"
                | "http_proxy"
                | "https_proxy"
                | "no_proxy"
        ) || k.starts_with("PIP_")
            || (k.starts_with("UV_") && k != "UV_CACHE_DIR");
        if wanted && !v.is_empty() && !v.contains(char::is_whitespace) && !v.contains('"') {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}

/// One job of a sweep as the tests' sweep job (`job.py`) leaves it: what it printed on stdout
/// (`{"variant": …, "argv": …, …}`), its directory, and when it ran (from `logs/times`).
pub struct SweepJob {
    pub said: serde_json::Value,
    pub dir: PathBuf,
    pub span: (f64, f64),
}

/// The jobs `<name>-1..=n` of a grid sweep over `lr` and `batch` with `args = true`, from
/// `daft jobs -o json`: each printed the variant of its record and got it as `--key=value`
/// arguments, and the variants are all different.
pub fn sweep_jobs(jobs: &serde_json::Value, name: &str, n: usize) -> Vec<SweepJob> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for i in 1..=n {
        let j = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == format!("{name}-{i}"))
            .unwrap_or_else(|| panic!("no job {name}-{i}: {jobs}"));
        let dir = PathBuf::from(j["dir"].as_str().unwrap());
        let said: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(dir.join("stdout.log"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        assert_eq!(said["variant"], j["variant"], "{said}");
        let v = &said["variant"];
        assert_eq!(
            said["argv"],
            serde_json::json!([
                format!("--batch={}", v["batch"]),
                format!("--lr={}", v["lr"])
            ])
        );
        seen.insert(v.to_string());
        let times = std::fs::read_to_string(dir.join("logs/times")).unwrap();
        let (a, b) = times.split_once(' ').unwrap();
        out.push(SweepJob {
            said,
            dir,
            span: (a.parse().unwrap(), b.parse().unwrap()),
        });
    }
    assert_eq!(seen.len(), n, "{seen:?}");
    out
}

/// The most jobs that ran at once (at any job's start).
pub fn most_at_once(jobs: &[SweepJob]) -> usize {
    jobs.iter()
        .map(|s| {
            jobs.iter()
                .filter(|o| o.span.0 <= s.span.0 && s.span.0 < o.span.1)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A finished command's status and both outputs, for assertion messages.
pub fn out(o: &std::process::Output) -> String {
    format!(
        "--- status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Wait until something listens on 127.0.0.1:`port` (20 s at most; `what` names it).
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose command line mentions `needle` ("PID command line" each).
pub fn procs_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && !cmd.contains("procs_with") {
                found.push(format!("{} {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Ray's own Jobs API against a daft cluster's dashboard at `url` (with the cluster's token):
/// `ray job submit --address URL -- python -c 'print(6 * 7)'` succeeds and prints 42.
pub fn ray_job_submit(url: &str, ray: &std::path::Path, token: &str, home: &std::path::Path) {
    let t = std::time::Instant::now();
    let o = std::process::Command::new("timeout")
        .arg("180")
        .arg(ray)
        .args([
            "job",
            "submit",
            "--address",
            url,
            "--",
            "python",
            "-c",
            "print(6 * 7)",
        ])
        .env("RAY_AUTH_MODE", "token")
        .env("RAY_AUTH_TOKEN", token)
        .env_remove("RAY_AUTH_TOKEN_PATH")
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .env("HOME", home)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && text.lines().any(|l| l.trim() == "42"),
        "`ray job submit --address {url}` failed after {:?}: {text}",
        t.elapsed()
    );
    assert!(text.contains("succeeded"), "{text}");
}

/// Ctrl-C for a child process (SIGINT, as a terminal sends it), then its end within `bound`;
/// past it the child is killed and the test fails, naming `what`.
pub fn interrupt_and_wait(
    child: &mut std::process::Child,
    bound: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let t = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > bound {
            let _ = child.kill();
            panic!("{what} did not end within {bound:?} of Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The lines of a child's pipe as they come, on a channel (read by a thread of their own).
pub fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs a command when dropped (a `daft down` that must happen however the test ends).
pub struct DownOnDrop(pub std::process::Command);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = self.0.output();
    }
}

/// Kills a child process when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Ray head, started by daft's local provider in `dir` (its daft home `dir/daft-home`,
/// its config `dir/head.toml`), standing in for a head pod's Ray; taken down when dropped.
pub struct PodRay {
    pub ray_port: u16,
    pub dash_port: u16,
    pub daft_home: PathBuf,
    /// The cluster's Ray token.
    pub token: String,
    /// The environment's `bin` (its Python has Ray).
    pub venv_bin: PathBuf,
    _down: DownOnDrop,
}

impl PodRay {
    pub fn start(dir: &Path) -> PodRay {
        let (ray_port, dash_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        std::fs::write(
            dir.join("head.toml"),
            format!(
                "[setup]\nname = \"k8s-pod-ray\"\nprovider = \"local\"\nnumber_of_workers = 0\n\n[setup.local]\nray_port = {ray_port}\ndashboard_port = {dash_port}\n"
            ),
        )
        .unwrap();
        let daft_home = dir.join("daft-home");
        let daft = || {
            let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("daft"));
            c.current_dir(dir)
                .env("DAFT_HOME", &daft_home)
                .env("HOME", dir);
            c
        };
        let mut down = daft();
        down.args(["down", "-c", "head.toml", "--yes"]);
        let down = DownOnDrop(down);
        let o = assert_cmd::Command::from_std(daft())
            .env("UV_CACHE_DIR", uv_cache())
            .env("RUST_LOG", "warn")
            .timeout(Duration::from_secs(600))
            .args(["up", "-c", "head.toml"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", out(&o));
        let cl = daft_home.join("clusters/k8s-pod-ray");
        let token = std::fs::read_to_string(cl.join("ray-token")).unwrap();
        PodRay {
            ray_port,
            dash_port,
            token: token.trim().to_string(),
            venv_bin: cl.join("venv/bin"),
            daft_home,
            _down: down,
        }
    }

    /// What KubeRay gives the head container: RAY_ADDRESS and, with token authentication, the
    /// token; and a PATH with the head's Python first.
    pub fn pod_env(&self) -> serde_json::Value {
        serde_json::json!({
            "PATH": format!("{}:/usr/local/bin:/usr/bin:/bin", self.venv_bin.display()),
            "RAY_ADDRESS": format!("127.0.0.1:{}", self.ray_port),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
        })
    }
}

/// An instance profile (and its role, of the same name) in moto's IAM at `endpoint` (test
/// support: through boto3, which moto_server brings); its ARN.
pub fn create_instance_profile(endpoint: &str, name: &str) -> String {
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, boto3\n\
             iam = boto3.client('iam', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                                aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             iam.create_role(RoleName=sys.argv[2], AssumeRolePolicyDocument='{}')\n\
             p = iam.create_instance_profile(InstanceProfileName=sys.argv[2])\n\
             iam.add_role_to_instance_profile(InstanceProfileName=sys.argv[2], RoleName=sys.argv[2])\n\
             print(p['InstanceProfile']['Arn'])",
            endpoint,
            name,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// An Amazon Linux 2023 x86_64 image moto knows (it has none with the NVIDIA driver: a test's
/// GPU group names this one as its own image).
pub async fn al2023_image(ec2: &aws_sdk_ec2::Client) -> String {
    ec2.describe_images()
        .owners("amazon")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("name")
                .values("al2023-ami-2023.*-x86_64")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .images()
        .first()
        .and_then(|i| i.image_id())
        .unwrap()
        .to_string()
}
