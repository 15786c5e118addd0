//! Checks on private key files: they must exist, be files, and not be readable by others.

use std::path::Path;

/// Why a key file cannot be used, in the words of a config error.
#[derive(Debug, Clone)]
pub struct KeyFileProblem {
    pub title: String,
    pub label: String,
    pub help: String,
}

/// A private key must exist, be a regular file, and be readable by its owner only.
pub fn check_private_key_file(path: &Path) -> Result<(), KeyFileProblem> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyFileProblem {
                title: format!("the key file {} does not exist", path.display()),
                label: "no such file".into(),
                help: "point it at your private key (for example ~/.ssh/id_ed25519), or create one with `ssh-keygen -t ed25519`".into(),
            })
        }
        Err(e) => {
            return Err(KeyFileProblem {
                title: format!("cannot read the key file {}: {e}", path.display()),
                label: "unreadable".into(),
                help: "check the path and its permissions".into(),
            })
        }
    };
    if !meta.is_file() {
        return Err(KeyFileProblem {
            title: format!("{} is not a file", path.display()),
            label: "not a file".into(),
            help: "point it at the private key file itself".into(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileProblem {
                title: format!(
                    "the private key {} is readable by others (mode {:o})",
                    path.display(),
                    mode
                ),
                label: "permissions too open".into(),
                help: format!(
                    "run `chmod 600 {}`; ssh refuses such keys too",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}
