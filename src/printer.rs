//! The one way commands print: results on stdout, notes on stderr.
//!
//! A closed stdout (`daft jobs | head -1`) is not a failure: [`OutputClosed`] ends the command
//! quietly with status 0, as `head` asked, instead of the panic `println!` makes of it. A closed
//! stderr is ignored (there is nowhere left to say anything).

use std::fmt;
use std::io::{self, Write};

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

/// Print one line (a result) on stdout.
pub fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut o = io::stdout().lock();
    o.write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush())
        .map_err(stdout_error)
}

/// Print text as it is (no newline added) on stdout.
pub fn text(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut o = io::stdout().lock();
    o.write_fmt(args)
        .and_then(|()| o.flush())
        .map_err(stdout_error)
}

/// A value as pretty JSON on stdout (`--output json`).
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    line(format_args!("{}", serde_json::to_string_pretty(value)?))
}

/// A note for the user (progress, warnings, hints) on stderr; never fails.
pub fn note(args: fmt::Arguments<'_>) {
    let mut e = io::stderr().lock();
    let _ = e
        .write_fmt(args)
        .and_then(|()| e.write_all(b"\n"))
        .and_then(|()| e.flush());
}

/// `outln!(...)`: [`line`] with `format!` arguments; evaluates to `anyhow::Result<()>`.
#[macro_export]
macro_rules! outln {
    () => { $crate::printer::line(format_args!("")) };
    ($($t:tt)*) => { $crate::printer::line(format_args!($($t)*)) };
}

/// `out!(...)`: [`text`] with `format!` arguments (no newline).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::printer::text(format_args!($($t)*)) };
}

/// `note!(...)`: [`note`] with `format!` arguments.
#[macro_export]
macro_rules! note {
    () => { $crate::printer::note(format_args!("")) };
    ($($t:tt)*) => { $crate::printer::note(format_args!($($t)*)) };
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
}
