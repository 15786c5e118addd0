//! The house's floors: every module of `src/` imports only from floors below its own (or from
//! itself), and no file imports another that imports it back, however indirectly. A helper
//! parked in a higher room (`provider::now_secs` used by `lock`) or a circle
//! (`provider::kubernetes` ↔ `transport::kube`) fails here, naming the arrow.
//!
//! Read from the source text (`crate::…`, `super::…` and `use` lines, outside `#[cfg(test)]`),
//! so the check needs nothing built.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The macros `printer` exports (`#[macro_export]`: used as `crate::note!`).
const PRINTER_MACROS: &[&str] = &["outln", "out", "note", "warn", "notice", "warning"];

/// Floors, lowest first. A top-level module not listed here fails the test: give it a floor.
const FLOORS: &[&[&str]] = &[
    // The printer: everything may say something.
    &["printer"],
    // Foundations: no daft module below them but the printer.
    &[
        "archive",
        "cost",
        "https",
        "interrupt",
        "keys",
        "kube_api",
        "logging",
        "model",
        "paths",
        "shell",
        "time",
        "ui",
        "wait",
    ],
    &["error"],
    &["git", "planner", "registry", "scheduler", "sweep"],
    &["config"],
    &["build", "cli", "kuberay", "lock", "templates"],
    &["launch", "transport"],
    &["agent"],
    &["bootstrap"],
    &["autostop"],
    &["setup"],
    &["provider"],
    &["apply"],
    &["commands"],
];

fn floor_of(top: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&top))
}

/// Every `.rs` file under `src/` as its module path (`provider::aws`, `lib`, …).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|l| l == "mod") {
                    parts.pop();
                }
                out.insert(parts.join("::"), p);
            }
        }
    }
    out
}

/// The source without its test modules (they may reach anywhere).
fn non_test(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The modules a file refers to: each `crate::a::b…` or `super::x…` path resolved to the longest
/// known module it names.
fn references(module: &str, text: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    // A file's `super` is its parent module.
    let mut parent: Vec<&str> = module.split("::").collect();
    parent.pop();
    let bytes = text.as_bytes();
    for (start, prefix) in text
        .match_indices("crate::")
        .map(|(i, _)| (i, "crate"))
        .chain(text.match_indices("super::").map(|(i, _)| (i, "super")))
    {
        // (Not part of a longer word, such as `$crate::`.)
        if start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'$')
        {
            continue;
        }
        let rest = &text[start + prefix.len() + 2..];
        let path: Vec<&str> = rest
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|s| !s.is_empty())
            .collect();
        let mut base: Vec<&str> = if prefix == "crate" {
            Vec::new()
        } else {
            parent.clone()
        };
        // `crate::note!(...)` and the printer's other macros are the printer's.
        if prefix == "crate"
            && path.len() == 1
            && PRINTER_MACROS.contains(&path[0])
            && rest[path[0].len()..].starts_with('!')
        {
            if module != "printer" {
                refs.insert("printer".to_string());
            }
            continue;
        }
        base.extend(path);
        // The longest prefix that is a module file.
        for n in (1..=base.len()).rev() {
            let cand = base[..n].join("::");
            if known.contains_key(&cand) {
                if cand != module {
                    refs.insert(cand);
                }
                break;
            }
        }
    }
    refs
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    known
        .iter()
        .filter(|(m, _)| m.as_str() != "lib" && m.as_str() != "main")
        .map(|(m, p)| {
            let text = std::fs::read_to_string(p).unwrap();
            (m.clone(), references(m, non_test(&text), &known))
        })
        .collect()
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap()
}

#[test]
fn every_module_imports_only_from_lower_floors() {
    let g = graph();
    let mut wrong = Vec::new();
    for (m, refs) in &g {
        let Some(mine) = floor_of(top(m)) else {
            wrong.push(format!(
                "{m}: its top module {:?} has no floor in FLOORS",
                top(m)
            ));
            continue;
        };
        for r in refs {
            if top(r) == top(m) {
                continue;
            }
            match floor_of(top(r)) {
                Some(theirs) if theirs < mine => {}
                _ => wrong.push(format!(
                    "{m} (floor {mine}) imports {r} (floor {:?}): an arrow up or sideways",
                    floor_of(top(r))
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A circle among files, if any (as the files in it, the first repeated at the end).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let i = path.iter().position(|p| *p == n).unwrap();
                let mut c: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for r in g.get(n).into_iter().flatten() {
            // A module's own children (`provider` → `provider::aws`) are its parts, not a circle.
            if r.starts_with(&format!("{n}::")) {
                continue;
            }
            if let Some(c) = visit(r, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    if let Some(c) = find_cycle(&graph()) {
        panic!("an import circle: {}", c.join(" → "));
    }
}

/// The check itself finds what it is for: an upward arrow and a circle in a made-up tree.
#[test]
fn the_check_finds_an_upward_arrow_and_a_circle() {
    let known: BTreeMap<String, PathBuf> = ["lock", "provider", "provider::aws", "transport::kube"]
        .iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    let refs = references("lock", "let t = crate::provider::now_secs();", &known);
    assert_eq!(refs, BTreeSet::from(["provider".to_string()]));
    assert!(floor_of("lock").unwrap() < floor_of("provider").unwrap());
    let refs = references("provider::aws", "use super::{NodeProvider};", &known);
    assert_eq!(refs, BTreeSet::from(["provider".to_string()]));
    // A printer macro is an arrow to the printer (which is below everything).
    let refs = references(
        "lock",
        "crate::notice!(\"waiting\"); crate::note_it();",
        &known,
    );
    assert_eq!(refs, BTreeSet::from(["printer".to_string()]));
    assert!(floor_of("printer").unwrap() < floor_of("ui").unwrap());
    // The circle the Kubernetes code had.
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("provider::kubernetes", "transport::kube"),
        ("transport::kube", "provider::kubernetes"),
        ("commands", "provider::kubernetes"),
    ]
    .iter()
    .fold(BTreeMap::new(), |mut g, (a, b)| {
        g.entry(a.to_string()).or_default().insert(b.to_string());
        g
    });
    let c = find_cycle(&g).expect("the circle is found");
    assert!(
        c.contains(&"transport::kube".to_string()) && c.len() == 3,
        "{c:?}"
    );
}
