//! The transport for this machine: `sh -c`, file copies, plain TCP.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::{RemoteCommand, Sink, Transport, TunnelStream};

/// Runs everything on this machine. Relative paths are relative to `daft_home`'s parent.
pub struct LocalTransport {
    home: PathBuf,
}

impl LocalTransport {
    pub fn new(daft_home: PathBuf) -> Self {
        LocalTransport { home: daft_home }
    }

    fn resolve(&self, remote: &str) -> PathBuf {
        let p = Path::new(remote);
        if let Some(rest) = remote.strip_prefix("$HOME/") {
            return std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(rest);
        }
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.home.parent().unwrap_or(Path::new("/")).join(p)
        }
    }
}

async fn pump(mut from: impl tokio::io::AsyncRead + Unpin, to: Sink<'_>) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
    Ok(())
}

#[async_trait]
impl Transport for LocalTransport {
    fn describe(&self) -> String {
        "this machine".into()
    }

    fn daft_home(&self) -> String {
        self.home.display().to_string()
    }

    async fn run_cmd(
        &self,
        command: &RemoteCommand,
        stdout: Sink<'_>,
        stderr: Sink<'_>,
    ) -> anyhow::Result<i32> {
        tracing::debug!(target: "daft::remote", host = "local", command = %command.shown, "run");
        let cwd = self.home.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&command.text)
            .current_dir(&cwd)
            .stdin(if command.input.0.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `sh` on this machine")?;
        if let Some(mut stdin) = child.stdin.take() {
            let input = command.input.0.clone();
            // Written alongside (a command that does not read it must not block us); then EOF.
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&input).await;
            });
        }
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let (a, b) = tokio::join!(pump(out, stdout), pump(err, stderr));
        a?;
        b?;
        let status = child.wait().await?;
        Ok(exit_code(status))
    }

    async fn send_file(&self, local: &Path, remote: &str) -> anyhow::Result<()> {
        let dest = self.resolve(remote);
        tracing::debug!(target: "daft::remote", host = "local", from = %local.display(), to = %dest.display(), "copy");
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::copy(local, &dest)
            .await
            .with_context(|| format!("cannot copy {} to {}", local.display(), dest.display()))?;
        Ok(())
    }

    async fn write_file(&self, data: &[u8], remote: &str) -> anyhow::Result<()> {
        let dest = self.resolve(remote);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // The user's alone (0600), like everything daft writes on a node.
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&dest)
            .await
            .with_context(|| format!("cannot write {}", dest.display()))?;
        tokio::io::AsyncWriteExt::write_all(&mut f, data).await?;
        tokio::io::AsyncWriteExt::shutdown(&mut f).await?;
        Ok(())
    }

    async fn read_file(&self, remote: &str) -> anyhow::Result<Vec<u8>> {
        let src = self.resolve(remote);
        tokio::fs::read(&src)
            .await
            .with_context(|| format!("cannot read {}", src.display()))
    }

    async fn open_command_stream(
        &self,
        command: &RemoteCommand,
    ) -> anyhow::Result<Box<dyn TunnelStream>> {
        tracing::debug!(target: "daft::remote", host = "local", command = %command.shown, "stream");
        let cwd = self.home.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&command.text)
            .current_dir(&cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `sh` on this machine")?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let shown = command.shown.clone();
        // The process lives as long as its stream: reaped (and its stderr logged) when it ends.
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::debug!(target: "daft::remote", command = %shown, "stderr: {l}");
            }
            let _ = child.wait().await;
        });
        Ok(Box::new(tokio::io::join(stdout, stdin)))
    }

    async fn open_tunnel(&self, host: &str, port: u16) -> anyhow::Result<Box<dyn TunnelStream>> {
        let s = tokio::net::TcpStream::connect((host, port))
            .await
            .with_context(|| format!("cannot connect to {host}:{port}"))?;
        s.set_nodelay(true)?;
        Ok(Box::new(s))
    }
}

/// A process's exit code; killed by signal N gives 128+N, like a shell.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(1)
}
