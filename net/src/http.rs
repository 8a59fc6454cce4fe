//! One HTTP GET, with every limit a fetcher of untrusted URLs needs.
//!
//! [`Client`] wraps a `reqwest` client so that:
//! - every host name is resolved by [`Resolver`], which refuses addresses the
//!   [`AddressPolicy`] forbids (after resolution, so a public name pointing at
//!   127.0.0.1 is refused too) and caches answers; URLs whose host is an IP
//!   literal are checked before connecting;
//! - only `http` and `https` are fetched, no proxy from the environment is
//!   used (it would bypass the address check), and redirects are not followed:
//!   the caller sees each `3xx` and decides (robots rules and politeness apply
//!   to the target too);
//! - a request has a connect timeout and a total timeout that covers the body,
//!   so a server that drips one byte a second or never ends its body is cut
//!   off; the body is read in chunks and abandoned past a size limit (after
//!   decoding, so a compression bomb is cut off too): the client undoes the
//!   `gzip` and `br` it asks for, [`crate::coding`] any other coding a
//!   server sends anyway (`deflate`, `zstd`, stacked); an unknown or corrupt
//!   one fails as `undecodable_body`;
//! - the caller can refuse a response from its status and headers alone
//!   (a wrong content type, an `X-Robots-Tag`) before any body is read;
//! - every failure is a [`Failure`] with a stable counter name.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use url::Url;

use crate::addr::{AddressPolicy, Refusal};

/// Why a fetch failed. [`Failure::key`] names it in counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connect or total timeout passed.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// The connection broke before a response came (reset, closed).
    Network,
    /// The host resolved only to addresses the policy refuses.
    RefusedAddress(Refusal),
    /// A `4xx` status.
    Http4xx(u16),
    /// A `5xx` status.
    Http5xx(u16),
    /// The body is larger than the limit.
    TooLarge,
    /// The caller refused the response from its headers (content type).
    WrongType,
    /// The body ended early or could not be decoded (truncated, reset,
    /// bad chunking or compression).
    Truncated,
    /// Not an http(s) URL with a host.
    BadUrl,
    /// The body's `Content-Encoding` could not be undone: an unknown
    /// coding or corrupt data ([`crate::coding::Undecodable::key`]).
    UndecodableBody(String),
}

impl Failure {
    /// The counter name: `timeout`, `dns`, `connect`, `network`,
    /// `refused_address`, `http_4xx`, `http_5xx`, `too_large`, `wrong_type`,
    /// `truncated`, `bad_url`, `undecodable_body`.
    pub fn key(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Dns => "dns",
            Failure::Connect => "connect",
            Failure::Network => "network",
            Failure::RefusedAddress(_) => "refused_address",
            Failure::Http4xx(_) => "http_4xx",
            Failure::Http5xx(_) => "http_5xx",
            Failure::TooLarge => "too_large",
            Failure::WrongType => "wrong_type",
            Failure::Truncated => "truncated",
            Failure::BadUrl => "bad_url",
            Failure::UndecodableBody(_) => "undecodable_body",
        }
    }

    /// The failure for an error status, `None` for others.
    pub fn from_status(status: u16) -> Option<Failure> {
        match status {
            400..=499 => Some(Failure::Http4xx(status)),
            500..=599 => Some(Failure::Http5xx(status)),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::RefusedAddress(r) => write!(f, "refused address ({r})"),
            Failure::Http4xx(s) | Failure::Http5xx(s) => write!(f, "HTTP status {s}"),
            Failure::UndecodableBody(why) => write!(f, "undecodable body ({why})"),
            other => f.write_str(other.key()),
        }
    }
}

/// The error the resolver gives for a name that resolves only to refused addresses.
#[derive(Debug)]
struct RefusedError(Refusal, IpAddr);

impl fmt::Display for RefusedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is a {} (refused)", self.1, self.0)
    }
}

impl std::error::Error for RefusedError {}

/// The error the resolver gives for a name that does not resolve.
#[derive(Debug)]
struct DnsError(String);

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DNS: {}", self.0)
    }
}

impl std::error::Error for DnsError {}

type Answer = Result<Arc<Vec<IpAddr>>, String>;

/// The system resolver behind an [`AddressPolicy`], with a cache of answers
/// (for the life of the process: a crawl visits a host many times).
#[derive(Debug, Default)]
pub struct Resolver {
    policy: AddressPolicy,
    cache: Mutex<HashMap<String, Answer>>,
}

impl Resolver {
    /// A resolver applying `policy`.
    pub fn new(policy: AddressPolicy) -> Resolver {
        Resolver {
            policy,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn lookup(&self, name: &str) -> Answer {
        if let Some(hit) = self
            .cache
            .lock()
            .expect("no panics under this lock")
            .get(name)
        {
            return hit.clone();
        }
        let answer = match tokio::net::lookup_host((name, 0)).await {
            Ok(addrs) => Ok(Arc::new(addrs.map(|a| a.ip()).collect::<Vec<_>>())),
            Err(e) => Err(e.to_string()),
        };
        self.cache
            .lock()
            .expect("no panics under this lock")
            .insert(name.to_string(), answer.clone());
        answer
    }

    /// The allowed addresses of `name`; an error naming the refusal if every
    /// address is refused.
    async fn resolve_allowed(
        &self,
        name: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let ips = self.lookup(name).await.map_err(DnsError)?;
        let mut refused = None;
        let allowed: Vec<SocketAddr> = ips
            .iter()
            .filter(|ip| match self.policy.check(**ip) {
                Ok(()) => true,
                Err(r) => {
                    refused.get_or_insert(RefusedError(r, **ip));
                    false
                }
            })
            .map(|ip| SocketAddr::new(*ip, 0))
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some(r)) => Err(Box::new(r)),
            (true, None) => Err(Box::new(DnsError(format!("{name}: no addresses")))),
            _ => Ok(allowed),
        }
    }
}

/// reqwest's resolver hook, sharing one [`Resolver`].
struct Hook(Arc<Resolver>);

impl reqwest::dns::Resolve for Hook {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let addrs = resolver.resolve_allowed(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What a [`Client`] is built with.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Which addresses may be fetched.
    pub policy: AddressPolicy,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, body included.
    pub timeout: Duration,
}

/// A response's status and headers, before its body is read.
#[derive(Debug)]
pub struct Head<'a> {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: &'a HeaderMap,
}

impl Head<'_> {
    /// A header's value as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response: the body is read only for `2xx` statuses.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (decoded from gzip or brotli); empty unless the status is `2xx`.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The absolute target of a redirect (`3xx` with a `Location`), resolved
    /// against `url`.
    pub fn location(&self, url: &Url) -> Option<Url> {
        if !(300..400).contains(&self.status) {
            return None;
        }
        url.join(self.header("location")?.trim()).ok()
    }

    /// The delay a `429` or `503` asks for in `Retry-After` (seconds or an
    /// HTTP date), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        let v = self.header("retry-after")?.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let when = httpdate::parse_http_date(v).ok()?;
        Some(when.duration_since(SystemTime::now()).unwrap_or_default())
    }
}

/// An HTTP client for untrusted URLs (see the module documentation).
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    policy: AddressPolicy,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// Builds the client.
    ///
    /// # Errors
    /// A message if the TLS backend cannot be set up.
    pub fn new(opts: &ClientOptions) -> Result<Client, String> {
        let inner = reqwest::Client::builder()
            .user_agent(&opts.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(opts.connect_timeout)
            .dns_resolver(Arc::new(Hook(Arc::new(Resolver::new(opts.policy)))))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            inner,
            policy: opts.policy,
            timeout: opts.timeout,
        })
    }

    /// GETs `url`. `accept` sees the status and headers first; an error from
    /// it ends the request without reading the body. Error statuses are
    /// returned as responses, not failures, so that the caller can read
    /// their headers (`Retry-After`).
    ///
    /// # Errors
    /// The [`Failure`].
    pub async fn get<F>(&self, url: &Url, max_bytes: u64, accept: F) -> Result<Response, Failure>
    where
        F: FnOnce(&Head<'_>) -> Result<(), Failure>,
    {
        self.check_url(url)?;
        match tokio::time::timeout(self.timeout, self.get_inner(url, max_bytes, accept)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn get_inner<F>(&self, url: &Url, max_bytes: u64, accept: F) -> Result<Response, Failure>
    where
        F: FnOnce(&Head<'_>) -> Result<(), Failure>,
    {
        let mut resp = self
            .inner
            .get(url.clone())
            .send()
            .await
            .map_err(|e| classify(&e, false))?;
        let status = resp.status().as_u16();
        accept(&Head {
            status,
            headers: resp.headers(),
        })?;
        let mut body = Vec::new();
        if (200..300).contains(&status) {
            if resp.content_length().is_some_and(|n| n > max_bytes) {
                return Err(Failure::TooLarge);
            }
            while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, true))? {
                if (body.len() + chunk.len()) as u64 > max_bytes {
                    return Err(Failure::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            // The client undoes the gzip and br it asks for; a server may
            // send another coding regardless.
            if let Some(codings) = resp
                .headers()
                .get(reqwest::header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .filter(|c| !crate::coding::is_identity(c))
            {
                body = crate::coding::decode(codings, &body, max_bytes.saturating_add(1))
                    .map_err(|e| Failure::UndecodableBody(e.key()))?;
                if body.len() as u64 > max_bytes {
                    return Err(Failure::TooLarge);
                }
            }
        }
        Ok(Response {
            status,
            headers: std::mem::take(resp.headers_mut()),
            body,
        })
    }
}

impl Client {
    /// Streams the body of `url` for blocking readers (WebDataset shards
    /// over http(s)): a thread runs the request and hands the body over in
    /// chunks through a small bounded queue, so memory stays flat for shards
    /// of any size. The connect timeout applies; the total timeout does not
    /// (a shard may take long to read), but a stall of the total timeout
    /// between two chunks ends the stream with an error.
    ///
    /// # Errors
    /// [`std::io::Error`] naming the [`Failure`] when the request fails or the
    /// status is not `2xx`; later failures come out of `read`.
    pub fn open_stream(&self, url: &str) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let parsed = Url::parse(url).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{url}: {e}"))
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<bytes::Bytes>>(8);
        let client = self.clone();
        let url_owned = url.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let err = |m: String| std::io::Error::other(format!("{url_owned}: {m}"));
                if let Err(f) = client.check_url(&parsed) {
                    let _ = ready_tx.send(Err(err(f.to_string())));
                    return;
                }
                let resp = match client.inner.get(parsed.clone()).send().await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(err(classify(&e, false).to_string())));
                        return;
                    }
                };
                if !resp.status().is_success() {
                    let _ =
                        ready_tx.send(Err(err(format!("HTTP status {}", resp.status().as_u16()))));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                let mut resp = resp;
                loop {
                    match tokio::time::timeout(client.timeout, resp.chunk()).await {
                        Ok(Ok(Some(chunk))) => {
                            if tx.send(Ok(chunk)).is_err() {
                                return; // the reader went away
                            }
                        }
                        Ok(Ok(None)) => return,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(err(classify(&e, true).to_string())));
                            return;
                        }
                        Err(_) => {
                            let _ = tx.send(Err(err("stalled".into())));
                            return;
                        }
                    }
                }
            });
        });
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other(format!("{url}: the fetching thread ended")))??;
        Ok(Box::new(ChunkReader {
            rx,
            current: bytes::Bytes::new(),
        }))
    }

    /// The scheme and address checks of [`Client::get`].
    fn check_url(&self, url: &Url) -> Result<(), Failure> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::BadUrl);
        }
        match url.host() {
            None => Err(Failure::BadUrl),
            Some(url::Host::Ipv4(ip)) => self
                .policy
                .check(IpAddr::V4(ip))
                .map_err(Failure::RefusedAddress),
            Some(url::Host::Ipv6(ip)) => self
                .policy
                .check(IpAddr::V6(ip))
                .map_err(Failure::RefusedAddress),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }
}

/// A blocking reader over chunks sent by a fetching thread.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => self.current = chunk,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the body ended
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// The [`Failure`] of a reqwest error; `in_body` if it came while reading the body.
fn classify(e: &reqwest::Error, in_body: bool) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<RefusedError>() {
            return Failure::RefusedAddress(r.0);
        }
        if s.downcast_ref::<DnsError>().is_some() {
            return Failure::Dns;
        }
        source = s.source();
    }
    if e.is_timeout() {
        Failure::Timeout
    } else if in_body || e.is_body() || e.is_decode() {
        Failure::Truncated
    } else if e.is_connect() {
        Failure::Connect
    } else {
        Failure::Network
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_keys_are_stable() {
        assert_eq!(Failure::from_status(404).unwrap().key(), "http_4xx");
        assert_eq!(Failure::from_status(503).unwrap().key(), "http_5xx");
        assert_eq!(Failure::from_status(302), None);
        assert_eq!(
            Failure::RefusedAddress(Refusal::Loopback).to_string(),
            "refused address (loopback address)"
        );
    }

    #[tokio::test]
    async fn literal_and_resolved_private_addresses_are_refused() {
        let client = Client::new(&ClientOptions {
            user_agent: "test".into(),
            policy: AddressPolicy::default(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]:9/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:9/",
        ] {
            let got = client
                .get(&Url::parse(url).unwrap(), 1000, |_| Ok(()))
                .await
                .unwrap_err();
            assert!(matches!(got, Failure::RefusedAddress(_)), "{url}: {got:?}");
        }
        let got = client
            .get(&Url::parse("ftp://example.org/").unwrap(), 1000, |_| Ok(()))
            .await
            .unwrap_err();
        assert_eq!(got, Failure::BadUrl);
    }
}
