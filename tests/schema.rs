//! `daft schema` (the JSON Schema editors use) and `daft completions`.

use std::process::Command as StdCommand;

use assert_cmd::Command;

fn daft_out(args: &[&str]) -> String {
    let o = Command::cargo_bin("daft")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "daft {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn schema_is_json_schema_of_both_files() {
    for (args, title) in [
        (&["schema"][..], ".daft.toml"),
        (&["schema", "--launch"][..], "launch.toml"),
    ] {
        let v: serde_json::Value = serde_json::from_str(&daft_out(args)).unwrap();
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert!(v["title"].as_str().unwrap().contains(title), "{v}");
        assert_eq!(v["additionalProperties"], false);
    }
}

#[test]
fn completions_for_each_shell_and_a_clear_error_for_another() {
    let bash = daft_out(&["completions", "bash"]);
    assert!(
        bash.contains("_daft()") && bash.contains("init-config"),
        "{bash}"
    );
    assert!(daft_out(&["completions", "zsh"]).starts_with("#compdef daft"));
    assert!(daft_out(&["completions", "fish"]).contains("complete -c daft"));
    let o = Command::cargo_bin("daft")
        .unwrap()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value 'tcsh'"));
}

/// Validate `doc` (TOML text) against `schema` with Python's jsonschema; its error, if any.
fn validate(schema: &str, doc: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let json: serde_json::Value = toml_edit::de::from_str(doc).unwrap();
    std::fs::write(dir.path().join("s.json"), schema).unwrap();
    std::fs::write(dir.path().join("d.json"), json.to_string()).unwrap();
    let o = StdCommand::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             s = json.load(open(sys.argv[1])); d = json.load(open(sys.argv[2]))\n\
             jsonschema.Draft202012Validator.check_schema(s)\n\
             jsonschema.validate(d, s, cls=jsonschema.Draft202012Validator)",
        ])
        .arg(dir.path().join("s.json"))
        .arg(dir.path().join("d.json"))
        .output()
        .unwrap();
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).to_string())
    }
}

#[test]
#[ignore = "tier 2, run by `bash .ci/test` (`cargo test -- --include-ignored`): needs Python's jsonschema (.ci/setup installs it)"]
fn every_template_passes_its_schema_and_mistakes_do_not() {
    let cluster = daft_out(&["schema"]);
    for p in ["aws", "ssh", "local", "slurm", "kubernetes"] {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        daft_out(&[
            "init-config",
            f.to_str().unwrap(),
            "--provider",
            p,
            "--name",
            "demo",
        ]);
        let text = std::fs::read_to_string(&f).unwrap();
        validate(&cluster, &text).unwrap_or_else(|e| panic!("{p} template: {e}"));
        // The template with every commented key switched on, too (its examples are valid).
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        validate(&cluster, &all)
            .unwrap_or_else(|e| panic!("{p} template, all keys on: {e}\n{all}"));
    }
    let launch = daft_out(&["schema", "--launch"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("launch.toml");
    daft_out(&[
        "init-config",
        "--launch",
        f.to_str().unwrap(),
        "--name",
        "job",
    ]);
    validate(&launch, &std::fs::read_to_string(&f).unwrap()).unwrap();
    // What the schema refuses, as the config checker does: an unknown key, a wrong type, a
    // missing name.
    let e = validate(&cluster, "[setup]\nname = \"x\"\nnumber_of_worker = 2\n").unwrap_err();
    assert!(e.contains("number_of_worker"), "{e}");
    let e = validate(
        &cluster,
        "[setup]\nname = \"x\"\n[setup.aws]\nmax_hourly_cost = \"$5\"\n",
    )
    .unwrap_err();
    assert!(e.contains("is not of type 'number'"), "{e}");
    let e = validate(&cluster, "[setup]\nprovider = \"local\"\n").unwrap_err();
    assert!(e.contains("'name' is a required property"), "{e}");
    let e = validate(
        &cluster,
        "[setup]\nname = \"x\"\n[[setup.aws.worker_groups]]\nname = \"g\"\ninstance_types = [\"g5.xlarge\"]\nspot_fallback = \"no\"\n",
    )
    .unwrap_err();
    assert!(e.contains("is not of type 'boolean'"), "{e}");
}
