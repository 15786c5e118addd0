//! Packing a working directory for `submit`: a deterministic zip (sorted entries, fixed
//! timestamps) named by the hash of its content, so an unchanged directory gives the same name.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// The ignore file daft reads besides `.gitignore`.
pub const IGNORE_FILE: &str = ".daftignore";

/// A packed working directory.
#[derive(Debug)]
pub struct Archive {
    pub path: PathBuf,
    /// sha256 of the zip, hex.
    pub hash: String,
    pub files: usize,
    /// Total size of the files before compression.
    pub bytes: u64,
    /// Size of the zip.
    pub zip_bytes: u64,
}

impl Drop for Archive {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The files to pack: `.gitignore` and `.daftignore` honoured, `.git` skipped, sorted by path.
/// Symlinks that stay inside `dir` are packed as the file they point to; others are refused.
pub fn collect(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let root = dir
        .canonicalize()
        .with_context(|| format!("the working directory {} does not exist", dir.display()))?;
    if !root.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let walker = ignore::WalkBuilder::new(&root)
        .hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .parents(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut out = Vec::new();
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let ft = match entry.file_type() {
            Some(ft) => ft,
            None => continue,
        };
        let path = entry.path();
        let rel = path.strip_prefix(&root).expect("walk stays under root");
        if rel.as_os_str().is_empty() || ft.is_dir() {
            continue;
        }
        let name = rel
            .to_str()
            .with_context(|| format!("{} has a name that is not UTF-8", path.display()))?
            .replace('\\', "/");
        if ft.is_symlink() {
            let target = path
                .canonicalize()
                .with_context(|| format!("the symlink {} is broken", path.display()))?;
            if !target.starts_with(&root) {
                bail!(
                    "the symlink {} points outside the working directory (to {}); daft does not send files from outside it. Copy the file in, or list the link in {IGNORE_FILE}",
                    rel.display(),
                    target.display()
                );
            }
            if target.is_dir() {
                continue;
            }
            out.push((name, target));
        } else if ft.is_file() {
            out.push((name, path.to_path_buf()));
        }
    }
    out.sort();
    Ok(out)
}

/// The content hash of a set of files: names, sizes, modes and bytes (not timestamps), sha256 hex.
/// It names the archive, so the head can tell it already has this working directory without
/// anything being packed or sent.
pub fn manifest_hash(files: &[(String, PathBuf)]) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (name, path) in files {
        let meta = std::fs::metadata(path)?;
        h.update(name.as_bytes());
        h.update([0]);
        h.update(meta.len().to_le_bytes());
        h.update(unix_mode(&meta).to_le_bytes());
        let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Pack `dir` into a zip under `tmp_dir`.
pub fn pack(dir: &Path, tmp_dir: &Path) -> anyhow::Result<Archive> {
    let files = collect(dir)?;
    let hash = manifest_hash(&files)?;
    pack_files(&files, hash, tmp_dir)
}

/// Pack collected files (whose manifest hash is `hash`) into a zip under `tmp_dir`.
pub fn pack_files(
    files: &[(String, PathBuf)],
    hash: String,
    tmp_dir: &Path,
) -> anyhow::Result<Archive> {
    std::fs::create_dir_all(tmp_dir)?;
    let tmp = tmp_dir.join(format!("daft-{}-{}.zip", std::process::id(), nanos()));
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (name, path) in files {
        let meta = std::fs::metadata(path)?;
        let mode = unix_mode(&meta);
        let len = meta.len();
        // Small or already-compressed files are stored; the rest deflated fast.
        let method = if len < 256 || is_compressed(name) {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        let mut opts = SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(DateTime::default())
            .unix_permissions(mode)
            .large_file(len >= u32::MAX as u64);
        if method == CompressionMethod::Deflated {
            opts = opts.compression_level(Some(1));
        }
        zip.start_file(name.as_str(), opts)?;
        let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            zip.write_all(&buf[..n])?;
        }
        bytes += len;
    }
    let mut inner = zip.finish()?;
    inner.flush()?;
    let mut file = inner.into_inner().map_err(|e| e.into_error())?;
    let zip_bytes = file.stream_position()?;
    Ok(Archive {
        path: tmp,
        hash,
        files: files.len(),
        bytes,
        zip_bytes,
    })
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn is_compressed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".parquet", ".png", ".jpg", ".jpeg", ".whl",
        ".mp4",
    ]
    .iter()
    .any(|e| lower.ends_with(e))
}

#[cfg(unix)]
fn unix_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}
#[cfg(not(unix))]
fn unix_mode(_: &std::fs::Metadata) -> u32 {
    0o644
}

/// Human size: 1.2 MB.
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}
