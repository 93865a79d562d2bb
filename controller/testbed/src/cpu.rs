//! Keeping the calling thread on one CPU.

/// Keeps this thread on `cpu`: `BPF_PROG_TEST_RUN` runs the program on the
/// caller's CPU, and some dataplane state (per-CPU counters, the flow
/// cache) is per CPU. Panics if the kernel refuses (no such CPU).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one),
            0,
            "pin to CPU {cpu}"
        );
    }
}
