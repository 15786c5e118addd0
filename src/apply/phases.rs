//! A plan read as the phases an apply runs, in order: supporting resources first, then the
//! terminations beside the head and the workers, then supporting resources last. Pure: no
//! provider, no display.

use crate::model::{Observed, ObservedNode, Role, SupportResource};
use crate::planner::{Action, Plan};

/// A supporting resource made or brought back before any node is launched.
#[derive(Debug, Clone, PartialEq)]
pub enum SupportStep<'p> {
    Update {
        resource: &'p SupportResource,
        reasons: &'p [String],
    },
    Create {
        resource: &'p SupportResource,
    },
}

/// What happens to the head.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadStep<'p> {
    /// No head in the desired cluster (`down`).
    None,
    /// Launch one (new, or in place of a replaced head).
    Launch,
    /// Set it up again.
    Update { id: &'p str, reasons: &'p [String] },
    /// It stays as it is.
    Keep { id: &'p str },
    /// It could not be asked: nothing can be set up without it.
    Unreachable { id: &'p str, reason: &'p str },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phases<'p> {
    pub support_before: Vec<SupportStep<'p>>,
    /// Surplus and replaced nodes, as observed.
    pub doomed: Vec<ObservedNode>,
    pub head: HeadStep<'p>,
    /// Workers to launch, by group in the plan's order: new ones and replacements.
    pub new_workers: Vec<(String, u32)>,
    /// Workers to set up again, with what their line says.
    pub worker_updates: Vec<(ObservedNode, String)>,
    /// Workers that could not be asked, with why.
    pub worker_skips: Vec<(&'p str, &'p str)>,
    pub support_after: Vec<&'p SupportResource>,
    /// Some node is replaced (a provider that replaces in place stops the old one first).
    pub replacing: bool,
}

impl<'p> Phases<'p> {
    pub fn of(plan: &'p Plan, observed: &Observed) -> Phases<'p> {
        let find = |id: &str| observed.nodes.iter().find(|n| n.id == id).cloned();
        let mut p = Phases {
            support_before: Vec::new(),
            doomed: Vec::new(),
            head: HeadStep::None,
            new_workers: Vec::new(),
            worker_updates: Vec::new(),
            worker_skips: Vec::new(),
            support_after: Vec::new(),
            replacing: false,
        };
        for a in &plan.actions {
            match a {
                Action::UpdateSupport { resource, reasons } => p
                    .support_before
                    .push(SupportStep::Update { resource, reasons }),
                Action::CreateSupport { resource } => {
                    p.support_before.push(SupportStep::Create { resource })
                }
                Action::DeleteSupport { resource } => p.support_after.push(resource),
                Action::Create { role, count, group } => match role {
                    Role::Head => p.head = HeadStep::Launch,
                    Role::Worker => p.add_workers(group, *count),
                },
                Action::Replace { node, .. } => {
                    p.replacing = true;
                    if let Some(n) = find(&node.id) {
                        p.doomed.push(n);
                    }
                    match node.role {
                        Role::Head => p.head = HeadStep::Launch,
                        Role::Worker => p.add_workers(&node.group, 1),
                    }
                }
                Action::Terminate { node, .. } => {
                    if let Some(n) = find(&node.id) {
                        p.doomed.push(n);
                    }
                }
                Action::Update { node, reasons } => match node.role {
                    Role::Head => {
                        p.head = HeadStep::Update {
                            id: &node.id,
                            reasons,
                        }
                    }
                    Role::Worker => {
                        if let Some(n) = find(&node.id) {
                            p.worker_updates
                                .push((n, format!("updating ({})", reasons.join("; "))));
                        }
                    }
                },
                Action::Keep { node } if node.role == Role::Head => {
                    p.head = HeadStep::Keep { id: &node.id }
                }
                Action::Keep { .. } => {}
                Action::Skip { node, reason } => match node.role {
                    Role::Head => {
                        p.head = HeadStep::Unreachable {
                            id: &node.id,
                            reason,
                        }
                    }
                    Role::Worker => p.worker_skips.push((&node.id, reason)),
                },
            }
        }
        p
    }

    fn add_workers(&mut self, group: &str, count: u32) {
        match self.new_workers.iter_mut().find(|(g, _)| g == group) {
            Some((_, n)) => *n += count,
            None => self.new_workers.push((group.to_string(), count)),
        }
    }

    /// Every worker to launch, of all groups.
    pub fn new_worker_count(&self) -> u32 {
        self.new_workers.iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeState;
    use crate::planner::NodeRef;

    fn node(id: &str, role: Role) -> ObservedNode {
        ObservedNode::bare(id, "c", role, NodeState::Running)
    }

    fn at(n: &ObservedNode) -> NodeRef {
        NodeRef::from(n)
    }

    fn sg(name: &str) -> SupportResource {
        SupportResource {
            kind: "security-group".into(),
            name: name.into(),
            id: None,
            rules: None,
        }
    }

    #[test]
    fn a_plan_reads_as_its_phases_in_order() {
        let (h, w1, w2, w3, w4) = (
            node("h", Role::Head),
            node("w1", Role::Worker),
            node("w2", Role::Worker),
            node("w3", Role::Worker),
            node("w4", Role::Worker),
        );
        let observed = Observed {
            nodes: vec![h.clone(), w1.clone(), w2.clone(), w3.clone(), w4.clone()],
            support: vec![],
        };
        let why = vec!["setup changed".to_string()];
        let plan = Plan {
            cluster: "c".into(),
            actions: vec![
                Action::CreateSupport { resource: sg("a") },
                Action::UpdateSupport {
                    resource: sg("b"),
                    reasons: why.clone(),
                },
                Action::Update {
                    node: at(&h),
                    reasons: why.clone(),
                },
                Action::Create {
                    role: Role::Worker,
                    count: 2,
                    group: String::new(),
                },
                Action::Create {
                    role: Role::Worker,
                    count: 1,
                    group: "gpu".into(),
                },
                Action::Replace {
                    node: at(&w1),
                    reasons: why.clone(),
                },
                Action::Update {
                    node: at(&w2),
                    reasons: why.clone(),
                },
                Action::Skip {
                    node: at(&w3),
                    reason: "no route".into(),
                },
                Action::Terminate {
                    node: at(&w4),
                    reason: "surplus".into(),
                },
                Action::DeleteSupport {
                    resource: sg("old"),
                },
            ],
        };
        let p = Phases::of(&plan, &observed);
        assert_eq!(
            p.support_before,
            vec![
                SupportStep::Create { resource: &sg("a") },
                SupportStep::Update {
                    resource: &sg("b"),
                    reasons: &why
                }
            ]
        );
        assert_eq!(
            p.head,
            HeadStep::Update {
                id: "h",
                reasons: &why
            }
        );
        // Two new workers and the replacement of w1; one of the gpu group.
        assert_eq!(
            p.new_workers,
            vec![(String::new(), 3), ("gpu".to_string(), 1)]
        );
        assert_eq!(p.new_worker_count(), 4);
        assert_eq!(p.doomed, vec![w1, w4]);
        assert_eq!(
            p.worker_updates,
            vec![(w2, "updating (setup changed)".to_string())]
        );
        assert_eq!(p.worker_skips, vec![("w3", "no route")]);
        assert_eq!(p.support_after, vec![&sg("old")]);
        assert!(p.replacing);
    }

    #[test]
    fn the_head_is_launched_kept_or_unreachable_as_the_plan_says() {
        let h = node("h", Role::Head);
        let observed = Observed {
            nodes: vec![h.clone()],
            support: vec![],
        };
        let plan = |a: Action| Plan {
            cluster: "c".into(),
            actions: vec![a],
        };
        let create = plan(Action::Create {
            role: Role::Head,
            count: 1,
            group: String::new(),
        });
        assert_eq!(Phases::of(&create, &observed).head, HeadStep::Launch);
        assert!(!Phases::of(&create, &observed).replacing);
        let replace = plan(Action::Replace {
            node: at(&h),
            reasons: vec![],
        });
        let p = Phases::of(&replace, &observed);
        assert_eq!(
            (p.head.clone(), p.doomed.len(), p.replacing),
            (HeadStep::Launch, 1, true)
        );
        let keep = plan(Action::Keep { node: at(&h) });
        assert_eq!(
            Phases::of(&keep, &observed).head,
            HeadStep::Keep { id: "h" }
        );
        let skip = plan(Action::Skip {
            node: at(&h),
            reason: "timed out".into(),
        });
        assert_eq!(
            Phases::of(&skip, &observed).head,
            HeadStep::Unreachable {
                id: "h",
                reason: "timed out"
            }
        );
        let empty = Plan {
            cluster: "c".into(),
            actions: vec![],
        };
        assert_eq!(Phases::of(&empty, &observed).head, HeadStep::None);
    }
}
