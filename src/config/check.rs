//! The first pass of every config file daft reads (`.daft.toml`, `launch.toml`): its shape.
//! Every table and key is known (else "did you mean"), every value has the right type, no
//! template placeholder is left; errors are located at the key.

use super::*;

pub(crate) struct Checker<'a> {
    pub(crate) file: &'a str,
    pub(crate) source: &'a str,
    /// The file's keys (`.daft.toml`'s [`KEYS`], or `launch.toml`'s).
    pub(crate) keys: &'static [schema::Key],
}

pub(super) use crate::error::item_span;

/// A POSIX environment variable name: letters, digits and `_`, not starting with a digit.
pub fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a date-time",
        Item::Value(Value::Array(_)) => "a list",
        Item::Value(Value::InlineTable(_)) | Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "a list of tables",
        Item::None => "nothing",
    }
}

impl Checker<'_> {
    pub(crate) fn err(&self, span: Option<Range<usize>>, title: impl Into<String>) -> ConfigError {
        crate::error::Located {
            file: self.file,
            source: self.source,
        }
        .err(span, title)
    }

    fn doc_key_span(&self, table: &toml_edit::Table, key: &str) -> Option<Range<usize>> {
        crate::error::key_span(table, key)
    }

    /// Pass 1: known keys, right types, no placeholders.
    pub(crate) fn check_shape(
        &self,
        table: &toml_edit::Table,
        path: &[&str],
    ) -> Result<(), ConfigError> {
        let here = path.join(".");
        let known: Vec<&schema::Key> = self.keys.iter().filter(|k| k.parent == here).collect();
        for (key, item) in table.iter() {
            let full = if here.is_empty() {
                key.to_string()
            } else {
                format!("{here}.{key}")
            };
            let Some(spec) = known.iter().find(|k| k.name == key) else {
                let names: Vec<&str> = known.iter().map(|k| k.name).collect();
                let what = if here.is_empty() {
                    "top-level table".to_string()
                } else {
                    format!("key in [{here}]")
                };
                let mut e = self
                    .err(
                        self.doc_key_span(table, key),
                        format!("unknown {what}: `{key}`"),
                    )
                    .label("not a daft setting");
                let valid = names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                e = match suggest(key, &names) {
                    Some(s) => e.help(format!("did you mean `{s}`? (valid here: {valid})")),
                    None => e.help(format!("remove it; valid here: {valid}")),
                };
                return Err(e);
            };
            let span = item_span(item).or_else(|| self.doc_key_span(table, key));
            let ok = match (spec.ty, item) {
                (Ty::Table | Ty::Sweep, Item::Table(_)) => true,
                (Ty::Sweep, Item::Value(Value::InlineTable(_))) => true,
                (Ty::Table, Item::Value(Value::InlineTable(_))) => true,
                (Ty::Str, Item::Value(Value::String(_))) => true,
                (Ty::Int, Item::Value(Value::Integer(_))) => true,
                (Ty::Bool, Item::Value(Value::Boolean(_))) => true,
                (Ty::Num, Item::Value(Value::Integer(_) | Value::Float(_))) => true,
                (Ty::StrMap, Item::Table(_) | Item::Value(Value::InlineTable(_))) => {
                    let t = match item {
                        Item::Table(t) => t.clone(),
                        Item::Value(Value::InlineTable(t)) => t.clone().into_table(),
                        _ => unreachable!("matched above"),
                    };
                    for (k, v) in t.iter() {
                        if !matches!(v, Item::Value(Value::String(_))) {
                            return Err(self
                                .err(
                                    item_span(v).or_else(|| self.doc_key_span(&t, k)),
                                    format!("`{full}.{k}` must be a string, not {}", type_name(v)),
                                )
                                .label("expected a string")
                                .help(format!("quote the value, for example {}", spec.example)));
                        }
                        if full == "run.env" && !is_env_name(k) {
                            return Err(self
                                .err(
                                    self.doc_key_span(&t, k),
                                    format!("`{full}.{k}` is not an environment variable name"),
                                )
                                .label("expected letters, digits and _, not starting with a digit")
                                .help("name it like WANDB_PROJECT"));
                        }
                    }
                    // Its keys are the user's: not checked against the schema below.
                    continue;
                }
                (Ty::Presets, Item::Table(presets)) => {
                    // Each preset holds [setup.slurm] settings.
                    for (name, preset) in presets.iter() {
                        let Item::Table(t) = preset else {
                            return Err(self
                                .err(item_span(preset).or_else(|| self.doc_key_span(presets, name)), format!("`{full}.{name}` must be a table"))
                                .label("expected a table")
                                .help(format!("write it as [{full}.{name}] with partition, time, … as in [setup.slurm]")));
                        };
                        if t.contains_key("preset") || t.contains_key("login") {
                            let k = if t.contains_key("preset") {
                                "preset"
                            } else {
                                "login"
                            };
                            return Err(self
                                .err(
                                    self.doc_key_span(t, k),
                                    format!("`{k}` cannot be part of a preset"),
                                )
                                .label("not a preset setting")
                                .help(format!("set `{k}` in [setup.slurm]")));
                        }
                        let known: Vec<&str> = KEYS
                            .iter()
                            .filter(|k| {
                                k.parent == "setup.slurm" && !matches!(k.name, "preset" | "login")
                            })
                            .map(|k| k.name)
                            .collect();
                        for (k, _) in t.iter() {
                            if !known.contains(&k) {
                                let valid = known
                                    .iter()
                                    .map(|n| format!("`{n}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                let e = self
                                    .err(
                                        self.doc_key_span(t, k),
                                        format!("unknown key in [{full}.{name}]: `{k}`"),
                                    )
                                    .label("not a preset setting");
                                return Err(match suggest(k, &known) {
                                    Some(s) => {
                                        e.help(format!("did you mean `{s}`? (valid here: {valid})"))
                                    }
                                    None => e.help(format!("remove it; valid here: {valid}")),
                                });
                            }
                        }
                        // (Types and placeholders as in [setup.slurm].)
                        self.check_shape(t, &["setup", "slurm"])?;
                    }
                    continue;
                }
                (Ty::Tables, Item::ArrayOfTables(tables)) => {
                    let mut inner: Vec<&str> = path.to_vec();
                    inner.push(key);
                    for t in tables.iter() {
                        self.check_shape(t, &inner)?;
                    }
                    continue;
                }
                (Ty::NumMap, Item::Table(_) | Item::Value(Value::InlineTable(_))) => {
                    let t = match item {
                        Item::Table(t) => t.clone(),
                        Item::Value(Value::InlineTable(t)) => t.clone().into_table(),
                        _ => unreachable!("matched above"),
                    };
                    for (k, v) in t.iter() {
                        if !matches!(v, Item::Value(Value::Integer(_) | Value::Float(_))) {
                            return Err(self
                                .err(
                                    item_span(v).or_else(|| self.doc_key_span(&t, k)),
                                    format!("`{full}.{k}` must be a number, not {}", type_name(v)),
                                )
                                .label("expected a number")
                                .help(format!("write it like {}", spec.example)));
                        }
                    }
                    continue;
                }
                (Ty::StrList, Item::Value(Value::Array(a))) => {
                    for v in a.iter() {
                        if !matches!(v, Value::String(_)) {
                            return Err(self
                                .err(v.span(), format!("`{full}` must be a list of strings"))
                                .label(format!("this is {}", type_name(&Item::Value(v.clone()))))
                                .help(format!("quote each entry, for example {}", spec.example)));
                        }
                    }
                    true
                }
                _ => false,
            };
            if !ok {
                let want = match spec.ty {
                    Ty::Table => "a table",
                    Ty::Str => "a string",
                    Ty::Num => "a number",
                    Ty::Int => "an integer",
                    Ty::Bool => "true or false",
                    Ty::StrList => "a list of strings",
                    Ty::StrMap => "a table of strings",
                    Ty::Presets => "a table of presets",
                    Ty::Sweep => "a [sweep] table",
                    Ty::Tables => "a list of tables",
                    Ty::NumMap => "a table of numbers",
                };
                return Err(self
                    .err(
                        span,
                        format!("`{full}` must be {want}, not {}", type_name(item)),
                    )
                    .label(format!("expected {want}"))
                    .help(format!("write it like {}", spec.example)));
            }
            if full == "setup.provider" {
                if let Item::Value(Value::String(v)) = item {
                    let val = v.value().as_str();
                    if !ProviderKind::ALL.contains(&val) && !is_placeholder(val) {
                        let mut e = self
                            .err(
                                v.span(),
                                format!("`setup.provider` = {val:?} is not a provider daft knows"),
                            )
                            .label(
                                "expected \"aws\", \"ssh\", \"local\", \"slurm\" or \"kubernetes\"",
                            );
                        e = match suggest(val, &ProviderKind::ALL) {
                            Some(s) => e.help(format!("did you mean \"{s}\"? daft runs clusters on aws (EC2), ssh (your own hosts), local (this machine), slurm (a Slurm allocation) or kubernetes (a KubeRay cluster)")),
                            None => e.help("use \"aws\" (EC2), \"ssh\" (your own hosts), \"local\" (this machine), \"slurm\" (a Slurm allocation) or \"kubernetes\" (a KubeRay cluster)"),
                        };
                        return Err(e);
                    }
                }
            }
            // Placeholders left from `init-config`.
            let strings: Vec<&toml_edit::Formatted<String>> = match item {
                Item::Value(Value::String(s)) => vec![s],
                Item::Value(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| {
                        if let Value::String(s) = v {
                            Some(s)
                        } else {
                            None
                        }
                    })
                    .collect(),
                _ => vec![],
            };
            for s in strings {
                if is_placeholder(s.value()) {
                    let help = if s.value().contains(" - required") {
                        format!("replace it with a real value, for example {}", spec.example)
                    } else {
                        format!(
                            "set a value (for example {}) or delete the line to use the default",
                            spec.example
                        )
                    };
                    return Err(self
                        .err(
                            s.span(),
                            format!("`{full}` still holds the template placeholder"),
                        )
                        .label("placeholder from `daft init-config`")
                        .help(help));
                }
            }
            match item {
                // (A sweep is checked by its own loader, with the same located errors.)
                _ if spec.ty == Ty::Sweep => {}
                Item::Table(t) => {
                    let mut p = path.to_vec();
                    p.push(key);
                    self.check_shape(t, &p)?;
                }
                Item::Value(Value::InlineTable(t)) => {
                    let mut p = path.to_vec();
                    p.push(key);
                    self.check_shape(&t.clone().into_table(), &p)?;
                }
                _ => {}
            }
        }
        // Required keys.
        for spec in known.iter().filter(|k| k.required) {
            if !table.contains_key(spec.name) {
                let (span, title) = if here.is_empty() {
                    (
                        Some(0..0),
                        format!("the config has no [{}] table", spec.name),
                    )
                } else {
                    (
                        table.span().or(Some(0..0)),
                        format!("[{here}] is missing the required key `{}`", spec.name),
                    )
                };
                let help = if spec.ty == Ty::Table {
                    format!(
                        "add a {} table; `daft init-config` writes a complete example",
                        spec.example
                    )
                } else {
                    format!("add `{} = {}`", spec.name, spec.example)
                };
                return Err(self.err(span, title).label("required").help(help));
            }
        }
        Ok(())
    }

    pub(crate) fn value_span(&self, doc: &Document<String>, path: &[&str]) -> Option<Range<usize>> {
        let mut item = doc.as_item();
        for p in path {
            item = item.get(p)?;
        }
        item_span(item)
    }

    /// The span of entry `i` of the list at `path`.
    pub(crate) fn element_span(
        &self,
        doc: &Document<String>,
        path: &[&str],
        i: usize,
    ) -> Option<Range<usize>> {
        let mut item = doc.as_item();
        for p in path {
            item = item.get(p)?;
        }
        item.as_array()?.get(i)?.span()
    }

    pub(super) fn key_span(&self, doc: &Document<String>, path: &[&str]) -> Option<Range<usize>> {
        let (last, parents) = path.split_last()?;
        let mut item = doc.as_item();
        for p in parents {
            item = item.get(p)?;
        }
        match item {
            Item::Table(t) => self.doc_key_span(t, last),
            Item::Value(Value::InlineTable(t)) => t.key(last).and_then(|k| k.span()),
            _ => None,
        }
    }
}
