//! Git provenance of a job's working directory: the commit, branch and uncommitted changes of
//! the repository it sits in, read with the `git` command (as the user's own git sees them).

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// What is recorded with a job about its code.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "repository", rename_all = "snake_case")]
pub enum Provenance {
    /// The working directory is in a git repository.
    #[serde(rename = "git")]
    Git {
        root: String,
        /// None in a repository without commits.
        commit: Option<String>,
        /// None on a detached HEAD.
        branch: Option<String>,
        dirty: bool,
        /// `git status --porcelain`: what makes it dirty (untracked files included).
        changes: Vec<String>,
        /// `git diff` (unstaged changes to tracked files).
        diff: String,
        /// `git diff --cached` (staged changes).
        staged_diff: String,
    },
    /// Not in any repository.
    #[serde(rename = "none")]
    None,
    /// `git` could not be run here.
    #[serde(rename = "unknown")]
    Unknown { reason: String },
}

fn git(dir: &Path, args: &[&str]) -> std::io::Result<(bool, String)> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// The provenance of `dir`.
pub fn provenance(dir: &Path) -> Provenance {
    let root = match git(dir, &["rev-parse", "--show-toplevel"]) {
        Err(e) => {
            return Provenance::Unknown {
                reason: format!("cannot run git: {e}"),
            }
        }
        Ok((false, _)) => return Provenance::None,
        Ok((true, out)) => out.trim().to_string(),
    };
    let text = |args: &[&str]| -> Option<String> {
        match git(dir, args) {
            Ok((true, out)) => Some(out),
            _ => None,
        }
    };
    let commit = text(&["rev-parse", "--verify", "-q", "HEAD"]).map(|s| s.trim().to_string());
    let branch = text(&["symbolic-ref", "-q", "--short", "HEAD"])
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let changes: Vec<String> = text(&["status", "--porcelain", "--untracked-files=normal"])
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    Provenance::Git {
        root,
        commit,
        branch,
        dirty: !changes.is_empty(),
        changes,
        diff: text(&["diff", "--no-color", "--no-ext-diff"]).unwrap_or_default(),
        staged_diff: text(&["diff", "--cached", "--no-color", "--no-ext-diff"]).unwrap_or_default(),
    }
}

/// Whether `commit` is on a remote-tracking branch (pushed somewhere): false without remotes.
pub fn on_a_remote(dir: &Path, commit: &str) -> bool {
    match git(dir, &["branch", "-r", "--contains", commit]) {
        Ok((true, out)) => !out.trim().is_empty(),
        _ => false,
    }
}

/// The usage error for a dirty tree (`what` says what `--allow-dirty` then does), or None.
pub fn refuse_dirty(p: &Provenance, allow_dirty: bool, what: &str) -> Option<anyhow::Error> {
    let Provenance::Git {
        root,
        dirty: true,
        changes,
        ..
    } = p
    else {
        return None;
    };
    if allow_dirty {
        return None;
    }
    let shown: Vec<&str> = changes.iter().take(8).map(String::as_str).collect();
    Some(crate::error::usage(format!(
        "the {root} git repository has uncommitted changes:\n    {}{}\n\
         commit them, or pass --allow-dirty ({what})",
        shown.join("\n    "),
        if changes.len() > shown.len() {
            format!("\n    … and {} more", changes.len() - shown.len())
        } else {
            String::new()
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }

    #[test]
    fn a_directory_outside_any_repository_says_so() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(provenance(d.path()), Provenance::None);
    }

    #[test]
    fn commit_branch_and_the_real_diffs_of_a_repository() {
        let d = tempfile::tempdir().unwrap();
        let git = "git -c user.name=t -c user.email=t@example.com";
        sh(
            d.path(),
            &format!(
                "git init -q -b main . && mkdir sub && echo one > sub/a.txt && git add . && \
                 {git} commit -q -m first"
            ),
        );
        let head = String::from_utf8(
            Command::new("git")
                .args(["-C", d.path().to_str().unwrap(), "rev-parse", "HEAD"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        // From a subdirectory: the repository's state.
        let sub = d.path().join("sub");
        match provenance(&sub) {
            Provenance::Git {
                commit,
                branch,
                dirty,
                diff,
                ..
            } => {
                assert_eq!(commit.as_deref(), Some(head.trim()));
                assert_eq!(branch.as_deref(), Some("main"));
                assert!(!dirty);
                assert!(diff.is_empty());
            }
            other => panic!("{other:?}"),
        }
        sh(
            d.path(),
            "echo two >> sub/a.txt && echo new > b.txt && git add b.txt && echo u > untracked.txt",
        );
        match provenance(&sub) {
            Provenance::Git {
                dirty,
                diff,
                staged_diff,
                changes,
                ..
            } => {
                assert!(dirty);
                assert!(diff.contains("+two") && !diff.contains("+new"), "{diff}");
                assert!(staged_diff.contains("+new"), "{staged_diff}");
                assert!(
                    changes.iter().any(|c| c.ends_with("untracked.txt")),
                    "{changes:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
