//! `daft init-config [FILE]`: write the commented template.

use std::io::Write;

use anyhow::Context;

use crate::cli::InitConfigArgs;
use crate::config::ProviderKind;
use crate::error::usage;
use crate::templates::render_config;

pub fn run(args: &InitConfigArgs) -> anyhow::Result<()> {
    let provider: ProviderKind = args.provider.into();
    let text = render_config(provider, args.name.as_deref());
    let path = &args.file;
    if path.exists() && !args.force {
        return Err(usage(format!(
            "{} already exists; daft will not overwrite it. Pass --force to replace it, or name another file: daft init-config other.toml",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    println!(
        "{}",
        message(&path.display().to_string(), provider, args.name.is_some())
    );
    Ok(())
}

/// What init-config prints (snapshot-tested).
pub fn message(path: &str, provider: ProviderKind, named: bool) -> String {
    let flag = if path == crate::config::DEFAULT_CONFIG {
        String::new()
    } else {
        format!(" -c {path}")
    };
    let mut todo = Vec::new();
    if !named {
        todo.push("set `name`".to_string());
    }
    match provider {
        ProviderKind::Ssh => todo.push("list your hosts under [setup.ssh]".into()),
        ProviderKind::Aws => todo.push("check `region` and `instance_type`".into()),
        ProviderKind::Local => {}
        ProviderKind::Kubernetes => todo.push(
            "check [setup.kubernetes] (context, namespace, resources); the cluster needs the KubeRay operator"
                .into(),
        ),
        ProviderKind::Slurm => {
            todo.push("set the allocation under [setup.slurm] (partition, time, login)".into())
        }
    }
    let mut s = format!("Wrote {path} (provider \"{}\").\n", provider.as_str());
    if !todo.is_empty() {
        s.push_str(&format!("Edit it: {}.\n", todo.join(", ")));
    }
    s.push_str(&format!(
        "Then run: daft plan{flag}   (to preview)   and   daft up{flag}"
    ));
    s
}
