//! Sweeps: a `[sweep]` table (its own file, or in `launch.toml`) that makes one job per variant.
//!
//! ```toml
//! [sweep]
//! name = "lr"            # optional: the file's name; jobs are named <name>-<index>
//! method = "grid"        # grid (cartesian product of lists), random, or list
//! max_parallel = 2       # jobs at once (default 4)
//! repeat = 3             # optional: each variant N times, with seed = 0..N-1
//! args = true            # optional: also pass the variant as --key=value arguments
//! samples = 10           # random: how many variants
//! seed = 7               # random: the same seed gives the same variants
//! [sweep.parameters]     # grid: lists; random: { uniform = [a, b] }, { log_uniform = [a, b] },
//! lr = [0.1, 0.01]       #   { choice = [...] }, or a fixed value
//! [[sweep.variants]]     # list: the variants themselves
//! lr = 0.1
//! ```
//! The file is checked as strictly as the config: every error names the file, line and key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde_json::Value as Json;
use toml_edit::{Item, Table, Value};

use crate::error::{item_span, ConfigError};

#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub name: String,
    pub max_parallel: usize,
    pub args: bool,
    /// Every variant, in order: parameter name → value.
    pub variants: Vec<BTreeMap<String, Json>>,
    /// The parameters' spaces (grid: each one's values; random: its distribution; a list
    /// sweep has none): what a Katib Experiment searches.
    pub space: Vec<(String, Dist)>,
    /// `katib = true` (in `launch.toml`): one Katib Experiment instead of one job per variant.
    pub katib: Option<KatibSpec>,
}

/// A Katib Experiment's settings, from `[sweep]`.
#[derive(Debug, Clone, PartialEq)]
pub struct KatibSpec {
    /// The metric the trials print (`name=value` on stdout).
    pub objective: String,
    pub maximize: bool,
    pub goal: Option<f64>,
    /// "grid" or "random".
    pub algorithm: &'static str,
    /// Trials in all (the variants a grid has, or `samples`).
    pub max_trials: usize,
    pub max_failed: usize,
}

/// The most variants one sweep may make (a typo in a grid should not submit a million jobs).
pub const MAX_VARIANTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    Grid,
    Random,
    List,
}

struct Checker<'a> {
    at: crate::error::Located<'a>,
}

impl Checker<'_> {
    fn err(&self, span: Option<Range<usize>>, title: impl Into<String>) -> ConfigError {
        self.at.err(span, title)
    }

    fn key_span(&self, t: &Table, key: &str) -> Option<Range<usize>> {
        crate::error::key_span(t, key)
    }

    fn json(&self, v: &Value, key: &str) -> Result<Json, ConfigError> {
        Ok(match v {
            Value::String(s) => Json::String(s.value().clone()),
            Value::Integer(i) => Json::from(*i.value()),
            Value::Float(f) => serde_json::Number::from_f64(*f.value())
                .map(Json::Number)
                .ok_or_else(|| {
                    self.err(v.span(), format!("`{key}` is not a finite number"))
                        .label("not finite")
                        .help("use a finite number")
                })?,
            Value::Boolean(b) => Json::Bool(*b.value()),
            _ => {
                return Err(self
                    .err(
                        v.span(),
                        format!("`{key}` must be a string, number or boolean"),
                    )
                    .label("not a plain value")
                    .help("a variant's values are strings, numbers or booleans"))
            }
        })
    }

    /// A parameter's list of values: at least one, each a plain value.
    fn values(&self, a: &toml_edit::Array, key: &str) -> Result<Vec<Json>, ConfigError> {
        if a.is_empty() {
            return Err(self
                .err(a.span(), format!("`{key}` has no values"))
                .label("empty list")
                .help("list at least one value"));
        }
        a.iter().map(|v| self.json(v, key)).collect()
    }

    fn number(&self, v: &Value, key: &str) -> Result<f64, ConfigError> {
        match v {
            Value::Integer(i) => Ok(*i.value() as f64),
            Value::Float(f) if f.value().is_finite() => Ok(*f.value()),
            _ => Err(self
                .err(v.span(), format!("`{key}` must be a number"))
                .label("expected a number")
                .help("write the range's ends as numbers, for example [0.0, 0.5]")),
        }
    }
}

fn param_name_ok(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// One parameter's space: a fixed value, a range, or values to choose from.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    Fixed(Json),
    Uniform(f64, f64),
    LogUniform(f64, f64),
    Choice(Vec<Json>),
}

pub fn load(path: &Path) -> Result<Sweep, ConfigError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        source: None,
        span: None,
        title: format!("cannot read the sweep file: {e}"),
        label: String::new(),
        help: Some("check the path given to --sweep".into()),
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    parse(&file, &source, &stem)
}

/// Validate a sweep's text and make its variants.
pub fn parse(file: &str, source: &str, default_name: &str) -> Result<Sweep, ConfigError> {
    let cx = Checker {
        at: crate::error::Located { file, source },
    };
    // (`Document` keeps every item's place in the text, for located errors.)
    let doc = toml_edit::Document::parse(source.to_string()).map_err(|e| {
        let msg = e.message().trim().to_string();
        let first = msg.lines().next().unwrap_or("invalid TOML").to_string();
        cx.err(e.span(), format!("this is not valid TOML: {first}"))
            .label(first)
            .help("fix the TOML syntax at the marked place")
    })?;
    let root = doc.as_table();
    let Some(sweep) = root.get("sweep") else {
        return Err(cx
            .err(Some(0..0), "the file has no [sweep] table")
            .label("expected [sweep]")
            .help("add a [sweep] table with `method` and `parameters` (or `variants`)"));
    };
    let Some(sweep) = sweep.as_table_like() else {
        return Err(cx
            .err(item_span(sweep), "`sweep` must be a table")
            .label("not a table")
            .help("write it as [sweep]"));
    };
    let sweep_table: Table = match root.get("sweep") {
        Some(Item::Table(t)) => t.clone(),
        Some(Item::Value(Value::InlineTable(t))) => t.clone().into_table(),
        _ => unreachable!("checked above"),
    };
    let _ = sweep;
    const KNOWN: [&str; 14] = [
        "katib",
        "objective",
        "direction",
        "goal",
        "max_failed",
        "name",
        "method",
        "max_parallel",
        "repeat",
        "args",
        "samples",
        "seed",
        "parameters",
        "variants",
    ];
    for (k, _) in sweep_table.iter() {
        if !KNOWN.contains(&k) {
            let valid = KNOWN.map(|n| format!("`{n}`")).join(", ");
            return Err(cx
                .err(
                    cx.key_span(&sweep_table, k),
                    format!("unknown key in [sweep]: `{k}`"),
                )
                .label("not a sweep setting")
                .help(format!("remove it; valid here: {valid}")));
        }
    }
    let string = |key: &str| -> Result<Option<String>, ConfigError> {
        match sweep_table.get(key) {
            None => Ok(None),
            Some(Item::Value(Value::String(s))) => Ok(Some(s.value().clone())),
            Some(other) => Err(cx
                .err(item_span(other), format!("`sweep.{key}` must be a string"))
                .label("expected a string")
                .help(format!("write it like {key} = \"...\""))),
        }
    };
    let int = |key: &str, min: i64, max: i64, default: i64| -> Result<i64, ConfigError> {
        match sweep_table.get(key) {
            None => Ok(default),
            Some(Item::Value(Value::Integer(i))) if (min..=max).contains(i.value()) => {
                Ok(*i.value())
            }
            Some(other) => Err(cx
                .err(
                    item_span(other),
                    format!("`sweep.{key}` must be a whole number from {min} to {max}"),
                )
                .label(format!("expected {min}..={max}"))
                .help(format!("write it like {key} = {}", default.max(min)))),
        }
    };
    let name = string("name")?.unwrap_or_else(|| default_name.to_string());
    if !param_name_ok(&name) {
        return Err(cx
            .err(
                sweep_table.get("name").and_then(item_span),
                format!("`sweep.name` = {name:?} cannot name jobs"),
            )
            .label("letters, digits, `-`, `_` and `.` only")
            .help("name it like \"lr-sweep\""));
    }
    let method = match string("method")?.as_deref() {
        Some("grid") => Method::Grid,
        Some("random") => Method::Random,
        Some("list") => Method::List,
        None if sweep_table.contains_key("variants") => Method::List,
        None => Method::Grid,
        Some(other) => {
            return Err(cx
                .err(
                    sweep_table.get("method").and_then(item_span),
                    format!("`sweep.method` = {other:?} is not a sweep method"),
                )
                .label("expected \"grid\", \"random\" or \"list\"")
                .help("grid: every combination of lists; random: `samples` draws; list: the `variants` given"))
        }
    };
    let max_parallel = int("max_parallel", 1, 1000, 4)? as usize;
    let repeat = int("repeat", 1, 1000, 1)? as usize;
    let seed = int("seed", 0, i64::MAX, 0)? as u64;
    let args = match sweep_table.get("args") {
        None => false,
        Some(Item::Value(Value::Boolean(b))) => *b.value(),
        Some(other) => {
            return Err(cx
                .err(item_span(other), "`sweep.args` must be true or false")
                .label("expected a boolean")
                .help("write args = true to pass the variant as --key=value arguments"))
        }
    };
    let params: Option<Table> = match sweep_table.get("parameters") {
        None => None,
        Some(Item::Table(t)) => Some(t.clone()),
        Some(Item::Value(Value::InlineTable(t))) => Some(t.clone().into_table()),
        Some(other) => {
            return Err(cx
                .err(item_span(other), "`sweep.parameters` must be a table")
                .label("expected a table")
                .help("write it as [sweep.parameters] with one key per parameter"))
        }
    };
    if let Some(p) = &params {
        for (k, _) in p.iter() {
            if !param_name_ok(k) {
                return Err(cx
                    .err(
                        cx.key_span(p, k),
                        format!("`{k}` cannot be a parameter name"),
                    )
                    .label("letters, digits, `-`, `_` and `.` only")
                    .help("name parameters like learning_rate"));
            }
        }
    }
    let need_params = |what: &str| {
        cx.err(
            cx.key_span(&sweep_table, "method").or(Some(0..0)),
            format!("a {what} sweep needs [sweep.parameters]"),
        )
        .label("no parameters")
        .help("add [sweep.parameters] with one key per parameter")
    };
    let mut space: Vec<(String, Dist)> = Vec::new();
    let mut samples_asked = 0usize;
    let mut variants: Vec<BTreeMap<String, Json>> = match method {
        Method::Grid => {
            let p = params.ok_or_else(|| need_params("grid"))?;
            if p.is_empty() {
                return Err(need_params("grid"));
            }
            let mut out = vec![BTreeMap::new()];
            for (k, item) in p.iter() {
                let values: Vec<Json> = match item {
                    Item::Value(Value::Array(a)) => cx.values(a, k)?,
                    Item::Value(v) => vec![cx.json(v, k)?],
                    other => {
                        return Err(cx
                            .err(item_span(other), format!("`{k}` must be a list of values"))
                            .label("expected a list")
                            .help(format!("write it like {k} = [0.1, 0.01]")))
                    }
                };
                space.push((k.to_string(), Dist::Choice(values.clone())));
                if out.len().saturating_mul(values.len()) > MAX_VARIANTS {
                    return Err(cx
                        .err(
                            item_span(item),
                            format!("the grid has more than {MAX_VARIANTS} variants"),
                        )
                        .label("too many combinations")
                        .help("use fewer values, or method = \"random\" with `samples`"));
                }
                out = out
                    .into_iter()
                    .flat_map(|base| {
                        values.iter().map(move |v| {
                            let mut m = base.clone();
                            m.insert(k.to_string(), v.clone());
                            m
                        })
                    })
                    .collect();
            }
            out
        }
        Method::Random => {
            let p = params.ok_or_else(|| need_params("random"))?;
            let samples = match sweep_table.get("samples") {
                Some(Item::Value(Value::Integer(i)))
                    if (1..=MAX_VARIANTS as i64).contains(i.value()) =>
                {
                    *i.value() as usize
                }
                Some(other) => {
                    return Err(cx
                        .err(
                            item_span(other),
                            format!(
                                "`sweep.samples` must be a whole number from 1 to {MAX_VARIANTS}"
                            ),
                        )
                        .label("expected a count")
                        .help("write it like samples = 10"))
                }
                None => {
                    return Err(cx
                        .err(
                            cx.key_span(&sweep_table, "method"),
                            "a random sweep needs `samples`",
                        )
                        .label("how many variants?")
                        .help("add samples = 10 to [sweep]"))
                }
            };
            let mut dists = Vec::new();
            for (k, item) in p.iter() {
                let dist = match item {
                    Item::Value(Value::InlineTable(t)) => {
                        let keys: Vec<&str> = t.iter().map(|(k, _)| k).collect();
                        let [kind] = keys.as_slice() else {
                            return Err(cx
                                .err(item.span(), format!("`{k}` must have exactly one of uniform, log_uniform or choice"))
                                .label("one distribution")
                                .help(format!("write it like {k} = {{ uniform = [0.0, 0.5] }}")));
                        };
                        let v = t.get(kind).expect("listed key");
                        let pair = |v: &Value| -> Result<(f64, f64), ConfigError> {
                            match v {
                                Value::Array(a) if a.len() == 2 => {
                                    let lo = cx.number(a.get(0).expect("len 2"), k)?;
                                    let hi = cx.number(a.get(1).expect("len 2"), k)?;
                                    if lo >= hi {
                                        return Err(cx
                                            .err(v.span(), format!("`{k}`: the range's low end is not below its high end"))
                                            .label("expected [low, high]")
                                            .help("write the smaller number first"));
                                    }
                                    Ok((lo, hi))
                                }
                                _ => Err(cx
                                    .err(v.span(), format!("`{k}` needs a range [low, high]"))
                                    .label("expected two numbers")
                                    .help(format!("write it like {k} = {{ {kind} = [0.001, 0.1] }}"))),
                            }
                        };
                        match *kind {
                            "uniform" => {
                                let (a, b) = pair(v)?;
                                Dist::Uniform(a, b)
                            }
                            "log_uniform" => {
                                let (a, b) = pair(v)?;
                                if a <= 0.0 {
                                    return Err(cx
                                        .err(v.span(), format!("`{k}`: a log-uniform range must be above 0"))
                                        .label("low end ≤ 0")
                                        .help("use positive ends, for example [0.0001, 0.1]"));
                                }
                                Dist::LogUniform(a, b)
                            }
                            "choice" => match v {
                                Value::Array(a) if !a.is_empty() => Dist::Choice(
                                    a.iter().map(|x| cx.json(x, k)).collect::<Result<_, _>>()?,
                                ),
                                _ => {
                                    return Err(cx
                                        .err(v.span(), format!("`{k}`: choice needs a non-empty list"))
                                        .label("expected a list")
                                        .help(format!("write it like {k} = {{ choice = [\"adam\", \"sgd\"] }}")))
                                }
                            },
                            other => {
                                return Err(cx
                                    .err(t.key(other).and_then(|x| x.span()).or(item.span()), format!("`{k}`: {other:?} is not a distribution"))
                                    .label("expected uniform, log_uniform or choice")
                                    .help(format!("write it like {k} = {{ uniform = [0.0, 0.5] }}")))
                            }
                        }
                    }
                    Item::Value(Value::Array(a)) => Dist::Choice(cx.values(a, k)?),
                    Item::Value(v) => Dist::Fixed(cx.json(v, k)?),
                    other => {
                        return Err(cx
                            .err(item_span(other), format!("`{k}` must be a distribution or a value"))
                            .label("expected { uniform = [a, b] }, { log_uniform = [a, b] }, { choice = [...] } or a value")
                            .help(format!("write it like {k} = {{ uniform = [0.0, 0.5] }}")))
                    }
                };
                dists.push((k.to_string(), dist));
            }
            space = dists.clone();
            samples_asked = samples;
            draw(&dists, samples, seed)
        }
        Method::List => {
            let Some(item) = sweep_table.get("variants") else {
                return Err(cx
                    .err(
                        cx.key_span(&sweep_table, "method"),
                        "a list sweep needs [[sweep.variants]]",
                    )
                    .label("no variants")
                    .help("add one [[sweep.variants]] table per variant"));
            };
            let tables: Vec<Table> = match item {
                Item::ArrayOfTables(a) => a.iter().cloned().collect(),
                Item::Value(Value::Array(a)) => {
                    let mut out = Vec::new();
                    for v in a.iter() {
                        match v {
                            Value::InlineTable(t) => out.push(t.clone().into_table()),
                            _ => {
                                return Err(cx
                                    .err(v.span(), "each entry of `sweep.variants` must be a table")
                                    .label("not a table")
                                    .help("write variants = [{ lr = 0.1 }, { lr = 0.01 }]"))
                            }
                        }
                    }
                    out
                }
                other => {
                    return Err(cx
                        .err(
                            item_span(other),
                            "`sweep.variants` must be a list of tables",
                        )
                        .label("expected [[sweep.variants]]")
                        .help("add one [[sweep.variants]] table per variant"))
                }
            };
            if tables.is_empty() {
                return Err(cx
                    .err(item_span(item), "`sweep.variants` is empty")
                    .label("no variants")
                    .help("add one [[sweep.variants]] table per variant"));
            }
            let mut out = Vec::new();
            for t in &tables {
                let mut m = BTreeMap::new();
                for (k, v) in t.iter() {
                    if !param_name_ok(k) {
                        return Err(cx
                            .err(
                                cx.key_span(t, k),
                                format!("`{k}` cannot be a parameter name"),
                            )
                            .label("letters, digits, `-`, `_` and `.` only")
                            .help("name parameters like learning_rate"));
                    }
                    let Item::Value(v) = v else {
                        return Err(cx
                            .err(
                                item_span(v),
                                format!("`{k}` must be a string, number or boolean"),
                            )
                            .label("not a plain value")
                            .help("a variant's values are strings, numbers or booleans"));
                    };
                    m.insert(k.to_string(), cx.json(v, k)?);
                }
                out.push(m);
            }
            out
        }
    };
    if repeat > 1 {
        if variants.len().saturating_mul(repeat) > MAX_VARIANTS {
            return Err(cx
                .err(
                    sweep_table.get("repeat").and_then(item_span),
                    format!("with `repeat` the sweep has more than {MAX_VARIANTS} variants"),
                )
                .label("too many jobs")
                .help("repeat fewer times, or sweep fewer values"));
        }
        variants = variants
            .into_iter()
            .flat_map(|v| {
                (0..repeat).map(move |s| {
                    let mut m = v.clone();
                    m.insert("seed".into(), Json::from(s as u64));
                    m
                })
            })
            .collect();
    }
    // Katib: the same parameters, searched by one Experiment.
    let katib = match sweep_table.get("katib") {
        None => false,
        Some(Item::Value(Value::Boolean(b))) => *b.value(),
        Some(other) => {
            return Err(cx
                .err(item_span(other), "`sweep.katib` must be true or false")
                .label("expected a boolean")
                .help("write katib = true to run the sweep as one Katib Experiment"))
        }
    };
    let katib_keys = ["objective", "direction", "goal", "max_failed"];
    if !katib {
        if let Some(k) = katib_keys.iter().find(|k| sweep_table.contains_key(k)) {
            return Err(cx
                .err(
                    cx.key_span(&sweep_table, k),
                    format!("`sweep.{k}` is only read with katib = true"),
                )
                .label("a Katib setting")
                .help("add katib = true to [sweep] (in launch.toml), or remove it"));
        }
    }
    let katib = if katib {
        if method == Method::List {
            return Err(cx
                .err(
                    cx.key_span(&sweep_table, "katib"),
                    "a Katib sweep searches a grid or random space, not a list",
                )
                .label("method = \"list\"")
                .help(
                    "use method = \"grid\" or \"random\" with [sweep.parameters], or drop katib",
                ));
        }
        let Some(objective) = string("objective")? else {
            return Err(cx
                .err(cx.key_span(&sweep_table, "katib"), "a Katib sweep needs `objective`")
                .label("which metric?")
                .help("name the metric the trials print as name=value, for example objective = \"accuracy\""));
        };
        let maximize = match string("direction")?.as_deref() {
            None | Some("maximize") => true,
            Some("minimize") => false,
            Some(other) => {
                return Err(cx
                    .err(
                        sweep_table.get("direction").and_then(item_span),
                        format!("`sweep.direction` = {other:?} is not a direction"),
                    )
                    .label("expected \"maximize\" or \"minimize\"")
                    .help("write direction = \"minimize\" for a loss"))
            }
        };
        let goal = match sweep_table.get("goal") {
            None => None,
            Some(Item::Value(v)) => Some(cx.number(v, "sweep.goal")?),
            Some(other) => {
                return Err(cx
                    .err(item_span(other), "`sweep.goal` must be a number")
                    .label("expected a number")
                    .help("write it like goal = 0.99"))
            }
        };
        Some(KatibSpec {
            objective,
            maximize,
            goal,
            algorithm: if method == Method::Grid {
                "grid"
            } else {
                "random"
            },
            max_trials: if method == Method::Grid {
                variants.len() / repeat
            } else {
                samples_asked
            },
            max_failed: int("max_failed", 0, 10_000, 3)? as usize,
        })
    } else {
        None
    };
    Ok(Sweep {
        name,
        max_parallel,
        args,
        variants,
        space,
        katib,
    })
}

fn draw(dists: &[(String, Dist)], samples: usize, seed: u64) -> Vec<BTreeMap<String, Json>> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..samples)
        .map(|_| {
            dists
                .iter()
                .map(|(k, d)| {
                    let v = match d {
                        Dist::Fixed(v) => v.clone(),
                        Dist::Uniform(a, b) => num(rng.random_range(*a..*b)),
                        Dist::LogUniform(a, b) => num(rng.random_range(a.ln()..b.ln()).exp()),
                        Dist::Choice(c) => c[rng.random_range(0..c.len())].clone(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .collect()
}

fn num(x: f64) -> Json {
    serde_json::Number::from_f64(x)
        .map(Json::Number)
        .unwrap_or(Json::Null)
}

/// A variant as `--key=value` arguments (strings as they are, other values as JSON).
pub fn as_args(variant: &BTreeMap<String, Json>) -> Vec<String> {
    variant
        .iter()
        .map(|(k, v)| match v {
            Json::String(s) => format!("--{k}={s}"),
            other => format!("--{k}={other}"),
        })
        .collect()
}

/// A variant in one short line: `lr=0.1 batch=16`.
pub fn describe(variant: &BTreeMap<String, Json>) -> String {
    variant
        .iter()
        .map(|(k, v)| match v {
            Json::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Sweep {
        parse("s.toml", src, "s").unwrap_or_else(|e| panic!("{}", e.render()))
    }

    #[test]
    fn a_grid_is_the_cartesian_product_in_order() {
        // (The first parameter varies slowest.)
        let s = ok("[sweep]\nmax_parallel = 2\n[sweep.parameters]\nlr = [0.1, 0.01]\nbatch = [16, 32, 64]\n");
        assert_eq!(s.variants.len(), 6);
        assert_eq!(s.max_parallel, 2);
        assert_eq!(s.name, "s");
        let all: Vec<String> = s.variants.iter().map(describe).collect();
        assert_eq!(
            all,
            [
                "batch=16 lr=0.1",
                "batch=32 lr=0.1",
                "batch=64 lr=0.1",
                "batch=16 lr=0.01",
                "batch=32 lr=0.01",
                "batch=64 lr=0.01"
            ]
        );
    }

    #[test]
    fn random_with_a_seed_gives_the_same_variants_and_stays_in_range() {
        let src = "[sweep]\nmethod = \"random\"\nsamples = 20\nseed = 7\n[sweep.parameters]\nlr = { log_uniform = [0.0001, 0.1] }\ndrop = { uniform = [0.0, 0.5] }\nopt = { choice = [\"adam\", \"sgd\"] }\nfixed = 3\n";
        let a = ok(src);
        let b = ok(src);
        assert_eq!(a, b);
        assert_eq!(a.variants.len(), 20);
        let c = ok(&src.replace("seed = 7", "seed = 8"));
        assert_ne!(a.variants, c.variants);
        for v in &a.variants {
            let lr = v["lr"].as_f64().unwrap();
            assert!((0.0001..0.1).contains(&lr), "{lr}");
            let d = v["drop"].as_f64().unwrap();
            assert!((0.0..0.5).contains(&d), "{d}");
            assert!(v["opt"] == "adam" || v["opt"] == "sgd");
            assert_eq!(v["fixed"], 3);
        }
    }

    #[test]
    fn list_and_repeat() {
        let s = ok("[sweep]\nname = \"l\"\nrepeat = 2\nargs = true\n[[sweep.variants]]\nlr = 0.1\nopt = \"adam\"\n[[sweep.variants]]\nlr = 0.2\nopt = \"sgd\"\n");
        assert_eq!(s.variants.len(), 4);
        assert!(s.args);
        assert_eq!(describe(&s.variants[1]), "lr=0.1 opt=adam seed=1");
        assert_eq!(
            as_args(&s.variants[2]),
            ["--lr=0.2", "--opt=sgd", "--seed=0"]
        );
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let cases = [
            ("[sweep]\nmethod = \"grd\"\n", 2, "not a sweep method"),
            ("[sweep]\nmax_paralel = 2\n", 2, "unknown key in [sweep]: `max_paralel`"),
            ("[sweep]\nmethod = \"random\"\nsamples = 3\n[sweep.parameters]\nlr = { uniform = [1, 0] }\n", 5, "low end is not below"),
            ("[sweep]\nmethod = \"random\"\n[sweep.parameters]\nlr = [1]\n", 2, "needs `samples`"),
            ("[sweep]\n[sweep.parameters]\nlr = []\n", 3, "has no values"),
            ("[sweep]\nmax_parallel = 0\n[sweep.parameters]\nlr = [1]\n", 2, "max_parallel"),
            ("[other]\n", 1, "no [sweep] table"),
        ];
        for (src, line, want) in cases {
            let e = parse("s.toml", src, "s").unwrap_err();
            assert!(e.title.contains(want), "{src:?}: {}", e.title);
            assert_eq!(
                e.line_col().map(|(l, _)| l),
                Some(line),
                "{src:?}: {}",
                e.render()
            );
        }
    }
}
