//! The C allocator's settings for training.
//!
//! A training step allocates and frees the same large tensors every step
//! (activations and gradients of up to tens of MiB each). glibc's malloc
//! returns blocks over its mmap threshold (at most 32 MiB, dynamic) to the
//! kernel when freed, so every step faults in and zeroes the same pages
//! again: 10 to 15% of the step time of the `demo` and `ViT-S-32` presets
//! on the CPU (`cargo bench -p wit-trainer --bench train`). Keeping freed
//! memory in the heap avoids it; the process's peak memory stays what the
//! largest step needs.

/// Keeps freed blocks of up to 1 GiB in the process's heap (glibc's
/// `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD`, mallopt(3)) instead of
/// returning them to the kernel. Call once, before training; a no-op on
/// other C libraries.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning parameters; it is
    // safe to call at any time from any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
