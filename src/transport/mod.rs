//! How daft reaches a node: run a command, send files, open a tunnel.
//! One trait, an SSH implementation and a local one, so `submit`, `dashboard` and node setup
//! have one code path for every provider.

pub mod local;
pub mod ssh;

use std::path::Path;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream through a tunnel.
pub trait TunnelStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TunnelStream for T {}

/// Where a command's output goes as it comes.
pub type Sink<'a> = &'a mut (dyn AsyncWrite + Unpin + Send);

/// The output of a finished command.
#[derive(Debug, Clone)]
pub struct Captured {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// The output to show a user when the command failed (the last lines of both streams).
    pub fn tail(&self, lines: usize) -> String {
        let mut all: Vec<&str> = self.stdout.lines().chain(self.stderr.lines()).collect();
        if all.len() > lines {
            all.drain(..all.len() - lines);
        }
        all.join("\n")
    }
}

#[async_trait]
pub trait Transport: Send + Sync {
    /// Who we talk to, for messages ("ec2-user@10.0.0.5:22", "this machine").
    fn describe(&self) -> String;

    /// daft's directory on the node, as shell and file paths see it.
    fn daft_home(&self) -> String;

    /// Run a shell command, streaming its stdout and stderr as they come; returns its exit status.
    async fn run(&self, command: &str, stdout: Sink<'_>, stderr: Sink<'_>) -> anyhow::Result<i32>;

    /// Send a local file to `remote` (relative paths are relative to the login directory).
    async fn send_file(&self, local: &Path, remote: &str) -> anyhow::Result<()>;

    /// Write bytes to a file on the node.
    async fn write_file(&self, data: &[u8], remote: &str) -> anyhow::Result<()>;

    /// Open a connection from the node to `host:port` (a tunnel).
    async fn open_tunnel(&self, host: &str, port: u16) -> anyhow::Result<Box<dyn TunnelStream>>;

    /// Run a command and collect its output.
    async fn capture(&self, command: &str) -> anyhow::Result<Captured> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = self.run(command, &mut out, &mut err).await?;
        Ok(Captured {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }
}

/// Quote a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
