//! Building and pushing the project's image: one `Builder` trait, implemented by docker
//! (buildx), buildah (daemonless) and podman; the registry asked first whether it already has
//! the tag (a HEAD on the manifest, `registry`), so an unchanged project builds nothing. The
//! build context is a staged copy of exactly the files the image's tag is computed from.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::launch::BuilderKind;

/// What a build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest<'a> {
    pub dockerfile: &'a Path,
    pub context: &'a Path,
    /// `registry/name:tag`.
    pub image: &'a str,
}

impl BuildRequest<'_> {
    /// The image's registry speaks plain HTTP (a loopback registry).
    fn insecure(&self) -> bool {
        crate::registry::insecure_registry(self.image.split('/').next().unwrap_or_default())
    }
}

#[async_trait]
pub trait Builder: Send + Sync {
    fn name(&self) -> &'static str;
    /// Build the image and push it; its digest (`sha256:…`).
    async fn build_and_push(&self, req: &BuildRequest<'_>) -> anyhow::Result<String>;
}

/// How to install each builder, for the error when none is there.
pub fn install_hint(kind: BuilderKind) -> &'static str {
    match kind {
        BuilderKind::Docker => {
            "install Docker Engine with buildx (https://docs.docker.com/engine/install/)"
        }
        BuilderKind::Buildah => {
            "install buildah (Debian/Ubuntu: apt-get install buildah; Fedora: dnf install buildah)"
        }
        BuilderKind::Podman => "install podman (https://podman.io/docs/installation)",
        BuilderKind::Auto => "install one of docker (with buildx), buildah or podman",
    }
}

/// The program is on PATH.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A docker client whose engine answers (a client alone cannot build).
async fn docker_engine_answers() -> bool {
    let probe = tokio::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(10), probe).await,
        Ok(Ok(s)) if s.success()
    )
}

/// The builder the config names (with `auto`, the first of docker (with an engine that
/// answers), buildah, podman present).
pub async fn choose(kind: BuilderKind) -> anyhow::Result<Box<dyn Builder>> {
    let docker_ok =
        kind == BuilderKind::Auto && on_path("docker").is_some() && docker_engine_answers().await;
    let pick = |k: BuilderKind| -> Option<Box<dyn Builder>> {
        match k {
            BuilderKind::Docker => on_path("docker").map(|_| Box::new(Docker) as Box<dyn Builder>),
            BuilderKind::Buildah => {
                on_path("buildah").map(|_| Box::new(Buildah) as Box<dyn Builder>)
            }
            BuilderKind::Podman => on_path("podman").map(|_| Box::new(Podman) as Box<dyn Builder>),
            BuilderKind::Auto => None,
        }
    };
    match kind {
        BuilderKind::Auto => [
            BuilderKind::Docker,
            BuilderKind::Buildah,
            BuilderKind::Podman,
        ]
        .into_iter()
        .filter(|k| *k != BuilderKind::Docker || docker_ok)
        .find_map(pick)
        .ok_or_else(|| {
            anyhow!(
                "no image builder found on PATH (docker, buildah or podman): {}",
                install_hint(BuilderKind::Auto)
            )
        }),
        k => pick(k).ok_or_else(|| {
            let name = match k {
                BuilderKind::Docker => "docker",
                BuilderKind::Buildah => "buildah",
                _ => "podman",
            };
            anyhow!(
                "`image.builder` = \"{name}\" but {name} is not on PATH: {}",
                install_hint(k)
            )
        }),
    }
}

/// Run a build tool, its output passed through line by line (prefixed), logged at debug.
async fn run(program: &str, args: &[String]) -> anyhow::Result<()> {
    tracing::debug!(target: "daft::build", "{program} {}", args.join(" "));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let name = program.to_string();
    let pump = |r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        let name = name.clone();
        async move {
            // Read as bytes to the end, whatever they are (a line that is not UTF-8 must not
            // stop the reading: the builder would block on a full pipe and never exit).
            let mut reader = BufReader::new(r);
            let mut tail = Vec::new();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(target: "daft::build", "reading {name}'s output: {e}");
                        break;
                    }
                }
                let l = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                crate::notice!("  {name}: {l}");
                tail.push(l);
                if tail.len() > 30 {
                    tail.remove(0);
                }
            }
            tail
        }
    };
    let (_, tail) = tokio::join!(pump(Box::new(out)), pump(Box::new(err)));
    let status = child.wait().await?;
    if !status.success() {
        bail!(
            "{program} {} failed ({status}):\n{}",
            args.first().map(String::as_str).unwrap_or(""),
            tail.join("\n")
        );
    }
    Ok(())
}

/// A file in the temp dir (an unpredictable name, made by `tempfile`), removed when dropped.
pub struct TempPath(tempfile::TempPath);

impl TempPath {
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A new temporary file holding `text`.
    pub fn with_text(text: &str) -> anyhow::Result<TempPath> {
        let p = digest_file()?;
        std::fs::write(p.path(), text)
            .with_context(|| format!("cannot write {}", p.path().display()))?;
        Ok(p)
    }
}

fn digest_file() -> anyhow::Result<TempPath> {
    let f = tempfile::Builder::new()
        .prefix("daft-build-")
        .tempfile()
        .context("cannot make a temporary file")?;
    Ok(TempPath(f.into_temp_path()))
}

/// The ignore file of image builds, honoured beside `.gitignore` and `.daftignore` (read with
/// the same rules as those).
pub const DOCKER_IGNORE: &str = ".dockerignore";

/// The build context: a copy, in a temporary directory, of exactly the project's files that the
/// image's tag is computed from (`.gitignore`, `.daftignore` and `.dockerignore` honoured), so an
/// ignored `.env` never reaches the image and what was hashed is what is built.
pub struct BuildContext {
    dir: tempfile::TempDir,
    /// The content hash of the staged files (names, sizes, modes, bytes).
    pub hash: String,
    pub files: usize,
}

impl BuildContext {
    /// Stage `project`'s files (blocking: run it off the async runtime).
    pub fn stage(project: &Path) -> anyhow::Result<BuildContext> {
        let files = crate::archive::collect_with(project, &[DOCKER_IGNORE])?;
        let dir = tempfile::Builder::new()
            .prefix("daft-context-")
            .tempdir()
            .context("cannot make the build context's temporary directory")?;
        let mut staged = Vec::with_capacity(files.len());
        for (name, src) in files {
            // (The builder is handed the filtered files: its own reading of the ignore file,
            // by other rules, would make the image differ from what was hashed.)
            if name == DOCKER_IGNORE {
                continue;
            }
            let dst = dir.path().join(&name);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy {} into the build context", src.display()))?;
            staged.push((name, dst));
        }
        // Hashed from the copies: the bytes that are built, even if the project changes meanwhile.
        let hash = crate::archive::manifest_hash(&staged)?;
        Ok(BuildContext {
            dir,
            hash,
            files: staged.len(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn read_digest(path: &Path) -> anyhow::Result<String> {
    let d = std::fs::read_to_string(path)?.trim().to_string();
    if !d.starts_with("sha256:") {
        bail!("the builder reported no image digest");
    }
    Ok(d)
}

/// Build with `tool BUILD -f … -t … CONTEXT`, push with `tool push --digestfile …`: buildah and
/// podman take the same flags.
async fn build_push_oci(
    tool: &str,
    build: &[&str],
    to_docker: bool,
    req: &BuildRequest<'_>,
) -> anyhow::Result<String> {
    let mut args: Vec<String> = build.iter().map(|a| a.to_string()).collect();
    args.extend([
        "-f".into(),
        req.dockerfile.display().to_string(),
        "-t".into(),
        req.image.into(),
        req.context.display().to_string(),
    ]);
    run(tool, &args).await?;
    let d = digest_file()?;
    let mut args = vec!["push".to_string()];
    if req.insecure() {
        args.push("--tls-verify=false".into());
    }
    args.extend([
        "--digestfile".into(),
        d.path().display().to_string(),
        req.image.into(),
    ]);
    if to_docker {
        args.push(format!("docker://{}", req.image));
    }
    run(tool, &args).await?;
    read_digest(d.path())
}

pub struct Buildah;

#[async_trait]
impl Builder for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }
    async fn build_and_push(&self, req: &BuildRequest<'_>) -> anyhow::Result<String> {
        // (STORAGE_DRIVER and BUILDAH_ISOLATION from the environment are buildah's own.)
        build_push_oci("buildah", &["bud", "--layers"], true, req).await
    }
}

pub struct Podman;

#[async_trait]
impl Builder for Podman {
    fn name(&self) -> &'static str {
        "podman"
    }
    async fn build_and_push(&self, req: &BuildRequest<'_>) -> anyhow::Result<String> {
        build_push_oci("podman", &["build"], false, req).await
    }
}

pub struct Docker;

#[async_trait]
impl Builder for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }
    async fn build_and_push(&self, req: &BuildRequest<'_>) -> anyhow::Result<String> {
        let meta = digest_file()?;
        run(
            "docker",
            &[
                "buildx".into(),
                "build".into(),
                "--push".into(),
                "--metadata-file".into(),
                meta.path().display().to_string(),
                "-f".into(),
                req.dockerfile.display().to_string(),
                "-t".into(),
                req.image.into(),
                req.context.display().to_string(),
            ],
        )
        .await?;
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(meta.path())?)
            .context("docker buildx wrote no metadata")?;
        v["containerimage.digest"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("docker buildx reported no image digest"))
    }
}
