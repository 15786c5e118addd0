//! Whole-binary exit codes: 0 ok, 1 failed, 2 bad usage or config; never a panic or debug dump.

use assert_cmd::Command;
use predicates::prelude::*;

fn daft() -> Command {
    let mut c = Command::cargo_bin("daft").unwrap();
    c.env(
        "DAFT_HOME",
        std::env::temp_dir().join("daft-exit-codes-home"),
    )
    .env_remove("RUST_LOG");
    c
}

/// `daft` run in a fresh project directory holding `c.toml` with `config`, with its own DAFT_HOME.
/// The directory lives as long as the returned guard.
fn in_project(config: &str) -> (tempfile::TempDir, Command) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let mut c = daft();
    c.env("DAFT_HOME", dir.path().join("home"))
        .current_dir(dir.path());
    (dir, c)
}

fn no_debug_dump() -> impl Predicate<str> {
    predicate::str::contains("panicked")
        .not()
        .and(predicate::str::contains("RUST_BACKTRACE").not())
        .and(predicate::str::contains("Error {").not())
}

#[test]
fn help_and_version_exit_zero() {
    daft()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("init-config"));
    daft().arg("--version").assert().code(0);
}

#[test]
fn unknown_command_is_usage_error() {
    daft()
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(no_debug_dump());
}

#[test]
fn submit_without_command_is_usage_error() {
    // No words after `--` and no `[run] command`: both ways are named, before connecting.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[setup]\nname = \"demo\"\nprovider = \"local\"\n").unwrap();
    daft()
        .args(["submit", "-c", cfg.to_str().unwrap(), "-w", "."])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("after `--`"))
        .stderr(predicate::str::contains("[run] table"));
}

#[test]
fn missing_config_exits_2_and_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["plan", "up", "down", "submit", "dashboard"] {
        let mut c = daft();
        c.current_dir(dir.path()).arg(cmd);
        if cmd == "submit" {
            c.args(["--", "true"]);
        }
        c.assert()
            .code(2)
            .stderr(predicate::str::contains("daft init-config").and(no_debug_dump()));
    }
}

#[test]
fn bad_config_exits_2_with_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[setup]\nname = \"x\"\nnumber_of_workers = -3\n",
    )
    .unwrap();
    daft()
        .current_dir(dir.path())
        .args(["plan", "-c", "c.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("c.toml:3:21").and(no_debug_dump()));
}

#[test]
fn binary_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    daft()
        .current_dir(dir.path())
        .args(["plan", "-c", "c.toml"])
        .assert()
        .code(2)
        .stderr(no_debug_dump());
}

#[test]
fn plan_on_empty_local_cluster_succeeds() {
    let (_dir, mut daft) = in_project(
        "[setup]\nname = \"nothing-here\"\nprovider = \"local\"\nnumber_of_workers = 1\n",
    );
    daft.args(["plan", "-c", "c.toml"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("2 to create"));
}

#[test]
fn down_of_nothing_is_harmless() {
    let (_dir, mut daft) = in_project("[setup]\nname = \"nothing-here\"\nprovider = \"local\"\n");
    daft.args(["down", "-c", "c.toml"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Nothing to remove"));
}

#[test]
fn submit_to_a_cluster_that_is_not_up_fails_with_1() {
    let (_dir, mut daft) = in_project("[setup]\nname = \"not-up\"\nprovider = \"local\"\n");
    daft.args(["submit", "-c", "c.toml", "-w", ".", "--", "true"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("daft up").and(no_debug_dump()));
}

#[test]
fn list_json_is_valid_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = daft()
        .env("DAFT_HOME", dir.path().join("home"))
        .current_dir(dir.path())
        .args(["list", "--output", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v.as_array().unwrap().is_empty());
}

#[test]
fn dashboard_port_in_use_is_a_usage_error() {
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_dir, mut daft) = in_project(
        "[setup]\nname = \"d\"\nprovider = \"ssh\"\n[setup.ssh]\nhead = \"127.0.0.2:1\"\n",
    );
    daft.args([
        "dashboard",
        "-c",
        "c.toml",
        "--no-browser",
        "--port",
        &port.to_string(),
    ])
    .assert()
    .code(2)
    .stderr(
        predicate::str::contains(format!("port {port} is already in use"))
            .and(predicate::str::contains("--port")),
    );
}

#[test]
fn help_names_every_back_end_and_autostop_checks_its_words_before_anything_connects() {
    let help = daft().arg("--help").assert().success();
    let text = String::from_utf8_lossy(&help.get_output().stdout).to_string();
    for backend in [
        "AWS EC2",
        "SSH hosts",
        "this machine",
        "Slurm",
        "Kubernetes",
    ] {
        assert!(
            text.contains(backend),
            "--help does not name {backend}:\n{text}"
        );
    }
    // Neither a duration nor --cancel, or both: clap's usage error (2); no config needed.
    daft().arg("autostop").assert().code(2);
    daft()
        .args(["autostop", "30m", "--cancel"])
        .assert()
        .code(2)
        .stderr(no_debug_dump());
    // A config whose back-end cannot stop itself (yet), or an AWS one without the instance
    // profile its head would need: said at once, exit 2.
    let (_d, mut c) = in_project("[setup]\nname = \"x\"\nprovider = \"kubernetes\"\n");
    c.args(["autostop", "-c", "c.toml", "30m"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "autostop is not available with provider = \"kubernetes\" yet",
        ));
    let (_d, mut c) = in_project("[setup]\nname = \"x\"\nprovider = \"aws\"\n");
    c.args(["autostop", "-c", "c.toml", "30m"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "autostop on AWS needs `setup.aws.iam_instance_profile`",
        ));
}

#[test]
fn quiet_keeps_results_and_the_exit_code_and_drops_the_notes() {
    // `doctor` with nothing to check: a failed check (the table, on stdout), a note that says
    // how many failed (stderr), exit 1.
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        daft()
            .current_dir(dir.path())
            .args(args)
            .assert()
            .code(1)
            .stderr(no_debug_dump())
            .get_output()
            .clone()
    };
    let loud = run(&["doctor"]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(text(&loud.stdout).contains("no .daft.toml"), "{loud:?}");
    assert!(text(&loud.stderr).contains("check(s) failed"), "{loud:?}");
    for quiet in [&["-q", "doctor"][..], &["doctor", "--quiet"][..]] {
        let q = run(quiet);
        assert_eq!(
            text(&q.stdout),
            text(&loud.stdout),
            "{quiet:?}: the result is the same"
        );
        assert!(
            !text(&q.stderr).contains("check(s) failed"),
            "{quiet:?}: {q:?}"
        );
    }
    // JSON is the command's own choice; the printer carries it (and stays quiet).
    let j = run(&["-q", "doctor", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{v}");
    assert!(j.stderr.is_empty(), "{j:?}");
}
