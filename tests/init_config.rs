//! `daft init-config`: the templates, what it prints, and that filled-in templates load.

use std::path::Path;

use assert_cmd::Command;
use daft::config::{Config, ProviderKind};
use daft::templates::render_config;

fn daft() -> Command {
    Command::cargo_bin("daft").unwrap()
}

#[test]
fn template_aws() {
    insta::assert_snapshot!(render_config(ProviderKind::Aws, None));
}

#[test]
fn template_ssh() {
    insta::assert_snapshot!(render_config(ProviderKind::Ssh, None));
}

#[test]
fn template_local() {
    insta::assert_snapshot!(render_config(ProviderKind::Local, None));
}

#[test]
fn template_slurm() {
    insta::assert_snapshot!(render_config(ProviderKind::Slurm, None));
}

#[test]
fn template_kubernetes() {
    insta::assert_snapshot!(render_config(ProviderKind::Kubernetes, None));
}

/// Fill the template's required fields with toml_edit, as a user would by hand.
fn fill(text: &str) -> String {
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc["setup"]["name"] = toml_edit::value("filled");
    let setup = doc["setup"].as_table_mut().unwrap();
    if setup.contains_key("ssh") {
        setup["ssh"]["head"] = toml_edit::value("10.0.0.1");
    }
    doc.to_string()
}

#[test]
fn every_template_loads_once_filled() {
    for p in [
        ProviderKind::Aws,
        ProviderKind::Ssh,
        ProviderKind::Local,
        ProviderKind::Slurm,
        ProviderKind::Kubernetes,
    ] {
        let text = render_config(p, None);
        // Unfilled, it is refused: the placeholders are there to be replaced.
        assert!(
            Config::parse("t.toml", &text, Path::new(".")).is_err(),
            "{p:?} template loads unfilled"
        );
        let c = Config::parse("t.toml", &fill(&text), Path::new("."))
            .unwrap_or_else(|e| panic!("{p:?}: {}", e.render()));
        assert_eq!(c.setup.provider.kind(), p);
        assert_eq!(c.setup.name, "filled");
        // (Slurm: the head alone in its allocation, in this version.)
        let workers = if p == ProviderKind::Slurm { 0 } else { 2 };
        assert_eq!(c.setup.number_of_workers, workers);
    }
}

#[test]
fn every_key_carries_a_required_or_optional_comment() {
    // A key line, or a commented-out key (`# key = value`).
    fn key_of(line: &str) -> Option<&str> {
        let l = line.strip_prefix("# ").unwrap_or(line);
        let (k, _) = l.split_once(" = ")?;
        k.chars()
            .all(|c| c.is_ascii_lowercase() || c == '_')
            .then_some(k)
    }
    for p in [
        ProviderKind::Aws,
        ProviderKind::Ssh,
        ProviderKind::Local,
        ProviderKind::Slurm,
        ProviderKind::Kubernetes,
    ] {
        let text = render_config(p, None);
        let lines: Vec<&str> = text.lines().collect();
        let mut keys = 0;
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("# required") || l.starts_with("# optional") {
                continue;
            }
            if let Some(k) = key_of(l) {
                keys += 1;
                let comment = lines[i - 1];
                assert!(
                    comment.starts_with("# required") || comment.starts_with("# optional"),
                    "{p:?}: key `{k}` is not preceded by a required/optional comment"
                );
                if comment.starts_with("# optional") {
                    assert!(
                        comment.contains("default"),
                        "{p:?}: optional key `{k}` does not state its default"
                    );
                }
            }
        }
        assert!(keys >= 8, "{p:?}: only {keys} keys");
    }
}

#[test]
fn writes_default_file_and_prints_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = daft()
        .current_dir(dir.path())
        .arg("init-config")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".daft.toml")).unwrap(),
        render_config(ProviderKind::Aws, None)
    );
}

#[test]
fn custom_file_provider_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = daft()
        .current_dir(dir.path())
        .args([
            "init-config",
            "my-cluster.toml",
            "--provider",
            "local",
            "--name",
            "demo",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
    // Named and local: it loads as written.
    let c = Config::load(&dir.path().join("my-cluster.toml")).unwrap();
    assert_eq!(c.setup.name, "demo");
    assert_eq!(c.setup.provider.kind(), ProviderKind::Local);
}

#[test]
fn never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(".daft.toml");
    std::fs::write(&f, "mine").unwrap();
    let out = daft()
        .current_dir(dir.path())
        .arg("init-config")
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "mine");
    daft()
        .current_dir(dir.path())
        .args(["init-config", "--force"])
        .assert()
        .success();
    assert_ne!(std::fs::read_to_string(&f).unwrap(), "mine");
}

#[test]
fn launch_template_snapshot_and_it_loads_once_named() {
    let text = daft::templates::render_launch(None);
    insta::assert_snapshot!(text);
    assert!(
        daft::config::launch::LaunchConfig::parse("launch.toml", &text, Path::new(".")).is_err()
    );
    let named = daft::templates::render_launch(Some("train"));
    let c = daft::config::launch::LaunchConfig::parse("launch.toml", &named, Path::new("."))
        .unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(c.name, "train");
    assert_eq!(c.command.as_deref(), Some("python main.py"));
    assert_eq!(c.base, "python:3.11-slim");
    assert!(c.registry.is_none());
}

#[test]
fn init_config_launch_writes_launch_toml() {
    let dir = tempfile::tempdir().unwrap();
    let o = assert_cmd::Command::cargo_bin("daft")
        .unwrap()
        .current_dir(dir.path())
        .args(["init-config", "--launch", "--name", "train"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = std::fs::read_to_string(dir.path().join("launch.toml")).unwrap();
    assert!(text.contains("name = \"train\""), "{text}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("daft launch --dry-run"));
    assert!(!dir.path().join(".daft.toml").exists());
}
