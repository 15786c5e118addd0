//! Planning over 10,000 observed nodes (target ≤ 10 ms).

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use daft::model::{DesiredCluster, NodeSpec, NodeState, Observed, ObservedNode, Role};
use daft::planner::plan;

fn observed(n: usize, spec: &NodeSpec, head: &NodeSpec) -> Observed {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let role = if i == 0 { Role::Head } else { Role::Worker };
        let s = if i == 0 { head } else { spec };
        nodes.push(ObservedNode {
            id: format!("i-{i:017x}"),
            cluster: if i % 10 == 9 {
                "other".into()
            } else {
                "big".into()
            },
            role,
            group: String::new(),
            state: match i % 7 {
                0 => NodeState::Pending,
                1 => NodeState::Terminated,
                _ => NodeState::Running,
            },
            spec_hash: if i % 13 == 0 {
                "stale".into()
            } else {
                s.hash()
            },
            launch: s.launch.clone(),
            setup_hash: Some("s".into()),
            joined_head: Some("i-00000000000000000".into()),
            public_ip: None,
            private_ip: Some(format!("10.0.{}.{}", i / 256 % 256, i % 256)),
            created: i as u64,
            detail: BTreeMap::new(),
        });
    }
    Observed {
        nodes,
        support: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let head = NodeSpec::new(Role::Head, [("instance_type", "m7g.medium".to_string())]);
    let worker = NodeSpec::new(Role::Worker, [("instance_type", "m7g.medium".to_string())]);
    let obs = observed(10_000, &worker, &head);
    for want in [5_000u32, 9_000, 12_000] {
        let d = DesiredCluster {
            name: "big".into(),
            head: Some(head.clone()),
            groups: vec![daft::model::WorkerGroup::fixed(worker.clone(), want)],
            setup_hash: "s".into(),
            support: vec![],
        };
        c.bench_function(&format!("plan 10k observed -> {want} workers"), |b| {
            b.iter(|| plan(&d, &obs))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
