//! An image registry's HTTP API (the OCI distribution spec), as far as daft asks it anything:
//! does it have this tag, and under which digest. Registries that need a login are answered as
//! the builders answer them: with the credentials of the Docker/Podman auth files (or their
//! credential helpers), by HTTP Basic or by the Bearer-token challenge (`WWW-Authenticate`).

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use base64::Engine;

/// `host[:port]/path/name:tag` split into (registry host, repository, tag).
pub fn split_reference(image: &str) -> anyhow::Result<(String, String, String)> {
    let (host, rest) = image
        .split_once('/')
        .ok_or_else(|| anyhow!("{image}: no registry host"))?;
    let (repo, tag) = rest
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{image}: no tag"))?;
    Ok((host.to_string(), repo.to_string(), tag.to_string()))
}

/// `http(s)://host`: plain HTTP for a registry on this machine, HTTPS for any other.
pub fn registry_base(host: &str) -> String {
    let scheme = if insecure_registry(host) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

/// The registry speaks plain HTTP: one on this machine.
pub fn insecure_registry(host: &str) -> bool {
    let h = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    crate::https::is_loopback(h)
}

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.user)
    }
}

impl Credentials {
    fn basic(&self) -> String {
        let b = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.secret));
        format!("Basic {b}")
    }
}

/// The auth files the builders read, in their order: `REGISTRY_AUTH_FILE`, Podman's
/// (`$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`), Docker's
/// (`$DOCKER_CONFIG/config.json`, `~/.docker/config.json`).
pub fn auth_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME");
    let mut v = Vec::new();
    v.extend(env("REGISTRY_AUTH_FILE"));
    v.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    v.extend(
        home.as_ref()
            .map(|h| h.join(".config/containers/auth.json")),
    );
    v.extend(env("DOCKER_CONFIG").map(|d| d.join("config.json")));
    v.extend(home.as_ref().map(|h| h.join(".docker/config.json")));
    v
}

/// The key an auth file's entry stands for, as `host[/path]` (schemes and Docker Hub's legacy
/// `/v1/` address taken off).
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let k = k.strip_suffix("/v1").unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => k.to_string(),
    }
}

/// The credentials for `host/repo` in one auth file's JSON: the most specific entry of `auths`
/// (`host/namespace` before `host`), else its credential helper (`credHelpers`, `credsStore`).
pub fn credentials_in(json: &serde_json::Value, host: &str, repo: &str) -> Option<Credentials> {
    let host = normalize_key(host);
    let full = format!("{host}/{repo}");
    let mut best: Option<(usize, Credentials)> = None;
    for (key, entry) in json["auths"].as_object().into_iter().flatten() {
        let k = normalize_key(key);
        let matches = k == host || (full.starts_with(&k) && full[k.len()..].starts_with('/'));
        if !matches || best.as_ref().is_some_and(|(n, _)| *n >= k.len()) {
            continue;
        }
        let creds = if let Some(a) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (u, p) = text.split_once(':')?;
            Credentials {
                user: u.to_string(),
                secret: p.to_string(),
            }
        } else if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str())
        {
            Credentials {
                user: u.to_string(),
                secret: p.to_string(),
            }
        } else if let Some(t) = entry["identitytoken"].as_str() {
            Credentials {
                user: "<token>".into(),
                secret: t.to_string(),
            }
        } else {
            continue;
        };
        best = Some((k.len(), creds));
    }
    if let Some((_, c)) = best {
        return Some(c);
    }
    let helper = json["credHelpers"]
        .as_object()
        .and_then(|h| h.iter().find(|(k, _)| normalize_key(k) == host))
        .and_then(|(_, v)| v.as_str())
        .or_else(|| json["credsStore"].as_str())?;
    from_helper(helper, &host)
}

/// Ask `docker-credential-HELPER get` for `host` (its protocol: the server on stdin, JSON out).
fn from_helper(helper: &str, host: &str) -> Option<Credentials> {
    use std::io::Write;
    let program = format!("docker-credential-{helper}");
    tracing::debug!(target: "daft::registry", %program, host, "credential helper");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| tracing::debug!(target: "daft::registry", "cannot run {program}: {e}"))
        .ok()?;
    let _ = child.stdin.take()?.write_all(host.as_bytes());
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        tracing::debug!(target: "daft::registry", "{program} has no credentials for {host}");
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Credentials {
        user: v["Username"].as_str()?.to_string(),
        secret: v["Secret"].as_str()?.to_string(),
    })
}

/// The credentials for `host/repo` from the first auth file that has some.
pub fn credentials(host: &str, repo: &str) -> Option<Credentials> {
    auth_files().into_iter().find_map(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| crate::warning!("daft: warning: {} is not JSON ({e}); skipped", path.display()))
            .ok()?;
        let c = credentials_in(&json, host, repo)?;
        tracing::debug!(target: "daft::registry", file = %path.display(), user = %c.user, "registry credentials");
        Some(c)
    })
}

/// A `WWW-Authenticate` challenge: its scheme (lowercased) and parameters.
pub fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((k, v));
        s = next.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    (scheme.to_ascii_lowercase(), params)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

async fn bounded(
    what: &str,
    f: impl std::future::Future<Output = anyhow::Result<crate::https::Answer>>,
) -> anyhow::Result<crate::https::Answer> {
    tokio::time::timeout(std::time::Duration::from_secs(20), f)
        .await
        .map_err(|_| anyhow!("{what} did not answer within 20s"))?
}

/// The `Authorization` header answering `challenge` for a pull of `repo`: Basic with the
/// credentials, or a Bearer token from the challenge's realm (anonymous when there are none).
async fn authorization(
    challenge: &str,
    repo: &str,
    creds: Option<&Credentials>,
) -> anyhow::Result<Option<String>> {
    let (scheme, params) = parse_challenge(challenge);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match scheme.as_str() {
        "basic" => Ok(creds.map(Credentials::basic)),
        "bearer" => {
            let realm = param("realm")
                .ok_or_else(|| anyhow!("the registry's Bearer challenge names no realm"))?;
            let scope = param("scope")
                .map(str::to_string)
                .unwrap_or_else(|| format!("repository:{repo}:pull"));
            let mut url = format!(
                "{realm}{}scope={}",
                if realm.contains('?') { '&' } else { '?' },
                percent_encode(&scope)
            );
            if let Some(service) = param("service") {
                url.push_str(&format!("&service={}", percent_encode(service)));
            }
            let basic = creds.map(Credentials::basic);
            let headers: Vec<(&str, &str)> = basic
                .iter()
                .map(|b| ("Authorization", b.as_str()))
                .collect();
            let a = bounded(
                "the registry's token service",
                crate::https::request("GET", &url, &headers),
            )
            .await?;
            if a.status != 200 {
                return Err(anyhow!(
                    "the registry's token service ({realm}) answered HTTP {}{}",
                    a.status,
                    if creds.is_none() {
                        " (no credentials for it in the auth files: log in with `docker login` or `podman login`)"
                    } else {
                        " (check the credentials of your `docker login` / `podman login`)"
                    }
                ));
            }
            let v: serde_json::Value = serde_json::from_str(&a.body)
                .context("the registry's token service answered with something else than JSON")?;
            let token = v["token"]
                .as_str()
                .or_else(|| v["access_token"].as_str())
                .ok_or_else(|| anyhow!("the registry's token service gave no token"))?;
            Ok(Some(format!("Bearer {token}")))
        }
        _ => Ok(None),
    }
}

/// The digest of `image` in its registry, if it has it (a HEAD on the manifest, authenticated
/// as the registry asks). None when the registry has no such tag, or will not tell without
/// credentials daft does not have (then the image is built, and the builder's push says why).
pub async fn remote_digest(image: &str) -> anyhow::Result<Option<String>> {
    let (host, repo, tag) = split_reference(image)?;
    let url = format!("{}/v2/{repo}/manifests/{tag}", registry_base(&host));
    let what = format!("the registry {host}");
    let mut a = bounded(
        &what,
        crate::https::request("HEAD", &url, &[("Accept", MANIFEST_TYPES)]),
    )
    .await?;
    if a.status == 401 {
        let challenge = a.header("www-authenticate").unwrap_or_default().to_string();
        // (Auth files read and helpers run off the async runtime.)
        let creds = {
            let (h, r) = (host.clone(), repo.clone());
            tokio::task::spawn_blocking(move || credentials(&h, &r)).await?
        };
        match authorization(&challenge, &repo, creds.as_ref()).await? {
            Some(auth) => {
                a = bounded(
                    &what,
                    crate::https::request(
                        "HEAD",
                        &url,
                        &[("Accept", MANIFEST_TYPES), ("Authorization", &auth)],
                    ),
                )
                .await?;
            }
            None => {
                crate::warning!(
                    "daft: the registry {host} wants a login to say whether it has {repo}:{tag}, and the auth files have none for it; building"
                );
                return Ok(None);
            }
        }
    }
    match a.status {
        200 => Ok(a.header("docker-content-digest").map(str::to_string)),
        404 => Ok(None),
        401 | 403 => {
            crate::warning!(
                "daft: the registry {host} refused the credentials of the auth files (HTTP {}) for {repo}; building (the push will say more)",
                a.status
            );
            Ok(None)
        }
        s => Err(anyhow!("the registry {host} answered HTTP {s} for {url}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn the_most_specific_auth_entry_wins_and_docker_hub_keys_are_normalized() {
        let j = json!({ "auths": {
            "ghcr.io": { "auth": b64("org:general") },
            "ghcr.io/team": { "auth": b64("team:specific") },
            "https://index.docker.io/v1/": { "auth": b64("hub:pw:with:colons") },
            "127.0.0.1:5000": { "username": "u", "password": "p" },
        }});
        assert_eq!(
            credentials_in(&j, "ghcr.io", "team/app").unwrap().user,
            "team"
        );
        assert_eq!(
            credentials_in(&j, "ghcr.io", "teammate/app").unwrap().user,
            "org"
        );
        let hub = credentials_in(&j, "docker.io", "library/python").unwrap();
        assert_eq!(
            (hub.user.as_str(), hub.secret.as_str()),
            ("hub", "pw:with:colons")
        );
        assert_eq!(
            credentials_in(&j, "127.0.0.1:5000", "x").unwrap().secret,
            "p"
        );
        assert!(credentials_in(&j, "quay.io", "x").is_none());
        // The secret never shows in debug output.
        assert!(!format!("{hub:?}").contains("pw"));
    }

    #[test]
    fn challenges_are_parsed_with_quoted_commas() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.example.com/token".into()),
                ("service".into(), "registry.example.com".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p[0].1.as_str()), ("basic", "Registry Realm"));
    }

    #[test]
    fn a_credential_helper_is_asked_for_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-daft-test");
        std::fs::write(
            &helper,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\n[ \"$host\" = registry.example.com ] || exit 1\necho '{\"Username\":\"helped\",\"Secret\":\"s3\"}'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // (The helper is found on PATH: set for this process only while the test runs.)
        std::env::set_var("PATH", &path);
        let j = json!({ "credHelpers": { "registry.example.com": "daft-test" } });
        let c = credentials_in(&j, "registry.example.com", "team/app").unwrap();
        assert_eq!((c.user.as_str(), c.secret.as_str()), ("helped", "s3"));
        assert!(credentials_in(&j, "other.example.com", "team/app").is_none());
    }
}
