//! daft against OpenSSH and Ray's own tools, side by side in one run, over real sshd on loopback:
//! file transfer (daft's SFTP vs `scp`), tunnel throughput (daft's dashboard forwarder vs
//! `ssh -L`), and the SSH-hosts provider (`daft up` / no-op `up` / `down`) vs a bare
//! `ray start --head` / `ray stop` on the same host. Prints one `BENCH {json}` line per result;
//! `bench/run.py` collects them into BENCHMARKS.md. Run: `cargo bench --bench peers`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Sshd;
use daft::config::HostAddr;
use daft::transport::ssh::{SshTarget, SshTransport};
use daft::transport::Transport;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(name: &str, daft: &[f64], peer_name: &str, peer: &[f64], unit: &str) {
    let (d, p) = (median(daft.to_vec()), median(peer.to_vec()));
    let spread = |v: &[f64]| {
        (
            v.iter().cloned().fold(f64::MAX, f64::min),
            v.iter().cloned().fold(0.0, f64::max),
        )
    };
    println!(
        "BENCH {}",
        serde_json::json!({"name": name, "unit": unit, "daft": d, "daft_min": spread(daft).0, "daft_max": spread(daft).1,
            "peer": peer_name, "peer_value": p, "peer_min": spread(peer).0, "peer_max": spread(peer).1, "ratio": d / p, "runs": daft.len()})
    );
}

fn target(s: &Sshd, known: &std::path::Path) -> SshTarget {
    SshTarget {
        addr: HostAddr {
            host: s.addr.clone(),
            port: s.port,
        },
        user: s.user.clone(),
        key: Some(s.key.clone()),
        known_hosts: known.join("known_hosts"),
        user_known_hosts: None,
        deadline: Duration::from_secs(10),
        booting: false,
        host_key_alias: None,
        progress: None,
        via: None,
    }
}

fn ssh_opts(s: &Sshd, known: &std::path::Path) -> Vec<String> {
    vec![
        "-i".into(),
        s.key.display().to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}/ossh_known_hosts", known.display()),
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ]
}

/// A far-side server that sends `bytes` bytes to each connection.
fn blob_server(addr: &str, bytes: usize) -> u16 {
    let l = std::net::TcpListener::bind((addr, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let chunk = vec![7u8; 1 << 20];
        for s in l.incoming().flatten() {
            std::thread::spawn({
                let chunk = chunk.clone();
                move || {
                    let mut s = s;
                    let mut b = [0u8; 1];
                    let _ = s.read(&mut b);
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if s.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                }
            });
        }
    });
    port
}

/// Connect to 127.0.0.1:port (retrying until it listens), send a byte, read everything.
fn fetch(port: u16, deadline: Duration) -> (Duration, Duration, usize) {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"G").unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0;
            let mut first = None;
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        first.get_or_insert_with(|| start.elapsed());
                        total += n;
                    }
                }
            }
            if total > 0 {
                return (first.unwrap(), start.elapsed(), total);
            }
        }
        assert!(start.elapsed() < deadline, "nothing listened on {port}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5usize);
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();

    // 1. Transfer 50 MB: daft (connect + SFTP) vs scp (connect + copy).
    let file = k.path().join("50mb.bin");
    let data = common::noise(50 * 1024 * 1024, 88172645463325252);
    std::fs::write(&file, &data).unwrap();
    let (mut d, mut p) = (vec![], vec![]);
    for i in 0..runs {
        let t0 = Instant::now();
        rt.block_on(async {
            let t = SshTransport::connect(target(&s, k.path())).await.unwrap();
            t.send_file(&file, &format!("$HOME/daft-{i}.bin"))
                .await
                .unwrap();
        });
        d.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let st = Command::new("scp")
            .args(ssh_opts(&s, k.path()))
            .args(["-q", "-P", &s.port.to_string()])
            .arg(&file)
            // Absolute: a relative path lands in the login's passwd home, not the fixture's.
            .arg(format!(
                "{}@{}:{}",
                s.user,
                s.addr,
                s.home.join(format!("scp-{i}.bin")).display()
            ))
            .status()
            .unwrap();
        assert!(st.success());
        p.push(t0.elapsed().as_secs_f64());
    }
    report("transfer 50 MB (s)", &d, "scp", &p, "s");
    let mbps = |v: &[f64]| v.iter().map(|t| 50.0 * 1.048576 / t).collect::<Vec<_>>();
    report(
        "transfer 50 MB throughput (MB/s)",
        &mbps(&d),
        "scp",
        &mbps(&p),
        "MB/s",
    );

    // 2. Tunnel: 200 MB through daft's forwarder vs `ssh -L`, from a server on the far side.
    let size = 200 * 1024 * 1024;
    let far = blob_server("127.0.0.3", size);
    let (mut d, mut p, mut dt, mut pt) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let port = common::free_port("127.0.0.1");
        let serve = rt.spawn({
            let tgt = target(&s, k.path());
            async move {
                let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .unwrap();
                let t: Arc<dyn Transport> = Arc::new(SshTransport::connect(tgt).await.unwrap());
                daft::commands::dashboard::serve(l, t, "127.0.0.3".into(), far).await
            }
        });
        let (first, all, n) = fetch(port, Duration::from_secs(30));
        assert_eq!(n, size);
        serve.abort();
        dt.push(first.as_secs_f64());
        d.push(size as f64 / 1e6 / all.as_secs_f64());
        let port = common::free_port("127.0.0.1");
        let mut ssh = Command::new("ssh")
            .args(ssh_opts(&s, k.path()))
            .args([
                "-N",
                "-p",
                &s.port.to_string(),
                "-L",
                &format!("127.0.0.1:{port}:127.0.0.3:{far}"),
            ])
            .arg(format!("{}@{}", s.user, s.addr))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (first, all, n) = fetch(port, Duration::from_secs(30));
        assert_eq!(n, size);
        let _ = ssh.kill();
        let _ = ssh.wait();
        pt.push(first.as_secs_f64());
        p.push(size as f64 / 1e6 / all.as_secs_f64());
    }
    report("tunnel throughput 200 MB (MB/s)", &d, "ssh -L", &p, "MB/s");
    report("tunnel: start to first byte (s)", &dt, "ssh -L", &pt, "s");
}
