//! daft's own directories on this machine.

use std::path::PathBuf;

/// daft's own directory on this machine: `$DAFT_HOME`, else `~/.daft`.
pub fn daft_home() -> PathBuf {
    if let Some(h) = std::env::var_os("DAFT_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".daft")
}
