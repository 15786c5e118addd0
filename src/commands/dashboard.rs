//! `daft dashboard`: the head's Ray dashboard on localhost, through the transport's tunnel.
//! It listens on 127.0.0.1 only; the dashboard itself is never exposed. The listener is up at
//! once; the SSH connection is made alongside, and the first browser request waits for it.

use crate::printer::Printer;
use std::sync::Arc;

use anyhow::anyhow;
use futures::future::{FutureExt, Shared};
use futures::Future;
use tokio::net::TcpListener;

use crate::bootstrap;
use crate::cli::DashboardArgs;
use crate::config::ProviderKind;
use crate::error::usage;
use crate::provider::DashboardRoute;
use crate::transport::{RemoteCommand, Transport};

type Connecting = Shared<
    std::pin::Pin<
        Box<dyn Future<Output = Result<(Arc<dyn Transport>, String, u16), String>> + Send>,
    >,
>;

pub async fn run(args: &DashboardArgs, pr: &Printer) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = super::ssh_key(&cfg, &args.key.identity);
    if args.show_token {
        return show_token(&cfg, key, pr).await;
    }
    // SSH hosts and local clusters use Ray's token authentication (EC2: the security group).
    let token_hint = if cfg.setup.provider.kind() == ProviderKind::Aws {
        ""
    } else {
        "\nThe dashboard asks for the cluster's token once: `daft dashboard --show-token` prints it."
    };
    if cfg.setup.provider.kind() == ProviderKind::Local {
        let (provider, head) = super::running_head(&cfg, None).await?;
        if let DashboardRoute::Direct { url } = provider.dashboard_route(&head) {
            crate::outln!(
                pr,
                "Ray dashboard of {:?}: {url}{token_hint}",
                cfg.setup.name
            )?;
            if !args.no_browser {
                let _ = webbrowser::open(&url);
            }
        }
        return Ok(());
    }
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                usage(format!(
                    "port {} is already in use on this machine; pick another with --port",
                    args.port
                ))
            } else {
                anyhow!("cannot listen on 127.0.0.1:{}: {e}", args.port)
            }
        })?;
    let remote_port = args.remote_port;
    let cfg2 = cfg.clone();
    let connecting: Connecting = async move {
        let run = async {
            let (provider, head) = super::running_head(&cfg2, key).await?;
            let (host, port) = match provider.dashboard_route(&head) {
                DashboardRoute::Tunnel { host, port } => (host, remote_port.unwrap_or(port)),
                DashboardRoute::Direct { url } => return Err(anyhow!("the dashboard is at {url}")),
            };
            let t = provider.head_transport(&head).await?;
            anyhow::Ok((t, host, port))
        };
        run.await.map_err(|e| format!("{e:#}"))
    }
    .boxed()
    .shared();
    let url = format!("http://127.0.0.1:{}", args.port);
    let via = if cfg.setup.provider.kind() == ProviderKind::Kubernetes {
        "through the Kubernetes API server's port-forward to the head pod"
    } else {
        "forwarded over SSH to the head"
    };
    crate::outln!(
        pr,
        "Ray dashboard of {:?}: {url}  ({via}; Ctrl-C to stop){token_hint}",
        cfg.setup.name
    )?;
    if !args.no_browser {
        let _ = webbrowser::open(&url);
    }
    serve_when_connected(listener, connecting, pr).await
}

/// The cluster's Ray token, read from the head, on stdout (never logged).
async fn show_token(
    cfg: &crate::config::Config,
    key: Option<std::path::PathBuf>,
    pr: &Printer,
) -> anyhow::Result<()> {
    let (provider, head) = super::running_head(cfg, key).await?;
    let t = provider.head_transport(&head).await?;
    let path = bootstrap::token_path(&t.daft_home(), &cfg.setup.name);
    let out = t
        .capture_cmd(&RemoteCommand::shown_as(
            // (KubeRay gives its pods the token in their environment.)
            format!(
                "cat {} 2>/dev/null || printenv RAY_AUTH_TOKEN || true",
                crate::shell::dquote(&path)
            ),
            format!("read the cluster's Ray token ({path})"),
        ))
        .await?;
    let token = out.stdout.trim();
    if token.is_empty() {
        return Err(anyhow!(
            "cluster {:?} has no Ray token ({path} on {} is missing): {}",
            cfg.setup.name,
            t.describe(),
            if cfg.setup.provider.kind() == ProviderKind::Aws {
                "EC2 clusters rely on their security group instead"
            } else {
                "it was started by an older daft; `daft up` restarts it with one"
            }
        ));
    }
    crate::outln!(pr, "{token}")?;
    Ok(())
}

/// Accept at once; forward once the transport is there. A failed connection ends the command.
async fn serve_when_connected(
    listener: TcpListener,
    connecting: Connecting,
    pr: &Printer,
) -> anyhow::Result<()> {
    let mut failed = Box::pin(connecting.clone().map(|r| r.err()));
    let mut settled = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut sock, peer) = accepted?;
                let _ = sock.set_nodelay(true);
                let connecting = connecting.clone();
                tokio::spawn(async move {
                    let Ok((t, host, port)) = connecting.await else { return };
                    forward(&mut sock, t, &host, port, peer).await;
                });
            }
            result = &mut failed, if !settled => {
                settled = true;
                if let Some(err) = result {
                    return Err(anyhow!(err));
                }
            }
            _ = crate::interrupt::interrupted() => {
                crate::note!(pr, "\ndaft: dashboard tunnel closed");
                return Ok(());
            }
        }
    }
}

async fn forward(
    sock: &mut tokio::net::TcpStream,
    t: Arc<dyn Transport>,
    host: &str,
    port: u16,
    peer: std::net::SocketAddr,
) {
    match t.open_tunnel(host, port).await {
        Ok(mut remote) => {
            if let Err(e) =
                tokio::io::copy_bidirectional_with_sizes(sock, &mut remote, 256 * 1024, 256 * 1024)
                    .await
            {
                tracing::debug!(%peer, "tunnel closed: {e}");
            }
        }
        Err(e) => crate::warning!("daft: cannot reach the dashboard: {e:#}"),
    }
}

/// Forward every connection on `listener` to `host:port` through `t`, until Ctrl-C.
pub async fn serve(
    listener: TcpListener,
    t: Arc<dyn Transport>,
    host: String,
    port: u16,
) -> anyhow::Result<()> {
    let ready: Connecting = async move { Ok((t, host, port)) }.boxed().shared();
    serve_when_connected(listener, ready, &Printer::default()).await
}
