//! The limit on too-big replies: a per-CPU token bucket. RFC 4443 §2.4(f)
//! makes rate-limiting ICMPv6 errors a must; ICMP fragmentation-needed
//! replies get the same, so that spoofed oversized packets cannot turn the
//! balancer into a reflector.
//!
//! Map [`REPLY_BUCKET`]: per-CPU array of one [`ReplyBucket`]. Global
//! [`REPLY_COST_NS`]: the credit one reply costs, one second divided by
//! the replies allowed per second per CPU (0: no limit). Credit accrues
//! with time, up to [`REPLY_BURST_NS`]: a burst of one second's worth.
//! Written and read by the balancer only.

/// Name of the bucket map in the eBPF object.
pub const REPLY_BUCKET: &str = "REPLY_BUCKET";
/// Name of the global holding the cost of one reply, ns.
pub const REPLY_COST_NS: &str = "REPLY_COST_NS";
/// Most credit a bucket holds, ns.
pub const REPLY_BURST_NS: u64 = 1_000_000_000;

/// One CPU's bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReplyBucket {
    /// Credit left, ns.
    pub credit_ns: u64,
    /// When credit was last added, ns on the balancer's clock.
    pub last_ns: u64,
}

impl ReplyBucket {
    /// Asks for one reply at `now` that costs `cost_ns`: credit is added
    /// for the time since the last request (a fresh bucket starts full),
    /// and taken if there is enough. Returns whether the reply may go.
    #[inline(always)]
    pub fn admit(&mut self, now: u64, cost_ns: u64) -> bool {
        let earned = now.wrapping_sub(self.last_ns);
        self.last_ns = now;
        let credit = self.credit_ns.saturating_add(earned);
        self.credit_ns = if credit > REPLY_BURST_NS {
            REPLY_BURST_NS
        } else {
            credit
        };
        if self.credit_ns < cost_ns {
            return false;
        }
        self.credit_ns -= cost_ns;
        true
    }
}

/// The cost of one reply for `per_second` replies per second (0: free).
pub const fn reply_cost_ns(per_second: u32) -> u64 {
    if per_second == 0 {
        0
    } else {
        REPLY_BURST_NS / per_second as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_seconds_worth_then_the_rate() {
        let cost = reply_cost_ns(10);
        let mut b = ReplyBucket::default();
        let now = 5_000_000_000;
        let burst = (0..30).filter(|_| b.admit(now, cost)).count();
        assert_eq!(burst, 10, "a fresh bucket is full");
        assert!(!b.admit(now + cost / 2, cost));
        assert!(b.admit(now + cost, cost), "credit for one more");
        assert!(!b.admit(now + cost, cost));
        // A long idle spell earns no more than the burst.
        let later = now + 60 * REPLY_BURST_NS;
        assert_eq!((0..30).filter(|_| b.admit(later, cost)).count(), 10);
        assert!(ReplyBucket::default().admit(0, reply_cost_ns(0)));
    }
}
