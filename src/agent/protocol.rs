//! The node protocol: what daft's programs on a node (the bootstrap, the job helper) say on
//! their standard output, one JSON object a line, `{"daft": KIND, ...}`, and the record each
//! node keeps of itself (`node.json`). Parsed here only; any other line (uv's, Ray's) is not
//! protocol and is skipped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{AutostopState, Role};

/// A node's record on its host (`node.json`): written by the bootstrap (the settings carry
/// it, made by [`NodeRecord::json`] only), read back by `status`. Back-ends that keep their
/// records elsewhere (EC2 tags, a Slurm comment) write only the cluster and role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub cluster: String,
    pub role: Role,
    /// The back-end whose record this is, where several share a node directory layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spec_hash: String,
    /// None until set-up (environment, Ray, setup_commands) has succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_head: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub launch: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl NodeRecord {
    /// The record of a node whose back-end keeps the rest itself: its cluster and role.
    pub fn minimal(cluster: &str, role: Role, provider: Option<&str>) -> Self {
        NodeRecord {
            id: String::new(),
            cluster: cluster.to_string(),
            role,
            provider: provider.map(str::to_string),
            spec_hash: String::new(),
            setup_hash: None,
            joined_head: None,
            created: 0,
            launch: BTreeMap::new(),
            ip: None,
            ports: BTreeMap::new(),
        }
    }

    /// `node.json` as the bootstrap writes it: one line of JSON.
    pub fn json(&self) -> String {
        // A struct of strings, numbers and string maps always serializes.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// One line the node's programs say.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "daft", rename_all = "kebab-case")]
pub enum Said {
    /// A node of the cluster on this host, and whether its Ray runs (bootstrap `status`).
    Node {
        alive: bool,
        record: Box<NodeRecord>,
    },
    /// A host in the cluster's member list (the head keeps it; bootstrap `status`).
    Member { host: String },
    /// The step the bootstrap is at (the last one names where it failed).
    Step { text: String },
    /// The autostop watcher's last record (the head keeps it; bootstrap `status`).
    Autostop { state: AutostopState },
    /// Autostop set to `seconds` (the job helper's `autostop`), or cancelled (`seconds` null).
    AutostopArmed { seconds: Option<u64> },
    /// A job started under its supervisor, whose process group is `pid` (`jobs.py start`).
    Started { pid: u32 },
    /// What `jobs.py cancel` found: `cancelled`, or `ended` (it had ended already).
    Cancel { outcome: String },
    /// An archive unpacked (`jobs.py unpack`).
    Unpacked { files: u64 },
}

/// The protocol lines of a program's output; a line that says `{"daft": ...}` but cannot be
/// read (another daft version's, a hand-edited record) is skipped with a warning.
pub fn said(stdout: &str) -> Vec<Said> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let line = line.trim();
        if !line.starts_with("{\"daft\"") {
            continue;
        }
        match serde_json::from_str::<Said>(line) {
            Ok(s) => out.push(s),
            Err(e) => {
                tracing::warn!("ignoring a node protocol line that cannot be read ({e}): {line}")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_protocol_reads_its_lines_and_skips_the_rest() {
        let rec = NodeRecord {
            id: "10.0.0.2".into(),
            setup_hash: Some("abc".into()),
            ports: BTreeMap::from([("ray".to_string(), 6379)]),
            ..NodeRecord::minimal("c", Role::Worker, None)
        };
        let out = format!(
            "uv says hi\n{{\"daft\":\"step\",\"text\":\"starting Ray (worker) \\\"q\\\"\"}}\n\
             {{\"daft\":\"node\",\"alive\":true,\"record\":{}}}\n\
             {{\"daft\":\"node\",\"alive\":false,\"record\":{}}}\n\
             {{\"daft\":\"node\",\"alive\":true,\"record\":{{not json}}\n\
             {{\"daft\":\"member\",\"host\":\"10.0.0.2:22\"}}\n\
             {{\"daft\":\"some-later-kind\"}}\n\
             {{\"daft\":\"started\",\"pid\":42}}\n  {{\"daft\":\"cancel\",\"outcome\":\"ended\"}}\n\
             {{\"daft\":\"autostop-armed\",\"seconds\":null}}\n{{\"other\":1}}\n",
            rec.json(),
            NodeRecord::minimal("c", Role::Head, Some("slurm")).json()
        );
        assert_eq!(
            said(&out),
            [
                Said::Step {
                    text: "starting Ray (worker) \"q\"".into()
                },
                Said::Node {
                    alive: true,
                    record: Box::new(rec)
                },
                Said::Node {
                    alive: false,
                    record: Box::new(NodeRecord::minimal("c", Role::Head, Some("slurm")))
                },
                Said::Member {
                    host: "10.0.0.2:22".into()
                },
                Said::Started { pid: 42 },
                Said::Cancel {
                    outcome: "ended".into()
                },
                Said::AutostopArmed { seconds: None },
            ]
        );
    }

    #[test]
    fn a_minimal_record_is_the_cluster_and_role_only() {
        assert_eq!(
            NodeRecord::minimal("c", Role::Head, None).json(),
            r#"{"cluster":"c","role":"head"}"#
        );
        assert_eq!(
            NodeRecord::minimal("c", Role::Worker, Some("slurm")).json(),
            r#"{"cluster":"c","role":"worker","provider":"slurm"}"#
        );
    }
}
