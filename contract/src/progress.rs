//! Progress reporting from library code, without a terminal dependency.
//!
//! Libraries report through this trait; the `wit` binary implements it with
//! progress bars on a terminal and plain log lines elsewhere.

/// Receives progress of long work. All methods may be called from several threads.
pub trait Progress: Sync {
    /// Work on `total` units named `label` begins; `done` of them are already done.
    fn start(&self, label: &str, total: u64, done: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The work is over (successfully or not).
    fn finish(&self);
    /// A short status of the work (a training loss, a rate), shown beside
    /// the bar; ignored by default.
    fn message(&self, _status: &str) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
