//! Error kinds and their exit codes. `main` is the one place that prints them.

use std::fmt;
use std::ops::Range;

/// Exit code: everything went as asked.
pub const EXIT_OK: i32 = 0;
/// Exit code: the operation (or the submitted job) failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad usage or a bad config file.
pub const EXIT_USAGE: i32 = 2;

/// A problem in a config file, located at a span of its source.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file as the user named it.
    pub file: String,
    /// The file's text, when it could be read.
    pub source: Option<String>,
    /// Byte range of the offending text.
    pub span: Option<Range<usize>>,
    /// What is wrong, one line.
    pub title: String,
    /// Short label under the highlighted text.
    pub label: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl ConfigError {
    pub fn new(
        file: &str,
        source: &str,
        span: Option<Range<usize>>,
        title: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_string(),
            source: Some(source.to_string()),
            span,
            title: title.into(),
            label: String::new(),
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based (line, column) of the span start.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let (src, span) = (self.source.as_ref()?, self.span.as_ref()?);
        let start = span.start.min(src.len());
        let before = &src[..start];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        Some((line, col))
    }

    /// The message as the user reads it: file:line:col, the offending line, what to do.
    pub fn render(&self) -> String {
        use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
        let title = self.title.clone();
        let mut groups = Vec::new();
        match (&self.source, &self.span) {
            (Some(src), Some(span)) => {
                let floor = |mut i: usize| {
                    i = i.min(src.len());
                    while !src.is_char_boundary(i) {
                        i -= 1;
                    }
                    i
                };
                let ceil = |mut i: usize| {
                    i = i.min(src.len());
                    while !src.is_char_boundary(i) {
                        i += 1;
                    }
                    i
                };
                let mut span = floor(span.start)..ceil(span.end.max(span.start));
                if span.is_empty() && span.end < src.len() {
                    span.end = ceil(span.end + 1);
                }
                groups.push(
                    Level::ERROR.primary_title(title).element(
                        Snippet::source(src.as_str())
                            .path(self.file.as_str())
                            .fold(true)
                            .annotation(
                                AnnotationKind::Primary
                                    .span(span)
                                    .label(self.label.as_str()),
                            ),
                    ),
                );
            }
            _ => {
                groups.push(Group::with_title(
                    Level::ERROR.primary_title(format!("{}: {}", self.file, title)),
                ));
            }
        }
        if let Some(help) = &self.help {
            groups.push(Group::with_title(
                Level::HELP.secondary_title(help.as_str()),
            ));
        }
        Renderer::plain().render(&groups).to_string()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col() {
            Some((l, c)) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.title),
            None => write!(f, "{}: {}", self.file, self.title),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A mistake in how daft was called (not in a file): exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// A submitted job ran and exited with this non-zero status; daft exits with it too.
#[derive(Debug)]
pub struct JobExit(pub i32);

impl fmt::Display for JobExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the job exited with status {}", self.0)
    }
}
impl std::error::Error for JobExit {}

/// A config value the back-end refused (Slurm: an unknown partition): shown located in the
/// config like a config error, but it is the operation that failed (exit 1).
#[derive(Debug)]
pub struct Refused(pub ConfigError);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.title)
    }
}
impl std::error::Error for Refused {}

/// Shorthand for a usage error.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code for an error, and the text to print (None: print nothing).
pub fn classify(err: &anyhow::Error) -> (i32, Option<String>) {
    // `daft jobs | head -1`: the reader had what it wanted.
    if crate::printer::is_output_closed(err) {
        return (EXIT_OK, None);
    }
    if let Some(c) = err.downcast_ref::<ConfigError>() {
        return (EXIT_USAGE, Some(c.render()));
    }
    if let Some(r) = err.downcast_ref::<Refused>() {
        return (EXIT_FAILED, Some(r.0.render()));
    }
    if let Some(u) = err.downcast_ref::<UsageError>() {
        return (EXIT_USAGE, Some(format!("error: {u}")));
    }
    if let Some(j) = err.downcast_ref::<JobExit>() {
        return (j.0, None);
    }
    let mut text = format!("error: {err}");
    for cause in err.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    (EXIT_FAILED, Some(text))
}

/// Where the text of a TOML file daft reads is: every checker of one (`.daft.toml` and
/// `launch.toml` in `config`, sweep files in `sweep`) makes its located errors here.
#[derive(Debug, Clone, Copy)]
pub struct Located<'a> {
    pub file: &'a str,
    pub source: &'a str,
}

impl Located<'_> {
    /// An error at `span` of the file.
    pub fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        title: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(self.file, self.source, span, title)
    }
}

/// Where an item stands in its file.
pub fn item_span(item: &toml_edit::Item) -> Option<std::ops::Range<usize>> {
    match item {
        toml_edit::Item::Value(v) => v.span(),
        toml_edit::Item::Table(t) => t.span(),
        toml_edit::Item::ArrayOfTables(a) => a.span(),
        toml_edit::Item::None => None,
    }
}

/// Where a key of a table stands (else its value).
pub fn key_span(table: &toml_edit::Table, key: &str) -> Option<std::ops::Range<usize>> {
    table
        .key(key)
        .and_then(|k| k.span())
        .or_else(|| table.get(key).and_then(item_span))
}
