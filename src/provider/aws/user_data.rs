//! What an EC2 node runs at first boot: the bootstrap with its settings, as the login user,
//! and the host key daft pinned.

use super::*;

/// The user data for a node of `cfg`'s cluster: the bootstrap script with its settings
/// (`params`, from [`node_params`] and the node's Ray flags), run as
/// the login user (`ssh_user`) at first boot; workers join the head's private address.
/// `host_key`: the OpenSSH private host key daft made for these instances (pinned before
/// connecting, so the first connection is no trust-on-first-use).
pub fn render_user_data(cfg: &Config, params: &NodeParams, host_key: Option<&str>) -> String {
    user_data_script(
        &cfg.setup.ssh_user,
        &cfg.setup.name,
        &bootstrap::render(params),
        host_key,
    )
}

/// The bootstrap settings of an EC2 node: in its user data, and for an update in place.
pub fn node_params(cfg: &Config, role: Role, head: Option<&ObservedNode>) -> NodeParams {
    NodeParams {
        daft_home: "$HOME/.daft".into(),
        cluster: cfg.setup.name.clone(),
        node: role.as_str().to_string(),
        role: Some(role),
        env_hash: bootstrap::env_hash(cfg),
        requirements: bootstrap::requirements(cfg),
        python_version: cfg.setup.python_version.clone(),
        node_ip: None,
        head_address: head
            .and_then(|h| h.private_ip.clone())
            .map(|ip| format!("{ip}:6379")),
        head_id: head.map(|h| h.id.clone()),
        ray_port: 6379,
        dashboard_host: "127.0.0.1".into(),
        dashboard_port: 8265,
        ray_args: String::new(),
        // EC2: the security group admits Ray's ports from the cluster's own instances only.
        ray_env: String::new(),
        ray_auth: false,
        ray_tmp: role.as_str().to_string(),
        node_json: NodeRecord::minimal(&cfg.setup.name, role, None).json(),
        node_json_pending: String::new(),
        member: None,
        from_env: vec![],
    }
}

/// EC2 user data (run as root once, by cloud-init): install the host key daft pinned, then run
/// the rendered bootstrap as the login user and record its exit status where daft looks for it
/// (`~/.daft/clusters/NAME/bootstrap.exit`). Everything is passed base64-encoded: no value can
/// end a quoted block.
pub fn user_data_script(
    user: &str,
    cluster: &str,
    bootstrap: &str,
    host_key: Option<&str>,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut s =
        String::from("#!/bin/sh\n# daft node bootstrap (EC2 user data)\nset -eu\numask 077\n");
    if let Some(key) = host_key {
        s.push_str(&format!(
            "# The host key daft made for this instance and pinned before connecting.\n\
             echo {k} | base64 -d > /etc/ssh/ssh_host_ed25519_key\n\
             chmod 600 /etc/ssh/ssh_host_ed25519_key\n\
             ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub\n\
             chmod 644 /etc/ssh/ssh_host_ed25519_key.pub\n\
             systemctl reload sshd 2>/dev/null || systemctl reload ssh 2>/dev/null || pkill -HUP -x sshd || true\n",
            k = b64(key)
        ));
    }
    let run = String::from(
        "sh \"$0\" install start; rc=$?; mkdir -p \"$HOME/.daft/clusters/$1\"; echo $rc > \"$HOME/.daft/clusters/$1/bootstrap.exit\"; exit $rc"
    );
    s.push_str(&format!(
        "f=$(mktemp /tmp/daft-bootstrap.XXXXXX)\n\
         echo {b} | base64 -d > \"$f\"\n\
         chmod 755 \"$f\"\n\
         if [ \"$(id -un)\" = {u} ]; then sh -c {r} \"$f\" {c}; else su - {u} -c {rq}; fi\n",
        b = b64(bootstrap),
        u = crate::shell::shell_quote(user),
        r = crate::shell::shell_quote(&run),
        c = crate::shell::shell_quote(cluster),
        rq = crate::shell::shell_quote(&format!(
            "sh -c {} \"$0\" {}",
            crate::shell::shell_quote(&run),
            crate::shell::shell_quote(cluster)
        )),
    ));
    s
}
