//! `daft launch`'s pure parts: the image tag from git provenance, the generated Dockerfile, the
//! `batch/v1` Job and the KubeRay `RayJob` manifests, and how a RayJob's status reads.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::config::launch::LaunchConfig;
use crate::git::Provenance;
use crate::kuberay::MANAGED_BY;

/// The label naming the launch an object belongs to.
pub const LAUNCH_LABEL: &str = "daft.io/launch";

/// What the image is tagged with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTag {
    pub tag: String,
    /// The commit (None outside a repository).
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub dirty: bool,
}

/// The tag for the project's state: the commit's hash; with uncommitted changes (allowed),
/// the commit's short hash and a hash of the diff and the changed files' names; outside git, a
/// hash of the project's files.
pub fn image_tag(p: &Provenance, files_hash: &str) -> ImageTag {
    match p {
        Provenance::Git {
            commit: Some(c),
            branch,
            dirty,
            changes,
            diff,
            staged_diff,
            ..
        } => {
            if *dirty {
                // (The files' own hash covers untracked files too.)
                let h = crate::model::short_hash(
                    [diff.as_str(), staged_diff.as_str(), files_hash]
                        .into_iter()
                        .chain(changes.iter().map(String::as_str)),
                );
                ImageTag {
                    tag: format!("{}-dirty-{}", &c[..c.len().min(12)], &h[..12]),
                    commit: Some(c.clone()),
                    branch: branch.clone(),
                    dirty: true,
                }
            } else {
                ImageTag {
                    tag: c.clone(),
                    commit: Some(c.clone()),
                    branch: branch.clone(),
                    dirty: false,
                }
            }
        }
        _ => ImageTag {
            tag: format!("files-{}", &files_hash[..files_hash.len().min(16)]),
            commit: None,
            branch: None,
            dirty: false,
        },
    }
}

/// The Dockerfile daft writes when the project has none: the base, the project's
/// dependencies through uv (from `pyproject.toml` or `requirements.txt`), the project in /app.
pub fn dockerfile(cfg: &LaunchConfig, project: &Path) -> String {
    let mut out = format!(
        "# Written by daft for {name} (launch.toml: [image] dockerfile names your own instead).\n\
         FROM {base}\n\
         ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 RAY_USAGE_STATS_ENABLED=0 DO_NOT_TRACK=1\n\
         WORKDIR /app\n",
        name = cfg.name,
        base = cfg.base
    );
    let pyproject = project.join("pyproject.toml").is_file();
    let requirements = project.join("requirements.txt").is_file();
    if pyproject || requirements {
        out.push_str("RUN python -m pip install --no-cache-dir uv\n");
    }
    if requirements {
        out.push_str(
            "COPY requirements.txt /app/requirements.txt\n\
             RUN uv pip install --system --no-cache -r /app/requirements.txt\n",
        );
    }
    out.push_str("COPY . /app\n");
    if pyproject {
        out.push_str("RUN uv pip install --system --no-cache /app\n");
    }
    out
}

/// The annotations every launched object carries: where it came from.
pub fn annotations(tag: &ImageTag, user: &str) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    if let Some(c) = &tag.commit {
        a.insert("daft.io/git-commit".into(), c.clone());
    }
    if let Some(b) = &tag.branch {
        a.insert("daft.io/git-branch".into(), b.clone());
    }
    a.insert("daft.io/git-dirty".into(), tag.dirty.to_string());
    a.insert("daft.io/user".into(), user.to_string());
    a.insert("daft.io/version".into(), env!("CARGO_PKG_VERSION").into());
    a
}

/// The pod spec of the job's (or the Ray head's and workers') pods.
fn pod_spec(cfg: &LaunchConfig, container: &Value) -> Value {
    let mut spec = json!({ "containers": [container] });
    if let Some(sa) = &cfg.service_account {
        spec["serviceAccountName"] = json!(sa);
    }
    if !cfg.node_selector.is_empty() {
        spec["nodeSelector"] = json!(cfg.node_selector);
    }
    if !cfg.tolerations.is_empty() {
        spec["tolerations"] = crate::kuberay::tolerations(&cfg.tolerations);
    }
    if let Some(mib) = cfg.gpu_memory_mib {
        // GPU feature discovery labels nodes with their GPUs' memory in MiB.
        spec["affinity"] = json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchExpressions": [{
                "key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [(mib - 1).to_string()],
            }]}],
        }}});
    }
    spec
}

fn resources(cfg: &LaunchConfig) -> Value {
    let mut r = serde_json::Map::new();
    if let Some(c) = &cfg.cpu {
        r.insert("cpu".into(), json!(c));
    }
    if let Some(m) = &cfg.memory {
        r.insert("memory".into(), json!(m));
    }
    let mut limits = r.clone();
    if cfg.gpus > 0 {
        limits.insert("nvidia.com/gpu".into(), json!(cfg.gpus.to_string()));
    }
    let mut out = json!({});
    if !r.is_empty() {
        out["requests"] = Value::Object(r);
    }
    if !limits.is_empty() {
        out["limits"] = Value::Object(limits);
    }
    out
}

fn env(cfg: &LaunchConfig, job: &str) -> Value {
    let mut e: Vec<Value> = cfg
        .env
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    e.push(json!({ "name": "DAFT_JOB_NAME", "value": job }));
    Value::Array(e)
}

/// Every key of the launch's Secrets as a variable of the job.
fn env_from(cfg: &LaunchConfig) -> Value {
    cfg.secrets
        .iter()
        .map(|s| json!({ "secretRef": { "name": s } }))
        .collect()
}

/// The launch's sweep is one Katib Experiment.
pub fn katib(cfg: &LaunchConfig) -> Option<(&crate::sweep::Sweep, &crate::sweep::KatibSpec)> {
    let s = cfg.sweep.as_ref()?;
    Some((s, s.katib.as_ref()?))
}

/// What every manifest of one launch shares: its config, its namespace, its image (a
/// `tag@digest` reference), its command and its annotations (provenance).
#[derive(Clone, Copy)]
pub struct Manifests<'a> {
    pub cfg: &'a LaunchConfig,
    pub namespace: &'a str,
    pub image: &'a str,
    pub command: &'a str,
    pub annotations: &'a BTreeMap<String, String>,
}

impl Manifests<'_> {
    /// The object named `name` the launch runs as: a Katib Experiment for a Katib sweep, a
    /// RayJob when it has workers, else a Job.
    pub fn for_launch(&self, name: &str) -> Value {
        if let Some((sweep, k)) = katib(self.cfg) {
            self.katib_experiment(sweep, k, name)
        } else if self.cfg.workers > 0 {
            self.rayjob(name)
        } else {
            self.job(name)
        }
    }

    /// The labels of the launch's objects and of their pods.
    fn labels(&self) -> Value {
        json!({ MANAGED_BY: "daft", LAUNCH_LABEL: self.cfg.name })
    }

    /// The metadata of the launch's object `name`.
    fn metadata(&self, name: &str) -> Value {
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(),
            "annotations": self.annotations,
        })
    }

    /// A container `name` of the launch's image, with its environment, resources and secrets.
    fn container(&self, job: &str, name: &str) -> Value {
        let cfg = self.cfg;
        let mut c = json!({
            "name": name,
            "image": self.image,
            "env": env(cfg, job),
            "resources": resources(cfg),
        });
        if !cfg.secrets.is_empty() {
            c["envFrom"] = env_from(cfg);
        }
        c
    }

    /// The `batch/v1` Job running `command` in `image`.
    pub fn job(&self, job: &str) -> Value {
        let cfg = self.cfg;
        let mut container = self.container(job, "main");
        container["command"] = json!(["/bin/sh", "-c", self.command]);
        let mut pod = pod_spec(cfg, &container);
        pod["restartPolicy"] = json!("Never");
        let mut spec = json!({
            "backoffLimit": cfg.backoff_limit,
            "template": {
                "metadata": { "labels": self.labels(), "annotations": self.annotations },
                "spec": pod,
            },
        });
        if let Some(t) = cfg.ttl_seconds_after_finished {
            spec["ttlSecondsAfterFinished"] = json!(t);
        }
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(job),
            "spec": spec,
        })
    }

    /// The KubeRay `RayJob`: a Ray cluster of `cfg.workers` workers in `image`, `command` as its
    /// entrypoint, shut down when the job ends.
    pub fn rayjob(&self, job: &str) -> Value {
        let cfg = self.cfg;
        let mut head = self.container(job, "ray-head");
        head["ports"] = json!([
            { "containerPort": 6379, "name": "gcs-server" },
            { "containerPort": 8265, "name": "dashboard" },
            { "containerPort": 10001, "name": "client" },
        ]);
        let worker = self.container(job, "ray-worker");
        let labels = self.labels();
        let mut spec = json!({
            "entrypoint": self.command,
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": true,
            "backoffLimit": cfg.backoff_limit,
            "rayClusterSpec": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": { "metadata": { "labels": labels }, "spec": pod_spec(cfg, &head) },
                },
                "workerGroupSpecs": [{
                    "groupName": "workers",
                    "replicas": cfg.workers,
                    "minReplicas": cfg.workers,
                    "maxReplicas": cfg.workers,
                    "rayStartParams": {},
                    "template": { "metadata": { "labels": labels }, "spec": pod_spec(cfg, &worker) },
                }],
            },
        });
        if let Some(t) = cfg.ttl_seconds_after_finished {
            spec["ttlSecondsAfterFinished"] = json!(t);
        }
        json!({
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": self.metadata(job),
            "spec": spec,
        })
    }

    /// The Katib `Experiment` (`kubeflow.org/v1beta1`) of a `[sweep]` with `katib = true`: the
    /// sweep's space as Katib parameters, each trial a Job running `command` with
    /// `--name=value` for every parameter; the objective is the metric trials print.
    pub fn katib_experiment(
        &self,
        sweep: &crate::sweep::Sweep,
        k: &crate::sweep::KatibSpec,
        name: &str,
    ) -> Value {
        use crate::sweep::Dist;
        let cfg = self.cfg;
        let as_text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let parameters: Vec<Value> = sweep
        .space
        .iter()
        .map(|(n, d)| match d {
            Dist::Uniform(a, b) => json!({ "name": n, "parameterType": "double",
                "feasibleSpace": { "min": a.to_string(), "max": b.to_string() } }),
            Dist::LogUniform(a, b) => json!({ "name": n, "parameterType": "double",
                "feasibleSpace": { "min": a.to_string(), "max": b.to_string(), "distribution": "logUniform" } }),
            Dist::Choice(vs) => json!({ "name": n, "parameterType": "categorical",
                "feasibleSpace": { "list": vs.iter().map(as_text).collect::<Vec<_>>() } }),
            Dist::Fixed(v) => json!({ "name": n, "parameterType": "categorical",
                "feasibleSpace": { "list": [as_text(v)] } }),
        })
        .collect();
        let mut trial_command = self.command.to_string();
        for (n, _) in &sweep.space {
            trial_command.push_str(&format!(" --{n}=${{trialParameters.{n}}}"));
        }
        let mut trial = Manifests {
            command: &trial_command,
            ..*self
        }
        .job(name);
        // (Katib names and labels each trial's Job itself.)
        let trial_spec = json!({ "apiVersion": "batch/v1", "kind": "Job", "spec": {
            "backoffLimit": cfg.backoff_limit,
            "template": trial["spec"]["template"].take(),
        }});
        let mut objective = json!({
            "type": if k.maximize { "maximize" } else { "minimize" },
            "objectiveMetricName": k.objective,
        });
        if let Some(g) = k.goal {
            objective["goal"] = json!(g);
        }
        json!({
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Experiment",
            "metadata": self.metadata(name),
            "spec": {
                "objective": objective,
                "algorithm": { "algorithmName": k.algorithm },
                "parallelTrialCount": sweep.max_parallel,
                "maxTrialCount": k.max_trials,
                "maxFailedTrialCount": k.max_failed,
                "parameters": parameters,
                "trialTemplate": {
                    "primaryContainerName": "main",
                    "trialParameters": sweep.space.iter().map(|(n, _)| json!({ "name": n, "reference": n })).collect::<Vec<_>>(),
                    "trialSpec": trial_spec,
                },
            },
        })
    }
}

/// A Katib Experiment's status: its newest true condition decides (`Succeeded`, `Failed`);
/// any other, known or not, keeps waiting. Never panics on what it does not know.
pub fn katib_verdict(status: &Value) -> Verdict {
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let Some(last) = conditions.iter().rev().find(|c| c["status"] == "True") else {
        return Verdict::Running("no condition yet".into());
    };
    let ty = last["type"].as_str().unwrap_or("");
    let said = || {
        let reason = last["reason"].as_str().unwrap_or("");
        let message = last["message"].as_str().unwrap_or("");
        format!(
            "{reason}{}{message}",
            if reason.is_empty() || message.is_empty() {
                ""
            } else {
                ": "
            }
        )
    };
    match ty {
        "Succeeded" => Verdict::Succeeded,
        "Failed" => Verdict::Failed(format!("the Experiment failed: {}", said())),
        other => Verdict::Running(format!("{other}: {}", said())),
    }
}

/// The best trial so far, as Katib reports it ("lr=0.01: accuracy=0.93").
pub fn katib_best(status: &Value) -> Option<String> {
    let best = &status["currentOptimalTrial"];
    let params: Vec<String> = best["parameterAssignments"]
        .as_array()?
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p["name"].as_str().unwrap_or("?"),
                p["value"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let metrics: Vec<String> = best["observation"]["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}={}",
                m["name"].as_str().unwrap_or("?"),
                m["latest"].as_str().or(m["max"].as_str()).unwrap_or("?")
            )
        })
        .collect();
    Some(format!("{}: {}", params.join(" "), metrics.join(" ")))
}

/// A unique job name: the launch's name, the time, a random suffix (what `generateName`
/// would give, known before the apply).
pub fn job_name(name: &str, now: std::time::SystemTime, suffix: &str) -> String {
    let t = humantime::format_rfc3339_seconds(now).to_string();
    let stamp: String = t.chars().filter(|c| c.is_ascii_digit()).take(14).collect();
    format!("{name}-{}-{}-{suffix}", &stamp[..8], &stamp[8..])
}

/// How a job run ends, as far as it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Running(String),
    Succeeded,
    Failed(String),
}

/// A `batch/v1` Job's status: Complete / Failed conditions, else counts.
pub fn job_verdict(status: &Value) -> Verdict {
    for c in status["conditions"].as_array().into_iter().flatten() {
        if c["status"] != "True" {
            continue;
        }
        match c["type"].as_str() {
            Some("Complete") | Some("SuccessCriteriaMet") => return Verdict::Succeeded,
            Some("Failed") | Some("FailureTarget") => {
                return Verdict::Failed(format!(
                    "{}{}",
                    c["reason"].as_str().unwrap_or("Failed"),
                    c["message"]
                        .as_str()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ))
            }
            _ => {}
        }
    }
    Verdict::Running(format!(
        "{} active, {} succeeded, {} failed",
        status["active"].as_i64().unwrap_or(0),
        status["succeeded"].as_i64().unwrap_or(0),
        status["failed"].as_i64().unwrap_or(0)
    ))
}

/// A RayJob's status: decided from `jobDeploymentStatus` and `jobStatus` together. A
/// `ValidationFailed` deployment is final; a `Failed` deployment fails the run even while Ray
/// still says `RUNNING` (the submitter or the cluster died); unknown values keep waiting.
pub fn rayjob_verdict(status: &Value) -> Verdict {
    let deployment = status["jobDeploymentStatus"].as_str().unwrap_or("");
    let job = status["jobStatus"].as_str().unwrap_or("");
    let why = || {
        let reason = status["reason"].as_str().unwrap_or("");
        let message = status["message"].as_str().unwrap_or("");
        match (reason.is_empty(), message.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(": {reason}"),
            (true, false) => format!(": {message}"),
            (false, false) => format!(": {reason}: {message}"),
        }
    };
    match (deployment, job) {
        ("ValidationFailed", _) => Verdict::Failed(format!(
            "KubeRay refused the RayJob (ValidationFailed){}",
            why()
        )),
        (_, "SUCCEEDED") => Verdict::Succeeded,
        (_, "FAILED") => Verdict::Failed(format!("the Ray job failed{}", why())),
        (_, "STOPPED") => Verdict::Failed(format!("the Ray job was stopped{}", why())),
        ("Failed", j) => Verdict::Failed(format!(
            "the RayJob's deployment failed while Ray's job was {}{}",
            if j.is_empty() { "not started" } else { j },
            why()
        )),
        ("Complete", _) => Verdict::Succeeded,
        (d, j) => Verdict::Running(format!(
            "deployment {}, job {}",
            if d.is_empty() { "pending" } else { d },
            if j.is_empty() { "not started" } else { j }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rayjob_status_combinations() {
        let v = |d: &str, j: &str| json!({ "jobDeploymentStatus": d, "jobStatus": j, "reason": "R", "message": "M" });
        assert_eq!(
            rayjob_verdict(&v("Complete", "SUCCEEDED")),
            Verdict::Succeeded
        );
        assert_eq!(
            rayjob_verdict(&v("Running", "SUCCEEDED")),
            Verdict::Succeeded
        );
        assert!(
            matches!(rayjob_verdict(&v("Complete", "FAILED")), Verdict::Failed(m) if m.contains("R: M"))
        );
        assert!(
            matches!(rayjob_verdict(&v("Failed", "RUNNING")), Verdict::Failed(m) if m.contains("while Ray's job was RUNNING"))
        );
        assert!(
            matches!(rayjob_verdict(&v("ValidationFailed", "")), Verdict::Failed(m) if m.contains("ValidationFailed"))
        );
        assert!(matches!(
            rayjob_verdict(&v("Initializing", "")),
            Verdict::Running(_)
        ));
        assert!(matches!(
            rayjob_verdict(&v("Running", "RUNNING")),
            Verdict::Running(_)
        ));
        // Values this version does not know: still waiting, no panic.
        assert!(matches!(
            rayjob_verdict(&v("Suspending", "SOMETHING_NEW")),
            Verdict::Running(_)
        ));
        assert!(matches!(rayjob_verdict(&json!({})), Verdict::Running(_)));
    }

    #[test]
    fn katib_conditions_end_on_succeeded_or_failed_and_wait_on_anything_else() {
        let c = |ty: &str| {
            json!({ "conditions": [
            { "type": "Created", "status": "True" },
            { "type": ty, "status": "True", "reason": "R", "message": "M" } ] })
        };
        assert_eq!(katib_verdict(&c("Succeeded")), Verdict::Succeeded);
        assert!(matches!(katib_verdict(&c("Failed")), Verdict::Failed(m) if m.contains("R: M")));
        assert!(matches!(katib_verdict(&c("Running")), Verdict::Running(_)));
        assert!(
            matches!(katib_verdict(&c("Reticulating")), Verdict::Running(m) if m.starts_with("Reticulating"))
        );
        assert!(matches!(
            katib_verdict(&json!({ "conditions": [{ "type": 7 }] })),
            Verdict::Running(_)
        ));
        assert!(matches!(katib_verdict(&json!(null)), Verdict::Running(_)));
    }

    #[test]
    fn job_status_conditions() {
        assert_eq!(
            job_verdict(&json!({"conditions": [{"type": "Complete", "status": "True"}]})),
            Verdict::Succeeded
        );
        assert!(matches!(
            job_verdict(&json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})),
            Verdict::Failed(m) if m.starts_with("BackoffLimitExceeded")
        ));
        assert!(matches!(
            job_verdict(&json!({"active": 1})),
            Verdict::Running(_)
        ));
    }

    #[test]
    fn job_names_are_unique_and_valid() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let n = job_name("train", t, "x7k2");
        assert_eq!(n, "train-20261118-110640-x7k2");
        assert!(crate::config::is_dns_label(&n));
    }
}
