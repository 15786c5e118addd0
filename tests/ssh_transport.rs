//! The SSH transport against Debian's OpenSSH sshd on loopback: run, send, forward, and faults.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Sshd;
use daft::config::HostAddr;
use daft::transport::ssh::{SshTarget, SshTransport};
use daft::transport::Transport;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn target(s: &Sshd, key: PathBuf, known: &std::path::Path) -> SshTarget {
    SshTarget {
        addr: HostAddr {
            host: s.addr.clone(),
            port: s.port,
        },
        user: s.user.clone(),
        key: Some(key),
        known_hosts: known.join("known_hosts"),
        user_known_hosts: None,
        deadline: Duration::from_secs(5),
        booting: false,
        host_key_alias: None,
        progress: None,
        via: None,
    }
}

async fn connect(s: &Sshd, known: &std::path::Path) -> SshTransport {
    SshTransport::connect(target(s, s.key.clone(), known))
        .await
        .expect("connects")
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn run_streams_in_order_with_exit_status() {
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let t = connect(&s, k.path()).await;
    let c = t
        .capture("echo one; echo two >&2; echo three; exit 7")
        .await
        .unwrap();
    assert_eq!(c.stdout, "one\nthree\n");
    assert_eq!(c.stderr, "two\n");
    assert_eq!(c.status, 7);
    for (cmd, want) in [
        ("true", 0),
        ("false", 1),
        ("exit 255", 255),
        ("kill -TERM $$", 143),
    ] {
        assert_eq!(t.capture(cmd).await.unwrap().status, want, "{cmd}");
    }
    let u = t.capture("printf 'héllo ✓ 日本\\n'").await.unwrap();
    assert_eq!(u.stdout, "héllo ✓ 日本\n");
    // Large output arrives whole (20 MB).
    let big = t
        .capture("head -c 20000000 /dev/zero | tr '\\0' a")
        .await
        .unwrap();
    assert_eq!(big.stdout.len(), 20_000_000);
    assert!(big.stdout.bytes().all(|b| b == b'a'));
    // Many commands share one connection, concurrently.
    let t = Arc::new(t);
    let jobs: Vec<_> = (0..20)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move { t.capture(&format!("echo {i}")).await.unwrap().stdout })
        })
        .collect();
    for (i, j) in jobs.into_iter().enumerate() {
        assert_eq!(j.await.unwrap(), format!("{i}\n"));
    }
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn rsa_key_uses_sha2_signatures() {
    let s = Sshd::start_with(
        "127.0.0.2",
        "PubkeyAcceptedAlgorithms rsa-sha2-512,rsa-sha2-256,ssh-ed25519",
    );
    let k = tempfile::tempdir().unwrap();
    let t = SshTransport::connect(target(&s, s.rsa_key.clone(), k.path()))
        .await
        .expect("RSA with rsa-sha2 works");
    assert_eq!(t.capture("echo ok").await.unwrap().stdout, "ok\n");
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn send_50_mb_file_intact() {
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let t = connect(&s, k.path()).await;
    let local = k.path().join("big.bin");
    let data = common::noise(50 * 1024 * 1024, 0x9e3779b97f4a7c15);
    std::fs::write(&local, &data).unwrap();
    t.send_file(&local, "$HOME/in/big.bin").await.unwrap();
    let remote = t
        .capture("sha256sum \"$HOME/in/big.bin\" | cut -d' ' -f1")
        .await
        .unwrap();
    assert_eq!(remote.stdout.trim(), sha(&data));
    assert_eq!(
        std::fs::read(s.home.join("in/big.bin")).unwrap().len(),
        data.len()
    );
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn send_2000_file_tree_intact_and_unpacked_safely() {
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let t = connect(&s, k.path()).await;
    let tree = k.path().join("tree");
    for i in 0..2000 {
        let p = tree.join(format!("d{}/f{i}.txt", i % 37));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("file {i} {}", "x".repeat(i % 300))).unwrap();
    }
    let a = daft::archive::pack(&tree, k.path()).unwrap();
    assert_eq!(a.files, 2000);
    t.send_file(&a.path, "$HOME/tree.zip").await.unwrap();
    t.write_file(daft::templates::JOBS.as_bytes(), "$HOME/jobs.py")
        .await
        .unwrap();
    let c = t
        .capture("python3 \"$HOME/jobs.py\" unpack \"$HOME/tree.zip\" \"$HOME/out\"")
        .await
        .unwrap();
    assert_eq!(c.status, 0, "{}", c.stderr);
    let local_sum = common::run(&format!(
        "cd {} && find . -type f | sort | xargs sha256sum | sha256sum",
        tree.display()
    ));
    let remote_sum = t
        .capture("cd \"$HOME/out\" && find . -type f | sort | xargs sha256sum | sha256sum")
        .await
        .unwrap()
        .stdout;
    assert_eq!(local_sum, remote_sum);
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn zip_with_dotdot_is_rejected_and_writes_nothing_outside() {
    use std::io::Write;
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let t = connect(&s, k.path()).await;
    for evil in ["../escape", "/tmp/daft-abs-escape", "ok/../../escape2"] {
        let zpath = k.path().join("evil.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
        z.start_file("fine.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"fine").unwrap();
        z.start_file(evil, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"gotcha").unwrap();
        z.finish().unwrap();
        t.send_file(&zpath, "$HOME/jobs/evil.zip").await.unwrap();
        t.write_file(daft::templates::JOBS.as_bytes(), "$HOME/jobs.py")
            .await
            .unwrap();
        let c = t.capture("mkdir -p \"$HOME/jobs/j1/work\" && python3 \"$HOME/jobs.py\" unpack \"$HOME/jobs/evil.zip\" \"$HOME/jobs/j1/work\"").await.unwrap();
        assert_eq!(c.status, 3, "{evil}: {c:?}");
        assert!(c.stderr.contains("refusing to unpack"), "{}", c.stderr);
        assert!(!s.home.join("jobs/j1/escape").exists());
        assert!(!s.home.join("jobs/escape").exists());
        assert!(!s.home.join("jobs/escape2").exists());
        assert!(!std::path::Path::new("/tmp/daft-abs-escape").exists());
        // Checked before anything is written: not even the good entry lands.
        assert!(!s.home.join("jobs/j1/work/fine.txt").exists());
    }
}

/// A tiny HTTP server on the far side.
async fn http_server(addr: &str) -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind((addr, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        loop {
            let (mut sock, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = format!("hello from {path}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, h)
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn forward_concurrent_http_requests() {
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let t = Arc::new(connect(&s, k.path()).await);
    let (port, server) = http_server("127.0.0.3").await;
    let jobs: Vec<_> = (0..16)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut c = t.open_tunnel("127.0.0.3", port).await.unwrap();
                c.write_all(format!("GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut resp = String::new();
                c.read_to_string(&mut resp).await.unwrap();
                resp
            })
        })
        .collect();
    for (i, j) in jobs.into_iter().enumerate() {
        let resp = j.await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        assert!(resp.ends_with(&format!("hello from /r{i}")), "{resp}");
    }
    server.abort();
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn dashboard_serve_forwards_through_the_tunnel() {
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let t: Arc<dyn Transport> = Arc::new(connect(&s, k.path()).await);
    let (port, server) = http_server("127.0.0.3").await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let local = listener.local_addr().unwrap().port();
    let serve = tokio::spawn(daft::commands::dashboard::serve(
        listener,
        t,
        "127.0.0.3".into(),
        port,
    ));
    for i in 0..5 {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", local))
            .await
            .unwrap();
        c.write_all(format!("GET /dash{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).await.unwrap();
        assert!(resp.ends_with(&format!("hello from /dash{i}")), "{resp}");
    }
    serve.abort();
    server.abort();
}

// --- faults: each a clear error, none hangs past the deadline ---

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn wrong_key_is_authentication_failed() {
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let other = k.path().join("other");
    common::keygen(&other, "ed25519");
    let err = SshTransport::connect(target(&s, other.clone(), k.path()))
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("authentication as"), "{msg}");
    assert!(msg.contains(&other.display().to_string()), "{msg}");
    assert!(msg.contains("authorized_keys"), "{msg}");
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn world_readable_key_is_refused_with_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let open = k.path().join("open_key");
    std::fs::copy(&s.key, &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SshTransport::connect(target(&s, open.clone(), k.path()))
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("chmod 600 {}", open.display())),
        "{msg}"
    );
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn unknown_host_is_pinned_and_a_changed_key_is_refused() {
    let mut s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let t = connect(&s, k.path()).await;
    drop(t);
    let pinned = std::fs::read_to_string(k.path().join("known_hosts")).unwrap();
    assert!(
        pinned.contains(&format!("[127.0.0.2]:{}", s.port)),
        "{pinned}"
    );
    // Same key: accepted again.
    connect(&s, k.path()).await;
    s.restart_with_new_host_key();
    let err = SshTransport::connect(target(&s, s.key.clone(), k.path()))
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("host key"), "{msg}");
    assert!(
        msg.contains(&format!("{}:{}", s.addr, s.port)),
        "names the host: {msg}"
    );
    // The file and line it names hold this host's pinned key.
    let file = k.path().join("known_hosts");
    let at = msg
        .find(&format!("{} line ", file.display()))
        .expect("names the file");
    let line: usize = msg[at..]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines()
            .nth(line - 1)
            .unwrap()
            .starts_with(&format!("[127.0.0.2]:{} ", s.port)),
        "line {line} of:\n{text}"
    );
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn nothing_listening_is_refused_within_the_deadline() {
    let k = tempfile::tempdir().unwrap();
    let port = common::free_port("127.0.0.2");
    let key = k.path().join("id");
    common::keygen(&key, "ed25519");
    let t = SshTarget {
        addr: HostAddr {
            host: "127.0.0.2".into(),
            port,
        },
        user: "nobody".into(),
        key: Some(key),
        known_hosts: k.path().join("known_hosts"),
        user_known_hosts: None,
        deadline: Duration::from_secs(2),
        booting: false,
        host_key_alias: None,
        progress: None,
        via: None,
    };
    let start = Instant::now();
    let err = SshTransport::connect(t).await.err().expect("refused");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "took {:?}",
        start.elapsed()
    );
    let msg = format!("{err:#}");
    assert!(msg.contains("refused"), "{msg}");
    assert!(msg.contains(&port.to_string()), "{msg}");
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn sshd_killed_mid_transfer_is_a_clear_error() {
    let mut s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let t = connect(&s, k.path()).await;
    let local = k.path().join("huge.bin");
    let f = std::fs::File::create(&local).unwrap();
    f.set_len(2_000_000_000).unwrap();
    let send = tokio::spawn(async move { t.send_file(&local, "$HOME/huge.bin").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let start = Instant::now();
    s.stop();
    let r = tokio::time::timeout(Duration::from_secs(60), send)
        .await
        .expect("no hang")
        .unwrap();
    let msg = format!("{:#}", r.expect_err("transfer fails"));
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(msg.contains("huge.bin"), "{msg}");
    // sshd back: a retry connects and sends.
    s.start_again();
    let t = connect(&s, k.path()).await;
    let small = k.path().join("small.bin");
    std::fs::write(&small, common::noise(100_000, 7)).unwrap();
    t.send_file(&small, "$HOME/small.bin").await.unwrap();
    assert_eq!(
        std::fs::read(s.home.join("small.bin")).unwrap(),
        common::noise(100_000, 7)
    );
}

/// A port that accepts TCP and never speaks SSH: a clear error within a bound (an existing
/// host is not waited for like a booting one); once sshd answers there, a retry connects.
#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn silent_port_is_a_clear_error_within_a_bound_and_a_retry_succeeds() {
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind(("127.0.0.2", 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        // Accept and keep the connections open, saying nothing.
        let mut keep = Vec::new();
        silent.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(40);
        while Instant::now() < end {
            if let Ok((c, _)) = silent.accept() {
                keep.push(c);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut t = target(&s, s.key.clone(), k.path());
    t.addr.port = port;
    t.deadline = daft::transport::ssh::EXISTING_HOST_DEADLINE;
    let start = Instant::now();
    let err = SshTransport::connect(t).await.err().expect("no SSH there");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(25), "took {took:?}");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("127.0.0.2:{port}")), "{msg}");
    assert!(msg.contains("timed out"), "{msg}");
    drop(held);
    // The real sshd: a retry connects.
    let t = connect(&s, k.path()).await;
    assert_eq!(t.capture("echo ok").await.unwrap().stdout.trim(), "ok");
}

/// A refused port of a machine that is still booting is waited out (saying so), and the
/// connection made once sshd starts; an existing host's refused port fails after a few tries.
#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn booting_host_is_waited_for_and_an_existing_one_fails_fast() {
    let k = tempfile::tempdir().unwrap();
    let mut s = Sshd::start("127.0.0.2");
    s.stop();
    let start = Instant::now();
    let err = SshTransport::connect({
        let mut t = target(&s, s.key.clone(), k.path());
        t.deadline = daft::transport::ssh::EXISTING_HOST_DEADLINE;
        t
    })
    .await
    .err()
    .expect("refused");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(format!("{err:#}").contains("refused"));
    // Booting: sshd comes up 2 s later on the same port, and the connection is made.
    let pb = indicatif::ProgressBar::hidden();
    let mut t = target(&s, s.key.clone(), k.path()).booting(Some(pb.clone()));
    t.deadline = Duration::from_secs(30);
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        s.start_again();
        s
    });
    let conn = SshTransport::connect(t)
        .await
        .expect("connects once sshd runs");
    let s = starter.join().unwrap();
    assert!(
        pb.message().contains("waiting for SSH on 127.0.0.2")
            && pb.message().contains("connection refused"),
        "{}",
        pb.message()
    );
    assert_eq!(conn.capture("echo up").await.unwrap().stdout.trim(), "up");
    drop(s);
}

#[tokio::test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
async fn encrypted_key_without_terminal_says_use_the_agent() {
    let s = Sshd::start("127.0.0.2");
    let k = tempfile::tempdir().unwrap();
    let enc = k.path().join("enc");
    common::run(&format!(
        "ssh-keygen -q -t ed25519 -N secret -f {}",
        enc.display()
    ));
    let err = SshTransport::connect(target(&s, enc, k.path()))
        .await
        .err()
        .expect("needs a passphrase");
    assert!(format!("{err:#}").contains("ssh-add"), "{err:#}");
}
