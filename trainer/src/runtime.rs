//! Process settings for training on the CPU: the C allocator's, and the
//! spinning of Candle's worker threads.
//!
//! A training step allocates and frees the same large tensors every step
//! (activations and gradients of up to tens of MiB each). glibc's malloc
//! returns blocks over its mmap threshold (at most 32 MiB, dynamic) to the
//! kernel when freed, so every step faults in and zeroes the same pages
//! again: 10 to 15% of the step time of the `demo` and `ViT-S-32` presets
//! on the CPU (`cargo bench -p wit-trainer --bench train`). Keeping freed
//! memory in the heap avoids it; the process's peak memory stays what the
//! largest step needs.
//!
//! Candle 0.11 runs its element-wise CPU ops on a pool of its own threads
//! besides rayon's, whose workers busy-wait 25,000 spin-loop hints
//! (`CANDLE_BARRIER_POOL_SPIN_LIMIT`) after each op before they sleep. A
//! backward pass runs hundreds of such ops (every gradient is summed into
//! a fresh zero tensor), and between them the spinning worker takes a core
//! from the matrix products on rayon's threads: 18% of the CPU time of the
//! `demo` preset on 2 cores (`perf record`), and about 9% of its samples/s.

/// Prepares this process for training on the CPU; call once, before the
/// first tensor op and before other threads are started.
///
/// - Keeps freed blocks of up to 1 GiB in the heap (glibc's
///   `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD`, mallopt(3)) instead of
///   returning them to the kernel; a no-op on other C libraries.
/// - Sets `CANDLE_BARRIER_POOL_SPIN_LIMIT` to 0 (Candle's workers sleep as
///   soon as an op is done) unless the environment sets it.
pub fn prepare_cpu_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning parameters; it is
    // safe to call at any time from any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    const SPIN: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(SPIN).is_none() {
        // SAFETY: called before other threads start (this function's
        // contract), so nothing reads the environment concurrently. Candle
        // reads the variable once, when its pool starts at the first
        // element-wise op.
        unsafe { std::env::set_var(SPIN, "0") };
    }
}
