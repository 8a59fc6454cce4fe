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
    /// Units done before this run began (resumed work), and when it began:
    /// the rate counts only this run's work.
    done_at_start: u64,
    started: Instant,
    /// The latest status the work reported (a training loss).
    status: String,
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
                done_at_start: 0,
                started: Instant::now(),
                status: String::new(),
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
        s.done_at_start = done;
        s.started = Instant::now();
        s.status.clear();
        s.last_line = Instant::now();
        if self.quiet {
            return;
        }
        if stderr_is_terminal() {
            // A total of 0 means "not known in advance" (a crawl).
            let template = if total == 0 {
                "{msg} [{elapsed_precise}] {spinner} {human_pos} ({per_sec})"
            } else {
                "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})"
            };
            let bar = bars().add(ProgressBar::new(total));
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar.set_message(label.to_string());
            bar.set_position(done);
            bar.reset_eta();
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
            tracing::info!("{}", line(&s));
        }
    }

    fn message(&self, status: &str) {
        let mut s = self.state.lock().expect("progress lock");
        // Shown beside the bar now, and in the next plain line.
        s.status = status.to_string();
        if let Some(bar) = &s.bar {
            bar.set_message(format!("{} {status}", s.label));
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

/// A plain progress line: what the bar shows, `LABEL: DONE/TOTAL done,
/// RATE/s, ETA T; STATUS` (no total, and so no ETA, where it is not known).
fn line(s: &State) -> String {
    let secs = s.started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        (s.done - s.done_at_start) as f64 / secs
    } else {
        0.0
    };
    let mut out = format!(
        "{}: {} done, {}/s",
        s.label,
        of(s.done, s.total),
        rate_text(rate)
    );
    if s.total > s.done && rate > 0.0 {
        let eta = Duration::from_secs_f64((s.total - s.done) as f64 / rate);
        out.push_str(&format!(", ETA {}", duration_text(eta)));
    }
    if !s.status.is_empty() {
        out.push_str("; ");
        out.push_str(&s.status);
    }
    out
}

/// A rate with three significant figures (more above 1000): `0.253`,
/// `12.5`, `1234`; `?` where it is not a number.
pub fn rate_text(r: f64) -> String {
    if !r.is_finite() {
        "?".into()
    } else if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 1.0 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// `45s`, `12m 03s`, `3h 07m`.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_has_the_rate_the_eta_and_the_status() {
        let mut s = State {
            bar: None,
            label: "train: steps".into(),
            total: 100,
            done: 30,
            done_at_start: 10,
            started: Instant::now() - Duration::from_secs(10),
            status: "loss 2.3026".into(),
            last_line: Instant::now(),
        };
        // 20 steps in 10 s: 2/s, 70 left: 35 s.
        let l = line(&s);
        assert!(
            l.starts_with("train: steps: 30/100 done, 2.00/s, ETA 3"),
            "{l}"
        );
        assert!(l.ends_with("s; loss 2.3026"), "{l}");
        s.total = 0;
        s.status.clear();
        assert!(!line(&s).contains("ETA"), "{}", line(&s));
        assert_eq!(duration_text(Duration::from_secs(723)), "12m 03s");
        // A large model on a CPU: well under a sample a second, not "0".
        assert_eq!(rate_text(0.4), "0.400");
        assert_eq!(rate_text(1234.4), "1234");
        assert_eq!(duration_text(Duration::from_secs(11_220)), "3h 07m");
    }
}
