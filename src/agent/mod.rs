//! The node agent's files: daft's programs for a node (the bootstrap, the job helper), each
//! uploaded once per version to `$DAFT_HOME/agent/<name>-<content hash>.<ext>` and run from
//! there, never resent with every call. A command that finds this version's file missing says
//! [`MISSING_LINE`] and exits [`MISSING`]; the caller uploads the file and runs it again.

pub mod protocol;

use anyhow::{anyhow, Context};

pub use protocol::{said, NodeRecord, Said};

use crate::model::short_hash;
use crate::shell::dquote;
use crate::transport::{Captured, RemoteCommand, Transport};

/// What a command prints (with exit status [`MISSING`]) when the node lacks this version's file.
pub const MISSING_LINE: &str = "daft-agent-missing";
pub const MISSING: i32 = 97;

/// One of the agent's files.
#[derive(Debug, Clone, Copy)]
pub struct AgentFile {
    /// `bootstrap`, `jobs`.
    pub stem: &'static str,
    /// `sh`, `py`.
    pub ext: &'static str,
    pub text: &'static str,
    /// What it is, for errors ("daft's bootstrap").
    pub what: &'static str,
}

pub const BOOTSTRAP: AgentFile = AgentFile {
    stem: "bootstrap",
    ext: "sh",
    text: crate::templates::BOOTSTRAP,
    what: "daft's bootstrap",
};

pub const JOBS: AgentFile = AgentFile {
    stem: "jobs",
    ext: "py",
    text: crate::templates::JOBS,
    what: "daft's job helper",
};

impl AgentFile {
    /// The first 12 hex digits of its content's hash: a changed file is a new name.
    pub fn hash(&self) -> String {
        short_hash([self.text])[..12].to_string()
    }

    /// Where it lives on a node whose daft directory is `daft_home`.
    pub fn path(&self, daft_home: &str) -> String {
        format!(
            "{daft_home}/agent/{}-{}.{}",
            self.stem,
            self.hash(),
            self.ext
        )
    }

    /// Shell lines that set `$var` to its path and end with [`MISSING`] when it is not there.
    pub fn guard(&self, daft_home: &str, var: &str) -> String {
        format!(
            "{var}={}\nif [ ! -f \"${var}\" ]; then echo {MISSING_LINE}; exit {MISSING}; fi\n",
            dquote(&self.path(daft_home))
        )
    }

    /// A shell command running this (Python) file in the environment of the cluster whose
    /// directory is `cluster_dir`, with `args` as the shell is to read them (the caller quotes).
    pub fn run_python(&self, daft_home: &str, cluster_dir: &str, args: &str) -> String {
        format!(
            "{}exec {}/venv/bin/python \"$F\" {args}",
            self.guard(daft_home, "F"),
            dquote(cluster_dir)
        )
    }

    /// Give the node this version's file (written beside its final name, then renamed: a cut
    /// upload leaves no half file under the name that is trusted; each upload its own part name,
    /// so two at once do not write into one file).
    pub async fn upload(&self, t: &dyn Transport) -> anyhow::Result<()> {
        let path = self.path(&t.daft_home());
        let part = format!("{path}.part-{:08x}", rand::random::<u32>());
        t.write_file(self.text.as_bytes(), &part)
            .await
            .with_context(|| format!("cannot give {} {}", t.describe(), self.what))?;
        let mv = RemoteCommand::shown_as(
            format!("mv -f {} {}", dquote(&part), dquote(&path)),
            format!("install {} ({path})", self.what),
        );
        let out = t.capture_cmd(&mv).await?;
        if out.status != 0 {
            return Err(anyhow!(
                "cannot install {} at {path} on {}: {}",
                self.what,
                t.describe(),
                out.tail(5)
            ));
        }
        Ok(())
    }

    /// Upload it unless the node has it (one round trip when it does): before a command whose
    /// output streams to the user, where a retry cannot take back what was printed.
    pub async fn ensure(&self, t: &dyn Transport) -> anyhow::Result<()> {
        let path = self.path(&t.daft_home());
        let check = RemoteCommand::shown_as(
            format!("test -f {}", dquote(&path)),
            format!("test -f {path}"),
        );
        if t.capture_cmd(&check).await?.status != 0 {
            self.upload(t).await?;
        }
        Ok(())
    }
}

/// Whether a command's answer says the node lacked the agent's file: by its line and a
/// failure, not by the exact status (some transports report every failure as 1: kwok's exec,
/// whose kubelet wraps the command's exit error so the API server reports no exit code).
pub fn said_missing(out: &Captured) -> bool {
    out.status != 0 && out.stdout.trim() == MISSING_LINE
}

/// Capture `cmd` (which guards `file`); when the node lacks the file, upload it and run again.
pub async fn capture(
    t: &dyn Transport,
    file: &AgentFile,
    cmd: &RemoteCommand,
) -> anyhow::Result<Captured> {
    let out = t.capture_cmd(cmd).await?;
    if said_missing(&out) {
        file.upload(t).await?;
        return t.capture_cmd(cmd).await;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_told_by_its_line_whatever_failure_status_the_transport_reports() {
        let said = |status: i32, stdout: &str| Captured {
            status,
            stdout: stdout.into(),
            stderr: String::new(),
        };
        assert!(said_missing(&said(MISSING, "daft-agent-missing\n")));
        assert!(said_missing(&said(1, "daft-agent-missing\n")));
        assert!(!said_missing(&said(0, "daft-agent-missing\n")));
        assert!(!said_missing(&said(1, "something else\n")));
    }

    #[test]
    fn each_file_is_named_by_its_content() {
        assert_ne!(BOOTSTRAP.hash(), JOBS.hash());
        assert_eq!(JOBS.path("/h"), format!("/h/agent/jobs-{}.py", JOBS.hash()));
        assert!(BOOTSTRAP.guard("$HOME/.daft", "F").contains("exit 97"));
    }
}
