//! `wit crawl`: seed URLs in, `candidates/` out, a part every N URLs.
//!
//! One scheduler task owns the [`Frontier`] and the per-host state; fetches
//! run as tokio tasks and report back on a channel.
//!
//! - **Politeness.** URLs popped from the frontier wait in their host's queue
//!   (at most [`PARKED_PER_SLOT`] per global slot, so memory stays bounded).
//!   A host gets at most `per_host` requests at once, and one request starts
//!   at most every `delay` (or the robots.txt `Crawl-delay`, capped at
//!   `max_crawl_delay`). At most `concurrency` requests run in all.
//! - **robots.txt** is fetched once per origin before its first page
//!   (redirects followed up to five hops). `2xx`: its rules apply (an HTML
//!   error page has none: all allowed, counted). `4xx` but 429: no rules.
//!   `429`, `5xx` or no answer: the origin is treated as fully disallowed
//!   (RFC 9309, 2.3.1.3 and 2.3.1.4).
//! - **Redirects** are not followed inside a request: the target goes back
//!   to its host's queue, so robots rules, politeness and scope apply to it.
//!   A chain longer than `max_redirects` or coming back on itself fails.
//! - **Retries.** `429` and `503` are retried up to `retries` times after the
//!   `Retry-After` delay (or 2, 4, 8... seconds), capped at
//!   `max_retry_after`; the whole host waits that long.
//! - **Parts and resuming.** Every `part_urls` finished URLs (fetched or
//!   failed), the frontier is checkpointed under `candidates/_crawl/`, with
//!   the URLs still in flight or waiting put back in front, and then the part
//!   is committed (Parquet, then its sidecar). A killed crawl restarts from
//!   the checkpoint of its last committed part: URLs of committed parts are
//!   never fetched again; those of the part being built are. When the
//!   frontier is empty (or `max_pages` URLs are done) the manifest is written.
//!
//! The crawl runs as one process per dataset (`--parts` does not apply): its
//! output depends on the order pages arrive in, so it is resumable but not
//! reproducible byte for byte, unlike the other stages.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use url::Url;
use wit_contract::layout::part_file_name;
use wit_contract::records::Candidate;
use wit_contract::records::candidates_to_batch;
use wit_contract::{
    Counts, Dataset, Error, IoContext, OpenStage, Progress, Result, Stage, StageSpec, Summary, pq,
    schema,
};
use wit_net::addr::AddressPolicy;
use wit_net::http::{Client, ClientOptions, Failure, Head, Response};
use wit_net::robots::{Fetched, Robots, Rules};

use crate::frontier::{Entry, Frontier, Kind, Pushed};
use crate::html::{ROBOTS_TOKEN, decode_html, extract_in};
use crate::urls::normalize;

/// URLs that may wait in host queues per global concurrency slot.
pub const PARKED_PER_SLOT: usize = 16;

/// Which links a crawl follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only the seeds' hosts.
    Host,
    /// The seeds' hosts and their subdomains (`www.` removed first:
    /// a seed on `www.example.org` admits `docs.example.org`).
    Domain,
    /// Any host.
    Any,
}

impl Scope {
    /// The scope's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Host => "host",
            Scope::Domain => "domain",
            Scope::Any => "any",
        }
    }
}

/// What a crawl does. [`CrawlOptions::default`] gives polite defaults.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    /// Where to start.
    pub seeds: Vec<String>,
    /// The `User-Agent` header; its product token should be `witbot`.
    pub user_agent: String,
    /// Which addresses may be fetched.
    pub policy: AddressPolicy,
    /// Which links to follow.
    pub scope: Scope,
    /// Stop after this many URLs are done (fetched or failed).
    pub max_pages: Option<u64>,
    /// Follow links at most this many hops from a seed.
    pub max_depth: u32,
    /// Requests at once, in all.
    pub concurrency: usize,
    /// Requests at once, per host.
    pub per_host: usize,
    /// Minimum time between the starts of two requests to one host.
    pub delay: Duration,
    /// The most a robots.txt `Crawl-delay` is obeyed up to.
    pub max_crawl_delay: Duration,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request.
    pub timeout: Duration,
    /// Largest page body read (after decompression).
    pub max_page_bytes: u64,
    /// Longest redirect chain followed.
    pub max_redirects: u32,
    /// Retries of a `429` or `503`.
    pub retries: u32,
    /// Longest `Retry-After` waited for; a longer one fails the URL.
    pub max_retry_after: Duration,
    /// URLs per part.
    pub part_urls: u64,
    /// Frontier URLs kept in memory per queue (the rest spill to disk).
    pub memory_urls: usize,
    /// Worker threads (HTML parsing runs on them).
    pub threads: usize,
}

impl Default for CrawlOptions {
    fn default() -> Self {
        CrawlOptions {
            seeds: Vec::new(),
            user_agent: wit_net::user_agent(None),
            policy: AddressPolicy::default(),
            scope: Scope::Host,
            max_pages: None,
            max_depth: 5,
            concurrency: 32,
            per_host: 2,
            delay: Duration::from_millis(500),
            max_crawl_delay: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_page_bytes: 8 << 20,
            max_redirects: 5,
            retries: 2,
            max_retry_after: Duration::from_secs(60),
            part_urls: 1000,
            memory_urls: 100_000,
            threads: 2,
        }
    }
}

impl CrawlOptions {
    /// What decides the crawl's output: a rerun with other values is refused.
    /// Rates, timeouts, concurrency and the address policy may change
    /// between runs (a resumed crawl may be allowed private addresses).
    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "source": "crawl",
            "seeds": self.seeds,
            "scope": self.scope.name(),
            "max_pages": self.max_pages,
            "max_depth": self.max_depth,
            "max_page_bytes": self.max_page_bytes,
            "max_redirects": self.max_redirects,
            "user_agent": self.user_agent,
            "part_urls": self.part_urls,
        })
    }
}

/// Where the crawl keeps its frontier, inside the stage directory (the `_`
/// makes Parquet readers skip it).
pub const STATE_DIR: &str = "_crawl";

fn checkpoint_path(state: &Path, part: u32) -> PathBuf {
    state.join(format!("checkpoint-{part:05}"))
}

/// Runs (or resumes) a crawl into `dataset`'s `candidates/`.
///
/// # Errors
/// [`Error::Usage`] without a valid seed; [`Error::Conflict`] if the stage
/// holds a crawl with other parameters (`force` starts over);
/// [`Error::Io`] if the output cannot be written.
pub fn run_crawl(
    dataset: &Dataset,
    opts: &CrawlOptions,
    force: bool,
    progress: &dyn Progress,
) -> Result<Summary> {
    let start = Instant::now();
    if opts.part_urls == 0 || opts.concurrency == 0 || opts.per_host == 0 {
        return Err(Error::Usage(
            "part size, concurrency and per-host concurrency must be at least 1".into(),
        ));
    }
    let mut seeds = Vec::new();
    let mut bad = Vec::new();
    for s in &opts.seeds {
        match normalize(s) {
            Ok(u) => seeds.push(u),
            Err(e) => bad.push(format!("{s:?} ({e:?})")),
        }
    }
    if seeds.is_empty() {
        return Err(Error::Usage(format!(
            "no usable http(s) seed URL: {}",
            bad.join(", ")
        )));
    }
    for b in bad {
        tracing::warn!("seed {b} skipped: not an http(s) URL with a host");
    }
    let stage = OpenStage::open(
        StageSpec {
            stage: Stage::Candidates,
            dir: dataset.stage_dir(Stage::Candidates),
            parts: 0,
            inputs: opts.seeds.clone(),
            params: opts.params(),
        },
        force,
    )?;
    let committed = stage.committed();
    let mut counts = Counts::new();
    for s in &committed {
        wit_contract::manifest::add_counts(&mut counts, &s.counts);
    }
    let summary = |ran: u32, counts: Counts, parts: u32, complete: bool| Summary {
        parts,
        in_share: parts,
        ran,
        skipped: committed.len() as u32,
        counts,
        complete,
        elapsed: start.elapsed(),
    };
    if stage.finished() {
        tracing::info!("candidates: the crawl is already complete");
        let n = committed.len() as u32;
        return Ok(summary(0, counts, n, true));
    }
    let state = stage.dir().join(STATE_DIR);
    let frontier_dir = state.join("frontier");
    let frontier = if committed.is_empty() {
        if state.exists() {
            std::fs::remove_dir_all(&state).at(&state)?;
        }
        let mut f = Frontier::new(&frontier_dir, opts.memory_urls, opts.max_depth)?;
        for s in &seeds {
            f.push(s.as_str(), 0, Kind::Page)?;
        }
        f
    } else {
        let last = committed.len() as u32 - 1;
        let cp = checkpoint_path(&state, last);
        if !cp.is_file() {
            return Err(Error::bad_input(
                &cp,
                "the crawl's checkpoint for its last committed part is missing: use --force to start over",
            ));
        }
        // Checkpoints of parts that a killed run never committed.
        for entry in std::fs::read_dir(&state).at(&state)? {
            let p = entry.at(&state)?.path();
            if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix("checkpoint-")
                    .and_then(|d| d.parse::<u32>().ok())
                    .is_some_and(|k| k > last)
            }) {
                std::fs::remove_file(&p).at(&p)?;
            }
        }
        tracing::info!(
            "candidates: resuming the crawl after {} committed parts ({} URLs done)",
            committed.len(),
            counts.get("urls").copied().unwrap_or(0)
        );
        Frontier::restore(&cp, &frontier_dir, opts.memory_urls)?
    };
    let client = Client::new(&ClientOptions {
        user_agent: opts.user_agent.clone(),
        policy: opts.policy,
        connect_timeout: opts.connect_timeout,
        timeout: opts.timeout,
    })
    .map_err(Error::Usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| Error::io(stage.dir(), e))?;
    let done_before = counts.get("urls").copied().unwrap_or(0);
    // No total: --max-pages is a limit, and the frontier's end is not known.
    progress.start("crawl: URLs", 0, done_before);
    let mut crawler = Crawler {
        opts,
        scope: ScopeCheck::new(opts.scope, &seeds),
        stage: &stage,
        state,
        frontier,
        client,
        hosts: HashMap::new(),
        active: HashSet::new(),
        inflight: HashMap::new(),
        next_id: 0,
        running: 0,
        parked: 0,
        started: done_before,
        part: committed.len() as u32,
        part_started: std::time::SystemTime::now(),
        part_counts: Counts::new(),
        part_rows: Vec::new(),
        progress,
    };
    let result = runtime.block_on(crawler.run());
    progress.finish();
    let ran = result?;
    let parts = crawler.part;
    for s in &stage.committed()[committed.len()..] {
        wit_contract::manifest::add_counts(&mut counts, &s.counts);
    }
    stage.finish(parts)?;
    Ok(summary(ran, counts, parts, true))
}

/// One URL on its way through the crawler.
#[derive(Debug, Clone)]
struct Job {
    entry: Entry,
    kind: Kind,
    attempts: u32,
    /// The URLs of the redirect chain so far (normalised), the first included.
    chain: Vec<String>,
}

/// Why a navigation (a redirect, a refresh) is not followed.
enum Refused {
    /// The target is not a URL the crawler can fetch.
    BadUrl,
    /// The target is already in the chain.
    Loop,
    /// The chain is longer than `max_redirects`.
    Limit,
    /// The target is outside the crawl's scope.
    OutOfScope,
    /// The target was already queued or fetched.
    Seen,
}

/// What a task reports.
enum Done {
    Page {
        id: u64,
        url: Url,
        rows: Vec<Candidate>,
        links: Vec<String>,
        frames: Vec<String>,
        /// Where a refresh (the `Refresh` header, else the page's
        /// `<meta http-equiv="refresh">`) sends a browser.
        refresh: Option<Url>,
        counts: Counts,
    },
    Redirect {
        id: u64,
        to: Url,
    },
    Retry {
        id: u64,
        after: Duration,
    },
    Failed {
        id: u64,
        reason: String,
    },
    Robots {
        origin: String,
        /// The rules, or why none came: the reason its URLs fail.
        rules: std::result::Result<Rules, &'static str>,
        outcome: &'static str,
        /// Why robots.txt was unreachable ([`Failure::key`]).
        cause: Option<&'static str>,
    },
}

#[derive(Debug)]
enum RobotsState {
    Fetching,
    Ready(Arc<Rules>),
    /// Every URL of the origin fails, for this reason.
    Unreachable(&'static str),
}

#[derive(Debug)]
struct Host {
    queue: VecDeque<Job>,
    running: usize,
    next_at: Instant,
    delay: Duration,
    robots: Option<RobotsState>,
}

struct ScopeCheck {
    scope: Scope,
    hosts: HashSet<String>,
}

impl ScopeCheck {
    fn new(scope: Scope, seeds: &[Url]) -> ScopeCheck {
        let hosts = seeds
            .iter()
            .filter_map(|u| u.host_str())
            .map(|h| match scope {
                Scope::Domain => h.strip_prefix("www.").unwrap_or(h).to_string(),
                _ => h.to_string(),
            })
            .collect();
        ScopeCheck { scope, hosts }
    }

    fn admits(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        match self.scope {
            Scope::Any => true,
            Scope::Host => self.hosts.contains(host),
            Scope::Domain => self.hosts.iter().any(|h| {
                host == h
                    || host
                        .strip_suffix(h.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }),
        }
    }
}

/// Link targets that are never HTML pages.
fn is_binary(url: &Url) -> bool {
    const EXT: &[&str] = &[
        "jpg", "jpeg", "png", "gif", "webp", "svg", "bmp", "ico", "tif", "tiff", "avif", "pdf",
        "zip", "gz", "tgz", "bz2", "xz", "7z", "rar", "tar", "mp3", "mp4", "webm", "avi", "mov",
        "wav", "ogg", "exe", "dmg", "iso", "bin", "css", "js", "json", "xml", "txt", "csv", "doc",
        "docx", "xls", "xlsx", "ppt", "pptx", "woff", "woff2", "ttf", "eot", "ipynb", "py",
    ];
    let path = url.path();
    let last = path.rsplit('/').next().unwrap_or("");
    last.rsplit_once('.')
        .is_some_and(|(_, ext)| EXT.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn bump(counts: &mut Counts, key: &str, n: u64) {
    *counts.entry(key.to_string()).or_default() += n;
}

struct Crawler<'a> {
    opts: &'a CrawlOptions,
    scope: ScopeCheck,
    stage: &'a OpenStage,
    state: PathBuf,
    frontier: Frontier,
    client: Client,
    hosts: HashMap<String, Host>,
    /// Origins with queued URLs.
    active: HashSet<String>,
    /// Jobs being fetched, by task id.
    inflight: HashMap<u64, Job>,
    next_id: u64,
    /// Tasks running (fetches and robots.txt fetches).
    running: usize,
    /// Jobs waiting in host queues.
    parked: usize,
    /// URLs taken from the frontier, over all runs.
    started: u64,
    part: u32,
    /// When work on the current part began: the run's start or the last commit.
    part_started: std::time::SystemTime,
    part_counts: Counts,
    part_rows: Vec<Candidate>,
    progress: &'a dyn Progress,
}

impl Crawler<'_> {
    /// Crawls until the frontier is empty or the page limit is reached;
    /// returns the number of parts committed.
    async fn run(&mut self) -> Result<u32> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
        let first_part = self.part;
        let park_cap = self.opts.concurrency * PARKED_PER_SLOT;
        loop {
            // 1. Take URLs from the frontier into their hosts' queues.
            while self.parked < park_cap
                && self.opts.max_pages.is_none_or(|m| self.started < m)
                && let Some(entry) = self.frontier.pop()?
            {
                self.started += 1;
                let kind = Kind::Page;
                let job = Job {
                    chain: vec![entry.url.clone()],
                    entry,
                    kind,
                    attempts: 0,
                };
                self.park(job, false);
            }
            // 2. Start what politeness allows.
            let next_wake = self.dispatch(&tx);
            // 3. Done?
            if self.running == 0 && self.parked == 0 {
                break;
            }
            // 4. Wait for a task, or for a host's delay to pass.
            let msg = match next_wake {
                Some(at) => {
                    tokio::select! {
                        m = rx.recv() => m,
                        () = tokio::time::sleep_until(at.into()) => None,
                    }
                }
                None => rx.recv().await,
            };
            if let Some(m) = msg {
                self.handle(m)?;
                while let Ok(m) = rx.try_recv() {
                    self.handle(m)?;
                }
            }
        }
        if self.part_counts.get("urls").copied().unwrap_or(0) > 0 || self.part == 0 {
            self.commit()?;
        }
        Ok(self.part - first_part)
    }

    fn park(&mut self, job: Job, front: bool) {
        let Ok(url) = Url::parse(&job.entry.url) else {
            return;
        };
        let origin = origin_of(&url);
        let opts = self.opts;
        let host = self.hosts.entry(origin.clone()).or_insert_with(|| Host {
            queue: VecDeque::new(),
            running: 0,
            next_at: Instant::now(),
            delay: opts.delay,
            robots: None,
        });
        if front {
            host.queue.push_front(job);
        } else {
            host.queue.push_back(job);
        }
        self.parked += 1;
        self.active.insert(origin);
    }

    /// Starts fetches; returns the earliest time a waiting host becomes ready.
    fn dispatch(&mut self, tx: &mpsc::UnboundedSender<Done>) -> Option<Instant> {
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        let origins: Vec<String> = self.active.iter().cloned().collect();
        for origin in origins {
            if self.running >= self.opts.concurrency {
                break;
            }
            let host = self.hosts.get_mut(&origin).expect("active hosts exist");
            match &host.robots {
                None => {
                    host.robots = Some(RobotsState::Fetching);
                    self.running += 1;
                    let client = self.client.clone();
                    let tx = tx.clone();
                    let origin = origin.clone();
                    tokio::spawn(async move {
                        let (rules, outcome, cause) = fetch_robots(&client, &origin).await;
                        let _ = tx.send(Done::Robots {
                            origin,
                            rules,
                            outcome,
                            cause,
                        });
                    });
                    continue;
                }
                Some(RobotsState::Fetching) => continue,
                Some(RobotsState::Unreachable(reason)) => {
                    let reason = *reason;
                    let n = host.queue.len();
                    host.queue.clear();
                    self.parked -= n;
                    self.active.remove(&origin);
                    for _ in 0..n {
                        self.fail(reason);
                    }
                    continue;
                }
                Some(RobotsState::Ready(_)) => {}
            }
            let mut denied = 0;
            while host.running < self.opts.per_host && self.running < self.opts.concurrency {
                let Some(job) = host.queue.front() else { break };
                if now < host.next_at {
                    wake = Some(wake.map_or(host.next_at, |w| w.min(host.next_at)));
                    break;
                }
                let Some(RobotsState::Ready(rules)) = &host.robots else {
                    unreachable!("checked above")
                };
                let url = Url::parse(&job.entry.url).expect("frontier URLs parse");
                let path = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_string(),
                };
                let allowed = rules.allowed(&path);
                let job = host.queue.pop_front().expect("front exists");
                self.parked -= 1;
                if !allowed {
                    denied += 1;
                    continue;
                }
                host.running += 1;
                host.next_at = now + host.delay;
                self.running += 1;
                let id = self.next_id;
                self.next_id += 1;
                self.inflight.insert(id, job.clone());
                let client = self.client.clone();
                let tx = tx.clone();
                let opts = self.opts.clone_limits();
                tokio::spawn(async move {
                    let done = fetch_page(&client, id, url, job.attempts, &opts).await;
                    let _ = tx.send(done);
                });
            }
            if host.queue.is_empty() {
                self.active.remove(&origin);
            }
            for _ in 0..denied {
                self.fail("fail_robots");
            }
        }
        wake
    }

    fn handle(&mut self, msg: Done) -> Result<()> {
        match msg {
            Done::Robots {
                origin,
                rules,
                outcome,
                cause,
            } => {
                self.running -= 1;
                bump(&mut self.part_counts, outcome, 1);
                if let Some(cause) = cause {
                    bump(&mut self.part_counts, &format!("{outcome}_{cause}"), 1);
                }
                let opts = self.opts;
                let host = self
                    .hosts
                    .get_mut(&origin)
                    .expect("robots for a known host");
                host.robots = Some(match rules {
                    Ok(r) => {
                        if let Some(d) = r.crawl_delay {
                            let d = Duration::from_secs_f64(d.clamp(0.0, 1e6))
                                .min(opts.max_crawl_delay);
                            host.delay = host.delay.max(d);
                        }
                        RobotsState::Ready(Arc::new(r))
                    }
                    Err(reason) => RobotsState::Unreachable(reason),
                });
                if !host.queue.is_empty() {
                    self.active.insert(origin);
                }
            }
            Done::Page {
                id,
                url,
                rows,
                links,
                frames,
                refresh,
                counts,
            } => {
                let job = self.task_done(id);
                debug_assert_eq!(job.entry.url, url.as_str());
                wit_contract::manifest::add_counts(&mut self.part_counts, &counts);
                self.part_rows.extend(rows);
                let depth = job.entry.depth + 1;
                for (list, kind) in [(links, Kind::Page), (frames, Kind::Asset)] {
                    for link in list {
                        let key = self.queue_link(&link, depth, kind)?;
                        bump(&mut self.part_counts, key, 1);
                    }
                }
                self.finish_url_counted();
                // A refresh is a navigation without a link, as a browser
                // makes it: a new URL at the page's depth, with the checks
                // a redirect gets (robots and the address policy when it
                // is fetched).
                if let Some(to) = refresh {
                    bump(&mut self.part_counts, "refreshes", 1);
                    let refused = match self.navigate(job, &to) {
                        Ok(()) => None,
                        Err(Refused::BadUrl) => Some("refresh_bad_url"),
                        Err(Refused::Loop) => Some("refresh_loop"),
                        Err(Refused::Limit) => Some("refresh_limit"),
                        Err(Refused::OutOfScope) => Some("refresh_out_of_scope"),
                        Err(Refused::Seen) => Some("refresh_to_seen"),
                    };
                    if let Some(r) = refused {
                        bump(&mut self.part_counts, r, 1);
                    }
                }
            }
            Done::Redirect { id, to } => {
                let job = self.task_done(id);
                bump(&mut self.part_counts, "redirects", 1);
                match self.navigate(job, &to) {
                    Ok(()) => {}
                    Err(Refused::BadUrl) => self.fail("fail_bad_redirect"),
                    Err(Refused::Loop) => self.fail("fail_redirect_loop"),
                    Err(Refused::Limit) => self.fail("fail_redirect_limit"),
                    Err(Refused::OutOfScope) => self.fail("redirect_out_of_scope"),
                    Err(Refused::Seen) => self.fail("redirect_to_seen"),
                }
            }
            Done::Retry { id, after } => {
                let mut job = self.task_done(id);
                bump(&mut self.part_counts, "retries", 1);
                job.attempts += 1;
                if let Ok(u) = Url::parse(&job.entry.url)
                    && let Some(h) = self.hosts.get_mut(&origin_of(&u))
                {
                    h.next_at = h.next_at.max(Instant::now() + after);
                }
                self.park(job, true);
            }
            Done::Failed { id, reason } => {
                self.task_done(id);
                self.fail(&format!("fail_{reason}"));
            }
        }
        if self.part_counts.get("urls").copied().unwrap_or(0) >= self.opts.part_urls {
            self.commit()?;
        }
        Ok(())
    }

    /// Bookkeeping when a fetch task ends: its job, out of flight.
    fn task_done(&mut self, id: u64) -> Job {
        let job = self
            .inflight
            .remove(&id)
            .expect("a task's job is in flight");
        self.running -= 1;
        if let Ok(u) = Url::parse(&job.entry.url)
            && let Some(h) = self.hosts.get_mut(&origin_of(&u))
        {
            h.running -= 1;
        }
        job
    }

    fn queue_link(&mut self, link: &str, depth: u32, kind: Kind) -> Result<&'static str> {
        let Ok(url) = Url::parse(link) else {
            return Ok("links_not_crawlable");
        };
        if !self.scope.admits(&url) {
            return Ok("links_out_of_scope");
        }
        if is_binary(&url) {
            return Ok("links_not_html");
        }
        Ok(match self.frontier.push(link, depth, kind)? {
            Pushed::Added => "links_queued",
            Pushed::Seen => "links_seen",
            Pushed::TooDeep => "links_too_deep",
            Pushed::NotCrawlable => "links_not_crawlable",
        })
    }

    /// Sends `job` on to `to` (a redirect's `Location`, a page's refresh),
    /// as a browser navigates: the target joins the job's chain and waits
    /// for its host; or why it is refused.
    fn navigate(&mut self, mut job: Job, to: &Url) -> std::result::Result<(), Refused> {
        let target = normalize(to.as_str())
            .map(|u| u.to_string())
            .map_err(|_| Refused::BadUrl)?;
        if job.chain.contains(&target) {
            return Err(Refused::Loop);
        }
        if job.chain.len() as u32 > self.opts.max_redirects {
            return Err(Refused::Limit);
        }
        if !self.scope.admits(to) {
            return Err(Refused::OutOfScope);
        }
        if !self.frontier.mark_seen(&target) {
            return Err(Refused::Seen);
        }
        job.chain.push(target.clone());
        job.entry.url = target;
        job.attempts = 0;
        self.park(job, false);
        Ok(())
    }

    /// A URL is done, for `reason`.
    fn fail(&mut self, reason: &str) {
        bump(&mut self.part_counts, reason, 1);
        self.finish_url_counted();
    }

    fn finish_url_counted(&mut self) {
        bump(&mut self.part_counts, "urls", 1);
        self.progress.advance(1);
    }

    /// Checkpoints the frontier (with the URLs not finished put back), then
    /// commits the part.
    fn commit(&mut self) -> Result<()> {
        let part = self.part;
        let mut pending: Vec<(Entry, Kind)> = Vec::new();
        for job in self.inflight.values() {
            pending.push((job.entry.clone(), job.kind));
        }
        for host in self.hosts.values() {
            for job in &host.queue {
                pending.push((job.entry.clone(), job.kind));
            }
        }
        std::fs::create_dir_all(&self.state).at(&self.state)?;
        self.frontier
            .checkpoint(&checkpoint_path(&self.state, part), &pending)?;
        // A dataset on a store: the frontier goes up before the part commits,
        // so that a crawl restarted on another machine resumes from it.
        wit_contract::store::push_dir(&self.state)?;
        let rows = std::mem::take(&mut self.part_rows);
        let mut counts = std::mem::take(&mut self.part_counts);
        bump(&mut counts, "candidates", rows.len() as u64);
        for c in &rows {
            bump(&mut counts, &format!("candidates_{}", c.text_source), 1);
        }
        self.stage.commit(part, self.part_started, |ctx| {
            let batch = candidates_to_batch(&rows)?;
            pq::write_file(
                &ctx.output(&part_file_name(part)),
                schema::candidates(),
                &[batch],
            )?;
            Ok(counts)
        })?;
        self.part_started = std::time::SystemTime::now();
        if part > 0 {
            let old = checkpoint_path(&self.state, part - 1);
            std::fs::remove_file(&old).at(&old)?;
        }
        self.frontier.release_consumed()?;
        tracing::debug!("candidates: crawl part {part} committed");
        self.part += 1;
        Ok(())
    }
}

/// The limits a fetch task needs, copied out of the options.
#[derive(Debug, Clone)]
struct Limits {
    max_page_bytes: u64,
    retries: u32,
    max_retry_after: Duration,
}

impl CrawlOptions {
    fn clone_limits(&self) -> Limits {
        Limits {
            max_page_bytes: self.max_page_bytes,
            retries: self.retries,
            max_retry_after: self.max_retry_after,
        }
    }
}

fn is_html_type(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "text/html" || mime == "application/xhtml+xml"
}

/// Whether a body without a content type starts like an HTML document.
fn sniff_html(body: &[u8]) -> bool {
    let start: Vec<u8> = body
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(64)
        .map(u8::to_ascii_lowercase)
        .collect();
    [
        &b"<!doctype html"[..],
        b"<html",
        b"<head",
        b"<body",
        b"<!--",
    ]
    .iter()
    .any(|p| start.starts_with(p))
}

async fn fetch_page(client: &Client, id: u64, url: Url, attempts: u32, limits: &Limits) -> Done {
    let accept = |head: &Head<'_>| {
        if (200..300).contains(&head.status)
            && head
                .header("content-type")
                .is_some_and(|t| !is_html_type(t))
        {
            return Err(Failure::WrongType);
        }
        Ok(())
    };
    let resp: Response = match client.get(&url, limits.max_page_bytes, accept).await {
        Ok(r) => r,
        Err(f) => {
            return Done::Failed {
                id,
                reason: f.key().to_string(),
            };
        }
    };
    let status = resp.status;
    if (300..400).contains(&status) {
        return match resp.location(&url) {
            Some(to) => Done::Redirect { id, to },
            None => Done::Failed {
                id,
                reason: "bad_redirect".into(),
            },
        };
    }
    if status == 429 || status == 503 {
        let after = resp
            .retry_after()
            .unwrap_or(Duration::from_secs(2u64 << attempts.min(10)));
        if attempts < limits.retries && after <= limits.max_retry_after {
            return Done::Retry { id, after };
        }
    }
    if let Some(f) = Failure::from_status(status) {
        return Done::Failed {
            id,
            reason: f.key().to_string(),
        };
    }
    if !(200..300).contains(&status) {
        return Done::Failed {
            id,
            reason: "http_other".into(),
        };
    }
    let content_type = resp.header("content-type").map(str::to_string);
    if content_type.is_none() && !sniff_html(&resp.body) {
        return Done::Failed {
            id,
            reason: "wrong_type".into(),
        };
    }
    let fetched_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let language = resp.header("content-language").map(str::to_string);
    let mut counts = Counts::new();
    let (text, encoding, bad_bytes) = decode_html(&resp.body, content_type.as_deref());
    let page = extract_in(url.as_str(), &text, language.as_deref(), encoding);
    bump(&mut counts, "pages", 1);
    bump(&mut counts, "page_bytes", resp.body.len() as u64);
    if bad_bytes {
        bump(&mut counts, "pages_bad_encoding", 1);
    }
    if page.noindex {
        bump(&mut counts, "pages_noindex", 1);
    }
    if page.nofollow {
        bump(&mut counts, "pages_nofollow", 1);
    }
    for (name, n) in page.image_counts() {
        bump(&mut counts, name, n);
    }
    bump(&mut counts, "texts_boilerplate", page.boilerplate);
    bump(&mut counts, "texts_repeated", page.repeats);
    let rows = page
        .candidates
        .into_iter()
        .map(|mut c| {
            c.origin = "crawl".into();
            c.fetch_time_ms = Some(fetched_ms);
            c
        })
        .collect();
    let refresh = resp
        .header("refresh")
        .and_then(crate::html::refresh_target)
        .and_then(|to| url.join(to).ok())
        .or_else(|| page.refresh.as_deref().and_then(|u| Url::parse(u).ok()))
        .filter(|to| matches!(to.scheme(), "http" | "https") && to.as_str() != url.as_str());
    Done::Page {
        id,
        url,
        rows,
        links: page.links,
        frames: page.frames,
        refresh,
        counts,
    }
}

/// Fetches an origin's robots.txt: the rules, or the reason every URL of
/// the origin fails (`fail_robots_unreachable`, or the fetch failure itself
/// where it says the origin cannot be fetched at all: a refused address, DNS);
/// the outcome's counter name; and, when unreachable, the underlying failure
/// ([`Failure::key`]: `connect`, `timeout`, `http_5xx`...).
async fn fetch_robots(
    client: &Client,
    origin: &str,
) -> (
    std::result::Result<Rules, &'static str>,
    &'static str,
    Option<&'static str>,
) {
    let Ok(url) = Url::parse(origin) else {
        return (
            Err("fail_robots_unreachable"),
            "robots_unreachable",
            Some("bad_url"),
        );
    };
    match wit_net::robots::fetch(client, &url).await {
        Fetched::Found { body, content_type } => {
            let html = content_type.as_deref().is_some_and(is_html_type) || sniff_html(&body);
            let rules = Robots::parse(&body).rules_for(ROBOTS_TOKEN);
            (
                Ok(rules),
                if html {
                    "robots_html"
                } else {
                    "robots_fetched"
                },
                None,
            )
        }
        Fetched::Unavailable => (Ok(Rules::default()), "robots_missing", None),
        Fetched::Unreachable(f) => {
            let fail = match f {
                Failure::RefusedAddress(_) => "fail_refused_address",
                Failure::Dns => "fail_dns",
                _ => "fail_robots_unreachable",
            };
            (Err(fail), "robots_unreachable", Some(f.key()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let seeds = [Url::parse("http://www.example.org/a").unwrap()];
        let u = |s: &str| Url::parse(s).unwrap();
        let host = ScopeCheck::new(Scope::Host, &seeds);
        assert!(host.admits(&u("https://www.example.org/x")));
        assert!(!host.admits(&u("http://docs.example.org/x")));
        let domain = ScopeCheck::new(Scope::Domain, &seeds);
        assert!(domain.admits(&u("http://docs.example.org/x")));
        assert!(domain.admits(&u("http://example.org/x")));
        assert!(!domain.admits(&u("http://badexample.org/x")));
        assert!(ScopeCheck::new(Scope::Any, &seeds).admits(&u("http://x.example/")));
    }

    #[test]
    fn html_types_and_sniffing() {
        assert!(is_html_type("text/html; charset=utf-8"));
        assert!(is_html_type("Application/XHTML+XML"));
        assert!(!is_html_type("image/png"));
        assert!(sniff_html(b"  <!DOCTYPE html><p>"));
        assert!(!sniff_html(b"\x89PNG\r\n"));
        assert!(is_binary(
            &Url::parse("http://a.example/x/photo.JPG").unwrap()
        ));
        assert!(!is_binary(
            &Url::parse("http://a.example/x/page.html").unwrap()
        ));
    }
}
