//! How daft reaches a node: run a command, send files, open a tunnel.
//! One trait, an SSH implementation and a local one, so `submit`, `dashboard` and node setup
//! have one code path for every provider.

pub mod kube;
pub mod local;
pub mod srun;
pub mod ssh;
pub mod ssh_config;

use std::path::Path;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream through a tunnel.
pub trait TunnelStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TunnelStream for T {}

/// Where a command's output goes as it comes.
pub type Sink<'a> = &'a mut (dyn AsyncWrite + Unpin + Send);

/// The output of a finished command.
#[derive(Debug, Clone)]
pub struct Captured {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// The output to show a user when the command failed (the last lines of both streams).
    pub fn tail(&self, lines: usize) -> String {
        let mut all: Vec<&str> = self.stdout.lines().chain(self.stderr.lines()).collect();
        if all.len() > lines {
            all.drain(..all.len() - lines);
        }
        all.join("\n")
    }
}

/// A command for a node: what runs, and how `RUST_LOG=debug` shows it (secrets masked, long
/// scripts summarised).
#[derive(Debug, Clone)]
pub struct RemoteCommand {
    pub text: String,
    pub shown: String,
    /// What the command reads on stdin, then end-of-file (secrets travel here: never on a
    /// command line, in a file or in a log).
    pub input: Input,
}

/// Bytes for a command's stdin; `Debug` shows only their length.
#[derive(Clone, Default)]
pub struct Input(pub Vec<u8>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl RemoteCommand {
    /// The same command with `input` on its stdin.
    pub fn with_input(mut self, input: Vec<u8>) -> Self {
        self.input = Input(input);
        self
    }

    /// A command shown as it is, with secret-looking values masked.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let shown = redact(&text);
        RemoteCommand {
            text,
            shown,
            input: Input::default(),
        }
    }
    /// A command shown as `shown` (already safe to log).
    pub fn shown_as(text: impl Into<String>, shown: impl Into<String>) -> Self {
        RemoteCommand {
            text: text.into(),
            shown: shown.into(),
            input: Input::default(),
        }
    }
}

#[async_trait]
pub trait Transport: Send + Sync {
    /// Who we talk to, for messages ("ec2-user@10.0.0.5:22", "this machine").
    fn describe(&self) -> String;

    /// daft's directory on the node, as shell and file paths see it.
    fn daft_home(&self) -> String;

    /// Run a shell command with stdin closed, streaming its stdout and stderr as they come;
    /// returns its exit status. Logged (debug) as `command.shown`.
    async fn run_cmd(
        &self,
        command: &RemoteCommand,
        stdout: Sink<'_>,
        stderr: Sink<'_>,
    ) -> anyhow::Result<i32>;

    /// [`Transport::run_cmd`] for a command that may be logged as it is (secrets masked).
    async fn run(&self, command: &str, stdout: Sink<'_>, stderr: Sink<'_>) -> anyhow::Result<i32> {
        self.run_cmd(&RemoteCommand::new(command), stdout, stderr)
            .await
    }

    /// Send a local file to `remote` (relative paths are relative to the login directory).
    async fn send_file(&self, local: &Path, remote: &str) -> anyhow::Result<()>;

    /// Write bytes to a file on the node.
    async fn write_file(&self, data: &[u8], remote: &str) -> anyhow::Result<()>;

    /// A file's whole content from the node.
    async fn read_file(&self, remote: &str) -> anyhow::Result<Vec<u8>>;

    /// Copy a file from the node to `local` (through `local.part`, moved into place at the end);
    /// its size. Transports that can stream do, so a large file is never held in memory.
    async fn fetch_file(&self, remote: &str, local: &Path) -> anyhow::Result<u64> {
        let data = self.read_file(remote).await?;
        let part = part_path(local);
        tokio::fs::write(&part, &data)
            .await
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", part.display()))?;
        tokio::fs::rename(&part, local)
            .await
            .map_err(|e| anyhow::anyhow!("cannot move {} into place: {e}", local.display()))?;
        Ok(data.len() as u64)
    }

    /// Open a connection from the node to `host:port` (a tunnel).
    async fn open_tunnel(&self, host: &str, port: u16) -> anyhow::Result<Box<dyn TunnelStream>>;

    /// Start a command whose stdin and stdout are a byte stream (as `ssh -W` is): what a
    /// transport that reaches a node through another one (srun) tunnels over. Its stderr is
    /// logged (debug).
    async fn open_command_stream(
        &self,
        command: &RemoteCommand,
    ) -> anyhow::Result<Box<dyn TunnelStream>> {
        anyhow::bail!(
            "{} cannot carry a byte stream through a command ({})",
            self.describe(),
            command.shown
        )
    }

    /// Run a command and collect its output.
    async fn capture(&self, command: &str) -> anyhow::Result<Captured> {
        self.capture_cmd(&RemoteCommand::new(command)).await
    }

    /// Run a command and collect its output.
    async fn capture_cmd(&self, command: &RemoteCommand) -> anyhow::Result<Captured> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = self.run_cmd(command, &mut out, &mut err).await?;
        Ok(Captured {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }
}

/// Exit status of a guarded command that ran out of time (see [`guarded`]).
pub const TIMED_OUT: i32 = 124;

/// `script` wrapped so that it runs on the node with stdin from /dev/null, in its own process
/// group, and is stopped (TERM, then KILL 5 s later, the whole group) after `limit`; the wrapper
/// then exits with [`TIMED_OUT`]. The limit holds on the node even if this machine goes away.
pub fn guarded(script: &str, limit: std::time::Duration) -> String {
    let secs = limit.as_secs().max(1);
    format!(
        "f=$(mktemp) || exit 1\n\
         setsid sh -c {q} daft-guarded </dev/null & p=$!\n\
         setsid sh -c 'sleep \"$1\" </dev/null >/dev/null 2>&1; echo timeout > \"$2\"; kill -TERM -\"$0\" 2>/dev/null; sleep 5; kill -KILL -\"$0\" 2>/dev/null' \"$p\" {secs} \"$f\" </dev/null >/dev/null 2>&1 & w=$!\n\
         wait \"$p\"; s=$?\n\
         kill -KILL -\"$w\" 2>/dev/null\n\
         if [ -s \"$f\" ]; then s={TIMED_OUT}; fi\n\
         rm -f \"$f\"\n\
         exit \"$s\"",
        q = crate::shell::shell_quote(script),
    )
}

/// Run `cmd` on the node under [`guarded`] with `limit`; also bounded here (a silent connection
/// cannot hold daft). Ok(None) when it ran out of time.
pub async fn capture_guarded(
    t: &dyn Transport,
    cmd: &RemoteCommand,
    limit: std::time::Duration,
) -> anyhow::Result<Option<Captured>> {
    let wrapped = RemoteCommand {
        text: guarded(&cmd.text, limit),
        shown: format!(
            "{} (time limit {})",
            cmd.shown,
            humantime::format_duration(limit)
        ),
        input: Input::default(),
    };
    let backstop = limit + std::time::Duration::from_secs(30);
    match tokio::time::timeout(backstop, t.capture_cmd(&wrapped)).await {
        Err(_) => Ok(None),
        Ok(r) => {
            let c = r?;
            Ok((c.status != TIMED_OUT).then_some(c))
        }
    }
}

/// Mask what looks like a secret in a command before it is logged: values of variables whose
/// names say TOKEN, SECRET, PASSWORD, PASSWD, KEY or CREDENTIAL, and passwords in URLs.
pub fn redact(s: &str) -> String {
    redact_words(&redact_assignments(s))
}

/// Words that make a flag's value or a name's value a secret.
const SECRET_WORDS: [&str; 7] = [
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "KEY",
    "CREDENTIAL",
    "AUTH",
];

/// `--token X`, `--password=X`, `-p X` (a password, unless it is a port), `Bearer X` and
/// `Basic X` (an `Authorization` header's credentials): the value masked, quotes kept.
fn redact_words(s: &str) -> String {
    #[derive(PartialEq)]
    enum Next {
        Plain,
        Secret,
        PortOrSecret,
    }
    let mut out = String::with_capacity(s.len());
    let mut next = Next::Plain;
    let mut rest = s;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        // The word without the quotes around it.
        let core = word.trim_matches(|c: char| c == '\'' || c == '"');
        let lead = word.find(core).unwrap_or(0);
        let (pre, post) = (&word[..lead], &word[lead + core.len()..]);
        let is_port = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == ':');
        match next {
            Next::Secret if !core.is_empty() && core != "***" => {
                out.push_str(pre);
                out.push_str("***");
                out.push_str(post);
                next = Next::Plain;
                continue;
            }
            Next::PortOrSecret if !is_port(core) && !core.starts_with('-') => {
                out.push_str(pre);
                out.push_str("***");
                out.push_str(post);
                next = Next::Plain;
                continue;
            }
            _ => {}
        }
        next = Next::Plain;
        let flag = core.trim_start_matches('-');
        let upper = flag.to_ascii_uppercase();
        let secret_name = |n: &str| SECRET_WORDS.iter().any(|w| n.contains(w));
        if core.starts_with("--") || (core.starts_with('-') && flag.len() > 1) {
            if let Some((name, value)) = flag.split_once('=') {
                if secret_name(&name.to_ascii_uppercase()) && !value.is_empty() && value != "***" {
                    let keep = word.len() - post.len() - value.len();
                    out.push_str(&word[..keep]);
                    out.push_str("***");
                    out.push_str(post);
                    continue;
                }
            } else if secret_name(&upper) {
                next = Next::Secret;
            }
        } else if core == "-p" {
            next = Next::PortOrSecret;
        } else if upper == "BEARER" || upper == "BASIC" || upper == "TOKEN" {
            next = Next::Secret;
        }
        out.push_str(word);
    }
    out
}

/// `NAME=value` where NAME looks secret, and `scheme://user:password@host`.
fn redact_assignments(s: &str) -> String {
    static WORDS: [&str; 6] = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"];
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < s.len() {
        // NAME=value where NAME looks secret.
        if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < s.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let name = &s[start..i];
            out.push_str(name);
            if i < s.len() && bytes[i] == b'=' {
                let upper = name.to_ascii_uppercase();
                if WORDS.iter().any(|w| upper.contains(w)) {
                    out.push_str("=***");
                    i += 1;
                    // Skip the value: a quoted string or up to whitespace / ';' / '&'.
                    let quote = bytes.get(i).copied();
                    if quote == Some(b'\'') || quote == Some(b'"') {
                        i += 1;
                        while i < s.len() && bytes[i] != quote.unwrap() {
                            i += 1;
                        }
                        i = (i + 1).min(s.len());
                    } else {
                        while i < s.len() && !b" \t\n;&|".contains(&bytes[i]) {
                            i += 1;
                        }
                    }
                }
            }
            continue;
        }
        // scheme://user:password@host
        if s[i..].starts_with("://") {
            out.push_str("://");
            i += 3;
            let rest = &s[i..];
            let end = rest
                .find(|c: char| c.is_whitespace() || "/'\"".contains(c))
                .unwrap_or(rest.len());
            if let Some(at) = rest[..end].rfind('@') {
                if let Some(colon) = rest[..at].find(':') {
                    out.push_str(&rest[..colon]);
                    out.push_str(":***");
                    i += at;
                }
            }
            continue;
        }
        let c = s[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Where a file being fetched to `local` is written until it is whole.
pub fn part_path(local: &Path) -> std::path::PathBuf {
    let mut name = local.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    local.with_file_name(name)
}

#[cfg(test)]
mod tests {

    #[test]
    fn redaction() {
        use super::redact;
        assert_eq!(
            redact("export HF_TOKEN=abc123 X=1; run"),
            "export HF_TOKEN=*** X=1; run"
        );
        assert_eq!(
            redact("AWS_SECRET_ACCESS_KEY='a b c' aws s3 ls"),
            "AWS_SECRET_ACCESS_KEY=*** aws s3 ls"
        );
        assert_eq!(
            redact("pip install git+https://bob:ghp_xyz@github.com/o/r.git"),
            "pip install git+https://bob:***@github.com/o/r.git"
        );
        assert_eq!(
            redact("echo héllo https://pypi.org/simple"),
            "echo héllo https://pypi.org/simple"
        );
    }

    #[test]
    fn redaction_of_flags_and_headers() {
        use super::redact;
        let cases = [
            (
                "hf download --token hf_abc model",
                "hf download --token *** model",
            ),
            (
                "tool --api-key=k123 --verbose",
                "tool --api-key=*** --verbose",
            ),
            ("mysql -u root -p s3cr3t db", "mysql -u root -p *** db"),
            ("ssh -p 2222 host", "ssh -p 2222 host"),
            ("docker run -p 8080:80 img", "docker run -p 8080:80 img"),
            (
                "curl -H 'Authorization: Bearer eyJhbGci.x.y' https://api",
                "curl -H 'Authorization: Bearer ***' https://api",
            ),
            (
                "curl -H \"Authorization: Basic dXNlcjpwdw==\" x",
                "curl -H \"Authorization: Basic ***\" x",
            ),
            ("login --password \"two words\"", "login --password \"***"),
            (
                "git clone https://x/r.git --depth 1",
                "git clone https://x/r.git --depth 1",
            ),
        ];
        for (raw, want) in cases {
            let got = redact(raw);
            assert!(got.starts_with(want), "{raw:?} -> {got:?}, want {want:?}");
        }
    }

    #[test]
    fn guarded_command_times_out_and_kills_its_group() {
        let t = std::time::Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-survived");
        let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(super::guarded(&script, std::time::Duration::from_secs(1)))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(super::TIMED_OUT));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(8),
            "{:?}",
            t.elapsed()
        );
        std::thread::sleep(std::time::Duration::from_secs(3));
        assert!(
            !marker.exists(),
            "a child of the timed-out command lived on"
        );
    }

    #[test]
    fn guarded_command_keeps_status_and_closes_stdin() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(super::guarded(
                "read x || exit 7",
                std::time::Duration::from_secs(20),
            ))
            .stdin(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7));
    }
}
