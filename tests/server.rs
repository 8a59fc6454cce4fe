//! A real HTTP/1.1 server on 127.0.0.1 for crawler tests: static files from a
//! directory, or routes that misbehave on purpose (drip, reset, truncate,
//! never end). One thread per connection, one request per connection. It
//! logs every request path, so tests can check what was (not) fetched.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What the server does with a request.
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Headers, then the body one byte every `every`.
    Drip { body: Vec<u8>, every: Duration },
    /// Close the connection with a TCP reset, before any response.
    Reset,
    /// `Content-Length: declared`, then only `body`, then close.
    Truncated { declared: usize, body: Vec<u8> },
    /// A chunked HTML body that never ends (until the client goes away).
    Endless,
}

impl Reply {
    pub fn html(body: impl Into<Vec<u8>>) -> Reply {
        Reply::with_type(200, "text/html; charset=utf-8", body)
    }

    pub fn with_type(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn status(status: u16, headers: &[(&str, &str)]) -> Reply {
        Reply::Full {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }
}

type Handler = dyn Fn(&str) -> Reply + Send + Sync;

/// A running server; stops when dropped.
pub struct Server {
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// Connections accepted and not yet served to the end.
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

/// The path [`Server::quiesce`] asks for; not logged.
const QUIESCE: &str = "/__wit-test-quiesce";

impl Server {
    /// Serves `handler(path)` for every request.
    pub fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let in_flight = Arc::new((Mutex::new(0usize), Condvar::new()));
        let (log2, stop2, in_flight2) = (log.clone(), stop.clone(), in_flight.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                *in_flight2.0.lock().unwrap() += 1;
                let (handler, log, stop) = (handler.clone(), log2.clone(), stop2.clone());
                let in_flight = in_flight2.clone();
                std::thread::spawn(move || {
                    serve(conn, &*handler, &log, &stop);
                    *in_flight.0.lock().unwrap() -= 1;
                    in_flight.1.notify_all();
                });
            }
        });
        Server {
            port,
            log,
            stop,
            in_flight,
        }
    }

    /// Returns once every connection made before the call has been served
    /// (or dropped by its client) and its request logged: a request of its
    /// own goes through the accept queue behind them (first in, first out),
    /// then this waits until none is in flight.
    ///
    /// # Panics
    /// If that takes over 30 s.
    pub fn quiesce(&self) {
        let mut c =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the test server");
        c.write_all(format!("GET {QUIESCE} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let _ = std::io::Read::read_to_end(&mut c, &mut Vec::new());
        let (n, changed) = &*self.in_flight;
        let (left, _) = changed
            .wait_timeout_while(n.lock().unwrap(), Duration::from_secs(30), |n| *n > 0)
            .unwrap();
        assert_eq!(
            *left, 0,
            "connections still open 30 s after the client went away"
        );
    }

    /// Serves the files under `root` (directories give their index.html).
    pub fn files(root: PathBuf) -> Server {
        Server::start(move |path| file_reply(&root, path))
    }

    /// [`Server::files`], with the requests whose path starts with `gated`
    /// going through `gate` first.
    pub fn files_gated(root: PathBuf, gate: Arc<Gate>, gated: &'static str) -> Server {
        Server::start(move |path| {
            if path.starts_with(gated) {
                gate.pass();
            }
            file_reply(&root, path)
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// The file under `root` that `path` names, as a reply.
fn file_reply(root: &std::path::Path, path: &str) -> Reply {
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let decoded = percent_decode(path);
    if decoded.split('/').any(|s| s == "..") {
        return Reply::status(400, &[]);
    }
    let mut file = root.join(decoded.trim_start_matches('/'));
    if file.is_dir() {
        file = file.join("index.html");
    }
    match std::fs::read(&file) {
        Ok(body) => {
            let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
            Reply::with_type(200, content_type(ext), body)
        }
        Err(_) => Reply::with_type(404, "text/html", "<h1>Not Found</h1>"),
    }
}

/// A barrier on a server's requests that a test opens and closes: while
/// closed, requests wait (their clients see a server that does not answer)
/// until the test opens it, so the test knows, without sleeping, that work
/// is in flight and cannot finish.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// Requests wait once `allowance` is spent.
    closing: bool,
    /// Requests still let through before closing.
    allowance: usize,
    /// Requests waiting now.
    held: usize,
}

impl Gate {
    /// Lets `n` more requests through, then holds the rest until [`Gate::open`].
    pub fn close_after(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        (s.closing, s.allowance) = (true, n);
    }

    /// Lets every request through, the held ones too.
    pub fn open(&self) {
        self.state.lock().unwrap().closing = false;
        self.changed.notify_all();
    }

    /// Waits until `n` requests are held; false if `timeout` passes first.
    pub fn wait_held(&self, n: usize, timeout: Duration) -> bool {
        let s = self.state.lock().unwrap();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.held < n)
            .unwrap();
        s.held >= n
    }

    /// Called for each gated request: returns when it may go on.
    pub fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        if !s.closing {
            return;
        }
        if s.allowance > 0 {
            s.allowance -= 1;
            return;
        }
        s.held += 1;
        self.changed.notify_all();
        let mut s = self.changed.wait_while(s, |s| s.closing).unwrap();
        s.held -= 1;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn content_type(ext: &str) -> &'static str {
    match ext {
        "html" | "htm" => "text/html; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "css" => "text/css",
        "js" => "application/javascript",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(mut conn: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    // The rest of the head.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    if path == QUIESCE {
        let _ = conn.write_all(b"HTTP/1.1 204 X\r\nConnection: close\r\n\r\n");
        return;
    }
    log.lock().unwrap().push(path.clone());
    match handler(&path) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("Connection: close\r\n\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
        Reply::Drip { body, every } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            for b in body {
                if conn.write_all(&[b]).is_err() || stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(every);
            }
        }
        Reply::Reset => return reset(conn),
        Reply::Truncated { declared, body } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
        Reply::Endless => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let _ = conn.write_all(head.as_bytes());
            let chunk = format!(
                "{:x}\r\n{}\r\n",
                4096,
                "<p>again</p>".repeat(4096 / 12) + "    "
            );
            while !stop.load(Ordering::SeqCst) && conn.write_all(chunk.as_bytes()).is_ok() {}
        }
    }
    let _ = conn.flush();
}

/// Closes with RST: SO_LINGER on with a zero timeout, then close.
fn reset(conn: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}
