//! The EC2 simulation (test support): moto's EC2 server behind `tests/support/ec2_sim.py`, a
//! proxy that answers as EC2 does (pending without a public address, then running with one;
//! idempotent client tokens, 64 characters at most) and gives every instance a machine of its
//! own in network, mount and PID namespaces, running sshd and, once running, its user data.
//! Everything it starts is stopped by PID, and every namespace removed, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Ec2Sim {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub prefix: String,
    moto: Child,
    sim: Option<Child>,
}

impl Ec2Sim {
    /// Start moto and the simulation; instances stay `pending` for `delay` seconds.
    pub fn start(delay: f64) -> Ec2Sim {
        Ec2Sim::start_short_of(delay, &[])
    }

    /// [`Ec2Sim::start`], with RunInstances of each of `no_capacity` (instance types) refused
    /// with InsufficientInstanceCapacity.
    pub fn start_short_of(delay: f64, no_capacity: &[&str]) -> Ec2Sim {
        let args: Vec<&str> = no_capacity
            .iter()
            .flat_map(|t| ["--no-capacity", t])
            .collect();
        Ec2Sim::start_with(delay, &args)
    }

    /// [`Ec2Sim::start`] with more of the simulation's flags (`--no-capacity TYPE[/MARKET]`,
    /// `--price TYPE=USD`, `--spot-price TYPE=USD`).
    pub fn start_with(delay: f64, sim_args: &[&str]) -> Ec2Sim {
        let dir = tempfile::tempdir().unwrap();
        let (moto, moto_port) = super::start_moto(&[]);
        // The instances install Ray and Daft offline from this machine's uv cache (their
        // namespaces reach no registry): fill it first, as daft's bootstrap would resolve them.
        let warm = dir.path().join("warm-venv");
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "uv venv -q {w} && VIRTUAL_ENV={w} uv pip install -q 'ray[default]' daft boto3",
                w = warm.display()
            ))
            .env("UV_CACHE_DIR", super::uv_cache())
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "could not fill uv's cache with ray[default] and daft"
        );
        let _ = std::fs::remove_dir_all(&warm);
        let port = super::free_port("127.0.0.1");
        let prefix = format!("dsim{}", std::process::id());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ec2_sim.py");
        let sim = Command::new("python3")
            .arg(script)
            .args(["--moto", &format!("http://127.0.0.1:{moto_port}")])
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .args(["--delay", &delay.to_string(), "--prefix", &prefix])
            .args(sim_args)
            .env("UV_CACHE_DIR", super::uv_cache())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("sim.stderr")).unwrap())
            .spawn()
            .unwrap();
        let s = Ec2Sim {
            dir,
            port,
            prefix,
            moto,
            sim: Some(sim),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.dir.path().join("ready").exists() {
            assert!(
                Instant::now() < deadline,
                "the EC2 simulation did not start: {}",
                std::fs::read_to_string(s.dir.path().join("sim.stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The instance namespaces that exist now.
    pub fn machines(&self) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-i", self.prefix)))
            .map(str::to_string)
            .collect()
    }

    /// The simulation's log: launches (with addresses), terminations, token reuse.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.path().join("sim.stderr")).unwrap_or_default()
    }

    /// The addresses the simulation made (public and private), from its log.
    pub fn addresses(&self) -> Vec<String> {
        let mut v = Vec::new();
        for l in self.log().lines() {
            if let Some(rest) = l.split("launched ").nth(1) {
                for part in rest.split([' ', ',']) {
                    if part.parse::<std::net::Ipv4Addr>().is_ok() {
                        v.push(part.to_string());
                    }
                }
            }
        }
        v
    }

    /// The machine directory (its home at `home/`, its /var/log at `log/`, its /etc/ssh at
    /// `etc-ssh/`) of an instance.
    pub fn machine_dir(&self, instance: &str) -> PathBuf {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("launched {instance}:")))
            .unwrap_or_else(|| panic!("no machine for {instance}:\n{log}"));
        let n = line.rsplit("machine i").next().unwrap().trim();
        self.dir.path().join(format!("i{n}-{instance}"))
    }
}

impl Drop for Ec2Sim {
    fn drop(&mut self) {
        if let Some(mut sim) = self.sim.take() {
            let _ = Command::new("kill").arg(sim.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = sim.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = sim.kill();
            let _ = sim.wait();
        }
        // Whatever is left (the simulation killed before its teardown): every process in its
        // namespaces, then the namespaces.
        let out = Command::new("ip").args(["netns", "list"]).output();
        if let Ok(out) = out {
            for ns in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(&self.prefix))
            {
                let _ = Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "ip netns pids {ns} | xargs -r kill -KILL; ip netns del {ns}"
                    ))
                    .status();
            }
        }
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}
