//! The node transport for Kubernetes: commands run in the head pod through the API server's
//! websocket exec (stdin, stdout, stderr and the exit status from the status channel); files
//! travel on an exec's stdin; tunnels are the API server's port-forward. The head pod is looked
//! up again for every call, so a restarted head does not break a long `daft dashboard`.

use std::path::Path;

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, ListParams};
use kube::Api;
use tokio::io::AsyncWriteExt;

use super::{RemoteCommand, Sink, Transport, TunnelStream};
use crate::shell::dquote;

/// Scripts longer than this go on stdin rather than in the exec request's URL.
const INLINE_SCRIPT: usize = 2048;

/// The head pod of one RayCluster, found by KubeRay's labels.
pub struct KubeTransport {
    pods: Api<Pod>,
    namespace: String,
    /// The RayCluster's name (`ray.io/cluster` on its pods).
    cluster: String,
}

impl KubeTransport {
    pub fn new(client: kube::Client, namespace: &str, cluster: &str) -> Self {
        KubeTransport {
            pods: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
        }
    }

    /// The running head pod now: its name and the container Ray runs in.
    async fn head(&self) -> anyhow::Result<(String, String)> {
        let selector = format!(
            "{}={},{}=head",
            crate::kuberay::RAY_CLUSTER_LABEL,
            self.cluster,
            crate::kuberay::RAY_NODE_TYPE_LABEL
        );
        tracing::debug!(target: "daft::kube", namespace = %self.namespace, %selector, "list pods");
        let list = crate::kube_api::call(
            "list the head pod",
            self.pods.list(&ListParams::default().labels(&selector)),
        )
        .await?;
        let pod = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .ok_or_else(|| {
                anyhow!(
                    "RayCluster {:?} in namespace {:?} has no running head pod",
                    self.cluster,
                    self.namespace
                )
            })?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
        let container = containers
            .iter()
            .find(|c| c.name == "ray-head")
            .or(containers.first())
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "ray-head".into());
        Ok((name, container))
    }

    /// Run `script` with `sh -c` in the head pod, `input` on stdin; (status, stdout, stderr)
    /// streamed to the sinks.
    async fn exec(
        &self,
        script: &str,
        shown: &str,
        input: &[u8],
        stdout: Sink<'_>,
        stderr: Sink<'_>,
    ) -> anyhow::Result<i32> {
        let (pod, container) = self.head().await?;
        tracing::debug!(target: "daft::remote", pod = %pod, namespace = %self.namespace, command = %shown, "exec");
        let ap = AttachParams::default()
            .container(container)
            .stdin(true)
            .stdout(true)
            .stderr(true);
        // The input is read by its length, never to an end of file: an exec negotiated below
        // the v5 protocol (kwok's kubelet, older kubelets) cannot close stdin, so a command that
        // reads to the end would wait forever. Without input, stdin is /dev/null.
        // (`word`: the script as one shell word.)
        let fed = |word: &str| match input.len() {
            0 => format!("exec sh -c {word} </dev/null"),
            n => format!("head -c {n} | sh -c {word}"),
        };
        // A long script travels ahead of the input on stdin, not in the request's URL (API
        // servers and the proxies before them limit its length).
        let (argv, input): (Vec<String>, std::borrow::Cow<[u8]>) = if script.len() > INLINE_SCRIPT {
            let mut data = script.as_bytes().to_vec();
            data.extend_from_slice(input);
            let boot = format!(
                "f=$(mktemp) || exit 125; dd bs=1 count={} of=\"$f\" 2>/dev/null; s=$(cat \"$f\"); rm -f \"$f\"; {}",
                script.len(),
                fed("\"$s\"")
            );
            (vec!["sh".into(), "-c".into(), boot], data.into())
        } else {
            (
                vec![
                    "sh".into(),
                    "-c".into(),
                    fed(&crate::shell::shell_quote(script)),
                ],
                input.into(),
            )
        };
        let input: &[u8] = &input;
        let mut proc = self
            .pods
            .exec(&pod, argv, &ap)
            .await
            .map_err(|e| crate::kube_api::api_error(e, "exec in the head pod"))?;
        let mut stdin = proc.stdin().context("exec without stdin")?;
        let mut out = proc.stdout().context("exec without stdout")?;
        let mut err = proc.stderr().context("exec without stderr")?;
        let status = proc.take_status().context("exec without status")?;
        let feed = async {
            if !input.is_empty() {
                stdin.write_all(input).await?;
            }
            stdin.shutdown().await?;
            drop(stdin);
            anyhow::Ok(())
        };
        let pump_out = async {
            tokio::io::copy(&mut out, stdout).await?;
            anyhow::Ok(())
        };
        let pump_err = async {
            tokio::io::copy(&mut err, stderr).await?;
            anyhow::Ok(())
        };
        let (a, b, c) = tokio::join!(feed, pump_out, pump_err);
        a.context("sending stdin to the head pod failed")?;
        b?;
        c?;
        let status = status.await;
        let _ = proc.join().await;
        Ok(exit_code(status.as_ref()))
    }
}

/// The exit code an exec's status reports (0 on success).
pub fn exit_code(status: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> i32 {
    let Some(s) = status else {
        // No status at all: the connection ended early.
        return 255;
    };
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.parse().ok())
        .unwrap_or(1)
}

#[async_trait]
impl Transport for KubeTransport {
    fn describe(&self) -> String {
        format!("the head pod of {}/{}", self.namespace, self.cluster)
    }

    fn daft_home(&self) -> String {
        "$HOME/.daft".into()
    }

    async fn run_cmd(
        &self,
        command: &RemoteCommand,
        stdout: Sink<'_>,
        stderr: Sink<'_>,
    ) -> anyhow::Result<i32> {
        self.exec(
            &command.text,
            &command.shown,
            &command.input.0,
            stdout,
            stderr,
        )
        .await
    }

    async fn send_file(&self, local: &Path, remote: &str) -> anyhow::Result<()> {
        let data = tokio::fs::read(local)
            .await
            .with_context(|| format!("cannot read {}", local.display()))?;
        self.put(
            &data,
            remote,
            &format!("put {} ({} bytes)", remote, data.len()),
        )
        .await
    }

    async fn write_file(&self, data: &[u8], remote: &str) -> anyhow::Result<()> {
        self.put(data, remote, &format!("write {remote}")).await
    }

    async fn read_file(&self, remote: &str) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = self
            .exec(
                &format!("cat {}", dquote(remote)),
                &format!("read {remote}"),
                &[],
                &mut out,
                &mut err,
            )
            .await?;
        if status != 0 {
            return Err(anyhow!(
                "cannot read {remote} in {}: {}",
                self.describe(),
                String::from_utf8_lossy(&err).trim()
            ));
        }
        Ok(out)
    }

    async fn open_tunnel(&self, _host: &str, port: u16) -> anyhow::Result<Box<dyn TunnelStream>> {
        let (pod, _) = self.head().await?;
        tracing::debug!(target: "daft::kube", %pod, namespace = %self.namespace, port, "port-forward");
        let mut pf = self
            .pods
            .portforward(&pod, &[port])
            .await
            .map_err(|e| crate::kube_api::api_error(e, "port-forward to the head pod"))?;
        let stream = pf
            .take_stream(port)
            .ok_or_else(|| anyhow!("the port-forward to {pod}:{port} has no stream"))?;
        if let Some(errors) = pf.take_error(port) {
            let pod = pod.clone();
            tokio::spawn(async move {
                if let Some(e) = errors.await {
                    tracing::debug!(target: "daft::kube", %pod, port, "port-forward error: {e}");
                }
            });
        }
        tokio::spawn(async move {
            let _ = pf.join().await;
        });
        Ok(Box::new(stream))
    }
}

impl KubeTransport {
    /// Write `data` to `remote` in the head pod (0600, parents 0700), through a temporary file.
    async fn put(&self, data: &[u8], remote: &str, shown: &str) -> anyhow::Result<()> {
        let script = format!(
            "umask 077; f={}; mkdir -p \"$(dirname \"$f\")\" && cat > \"$f.part\" && mv \"$f.part\" \"$f\"",
            dquote(remote)
        );
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = self.exec(&script, shown, data, &mut out, &mut err).await?;
        if status != 0 {
            return Err(anyhow!(
                "cannot write {remote} in {}: {}",
                self.describe(),
                String::from_utf8_lossy(&err).trim()
            ));
        }
        Ok(())
    }
}
