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
    collect_with(dir, &[])
}

/// [`collect`], with more ignore files (gitignore rules) honoured besides.
pub fn collect_with(dir: &Path, more_ignores: &[&str]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let root = dir
        .canonicalize()
        .with_context(|| format!("the working directory {} does not exist", dir.display()))?;
    if !root.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut walker = ignore::WalkBuilder::new(&root);
    for name in more_ignores {
        walker.add_custom_ignore_filename(name);
    }
    let walker = walker
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

/// The content hash of a set of files: names, modes, bytes and sizes (not timestamps), sha256
/// hex. It names the archive, so the head can tell it already has this working directory without
/// anything being packed or sent.
pub fn manifest_hash(files: &[(String, PathBuf)]) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (name, path) in files {
        hash_file(&mut h, name, path, &mut buf, |_| Ok(()))?;
    }
    Ok(hex::encode(h.finalize()))
}

/// One file into the manifest hash, each chunk read also handed to `sink` (the packer): what is
/// hashed is exactly what was read. Returns the file's mode and the bytes read.
fn hash_file(
    h: &mut Sha256,
    name: &str,
    path: &Path,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> anyhow::Result<(u32, u64)> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = unix_mode(&f.metadata()?);
    h.update(name.as_bytes());
    h.update([0]);
    h.update(mode.to_le_bytes());
    let mut len = 0u64;
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        sink(&buf[..n])?;
        len += n as u64;
    }
    h.update(len.to_le_bytes());
    Ok((mode, len))
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
    let (file, tmp) = tempfile::Builder::new()
        .prefix("daft-")
        .suffix(".zip")
        .tempfile_in(tmp_dir)
        .with_context(|| format!("cannot create a zip in {}", tmp_dir.display()))?
        .keep()
        .context("cannot keep the zip")?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut packed = Sha256::new();
    for (name, path) in files {
        let meta = std::fs::metadata(path)?;
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
            .unix_permissions(unix_mode(&meta))
            .large_file(len >= u32::MAX as u64);
        if method == CompressionMethod::Deflated {
            opts = opts.compression_level(Some(1));
        }
        zip.start_file(name.as_str(), opts)?;
        let (_, n) = hash_file(&mut packed, name, path, &mut buf, |chunk| {
            zip.write_all(chunk)
        })?;
        bytes += n;
    }
    // The archive is named by the hash of what was hashed before: it must be what was packed.
    if hex::encode(packed.finalize()) != hash {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "the working directory changed while it was being packed; submit again once nothing \
             writes into it (or list what changes in {IGNORE_FILE})"
        );
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
