//! `daft doctor`: what the configured commands need, checked here and now (a builder, the
//! kubeconfig context reachable and allowed to create what daft creates, KubeRay's CRDs, AWS
//! credentials, SSH key permissions, git), as a table that says how to fix each missing one.
//! Exit 1 if anything is missing.

use crate::printer::Printer;
use std::path::PathBuf;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::Api;
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::config::launch::{LaunchConfig, DEFAULT_LAUNCH};
use crate::config::{Config, ProviderSetup, DEFAULT_CONFIG};
use crate::error::JobExit;
use crate::kube_api::{call, connect, Connection};

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked ("kubeconfig context", "builder").
    pub check: String,
    /// For which command or file ("daft launch", ".daft.toml").
    pub for_what: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to fix it (empty when ok).
    pub fix: String,
}

fn check(check: &str, for_what: &str, r: Result<String, (String, String)>) -> Check {
    match r {
        Ok(detail) => Check {
            check: check.into(),
            for_what: for_what.into(),
            ok: true,
            detail,
            fix: String::new(),
        },
        Err((detail, fix)) => Check {
            check: check.into(),
            for_what: for_what.into(),
            ok: false,
            detail,
            fix,
        },
    }
}

pub async fn run(args: &DoctorArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg_path = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()));
    let launch_path = args
        .launch
        .clone()
        .or_else(|| Some(PathBuf::from(DEFAULT_LAUNCH)).filter(|p| p.exists()));
    let mut checks = Vec::new();
    checks.push(check(
        "git",
        "jobs' provenance",
        match crate::build::on_path("git") {
            Some(p) => Ok(p.display().to_string()),
            None => Err((
                "git is not on PATH".into(),
                "install git (apt-get install git, brew install git)".into(),
            )),
        },
    ));
    if let Some(p) = &cfg_path {
        let file = p.display().to_string();
        match Config::load(p) {
            Err(e) => checks.push(check(
                "config",
                &file,
                Err((
                    e.title.clone(),
                    format!("`daft plan -c {file}` shows where"),
                )),
            )),
            Ok(cfg) => cluster_checks(&cfg, &file, &mut checks).await,
        }
    }
    if let Some(p) = &launch_path {
        let file = p.display().to_string();
        match LaunchConfig::load(p) {
            Err(e) => checks.push(check(
                "launch file",
                &file,
                Err((
                    e.title.clone(),
                    format!("`daft launch -f {file} --dry-run` shows where"),
                )),
            )),
            Ok(cfg) => launch_checks(&cfg, &file, &mut checks).await,
        }
    }
    if cfg_path.is_none() && launch_path.is_none() {
        checks.push(check(
            "config",
            "daft",
            Err((
                format!("no {DEFAULT_CONFIG} or {DEFAULT_LAUNCH} here"),
                "name one with -c FILE or -f FILE, or write one with `daft init-config`".into(),
            )),
        ));
    }
    pr.show(&checks, |v| render(v))?;
    let missing = checks.iter().filter(|c| !c.ok).count();
    if missing > 0 {
        crate::note!(pr, "daft: {missing} check(s) failed");
        return Err(JobExit(1).into());
    }
    Ok(())
}

/// The checks as a table.
pub fn render(checks: &[Check]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(vec!["", "check", "for", "found", "how to fix"]);
    for c in checks {
        t.add_row(vec![
            if c.ok { "ok" } else { "MISSING" }.to_string(),
            c.check.clone(),
            c.for_what.clone(),
            c.detail.clone(),
            c.fix.clone(),
        ]);
    }
    format!("{t}\n")
}

async fn cluster_checks(cfg: &Config, file: &str, checks: &mut Vec<Check>) {
    match &cfg.setup.provider {
        ProviderSetup::Aws(a) => {
            let r = crate::provider::aws::client(&a.region).await;
            checks.push(check(
                "AWS credentials",
                file,
                match r {
                    Ok(_) => Ok(format!("found (region {})", a.region)),
                    Err(e) => Err((
                        format!("{e:#}"),
                        "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure` / `aws sso login`".into(),
                    )),
                },
            ));
            key_check(cfg, file, checks);
        }
        ProviderSetup::Ssh(_) | ProviderSetup::Slurm(_) => key_check(cfg, file, checks),
        ProviderSetup::Local(_) => {}
        ProviderSetup::Kubernetes(k) => {
            match connect(k.context.as_deref(), k.namespace.as_deref(), file).await {
                Err(e) => checks.push(check(
                    "kubeconfig context",
                    file,
                    Err((
                        format!("{e:#}"),
                        "set KUBECONFIG or `context` in [setup.kubernetes]".into(),
                    )),
                )),
                Ok(c) => {
                    let reachable = reachable(&c, file, checks).await;
                    if reachable {
                        crds(&c, file, &["rayclusters"], checks).await;
                        let verbs: &[(&str, &str, &str)] = if k.existing.is_some() {
                            &[
                                ("", "pods/exec", "create"),
                                ("", "pods/portforward", "create"),
                            ]
                        } else {
                            &[
                                ("ray.io", "rayclusters", "patch"),
                                ("ray.io", "rayclusters", "delete"),
                                ("", "pods/exec", "create"),
                                ("", "pods/portforward", "create"),
                            ]
                        };
                        for (group, resource, verb) in verbs {
                            allowed(&c, file, group, resource, verb, checks).await;
                        }
                    }
                }
            }
        }
    }
}

fn key_check(cfg: &Config, file: &str, checks: &mut Vec<Check>) {
    let Some(key) = &cfg.setup.ssh_private_key else {
        let agent = std::env::var_os("SSH_AUTH_SOCK").is_some();
        checks.push(check(
            "SSH key",
            file,
            if agent {
                Ok("no key file set: ssh-agent is used".into())
            } else {
                Err((
                    "no `ssh_private_key` and no ssh-agent (SSH_AUTH_SOCK)".into(),
                    "set `ssh_private_key` in [setup], pass -i KEY, or start ssh-agent".into(),
                ))
            },
        ));
        return;
    };
    checks.push(check(
        "SSH key",
        file,
        match crate::keys::check_private_key_file(key) {
            Ok(()) => Ok(format!("{} (owner only)", key.display())),
            Err(p) => Err((p.title, p.help)),
        },
    ));
}

async fn reachable(c: &Connection, file: &str, checks: &mut Vec<Check>) -> bool {
    let r = call(
        "read the API server's version",
        c.client.apiserver_version(),
    )
    .await;
    let ok = r.is_ok();
    checks.push(check(
        "kubeconfig context",
        file,
        match r {
            Ok(v) => Ok(format!(
                "{} ({}, Kubernetes {}), namespace {}",
                c.context, c.server, v.git_version, c.namespace
            )),
            Err(e) => Err((
                format!("{e:#}"),
                format!("check that context {:?} points at a running cluster and its credentials are fresh", c.context),
            )),
        },
    ));
    ok
}

async fn crds(c: &Connection, file: &str, resources: &[&str], checks: &mut Vec<Check>) {
    let served = crate::kube_api::served_resources(c, "ray.io/v1").await;
    for res in resources {
        checks.push(check(
            "KubeRay CRD",
            file,
            match &served {
                Ok(have) if have.iter().any(|h| h == res) => Ok(format!("{res}.ray.io served")),
                Ok(_) => Err((
                    format!("the cluster serves no {res}.ray.io"),
                    crate::kube_api::INSTALL_KUBERAY.into(),
                )),
                Err(e) => Err((
                    format!("{e:#}"),
                    "check the context's credentials and permissions".into(),
                )),
            },
        ));
    }
}

/// Whether the caller may `verb` `resource` in the namespace (a SelfSubjectAccessReview).
async fn allowed(
    c: &Connection,
    file: &str,
    group: &str,
    resource: &str,
    verb: &str,
    checks: &mut Vec<Check>,
) {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource: subresource.clone(),
                verb: Some(verb.to_string()),
                namespace: Some(c.namespace.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(c.client.clone());
    tracing::debug!(target: "daft::kube", group, resource, verb, "selfsubjectaccessreview");
    let what = format!(
        "{verb} {resource}{}{}",
        subresource
            .as_deref()
            .map(|s| format!("/{s}"))
            .unwrap_or_default(),
        if group.is_empty() {
            String::new()
        } else {
            format!(".{group}")
        }
    );
    let r = call(
        "ask the API server what daft may do",
        api.create(&PostParams::default(), &review),
    )
    .await;
    checks.push(check(
        "permission",
        file,
        match r {
            Ok(rv) if rv.status.as_ref().is_some_and(|s| s.allowed) => {
                Ok(format!("may {what} in {}", c.namespace))
            }
            Ok(rv) => Err((
                format!(
                    "may not {what} in {}{}",
                    c.namespace,
                    rv.status
                        .and_then(|s| s.reason)
                        .filter(|r| !r.is_empty())
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
                "ask the cluster's administrator for a Role (RBAC) that grants it".into(),
            )),
            Err(e) => Err((format!("{e:#}"), "check the context's credentials".into())),
        },
    ));
}

async fn launch_checks(cfg: &LaunchConfig, file: &str, checks: &mut Vec<Check>) {
    checks.push(check(
        "image builder",
        file,
        match crate::build::choose(cfg.builder).await {
            Ok(b) => Ok(b.name().to_string()),
            Err(e) => Err((
                format!("{e:#}"),
                crate::build::install_hint(cfg.builder).to_string(),
            )),
        },
    ));
    match &cfg.registry {
        None => checks.push(check(
            "registry",
            file,
            Err((
                "no `registry` under [image]".into(),
                "set where the image is pushed, for example registry = \"registry.example.com/team\"".into(),
            )),
        )),
        Some(reg) => {
            let host = reg.split('/').next().unwrap_or(reg);
            let url = format!("{}/v2/", crate::registry::registry_base(host));
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                crate::https::request("GET", &url, &[]),
            )
            .await;
            checks.push(check(
                "registry",
                file,
                match r {
                    Ok(Ok(a)) if a.status == 200 || a.status == 401 => Ok(format!(
                        "{host} answers{}",
                        if a.status == 401 { " (wants credentials)" } else { "" }
                    )),
                    Ok(Ok(a)) => Err((
                        format!("{url} answered HTTP {}", a.status),
                        "check `registry` under [image]".into(),
                    )),
                    Ok(Err(e)) => Err((
                        format!("{e:#}"),
                        "check `registry` under [image] and that it runs".into(),
                    )),
                    Err(_) => Err((
                        format!("{url} did not answer within 20s"),
                        "check `registry` under [image] and your network".into(),
                    )),
                },
            ));
        }
    }
    match connect(cfg.context.as_deref(), cfg.namespace.as_deref(), file).await {
        Err(e) => checks.push(check(
            "kubeconfig context",
            file,
            Err((
                format!("{e:#}"),
                "set KUBECONFIG or `context` in [kubernetes]".into(),
            )),
        )),
        Ok(c) => {
            if reachable(&c, file, checks).await {
                if cfg.workers > 0 {
                    crds(&c, file, &["rayjobs"], checks).await;
                    allowed(&c, file, "ray.io", "rayjobs", "create", checks).await;
                } else {
                    allowed(&c, file, "batch", "jobs", "create", checks).await;
                }
                allowed(&c, file, "", "pods/log", "get", checks).await;
            }
        }
    }
}
