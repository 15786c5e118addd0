//! The Kubernetes API as daft calls it, for every part that does (the KubeRay provider, its
//! transport, `daft launch`, `daft doctor`): connecting through the kubeconfig, bounded calls,
//! errors as a user reads them, and a watch of pods that wakes waits. Every call goes through
//! kube-rs, never `kubectl`.

use std::time::Duration;

use anyhow::anyhow;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::Api;

/// How to install the operator, for errors about its missing CRDs.
pub const INSTALL_KUBERAY: &str =
    "install the KubeRay operator into the cluster (it defines RayCluster): \
     helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && \
     helm install kuberay-operator kuberay/kuberay-operator";

/// A single API call may take this long before daft gives up on it.
pub const CALL_LIMIT: Duration = Duration::from_secs(30);

/// An API error as a user reads it: what daft tried, and what to do.
pub fn api_error(e: kube::Error, what: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => {
            match s.code {
                401 => anyhow!(
                "the Kubernetes API server refused daft's credentials while trying to {what} ({}): \
                 log in again (refresh the kubeconfig's credentials) or pick another context",
                s.message
            ),
                403 => anyhow!(
                "not allowed to {what}: {}. Ask the cluster's administrator for a Role (RBAC) that \
                 grants it, or use a namespace where you have one",
                s.message
            ),
                404 if s.message.contains("could not find the requested resource") => {
                    anyhow!("cannot {what}: the API server has no such resource ({}); {INSTALL_KUBERAY}", s.message)
                }
                _ => anyhow!(
                    "cannot {what}: {} ({}, HTTP {})",
                    s.message,
                    s.reason,
                    s.code
                ),
            }
        }
        other => anyhow!("cannot {what}: the Kubernetes API server did not answer: {other}"),
    }
}

/// Bound one API call.
pub async fn call<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_LIMIT, fut).await {
        Ok(r) => r.map_err(|e| api_error(e, what)),
        Err(_) => Err(no_answer(what)),
    }
}

/// The error for a call that got no answer within [`CALL_LIMIT`].
pub fn no_answer(what: &str) -> anyhow::Error {
    anyhow!(
        "cannot {what}: the Kubernetes API server did not answer within {}",
        humantime::format_duration(CALL_LIMIT)
    )
}

/// Wakes a waiting loop as soon as a pod it waits on changes, instead of at its next poll: a
/// watch (`?watch=true`) on the pods of a label selector from a list's resourceVersion, opened
/// again whenever it ends (the server's timeout, 410 Expired, a dropped connection). The loop
/// still reads everything itself and bounds its own wait: a watch the server refuses or drops
/// costs speed, never an answer.
pub struct PodChanges {
    rx: tokio::sync::mpsc::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl PodChanges {
    pub fn watch(pods: Api<Pod>, selector: String) -> PodChanges {
        use futures::StreamExt;
        // (One pending wake-up is enough: a burst of events is one look.)
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            loop {
                let from = ListParams::default().labels(&selector).limit(1);
                let version = match tokio::time::timeout(CALL_LIMIT, pods.list(&from)).await {
                    Ok(Ok(list)) => list.metadata.resource_version.unwrap_or_default(),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                };
                tracing::debug!(target: "daft::kube", %selector, %version, "watch pods");
                let wp = WatchParams::default().labels(&selector).timeout(290);
                // (Opening the watch is bounded like any call; its events may then be quiet
                // for as long as the server's timeout.)
                let opened = tokio::time::timeout(CALL_LIMIT, pods.watch(&wp, &version))
                    .await
                    .unwrap_or_else(|_| Err(kube::Error::Service("no answer to the watch".into())));
                match opened {
                    Ok(events) => {
                        let mut events = std::pin::pin!(events);
                        while let Some(e) = events.next().await {
                            match e {
                                Ok(WatchEvent::Bookmark(_)) => {}
                                Ok(WatchEvent::Error(status)) => {
                                    // (410 Expired: a list gives a current version.)
                                    tracing::debug!(target: "daft::kube", code = status.code, "watch ended: {}", status.message);
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                    break;
                                }
                                Ok(_) => {
                                    let _ = tx.try_send(());
                                }
                                Err(e) => {
                                    tracing::debug!(target: "daft::kube", "watch ended: {e}");
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(target: "daft::kube", "cannot watch pods: {e}");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
                // (What changed between the watch's end and the next list: look again.)
                let _ = tx.try_send(());
            }
        });
        PodChanges { rx, task }
    }

    /// Returns when a watched pod changed, or after `max` at most.
    pub async fn next(&mut self, max: Duration) {
        let _ = tokio::time::timeout(max, self.rx.recv()).await;
    }
}

impl Drop for PodChanges {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client for a kubeconfig context (None: the current one, else in-cluster).
#[derive(Clone)]
pub struct Connection {
    pub client: kube::Client,
    /// The namespace asked for, else the context's, else `default`.
    pub namespace: String,
    pub context: String,
    pub server: String,
}

/// Connect to the API server of `context` (`file` names the config that chose it, for errors).
pub async fn connect(
    context: Option<&str>,
    namespace: Option<&str>,
    file: &str,
) -> anyhow::Result<Connection> {
    let (mut config, context) = match context {
        Some(ctx) => {
            let opts = kube::config::KubeConfigOptions {
                context: Some(ctx.to_string()),
                ..Default::default()
            };
            let c = kube::Config::from_kubeconfig(&opts).await.map_err(|e| {
                anyhow!("cannot use the kubeconfig context {ctx:?} (`context` in {file}): {e}")
            })?;
            (c, ctx.to_string())
        }
        None => {
            let c = kube::Config::infer().await.map_err(|e| {
                anyhow!(
                    "no Kubernetes configuration found ({e}): set KUBECONFIG or write ~/.kube/config \
                     (your cloud's CLI does: `aws eks update-kubeconfig`, `gcloud container clusters get-credentials`)"
                )
            })?;
            let current = kube::config::Kubeconfig::read()
                .ok()
                .and_then(|kc| kc.current_context)
                .unwrap_or_else(|| "in-cluster".into());
            (c, current)
        }
    };
    config.connect_timeout = Some(Duration::from_secs(10));
    // Exec, port-forward and log streams may be quiet for long; single calls are bounded by
    // [`call`] instead.
    config.read_timeout = None;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| config.default_namespace.clone());
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow!("cannot make a Kubernetes client for context {context:?}: {e}"))?;
    Ok(Connection {
        client,
        namespace,
        context,
        server,
    })
}

/// The resources the API server serves in `group_version` (none when it does not serve the
/// group at all: its CRDs are not installed).
/// The names of the `spec` properties of `kind`'s schema in `group_version` (e.g. `ray.io/v1`,
/// `io.ray.v1.RayCluster`), from the API server's OpenAPI v3 document (public to every signed-in
/// user). None when it cannot be read (an older server, no such group): the caller assumes the
/// newest schema.
pub async fn spec_fields(c: &Connection, group_version: &str, schema: &str) -> Option<Vec<String>> {
    let path = format!("/openapi/v3/apis/{group_version}");
    tracing::debug!(target: "daft::kube", server = %c.server, "GET {path}");
    let req = http::Request::get(&path).body(Vec::new()).ok()?;
    let text = match tokio::time::timeout(CALL_LIMIT, c.client.request_text(req)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(target: "daft::kube", "cannot read {path}: {e}");
            return None;
        }
        Err(_) => {
            tracing::debug!(target: "daft::kube", "no answer for {path} within {CALL_LIMIT:?}");
            return None;
        }
    };
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let props =
        doc["components"]["schemas"][schema]["properties"]["spec"]["properties"].as_object()?;
    Some(props.keys().cloned().collect())
}

pub async fn served_resources(c: &Connection, group_version: &str) -> anyhow::Result<Vec<String>> {
    tracing::debug!(target: "daft::kube", server = %c.server, "GET /apis/{group_version}");
    let what = format!("read the API server's {group_version} resources");
    match tokio::time::timeout(CALL_LIMIT, c.client.list_api_group_resources(group_version)).await {
        Err(_) => Err(no_answer(&what)),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => Ok(vec![]),
        Ok(r) => r
            .map(|list| list.resources.into_iter().map(|r| r.name).collect())
            .map_err(|e| api_error(e, &what)),
    }
}
