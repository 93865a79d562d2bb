//! The kernel's tick length, which the balancer's clock counts in (see
//! `lb_abi::clock`).

use std::io;

/// The tick length, ns: the resolution the kernel reports for
/// `CLOCK_MONOTONIC_COARSE`, which is its `TICK_NSEC`.
pub(crate) fn tick_ns() -> io::Result<u64> {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `res` is a valid, writable timespec.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ns = res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64;
    // A tick is 1–10 ms on every kernel build (HZ 100 to 1000); a value
    // outside a generous margin means the clock is not tick-based, and
    // every window and timeout would be off by the same factor.
    if !(100_000..=100_000_000).contains(&ns) {
        return Err(io::Error::other(format!(
            "CLOCK_MONOTONIC_COARSE resolution is {ns} ns, not a kernel tick"
        )));
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_a_whole_division_of_a_second_by_a_kernel_hz() {
        let tick = tick_ns().unwrap();
        // TICK_NSEC is 1e9 / HZ rounded to the nearest ns.
        let hz = (1_000_000_000 + tick / 2) / tick;
        assert_eq!((1_000_000_000 + hz / 2) / hz, tick, "tick {tick} ns");
        assert!((24..=1_200).contains(&hz), "HZ {hz}");
    }
}
