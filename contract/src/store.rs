//! Datasets and input files on object storage: the one storage layer.
//!
//! Every place that takes a dataset or an input file also takes a URL:
//! `s3://bucket/prefix` (also `gs://`, `az://`; `http(s)://` read-only).
//! Plain paths and `file://` URLs are the local file system, as before.
//! The stores are the `object_store` crate's (Apache Arrow project).
//!
//! # How a stage runs on a store
//! Stage code reads and writes local files. A dataset opened from a URL
//! ([`crate::Dataset::open`]) gets a **mirror**: a local working directory,
//! private to the process (under `$WIT_WORK_DIR`, else the system's temporary
//! directory, removed by [`release_mirrors`]), and the contract functions that
//! stages already call keep it in step with the store:
//! - reading a stage's manifest ([`crate::Manifest::read`]) downloads that
//!   stage's metadata, and each input part comes down when it is first read
//!   ([`crate::pq::read_file`], [`local`]), so a task fetches only its share;
//! - preparing a stage ([`crate::run_stage`], [`crate::OpenStage::open`],
//!   [`crate::check_params`]) downloads the stage's own metadata (sidecars,
//!   the manifest and the `_` directories: plans, journals, global files),
//!   and takes the listing of its data objects to judge which parts are complete;
//! - committing a part uploads its data objects under their final names, then
//!   its sidecar, the done marker; large files go up as multipart uploads, in
//!   bounded memory, completed only once every byte is sent (an upload cut
//!   short is aborted, or, if the process is killed, never completed, so no
//!   reader sees part of an object);
//! - the manifest is created with a conditional put (`If-None-Match: *`), so
//!   two processes finishing together cannot both write it;
//! - files written with [`crate::manifest::write_atomic`] or
//!   [`crate::pq::write_file_atomic`] inside a mirror are uploaded at once.
//!
//! # Credentials
//! From the environment, as the AWS tools read them: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
//! `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL` (an S3-compatible server),
//! `AWS_ALLOW_HTTP=true` (plain HTTP to it); `GOOGLE_*` and `AZURE_*` likewise
//! for the other clouds. They are never printed and never written into a
//! manifest: a URL that carries a user name or password is refused.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    WriteMultipart,
};

use crate::error::{Error, IoContext, Result};

/// Files at least this large are uploaded in parts of this size (S3 allows
/// 5 MiB to 5 GiB a part and 10,000 parts, so up to 78 GiB per object).
pub const MULTIPART_CHUNK: usize = 8 << 20;

/// Parts of one multipart upload in flight at once (memory: this many chunks).
const UPLOAD_CONCURRENCY: usize = 4;

/// Times a download that breaks mid-stream is resumed by a ranged read.
const RESUMES: u32 = 5;

/// Whether `s` is a URL (`scheme://...`) rather than a local path.
pub fn is_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        }
        None => false,
    }
}

/// Where a dataset or an input lies.
#[derive(Debug, Clone)]
pub enum Location {
    /// A local path (also what a `file://` URL names).
    Local(PathBuf),
    /// An object store.
    Remote(Arc<Remote>),
}

impl Location {
    /// Parses a path or URL.
    ///
    /// # Errors
    /// [`Error::BadInput`] naming the URL if it is malformed, has an unknown
    /// scheme or carries credentials, or the store cannot be configured.
    pub fn parse(s: &str) -> Result<Location> {
        if !is_url(s) {
            return Ok(Location::Local(PathBuf::from(s)));
        }
        if s.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("file://"))
        {
            let url = url::Url::parse(s)
                .map_err(|e| Error::bad_input(s, format!("malformed URL: {e}")))?;
            let path = url.to_file_path().map_err(|()| {
                Error::bad_input(s, "a file:// URL must name an absolute local path")
            })?;
            return Ok(Location::Local(path));
        }
        Ok(Location::Remote(Arc::new(Remote::open(s)?)))
    }
}

/// Which kind of store a [`Remote`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Amazon S3 or an S3-compatible server (`s3://`).
    S3,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// Azure Blob Storage (`az://`).
    Azure,
    /// Plain HTTP(S), read-only.
    Http,
}

/// A store URL taken apart: `s3://BUCKET/KEY` (and `gs://`, `az://`) as
/// S3 users write them, the key raw (every character S3 allows, `#`, `?`,
/// spaces and `%` included, is part of it: the AWS CLI reads `s3://` URIs
/// the same way); `http(s)://` by the WHATWG URL rules, its path
/// percent-encoded.
struct StoreUrl {
    /// The scheme, lower case.
    scheme: String,
    /// The bucket (or account, container) or the HTTP host.
    host: String,
    /// The key (prefix) under it; percent-encoded for HTTP.
    key: String,
    /// `scheme://host[:port]`, for HTTP.
    origin: String,
}

impl StoreUrl {
    fn split(url: &str) -> Result<StoreUrl> {
        let refuse_credentials = |shown: String| {
            // Said without echoing the secret.
            Error::bad_input(
                shown,
                "credentials in a URL are refused (they would end up in logs and manifests): \
                 give them in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the cloud's own variables",
            )
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::bad_input(url, "malformed URL: no scheme://"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "http" || scheme == "https" {
            let parsed = url::Url::parse(url)
                .map_err(|e| Error::bad_input(url, format!("malformed URL: {e}")))?;
            let host = parsed.host_str().unwrap_or("").to_string();
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(refuse_credentials(format!("{scheme}://{host}")));
            }
            return Ok(StoreUrl {
                scheme,
                host,
                key: parsed.path().to_string(),
                origin: parsed.origin().ascii_serialization(),
            });
        }
        let (host, key) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some((_, after)) = host.rsplit_once('@') {
            return Err(refuse_credentials(format!("{scheme}://{after}")));
        }
        Ok(StoreUrl {
            scheme,
            host: host.to_string(),
            key: key.to_string(),
            origin: String::new(),
        })
    }
}

/// A prefix in an object store: `s3://bucket/prefix`.
pub struct Remote {
    url: String,
    scheme: Scheme,
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

/// `builder` with every option whose key the builder knows (each store's
/// builder has its own key type, parsed from the same strings).
macro_rules! with_options {
    ($builder:expr, $options:expr) => {{
        let mut b = $builder;
        for (k, v) in $options {
            if let Ok(key) = k.to_ascii_lowercase().parse() {
                b = b.with_config(key, *v);
            }
        }
        b
    }};
}

/// The runtime on which every store call of the process runs; stage code is
/// synchronous and calls in from its worker threads.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wit-store")
            .enable_all()
            .build()
            .expect("a Tokio runtime starts")
    })
}

/// Runs a store call to completion. Called from inside another Tokio runtime
/// (the crawler commits parts from its own), it runs on a scoped thread,
/// since one runtime cannot block inside another.
fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| runtime().block_on(f))
                .join()
                .expect("a store call does not panic")
        })
    } else {
        runtime().block_on(f)
    }
}

impl Remote {
    /// Opens the store and prefix a URL names, with credentials and endpoint
    /// from the environment (module docs).
    ///
    /// # Errors
    /// [`Error::BadInput`] naming the URL for a malformed URL, an unknown
    /// scheme, credentials inside the URL, or a configuration the store refuses.
    pub fn open(url: &str) -> Result<Remote> {
        Remote::open_with(url, &[])
    }

    /// [`Remote::open`] with store options over those of the environment:
    /// object_store's configuration keys, such as `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_endpoint`, `aws_allow_http`, `aws_region`.
    ///
    /// # Errors
    /// As [`Remote::open`].
    pub fn open_with(url: &str, options: &[(&str, &str)]) -> Result<Remote> {
        // The process's options (the config file's `[store]` table), then the call's.
        let defaults = default_options()
            .read()
            .expect("no panics hold this lock")
            .clone();
        let mut all: Vec<(&str, &str)> = defaults
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.extend_from_slice(options);
        let options = all.as_slice();
        let split = StoreUrl::split(url)?;
        let scheme = match split.scheme.as_str() {
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "azure" | "abfs" | "abfss" => Scheme::Azure,
            "http" | "https" => Scheme::Http,
            other => {
                return Err(Error::bad_input(
                    url,
                    format!(
                        "unknown URL scheme `{other}://`: expected a path, file://, s3://, gs://, az://, http:// or https://"
                    ),
                ));
            }
        };
        let host = split.host.as_str();
        if host.is_empty() {
            return Err(Error::bad_input(url, "the URL names no bucket or host"));
        }
        let bad = |e: object_store::Error| {
            Error::bad_input(url, format!("cannot use this store: {}", short(&e)))
        };
        // Rustls needs one process-wide crypto provider; ring (no C build).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = format!("{}://{host}", split.scheme);
        let retry = retry_config();
        let store: Arc<dyn ObjectStore> = match scheme {
            Scheme::S3 => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(&base)
                    .with_retry(retry);
                // The AWS CLI's variable for the region; object_store reads AWS_DEFAULT_REGION.
                if let Ok(region) = std::env::var("AWS_REGION") {
                    b = b.with_region(region);
                }
                Arc::new(with_options!(b, options).build().map_err(bad)?)
            }
            Scheme::Gcs => {
                let b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(&base)
                    .with_retry(retry);
                Arc::new(with_options!(b, options).build().map_err(bad)?)
            }
            Scheme::Azure => {
                let b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(&base)
                    .with_retry(retry);
                Arc::new(with_options!(b, options).build().map_err(bad)?)
            }
            Scheme::Http => {
                let origin = split.origin.clone();
                Arc::new(
                    object_store::http::HttpBuilder::new()
                        .with_url(origin)
                        .with_retry(retry)
                        .with_client_options(
                            object_store::ClientOptions::new().with_allow_http(true),
                        )
                        .build()
                        .map_err(bad)?,
                )
            }
        };
        let prefix = match scheme {
            // An HTTP path is percent-encoded; a key is taken as written.
            Scheme::Http => ObjPath::from_url_path(&split.key),
            _ => ObjPath::parse(&split.key),
        }
        .map_err(|e| Error::bad_input(url, format!("malformed object key: {e}")))?;
        Ok(Remote {
            url: url.trim_end_matches('/').to_string(),
            scheme,
            store,
            prefix,
        })
    }

    /// The URL as given (without a trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kind of store.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The URL of `rel` under this prefix, for messages.
    pub fn child_url(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{rel}", self.url)
        }
    }

    fn path(&self, rel: &str) -> ObjPath {
        let mut p = self.prefix.clone();
        for seg in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(seg);
        }
        p
    }

    fn err(&self, rel: &str, e: object_store::Error) -> Error {
        let at = PathBuf::from(self.child_url(rel));
        match &e {
            object_store::Error::NotFound { .. } => {
                Error::bad_input(at, format!("no such object (key `{}`)", self.path(rel)))
            }
            _ => {
                let msg = short(&e);
                if is_user_error(&msg) {
                    Error::bad_input(at, msg)
                } else {
                    Error::io(at, std::io::Error::other(msg))
                }
            }
        }
    }

    fn refuse_write(&self, rel: &str) -> Result<()> {
        if self.scheme == Scheme::Http {
            return Err(Error::bad_input(
                self.child_url(rel),
                "http(s):// locations are read-only: write datasets to a path or to s3://, gs://, az://",
            ));
        }
        Ok(())
    }

    /// The object `rel`, or `None` if it does not exist.
    ///
    /// # Errors
    /// [`Error::BadInput`] for a missing bucket, refused credentials or an
    /// unreachable endpoint (the message says which); [`Error::Io`] otherwise.
    pub fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        let path = self.path(rel);
        block_on(async {
            match self.store.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.err(rel, e))
    }

    /// Bytes `range` of object `rel`.
    ///
    /// # Errors
    /// As [`Remote::get`]; a missing object is [`Error::BadInput`].
    pub fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(rel);
        block_on(self.store.get_range(&path, range)).map_err(|e| self.err(rel, e))
    }

    /// The size in bytes of object `rel`, or `None` if it does not exist.
    ///
    /// # Errors
    /// As [`Remote::get`].
    pub fn size(&self, rel: &str) -> Result<Option<u64>> {
        let path = self.path(rel);
        match block_on(self.store.head(&path)) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Writes object `rel` in one request (it appears whole or not at all).
    ///
    /// # Errors
    /// As [`Remote::get`]; [`Error::BadInput`] on a read-only store.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.refuse_write(rel)?;
        let path = self.path(rel);
        block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.err(rel, e))
    }

    /// Creates object `rel` unless it exists (`If-None-Match: *`); says
    /// whether this call created it.
    ///
    /// # Errors
    /// As [`Remote::put`].
    pub fn create(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        self.refuse_write(rel)?;
        let path = self.path(rel);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match block_on(self.store.put_opts(&path, PutPayload::from(bytes), opts)) {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Uploads the local file `local` as object `rel`: one request below
    /// [`MULTIPART_CHUNK`], otherwise a multipart upload read from the file a
    /// chunk at a time (memory: a few chunks), aborted if anything fails.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file or the object.
    pub fn upload_file(&self, local: &Path, rel: &str) -> Result<()> {
        self.refuse_write(rel)?;
        let len = std::fs::metadata(local).at(local)?.len();
        if len < MULTIPART_CHUNK as u64 {
            return self.put(rel, std::fs::read(local).at(local)?);
        }
        let path = self.path(rel);
        let mut file = std::fs::File::open(local).at(local)?;
        block_on(async {
            let upload = self
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| self.err(rel, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
            let mut buf = vec![0u8; MULTIPART_CHUNK];
            loop {
                let n = match read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(Error::io(local, e));
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = writer.wait_for_capacity(UPLOAD_CONCURRENCY).await {
                    return Err(self.err(rel, e));
                }
                writer.write(&buf[..n]);
            }
            writer
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| self.err(rel, e))
        })
    }

    /// A reader of object `rel` that streams it and, where the connection
    /// breaks mid-object, resumes with a ranged read from the byte it reached
    /// (up to a few times).
    ///
    /// # Errors
    /// As [`Remote::get`] for the first request.
    pub fn reader(self: &Arc<Self>, rel: &str) -> Result<RemoteReader> {
        let mut r = RemoteReader {
            remote: Arc::clone(self),
            rel: rel.to_string(),
            pos: 0,
            size: None,
            chunk: Bytes::new(),
            stream: None,
            resumes: 0,
            opened: false,
            discard: 0,
        };
        r.open_stream()?;
        Ok(r)
    }

    /// Downloads object `rel` to the local file `local` (through a temporary
    /// name, renamed when complete), streaming with ranged resumes.
    ///
    /// # Errors
    /// As [`Remote::reader`]; [`Error::Io`] naming the local file.
    pub fn download_file(self: &Arc<Self>, rel: &str, local: &Path) -> Result<()> {
        if let Some(dir) = local.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = local.with_file_name(format!(".tmp-dl-{}-{name}", crate::runner::nonce()));
        let result = (|| {
            let mut reader = self.reader(rel)?;
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).at(&tmp)?);
            std::io::copy(&mut reader, &mut out).map_err(|e| Error::io(self.child_url(rel), e))?;
            out.flush().at(&tmp)?;
            std::fs::rename(&tmp, local).at(local)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Every object under `rel` (recursively), as names relative to `rel`
    /// with their sizes, sorted.
    ///
    /// # Errors
    /// As [`Remote::get`].
    pub fn list(&self, rel: &str) -> Result<BTreeMap<String, u64>> {
        let path = self.path(rel);
        let base = path.as_ref().to_string();
        let metas: Vec<object_store::ObjectMeta> =
            block_on(self.store.list(Some(&path)).try_collect()).map_err(|e| self.err(rel, e))?;
        let mut out = BTreeMap::new();
        for m in metas {
            let full = m.location.as_ref();
            let name = if base.is_empty() {
                full
            } else {
                full.strip_prefix(&base)
                    .map_or(full, |s| s.trim_start_matches('/'))
            };
            out.insert(name.to_string(), m.size);
        }
        Ok(out)
    }

    /// Deletes every object under `rel`.
    ///
    /// # Errors
    /// As [`Remote::put`].
    pub fn delete_all(&self, rel: &str) -> Result<()> {
        self.refuse_write(rel)?;
        let names = self.list(rel)?;
        let paths: Vec<ObjPath> = names
            .keys()
            .map(|n| self.path(&format!("{rel}/{n}")))
            .collect();
        block_on(async {
            let mut stream = self
                .store
                .delete_stream(futures_util::stream::iter(paths.into_iter().map(Ok)).boxed());
            while let Some(r) = stream.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(rel, e)),
                }
            }
            Ok(())
        })
    }
}

fn default_options() -> &'static RwLock<Vec<(String, String)>> {
    static O: OnceLock<RwLock<Vec<(String, String)>>> = OnceLock::new();
    O.get_or_init(|| RwLock::new(Vec::new()))
}

/// Sets options every store of the process is opened with, over the
/// environment's: object_store's configuration keys (`aws_endpoint`,
/// `aws_region`, `aws_allow_http`, `aws_access_key_id`, `google_*`,
/// `azure_*`). The binary sets them from its config file's `[store]` table.
pub fn set_options(options: Vec<(String, String)>) {
    *default_options().write().expect("no panics hold this lock") = options;
}

/// Whether `key` is a configuration key of one of the stores.
pub fn known_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok()
        || k.parse::<object_store::gcp::GoogleConfigKey>().is_ok()
        || k.parse::<object_store::azure::AzureConfigKey>().is_ok()
}

/// Retries of one request: transient failures (5xx, timeouts, resets) are
/// retried with exponential backoff, up to 4 times or 60 s; a refused
/// connection or a 4xx answer is reported at once.
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(10),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(60),
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The innermost message of a store error, on one line: S3's error code and
/// message (`SignatureDoesNotMatch`, `NoSuchBucket`) or the connection failure,
/// never the request's headers.
fn short(e: &object_store::Error) -> String {
    let mut msgs: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        msgs.push(err.to_string());
        cur = err.source();
    }
    let text = msgs.join(": ");
    let code = |tag: &str| {
        let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = text[start..].find('<')? + start;
        Some(text[start..end].to_string())
    };
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(c) = code("Code") {
        let hint = match c.as_str() {
            "SignatureDoesNotMatch" => ": the secret key is wrong (check AWS_SECRET_ACCESS_KEY)",
            "InvalidAccessKeyId" => ": the access key is unknown (check AWS_ACCESS_KEY_ID)",
            "NoSuchBucket" => ": the bucket does not exist",
            "AccessDenied" => ": these credentials may not do this",
            _ => "",
        };
        return format!("{c}{hint}");
    }
    let last = msgs.last().map(String::as_str).unwrap_or("");
    if text.contains("Connection refused")
        || text.contains("dns error")
        || text.contains("error sending request")
        || text.contains("connect")
    {
        return format!("the endpoint cannot be reached ({})", one_line(last));
    }
    one_line(msgs.first().map(String::as_str).unwrap_or(""))
}

/// Whether a store error is about what the user gave (exit code 2).
fn is_user_error(msg: &str) -> bool {
    [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "NoSuchBucket",
        "AccessDenied",
        "cannot be reached",
    ]
    .iter()
    .any(|k| msg.contains(k))
}

/// A streaming reader of one object (see [`Remote::reader`]).
pub struct RemoteReader {
    remote: Arc<Remote>,
    rel: String,
    pos: u64,
    size: Option<u64>,
    chunk: Bytes,
    stream: Option<futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>>,
    resumes: u32,
    /// Whether `stream` starts at `pos` (false after a seek: the next read
    /// opens a ranged stream there).
    opened: bool,
    /// Bytes at the stream's start to drop (a server that ignores ranges).
    discard: u64,
}

impl RemoteReader {
    fn open_stream(&mut self) -> Result<()> {
        let path = self.remote.path(&self.rel);
        let opts = GetOptions {
            range: (self.pos > 0).then_some(GetRange::Offset(self.pos)),
            ..Default::default()
        };
        let store = Arc::clone(&self.remote.store);
        let (p2, s2) = (path.clone(), Arc::clone(&store));
        let result = match block_on(async move { store.get_opts(&path, opts).await }) {
            Ok(r) => r,
            // A server without ranges: read from the start and drop what
            // lies before the position.
            Err(object_store::Error::NotSupported { .. }) if self.pos > 0 => {
                let r = block_on(async move { s2.get_opts(&p2, GetOptions::default()).await })
                    .map_err(|e| self.remote.err(&self.rel, e))?;
                self.discard = self.pos;
                r
            }
            Err(e) => return Err(self.remote.err(&self.rel, e)),
        };
        if self.size.is_none() {
            self.size = Some(result.meta.size);
        }
        self.stream = Some(result.into_stream());
        self.opened = true;
        Ok(())
    }

    /// The object's size in bytes.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

impl std::io::Seek for RemoteReader {
    /// Moves the read position; the next read opens a ranged stream there
    /// (`Current(0)` only reports the position).
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::Current(0) => None,
            std::io::SeekFrom::Current(d) => Some(self.pos.saturating_add_signed(d)),
            std::io::SeekFrom::End(d) => Some(self.size.unwrap_or(0).saturating_add_signed(d)),
        };
        if let Some(p) = target
            && p != self.pos
        {
            self.pos = p;
            self.chunk = Bytes::new();
            self.stream = None;
            self.opened = false;
            self.discard = 0;
        }
        Ok(self.pos)
    }
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                buf[..n].copy_from_slice(&self.chunk[..n]);
                self.chunk = self.chunk.slice(n..);
                self.pos += n as u64;
                return Ok(n);
            }
            if !self.opened {
                if self.size.is_some_and(|s| self.pos >= s) {
                    return Ok(0);
                }
                self.open_stream()
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            let Some(stream) = self.stream.as_mut() else {
                return Ok(0);
            };
            match block_on(stream.next()) {
                Some(Ok(mut bytes)) => {
                    if self.discard > 0 {
                        let drop = (self.discard as usize).min(bytes.len());
                        self.discard -= drop as u64;
                        bytes = bytes.slice(drop..);
                    }
                    self.chunk = bytes;
                }
                None if self.size.is_none_or(|s| self.pos >= s) => {
                    self.stream = None;
                    return Ok(0);
                }
                next => {
                    // The stream broke (an error, or an end before the object's size).
                    let why = match next {
                        Some(Err(e)) => short(&e),
                        _ => "the connection closed early".into(),
                    };
                    if self.resumes >= RESUMES {
                        return Err(std::io::Error::other(format!(
                            "{}: broke at byte {} of {} ({why}) and could not be resumed",
                            self.remote.child_url(&self.rel),
                            self.pos,
                            self.size.unwrap_or(0)
                        )));
                    }
                    self.resumes += 1;
                    tracing::warn!(
                        "{}: stream broke at byte {} ({why}); resuming with a ranged read",
                        self.remote.child_url(&self.rel),
                        self.pos
                    );
                    self.open_stream()
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
            }
        }
    }
}

/// A dataset directory mirrored from a store, in a local working directory.
#[derive(Debug)]
pub struct Mirror {
    local: PathBuf,
    remote: Arc<Remote>,
    /// The remote listing of each stage directory, by directory name.
    listings: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

fn mirrors() -> &'static RwLock<Vec<Arc<Mirror>>> {
    static M: OnceLock<RwLock<Vec<Arc<Mirror>>>> = OnceLock::new();
    M.get_or_init(|| RwLock::new(Vec::new()))
}

/// Makes the local mirror of a remote dataset and registers it; returns its
/// directory. The directory is `$WIT_WORK_DIR/wit-PID-N/SCHEME/BUCKET/PREFIX`
/// (or under the system's temporary directory), so that file names in
/// messages still say which dataset they are about.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be made.
pub fn mirror(remote: Arc<Remote>) -> Result<PathBuf> {
    let base = std::env::var_os("WIT_WORK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tail: String = remote
        .url()
        .replace("://", "/")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let local = base
        .join(format!("wit-mirror-{}", crate::runner::nonce()))
        .join(tail);
    std::fs::create_dir_all(&local).at(&local)?;
    mirrors()
        .write()
        .expect("no panics hold this lock")
        .push(Arc::new(Mirror {
            local: local.clone(),
            remote,
            listings: Mutex::new(BTreeMap::new()),
        }));
    Ok(local)
}

/// The working directories of inputs fetched by [`fetch_input`].
fn inputs() -> &'static Mutex<Vec<PathBuf>> {
    static I: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    I.get_or_init(|| Mutex::new(Vec::new()))
}

/// Removes every mirror's working directory and every fetched input (called
/// once, at the end of a `wit` command; what was committed is on the store).
pub fn release_mirrors() {
    for dir in std::mem::take(&mut *inputs().lock().expect("no panics hold this lock")) {
        let _ = std::fs::remove_dir_all(dir);
    }
    let list = std::mem::take(&mut *mirrors().write().expect("no panics hold this lock"));
    for m in list {
        // The `wit-mirror-*` directory above the scheme/bucket/prefix tail.
        let mut top = m.local.as_path();
        while let Some(parent) = top.parent() {
            if top
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("wit-mirror-"))
            {
                break;
            }
            top = parent;
        }
        let _ = std::fs::remove_dir_all(top);
    }
}

/// The mirror holding `path` and `path`'s name relative to the mirror's root.
pub(crate) fn mirror_of(path: &Path) -> Option<(Arc<Mirror>, String)> {
    let list = mirrors().read().expect("no panics hold this lock");
    list.iter().find_map(|m| {
        let rel = path.strip_prefix(&m.local).ok()?;
        Some((Arc::clone(m), rel.to_string_lossy().replace('\\', "/")))
    })
}

/// Rewrites the mirror directories in `text` (an error message) as their URLs.
pub fn display(text: &str) -> String {
    let mut out = text.to_string();
    for m in mirrors().read().expect("no panics hold this lock").iter() {
        out = out.replace(&m.local.to_string_lossy().into_owned(), m.remote.url());
    }
    out
}

/// Whether a name inside a stage directory is metadata (`_manifest.json`, a
/// sidecar, the crawl's frontier, anything in a `_` directory but Parquet)
/// rather than a data file. Parquet files in `_` directories (query counts,
/// the buckets of the bucketed passes, the download plan) are data: fetched
/// on first read by the task that reads them, never with the metadata.
fn is_meta(name: &str) -> bool {
    name.starts_with('_') && !name.ends_with(".parquet")
}

impl Mirror {
    /// The store.
    pub fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    /// Downloads the objects under `rel_dir` that `want` selects and that are
    /// not already here with the same size; remembers the listing.
    fn pull(&self, rel_dir: &str, want: impl Fn(&str) -> bool) -> Result<()> {
        let listing = self.remote.list(rel_dir)?;
        for (name, size) in &listing {
            if !want(name) || name.split('/').any(|s| s.starts_with(".tmp")) {
                continue;
            }
            let local = self.local.join(rel_dir).join(name);
            if std::fs::metadata(&local).is_ok_and(|m| m.len() == *size) && !name.ends_with(".json")
            {
                continue;
            }
            self.remote
                .download_file(&format!("{rel_dir}/{name}"), &local)?;
        }
        self.listings
            .lock()
            .expect("no panics hold this lock")
            .insert(rel_dir.to_string(), listing);
        Ok(())
    }

    /// Whether the store held `name` in stage directory `rel_dir` at its last listing.
    fn listed(&self, rel_dir: &str, name: &str) -> bool {
        self.listings
            .lock()
            .expect("no panics hold this lock")
            .get(rel_dir)
            .is_some_and(|l| l.contains_key(name))
    }
}

/// Before a stage runs in `dir`: downloads its metadata from the store (a no-op
/// outside a mirror).
pub(crate) fn pull_stage_meta(dir: &Path) -> Result<()> {
    if let Some((m, rel)) = mirror_of(dir) {
        m.pull(&rel, is_meta)?;
    }
    Ok(())
}

/// Before a stage's output is read as input: downloads all of it (a no-op
/// outside a mirror).
pub(crate) fn pull_stage(dir: &Path) -> Result<()> {
    if let Some((m, rel)) = mirror_of(dir) {
        m.pull(&rel, |_| true)?;
    }
    Ok(())
}

/// Makes sure the file `path` is here: inside a mirror, a file the store
/// holds and this directory does not is downloaded (each task fetches only
/// the input parts it reads). A no-op outside a mirror or for a file present.
///
/// # Errors
/// The store's error, naming the URL.
pub fn local(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some((m, rel)) = mirror_of(path)
        && m.remote.size(&rel)?.is_some()
    {
        m.remote.download_file(&rel, path)?;
    }
    Ok(())
}

/// Whether `file` (in stage directory `dir`) exists here or, for a mirror, on the store.
pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    if dir.join(file).is_file() {
        return true;
    }
    mirror_of(dir).is_some_and(|(m, rel)| m.listed(&rel, file))
}

/// Uploads the local file `path` to its place on the store (a no-op outside a mirror).
pub(crate) fn push(path: &Path) -> Result<()> {
    if let Some((m, rel)) = mirror_of(path) {
        m.remote.upload_file(path, &rel)?;
    }
    Ok(())
}

/// Uploads every file under the local directory `dir` (recursively, leaving
/// out temporary `.tmp` files) to its place on the store: state a stage keeps
/// outside its parts, such as the crawl's frontier checkpoint. A no-op
/// outside a mirror.
///
/// # Errors
/// The store's error, naming the URL; [`Error::Io`] for a local file.
pub fn push_dir(dir: &Path) -> Result<()> {
    if mirror_of(dir).is_none() || !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp") || name.ends_with(".tmp") {
            continue;
        }
        if entry.file_type().at(&path)?.is_dir() {
            push_dir(&path)?;
        } else {
            push(&path)?;
        }
    }
    Ok(())
}

/// Creates `path`'s object on the store unless it exists, from `bytes`; says
/// whether this call created it. Outside a mirror, always `true`.
pub(crate) fn push_create(path: &Path, bytes: &[u8]) -> Result<bool> {
    match mirror_of(path) {
        Some((m, rel)) => m.remote.create(&rel, bytes.to_vec()),
        None => Ok(true),
    }
}

/// Deletes a stage directory's objects on the store (a no-op outside a mirror).
pub(crate) fn delete_stage(dir: &Path) -> Result<()> {
    if let Some((m, rel)) = mirror_of(dir) {
        m.remote.delete_all(&rel)?;
    }
    Ok(())
}

/// An input opened for reading: a local file, or an object streamed from a
/// store with ranged reads (seeks open a new range; a broken stream resumes).
pub enum Input {
    /// A local file.
    File(std::fs::File),
    /// An object on a store.
    Remote(RemoteReader),
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Input::File(f) => f.read(buf),
            Input::Remote(r) => r.read(buf),
        }
    }
}

impl std::io::Seek for Input {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        match self {
            Input::File(f) => f.seek(to),
            Input::Remote(r) => r.seek(to),
        }
    }
}

/// Opens the input `s` (a path or a URL) for streaming.
///
/// # Errors
/// [`Error::BadInput`] naming it if it is missing or unreadable, or its URL is bad.
pub fn open_input(s: &str) -> Result<Input> {
    match Location::parse(s)? {
        Location::Local(p) => std::fs::File::open(&p)
            .map(Input::File)
            .map_err(|e| Error::bad_input(&p, format!("cannot read: {e}"))),
        Location::Remote(r) => Ok(Input::Remote(r.reader("")?)),
    }
}

/// The size in bytes of the input `s` (a path or a URL).
///
/// # Errors
/// [`Error::BadInput`] naming it if it is missing or its URL is bad.
pub fn input_size(s: &str) -> Result<u64> {
    match Location::parse(s)? {
        Location::Local(p) => std::fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| Error::bad_input(&p, format!("cannot read: {e}"))),
        Location::Remote(r) => r
            .size("")?
            .ok_or_else(|| Error::bad_input(r.url(), "no such object")),
    }
}

/// A file a part writes as a stream ([`crate::PartContext::output_stream`]):
/// a local temporary file, or, in a dataset on a store, a multipart upload
/// fed as the bytes are written (8 MiB parts, at most two waiting: bounded
/// memory, no local copy). The upload is completed only when the part
/// commits, so the object appears whole at commit or not at all; a part
/// that fails or is killed leaves an upload that is aborted or never
/// completed.
pub struct OutputStream {
    kind: StreamKind,
    path: PathBuf,
}

enum StreamKind {
    File(std::io::BufWriter<std::fs::File>),
    Upload {
        buf: Vec<u8>,
        tx: std::sync::mpsc::SyncSender<UploadCmd>,
        sent: bool,
        handle: UploadHandle,
    },
}

enum UploadCmd {
    Part(Vec<u8>),
    /// Reply once every part sent so far is uploaded, with the first error.
    Flush(std::sync::mpsc::SyncSender<std::result::Result<(), String>>),
    Complete(std::sync::mpsc::SyncSender<std::result::Result<(), String>>),
}

/// What the runner keeps of a streamed upload to complete it at commit.
#[derive(Clone)]
pub(crate) struct UploadHandle(Arc<Mutex<Option<std::sync::mpsc::SyncSender<UploadCmd>>>>);

impl UploadHandle {
    /// Completes the upload: the object appears. Fails if the stream was not closed.
    pub(crate) fn complete(&self, what: &Path) -> Result<()> {
        let tx = self
            .0
            .lock()
            .expect("no panics hold this lock")
            .take()
            .ok_or_else(|| {
                Error::io(
                    what,
                    std::io::Error::other("the stream was not closed before the part returned"),
                )
            })?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        tx.send(UploadCmd::Complete(reply))
            .map_err(|_| Error::io(what, std::io::Error::other("the upload stopped")))?;
        answer
            .recv()
            .unwrap_or_else(|_| Err("the upload stopped".into()))
            .map_err(|e| Error::io(what, std::io::Error::other(e)))
    }
}

impl OutputStream {
    /// A local file at `path` (a part's temporary name).
    pub(crate) fn file(path: &Path) -> Result<OutputStream> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let f = std::fs::File::create(path).at(path)?;
        Ok(OutputStream {
            kind: StreamKind::File(std::io::BufWriter::with_capacity(1 << 20, f)),
            path: path.to_path_buf(),
        })
    }

    /// An upload to object `rel` of `remote`; `path` names it in messages.
    pub(crate) fn upload(
        remote: Arc<Remote>,
        rel: String,
        path: PathBuf,
    ) -> (OutputStream, UploadHandle) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<UploadCmd>(2);
        std::thread::Builder::new()
            .name("wit-upload".into())
            .spawn(move || upload_thread(&remote, &rel, rx))
            .expect("a thread starts");
        let handle = UploadHandle(Arc::new(Mutex::new(None)));
        (
            OutputStream {
                kind: StreamKind::Upload {
                    buf: Vec::with_capacity(MULTIPART_CHUNK),
                    tx,
                    sent: false,
                    handle: handle.clone(),
                },
                path,
            },
            handle,
        )
    }

    /// Where the stream goes, for messages: the file, or the object's place in the mirror.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finishes writing: flushes a file to disk, or sends the last part of an
    /// upload and waits until every part is on the store (the upload is
    /// completed when the part commits).
    ///
    /// # Errors
    /// [`Error::Io`] naming the stream if writing or uploading failed.
    pub fn close(self) -> Result<()> {
        let path = self.path;
        match self.kind {
            StreamKind::File(w) => {
                let f = w
                    .into_inner()
                    .map_err(|e| Error::io(&path, e.into_error()))?;
                f.sync_all().at(&path)
            }
            StreamKind::Upload {
                mut buf,
                tx,
                sent,
                handle,
            } => {
                if !buf.is_empty() || !sent {
                    tx.send(UploadCmd::Part(std::mem::take(&mut buf)))
                        .map_err(|_| {
                            Error::io(&path, std::io::Error::other("the upload stopped"))
                        })?;
                }
                let (reply, answer) = std::sync::mpsc::sync_channel(1);
                tx.send(UploadCmd::Flush(reply))
                    .map_err(|_| Error::io(&path, std::io::Error::other("the upload stopped")))?;
                answer
                    .recv()
                    .unwrap_or_else(|_| Err("the upload stopped".into()))
                    .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
                *handle.0.lock().expect("no panics hold this lock") = Some(tx);
                Ok(())
            }
        }
    }
}

impl Write for OutputStream {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut self.kind {
            StreamKind::File(w) => w.write(data),
            StreamKind::Upload { buf, tx, sent, .. } => {
                let room = MULTIPART_CHUNK - buf.len();
                let n = room.min(data.len());
                buf.extend_from_slice(&data[..n]);
                if buf.len() == MULTIPART_CHUNK {
                    let part = std::mem::replace(buf, Vec::with_capacity(MULTIPART_CHUNK));
                    tx.send(UploadCmd::Part(part))
                        .map_err(|_| std::io::Error::other("the upload stopped"))?;
                    *sent = true;
                }
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.kind {
            StreamKind::File(w) => w.flush(),
            // Parts go up as they fill; close() sends the rest.
            StreamKind::Upload { .. } => Ok(()),
        }
    }
}

/// Runs one multipart upload: parts in order as they come; completed on
/// `Complete`, aborted when the stream is dropped without it.
fn upload_thread(remote: &Remote, rel: &str, rx: std::sync::mpsc::Receiver<UploadCmd>) {
    let path = remote.path(rel);
    let mut upload = match block_on(remote.store.put_multipart(&path)) {
        Ok(u) => Some(u),
        Err(e) => {
            let msg = remote.err(rel, e).to_string();
            // Answer every request with the error until the stream is dropped.
            for cmd in rx {
                match cmd {
                    UploadCmd::Flush(r) | UploadCmd::Complete(r) => {
                        let _ = r.send(Err(msg.clone()));
                    }
                    UploadCmd::Part(_) => {}
                }
            }
            return;
        }
    };
    let mut failed: Option<String> = None;
    for cmd in &rx {
        match cmd {
            UploadCmd::Part(bytes) => {
                if failed.is_none()
                    && let Some(u) = upload.as_mut()
                    && let Err(e) = block_on(u.put_part(PutPayload::from(bytes)))
                {
                    failed = Some(remote.err(rel, e).to_string());
                }
            }
            UploadCmd::Flush(reply) => {
                let _ = reply.send(failed.clone().map_or(Ok(()), Err));
            }
            UploadCmd::Complete(reply) => {
                let result = match (&failed, upload.as_mut()) {
                    (None, Some(u)) => block_on(u.complete())
                        .map(|_| ())
                        .map_err(|e| remote.err(rel, e).to_string()),
                    (Some(f), _) => Err(f.clone()),
                    (None, None) => Err("no upload".into()),
                };
                if result.is_ok() {
                    upload = None;
                }
                let _ = reply.send(result);
                break;
            }
        }
    }
    // Dropped before completing (the part failed, or completing failed): abort.
    if let Some(mut u) = upload {
        let _ = block_on(u.abort());
    }
}

/// The stream for a part's output at `path` (final place in the stage
/// directory) with temporary name `tmp`: an upload in a mirror, else the file.
pub(crate) fn output_stream(
    path: &Path,
    tmp: &Path,
) -> Result<(OutputStream, Option<UploadHandle>)> {
    match mirror_of(path) {
        Some((m, rel)) => {
            let (s, h) = OutputStream::upload(Arc::clone(&m.remote), rel, path.to_path_buf());
            Ok((s, Some(h)))
        }
        None => Ok((OutputStream::file(tmp)?, None)),
    }
}

/// Opens WebDataset shards at paths or URLs (`s3://`, `https://`, ...),
/// streamed: what `wit train` and `wit eval` read shards with.
pub struct StoreOpener;

impl crate::wds::Opener for StoreOpener {
    fn open(&self, shard: &str) -> std::io::Result<Box<dyn Read + Send>> {
        open_input(shard)
            .map(|i| Box::new(i) as Box<dyn Read + Send>)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Downloads an input file named by a URL into a local working directory
/// and returns its path; a local path is returned as it is.
///
/// # Errors
/// As [`Location::parse`] and [`Remote::download_file`].
pub fn fetch_input(s: &str) -> Result<PathBuf> {
    match Location::parse(s)? {
        Location::Local(p) => Ok(p),
        Location::Remote(r) => {
            let base = std::env::var_os("WIT_WORK_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let name = s.rsplit('/').next().unwrap_or("input");
            let dir = base.join(format!("wit-input-{}", crate::runner::nonce()));
            inputs()
                .lock()
                .expect("no panics hold this lock")
                .push(dir.clone());
            let local = dir.join(name);
            r.download_file("", &local)?;
            Ok(local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert!(is_url("s3://bucket/x"));
        assert!(is_url("https://h/x"));
        assert!(!is_url("runs/demo"));
        assert!(!is_url("/abs/path"));
        assert!(!is_url("://x"));
        assert!(matches!(
            Location::parse("runs/x").unwrap(),
            Location::Local(_)
        ));
        match Location::parse("file:///tmp/x").unwrap() {
            Location::Local(p) => assert_eq!(p, PathBuf::from("/tmp/x")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_urls_get_one_line_errors_naming_them() {
        let e = Location::parse("ftp://host/x").unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("ftp://host/x"),
            "{e}"
        );
        assert!(e.to_string().contains("unknown URL scheme"), "{e}");
        let e = Location::parse("s3://key:hunter2@bucket/x").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("credentials in a URL"), "{e}");
        let e = Location::parse("s3:///nobucket").unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn http_stores_are_read_only() {
        let r = Remote::open("http://127.0.0.1:9/data").unwrap();
        let e = r.put("x", vec![1]).unwrap_err();
        assert!(e.to_string().contains("read-only"), "{e}");
        assert_eq!(r.child_url("a/b"), "http://127.0.0.1:9/data/a/b");
    }

    #[test]
    fn an_unreachable_endpoint_is_named() {
        // Port 9 (discard) is closed here: the connection is refused at once.
        let r = Remote::open("http://127.0.0.1:9/data").unwrap();
        let e = r.get("x").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("http://127.0.0.1:9/data/x") && msg.contains("cannot be reached"),
            "{msg}"
        );
        assert!(e.is_bad_input());
    }
}
