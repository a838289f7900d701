//! glibc malloc tuning for the project's long-running processes.

/// Keeps the memory a process frees for its next allocations instead of handing it back to
/// the kernel and taking it again, page fault by page fault.
///
/// With glibc's defaults a buffer of 128 KiB or more is mapped afresh (its pages zeroed by
/// the kernel on first touch) until freed mappings have raised the dynamic mmap threshold,
/// and the top of the heap is handed back with `brk` whenever more than the (dynamic)
/// trim threshold is free, to be faulted in again by the next allocations. The project's
/// processes allocate such buffers in a loop:
///
/// - `snl-train`: libtorch allocates CPU tensors with glibc's malloc; in ResNet-20's step
///   (batch 128) the defaults cost about 26 `brk` calls and 42,000 page faults (165 MB
///   zeroed by the kernel) per step, several percent of the step and most of snl-train's
///   gap to PyTorch, whose heap stays at its peak (`docs/training.md`);
/// - `pi-server`, `pi-client` and `snl-bench`: every online layer allocates its shares,
///   requests and answers (a ResNet-20 layer's 16,384 positions are 128 KiB of `u64`), so
///   each inference maps and faults in its working set again (`docs/runtime.md`); the
///   fixed-point executor of `snl-model eval` likewise, per image.
///
/// This raises the trim threshold to 1 GiB and fixes the mmap threshold at glibc's
/// largest, 32 MiB (setting either turns glibc's dynamic adjustment off). Buffers of 32 MiB and more are still
/// mapped and unmapped each time. The cost is that up to 1 GiB of freed memory stays in
/// the process, which its next step or inference reuses. If `MALLOC_TRIM_THRESHOLD_` or
/// `MALLOC_MMAP_THRESHOLD_` is set, the environment's choice is kept. Call it once, first
/// thing in `main`. Does nothing on non-glibc targets.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        {
            return;
        }
        // SAFETY: mallopt only changes glibc malloc's tuning parameters; both values are
        // in the ranges glibc accepts (the mmap threshold at most 32 MiB on 64-bit).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
