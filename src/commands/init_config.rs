//! `daft init-config [FILE]`: write the commented template.

use crate::printer::Printer;
use std::io::Write;

use anyhow::Context;

use crate::cli::InitConfigArgs;
use crate::config::ProviderKind;
use crate::error::usage;
use crate::templates::render_config;

pub fn run(args: &InitConfigArgs, pr: &Printer) -> anyhow::Result<()> {
    let provider: ProviderKind = args.provider.into();
    let launch_default = std::path::PathBuf::from(crate::config::launch::DEFAULT_LAUNCH);
    let (text, path) = if args.launch {
        let path = if args.file == std::path::Path::new(crate::config::DEFAULT_CONFIG) {
            &launch_default
        } else {
            &args.file
        };
        (crate::templates::render_launch(args.name.as_deref()), path)
    } else {
        (render_config(provider, args.name.as_deref()), &args.file)
    };
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
    if args.launch {
        let flag = if path == &launch_default {
            String::new()
        } else {
            format!(" -f {}", path.display())
        };
        crate::outln!(
            pr,
            "Wrote {}.\nEdit it: {}set `registry` under [image] (where the image is pushed).\n\
             Then run: daft launch{flag} --dry-run   (to preview)   and   daft launch{flag}",
            path.display(),
            if args.name.is_some() {
                ""
            } else {
                "set `name`, "
            }
        )?;
        return Ok(());
    }
    crate::outln!(
        pr,
        "{}",
        message(&path.display().to_string(), provider, args.name.is_some())
    )?;
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
