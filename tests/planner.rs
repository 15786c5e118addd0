//! The planner, tested without any cloud: each rule, property tests over random observed states,
//! and snapshots of the plan as a person reads it.

use std::collections::BTreeMap;

use daft::model::{
    DesiredCluster, NodeSpec, NodeState, Observed, ObservedNode, Role, SupportResource,
};
use daft::planner::{plan, render, Action, Plan};
use proptest::prelude::*;

fn spec(role: Role, it: &str) -> NodeSpec {
    NodeSpec::new(
        role,
        [
            ("instance_type", it.to_string()),
            ("image_id", "ami-0123456789abcdef0".to_string()),
        ],
    )
}

fn desired(workers: u32) -> DesiredCluster {
    DesiredCluster {
        name: "demo".into(),
        head: Some(spec(Role::Head, "m7g.medium")),
        groups: vec![daft::model::WorkerGroup::fixed(
            spec(Role::Worker, "m7g.medium"),
            workers,
        )],
        setup_hash: "setup-1".into(),
        support: vec![SupportResource {
            kind: "security-group".into(),
            name: "daft-demo".into(),
            id: None,
            rules: None,
        }],
    }
}

fn node(id: &str, role: Role, state: NodeState, s: &NodeSpec, created: u64) -> ObservedNode {
    ObservedNode {
        id: id.into(),
        cluster: "demo".into(),
        role,
        group: String::new(),
        state,
        spec_hash: s.hash(),
        launch: s.launch.clone(),
        setup_hash: Some("setup-1".into()),
        joined_head: (role == Role::Worker).then(|| "h".to_string()),
        public_ip: None,
        private_ip: None,
        created,
        detail: BTreeMap::new(),
    }
}

fn sg() -> SupportResource {
    SupportResource {
        kind: "security-group".into(),
        name: "daft-demo".into(),
        id: Some("sg-1".into()),
        rules: None,
    }
}

fn healthy(workers: usize) -> Observed {
    let d = desired(workers as u32);
    let mut nodes = vec![node(
        "h",
        Role::Head,
        NodeState::Running,
        d.head.as_ref().unwrap(),
        1,
    )];
    for i in 0..workers {
        nodes.push(node(
            &format!("w{i}"),
            Role::Worker,
            NodeState::Running,
            &d.groups[0].spec,
            10 + i as u64,
        ));
    }
    Observed {
        nodes,
        support: vec![sg()],
    }
}

fn kinds(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .map(|a| match a {
            Action::CreateSupport { resource } => format!("create-support {}", resource.name),
            Action::Create { role, count, .. } => format!("create {} {count}", role.as_str()),
            Action::Replace { node, .. } => format!("replace {}", node.id),
            Action::Update { node, .. } => format!("update {}", node.id),
            Action::Keep { node } => format!("keep {}", node.id),
            Action::Terminate { node, .. } => format!("terminate {}", node.id),
            Action::DeleteSupport { resource } => format!("delete-support {}", resource.name),
            Action::UpdateSupport { resource, .. } => format!("update-support {}", resource.name),
            Action::Skip { node, .. } => format!("skip {}", node.id),
        })
        .collect()
}

#[test]
fn empty_cluster_creates_support_head_and_workers() {
    let p = plan(&desired(2), &Observed::default());
    assert_eq!(
        kinds(&p),
        [
            "create-support daft-demo",
            "create head 1",
            "create worker 2"
        ]
    );
    assert!(!p.destroys());
}

#[test]
fn matching_cluster_is_a_noop() {
    let p = plan(&desired(2), &healthy(2));
    assert!(p.is_noop());
    assert_eq!(kinds(&p), ["keep h", "keep w0", "keep w1"]);
}

#[test]
fn missing_head_is_created_and_workers_rejoin() {
    let mut obs = healthy(2);
    obs.nodes.retain(|n| n.role != Role::Head);
    let p = plan(&desired(2), &obs);
    assert_eq!(kinds(&p), ["create head 1", "update w0", "update w1"]);
    let Action::Update { reasons, .. } = &p.actions[1] else {
        panic!()
    };
    assert_eq!(reasons, &["the head is new: rejoin it"]);
}

#[test]
fn workers_scale_up() {
    let p = plan(&desired(4), &healthy(2));
    assert_eq!(
        kinds(&p),
        ["keep h", "keep w0", "keep w1", "create worker 2"]
    );
}

#[test]
fn surplus_terminates_pending_before_running_newest_first() {
    let d = desired(1);
    let mut obs = healthy(0);
    obs.nodes.push(node(
        "old-running",
        Role::Worker,
        NodeState::Running,
        &d.groups[0].spec,
        10,
    ));
    obs.nodes.push(node(
        "new-running",
        Role::Worker,
        NodeState::Running,
        &d.groups[0].spec,
        30,
    ));
    obs.nodes.push(node(
        "mid-running",
        Role::Worker,
        NodeState::Running,
        &d.groups[0].spec,
        20,
    ));
    obs.nodes.push(node(
        "pending-old",
        Role::Worker,
        NodeState::Pending,
        &d.groups[0].spec,
        5,
    ));
    obs.nodes.push(node(
        "pending-new",
        Role::Worker,
        NodeState::Pending,
        &d.groups[0].spec,
        40,
    ));
    let p = plan(&d, &obs);
    assert_eq!(
        kinds(&p),
        [
            "keep h",
            "keep old-running",
            "terminate pending-new",
            "terminate pending-old",
            "terminate new-running",
            "terminate mid-running"
        ]
    );
    assert!(p.destroys());
}

#[test]
fn changed_instance_type_replaces_and_says_why() {
    let obs = healthy(1);
    let mut d = desired(1);
    d.head = Some(spec(Role::Head, "m7g.large"));
    d.groups[0].spec = spec(Role::Worker, "m7g.large");
    let p = plan(&d, &obs);
    assert_eq!(kinds(&p), ["replace h", "replace w0"]);
    let Action::Replace { reasons, .. } = &p.actions[0] else {
        panic!()
    };
    assert_eq!(reasons, &["instance_type m7g.medium → m7g.large"]);
}

#[test]
fn changed_setup_is_an_update_in_place() {
    let mut d = desired(1);
    d.setup_hash = "setup-2".into();
    let p = plan(&d, &healthy(1));
    assert_eq!(kinds(&p), ["update h", "update w0"]);
    assert!(!p.destroys());
}

#[test]
fn stopped_node_is_replaced() {
    let mut obs = healthy(1);
    obs.nodes[1].state = NodeState::Stopped;
    let p = plan(&desired(1), &obs);
    assert_eq!(kinds(&p), ["keep h", "replace w0"]);
    let Action::Replace { reasons, .. } = &p.actions[1] else {
        panic!()
    };
    assert_eq!(reasons, &["node is stopped"]);
}

#[test]
fn terminated_and_shutting_down_are_ignored() {
    let mut obs = healthy(1);
    let d = desired(1);
    obs.nodes.push(node(
        "gone",
        Role::Worker,
        NodeState::Terminated,
        &d.groups[0].spec,
        50,
    ));
    obs.nodes.push(node(
        "going",
        Role::Head,
        NodeState::ShuttingDown,
        d.head.as_ref().unwrap(),
        60,
    ));
    assert!(plan(&d, &obs).is_noop());
}

#[test]
fn other_clusters_are_never_touched() {
    let mut obs = healthy(1);
    let mut stranger = obs.nodes[1].clone();
    stranger.id = "theirs".into();
    stranger.cluster = "someone-else".into();
    obs.nodes.push(stranger);
    let p = plan(&desired(0), &obs);
    assert!(!kinds(&p).iter().any(|k| k.contains("theirs")));
    let down = plan(&DesiredCluster::empty("demo"), &obs);
    assert!(!kinds(&down).iter().any(|k| k.contains("theirs")));
}

#[test]
fn second_head_is_terminated() {
    let mut obs = healthy(0);
    let d = desired(0);
    obs.nodes.push(node(
        "h2",
        Role::Head,
        NodeState::Running,
        d.head.as_ref().unwrap(),
        99,
    ));
    assert_eq!(kinds(&plan(&d, &obs)), ["keep h", "terminate h2"]);
}

#[test]
fn worker_of_another_head_rejoins() {
    let mut obs = healthy(1);
    obs.nodes[1].joined_head = Some("old-head".into());
    let p = plan(&desired(1), &obs);
    assert_eq!(kinds(&p), ["keep h", "update w0"]);
}

#[test]
fn down_terminates_everything_and_deletes_support() {
    let p = plan(&DesiredCluster::empty("demo"), &healthy(2));
    assert_eq!(
        kinds(&p),
        [
            "terminate h",
            "terminate w1",
            "terminate w0",
            "delete-support daft-demo"
        ]
    );
}

#[test]
fn drifted_security_group_rules_are_updated_and_say_how() {
    let mut d = desired(2);
    d.support[0].rules = Some(vec![
        "all from the group itself".into(),
        "tcp 22 from 198.51.100.4/32".into(),
    ]);
    let mut obs = healthy(2);
    // An `up` killed between CreateSecurityGroup and its rules: only the intra-group rule.
    obs.support[0].rules = Some(vec![
        "all from the group itself".into(),
        "tcp 22 from 203.0.113.7/32".into(),
    ]);
    let p = plan(&d, &obs);
    assert_eq!(
        p.actions[0],
        Action::UpdateSupport {
            resource: SupportResource {
                id: Some("sg-1".into()),
                ..d.support[0].clone()
            },
            reasons: vec![
                "allow tcp 22 from 198.51.100.4/32".into(),
                "revoke tcp 22 from 203.0.113.7/32".into()
            ],
        }
    );
    assert!(!p.is_noop());
    insta::assert_snapshot!(render(&p, "aws us-west-2"));
    // Once the rules match, nothing to do.
    obs.support[0].rules = d.support[0].rules.clone();
    assert!(plan(&d, &obs).is_noop());
}

#[test]
fn unreachable_worker_is_skipped_and_counted_and_down_still_removes_it() {
    let d = desired(2);
    let mut obs = healthy(2);
    let w = obs
        .nodes
        .iter_mut()
        .find(|n| n.role == Role::Worker)
        .unwrap();
    w.state = NodeState::Unreachable;
    w.detail
        .insert("error".into(), "connection to 10.0.0.9:22 refused".into());
    let id = w.id.clone();
    let p = plan(&d, &obs);
    // Not replaced, not duplicated: left as it is, with its reason.
    assert!(p.is_noop(), "{p:?}");
    assert_eq!(p.summary().unreachable, 1);
    assert!(p.unreachable_head().is_none());
    assert!(p.actions.iter().any(
        |a| matches!(a, Action::Skip { node, reason } if node.id == id && reason.contains("refused"))
    ));
    insta::assert_snapshot!(render(&p, "ssh, 3 hosts"));
    let down = plan(&DesiredCluster::empty("demo"), &obs);
    assert!(down
        .actions
        .iter()
        .any(|a| matches!(a, Action::Terminate { node, .. } if node.id == id)));
}

#[test]
fn unreachable_head_is_reported() {
    let d = desired(1);
    let mut obs = healthy(1);
    let h = obs.nodes.iter_mut().find(|n| n.role == Role::Head).unwrap();
    h.state = NodeState::Unreachable;
    let p = plan(&d, &obs);
    assert!(p.unreachable_head().is_some());
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Create { .. })));
}

#[test]
fn down_of_nothing_is_empty() {
    assert!(plan(&DesiredCluster::empty("demo"), &Observed::default())
        .actions
        .is_empty());
}

// --- what people read ---

#[test]
fn render_create() {
    insta::assert_snapshot!(render(
        &plan(&desired(2), &Observed::default()),
        "aws us-west-2"
    ));
}

#[test]
fn render_noop() {
    insta::assert_snapshot!(render(&plan(&desired(2), &healthy(2)), "aws us-west-2"));
}

#[test]
fn render_mixed() {
    let mut obs = healthy(3);
    obs.nodes[1].state = NodeState::Pending;
    obs.nodes[2].spec_hash = "stale".into();
    obs.nodes[2]
        .launch
        .insert("instance_type".into(), "t3.large".into());
    let mut d = desired(2);
    d.setup_hash = "setup-2".into();
    insta::assert_snapshot!(render(&plan(&d, &obs), "aws us-west-2"));
}

#[test]
fn render_down() {
    insta::assert_snapshot!(render(
        &plan(&DesiredCluster::empty("demo"), &healthy(1)),
        "local, 127.0.0.2"
    ));
}

#[test]
fn json_shape() {
    let p = plan(&desired(1), &Observed::default());
    let v = serde_json::to_value(&p).unwrap();
    insta::assert_snapshot!(serde_json::to_string_pretty(&v).unwrap());
}

// --- properties ---

/// Apply a plan to an observed state the way a provider would.
fn simulate(d: &DesiredCluster, obs: &Observed, p: &Plan) -> Observed {
    let mut nodes = obs.nodes.clone();
    let mut next = 0;
    let mut fresh = |role: Role| {
        next += 1;
        let s = d.spec(role).unwrap();
        let mut n = node(
            &format!("new-{}-{next}", role.as_str()),
            role,
            NodeState::Running,
            s,
            1000 + next,
        );
        n.setup_hash = Some(d.setup_hash.clone());
        n.joined_head = None;
        n
    };
    let mut support = obs.support.clone();
    for a in &p.actions {
        match a {
            Action::CreateSupport { resource } => support.push(resource.clone()),
            Action::DeleteSupport { resource } => support.retain(|s| s.name != resource.name),
            Action::UpdateSupport { resource, .. } => support
                .iter_mut()
                .filter(|s| s.name == resource.name)
                .for_each(|s| s.rules = resource.rules.clone()),
            Action::Skip { .. } => {}
            Action::Create { role, count, .. } => {
                for _ in 0..*count {
                    nodes.push(fresh(*role));
                }
            }
            Action::Replace { node, .. } => {
                nodes.retain(|n| n.id != node.id);
                nodes.push(fresh(node.role));
            }
            Action::Terminate { node, .. } => nodes
                .iter_mut()
                .filter(|n| n.id == node.id)
                .for_each(|n| n.state = NodeState::Terminated),
            Action::Update { node, .. } => nodes
                .iter_mut()
                .filter(|n| n.id == node.id)
                .for_each(|n| n.setup_hash = Some(d.setup_hash.clone())),
            Action::Keep { .. } => {}
        }
    }
    // Every worker the apply launched or updated joins the head.
    let head = nodes
        .iter()
        .find(|n| n.cluster == d.name && n.role == Role::Head && n.state.is_alive())
        .map(|n| n.id.clone());
    let touched: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Update { node, .. } => Some(node.id.clone()),
            _ => None,
        })
        .collect();
    for n in nodes
        .iter_mut()
        .filter(|n| n.cluster == d.name && n.role == Role::Worker)
    {
        if n.id.starts_with("new-") || touched.contains(&n.id) {
            n.joined_head = head.clone();
        }
    }
    Observed { nodes, support }
}

fn arb_node(i: usize) -> impl Strategy<Value = ObservedNode> {
    (
        prop_oneof![Just("demo"), Just("demo"), Just("demo"), Just("other")],
        prop_oneof![Just(Role::Head), Just(Role::Worker), Just(Role::Worker)],
        prop_oneof![
            4 => Just(NodeState::Running),
            2 => Just(NodeState::Pending),
            1 => Just(NodeState::Stopped),
            1 => Just(NodeState::Stopping),
            1 => Just(NodeState::ShuttingDown),
            1 => Just(NodeState::Terminated),
        ],
        prop_oneof![Just("m7g.medium"), Just("m7g.medium"), Just("t3.large")],
        prop_oneof![Just(Some("setup-1")), Just(Some("setup-0")), Just(None)],
        prop_oneof![
            Just(None),
            Just(Some("n0")),
            Just(Some("n1")),
            Just(Some("gone"))
        ],
        0u64..100,
    )
        .prop_map(move |(cluster, role, state, it, setup, joined, created)| {
            let mut n = node(&format!("n{i}"), role, state, &spec(role, it), created);
            n.cluster = cluster.into();
            n.setup_hash = setup.map(str::to_string);
            n.joined_head = joined.map(str::to_string);
            n
        })
}

fn arb_observed() -> impl Strategy<Value = Observed> {
    (0usize..12, any::<bool>()).prop_flat_map(|(n, has_sg)| {
        let nodes: Vec<_> = (0..n).map(arb_node).collect();
        nodes.prop_map(move |nodes| Observed {
            nodes,
            support: if has_sg { vec![sg()] } else { vec![] },
        })
    })
}

fn check_converged(
    d: &DesiredCluster,
    after: &Observed,
    before: &Observed,
) -> Result<(), TestCaseError> {
    let mine: Vec<&ObservedNode> = after.alive().filter(|n| n.cluster == d.name).collect();
    let heads: Vec<_> = mine.iter().filter(|n| n.role == Role::Head).collect();
    let workers: Vec<_> = mine.iter().filter(|n| n.role == Role::Worker).collect();
    prop_assert_eq!(heads.len(), usize::from(d.head.is_some()));
    prop_assert_eq!(workers.len(), d.workers() as usize);
    for n in &mine {
        prop_assert_eq!(&n.spec_hash, &d.spec(n.role).unwrap().hash());
        prop_assert!(matches!(n.state, NodeState::Running | NodeState::Pending));
        prop_assert_eq!(n.setup_hash.as_deref(), Some(d.setup_hash.as_str()));
        if n.role == Role::Worker {
            prop_assert_eq!(n.joined_head.as_deref(), Some(heads[0].id.as_str()));
        }
    }
    // Other clusters' nodes are exactly as they were.
    let others = |o: &Observed| {
        o.nodes
            .iter()
            .filter(|n| n.cluster != d.name)
            .cloned()
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(others(after), others(before));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn plan_converges_and_is_then_empty(obs in arb_observed(), workers in 0u32..6, setup_changed in any::<bool>()) {
        let mut d = desired(workers);
        if setup_changed { d.setup_hash = "setup-2".into(); }
        let p = plan(&d, &obs);
        let after = simulate(&d, &obs, &p);
        check_converged(&d, &after, &obs)?;
        let again = plan(&d, &after);
        prop_assert!(again.is_noop(), "second plan not empty: {:?}", again.actions);
    }

    #[test]
    fn down_converges_to_nothing(obs in arb_observed()) {
        let d = DesiredCluster::empty("demo");
        let p = plan(&d, &obs);
        let after = simulate(&d, &obs, &p);
        prop_assert_eq!(after.alive().filter(|n| n.cluster == "demo").count(), 0);
        prop_assert!(after.support.is_empty());
        prop_assert!(plan(&d, &after).actions.is_empty());
    }

    /// The plan depends on what is observed, not on the order the provider listed it in: the
    /// same nodes in another order give the same actions on the same nodes (which worker is kept
    /// or removed included).
    #[test]
    fn plan_does_not_depend_on_the_order_nodes_are_observed_in(
        obs in arb_observed(),
        workers in 0u32..6,
        turn in 0usize..8,
    ) {
        let d = desired(workers);
        let mut shuffled = obs.clone();
        shuffled.nodes.reverse();
        if !shuffled.nodes.is_empty() {
            let k = turn % shuffled.nodes.len();
            shuffled.nodes.rotate_left(k);
        }
        let actions = |o: &Observed| {
            let mut a: Vec<String> = plan(&d, o).actions.iter().map(|a| format!("{a:?}")).collect();
            a.sort();
            a
        };
        prop_assert_eq!(actions(&obs), actions(&shuffled));
    }
}

// ---- a declared resource (Kubernetes' RayCluster) ----

fn resource(workers: u32, image: &str) -> daft::model::DesiredResource {
    let mut settings = BTreeMap::new();
    settings.insert("image".to_string(), image.to_string());
    settings.insert("worker replicas".to_string(), workers.to_string());
    settings.insert("setup".to_string(), "s1".to_string());
    daft::model::DesiredResource {
        kind: "RayCluster".into(),
        name: "demo".into(),
        settings,
        workers,
        scaling: None,
        manifest: serde_json::Value::Null,
    }
}

fn live(want: &daft::model::DesiredResource, managed: bool) -> daft::model::ObservedResource {
    let s = spec(Role::Head, "pod");
    daft::model::ObservedResource {
        kind: "RayCluster".into(),
        name: "demo".into(),
        exists: true,
        managed_by_daft: managed,
        deleting: false,
        settings: want.settings.clone(),
        pods: vec![
            node("demo-head-x1", Role::Head, NodeState::Running, &s, 1),
            node(
                "demo-workers-worker-a",
                Role::Worker,
                NodeState::Pending,
                &s,
                2,
            ),
        ],
    }
}

#[test]
fn a_resource_is_created_kept_updated_with_reasons_deleted_or_left_alone() {
    use daft::planner::{plan_resource, render_resource, ResourceAction};
    let want = resource(2, "rayproject/ray:2.60.0-py311");
    let absent = daft::model::ObservedResource {
        kind: "RayCluster".into(),
        name: "demo".into(),
        ..Default::default()
    };
    assert_eq!(
        plan_resource("demo", Some(&want), &absent).action,
        ResourceAction::Create
    );
    assert_eq!(
        plan_resource("demo", None, &absent).action,
        ResourceAction::Absent
    );
    let same = live(&want, true);
    let p = plan_resource("demo", Some(&want), &same);
    assert!(p.is_noop() && !p.destroys());
    // Scaling and a new image: both reasons, old → new; a new image restarts pods.
    let more = resource(4, "rayproject/ray:2.61.0-py311");
    let p = plan_resource("demo", Some(&more), &same);
    assert_eq!(
        p.action,
        ResourceAction::Update {
            reasons: vec![
                "image rayproject/ray:2.60.0-py311 → rayproject/ray:2.61.0-py311".into(),
                "worker replicas 2 → 4".into()
            ]
        }
    );
    assert!(p.destroys());
    assert!(!plan_resource(
        "demo",
        Some(&resource(4, "rayproject/ray:2.60.0-py311")),
        &same
    )
    .destroys());
    // Setup not run on this head: an update that restarts nothing.
    let mut fresh = same.clone();
    fresh.settings.insert("setup".into(), String::new());
    let p = plan_resource("demo", Some(&want), &fresh);
    assert_eq!(
        p.action,
        ResourceAction::Update {
            reasons: vec!["setup (none) → s1".into()]
        }
    );
    assert!(!p.destroys());
    assert_eq!(
        plan_resource("demo", None, &same).action,
        ResourceAction::Delete
    );
    // Someone else's RayCluster of the same name: neither changed nor deleted.
    let theirs = live(&want, false);
    for w in [Some(&want), None] {
        assert!(matches!(
            plan_resource("demo", w, &theirs).action,
            ResourceAction::Refuse { .. }
        ));
    }
    insta::assert_snapshot!(
        "render_resource_update",
        render_resource(
            &plan_resource("demo", Some(&more), &same),
            "kubernetes prod/ml",
            Some(4)
        )
    );
    insta::assert_snapshot!(
        "render_resource_delete",
        render_resource(
            &plan_resource("demo", None, &same),
            "kubernetes prod/ml",
            None
        )
    );
}

/// A Slurm allocation is one declared unit: a new time limit is an update that restarts it (a
/// new allocation), new setup commands one that does not, and its plan names the job, not pods.
#[test]
fn a_slurm_allocation_is_planned_as_one_unit_and_reads_as_a_job() {
    use daft::planner::{plan_resource, render_resource, ResourceAction};
    let settings = |time: &str, setup: &str| {
        let mut s = BTreeMap::new();
        s.insert("nodes".to_string(), "2".to_string());
        s.insert("time".to_string(), time.to_string());
        s.insert("setup".to_string(), setup.to_string());
        s
    };
    let want = daft::model::DesiredResource {
        kind: "Slurm job".into(),
        name: "daft-hpc".into(),
        settings: settings("0:20:00", "s1"),
        workers: 1,
        scaling: None,
        manifest: serde_json::Value::Null,
    };
    let s = spec(Role::Head, "slurm");
    let have = daft::model::ObservedResource {
        kind: "Slurm job".into(),
        name: "daft-hpc".into(),
        exists: true,
        managed_by_daft: true,
        deleting: false,
        settings: settings("0:30:00", "s1"),
        pods: vec![node("4711", Role::Head, NodeState::Running, &s, 1)],
    };
    let p = plan_resource("hpc", Some(&want), &have);
    assert_eq!(
        p.action,
        ResourceAction::Update {
            reasons: vec!["time 0:30:00 → 0:20:00".into()]
        }
    );
    assert!(p.destroys(), "a new time limit is a new allocation");
    let text = render_resource(&p, "slurm on this machine", Some(1));
    assert!(
        text.contains("  ~ update     Slurm job daft-hpc  (time 0:30:00 → 0:20:00)")
            && text.contains("      job head   4711  (running)"),
        "{text}"
    );
    let setup_only = daft::model::ObservedResource {
        settings: settings("0:20:00", ""),
        ..have.clone()
    };
    assert!(!plan_resource("hpc", Some(&want), &setup_only).destroys());
    let down = render_resource(&plan_resource("hpc", None, &have), "slurm", None);
    assert!(
        down.contains("  - delete     Slurm job daft-hpc  (and its 1 job(s))"),
        "{down}"
    );
}

/// A node of worker group `group`.
fn group_node(id: &str, group: &str, s: &NodeSpec, created: u64) -> ObservedNode {
    ObservedNode {
        group: group.into(),
        ..node(id, Role::Worker, NodeState::Running, s, created)
    }
}

#[test]
fn worker_groups_are_planned_each_to_its_count_and_a_dropped_group_goes() {
    use daft::model::WorkerGroup;
    let cpu = spec(Role::Worker, "m7i.large");
    let gpu = spec(Role::Worker, "g5.xlarge");
    let mut d = desired(0);
    d.groups = vec![
        WorkerGroup::named("cpu", cpu.clone(), 2),
        WorkerGroup::named("gpu", gpu.clone(), 3),
        // Between its minimum and maximum the count is the autoscaler's: never fought.
        WorkerGroup {
            min: 1,
            max: 4,
            ..WorkerGroup::named("spare", cpu.clone(), 1)
        },
    ];
    let mut obs = Observed {
        nodes: vec![node(
            "h",
            Role::Head,
            NodeState::Running,
            d.head.as_ref().unwrap(),
            1,
        )],
        support: vec![sg()],
    };
    obs.nodes.extend([
        // cpu: one short; gpu: one of its nodes has another type (replaced), one too few;
        // spare: three, within 1..=4; old: a group the config no longer has.
        group_node("c1", "cpu", &cpu, 10),
        group_node("g1", "gpu", &gpu, 11),
        group_node("g2", "gpu", &cpu, 12),
        group_node("s1", "spare", &cpu, 13),
        group_node("s2", "spare", &cpu, 14),
        group_node("s3", "spare", &cpu, 15),
        group_node("o1", "old", &cpu, 16),
        // The unnamed group's node, from before the config had groups.
        node("u1", Role::Worker, NodeState::Running, &cpu, 17),
    ]);
    let p = plan(&d, &obs);
    let creates: Vec<(String, u32)> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { group, count, .. } => Some((group.clone(), *count)),
            _ => None,
        })
        .collect();
    assert_eq!(creates, vec![("cpu".into(), 1), ("gpu".into(), 1)]);
    let terminated: Vec<&str> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Terminate { node, .. } => Some(node.id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(terminated, vec!["u1", "o1"]);
    assert!(p.actions.iter().any(
        |a| matches!(a, Action::Replace { node, .. } if node.id == "g2" && node.group == "gpu")
    ));
    insta::assert_snapshot!(render(&p, "aws us-west-2"));
    // Applied (the new nodes in their groups), the plan is empty; the spare group may grow to
    // its maximum without the plan minding, and past it the surplus goes.
    let mut after = Observed {
        nodes: obs
            .nodes
            .iter()
            .filter(|n| !["u1", "o1", "g2"].contains(&n.id.as_str()))
            .cloned()
            .collect(),
        support: vec![sg()],
    };
    after.nodes.extend([
        group_node("c2", "cpu", &cpu, 20),
        group_node("g3", "gpu", &gpu, 21),
        group_node("g4", "gpu", &gpu, 22),
        group_node("s4", "spare", &cpu, 23),
    ]);
    assert!(
        plan(&d, &after).is_noop(),
        "{}",
        render(&plan(&d, &after), "aws")
    );
    after.nodes.push(group_node("s5", "spare", &cpu, 24));
    let p = plan(&d, &after);
    let gone: Vec<(&str, &str)> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Terminate { node, reason } => Some((node.id.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(gone, vec![("s5", "surplus (at most 4 wanted)")]);
}
