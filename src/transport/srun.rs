//! A Slurm allocation's node reached through Slurm itself: every command is a job step,
//! `srun --jobid=ID --overlap -w NODE …`, started where Slurm's commands run (this machine or the
//! login node, over that transport). Files travel on the step's stdin and stdout, and a tunnel
//! is a step whose stdin and stdout are relayed to a port on the node (as `ssh -W` does). No SSH
//! into compute nodes is needed: many sites allow none, and a step stays inside the allocation.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use async_trait::async_trait;

use super::{RemoteCommand, Sink, Transport, TunnelStream};
use crate::shell::{dquote, shell_quote};

/// Relays stdin to a TCP port on the node and the port's answers to stdout (Python's standard
/// library only; the nodes have python3, the bootstrap needs it).
const RELAY: &str = r#"import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while True:
        b = os.read(0, 65536)
        if not b:
            break
        s.sendall(b)
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(65536)
    if not b:
        break
    os.write(1, b)
"#;

pub struct SrunTransport {
    /// Where `srun` runs: this machine, or the login node.
    via: Arc<dyn Transport>,
    job: String,
    node: String,
}

impl SrunTransport {
    pub fn new(via: Arc<dyn Transport>, job: &str, node: &str) -> SrunTransport {
        SrunTransport {
            via,
            job: job.to_string(),
            node: node.to_string(),
        }
    }

    /// `srun` for one task on the node, sharing the allocation's resources (`--overlap`), in the
    /// user's home, output unbuffered (files and tunnels are byte streams).
    fn srun(&self) -> String {
        format!(
            "srun --jobid={} --overlap --nodelist={} --nodes=1 --ntasks=1 --quiet --unbuffered --chdir=\"$HOME\"",
            shell_quote(&self.job),
            shell_quote(&self.node)
        )
    }

    /// `command` as a step on the node (run by `/bin/sh -c`).
    fn step(&self, command: &RemoteCommand) -> RemoteCommand {
        RemoteCommand {
            text: format!("{} /bin/sh -c {}", self.srun(), shell_quote(&command.text)),
            shown: format!(
                "srun --jobid={} -w {} -- {}",
                self.job, self.node, command.shown
            ),
            input: command.input.clone(),
        }
    }

    async fn checked(&self, command: RemoteCommand, what: &str) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = self.run_cmd(&command, &mut out, &mut err).await?;
        if status != 0 {
            return Err(anyhow!(
                "{what} on {} failed (exit status {status}): {}",
                self.describe(),
                String::from_utf8_lossy(&err).trim()
            ));
        }
        Ok(out)
    }
}

#[async_trait]
impl Transport for SrunTransport {
    fn describe(&self) -> String {
        format!(
            "node {} of Slurm job {} (srun on {})",
            self.node,
            self.job,
            self.via.describe()
        )
    }

    /// The allocation's nodes share the submit host's home (Slurm's batch script and `ready`
    /// file already live there).
    fn daft_home(&self) -> String {
        self.via.daft_home()
    }

    async fn run_cmd(
        &self,
        command: &RemoteCommand,
        stdout: Sink<'_>,
        stderr: Sink<'_>,
    ) -> anyhow::Result<i32> {
        self.via.run_cmd(&self.step(command), stdout, stderr).await
    }

    async fn send_file(&self, local: &Path, remote: &str) -> anyhow::Result<()> {
        let data = tokio::fs::read(local)
            .await
            .with_context(|| format!("cannot read {}", local.display()))?;
        self.write_file(&data, remote).await
    }

    async fn write_file(&self, data: &[u8], remote: &str) -> anyhow::Result<()> {
        let (r, part) = (dquote(remote), dquote(&format!("{remote}.part")));
        let cmd = RemoteCommand::shown_as(
            format!("mkdir -p \"$(dirname {r})\" && umask 077 && cat > {part} && mv -f {part} {r}"),
            format!("write {remote} ({} bytes)", data.len()),
        )
        .with_input(data.to_vec());
        self.checked(cmd, &format!("writing {remote}")).await?;
        Ok(())
    }

    async fn read_file(&self, remote: &str) -> anyhow::Result<Vec<u8>> {
        let cmd =
            RemoteCommand::shown_as(format!("cat {}", dquote(remote)), format!("read {remote}"));
        self.checked(cmd, &format!("reading {remote}")).await
    }

    async fn open_tunnel(&self, host: &str, port: u16) -> anyhow::Result<Box<dyn TunnelStream>> {
        let relay = RemoteCommand::shown_as(
            format!(
                "python3 -c {} {} {port}",
                shell_quote(RELAY),
                shell_quote(host)
            ),
            format!("relay to {host}:{port}"),
        );
        self.via.open_command_stream(&self.step(&relay)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_srun_on_the_node_with_the_command_as_one_argument() {
        let t = SrunTransport::new(
            Arc::new(crate::transport::local::LocalTransport::new(
                "/tmp/x".into(),
            )),
            "42",
            "node-1",
        );
        let c = t.step(&RemoteCommand::new("echo 'a b' && exit 3"));
        assert!(
            c.text
                .starts_with("srun --jobid=42 --overlap --nodelist=node-1 --nodes=1 --ntasks=1"),
            "{}",
            c.text
        );
        assert!(
            c.text
                .ends_with("/bin/sh -c 'echo '\\''a b'\\'' && exit 3'"),
            "{}",
            c.text
        );
        assert_eq!(c.shown, "srun --jobid=42 -w node-1 -- echo 'a b' && exit 3");
    }
}
