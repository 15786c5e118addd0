//! What an apply shows while it runs: one progress line per supporting resource, per batch and
//! per node. The orchestration (`super`) says what happens; this says how it reads.

use indicatif::ProgressBar;

use crate::model::SupportResource;
use crate::ui::{done, Progress};

pub struct View<'a> {
    ui: &'a Progress,
}

impl<'a> View<'a> {
    pub fn new(ui: &'a Progress) -> Self {
        View { ui }
    }

    pub fn support(&self, resource: &SupportResource, doing: impl Into<String>) -> ProgressBar {
        self.ui.line(format!("{:<8}", resource.kind), doing)
    }

    pub fn removing(&self, count: usize) -> ProgressBar {
        self.ui.line("remove  ", format!("{count} node(s)"))
    }

    pub fn removed(&self, pb: &ProgressBar, ids: &[String]) {
        done(pb, format!("removed {}", ids.join(", ")));
    }

    pub fn head_launching(&self) -> ProgressBar {
        self.ui.line("head    ", "launching")
    }

    /// The launched head's line takes its id.
    pub fn head_is(&self, pb: &ProgressBar, id: &str) {
        pb.set_prefix(format!("head     {id}"));
    }

    pub fn head(&self, id: &str, doing: impl Into<String>) -> ProgressBar {
        self.ui.line(format!("head     {id}"), doing)
    }

    pub fn workers(&self, doing: impl Into<String>) -> ProgressBar {
        self.ui.line("workers ", doing)
    }

    pub fn worker(&self, id: &str, doing: impl Into<String>) -> ProgressBar {
        self.ui.line(format!("worker   {id}"), doing)
    }

    pub fn worker_skipped(&self, id: &str, reason: &str) {
        let pb = self.worker(id, "");
        done(&pb, format!("skipped: unreachable ({reason})"));
    }

    /// A node's set-up ended: `what` when it worked, "failed" when not.
    pub fn set_up<T>(&self, pb: &ProgressBar, r: &anyhow::Result<T>, what: &str) {
        done(pb, if r.is_ok() { what } else { "failed" });
    }
}
