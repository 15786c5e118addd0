//! A real single-node Slurm for tests: Debian's `munged`, `slurmctld` and `slurmd`, started here
//! with a generated `slurm.conf` on free loopback ports, state and spool directories in a temp
//! dir, and stopped by PID when dropped. Clients (`sbatch`, `squeue`, ...) find it through
//! `SLURM_CONF` (see [`Slurm::env`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Slurm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub node: String,
    /// (name, address) of every node.
    pub nodes: Vec<(String, String)>,
    /// The nodes' network namespaces and their bridge, when they have them.
    pub net: Option<Net>,
    pub partition: String,
    children: Vec<Child>,
    munged_pid: Option<u32>,
}

/// Whether Debian's Slurm and MUNGE are installed (`.ci/setup` installs them).
pub fn available() -> bool {
    ["slurmctld", "slurmd", "munged", "sbatch", "squeue"]
        .iter()
        .all(|b| which(b).is_some())
}

fn which(bin: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

impl Slurm {
    /// Start munged, slurmctld and one slurmd with `cpus` CPUs; wait until the node is idle.
    pub fn start(cpus: u32) -> Slurm {
        Self::start_at(cpus, "127.0.0.1")
    }

    /// As `start`, the node at `node_addr` (a loopback address other tests' sshd can serve).
    pub fn start_at(cpus: u32, node_addr: &str) -> Slurm {
        Self::start_nodes(
            cpus,
            &[("daftnode".to_string(), node_addr.to_string(), None)],
            "localhost(127.0.0.1)",
        )
    }

    /// `n` nodes, each a network namespace of its own (its own address on a bridge this
    /// machine is on, its own ports) sharing this machine's files; slurmctld on the bridge.
    pub fn start_cluster(cpus: u32, n: usize) -> Slurm {
        let net = Net::make(n);
        let nodes: Vec<(String, String, Option<String>)> = (0..n)
            .map(|i| {
                (
                    format!("node{}", i + 1),
                    net.addr(i + 1),
                    Some(net.namespaces[i].clone()),
                )
            })
            .collect();
        let ctl = format!("{}({})", hostname(), net.addr(0));
        let mut s = Self::start_nodes(cpus, &nodes, &ctl);
        s.net = Some(net);
        s
    }

    fn start_nodes(cpus: u32, nodes: &[(String, String, Option<String>)], ctl: &str) -> Slurm {
        assert!(
            available(),
            "Slurm is not installed (apt-get install slurm-wlm munge: .ci/setup does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        for sub in ["state", "spool", "log", "munge"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        for (name, _, _) in nodes {
            std::fs::create_dir_all(d.join("spool").join(name)).unwrap();
        }
        // MUNGE: a key of our own, its socket in the temp dir.
        let key = d.join("munge/munge.key");
        std::fs::write(&key, rand_bytes(1024)).unwrap();
        chmod(&key, 0o400);
        chmod(&d.join("munge"), 0o700);
        let socket = d.join("munge/munge.socket");
        let status = Command::new(which("munged").unwrap())
            .args(["--force", "--key-file"])
            .arg(&key)
            .arg("--socket")
            .arg(&socket)
            .arg("--pid-file")
            .arg(d.join("munge/munged.pid"))
            .arg("--log-file")
            .arg(d.join("log/munged.log"))
            .arg("--seed-file")
            .arg(d.join("munge/munged.seed"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("munged runs");
        assert!(
            status.success(),
            "munged did not start: {}",
            log(&d, "munged.log")
        );
        let munged_pid = std::fs::read_to_string(d.join("munge/munged.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());

        let node = nodes[0].0.clone();
        let partition = "debug".to_string();
        let node_lines: String = nodes
            .iter()
            .map(|(name, addr, _)| {
                format!(
                    "NodeName={name} NodeAddr={addr} NodeHostname={} CPUs={cpus} RealMemory=2000 State=UNKNOWN\n",
                    hostname()
                )
            })
            .collect();
        let (ctld_port, slurmd_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        let conf = d.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=dafttest\nSlurmctldHost={ctl}\n\
                 SlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\n\
                 SlurmUser=root\nSlurmdUser=root\n\
                 AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={socket}\n\
                 StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool/%n\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd-%n.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd-%n.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n\
                 SchedulerType=sched/backfill\nMpiDefault=none\nReturnToService=2\n\
                 JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
                 SlurmctldParameters=enable_configless\n\
                 SlurmdParameters=config_overrides\n\
                 {node_lines}\
                 PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
                socket = socket.display(),
                d = d.display(),
            ),
        )
        .unwrap();
        let mut s = Slurm {
            dir,
            conf: conf.clone(),
            node: node.clone(),
            nodes: nodes
                .iter()
                .map(|(n, a, _)| (n.clone(), a.clone()))
                .collect(),
            partition,
            children: Vec::new(),
            munged_pid,
            net: None,
        };
        let ctld = Command::new(which("slurmctld").unwrap())
            .args(["-D", "-i", "-f"])
            .arg(&conf)
            .envs(s.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slurmctld runs");
        s.children.push(ctld);
        for (name, _, netns) in nodes {
            let mut cmd = match netns {
                None => Command::new(which("slurmd").unwrap()),
                // (nsenter, not `ip netns exec`: that mounts a sysfs of its own, without the
                // cgroup file system slurmd reads.)
                Some(ns) => {
                    let mut c = Command::new("nsenter");
                    c.arg(format!("--net=/run/netns/{ns}"))
                        .arg(which("slurmd").unwrap());
                    c
                }
            };
            let slurmd = cmd
                .args(["-D", "-N", name, "-f"])
                .arg(&conf)
                .envs(s.env())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("slurmd runs");
            s.children.push(slurmd);
        }
        // Ready: every node is idle.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = s.client("sinfo", &["-h", "-N", "-o", "%T"]);
            if !out.trim().is_empty() && out.lines().all(|l| l.trim() == "idle") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Slurm did not come up (sinfo: {out:?}); slurmctld log:\n{}\nslurmd log:\n{}",
                log(s.dir.path(), "slurmctld.log"),
                log(s.dir.path(), &format!("slurmd-{node}.log"))
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        s
    }

    /// The environment Slurm's clients need to find this Slurm.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SLURM_CONF".into(), self.conf.display().to_string())]
    }

    /// Run a Slurm client command; its stdout (stderr appended when it fails).
    pub fn client(&self, bin: &str, args: &[&str]) -> String {
        let out = Command::new(bin)
            .args(args)
            .envs(self.env())
            .output()
            .unwrap_or_else(|e| panic!("{bin} runs: {e}"));
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            s.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        s
    }

    /// Wait until the queue is empty (up to `secs`).
    pub fn wait_queue_empty(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let q = self.client("squeue", &["-h"]);
            if q.trim().is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "the queue did not empty: {q}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new("scancel")
            .args(["--full", "-u", "root"])
            .envs(self.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for c in self.children.iter_mut().rev() {
            let pid = c.id();
            // slurmd's job steps (slurmstepd) are its children: gone with it.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("pkill -KILL -P {pid}; kill -KILL {pid}"))
                .status();
            let _ = c.wait();
        }
        if let Some(pid) = self.munged_pid {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        // What outlives its daemon: step daemons (slurmstepd) that lost their slurmd, and any
        // process a job left; all carry this Slurm's SLURM_CONF in their environment.
        let mark = format!("SLURM_CONF={}\0", self.conf.display());
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(env) = std::fs::read(e.path().join("environ")) else {
                continue;
            };
            if env.windows(mark.len()).any(|w| w == mark.as_bytes()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &e.file_name().to_string_lossy()])
                    .status();
            }
        }
    }
}

fn log(d: &Path, name: &str) -> String {
    std::fs::read_to_string(d.join("log").join(name)).unwrap_or_default()
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn rand_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

fn hostname() -> String {
    String::from_utf8_lossy(&Command::new("hostname").arg("-s").output().unwrap().stdout)
        .trim()
        .to_string()
}

/// Network namespaces for simulated nodes: a bridge on this machine (address .1) and, per node,
/// a namespace with a veth on the bridge (addresses .2, .3, …) and its own loopback.
pub struct Net {
    pub bridge: String,
    pub namespaces: Vec<String>,
    prefix: String,
}

impl Net {
    pub fn make(n: usize) -> Net {
        // A subnet and names of this process's own (tests run in parallel).
        let tag = std::process::id() % 200 + 20;
        let prefix = format!("10.{tag}.77");
        let bridge = format!("dslbr{tag}");
        let sh = |c: &str| {
            let ok = Command::new("sh")
                .arg("-c")
                .arg(c)
                .status()
                .unwrap()
                .success();
            assert!(ok, "network set-up failed: {c}");
        };
        sh(&format!(
            "ip link add {bridge} type bridge && ip addr add {prefix}.1/24 dev {bridge} && ip link set {bridge} up"
        ));
        let mut namespaces = Vec::new();
        for i in 0..n {
            let ns = format!("dsl{tag}n{}", i + 1);
            let veth = format!("dsl{tag}v{}", i + 1);
            sh(&format!(
                "ip netns add {ns} && ip link add {veth} type veth peer name eth0 netns {ns} && \
                 ip link set {veth} master {bridge} up && \
                 ip netns exec {ns} ip addr add {prefix}.{}/24 dev eth0 && \
                 ip netns exec {ns} ip link set eth0 up && ip netns exec {ns} ip link set lo up",
                i + 2
            ));
            namespaces.push(ns);
        }
        Net {
            bridge,
            namespaces,
            prefix,
        }
    }

    /// Address `i`: 0 is this machine's on the bridge, 1.. the nodes'.
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, i + 1)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}
