//! `daft ssh-config`: Host entries that plain OpenSSH uses with the host keys daft pinned.

mod common;

use std::path::PathBuf;
use std::process::Command as StdCommand;

use assert_cmd::Command;
use daft::commands::ssh_config::render;
use daft::provider::SshEntry;

#[test]
fn entries_name_the_head_and_workers_and_pin_host_keys() {
    let e = |name: &str, host: &str, port: u16, alias: Option<&str>| SshEntry {
        name: name.into(),
        host: host.into(),
        port,
        user: "ec2-user".into(),
        key: Some(PathBuf::from("/home/me/.ssh/id_ed25519")),
        host_key_alias: alias.map(str::to_string),
    };
    let text = render(
        "demo",
        "aws us-west-2",
        &[
            e("", "203.0.113.10", 22, Some("i-0abc")),
            e("worker-1", "203.0.113.11", 22, Some("i-0def")),
            e("worker-2", "10.0.0.7", 2222, None),
        ],
        &[
            PathBuf::from("/home/me/.ssh/known_hosts"),
            PathBuf::from("/home/me/my daft/known_hosts"),
        ],
    );
    insta::assert_snapshot!(text);
}

fn daft(home: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("daft").unwrap();
    c.current_dir(home)
        .env("HOME", home)
        .env("DAFT_HOME", home.join(".daft"))
        .env_remove("RUST_LOG");
    c
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd and ssh"]
fn plain_ssh_reaches_every_host_through_the_entries_and_refuses_a_changed_host_key() {
    let (head, mut worker) = common::two_ssh_hosts();
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path();
    let cfg = h.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[setup]\nname = \"demo\"\nprovider = \"ssh\"\nssh_user = \"{}\"\nssh_private_key = \"{}\"\n\
             [setup.ssh]\nhead = \"{}\"\nworkers = [\"{}\"]\n",
            head.user,
            head.key.display(),
            head.host(),
            worker.host()
        ),
    )
    .unwrap();
    // daft pins both hosts' keys as it first connects (a plan asks every host).
    let o = daft(h).args(["plan", "-c", "c.toml"]).output().unwrap();
    assert!(o.status.success(), "{}", common::out(&o));
    let o = daft(h)
        .args(["ssh-config", "-c", "c.toml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::out(&o));
    let conf = h.join("ssh.conf");
    std::fs::write(&conf, &o.stdout).unwrap();
    let ssh = |host: &str| {
        StdCommand::new("ssh")
            .arg("-F")
            .arg(&conf)
            .args(["-o", "BatchMode=yes", host, "echo reached-$(hostname)"])
            .env("HOME", h)
            .output()
            .unwrap()
    };
    for host in ["demo", "demo-worker-1"] {
        let o = ssh(host);
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("reached-"),
            "{host}: {}\n{}",
            common::out(&o),
            std::fs::read_to_string(&conf).unwrap()
        );
    }
    // The worker's host key changes: plain ssh refuses it, as daft would.
    worker.restart_with_new_host_key();
    let o = ssh("demo-worker-1");
    assert!(!o.status.success(), "{}", common::out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Host key verification failed"),
        "{}",
        common::out(&o)
    );
}

#[test]
fn a_local_cluster_has_no_ssh_entries_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[setup]\nname = \"l\"\nprovider = \"local\"\n",
    )
    .unwrap();
    let o = daft(dir.path())
        .args(["ssh-config", "-c", "c.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", common::out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not reached with plain ssh"));
}

/// `~/.ssh/config` for SSH hosts: the head by an alias (HostName, Port, User, IdentityFile
/// from the file), the worker only through the head (ProxyJump): with a head that forwards,
/// both answer; with one whose sshd refuses to forward, the worker cannot be reached — the
/// route really goes through the jump host.
#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs OpenSSH's sshd"]
fn ssh_hosts_follow_the_users_ssh_config_and_its_proxy_jump() {
    let (head, worker) = common::two_ssh_hosts();
    let blocked = common::Sshd::start_with("127.0.0.2", "Match all\n  AllowTcpForwarding no\n");
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path();
    std::fs::write(
        h.join("c.toml"),
        "[setup]\nname = \"viaconf\"\nprovider = \"ssh\"\n[setup.ssh]\nhead = \"daft-head\"\nworkers = [\"daft-worker\"]\n",
    )
    .unwrap();
    let write_ssh_config = |head_sshd: &common::Sshd| {
        std::fs::create_dir_all(h.join(".ssh")).unwrap();
        std::fs::write(
            h.join(".ssh/config"),
            format!(
                "Host daft-head\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n\n\
                 Host daft-worker\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  ProxyJump daft-head\n",
                head_sshd.addr,
                head_sshd.port,
                head_sshd.user,
                head_sshd.key.display(),
                worker.addr,
                worker.port,
                worker.user,
                head.key.display(),
            ),
        )
        .unwrap();
    };
    let plan = || {
        daft(h)
            .env("RUST_LOG", "daft::ssh=debug")
            .args(["plan", "-c", "c.toml"])
            .output()
            .unwrap()
    };
    write_ssh_config(&head);
    let o = plan();
    let text = common::out(&o);
    assert!(o.status.success(), "{text}");
    assert!(!text.contains("unreachable"), "{text}");
    assert!(text.contains("+ create"), "{text}");
    // Where each value came from, in the debug log.
    assert!(
        text.contains("what=\"HostName\" value=\"127.0.0.2\" source=\"~/.ssh/config\"")
            && text.contains("host=daft-worker jump=daft-head"),
        "{text}"
    );
    // The same, through a head whose sshd forwards nothing: the worker is out of reach.
    write_ssh_config(&blocked);
    let o = plan();
    let text = common::out(&o);
    assert!(
        text.contains("unreachable") && text.contains("daft-worker"),
        "{text}"
    );
}
