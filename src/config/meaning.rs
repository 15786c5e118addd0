//! Pass 3 of loading a config: values that have the right type but the wrong meaning (every
//! back-end's rules), each a located error.

use super::*;

impl Checker<'_> {
    /// Pass 3: values that have the right type but the wrong meaning.
    pub(super) fn check_meaning(
        &self,
        doc: &Document<String>,
        f: ConfigFile,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let mut s = f.setup;
        let f_slurm_presets = f.slurm.clone().map(|t| t.presets).unwrap_or_default();
        let v = |p: &[&str]| self.value_span(doc, p);
        if v(&["setup", "ssh_user"]).is_none() {
            s.ssh_user = default_ssh_user_for(s.provider);
        }

        // name
        let name = s.name.trim().to_string();
        if name.is_empty() {
            return Err(self
                .err(v(&["setup", "name"]), "`setup.name` is empty")
                .label("empty name")
                .help("name the cluster, for example name = \"my-cluster\""));
        }
        if name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || !name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            return Err(self
                .err(v(&["setup", "name"]), format!("`setup.name` = {name:?} is not a valid cluster name"))
                .label("letters, digits, '-' and '_' only")
                .help("use at most 63 letters, digits, '-' or '_', starting with a letter or digit (it becomes a tag and a directory name)"));
        }

        // number_of_workers
        if s.number_of_workers < 0 || s.number_of_workers > MAX_WORKERS {
            return Err(self
                .err(v(&["setup", "number_of_workers"]), format!(
                    "`setup.number_of_workers` = {} is out of range",
                    s.number_of_workers
                ))
                .label(format!("must be between 0 and {MAX_WORKERS}"))
                .help("set the number of worker nodes besides the head, for example number_of_workers = 2"));
        }
        // Slurm: the head alone in its allocation unless workers are asked for.
        let number_of_workers =
            if s.provider == ProviderKind::Slurm && v(&["setup", "number_of_workers"]).is_none() {
                0
            } else {
                s.number_of_workers as u32
            };
        let scaling = self.check_scaling(doc, &s, number_of_workers)?;
        let autostop = self.check_autostop(doc, &s)?;
        let number_of_workers = scaling.min_workers;

        // region
        if !is_region(&s.region) {
            return Err(self
                .err(
                    v(&["setup", "region"]),
                    format!("`setup.region` = {:?} is not an AWS region name", s.region),
                )
                .label("expected a name like us-west-2")
                .help("use a region code such as us-west-2, eu-central-1 or ap-southeast-1"));
        }
        if s.ssh_user.trim().is_empty() || s.ssh_user.contains(char::is_whitespace) {
            return Err(self
                .err(
                    v(&["setup", "ssh_user"]),
                    "`setup.ssh_user` must be a user name without spaces",
                )
                .label("invalid user name")
                .help("for Amazon Linux use ssh_user = \"ec2-user\", for Ubuntu \"ubuntu\""));
        }
        if s.instance_type.trim().is_empty() || !s.instance_type.contains('.') {
            return Err(self
                .err(
                    v(&["setup", "instance_type"]),
                    format!(
                        "`setup.instance_type` = {:?} is not an EC2 instance type",
                        s.instance_type
                    ),
                )
                .label("expected family.size")
                .help("use an instance type such as m7g.medium or t3.large"));
        }
        if let Some(img) = &s.image_id {
            if !img.starts_with("ami-") || img.len() < 12 {
                return Err(self
                    .err(v(&["setup", "image_id"]), format!("`setup.image_id` = {img:?} is not an AMI id"))
                    .label("expected ami-…")
                    .help("give an AMI id such as ami-0123456789abcdef0, or delete the line to let daft pick a current Amazon Linux image"));
            }
        }
        for (key, val, example) in [
            ("python_version", &s.python_version, "\"3.11\""),
            ("ray_version", &s.ray_version, "\"2.40.0\""),
        ] {
            if let Some(val) = val {
                let ok = !val.is_empty()
                    && val
                        .split('.')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
                if !ok {
                    return Err(self
                        .err(v(&["setup", key]), format!("`setup.{key}` = {val:?} is not a version number"))
                        .label("expected digits and dots")
                        .help(format!("write a version like {key} = {example}, or delete the line for the default")));
                }
            }
        }
        for (i, dep) in s.dependencies.iter().enumerate() {
            if dep.trim().is_empty() || dep.trim_start().starts_with('-') {
                let span = self.element_span(doc, &["setup", "dependencies"], i);
                return Err(self
                    .err(span, format!("`setup.dependencies` entry {:?} is not a requirement", dep))
                    .label("expected a pip requirement")
                    .help("list pip requirements such as \"numpy>=1.26\" or \"pandas\" (no pip options)"));
            }
        }
        for (i, name) in f.run.env_from_local.iter().enumerate() {
            if !is_env_name(name) {
                let span = self.element_span(doc, &["run", "env_from_local"], i);
                return Err(self
                    .err(span, format!("`run.env_from_local` entry {name:?} is not an environment variable name"))
                    .label("expected letters, digits and _, not starting with a digit")
                    .help("list the names of variables set on this machine, for example env_from_local = [\"WANDB_API_KEY\"]"));
            }
        }
        for (i, cmd) in f.run.setup_commands.iter().enumerate() {
            if cmd.trim().is_empty() {
                let span = self.element_span(doc, &["run", "setup_commands"], i);
                return Err(self
                    .err(span, "`run.setup_commands` has an empty command")
                    .label("empty")
                    .help("remove the empty entry"));
            }
        }

        // Values that reach a shell on the nodes: no control characters (a newline could end a
        // quoted block and run the rest as commands). Setup commands are shell code: newlines
        // and tabs are allowed there, nothing else.
        let mut shell_values: Vec<(Option<Range<usize>>, String, &str, bool)> = vec![
            (
                v(&["setup", "ssh_user"]),
                "setup.ssh_user".into(),
                s.ssh_user.as_str(),
                false,
            ),
            (
                v(&["setup", "instance_type"]),
                "setup.instance_type".into(),
                s.instance_type.as_str(),
                false,
            ),
        ];
        for (key, val) in [
            ("ssh_private_key", &s.ssh_private_key),
            ("image_id", &s.image_id),
            ("python_version", &s.python_version),
            ("ray_version", &s.ray_version),
        ] {
            if let Some(val) = val {
                shell_values.push((
                    v(&["setup", key]),
                    format!("setup.{key}"),
                    val.as_str(),
                    false,
                ));
            }
        }
        for (i, dep) in s.dependencies.iter().enumerate() {
            shell_values.push((
                self.element_span(doc, &["setup", "dependencies"], i),
                "setup.dependencies".into(),
                dep.as_str(),
                false,
            ));
        }
        for (i, cmd) in f.run.setup_commands.iter().enumerate() {
            shell_values.push((
                self.element_span(doc, &["run", "setup_commands"], i),
                "run.setup_commands".into(),
                cmd.as_str(),
                true,
            ));
        }
        if let Some(a) = &s.aws {
            if let Some(k) = &a.key_name {
                shell_values.push((
                    v(&["setup", "aws", "key_name"]),
                    "setup.aws.key_name".into(),
                    k.as_str(),
                    false,
                ));
            }
        }
        for (span, key, val, code) in shell_values {
            if let Some(c) = val
                .chars()
                .find(|c| c.is_control() && !(code && (*c == '\n' || *c == '\t')))
            {
                let what = match c {
                    '\n' => "a line break".to_string(),
                    '\r' => "a carriage return".to_string(),
                    '\t' => "a tab".to_string(),
                    c => format!("the control character U+{:04X}", c as u32),
                };
                return Err(self
                    .err(span, format!("`{key}` contains {what}"))
                    .label("control characters are not allowed here")
                    .help(if key == "setup.dependencies" {
                        "write one requirement per list entry, each on one line, for example dependencies = [\"numpy\", \"pandas>=2\"]".to_string()
                    } else {
                        format!("write `{key}` on one line, without control characters")
                    }));
            }
        }
        if !s
            .ssh_user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(self
                .err(
                    v(&["setup", "ssh_user"]),
                    format!("`setup.ssh_user` = {:?} is not a user name", s.ssh_user),
                )
                .label("letters, digits, '.', '_' and '-' only")
                .help("for Amazon Linux use ssh_user = \"ec2-user\", for Ubuntu \"ubuntu\""));
        }
        let command_timeout = match &s.command_timeout {
            None => DEFAULT_COMMAND_TIMEOUT,
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => d,
                _ => {
                    return Err(self
                        .err(v(&["setup", "command_timeout"]), format!("`setup.command_timeout` = {t:?} is not a duration"))
                        .label("expected a duration such as \"30m\" or \"90s\"")
                        .help("give how long one remote set-up step may take, for example command_timeout = \"45m\" (at least 1s)"));
                }
            },
        };
        if !(1..=1000).contains(&s.max_parallel) {
            return Err(self
                .err(v(&["setup", "max_parallel"]), format!("`setup.max_parallel` = {} is out of range", s.max_parallel))
                .label("must be between 1 and 1000")
                .help(format!("set how many nodes daft sets up at once, for example max_parallel = {DEFAULT_MAX_PARALLEL}")));
        }

        // ssh_private_key
        let ssh_key_span = v(&["setup", "ssh_private_key"]);
        let ssh_private_key = match &s.ssh_private_key {
            None => None,
            Some(raw) => {
                let expanded = shellexpand::full(raw).map_err(|e| {
                    self.err(
                        ssh_key_span.clone(),
                        format!("`setup.ssh_private_key` cannot be expanded: {e}"),
                    )
                    .label("bad path")
                    .help("use an absolute path, a path relative to the config file, or ~/…")
                })?;
                let p = PathBuf::from(expanded.as_ref());
                let p = if p.is_relative() { base.join(p) } else { p };
                if let Err(e) = crate::keys::check_private_key_file(&p) {
                    return Err(self
                        .err(
                            ssh_key_span.clone(),
                            format!("`setup.ssh_private_key`: {}", e.title),
                        )
                        .label(e.label)
                        .help(e.help));
                }
                Some(p)
            }
        };

        // provider sections
        let sections = [
            ("ssh", s.ssh.is_some(), ProviderKind::Ssh),
            ("local", s.local.is_some(), ProviderKind::Local),
            ("aws", s.aws.is_some(), ProviderKind::Aws),
            ("slurm", s.slurm.is_some(), ProviderKind::Slurm),
            (
                "kubernetes",
                s.kubernetes.is_some(),
                ProviderKind::Kubernetes,
            ),
        ];
        for (sec, present, kind) in sections {
            if present && kind != s.provider {
                return Err(self
                    .err(
                        self.key_span(doc, &["setup", sec])
                            .or_else(|| v(&["setup", sec])),
                        format!(
                            "[setup.{sec}] does not match provider = \"{}\"",
                            s.provider.as_str()
                        ),
                    )
                    .label(format!("only read when provider = \"{sec}\""))
                    .help(format!(
                        "set provider = \"{sec}\" to use these settings, or remove [setup.{sec}]"
                    )));
            }
        }
        // The provider's own section (another provider's was refused above).
        let provider = match s.provider {
            ProviderKind::Local => ProviderSetup::Local(self.check_local(doc, &s)?),
            ProviderKind::Ssh => ProviderSetup::Ssh(self.check_ssh(doc, &s)?),
            ProviderKind::Aws => ProviderSetup::Aws(self.check_aws(doc, &s)?),
            // [setup.slurm]: values that become `#SBATCH` lines: one line each, flags as flags.
            ProviderKind::Slurm => {
                ProviderSetup::Slurm(self.check_slurm(doc, &s, &f_slurm_presets)?)
            }
            ProviderKind::Kubernetes => {
                ProviderSetup::Kubernetes(self.check_kubernetes(doc, &s, &name)?)
            }
        };
        // [run] sync: existing directories, each under a name of its own.
        let mut run = f.run.clone();
        let mut names = std::collections::BTreeSet::new();
        for (i, raw) in f.run.sync.iter().enumerate() {
            let span = self.element_span(doc, &["run", "sync"], i);
            let expanded = shellexpand::tilde(raw);
            let p = PathBuf::from(expanded.as_ref());
            let p = if p.is_relative() { base.join(p) } else { p };
            if !p.is_dir() {
                return Err(self
                    .err(span, format!("`run.sync` entry {raw:?} is not a directory"))
                    .label(format!("{} does not exist or is not a directory", p.display()))
                    .help("list directories to send with every job, relative to the config file (\"../shared-lib\")"));
            }
            let name = p
                .canonicalize()
                .ok()
                .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(self
                    .err(span, format!("`run.sync` entry {raw:?} has the same name ({name:?}) as another"))
                    .label("names must differ")
                    .help("jobs find each synced directory under its own name in $DAFT_SYNC_DIR: rename one"));
            }
            run.sync_dirs.push(p);
        }
        Ok(Config {
            path: PathBuf::from(self.file),
            display_path: self.file.to_string(),
            setup: Setup {
                name,
                ssh_user: s.ssh_user,
                ssh_private_key,
                number_of_workers,
                scaling,
                autostop,
                dependencies: s.dependencies,
                python_version: s.python_version,
                ray_version: s.ray_version,
                command_timeout,
                max_parallel: s.max_parallel as usize,
                provider,
            },
            run,
            source: self.source.to_string(),
            ssh_key_span,
        })
    }
}
