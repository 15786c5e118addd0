//! What daft sends a node per bootstrap call, before and after the node agent: the script
//! inline with every call (`sh -c '<settings + ~18 KB script>' daft-bootstrap ACTION`, as daft
//! did until the agent) against the settings alone with the node's own copy sourced. Bytes are
//! the command text as sent over the SSH channel; round trips are commands per call (the first
//! call to a node without this version's copy costs two more: the upload and its rename).
//!
//! The same for the job helper (templates/jobs.py), once sent with every call, now run from the
//! node's copy.
//!
//! `cargo bench --profile dev --bench agent` prints one JSON object (also written to
//! bench/agent.json).

use daft::bootstrap::{self, command, render, NodeParams};
use daft::model::Role;
use daft::shell::shell_quote;

fn main() {
    let cfg = daft::config::Config::parse(
        "bench.toml",
        "[setup]\nname = \"bench\"\nprovider = \"local\"\nnumber_of_workers = 2\ndependencies = [\"numpy\", \"pandas>=2\"]\n",
        std::path::Path::new("."),
    )
    .expect("the bench's config parses");
    let params = NodeParams {
        daft_home: "$HOME/.daft".into(),
        cluster: "bench".into(),
        node: "10.0.0.2".into(),
        role: Some(Role::Worker),
        env_hash: bootstrap::env_hash(&cfg),
        requirements: bootstrap::requirements(&cfg),
        head_address: Some("10.0.0.1:6379".into()),
        ray_port: 6379,
        dashboard_host: "127.0.0.1".into(),
        dashboard_port: 8265,
        ray_auth: true,
        ray_tmp: "abc".into(),
        node_json: r#"{"id":"10.0.0.2","cluster":"bench","role":"worker"}"#.into(),
        ..Default::default()
    };
    let mut rows = Vec::new();
    for actions in [&["status"][..], &["install", "start"][..], &["record"][..]] {
        let before = format!(
            "sh -c {} daft-bootstrap {}",
            shell_quote(&render(&params)),
            actions.join(" ")
        )
        .len();
        let after = command(&params, actions).text.len();
        rows.push(serde_json::json!({
            "call": actions.join(" "),
            "bytes_before": before,
            "bytes_after": after,
            "ratio_after_to_before": after as f64 / before as f64,
            "round_trips_before": 1,
            "round_trips_after": 1,
            "round_trips_after_first_call_to_a_node": 3,
        }));
    }
    // The job helper (templates/jobs.py): inline with every `jobs`, `logs`, `cancel`, `pull`
    // and sweep poll until it became an agent file, now the node's copy run by path.
    let cl = "$HOME/.daft/clusters/bench";
    let jobs_dir = format!("{cl}/jobs");
    let mut helper_rows = Vec::new();
    for args in [
        vec!["list", jobs_dir.as_str()],
        vec!["follow", "J", "0", "0", "1"],
    ] {
        let quoted: Vec<String> = args.iter().map(|a| daft::shell::dquote(a)).collect();
        let before = format!(
            "{}/venv/bin/python -c {} {}",
            daft::shell::dquote(cl),
            shell_quote(daft::templates::JOBS),
            quoted.join(" ")
        )
        .len();
        let after = daft::commands::jobs::helper_text("$HOME/.daft", cl, &args).len();
        helper_rows.push(serde_json::json!({
            "call": format!("jobs.py {}", args[0]),
            "bytes_before": before,
            "bytes_after": after,
            "ratio_after_to_before": after as f64 / before as f64,
        }));
    }
    let out = serde_json::json!({
        "agent_bytes_uploaded_once_per_node_and_version": daft::templates::BOOTSTRAP.len(),
        "calls": rows,
        "job_helper_bytes_uploaded_once_per_node_and_version": daft::templates::JOBS.len(),
        "job_helper_calls": helper_rows,
    });
    let text = serde_json::to_string_pretty(&out).expect("json");
    println!("{text}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/agent.json");
    std::fs::write(path, format!("{text}\n")).expect("bench/agent.json is writable");
}
