//! The one way commands print: results on stdout, notes and warnings on stderr, `--quiet` and
//! `--output json` decided once, in the [`Printer`] handed to every command.
//!
//! A closed stdout (`daft jobs | head -1`) is not a failure: [`OutputClosed`] ends the command
//! quietly with status 0, as `head` asked, instead of the panic `println!` makes of it. A closed
//! stderr is ignored (there is nowhere left to say anything).

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Whoever read our standard output stopped reading (a broken pipe): the command ends quietly,
/// with status 0.
#[derive(Debug)]
pub struct OutputClosed;

impl fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}
impl std::error::Error for OutputClosed {}

/// An error writing to this machine's stdout, as daft reports it.
pub fn stdout_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        anyhow::Error::new(OutputClosed)
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

/// Whether an error is (or was caused by) a closed standard output.
pub fn is_output_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<OutputClosed>())
}

/// Whether notes and progress are silenced (`--quiet`), for the floors below the commands that
/// have no [`Printer`] of their own (a lock wait, a build's output): set once, by
/// [`Printer::install`].
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `--quiet` was given (notes and progress lines hidden).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// How results are printed: `--output text` (tables, plans) or `--output json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Where a [`Printer`] writes: this process's stdout and stderr, or a buffer (tests).
#[derive(Debug, Clone, Default)]
enum Sink {
    #[default]
    Std,
    Captured(Arc<Mutex<Captured>>),
}

/// What a capturing [`Printer`] was given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
}

/// The one printer, made once from the command line (`--quiet`, the command's `--output`) and
/// handed to the command: results on stdout (text or JSON), notes on stderr (hidden by
/// `--quiet`), warnings on stderr (always).
#[derive(Debug, Clone, Default)]
pub struct Printer {
    format: Format,
    quiet: bool,
    sink: Sink,
}

impl Printer {
    pub fn new(format: Format, quiet: bool) -> Printer {
        Printer {
            format,
            quiet,
            sink: Sink::Std,
        }
    }

    /// A printer that writes into a buffer instead (what a test reads back).
    pub fn capturing(format: Format, quiet: bool) -> (Printer, Arc<Mutex<Captured>>) {
        let buf = Arc::new(Mutex::new(Captured::default()));
        let p = Printer {
            format,
            quiet,
            sink: Sink::Captured(buf.clone()),
        };
        (p, buf)
    }

    /// Make this the process's printer: the floors below the commands follow its `--quiet`.
    pub fn install(&self) {
        QUIET.store(self.quiet, Ordering::Relaxed);
    }

    /// The same printer with another result format (a command's own `--output`).
    pub fn with_format(&self, format: Format) -> Printer {
        Printer {
            format,
            ..self.clone()
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    fn stdout(&self, args: fmt::Arguments<'_>, newline: bool) -> anyhow::Result<()> {
        match &self.sink {
            Sink::Std => {
                let mut o = io::stdout().lock();
                o.write_fmt(args)
                    .and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) })
                    .and_then(|()| o.flush())
                    .map_err(stdout_error)
            }
            Sink::Captured(buf) => {
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                let _ = b.stdout.write_fmt(args);
                if newline {
                    b.stdout.push('\n');
                }
                Ok(())
            }
        }
    }

    fn stderr(&self, args: fmt::Arguments<'_>) {
        match &self.sink {
            Sink::Std => stderr_line(args),
            Sink::Captured(buf) => {
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                let _ = b.stderr.write_fmt(args);
                b.stderr.push('\n');
            }
        }
    }

    /// One line of a result on stdout.
    pub fn line(&self, args: fmt::Arguments<'_>) -> anyhow::Result<()> {
        self.stdout(args, true)
    }

    /// Text of a result as it is (no newline added) on stdout.
    pub fn text(&self, args: fmt::Arguments<'_>) -> anyhow::Result<()> {
        self.stdout(args, false)
    }

    /// A value as pretty JSON on stdout.
    pub fn json<T: serde::Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        self.line(format_args!("{}", serde_json::to_string_pretty(value)?))
    }

    /// A result in the printer's format: `value` as JSON, or the text `render` makes of it.
    pub fn show<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json(value),
            Format::Text => self.text(format_args!("{}", render(value))),
        }
    }

    /// A note for the user (progress, hints) on stderr, unless `--quiet`; never fails.
    pub fn note(&self, args: fmt::Arguments<'_>) {
        if !self.quiet {
            self.stderr(args);
        }
    }

    /// A warning on stderr, `--quiet` or not; never fails.
    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.stderr(args);
    }
}

fn stderr_line(args: fmt::Arguments<'_>) {
    let mut e = io::stderr().lock();
    let _ = e
        .write_fmt(args)
        .and_then(|()| e.write_all(b"\n"))
        .and_then(|()| e.flush());
}

/// A note from a floor below the commands (no printer of its own) on stderr, unless `--quiet`.
pub fn notice(args: fmt::Arguments<'_>) {
    if !quiet() {
        stderr_line(args);
    }
}

/// A warning from a floor below the commands on stderr, `--quiet` or not.
pub fn warning(args: fmt::Arguments<'_>) {
    stderr_line(args);
}

/// `outln!(printer, ...)`: [`Printer::line`] with `format!` arguments; evaluates to
/// `anyhow::Result<()>`.
#[macro_export]
macro_rules! outln {
    ($p:expr) => { $p.line(format_args!("")) };
    ($p:expr, $($t:tt)*) => { $p.line(format_args!($($t)*)) };
}

/// `out!(printer, ...)`: [`Printer::text`] with `format!` arguments (no newline).
#[macro_export]
macro_rules! out {
    ($p:expr, $($t:tt)*) => { $p.text(format_args!($($t)*)) };
}

/// `note!(printer, ...)`: [`Printer::note`] with `format!` arguments.
#[macro_export]
macro_rules! note {
    ($p:expr) => { $p.note(format_args!("")) };
    ($p:expr, $($t:tt)*) => { $p.note(format_args!($($t)*)) };
}

/// `warn!(printer, ...)`: [`Printer::warn`] with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($p:expr, $($t:tt)*) => { $p.warn(format_args!($($t)*)) };
}

/// `notice!(...)`: [`notice`] (below the commands) with `format!` arguments.
#[macro_export]
macro_rules! notice {
    ($($t:tt)*) => { $crate::printer::notice(format_args!($($t)*)) };
}

/// `warning!(...)`: [`warning`] (below the commands) with `format!` arguments.
#[macro_export]
macro_rules! warning {
    ($($t:tt)*) => { $crate::printer::warning(format_args!($($t)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_output_closed_and_other_errors_are_not() {
        let e = stdout_error(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_output_closed(&e));
        let e = e.context("printing the table");
        assert!(is_output_closed(&e));
        let e = stdout_error(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!is_output_closed(&e));
        // A broken pipe elsewhere (a socket) is no closed stdout.
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_output_closed(&e));
    }

    #[derive(serde::Serialize)]
    struct Row {
        id: &'static str,
    }

    #[test]
    fn a_result_is_text_or_json_as_the_printer_was_made() {
        let rows = vec![Row { id: "i-1" }];
        let (text, out) = Printer::capturing(Format::Text, false);
        text.show(&rows, |r| format!("{} row(s)\n", r.len()))
            .unwrap();
        crate::outln!(text, "next").unwrap();
        assert_eq!(out.lock().unwrap().stdout, "1 row(s)\nnext\n");
        let (json, out) = Printer::capturing(Format::Text, false);
        let json = json.with_format(Format::Json);
        assert!(json.is_json());
        json.show(&rows, |_| unreachable!("JSON needs no text"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.lock().unwrap().stdout).unwrap();
        assert_eq!(v, serde_json::json!([{"id": "i-1"}]));
    }

    #[test]
    fn quiet_hides_notes_but_never_results_or_warnings() {
        for quiet in [false, true] {
            let (p, out) = Printer::capturing(Format::Text, quiet);
            crate::note!(p, "daft: packed {} file(s)", 3);
            crate::warn!(p, "daft: warning: {}", "no remote");
            crate::outln!(p, "job-1").unwrap();
            let got = out.lock().unwrap().clone();
            assert_eq!(got.stdout, "job-1\n");
            if quiet {
                assert_eq!(got.stderr, "daft: warning: no remote\n");
            } else {
                assert_eq!(
                    got.stderr,
                    "daft: packed 3 file(s)\ndaft: warning: no remote\n"
                );
            }
        }
    }
}
