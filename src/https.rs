//! One small HTTPS GET (rustls on ring, the system's root certificates), for the caller's public
//! address. Not a general client: HTTP/1.0, the whole body, 64 KiB at most.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: status, headers (names lowercased), body (64 KiB at most).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// GET `url` (https only) and return the body of a 200 answer.
pub async fn get(url: &str) -> anyhow::Result<String> {
    if !url.starts_with("https://") {
        bail!("{url}: only https:// addresses are fetched");
    }
    let a = request("GET", url, &[]).await?;
    if a.status != 200 {
        bail!("{url} answered HTTP {}", a.status);
    }
    Ok(a.body)
}

/// One HTTP/1.0 request to an `https://` or `http://` address (plain HTTP only for loopback
/// addresses, as local registries serve it); any status is an answer.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        bail!("{url}: not an http(s):// address");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().context("bad port")?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    if !tls && !is_loopback(host) {
        bail!("{url}: plain HTTP is only used for this machine's own addresses");
    }
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: daft\r\n{extra}Connection: close\r\n\r\n"
    );
    tracing::debug!(target: "daft::https", %url, method, "HTTP request");
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let mut buf = Vec::new();
    if tls {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            bail!("no trusted root certificates found on this machine");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| anyhow!("{host} is not a valid server name"))?;
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {host} failed"))?;
        s.write_all(req.as_bytes()).await?;
        match (&mut s).take(64 * 1024).read_to_end(&mut buf).await {
            Ok(_) => {}
            // Many servers close without TLS's close_notify; the length check below catches a
            // cut-short answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
            Err(e) => return Err(e.into()),
        }
    } else {
        let mut s = tcp;
        s.write_all(req.as_bytes()).await?;
        (&mut s).take(64 * 1024).read_to_end(&mut buf).await?;
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{url} sent no HTTP answer"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{url} sent no HTTP status"))?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let a = Answer {
        status,
        headers,
        body: body.to_string(),
    };
    if method != "HEAD" {
        if let Some(n) = a
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            if a.body.len() != n {
                bail!("{url} answered {} of {n} bytes", a.body.len());
            }
        }
    }
    Ok(a)
}

/// A loopback host name or address.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
