//! Node set-up, written once for every back-end: over the node's transport, install the
//! environment and start Ray (unless the node did that itself), run the head's setup commands,
//! then record the setup hash where the back-end keeps its records (its [`SetupRecord`]: an EC2
//! tag, the node's `node.json`, the allocation's comment, the RayCluster's annotation).
//!
//! A back-end only says how the node is reached, what its bootstrap settings are, and where the
//! record goes; the order, the progress lines and the errors are the same everywhere.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use indicatif::ProgressBar;

use crate::autostop::AutostopSetting;
use crate::bootstrap::{self, NodeParams};
use crate::config::Config;
use crate::model::{NodeState, ObservedNode, Role};
use crate::transport::Transport;

/// Where a back-end records that a node is set up (the planner reads it back as the node's
/// setup hash: a node without one is set up again by the next `up`).
#[async_trait]
pub trait SetupRecord: Send + Sync {
    /// Record that `node` is set up with `hash` (a worker: joined to `head`).
    async fn record(
        &self,
        node: &ObservedNode,
        head: &ObservedNode,
        hash: &str,
    ) -> anyhow::Result<()>;
}

/// What set-up still has to run in the node's shell.
pub enum Bootstrap {
    /// Install the environment and start Ray with these settings (one command); the progress
    /// line says what that is for this node.
    Run {
        params: Box<NodeParams>,
        doing: String,
    },
    /// The node did that itself (EC2 user data, a Slurm batch script, a KubeRay pod).
    Done,
}

/// Whether a node's setup hash can only be recorded after the head's setup commands ran (so a
/// failed one runs again next time); otherwise the bootstrap may record it as Ray starts.
pub fn commands_follow(cfg: &Config, role: Role) -> bool {
    role == Role::Head && !cfg.run.setup_commands.is_empty()
}

/// One node's set-up: the node, the head it joins (itself, for the head), the setup hash to
/// record, and what its bootstrap still has to do.
pub struct NodeSetup<'a> {
    pub node: &'a ObservedNode,
    pub head: &'a ObservedNode,
    pub hash: &'a str,
    pub bootstrap: Bootstrap,
    /// The head's autostop, armed once it is set up (before its set-up is recorded).
    pub autostop: AutostopSetting,
}

/// Set a node up: the bootstrap, the head's setup commands, the record. `connect` opens the
/// node's transport, only when something runs there. Returns the node as it now is: running,
/// with the setup hash.
pub async fn set_up<F, Fut>(
    cfg: &Config,
    job: NodeSetup<'_>,
    connect: F,
    record: &dyn SetupRecord,
    pb: &ProgressBar,
) -> anyhow::Result<ObservedNode>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn Transport>>>,
{
    let NodeSetup {
        node,
        head,
        hash,
        bootstrap,
        autostop,
    } = job;
    let commands = commands_follow(cfg, node.role);
    let shell = match (&bootstrap, commands, &autostop) {
        (Bootstrap::Done, false, AutostopSetting::Untouched) => None,
        _ => Some(connect().await?),
    };
    if let (Bootstrap::Run { params, doing }, Some(t)) = (&bootstrap, &shell) {
        pb.set_message(doing.clone());
        bootstrap::run(
            t.as_ref(),
            params,
            &["install", "start"],
            cfg.setup.command_timeout,
        )
        .await?;
    }
    if let (true, Some(t)) = (commands, &shell) {
        pb.set_message(format!(
            "running {} setup command(s) on the head",
            cfg.run.setup_commands.len()
        ));
        bootstrap::run_setup_commands(t.as_ref(), cfg, &t.daft_home()).await?;
    }
    // Only now is the node set up: record it.
    if let Some(t) = &shell {
        match &autostop {
            AutostopSetting::Untouched => {}
            AutostopSetting::Cancel => {
                crate::autostop::arm(t.as_ref(), &cfg.setup.name, None).await?;
            }
            AutostopSetting::Arm(a) => {
                pb.set_message(format!(
                    "arming autostop: down after {} idle",
                    humantime::format_duration(a.after)
                ));
                crate::autostop::arm(t.as_ref(), &cfg.setup.name, Some(a)).await?;
            }
        }
    }
    record.record(node, head, hash).await?;
    let mut done = node.clone();
    done.state = NodeState::Running;
    done.setup_hash = Some(hash.to_string());
    if node.role == Role::Worker {
        done.joined_head = Some(head.id.clone());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::local::LocalTransport;
    use std::sync::Mutex;

    /// Records what was recorded, and what the node's log said at that moment.
    struct Book {
        log: std::path::PathBuf,
        seen: Mutex<Vec<(String, String)>>,
    }

    #[async_trait]
    impl SetupRecord for Book {
        async fn record(
            &self,
            n: &ObservedNode,
            _: &ObservedNode,
            hash: &str,
        ) -> anyhow::Result<()> {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            self.seen
                .lock()
                .unwrap()
                .push((format!("{}={hash}", n.id), log));
            Ok(())
        }
    }

    fn job<'a>(node: &'a ObservedNode, head: &'a ObservedNode, hash: &'a str) -> NodeSetup<'a> {
        NodeSetup {
            node,
            head,
            hash,
            bootstrap: Bootstrap::Done,
            autostop: AutostopSetting::Untouched,
        }
    }

    fn node(id: &str, role: Role) -> ObservedNode {
        ObservedNode::bare(id, "c", role, NodeState::Pending)
    }

    /// A local cluster directory with an (empty) environment, and a config whose setup
    /// commands append to a log there.
    fn lab(commands: &[&str]) -> (tempfile::TempDir, Config, Book) {
        let home = tempfile::tempdir().unwrap();
        let venv = home.path().join("clusters/c/venv/bin");
        std::fs::create_dir_all(&venv).unwrap();
        std::fs::write(venv.join("activate"), "").unwrap();
        std::fs::write(home.path().join("clusters/c/ray-address"), "127.0.0.1:1").unwrap();
        let list: Vec<String> = commands.iter().map(|c| format!("{c:?}")).collect();
        let text = format!(
            "[setup]\nname = \"c\"\nprovider = \"local\"\n[run]\nsetup_commands = [{}]\n",
            list.join(", ")
        );
        let cfg = Config::parse("t.toml", &text, std::path::Path::new(".")).unwrap();
        let book = Book {
            log: home.path().join("log"),
            seen: Mutex::new(vec![]),
        };
        (home, cfg, book)
    }

    #[tokio::test]
    async fn the_head_is_recorded_after_its_setup_commands_and_not_when_one_fails() {
        let (home, cfg, book) = lab(&[
            "echo one >> \"$CL/../../log\"",
            "echo two >> \"$CL/../../log\"",
        ]);
        let t: Arc<dyn Transport> = Arc::new(LocalTransport::new(home.path().into()));
        let head = node("head", Role::Head);
        let pb = ProgressBar::hidden();
        let done = set_up(
            &cfg,
            job(&head, &head, "h1"),
            || async { Ok(t.clone()) },
            &book,
            &pb,
        )
        .await
        .unwrap();
        assert_eq!(done.state, NodeState::Running);
        assert_eq!(done.setup_hash.as_deref(), Some("h1"));
        assert_eq!(
            *book.seen.lock().unwrap(),
            [("head=h1".to_string(), "one\ntwo\n".to_string())],
            "recorded once, after both commands"
        );

        let (home, cfg, book) = lab(&[
            "echo one >> \"$CL/../../log\"",
            "exit 7",
            "echo three >> \"$CL/../../log\"",
        ]);
        let t: Arc<dyn Transport> = Arc::new(LocalTransport::new(home.path().into()));
        let err = set_up(
            &cfg,
            job(&head, &head, "h2"),
            || async { Ok(t.clone()) },
            &book,
            &pb,
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("setup command 2"), "{err:#}");
        assert!(
            book.seen.lock().unwrap().is_empty(),
            "a failed set-up is not recorded"
        );
        assert_eq!(
            std::fs::read_to_string(home.path().join("log")).unwrap(),
            "one\n"
        );
    }

    #[tokio::test]
    async fn a_worker_that_set_itself_up_is_recorded_without_connecting() {
        let (_home, cfg, book) = lab(&["exit 1"]);
        let head = node("head", Role::Head);
        let worker = node("w1", Role::Worker);
        let pb = ProgressBar::hidden();
        let done = set_up(
            &cfg,
            job(&worker, &head, "h3"),
            || async { anyhow::bail!("connected, but nothing had to run on the node") },
            &book,
            &pb,
        )
        .await
        .unwrap();
        assert_eq!(done.joined_head.as_deref(), Some("head"));
        assert_eq!(book.seen.lock().unwrap()[0].0, "w1=h3");
    }
}
