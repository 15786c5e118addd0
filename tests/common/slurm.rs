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
        assert!(
            available(),
            "Slurm is not installed (apt-get install slurm-wlm munge: .ci/setup does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        for sub in ["state", "spool", "log", "munge"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
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

        let node = "daftnode".to_string();
        let partition = "debug".to_string();
        let (ctld_port, slurmd_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        let conf = d.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=dafttest\nSlurmctldHost=localhost(127.0.0.1)\n\
                 SlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\n\
                 SlurmUser=root\nSlurmdUser=root\n\
                 AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={socket}\n\
                 StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n\
                 SchedulerType=sched/backfill\nMpiDefault=none\nReturnToService=2\n\
                 JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
                 SlurmctldParameters=enable_configless\n\
                 SlurmdParameters=config_overrides\n\
                 NodeName={node} NodeAddr={node_addr} NodeHostname={host} CPUs={cpus} RealMemory=2000 State=UNKNOWN\n\
                 PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP\n",
                socket = socket.display(),
                d = d.display(),
                host = hostname(),
            ),
        )
        .unwrap();
        let mut s = Slurm {
            dir,
            conf: conf.clone(),
            node: node.clone(),
            partition,
            children: Vec::new(),
            munged_pid,
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
        let slurmd = Command::new(which("slurmd").unwrap())
            .args(["-D", "-N", &node, "-f"])
            .arg(&conf)
            .envs(s.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slurmd runs");
        s.children.push(slurmd);
        // Ready: the node is idle.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = s.client("sinfo", &["-h", "-N", "-o", "%T"]);
            if out.trim() == "idle" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Slurm did not come up (sinfo: {out:?}); slurmctld log:\n{}\nslurmd log:\n{}",
                log(s.dir.path(), "slurmctld.log"),
                log(s.dir.path(), "slurmd.log")
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
