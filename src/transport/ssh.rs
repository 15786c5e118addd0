//! The SSH transport (russh + russh-sftp).
//!
//! - keys: `-i`/`ssh_private_key` (ed25519, ECDSA, RSA with rsa-sha2-256/512), else ssh-agent;
//!   a key readable by others is refused;
//! - host keys: checked against `~/.ssh/known_hosts` and daft's own known-hosts file; an unknown
//!   host is pinned on first use, a changed key is refused;
//! - connecting retries with backoff until a deadline, and says why it failed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use backon::BackoffBuilder;
use russh::client::{self, Handle};
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use super::{RemoteCommand, Sink, Transport, TunnelStream};
use crate::config::HostAddr;

/// How long to try a host that should already answer (an SSH host, a running instance).
pub const EXISTING_HOST_DEADLINE: Duration = Duration::from_secs(15);
/// Attempts at a refused port of a host that should already answer.
const REFUSED_TRIES: u32 = 3;

/// Why a connection could not be made. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("connection to {addr} refused: nothing listens for SSH there (tried for {secs}s); check the host and port, and that sshd runs")]
    Refused { addr: String, secs: u64 },
    #[error("timed out connecting to {addr} after {secs}s; check the address, the firewall or security group, and that the machine is up")]
    TimedOut { addr: String, secs: u64 },
    #[error("authentication as `{user}` failed on {addr}: {detail}")]
    AuthFailed {
        user: String,
        addr: String,
        detail: String,
    },
    #[error("the host key of {addr} has changed: {file} line {line} records a different key. \
             If the machine was rebuilt, remove that line (`ssh-keygen -R {host_entry} -f {file}`) and connect again; \
             otherwise someone may be intercepting the connection")]
    HostKeyChanged {
        addr: String,
        host_entry: String,
        file: String,
        line: usize,
    },
    #[error("SSH to {addr} failed: {detail}")]
    Other { addr: String, detail: String },
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub addr: HostAddr,
    pub user: String,
    /// Private key file; None: use ssh-agent.
    pub key: Option<PathBuf>,
    /// daft's own known-hosts file (pins hosts on first use).
    pub known_hosts: PathBuf,
    /// The user's known_hosts, checked first when it exists.
    pub user_known_hosts: Option<PathBuf>,
    /// How long to keep trying to connect (a booting machine needs minutes).
    pub deadline: Duration,
    /// A machine still booting (a fresh cloud instance): refused connections are waited out
    /// until the deadline. Otherwise sshd should already answer: a refused port fails after a
    /// few short retries.
    pub booting: bool,
    /// Pin and check the host key under this name instead of host:port (a cloud instance id:
    /// addresses are recycled, instances are not).
    pub host_key_alias: Option<String>,
    /// Where to say what we wait for (else stderr, once).
    pub progress: Option<indicatif::ProgressBar>,
    /// Reach the host through this transport's tunnel (an SSH jump through a login node's
    /// direct-tcpip) instead of connecting directly.
    pub via: Option<Via>,
}

/// The transport an SSH connection is tunnelled through.
#[derive(Clone)]
pub struct Via(pub Arc<dyn super::Transport>);

impl std::fmt::Debug for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "via {}", self.0.describe())
    }
}

impl SshTarget {
    pub fn new(addr: HostAddr, user: &str, key: Option<PathBuf>, daft_home: &Path) -> Self {
        let user_known_hosts =
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts"));
        SshTarget {
            addr,
            user: user.to_string(),
            key,
            known_hosts: daft_home.join("known_hosts"),
            user_known_hosts,
            deadline: EXISTING_HOST_DEADLINE,
            booting: false,
            host_key_alias: None,
            progress: None,
            via: None,
        }
    }

    /// A machine that is still booting: wait for its sshd up to `DAFT_SSH_DEADLINE_SECS`
    /// (default 5 minutes), saying so on `progress`.
    pub fn booting(mut self, progress: Option<indicatif::ProgressBar>) -> Self {
        self.booting = true;
        self.deadline = crate::wait::env_secs("DAFT_SSH_DEADLINE_SECS", Duration::from_secs(300));
        self.progress = progress;
        self
    }
    fn addr_str(&self) -> String {
        format!("{}@{}:{}", self.user, self.addr.host, self.addr.port)
    }
}

struct HostKeyCheck {
    host: String,
    port: u16,
    files: Vec<PathBuf>,
    pin_to: PathBuf,
    problem: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.problem.lock().unwrap() = Some(SshError::Other {
                addr: format!("{}:{}", self.host, self.port),
                detail: "the server offered a host certificate; daft pins plain host keys only"
                    .into(),
            });
            return Ok(false);
        };
        let entry = if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        };
        for f in &self.files {
            if !f.exists() {
                continue;
            }
            match keys::check_known_hosts_path(&self.host, self.port, key, f) {
                Ok(true) => {
                    tracing::debug!(host = %entry, file = %f.display(), "host key matches");
                    return Ok(true);
                }
                Ok(false) => {}
                Err(keys::Error::KeyChanged { line }) => {
                    *self.problem.lock().unwrap() = Some(SshError::HostKeyChanged {
                        addr: format!("{}:{}", self.host, self.port),
                        host_entry: entry,
                        file: f.display().to_string(),
                        line,
                    });
                    return Ok(false);
                }
                Err(e) => tracing::warn!(file = %f.display(), "cannot read known hosts: {e}"),
            }
        }
        // Trust on first use: pin it.
        match keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, &self.pin_to) {
            Ok(()) => {
                tracing::info!(host = %entry, file = %self.pin_to.display(), "pinned new host key ({})", key.algorithm());
                Ok(true)
            }
            Err(e) => {
                *self.problem.lock().unwrap() = Some(SshError::Other {
                    addr: entry,
                    detail: format!(
                        "cannot record its host key in {}: {e}",
                        self.pin_to.display()
                    ),
                });
                Ok(false)
            }
        }
    }
}

/// An SSH connection to one node. Channels are opened on demand; one connection serves all.
pub struct SshTransport {
    target: SshTarget,
    handle: Handle<HostKeyCheck>,
    sftp: OnceCell<SftpSession>,
    home: OnceCell<String>,
}

/// Keys read in this run, by path: an encrypted key's passphrase is asked once, however many
/// hosts are connected to at once (the lock is held while asking).
static KEYS: tokio::sync::Mutex<Vec<(PathBuf, Arc<keys::PrivateKey>)>> =
    tokio::sync::Mutex::const_new(Vec::new());

async fn load_key_once(path: &Path) -> anyhow::Result<Arc<keys::PrivateKey>> {
    // (An async lock: the connections waiting for the passphrase wait without holding threads.)
    let mut cache = KEYS.lock().await;
    if let Some((_, k)) = cache.iter().find(|(p, _)| p == path) {
        return Ok(k.clone());
    }
    // Reading the file and asking the passphrase block: off the async runtime.
    let owned = path.to_path_buf();
    let k = Arc::new(
        tokio::task::spawn_blocking(move || load_key(&owned))
            .await
            .context("reading the key stopped")??,
    );
    cache.push((path.to_path_buf(), k.clone()));
    Ok(k)
}

fn load_key(path: &Path) -> anyhow::Result<keys::PrivateKey> {
    if let Err(p) = crate::keys::check_private_key_file(path) {
        return Err(crate::error::usage(format!("{}; {}", p.title, p.help)));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    match keys::decode_secret_key(&text, None) {
        Ok(k) => Ok(k),
        Err(keys::Error::KeyIsEncrypted) => {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                return Err(crate::error::usage(format!(
                    "the key {} is encrypted and there is no terminal to ask its passphrase; add it to ssh-agent with `ssh-add {}` and leave out -i",
                    path.display(),
                    path.display()
                )));
            }
            let pass = rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))?;
            keys::decode_secret_key(&text, Some(&pass))
                .map_err(|e| crate::error::usage(format!("cannot decrypt {}: {e}", path.display())))
        }
        Err(e) => Err(crate::error::usage(format!(
            "{} is not a private key daft can read ({e}); use an OpenSSH or PEM ed25519, ECDSA or RSA key",
            path.display()
        ))),
    }
}

fn retryable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | TimedOut
            | NotConnected
            | HostUnreachable
            | NetworkUnreachable
            | UnexpectedEof
            | BrokenPipe
    )
}

impl SshTransport {
    /// Connect and authenticate, retrying refused and timed-out connections until the deadline.
    pub async fn connect(target: SshTarget) -> anyhow::Result<SshTransport> {
        let key = match &target.key {
            Some(p) => Some(load_key_once(p).await?),
            None => None,
        };
        let start = Instant::now();
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .build();
        let addr = target.addr_str();
        let mut refused = 0;
        let mut said = false;
        loop {
            let attempt_timeout = Duration::from_secs(8).min(
                target
                    .deadline
                    .saturating_sub(start.elapsed())
                    .max(Duration::from_millis(500)),
            );
            let result =
                tokio::time::timeout(attempt_timeout, Self::connect_once(&target, key.clone()))
                    .await;
            let err = match result {
                Ok(Ok(t)) => return Ok(t),
                Ok(Err(ConnectFailure::Final(e))) => return Err(e.into()),
                Ok(Err(ConnectFailure::Retry(e))) => e,
                Err(_) => std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no SSH answer within {}s",
                        attempt_timeout.as_secs_f32().round()
                    ),
                ),
            };
            let secs = start.elapsed().as_secs();
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            if err.kind() == std::io::ErrorKind::ConnectionRefused {
                refused += 1;
            }
            let give_up = start.elapsed() + delay >= target.deadline
                || (!target.booting && refused >= REFUSED_TRIES);
            if give_up {
                return Err(match err.kind() {
                    std::io::ErrorKind::ConnectionRefused => SshError::Refused { addr, secs },
                    std::io::ErrorKind::TimedOut => SshError::TimedOut { addr, secs },
                    _ => SshError::Other {
                        addr,
                        detail: format!("{err} (tried for {secs}s)"),
                    },
                }
                .into());
            }
            let why = match err.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => err.to_string(),
            };
            let msg = format!(
                "waiting for SSH on {}:{} ({why}), up to {}; Ctrl-C to stop",
                target.addr.host,
                target.addr.port,
                humantime::format_duration(target.deadline)
            );
            match &target.progress {
                Some(pb) => pb.set_message(msg),
                None if !said && target.booting => crate::notice!("daft: {msg}"),
                None => {}
            }
            said = true;
            tracing::debug!(%addr, "SSH not ready ({err}); retrying in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }

    async fn connect_once(
        target: &SshTarget,
        key: Option<Arc<keys::PrivateKey>>,
    ) -> Result<SshTransport, ConnectFailure> {
        let addr = target.addr_str();
        let problem = Arc::new(Mutex::new(None));
        let mut files = Vec::new();
        if let Some(u) = &target.user_known_hosts {
            files.push(u.clone());
        }
        files.push(target.known_hosts.clone());
        let (kh_host, kh_port) = match &target.host_key_alias {
            Some(alias) => (alias.clone(), 22),
            None => (target.addr.host.clone(), target.addr.port),
        };
        let handler = HostKeyCheck {
            host: kh_host,
            port: kh_port,
            files,
            pin_to: target.known_hosts.clone(),
            problem: problem.clone(),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_max: 3,
            nodelay: true,
            window_size: 8 * 1024 * 1024,
            maximum_packet_size: 65535,
            ..Default::default()
        });
        tracing::debug!(%addr, via = ?target.via, "ssh connect");
        let connected = match &target.via {
            None => {
                client::connect(
                    config,
                    (target.addr.host.as_str(), target.addr.port),
                    handler,
                )
                .await
            }
            Some(via) => match via.0.open_tunnel(&target.addr.host, target.addr.port).await {
                Ok(stream) => client::connect_stream(config, stream, handler).await,
                // The jump host could not reach it: as a refused connection here.
                Err(e) => {
                    return Err(ConnectFailure::Retry(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        format!("{e:#}"),
                    )))
                }
            },
        };
        let mut handle = match connected {
            Ok(h) => h,
            Err(e) => {
                if let Some(p) = problem.lock().unwrap().take() {
                    return Err(ConnectFailure::Final(p));
                }
                return Err(match e {
                    russh::Error::IO(io) if retryable(&io) => ConnectFailure::Retry(io),
                    russh::Error::Disconnect | russh::Error::HUP => ConnectFailure::Retry(
                        std::io::Error::new(std::io::ErrorKind::ConnectionReset, e.to_string()),
                    ),
                    other => ConnectFailure::Final(SshError::Other {
                        addr,
                        detail: other.to_string(),
                    }),
                });
            }
        };
        let user = target.user.clone();
        let fail = |detail: String| {
            ConnectFailure::Final(SshError::AuthFailed {
                user: user.clone(),
                addr: addr.clone(),
                detail,
            })
        };
        match key {
            Some(key) => {
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .flatten();
                let res = handle
                    .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key, hash))
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                if !res.success() {
                    return Err(fail(format!(
                        "the server refused the key {}; check that its public half is in ~{}/.ssh/authorized_keys on the node and that ssh_user is right",
                        target.key.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                        target.user
                    )));
                }
            }
            None => {
                let mut agent = keys::agent::client::AgentClient::connect_env().await.map_err(|_| {
                    fail("no private key was given and no ssh-agent is running; pass -i KEY or set ssh_private_key".into())
                })?;
                let ids = agent
                    .request_identities()
                    .await
                    .map_err(|e| fail(format!("ssh-agent: {e}")))?;
                let mut ok = false;
                for id in ids {
                    let keys::agent::AgentIdentity::PublicKey { key, .. } = id else {
                        continue;
                    };
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| fail(e.to_string()))?
                        .flatten();
                    if let Ok(r) = handle
                        .authenticate_publickey_with(&target.user, key, hash, &mut agent)
                        .await
                    {
                        if r.success() {
                            ok = true;
                            break;
                        }
                    }
                }
                if !ok {
                    return Err(fail("the server accepted none of the ssh-agent's keys; pass -i KEY or set ssh_private_key".into()));
                }
            }
        }
        tracing::debug!(%addr, "ssh authenticated");
        Ok(SshTransport {
            target: target.clone(),
            handle,
            sftp: OnceCell::new(),
            home: OnceCell::new(),
        })
    }

    async fn sftp(&self) -> anyhow::Result<&SftpSession> {
        self.sftp
            .get_or_try_init(|| async {
                let ch = self.handle.channel_open_session().await?;
                ch.request_subsystem(true, "sftp").await?;
                let s = SftpSession::new(ch.into_stream()).await?;
                anyhow::Ok(s)
            })
            .await
            .with_context(|| format!("cannot open SFTP on {}", self.target.addr_str()))
    }

    /// A path for SFTP: `$HOME/x` becomes the login's absolute `$HOME/x` (SFTP expands nothing).
    async fn abs(&self, remote: &str) -> anyhow::Result<String> {
        match remote.strip_prefix("$HOME/") {
            None => Ok(remote.to_string()),
            Some(rest) => {
                let home = self
                    .home
                    .get_or_try_init(|| async {
                        let c = self.capture("printf %s \"$HOME\"").await?;
                        anyhow::ensure!(
                            c.status == 0 && c.stdout.starts_with('/'),
                            "cannot find the home directory on {}",
                            self.describe()
                        );
                        anyhow::Ok(c.stdout)
                    })
                    .await?;
                Ok(format!("{home}/{rest}"))
            }
        }
    }

    async fn ensure_parent(&self, remote: &str) -> anyhow::Result<()> {
        if let Some((dir, _)) = remote.rsplit_once('/') {
            if !dir.is_empty() {
                let c = self
                    .capture(&format!(
                        "umask 077; mkdir -p {}",
                        crate::shell::shell_quote(dir)
                    ))
                    .await?;
                if c.status != 0 {
                    return Err(anyhow!(
                        "cannot create {dir} on {}: {}",
                        self.describe(),
                        c.tail(5)
                    ));
                }
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

enum ConnectFailure {
    Retry(std::io::Error),
    Final(SshError),
}

#[async_trait]
impl Transport for SshTransport {
    fn describe(&self) -> String {
        self.target.addr_str()
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
        tracing::debug!(target: "daft::remote", host = %self.describe(), command = %command.shown, "run");
        let mut ch = self
            .handle
            .channel_open_session()
            .await
            .with_context(|| format!("lost the SSH connection to {}", self.describe()))?;
        ch.exec(true, command.text.as_str()).await?;
        if !command.input.0.is_empty() {
            ch.data(&command.input.0[..]).await?;
        }
        // Nothing is ever typed into a remote command: a prompt reads end-of-file, not forever.
        ch.eof().await?;
        let mut code = None;
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    stdout.write_all(&data).await?;
                    stdout.flush().await?;
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    stderr.write_all(&data).await?;
                    stderr.flush().await?;
                }
                ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    tracing::debug!("remote command killed by {signal_name:?}");
                    code = Some(128 + signal_number(&signal_name));
                }
                _ => {}
            }
        }
        code.ok_or_else(|| {
            anyhow!(
                "the connection to {} closed before the command finished (sshd stopped or the machine went away)",
                self.describe()
            )
        })
    }

    async fn send_file(&self, local: &Path, remote: &str) -> anyhow::Result<()> {
        let remote = self.abs(remote).await?;
        let remote = remote.as_str();
        tracing::debug!(target: "daft::remote", host = %self.describe(), from = %local.display(), to = remote, "sftp put");
        self.ensure_parent(remote).await?;
        let sftp = self.sftp().await?;
        let tmp = format!("{remote}.part");
        let mut src = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("cannot open {}", local.display()))?;
        let mut dst = sftp
            .create(tmp.clone())
            .await
            .with_context(|| format!("cannot create {tmp} on {}", self.describe()))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            use tokio::io::AsyncReadExt;
            let n = src.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n]).await.with_context(|| {
                format!("sending {} to {} failed", local.display(), self.describe())
            })?;
        }
        dst.shutdown().await.with_context(|| {
            format!("sending {} to {} failed", local.display(), self.describe())
        })?;
        let _ = sftp.remove_file(remote.to_string()).await;
        sftp.rename(tmp, remote.to_string())
            .await
            .with_context(|| format!("cannot move {remote} into place on {}", self.describe()))?;
        Ok(())
    }

    async fn write_file(&self, data: &[u8], remote: &str) -> anyhow::Result<()> {
        let remote = self.abs(remote).await?;
        let remote = remote.as_str();
        self.ensure_parent(remote).await?;
        let sftp = self.sftp().await?;
        // The user's alone (0600), like everything daft writes on a node.
        let attrs = russh_sftp::protocol::FileAttributes {
            permissions: Some(0o600),
            ..russh_sftp::protocol::FileAttributes::empty()
        };
        let mut f = sftp
            .open_with_flags_and_attributes(
                remote.to_string(),
                russh_sftp::protocol::OpenFlags::CREATE
                    | russh_sftp::protocol::OpenFlags::TRUNCATE
                    | russh_sftp::protocol::OpenFlags::WRITE,
                attrs,
            )
            .await
            .with_context(|| format!("cannot create {remote} on {}", self.describe()))?;
        f.write_all(data).await?;
        f.shutdown().await?;
        Ok(())
    }

    async fn read_file(&self, remote: &str) -> anyhow::Result<Vec<u8>> {
        let remote = self.abs(remote).await?;
        tracing::debug!(target: "daft::remote", host = %self.describe(), from = %remote, "sftp get");
        let sftp = self.sftp().await?;
        sftp.read(remote.clone())
            .await
            .with_context(|| format!("cannot read {remote} on {}", self.describe()))
    }

    async fn fetch_file(&self, remote: &str, local: &Path) -> anyhow::Result<u64> {
        let remote = self.abs(remote).await?;
        tracing::debug!(target: "daft::remote", host = %self.describe(), from = %remote, to = %local.display(), "sftp get (streamed)");
        let sftp = self.sftp().await?;
        let mut src = sftp
            .open(remote.clone())
            .await
            .with_context(|| format!("cannot open {remote} on {}", self.describe()))?;
        let part = super::part_path(local);
        let mut dst = tokio::fs::File::create(&part)
            .await
            .with_context(|| format!("cannot create {}", part.display()))?;
        let n = tokio::io::copy(&mut src, &mut dst)
            .await
            .with_context(|| format!("copying {remote} from {} failed", self.describe()))?;
        dst.flush().await?;
        drop(dst);
        tokio::fs::rename(&part, local)
            .await
            .with_context(|| format!("cannot move {} into place", local.display()))?;
        Ok(n)
    }

    async fn open_command_stream(
        &self,
        command: &RemoteCommand,
    ) -> anyhow::Result<Box<dyn TunnelStream>> {
        tracing::debug!(target: "daft::remote", host = %self.describe(), command = %command.shown, "stream");
        let ch = self
            .handle
            .channel_open_session()
            .await
            .with_context(|| format!("lost the SSH connection to {}", self.describe()))?;
        ch.exec(true, command.text.as_str()).await?;
        Ok(Box::new(ch.into_stream()))
    }

    async fn open_tunnel(&self, host: &str, port: u16) -> anyhow::Result<Box<dyn TunnelStream>> {
        tracing::debug!(target: "daft::remote", via = %self.describe(), %host, port, "direct-tcpip");
        let ch = self
            .handle
            .channel_open_direct_tcpip(host, port as u32, "127.0.0.1", 0)
            .await
            .with_context(|| format!("{} could not connect to {host}:{port}", self.describe()))?;
        Ok(Box::new(ch.into_stream()))
    }
}

fn signal_number(sig: &russh::Sig) -> i32 {
    use russh::Sig::*;
    match sig {
        HUP => 1,
        INT => 2,
        QUIT => 3,
        ILL => 4,
        ABRT => 6,
        FPE => 8,
        KILL => 9,
        SEGV => 11,
        PIPE => 13,
        ALRM => 14,
        TERM => 15,
        USR1 => 10,
        _ => 1,
    }
}
