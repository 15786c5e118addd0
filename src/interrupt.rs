//! One interrupt for the whole process: SIGINT (Ctrl-C) and SIGTERM are caught once, by one
//! task started with the runtime, and every wait that should end on them selects on
//! [`interrupted`]. An interrupt that arrives while no one is waiting is not lost: the next
//! `interrupted().await` returns at once. The first interrupt asks the current operation to stop
//! cleanly (within its own bound); a second one ends daft at once (status 130).

use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

static TOKEN: OnceLock<CancellationToken> = OnceLock::new();

/// The process's cancellation token (cancelled by the first SIGINT or SIGTERM).
pub fn token() -> &'static CancellationToken {
    TOKEN.get_or_init(CancellationToken::new)
}

/// Start listening for SIGINT and SIGTERM (inside the runtime; once).
pub fn install() {
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.set(()).is_err() {
        return;
    }
    let token = token().clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::debug!("cannot listen for SIGINT/SIGTERM");
            return;
        };
        let mut seen = 0u32;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                tracing::debug!("interrupted: stopping the current operation");
                token.cancel();
            } else {
                crate::warning!("\ndaft: interrupted again: exiting now");
                std::process::exit(130);
            }
        }
    });
}

/// Resolves once daft has been interrupted (at once if it already was).
pub async fn interrupted() {
    token().cancelled().await
}

// (Tested through the processes that use it: the Ctrl-C tests send SIGINT to real daft
// commands; `scheduler`'s tests use a token of their own, as the process-wide one is shared.)
