//! Rendering `templates/bootstrap.sh` for one node, and running its steps through a transport.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context};

use crate::agent::{self, said, Said};
use crate::config::Config;
use crate::model::{short_hash, Role};
use crate::templates::BOOTSTRAP;
use std::time::Duration;

use crate::model::TELEMETRY_OFF;
use crate::shell::{dquote, shell_quote};
use crate::transport::{capture_guarded, redact, Captured, RemoteCommand, Transport};

/// The pip requirements of the cluster's environment, one per line.
pub fn requirements(cfg: &Config) -> String {
    let ray = match &cfg.setup.ray_version {
        Some(v) => format!("ray[default]=={v}"),
        None => "ray[default]".to_string(),
    };
    let mut reqs = vec![ray, "daft".to_string()];
    if cfg.setup.autostop.is_some() && cfg.setup.provider.kind() == crate::config::ProviderKind::Aws
    {
        // The head's autostop terminates the cluster's instances through EC2's API.
        reqs.push("boto3".to_string());
    }
    reqs.extend(cfg.setup.dependencies.iter().cloned());
    reqs.join("\n")
}

/// Hash of what the environment contains: clusters with the same pins share it.
pub fn env_hash(cfg: &Config) -> String {
    let py = cfg.setup.python_version.clone().unwrap_or_default();
    let reqs = requirements(cfg);
    short_hash([format!("python={py}").as_str(), reqs.as_str()])
}

/// Hash of everything setup does; a change is an update in place.
pub fn setup_hash(cfg: &Config) -> String {
    let env = env_hash(cfg);
    let cmds = cfg.run.setup_commands.join("\n");
    // An autostop setting is armed as the head is set up: a new one is an update. (None adds
    // nothing: clusters without one keep the hash they had.)
    match cfg.setup.autostop {
        Some(d) => {
            let a = format!("autostop {}", d.as_secs());
            short_hash([env.as_str(), cmds.as_str(), a.as_str()])
        }
        None => short_hash([env.as_str(), cmds.as_str()]),
    }
}

/// Settings for one node's run of the bootstrap script.
#[derive(Debug, Clone, Default)]
pub struct NodeParams {
    /// Absolute, or `$HOME/...` (expanded by the node's shell).
    pub daft_home: String,
    pub cluster: String,
    pub node: String,
    pub role: Option<Role>,
    pub env_hash: String,
    pub requirements: String,
    pub python_version: Option<String>,
    pub node_ip: Option<String>,
    pub head_address: Option<String>,
    /// The id of the head a worker joins (a new head may have the old one's address).
    pub head_id: Option<String>,
    pub ray_port: u16,
    pub dashboard_host: String,
    pub dashboard_port: u16,
    pub ray_args: String,
    /// `KEY=VALUE` settings (space-separated, no spaces inside) Ray is started with.
    pub ray_env: String,
    /// Ray's token authentication: the head makes the cluster's token, workers get it from daft.
    pub ray_auth: bool,
    pub ray_tmp: String,
    pub node_json: String,
    /// The node's record as written before it starts (not yet set up); empty: none.
    pub node_json_pending: String,
    /// The host `add-member` / `remove-member` act on (SSH hosts, run on the head).
    pub member: Option<String>,
    /// Settings the script takes from its environment instead (known only where it runs:
    /// a Slurm worker's node name and head address).
    pub from_env: Vec<&'static str>,
}

impl NodeParams {
    pub fn vars(&self) -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::new();
        v.insert("DAFT_HOME", self.daft_home.clone());
        v.insert("DAFT_CLUSTER", self.cluster.clone());
        v.insert("DAFT_NODE", self.node.clone());
        v.insert(
            "DAFT_ROLE",
            self.role.unwrap_or(Role::Head).as_str().to_string(),
        );
        v.insert("DAFT_ENV_HASH", self.env_hash.clone());
        v.insert("DAFT_REQUIREMENTS", self.requirements.clone());
        v.insert(
            "DAFT_PYTHON_VERSION",
            self.python_version.clone().unwrap_or_default(),
        );
        v.insert("DAFT_NODE_IP", self.node_ip.clone().unwrap_or_default());
        v.insert(
            "DAFT_HEAD_ADDRESS",
            self.head_address.clone().unwrap_or_default(),
        );
        v.insert("DAFT_HEAD_ID", self.head_id.clone().unwrap_or_default());
        v.insert("DAFT_RAY_PORT", self.ray_port.to_string());
        v.insert("DAFT_DASHBOARD_HOST", self.dashboard_host.clone());
        v.insert("DAFT_DASHBOARD_PORT", self.dashboard_port.to_string());
        v.insert("DAFT_RAY_ARGS", self.ray_args.clone());
        v.insert("DAFT_RAY_ENV", self.ray_env.clone());
        v.insert(
            "DAFT_RAY_AUTH",
            if self.ray_auth { "token" } else { "" }.to_string(),
        );
        v.insert("DAFT_RAY_TMP", self.ray_tmp.clone());
        v.insert("DAFT_NODE_JSON", self.node_json.clone());
        v.insert("DAFT_NODE_JSON_PENDING", self.node_json_pending.clone());
        if let Some(m) = &self.member {
            v.insert("DAFT_MEMBER", m.clone());
        }
        v
    }
}

/// Quote a value for the script's prelude; `$HOME/...` stays expandable.
fn prelude_value(v: &str) -> String {
    match v.strip_prefix("$HOME/") {
        Some(rest)
            if rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c)) =>
        {
            format!("\"$HOME\"/{}", shell_quote(rest))
        }
        _ => shell_quote(v),
    }
}

/// The settings as shell assignments, one per line (plain variables of the script's shell,
/// not exported to what it starts).
fn prelude(params: &NodeParams) -> String {
    let mut s = String::new();
    for (k, v) in params.vars() {
        if params.from_env.contains(&k) {
            continue;
        }
        s.push_str(&format!("{k}={}\n", prelude_value(&v)));
    }
    s
}

/// The whole script for a node: settings, then the template (a file of its own: EC2 user data,
/// a Slurm allocation's scripts).
pub fn render(params: &NodeParams) -> String {
    let mut s = String::from("#!/bin/sh\n# rendered by daft from templates/bootstrap.sh\n");
    s.push_str(&prelude(params));
    s.push_str(BOOTSTRAP);
    s
}

/// The bootstrap's own hash: its file on a node is named after it (see [`crate::agent`]).
pub fn agent_hash() -> String {
    agent::BOOTSTRAP.hash()
}

/// Where the bootstrap lives on a node whose daft directory is `daft_home`.
pub fn agent_path(daft_home: &str) -> String {
    agent::BOOTSTRAP.path(daft_home)
}

/// A shell command that runs the node's copy of the bootstrap (uploaded once per version, see
/// [`run`]) with these settings and actions: one quoted script (`sh -c SCRIPT daft-bootstrap
/// ACTIONS`) of the settings, then the copy sourced; nothing in a value runs, and the ~18 KB
/// script itself is not resent with every call.
pub fn command(params: &NodeParams, actions: &[&str]) -> RemoteCommand {
    let script = format!(
        "{}DAFT_AGENT_FILE={}\nif [ ! -f \"$DAFT_AGENT_FILE\" ]; then echo {}; exit {}; fi\n. \"$DAFT_AGENT_FILE\"\n",
        prelude(params),
        prelude_value(&agent_path(&params.daft_home)),
        agent::MISSING_LINE,
        agent::MISSING,
    );
    let text = format!(
        "sh -c {} daft-bootstrap {}",
        shell_quote(&script),
        actions.join(" ")
    );
    let settings: Vec<String> = params
        .vars()
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                *k,
                "DAFT_REQUIREMENTS" | "DAFT_NODE_JSON" | "DAFT_NODE_JSON_PENDING"
            )
        })
        .map(|(k, v)| format!("{k}={}", shell_quote(&v)))
        .collect();
    let shown = redact(&format!(
        "bootstrap {} [{}; {} requirement(s)]",
        actions.join(" "),
        settings.join(" "),
        params.requirements.lines().count()
    ));
    RemoteCommand::shown_as(text, shown)
}

/// Give the node this version's bootstrap.
pub async fn upload_agent(t: &dyn Transport) -> anyhow::Result<()> {
    agent::BOOTSTRAP.upload(t).await
}

/// How long a quick bootstrap action (status, stop, member list) may take on a node.
pub const QUICK: Duration = Duration::from_secs(120);

/// Run bootstrap actions on a node within `limit`; an error names the host, the step and shows
/// the output.
pub async fn run(
    t: &dyn Transport,
    params: &NodeParams,
    actions: &[&str],
    limit: Duration,
) -> anyhow::Result<Captured> {
    let cmd = command(params, actions);
    let mut first = capture_guarded(t, &cmd, limit).await?;
    if let Some(out) = &first {
        if agent::said_missing(out) {
            // This node has not had this version's bootstrap yet: once, then again.
            upload_agent(t).await?;
            first = capture_guarded(t, &cmd, limit).await?;
        }
    }
    let Some(out) = first else {
        return Err(anyhow!(
            "setting up {} ({}) did not finish `{}` within {}; it was stopped. \
             A slow install may need more time: raise `command_timeout` in [setup]",
            params.node,
            t.describe(),
            actions.join(" "),
            humantime::format_duration(limit)
        ));
    };
    if out.status != 0 {
        let step = said(&out.stdout)
            .into_iter()
            .rev()
            .find_map(|s| match s {
                Said::Step { text } => Some(text),
                _ => None,
            })
            .unwrap_or_else(|| actions.join(" "));
        return Err(anyhow!(
            "setting up {} ({}) failed at step \"{step}\" with exit status {}:\n{}",
            params.node,
            t.describe(),
            out.status,
            indent(&out.tail(25))
        ));
    }
    Ok(out)
}

/// Shell lines that give a command run on the head the cluster: its Ray address and, when the
/// cluster uses token authentication, its token (`$CL` is the cluster directory). A cluster at
/// 127.0.0.1 (local) is reached there: Ray's clients would otherwise swap 127.0.0.1 for the
/// machine's outward address, where nothing listens (Ray's switch for that is this variable).
pub const CLUSTER_ENV: &str = r#"export RAY_ADDRESS="$(cat "$CL/ray-address")"
if [ -s "$CL/ray-token" ]; then export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$CL/ray-token"; fi
case "$RAY_ADDRESS" in 127.0.0.1:*) export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ;; esac"#;

/// A shell line that sources the cluster's node pre-commands (`$CL/pre.sh`, Slurm's
/// `pre_commands`) when it has any: before the environment is activated, so it stays first.
pub const PRE_ENV: &str = r#"if [ -s "$CL/pre.sh" ]; then . "$CL/pre.sh"; fi"#;

/// The path of the cluster's Ray token on a node.
pub fn token_path(daft_home: &str, cluster: &str) -> String {
    format!("{daft_home}/clusters/{cluster}/ray-token")
}

/// The head's Ray token: the one it has, else a new one (256 random bits, hex) given to it.
/// Never logged.
pub async fn ensure_head_token(head: &dyn Transport, cluster: &str) -> anyhow::Result<()> {
    let path = token_path(&head.daft_home(), cluster);
    let cmd = RemoteCommand::shown_as(
        format!("cat {} 2>/dev/null || true", dquote(&path)),
        format!("read the cluster's Ray token ({path})"),
    );
    let out = head.capture_cmd(&cmd).await?;
    if valid_token(out.stdout.trim()) {
        return Ok(());
    }
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    head.write_file(token.as_bytes(), &path)
        .await
        .with_context(|| format!("cannot give the head ({}) its Ray token", head.describe()))
}

fn valid_token(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Read the cluster's Ray token from the head, waiting (up to `QUICK`) for the head's set-up to
/// give it one; it is never logged.
pub async fn read_token(head: &dyn Transport, cluster: &str) -> anyhow::Result<String> {
    let path = token_path(&head.daft_home(), cluster);
    let cmd = RemoteCommand::shown_as(
        format!("cat {} 2>/dev/null || true", dquote(&path)),
        format!("read the cluster's Ray token ({path})"),
    );
    let deadline = std::time::Instant::now() + QUICK;
    loop {
        let out = head.capture_cmd(&cmd).await?;
        let token = out.stdout.trim();
        if valid_token(token) {
            return Ok(token.to_string());
        }
        if std::time::Instant::now() > deadline {
            return Err(anyhow!(
                "the head ({}) has no Ray token at {path} after {}; its set-up did not get that \
                 far: run `daft up` again",
                head.describe(),
                humantime::format_duration(QUICK)
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Give a worker the cluster's Ray token (mode 0600), before its bootstrap starts Ray.
pub async fn send_token(worker: &dyn Transport, cluster: &str, token: &str) -> anyhow::Result<()> {
    let path = token_path(&worker.daft_home(), cluster);
    worker
        .write_file(token.as_bytes(), &path)
        .await
        .with_context(|| format!("cannot give {} the cluster's Ray token", worker.describe()))
}

/// Run the config's `setup_commands` on the head, one by one, in the cluster's environment.
pub async fn run_setup_commands(
    t: &dyn Transport,
    cfg: &Config,
    daft_home: &str,
) -> anyhow::Result<()> {
    let cluster_dir = format!("{daft_home}/clusters/{}", cfg.setup.name);
    for (i, cmd) in cfg.run.setup_commands.iter().enumerate() {
        let env: String = TELEMETRY_OFF
            .iter()
            .map(|(k, v)| format!("{k}={v} "))
            .collect();
        let full = format!(
            "export {env}; CL={}; {PRE_ENV}\n. \"$CL/venv/bin/activate\" || exit 1\n{CLUSTER_ENV}\n{cmd}",
            dquote(&cluster_dir),
        );
        let shown = format!("setup command {}: {}", i + 1, redact(cmd));
        let run = RemoteCommand::shown_as(full, shown);
        let limit = cfg.setup.command_timeout;
        let Some(out) = capture_guarded(t, &run, limit).await? else {
            return Err(anyhow!(
                "setup command {} (`{}`) did not finish on the head ({}) within {} and was stopped. \
                 A setup command must end by itself and must not wait for input (stdin is closed); \
                 start long-running services in the background with their output redirected, or \
                 raise `command_timeout` in [setup]",
                i + 1,
                redact(cmd),
                t.describe(),
                humantime::format_duration(limit)
            ));
        };
        if out.status != 0 {
            return Err(anyhow!(
                "setup command {} (`{}`) failed on the head ({}) with exit status {}:\n{}",
                i + 1,
                redact(cmd),
                t.describe(),
                out.status,
                indent(&out.tail(25))
            ));
        }
    }
    Ok(())
}

pub fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::NodeRecord;

    #[tokio::test]
    async fn the_bootstrap_is_uploaded_once_then_only_settings_are_sent() {
        let home = tempfile::tempdir().unwrap();
        let t = crate::transport::local::LocalTransport::new(home.path().into());
        let p = NodeParams {
            daft_home: t.daft_home(),
            cluster: "c".into(),
            ..Default::default()
        };
        let agent = std::path::PathBuf::from(agent_path(&t.daft_home()));
        assert!(!agent.exists());
        let out = run(&t, &p, &["status"], QUICK).await.unwrap();
        assert_eq!(out.status, 0, "{}", out.stdout);
        assert_eq!(std::fs::read_to_string(&agent).unwrap(), BOOTSTRAP);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&agent).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the node's user's alone");
        // What is sent each time: the settings, not the script.
        let cmd = command(&p, &["status"]);
        assert!(
            cmd.text.len() < 2_000 && BOOTSTRAP.len() > 10_000,
            "{} bytes sent per call",
            cmd.text.len()
        );
        // A record written through the copy is read back: the copy is the script that runs.
        let rec = NodeRecord {
            id: "head".into(),
            ..NodeRecord::minimal("c", Role::Head, None)
        };
        let p = NodeParams {
            node: "head".into(),
            node_json: rec.json(),
            ..p
        };
        run(&t, &p, &["record"], QUICK).await.unwrap();
        let cl = home.path().join("clusters/c");
        std::fs::write(cl.join("members"), "10.0.0.2:22\nhost \"b\"\n").unwrap();
        std::fs::write(
            cl.join("autostop.state"),
            "{\"after\": 60,\n \"idle_since\": 5.5}\n",
        )
        .unwrap();
        let out = run(&t, &p, &["status"], QUICK).await.unwrap();
        assert_eq!(
            said(&out.stdout),
            [
                Said::Node {
                    alive: false,
                    record: Box::new(rec)
                },
                Said::Member {
                    host: "10.0.0.2:22".into()
                },
                Said::Member {
                    host: "host \"b\"".into()
                },
                Said::Autostop {
                    state: crate::model::AutostopState {
                        after: 60,
                        idle_since: Some(5.5),
                        checked: 0.0,
                        busy: None,
                        stopped: None,
                    }
                },
            ],
            "{}",
            out.stdout
        );
        let files: Vec<_> = std::fs::read_dir(agent.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 1, "one copy, no part left: {files:?}");
    }
}
