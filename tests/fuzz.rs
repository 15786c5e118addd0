//! Fuzzing the config loader and the plan renderer: random edits of real configs and random
//! observed clusters (odd ids, reasons, states), checked never to panic and to keep the
//! loader's promise (an error always has a location and a "what to do").
//!
//! In the suite it runs a few hundred cases; `bench/fuzz.sh` runs it for a bounded time
//! (`DAFT_FUZZ_SECS`). A crash found that way is added below as a regression case.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use daft::config::Config;
use daft::model::{
    DesiredCluster, NodeSpec, NodeState, Observed, ObservedNode, Role, SupportResource,
};
use daft::planner::{plan, render};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};

const SEEDS: &[&str] = &[
    "[setup]\nname = \"demo\"\nprovider = \"aws\"\nnumber_of_workers = 2\ndependencies = [\"numpy\"]\n[setup.aws]\nssh_ingress_cidrs = [\"203.0.113.7/32\"]\n[run]\nsetup_commands = ['echo \"hi\"']\n",
    "[setup]\nname = \"s\"\nprovider = \"ssh\"\ncommand_timeout = \"10m\"\nmax_parallel = 8\n[setup.ssh]\nhead = \"10.0.0.1\"\nworkers = [\"10.0.0.2:2222\"]\n",
    "[setup]\nname = \"l\"\nprovider = \"local\"\n[setup.local]\naddress = \"127.0.0.1\"\nray_port = 6380\ndashboard_port = 8266\n",
];

const PIECES: &[&str] = &[
    "\n",
    "\"",
    "'",
    "[",
    "]",
    "=",
    "\\",
    "\\n",
    "\\u0000",
    "\u{0}",
    "é",
    "🦀",
    "[[setup]]",
    "[setup.ssh]",
    "name = ",
    "0x7fffffffffffffff",
    "-1",
    "1e400",
    "\"\"\"",
    "#",
    "inf",
    "nan",
    ",",
    "{",
    "}",
    "dependencies = [\"a\\nb\"]",
    "command_timeout = \"0s\"",
    "max_parallel = 99999",
];

/// A config text: a seed with random edits (insertions of pieces, deletions, byte flips).
fn config_text() -> impl Strategy<Value = String> {
    (
        0..SEEDS.len(),
        prop::collection::vec((any::<u16>(), 0..PIECES.len(), 0u8..3), 0..6),
    )
        .prop_map(|(seed, edits)| {
            let mut s: Vec<char> = SEEDS[seed].chars().collect();
            for (pos, piece, kind) in edits {
                let at = pos as usize % (s.len() + 1);
                match kind {
                    0 => {
                        for (k, c) in PIECES[piece].chars().enumerate() {
                            s.insert(at + k, c);
                        }
                    }
                    1 if at < s.len() => {
                        let end = (at + 1 + piece).min(s.len());
                        s.drain(at..end);
                    }
                    _ if at < s.len() => s[at] = PIECES[piece].chars().next().unwrap_or('x'),
                    _ => {}
                }
            }
            s.into_iter().collect()
        })
}

fn check_config(text: &str) {
    let dir = Path::new("/nonexistent-daft-fuzz");
    match Config::parse("fuzz.toml", text, dir) {
        Ok(_) => {}
        Err(e) => {
            let rendered = e.render();
            assert!(!rendered.is_empty());
            assert!(e.help.is_some(), "no help for: {}\n{text:?}", e.title);
        }
    }
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,12}",
        ".{0,20}",
        Just(String::new()),
        Just("\u{202e}rtl\n\t".to_string()),
    ]
}

fn arb_state() -> impl Strategy<Value = NodeState> {
    prop_oneof![
        Just(NodeState::Pending),
        Just(NodeState::Running),
        Just(NodeState::Stopping),
        Just(NodeState::Stopped),
        Just(NodeState::ShuttingDown),
        Just(NodeState::Terminated),
        Just(NodeState::Unreachable),
    ]
}

fn arb_observed() -> impl Strategy<Value = Observed> {
    let node = (
        arb_string(),
        any::<bool>(),
        arb_state(),
        arb_string(),
        prop::option::of(arb_string()),
        prop::option::of(arb_string()),
        arb_string(),
    )
        .prop_map(|(id, head, state, spec, setup, joined, err)| ObservedNode {
            id,
            cluster: "fuzz".into(),
            role: if head { Role::Head } else { Role::Worker },
            group: String::new(),
            state,
            spec_hash: spec,
            launch: BTreeMap::from([("instance_type".to_string(), "x".to_string())]),
            setup_hash: setup,
            joined_head: joined,
            public_ip: None,
            private_ip: None,
            created: 0,
            detail: BTreeMap::from([("error".to_string(), err)]),
        });
    let support = (
        arb_string(),
        prop::option::of(prop::collection::vec(arb_string(), 0..3)),
    )
        .prop_map(|(name, rules)| SupportResource {
            kind: "security-group".into(),
            name,
            id: Some("sg-x".into()),
            rules,
        });
    (
        prop::collection::vec(node, 0..8),
        prop::collection::vec(support, 0..2),
    )
        .prop_map(|(nodes, support)| Observed { nodes, support })
}

fn desired(workers: u32, rules: Option<Vec<String>>) -> DesiredCluster {
    DesiredCluster {
        name: "fuzz".into(),
        head: Some(NodeSpec::new(
            Role::Head,
            [("instance_type", "y".to_string())],
        )),
        groups: vec![daft::model::WorkerGroup::fixed(
            NodeSpec::new(Role::Worker, [("instance_type", "y".to_string())]),
            workers,
        )],
        setup_hash: "s".into(),
        support: vec![SupportResource {
            kind: "security-group".into(),
            name: "daft-fuzz".into(),
            id: None,
            rules,
        }],
    }
}

fn check_plan(obs: &Observed, workers: u32, rules: Option<Vec<String>>) {
    let d = desired(workers, rules);
    let p = plan(&d, obs);
    let text = render(&p, "fuzz");
    assert!(text.starts_with("Plan for cluster \"fuzz\""));
    let _ = serde_json::to_string(&p).unwrap();
    let down = plan(&DesiredCluster::empty("fuzz"), obs);
    let _ = render(&down, "fuzz");
}

/// Run `check` on values of `strategy` for `cases`, or for `DAFT_FUZZ_SECS` when set.
fn fuzz<S: Strategy>(name: &str, strategy: S, cases: u32, check: impl Fn(&S::Value))
where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("DAFT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let seed = std::env::var("DAFT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x5eed);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        PtConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        match budget {
            Some(b) if start.elapsed() >= b => break,
            None if n >= cases as u64 => break,
            _ => {}
        }
        let v = strategy.new_tree(&mut runner).unwrap().current();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&v)));
        if r.is_err() {
            panic!("{name}: crash on case {n} (seed {seed}): {v:?}");
        }
        n += 1;
    }
    eprintln!("{name}: {n} cases in {:?}, no crash", start.elapsed());
}

#[test]
fn fuzz_config_loader() {
    fuzz("config loader", config_text(), 500, |t| check_config(t));
}

#[test]
fn fuzz_plan_renderer() {
    fuzz(
        "plan renderer",
        (
            arb_observed(),
            0u32..5,
            prop::option::of(prop::collection::vec(arb_string(), 0..3)),
        ),
        500,
        |(obs, w, rules)| check_plan(obs, *w, rules.clone()),
    );
}

/// Regression cases found by fuzzing (and by hand) stay here.
#[test]
fn fuzz_regressions() {
    for t in [
        "[setup]\nname = \"demo\"\ndependencies = [\"a\\u0000b\"]\n",
        "[setup]\nname = \"demo\"\ncommand_timeout = \"\"\n",
        "[setup]\nname = \"\u{1f980}\"\n",
        "[setup]\nname = \"demo\"\nssh_user = \"\\n\"\n",
    ] {
        check_config(t);
    }
}
