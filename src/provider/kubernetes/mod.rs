//! Kubernetes: the cluster is a KubeRay `RayCluster` (`ray.io/v1`), applied server-side with
//! field manager `daft`; KubeRay's operator makes its pods. The RayCluster and its pods are the
//! record: nothing else is kept. Jobs and the dashboard reach the head pod through the API
//! server (exec, port-forward): [`crate::transport::kube`]. Every call goes through kube-rs,
//! never `kubectl`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use indicatif::ProgressBar;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams, PropagationPolicy,
};
use kube::Api;

use super::{DashboardRoute, DeclarativeProvider, Provider, UpOptions};
use crate::config::{Config, KubernetesSetup};
use crate::kube_api::{
    api_error, call, connect, no_answer, served_resources, Connection, PodChanges, CALL_LIMIT,
    INSTALL_KUBERAY,
};
use crate::kuberay::{
    self, CLUSTER_LABEL, MANAGED_BY, RAY_CLUSTER_LABEL, RAY_NODE_TYPE_LABEL, SETUP_ANNOTATION,
};
use crate::model::{DesiredResource, NodeState, Observed, ObservedNode, ObservedResource, Role};
use crate::transport::kube::KubeTransport;
use crate::transport::{RemoteCommand, Transport};

/// What a failed wait leaves, and what to do next.
const LEFT: &str = "The RayCluster is left as it is: fix the cause and run `daft up` again, or `daft down` to delete it.";

mod pods;

use pods::*;
pub use pods::{pod_node, pod_problem, pod_ready};

pub struct KubernetesProvider {
    cfg: Config,
    conn: Connection,
    /// The RayCluster's name: `existing`, else the cluster's.
    cluster: String,
    /// `[setup.kubernetes]`.
    k: KubernetesSetup,
    /// What the cluster's KubeRay knows, read once when a plan first needs it.
    features: tokio::sync::OnceCell<kuberay::Features>,
}

fn raycluster_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ray.io", "v1", "RayCluster"),
        "rayclusters",
    )
}

impl KubernetesProvider {
    pub async fn new(cfg: Config, k: KubernetesSetup) -> anyhow::Result<Self> {
        let conn = connect(
            k.context.as_deref(),
            k.namespace.as_deref(),
            &cfg.display_path,
        )
        .await?;
        let cluster = k.existing.clone().unwrap_or_else(|| cfg.setup.name.clone());
        Ok(KubernetesProvider {
            cfg,
            k,
            conn,
            cluster,
            features: tokio::sync::OnceCell::new(),
        })
    }

    /// The optional RayCluster fields this cluster's KubeRay knows (its CRD's schema); once,
    /// saying what it lacks.
    async fn features(&self) -> kuberay::Features {
        *self
            .features
            .get_or_init(|| async {
                let f = match crate::kube_api::spec_fields(&self.conn, "ray.io/v1", "io.ray.v1.RayCluster").await {
                    Some(fields) => kuberay::Features::from_spec_fields(&fields),
                    None => kuberay::Features::ALL,
                };
                let missing = f.missing();
                if !missing.is_empty() {
                    crate::warning!(
                        "daft: warning: the KubeRay of this cluster has no {} in its RayCluster (KubeRay 1.5 and older); \
                         daft leaves them out{}",
                        missing.join(", "),
                        if f.auth_options { "" } else { ". Ray runs without token authentication here: upgrade the KubeRay operator and its CRDs to a version with authOptions to get it" }
                    );
                }
                f
            })
            .await
    }

    fn rayclusters(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.conn.client.clone(),
            &self.conn.namespace,
            &raycluster_resource(),
        )
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.conn.client.clone(), &self.conn.namespace)
    }

    /// KubeRay's CRDs are installed (the API server serves ray.io/v1 RayCluster).
    async fn check_kuberay(&self) -> anyhow::Result<()> {
        if served_resources(&self.conn, "ray.io/v1")
            .await?
            .iter()
            .any(|r| r == "rayclusters")
        {
            return Ok(());
        }
        Err(anyhow!(
            "the Kubernetes cluster of context {:?} has no RayCluster resource (ray.io/v1): \
             KubeRay is not installed. {INSTALL_KUBERAY}",
            self.conn.context
        ))
    }

    /// The label selector of this RayCluster's pods.
    fn pod_selector(&self) -> String {
        format!("{RAY_CLUSTER_LABEL}={}", self.cluster)
    }

    /// The pods of this RayCluster, as nodes.
    async fn cluster_pods(&self) -> anyhow::Result<Vec<(Pod, ObservedNode)>> {
        let selector = self.pod_selector();
        tracing::debug!(target: "daft::kube", namespace = %self.conn.namespace, %selector, "list pods");
        let list = call(
            "list the cluster's pods",
            self.pods().list(&ListParams::default().labels(&selector)),
        )
        .await?;
        Ok(list
            .items
            .into_iter()
            .map(|p| {
                let n = pod_node(&self.cfg.setup.name, &p);
                (p, n)
            })
            .collect())
    }

    /// The events about one pod, oldest first.
    async fn events_of(&self, pod: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.conn.client.clone(), &self.conn.namespace);
        let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
        tracing::debug!(target: "daft::kube", namespace = %self.conn.namespace, %pod, "list events");
        match call("list the pod's events", api.list(&lp)).await {
            Ok(l) => {
                let mut items = l.items;
                items.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
                items
            }
            Err(e) => {
                tracing::debug!(target: "daft::kube", "events: {e:#}");
                vec![]
            }
        }
    }

    /// The last lines a crashed container wrote (its previous run, else the current one).
    async fn last_log(&self, pod: &str, container: &str) -> String {
        for previous in [true, false] {
            let lp = LogParams {
                container: Some(container.to_string()),
                tail_lines: Some(20),
                previous,
                ..Default::default()
            };
            tracing::debug!(target: "daft::kube", %pod, container, previous, "pod logs");
            if let Ok(text) = call("read the pod's log", self.pods().logs(pod, &lp)).await {
                if !text.trim().is_empty() {
                    return text;
                }
            }
        }
        String::new()
    }

    /// Why a pod is not ready, with what the pod's own record says; fatal problems end the wait.
    async fn diagnose(&self, pod: &Pod) -> Option<Problem> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let events = self.events_of(&name).await;
        let mut p = pod_problem(pod, &events)?;
        if let Some(container) = &p.crashed_container {
            let log = self.last_log(&name, container).await;
            if !log.trim().is_empty() {
                p.text.push_str("\n  its last output:\n");
                for l in log.lines() {
                    p.text.push_str("    ");
                    p.text.push_str(l);
                    p.text.push('\n');
                }
            }
        }
        Some(p)
    }

    /// Write the head pod's layout for jobs: `$HOME/.daft/clusters/NAME` with the image's
    /// Python as the cluster's environment and the head's Ray address.
    async fn prepare_head(&self, t: &dyn Transport) -> anyhow::Result<()> {
        let script = format!(
            r#"umask 077
CL="$HOME/.daft/clusters/{name}"
mkdir -p "$CL/venv/bin" || exit 1
py=$(command -v python3 || command -v python) || {{ echo "the head pod's image has no python" >&2; exit 3; }}
# (A wrapper, not a link: Python finds its environment from the path it is started by.)
printf '#!/bin/sh\nexec "%s" "$@"\n' "$py" > "$CL/venv/bin/python" && chmod 700 "$CL/venv/bin/python"
[ -f "$CL/venv/bin/activate" ] || : > "$CL/venv/bin/activate"
echo "${{RAY_ADDRESS:-127.0.0.1:6379}}" > "$CL/ray-address""#,
            name = self.cfg.setup.name
        );
        let out = t
            .capture_cmd(&RemoteCommand::shown_as(
                script,
                "prepare the head pod for jobs",
            ))
            .await?;
        if out.status != 0 {
            return Err(anyhow!(
                "cannot prepare {} for jobs: {}",
                t.describe(),
                out.tail(10)
            ));
        }
        Ok(())
    }

    /// Record that the setup commands ran on this head (its own field manager, so `up`'s
    /// apply leaves it alone).
    async fn record_setup(&self, hash: &str, head_uid: &str) -> anyhow::Result<()> {
        let patch = serde_json::json!({
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {
                "name": self.cluster,
                "annotations": { SETUP_ANNOTATION: format!("{hash}@{head_uid}") },
            },
        });
        tracing::debug!(target: "daft::kube", name = %self.cluster, "apply (daft-setup) RayCluster annotation");
        call(
            "record the setup on the RayCluster",
            self.rayclusters().patch(
                &self.cluster,
                &PatchParams::apply("daft-setup").force(),
                &Patch::Apply(&patch),
            ),
        )
        .await?;
        Ok(())
    }
}

/// A RayCluster's set-up is recorded in its annotation, per head pod (a new head pod runs the
/// setup commands again).
struct HeadAnnotation<'a> {
    provider: &'a KubernetesProvider,
    head_uid: String,
}

#[async_trait]
impl crate::setup::SetupRecord for HeadAnnotation<'_> {
    async fn record(&self, _: &ObservedNode, _: &ObservedNode, hash: &str) -> anyhow::Result<()> {
        self.provider.record_setup(hash, &self.head_uid).await
    }
}

/// The pods of every RayCluster daft made in the connection's namespace, and of `existing`
/// (for `daft list`).
pub async fn list_nodes(
    c: &Connection,
    existing: Option<&str>,
) -> anyhow::Result<Vec<ObservedNode>> {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut selectors = vec![format!("{MANAGED_BY}=daft")];
    selectors.extend(existing.map(|e| format!("{RAY_CLUSTER_LABEL}={e}")));
    let mut out: Vec<ObservedNode> = Vec::new();
    for selector in selectors {
        tracing::debug!(target: "daft::kube", namespace = %c.namespace, %selector, "list pods");
        let list = call(
            "list the pods",
            pods.list(&ListParams::default().labels(&selector)),
        )
        .await?;
        for p in &list.items {
            let cluster = label(p, CLUSTER_LABEL)
                .or_else(|| label(p, RAY_CLUSTER_LABEL))
                .unwrap_or_default();
            let mut n = pod_node(&cluster, p);
            if out.iter().any(|o| o.id == n.id) {
                continue;
            }
            n.detail
                .insert("context".into(), format!("{}/{}", c.context, c.namespace));
            out.push(n);
        }
    }
    Ok(out)
}

/// Why a pod cannot become ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// It will not get better by waiting (a bad image, a crashing container).
    pub fatal: bool,
    pub text: String,
    /// The container whose last output explains it.
    pub crashed_container: Option<String>,
}

#[async_trait]
impl Provider for KubernetesProvider {
    fn context(&self) -> String {
        format!("kubernetes {}/{}", self.conn.context, self.conn.namespace)
    }

    /// The head pod's files go with it (unless the pod's volumes say otherwise).
    fn jobs_outlive_down(&self) -> bool {
        false
    }

    async fn query(&self) -> anyhow::Result<Observed> {
        Ok(Observed {
            nodes: self
                .cluster_pods()
                .await?
                .into_iter()
                .map(|(_, n)| n)
                .collect(),
            support: vec![],
        })
    }

    async fn head_transport(&self, _head: &ObservedNode) -> anyhow::Result<Arc<dyn Transport>> {
        let t = KubeTransport::new(
            self.conn.client.clone(),
            &self.conn.namespace,
            &self.cluster,
        );
        self.prepare_head(&t).await?;
        Ok(Arc::new(t))
    }

    fn dashboard_route(&self, _head: &ObservedNode) -> DashboardRoute {
        // The port-forward finds the head pod again for every connection.
        DashboardRoute::Tunnel {
            host: "head-pod".into(),
            port: kuberay::DASHBOARD_PORT,
        }
    }
}

#[async_trait]
impl DeclarativeProvider for KubernetesProvider {
    async fn desired_resource(&self) -> DesiredResource {
        let features = self.features().await;
        kuberay::desired(&self.cfg, &self.k, &self.conn.namespace, features)
    }

    async fn observe_resource(&self) -> anyhow::Result<ObservedResource> {
        self.check_kuberay().await?;
        tracing::debug!(target: "daft::kube", namespace = %self.conn.namespace, name = %self.cluster, "get RayCluster");
        let obj = call(
            "read the RayCluster",
            self.rayclusters().get_opt(&self.cluster),
        )
        .await?;
        let pods = self.cluster_pods().await?;
        let mut out = ObservedResource {
            kind: "RayCluster".into(),
            name: self.cluster.clone(),
            pods: pods.iter().map(|(_, n)| n.clone()).collect(),
            ..Default::default()
        };
        if let Some(obj) = obj {
            let v = serde_json::to_value(&obj)?;
            out.exists = true;
            out.managed_by_daft = obj.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY))
                == Some(&"daft".to_string());
            out.deleting = obj.metadata.deletion_timestamp.is_some();
            out.settings = kuberay::settings(&v);
            // The setup ran on a head that still runs, or not at all.
            let head_uid = pods
                .iter()
                .find(|(_, n)| n.role == Role::Head && n.state.is_alive())
                .and_then(|(p, _)| p.metadata.uid.clone())
                .unwrap_or_default();
            let recorded = out.settings.get("setup").cloned().unwrap_or_default();
            let setup = match recorded.split_once('@') {
                Some((hash, uid)) if uid == head_uid => hash.to_string(),
                _ => String::new(),
            };
            out.settings.insert("setup".into(), setup);
        }
        Ok(out)
    }

    async fn apply_resource(&self, want: &DesiredResource, pb: &ProgressBar) -> anyhow::Result<()> {
        // A RayCluster still being deleted is gone before its successor is made.
        let deadline = Instant::now() + self.k.ready_timeout;
        let live = loop {
            let current = call(
                "read the RayCluster",
                self.rayclusters().get_opt(&self.cluster),
            )
            .await?;
            match current {
                Some(o) if o.metadata.deletion_timestamp.is_some() => {
                    if Instant::now() > deadline {
                        return Err(anyhow!(
                            "RayCluster {} is still being deleted after {}; try again once it is gone",
                            self.cluster,
                            humantime::format_duration(self.k.ready_timeout)
                        ));
                    }
                    pb.set_message("waiting for the previous RayCluster to be deleted");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => break other,
            }
        };
        // An autoscaled group's count is the autoscaler's: carried over, not reset.
        let manifest = kuberay::with_live_replicas(&want.manifest, live.as_ref().map(|o| &o.data));
        pb.set_message(format!(
            "applying RayCluster {} (server-side, field manager daft)",
            want.name
        ));
        tracing::debug!(target: "daft::kube", namespace = %self.conn.namespace, name = %want.name, "apply RayCluster (field manager daft)");
        let applied = call(
            "apply the RayCluster",
            self.rayclusters().patch(
                &want.name,
                &PatchParams::apply("daft").force(),
                &Patch::Apply(&manifest),
            ),
        )
        .await?;
        if !self.features().await.network_policy {
            // The operator makes no NetworkPolicy: daft's own, owned by the RayCluster.
            let uid = applied.metadata.uid.clone().unwrap_or_default();
            let policy = kuberay::network_policy(&want.name, &self.conn.namespace, &uid);
            pb.set_message("applying the cluster's NetworkPolicy (its pods reach each other only)");
            tracing::debug!(target: "daft::kube", namespace = %self.conn.namespace, name = %want.name, "apply NetworkPolicy (field manager daft)");
            let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
                Api::namespaced(self.conn.client.clone(), &self.conn.namespace);
            let typed: k8s_openapi::api::networking::v1::NetworkPolicy =
                serde_json::from_value(policy)?;
            call(
                "apply the cluster's NetworkPolicy",
                policies.patch(
                    &format!("{}-daft-ingress", want.name),
                    &PatchParams::apply("daft").force(),
                    &Patch::Apply(&typed),
                ),
            )
            .await?;
        }
        Ok(())
    }

    async fn wait_ready(
        &self,
        want: &DesiredResource,
        opts: UpOptions,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode> {
        let limit = self.k.ready_timeout;
        let start = Instant::now();
        let what = if opts.wait_workers {
            format!("the head and {} worker pod(s) to be ready", want.workers)
        } else {
            "the head pod to be ready".to_string()
        };
        let mut changes = PodChanges::watch(self.pods(), self.pod_selector());
        let head = loop {
            let pods = self.cluster_pods().await?;
            let live: Vec<&(Pod, ObservedNode)> = pods
                .iter()
                .filter(|(p, _)| p.metadata.deletion_timestamp.is_none())
                .collect();
            let head = live.iter().find(|(_, n)| n.role == Role::Head);
            let ready_workers = live
                .iter()
                .filter(|(p, n)| n.role == Role::Worker && pod_ready(p))
                .count() as u32;
            let head_ready = head.is_some_and(|(p, _)| pod_ready(p));
            if head_ready && (!opts.wait_workers || ready_workers >= want.workers) {
                break (*head.expect("checked")).clone();
            }
            // Why not yet: the first pod with a problem, in the pod's own words.
            let mut why = None;
            let watched = live
                .iter()
                .filter(|(_, n)| n.role == Role::Head || opts.wait_workers);
            for (p, _) in watched {
                if let Some(problem) = self.diagnose(p).await {
                    if problem.fatal {
                        return Err(anyhow!(
                            "RayCluster {} cannot start: {}\n{LEFT}",
                            self.cluster,
                            problem.text.trim_end()
                        ));
                    }
                    why.get_or_insert(problem.text);
                }
            }
            let why = why.unwrap_or_else(|| {
                if head.is_none() {
                    "KubeRay has not made the head pod yet (is the operator running?)".to_string()
                } else {
                    format!("{ready_workers}/{} worker pod(s) ready", want.workers)
                }
            });
            if start.elapsed() > limit {
                return Err(anyhow!(
                    "RayCluster {} was not ready within {} (`ready_timeout` in [setup.kubernetes]): {why}\n{LEFT}",
                    self.cluster,
                    humantime::format_duration(limit)
                ));
            }
            pb.set_message(format!(
                "waiting up to {} for {what}: {why}",
                humantime::format_duration(limit)
            ));
            changes.next(Duration::from_secs(2)).await;
        };
        // The head is ready: its setup commands, once per head pod.
        let (head_pod, head_node) = head;
        let head_uid = head_pod.metadata.uid.clone().unwrap_or_default();
        let hash = kuberay::setup_hash(&self.cfg);
        let recorded = call(
            "read the RayCluster",
            self.rayclusters().get_opt(&self.cluster),
        )
        .await?
        .and_then(|o| o.metadata.annotations?.get(SETUP_ANNOTATION).cloned());
        if recorded != Some(format!("{hash}@{head_uid}")) {
            // The head pod is made ready for jobs (its layout) whether or not setup commands
            // run on it.
            let t = self.head_transport(&head_node).await?;
            let record = HeadAnnotation {
                provider: self,
                head_uid,
            };
            crate::setup::set_up(
                &self.cfg,
                crate::setup::NodeSetup {
                    node: &head_node,
                    head: &head_node,
                    hash: &hash,
                    bootstrap: crate::setup::Bootstrap::Done,
                    autostop: crate::autostop::AutostopSetting::Untouched,
                },
                || async { Ok(t) },
                &record,
                pb,
            )
            .await?;
        }
        Ok(head_node)
    }

    async fn delete_resource(&self, pb: &ProgressBar) -> anyhow::Result<()> {
        let limit = self.k.ready_timeout;
        tracing::debug!(target: "daft::kube", namespace = %self.conn.namespace, name = %self.cluster, "delete RayCluster (foreground)");
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        };
        match tokio::time::timeout(CALL_LIMIT, self.rayclusters().delete(&self.cluster, &dp)).await
        {
            Err(_) => return Err(no_answer("delete the RayCluster")),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
            Ok(Err(e)) => return Err(api_error(e, "delete the RayCluster")),
            Ok(Ok(_)) => {}
        }
        let start = Instant::now();
        let mut changes = PodChanges::watch(self.pods(), self.pod_selector());
        loop {
            let pods = self.cluster_pods().await?;
            let obj = call(
                "read the RayCluster",
                self.rayclusters().get_opt(&self.cluster),
            )
            .await?;
            if pods.is_empty() && obj.is_none() {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(anyhow!(
                    "RayCluster {} still has {} pod(s) after {}: {}. `daft down` again waits more",
                    self.cluster,
                    pods.len(),
                    humantime::format_duration(limit),
                    pods.iter()
                        .map(|(_, n)| n.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            pb.set_message(format!(
                "waiting up to {} for {} pod(s){} to end",
                humantime::format_duration(limit),
                pods.len(),
                if obj.is_some() {
                    " and the RayCluster"
                } else {
                    ""
                }
            ));
            changes.next(Duration::from_secs(1)).await;
        }
    }
}

/// The Kubernetes clusters for `daft list` when a kubeconfig exists (None without one): the
/// Kubernetes config's context and namespace, else the current context's daft pods.
pub async fn list_current_context(
    cfg: Option<&Config>,
) -> Option<anyhow::Result<Vec<ObservedNode>>> {
    let has_kubeconfig = std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("HOME")
            .map(|h| std::path::Path::new(&h).join(".kube/config").exists())
            .unwrap_or(false);
    if !has_kubeconfig {
        return None;
    }
    let k = cfg.and_then(|c| match &c.setup.provider {
        crate::config::ProviderSetup::Kubernetes(k) => Some(k),
        _ => None,
    });
    let file = cfg
        .map(|c| c.display_path.as_str())
        .unwrap_or("your kubeconfig");
    let listed = async {
        let c = connect(
            k.and_then(|k| k.context.as_deref()),
            k.and_then(|k| k.namespace.as_deref()),
            file,
        )
        .await?;
        list_nodes(&c, k.and_then(|k| k.existing.as_deref())).await
    };
    Some(listed.await.context("listing Kubernetes clusters"))
}
