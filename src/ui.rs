//! What users see while daft works: progress lines, questions, summaries.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One progress line per node or action, on stderr (hidden when stderr is not a terminal).
pub struct Progress {
    multi: MultiProgress,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        let target = if std::io::stderr().is_terminal() && !crate::printer::quiet() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// A spinner line with a fixed prefix ("head  i-0abc") and a changing message (its phase).
    pub fn line(&self, prefix: impl Into<String>, msg: impl Into<String>) -> ProgressBar {
        let pb = self.multi.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:>4}")
                .expect("valid template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓"),
        );
        pb.set_prefix(prefix.into());
        pb.set_message(msg.into());
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }

    /// Print a line above the progress lines.
    pub fn println(&self, line: impl AsRef<str>) {
        if self.multi.is_hidden() {
            crate::notice!("{}", line.as_ref());
        } else {
            let _ = self.multi.println(line.as_ref());
        }
    }
}

/// Print a line above `pb`'s progress line, or on stderr when progress is hidden (not a
/// terminal): what a step says is never lost with its spinner.
pub fn say(pb: &ProgressBar, line: impl AsRef<str>) {
    if pb.is_hidden() {
        crate::notice!("{}", line.as_ref());
    } else {
        pb.println(line.as_ref());
    }
}

/// Finish a line with a final message.
pub fn done(pb: &ProgressBar, msg: impl Into<String>) {
    pb.finish_with_message(msg.into());
}

/// Ask yes/no on the terminal. Returns Ok(None) when there is no terminal to ask.
pub fn confirm(question: &str) -> std::io::Result<Option<bool>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(Some(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    )))
}

/// "12.3s" or "2m 03s".
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m {:02}s", (s / 60.0) as u64, (s as u64) % 60)
    }
}
