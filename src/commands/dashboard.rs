//! `daft dashboard`: the head's Ray dashboard on localhost, through the transport's tunnel.
//! It listens on 127.0.0.1 only; the dashboard itself is never exposed.

use std::sync::Arc;

use anyhow::anyhow;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

use crate::cli::DashboardArgs;
use crate::error::usage;
use crate::provider::{alive_head, DashboardRoute};
use crate::transport::Transport;

pub async fn run(args: &DashboardArgs) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let key = args
        .key
        .identity
        .clone()
        .or(cfg.setup.ssh_private_key.clone());
    let (provider, observed) = super::observe(&cfg, key.clone()).await?;
    let head = alive_head(&observed).cloned().ok_or_else(|| {
        anyhow!(
            "cluster {:?} has no running head; start it with `daft up -c {}`",
            cfg.setup.name,
            args.config.config.display()
        )
    })?;
    match provider.dashboard_route(&head) {
        DashboardRoute::Direct { url } => {
            println!("Ray dashboard of {:?}: {url}", cfg.setup.name);
            if !args.no_browser {
                let _ = webbrowser::open(&url);
            }
            Ok(())
        }
        DashboardRoute::Tunnel { host, port } => {
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
            let provider2 = provider.clone();
            let transport: Arc<OnceCell<Arc<dyn Transport>>> = Arc::new(OnceCell::new());
            // Connect now, so errors show at once; connections that come first wait for it.
            let t = transport
                .get_or_try_init(|| provider2.head_transport(&head, key.clone()))
                .await?
                .clone();
            let url = format!("http://127.0.0.1:{}", args.port);
            println!("Ray dashboard of {:?}: {url}  (forwarded over SSH to {} {host}:{port}; Ctrl-C to stop)", cfg.setup.name, t.describe());
            if !args.no_browser {
                let _ = webbrowser::open(&url);
            }
            serve(listener, t, host, port).await
        }
    }
}

/// Forward every connection on `listener` to `host:port` through `t`, until Ctrl-C.
pub async fn serve(
    listener: TcpListener,
    t: Arc<dyn Transport>,
    host: String,
    port: u16,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut sock, peer) = accepted?;
                let _ = sock.set_nodelay(true);
                let t = t.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    match t.open_tunnel(&host, port).await {
                        Ok(mut remote) => {
                            if let Err(e) = tokio::io::copy_bidirectional_with_sizes(&mut sock, &mut remote, 256 * 1024, 256 * 1024).await {
                                tracing::debug!(%peer, "tunnel closed: {e}");
                            }
                        }
                        Err(e) => eprintln!("daft: cannot reach the dashboard: {e:#}"),
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\ndaft: dashboard tunnel closed");
                return Ok(());
            }
        }
    }
}
