//! Logs and progress: tracing to stderr, and indicatif bars on a terminal.
//!
//! Log lines are written through the progress bars' `suspend`, so they never
//! tear a bar. When stderr is not a terminal there are no bars: progress is
//! logged as plain lines, at most one every ten seconds per task.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::level_filters::LevelFilter;
use wit_contract::Progress;

fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Sets up logging at the level given by -v/-q counts.
pub fn init_logging(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => LevelFilter::INFO,
        (1, _) => LevelFilter::DEBUG,
        (v, _) if v >= 2 => LevelFilter::TRACE,
        (_, 1) => LevelFilter::WARN,
        (_, _) => LevelFilter::ERROR,
    };
    let tty = stderr_is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(tty)
        .with_writer(|| LogLine(Vec::new()));
    if tty {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// One log line, written to stderr in one piece when dropped, with the
/// progress bars hidden meanwhile.
struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        bars().suspend(|| {
            let _ = std::io::stderr().lock().write_all(&line);
        });
    }
}

/// Progress of one task at a time: a bar on a terminal, log lines elsewhere.
pub struct Reporter {
    state: Mutex<State>,
    quiet: bool,
}

struct State {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    last_line: Instant,
}

impl Reporter {
    /// A reporter; `quiet` turns bars and progress lines off.
    pub fn new(quiet: bool) -> Reporter {
        Reporter {
            state: Mutex::new(State {
                bar: None,
                label: String::new(),
                total: 0,
                done: 0,
                last_line: Instant::now(),
            }),
            quiet,
        }
    }
}

const LINE_EVERY: Duration = Duration::from_secs(10);

impl Progress for Reporter {
    fn start(&self, label: &str, total: u64, done: u64) {
        let mut s = self.state.lock().expect("progress lock");
        s.label = label.to_string();
        s.total = total;
        s.done = done;
        s.last_line = Instant::now();
        if self.quiet {
            return;
        }
        if stderr_is_terminal() {
            // A total of 0 means "not known in advance" (a crawl without a page limit).
            let template = if total == 0 {
                "{msg} [{elapsed_precise}] {spinner} {pos} ({per_sec})"
            } else {
                "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})"
            };
            let bar = bars().add(ProgressBar::new(total));
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar.set_message(label.to_string());
            bar.set_position(done);
            bar.enable_steady_tick(Duration::from_millis(200));
            s.bar = Some(bar);
        } else {
            tracing::info!("{label}: {} done, starting", of(done, total));
        }
    }

    fn advance(&self, n: u64) {
        let mut s = self.state.lock().expect("progress lock");
        s.done += n;
        if let Some(bar) = &s.bar {
            bar.inc(n);
        } else if !self.quiet && (s.last_line.elapsed() >= LINE_EVERY || s.done == s.total) {
            s.last_line = Instant::now();
            tracing::info!("{}: {} done", s.label, of(s.done, s.total));
        }
    }

    fn message(&self, status: &str) {
        let mut s = self.state.lock().expect("progress lock");
        if let Some(bar) = &s.bar {
            bar.set_message(format!("{} {status}", s.label));
        } else if !self.quiet && s.last_line.elapsed() >= LINE_EVERY {
            s.last_line = Instant::now();
            tracing::info!("{}: {}, {status}", s.label, of(s.done, s.total));
        }
    }

    fn finish(&self) {
        let mut s = self.state.lock().expect("progress lock");
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
            bars().remove(&bar);
        }
    }
}

/// `done/total`, or `done` where the total is not known (0).
fn of(done: u64, total: u64) -> String {
    if total == 0 {
        done.to_string()
    } else {
        format!("{done}/{total}")
    }
}
