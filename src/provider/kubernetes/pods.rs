//! A KubeRay pod as a node: its role, state and address from the pod, and what keeps it from
//! running (its conditions, its containers' states, its events) in words.

use super::*;

pub(super) fn label(p: &Pod, key: &str) -> Option<String> {
    p.metadata.labels.as_ref()?.get(key).cloned()
}

/// A pod as a node: role from KubeRay's node-type label, state from its phase.
pub fn pod_node(cluster: &str, p: &Pod) -> ObservedNode {
    let status = p.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
    let state = if p.metadata.deletion_timestamp.is_some() {
        NodeState::ShuttingDown
    } else {
        match phase.as_str() {
            "Pending" => NodeState::Pending,
            "Running" => NodeState::Running,
            "Unknown" => NodeState::Unreachable,
            _ => NodeState::Terminated,
        }
    };
    let ready = pod_ready(p);
    let mut detail = BTreeMap::new();
    detail.insert("phase".into(), phase.clone());
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    detail.insert(
        "type".into(),
        match (&waiting, ready) {
            (Some(w), _) => format!("pod ({phase}: {w})"),
            (None, true) => "pod (ready)".to_string(),
            (None, false) => format!("pod ({phase})"),
        },
    );
    if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
        detail.insert("node".into(), n);
    }
    if state == NodeState::Unreachable {
        detail.insert(
            "error".into(),
            "its node does not report (phase Unknown)".into(),
        );
    }
    let role = match label(p, RAY_NODE_TYPE_LABEL).as_deref() {
        Some("head") => Role::Head,
        _ => Role::Worker,
    };
    let name = p.metadata.name.clone().unwrap_or_default();
    ObservedNode {
        private_ip: status.pod_ip.clone(),
        created: p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second().max(0) as u64)
            .unwrap_or(0),
        detail,
        ..ObservedNode::bare(&name, cluster, role, state)
    }
}

/// The pod's Ready condition is True.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What a pod's conditions, container states and events say is keeping it from being ready.
/// Pure: the pod and its events as the API server gave them.
pub fn pod_problem(p: &Pod, events: &[Event]) -> Option<Problem> {
    if pod_ready(p) {
        return None;
    }
    let name = p.metadata.name.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_default();
    let images: BTreeMap<String, String> = p
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect();
    for c in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
    {
        let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = w.reason.clone().unwrap_or_default();
        let message = w.message.clone().unwrap_or_default();
        let image = images.get(&c.name).cloned().unwrap_or(c.image.clone());
        match reason.as_str() {
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => {
                return Some(Problem {
                    fatal: true,
                    text: format!(
                        "pod {name} cannot pull its image {image:?} ({reason}){}. Check the image name \
                         and tag (`image` in [setup.kubernetes]) and that the cluster may pull it \
                         (`image_pull_secrets` for a private registry)",
                        if message.is_empty() { String::new() } else { format!(": {message}") }
                    ),
                    crashed_container: None,
                });
            }
            "CrashLoopBackOff" => {
                let code = c
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| {
                        format!(
                            " (last exit status {}{})",
                            t.exit_code,
                            t.reason
                                .as_ref()
                                .map(|r| format!(", {r}"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                return Some(Problem {
                    fatal: true,
                    text: format!(
                        "pod {name}: container {} keeps crashing (CrashLoopBackOff, restarted {} time(s)){code}",
                        c.name, c.restart_count
                    ),
                    crashed_container: Some(c.name.clone()),
                });
            }
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                return Some(Problem {
                    fatal: true,
                    text: format!(
                        "pod {name}: container {} cannot start ({reason}): {message}",
                        c.name
                    ),
                    crashed_container: None,
                });
            }
            _ => {}
        }
    }
    // Not scheduled: the scheduler's own words.
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return Some(Problem {
            fatal: false,
            text: format!(
                "pod {name} cannot be scheduled ({}): {}",
                c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
                c.message.clone().unwrap_or_default()
            ),
            crashed_container: None,
        });
    }
    // A volume that cannot be mounted shows only in events.
    if let Some(e) = events.iter().rev().find(|e| {
        matches!(
            e.reason.as_deref(),
            Some(
                "FailedMount"
                    | "FailedAttachVolume"
                    | "FailedScheduling"
                    | "FailedCreatePodSandBox"
            )
        )
    }) {
        return Some(Problem {
            fatal: false,
            text: format!(
                "pod {name}: {} ({})",
                e.message.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default()
            ),
            crashed_container: None,
        });
    }
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    Some(Problem {
        fatal: false,
        text: format!(
            "pod {name} is {}{}",
            status.phase.clone().unwrap_or_else(|| "Pending".into()),
            waiting.map(|w| format!(" ({w})")).unwrap_or_default()
        ),
        crashed_container: None,
    })
}
