//! Templates shipped in `templates/`, compiled into the binary.

use toml_edit::{DocumentMut, Item};

use crate::config::ProviderKind;

pub const CONFIG: &str = include_str!("../templates/daft.toml");
pub const SECTION_SSH: &str = include_str!("../templates/section-ssh.toml");
pub const SECTION_LOCAL: &str = include_str!("../templates/section-local.toml");
pub const SECTION_AWS: &str = include_str!("../templates/section-aws.toml");
pub const SECTION_SLURM: &str = include_str!("../templates/section-slurm.toml");
pub const SECTION_KUBERNETES: &str = include_str!("../templates/section-kubernetes.toml");
pub const SLURM_BATCH: &str = include_str!("../templates/slurm.sbatch");
pub const BOOTSTRAP: &str = include_str!("../templates/bootstrap.sh");
pub const JOBS: &str = include_str!("../templates/jobs.py");
pub const LAUNCH: &str = include_str!("../templates/launch.toml");

/// The `launch.toml` template, optionally with the job's name filled in.
pub fn render_launch(name: Option<&str>) -> String {
    match name {
        Some(n) => LAUNCH.replacen("\"$NAME - required\"", &format!("{n:?}"), 1),
        None => LAUNCH.to_string(),
    }
}

/// Keys of `[setup]` that mean nothing to a provider, left out of its template.
fn irrelevant_keys(provider: ProviderKind) -> &'static [&'static str] {
    // Ray's autoscaler moves the count between min_workers and max_workers on Kubernetes only
    // so far (the others refuse the keys at load).
    // Autostop: local, SSH hosts and AWS so far.
    match provider {
        ProviderKind::Aws => &[
            "min_workers",
            "max_workers",
            "idle_timeout",
            "upscaling_speed",
        ],
        ProviderKind::Ssh => &[
            "region",
            "instance_type",
            "image_id",
            "min_workers",
            "max_workers",
            "idle_timeout",
            "upscaling_speed",
        ],
        ProviderKind::Local => &[
            "region",
            "instance_type",
            "image_id",
            "ssh_user",
            "ssh_private_key",
            "min_workers",
            "max_workers",
            "idle_timeout",
            "upscaling_speed",
        ],
        ProviderKind::Slurm => &[
            "region",
            "instance_type",
            "image_id",
            "number_of_workers",
            "min_workers",
            "max_workers",
            "idle_timeout",
            "upscaling_speed",
        ],
        ProviderKind::Kubernetes => &[
            "region",
            "instance_type",
            "image_id",
            "ssh_user",
            "ssh_private_key",
            "autostop",
        ],
    }
}

/// The `.daft.toml` template for a provider, optionally with the cluster name filled in.
pub fn render_config(provider: ProviderKind, name: Option<&str>) -> String {
    let mut doc: DocumentMut = CONFIG.parse().expect("templates/daft.toml is valid TOML");
    let setup = doc["setup"].as_table_mut().expect("[setup] in template");
    if let Some(v) = setup.get_mut("provider").and_then(Item::as_value_mut) {
        let decor = v.decor().clone();
        *v = provider.as_str().into();
        *v.decor_mut() = decor;
    }
    if let Some(name) = name {
        let v = setup
            .get_mut("name")
            .and_then(Item::as_value_mut)
            .expect("name in template");
        let decor = v.decor().clone();
        *v = name.into();
        *v.decor_mut() = decor;
    }
    let mut text = doc.to_string();
    // Commented-out keys are comments, not keys: drop their lines (and the comment above) by hand.
    for key in irrelevant_keys(provider) {
        text = drop_key_block(&text, key);
    }
    if matches!(provider, ProviderKind::Ssh | ProviderKind::Slurm) {
        // Your own machines: the user is yours, as plain `ssh` would take it.
        text = text.replace(
            "# optional, defaults to \"ec2-user\": the user daft logs in as over SSH\nssh_user = \"ec2-user\"",
            "# optional, defaults to your user name on this machine ($USER): the user daft logs in as over SSH\n# ssh_user = \"alice\"",
        );
    }
    let section = match provider {
        ProviderKind::Aws => SECTION_AWS,
        ProviderKind::Ssh => SECTION_SSH,
        ProviderKind::Local => SECTION_LOCAL,
        ProviderKind::Slurm => SECTION_SLURM,
        ProviderKind::Kubernetes => SECTION_KUBERNETES,
    };
    // Sub-tables of [setup] go right after [setup]'s keys, before [run].
    let at = text.find("\n[run]").map(|i| i + 1).unwrap_or(text.len());
    text.insert_str(at, &format!("{section}\n"));
    // The result must stay valid TOML.
    debug_assert!(text.parse::<DocumentMut>().is_ok());
    text
}

/// Remove `key = …` (or `# key = …`) and the comment lines just above it.
fn drop_key_block(text: &str, key: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let is_key = |l: &str| {
        let l = l.trim_start_matches('#').trim_start();
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='))
    };
    let Some(i) = lines.iter().position(|l| is_key(l)) else {
        return text.to_string();
    };
    let mut start = i;
    while start > 0
        && (lines[start - 1].starts_with("# optional")
            || lines[start - 1].starts_with("# required"))
    {
        start -= 1;
    }
    let mut out: Vec<&str> = lines[..start].to_vec();
    out.extend_from_slice(&lines[i + 1..]);
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// The templates show the key list's keys, and no other.
#[cfg(test)]
mod key_list_tests {
    use crate::config::drift::{path, template_keys, NOT_IN_TEMPLATES};
    use crate::config::{launch::LAUNCH_KEYS, KEYS};

    #[test]
    fn the_templates_show_every_key_but_the_documented_few_and_no_other() {
        let mut shown = template_keys(super::CONFIG);
        for section in [
            super::SECTION_AWS,
            super::SECTION_SSH,
            super::SECTION_LOCAL,
            super::SECTION_SLURM,
            super::SECTION_KUBERNETES,
        ] {
            shown.extend(template_keys(section));
        }
        let listed: std::collections::BTreeSet<String> = KEYS.iter().map(path).collect();
        let unknown: Vec<&String> = shown.difference(&listed).collect();
        assert!(
            unknown.is_empty(),
            "the templates show keys the list lacks: {unknown:?}"
        );
        let missing: Vec<&String> = listed
            .difference(&shown)
            .filter(|k| !NOT_IN_TEMPLATES.contains(&k.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "keys no template shows (add them, or to NOT_IN_TEMPLATES): {missing:?}"
        );
        let readme = include_str!("../README.md");
        for k in NOT_IN_TEMPLATES {
            assert!(listed.contains(*k), "NOT_IN_TEMPLATES names {k}, not a key");
            assert!(
                !shown.contains(*k),
                "{k} is in a template: drop it from NOT_IN_TEMPLATES"
            );
            let name = k.rsplit('.').next().unwrap_or(k);
            assert!(
                readme.contains(&format!("`{k}`"))
                    || readme.contains(&format!("`{name}`"))
                    || readme.contains(&format!("[{k}")),
                "{k} is in no template and not in the README's reference"
            );
        }
    }

    #[test]
    fn the_launch_template_shows_every_launch_key_and_no_other() {
        let listed: std::collections::BTreeSet<String> = LAUNCH_KEYS.iter().map(path).collect();
        let shown = template_keys(super::LAUNCH);
        // `[sweep]` has its own reference (the sweep file's keys); every other key is shown.
        let missing: Vec<&String> = listed
            .difference(&shown)
            .filter(|k| *k != "sweep")
            .collect();
        assert!(
            missing.is_empty(),
            "launch.toml's template lacks {missing:?}"
        );
        let unknown: Vec<&String> = shown.difference(&listed).collect();
        assert!(
            unknown.is_empty(),
            "launch.toml's template shows unknown keys {unknown:?}"
        );
    }
}
