//! The primary's write lease and the standby's wait before a promotion
//! that relies on it, on monotonic clocks in microseconds.
//!
//! Owns: the arithmetic. Does not own: the clocks (the caller passes
//! `Instant`-derived microseconds), what happens when the lease runs out
//! (the primary refuses writes: it fences itself), or when to promote.
//!
//! The primary's lease runs until the *send* time of the newest chunk or
//! heartbeat the standby has acknowledged, plus `lease`: a slow network or
//! a slow ack can only shorten it, never stretch it. The standby hears
//! each of those messages after it was sent, so `last heard + lease` on its
//! clock is later than the primary's expiry; it waits `lease × (1 +
//! drift)` after the last message it heard to cover the two clocks' rate
//! difference. A primary that was stopped (SIGSTOP) past its lease finds
//! it expired when it resumes and accepts no write.

/// The primary's write lease.
#[derive(Clone, Debug)]
pub struct Lease {
    lease_us: u64,
    until_us: Option<u64>,
}

impl Lease {
    /// No lease yet; `lease_ms` is the configured length.
    pub fn new(lease_ms: u64) -> Lease {
        Lease {
            lease_us: lease_ms * 1000,
            until_us: None,
        }
    }

    /// An ack echoed a message sent at `sent_at_us` (this node's clock).
    pub fn renew(&mut self, sent_at_us: u64) {
        let until = sent_at_us.saturating_add(self.lease_us);
        self.until_us = Some(self.until_us.map_or(until, |u| u.max(until)));
    }

    /// Whether writes may be accepted at `now_us`.
    pub fn valid(&self, now_us: u64) -> bool {
        self.until_us.is_some_and(|u| now_us < u)
    }

    /// Milliseconds left at `now_us` (0 when expired or never held).
    pub fn left_ms(&self, now_us: u64) -> u64 {
        self.until_us.map_or(0, |u| u.saturating_sub(now_us) / 1000)
    }
}

/// The standby's view: when a promotion that waits for the old primary's
/// lease may accept writes.
#[derive(Clone, Debug)]
pub struct PromotionWait {
    wait_us: u64,
    last_heard_us: Option<u64>,
}

impl PromotionWait {
    /// `lease_ms` as the primary has it; `drift` the bound on the two
    /// clocks' rate difference (0.1 = 10 %).
    pub fn new(lease_ms: u64, drift: f64) -> PromotionWait {
        PromotionWait {
            wait_us: ((lease_ms * 1000) as f64 * (1.0 + drift.max(0.0))).ceil() as u64,
            last_heard_us: None,
        }
    }

    /// A chunk or heartbeat from the primary arrived at `now_us` (this
    /// node's clock).
    pub fn heard(&mut self, now_us: u64) {
        self.last_heard_us = Some(self.last_heard_us.map_or(now_us, |h| h.max(now_us)));
    }

    /// The earliest time a promoted standby may accept writes without the
    /// operator asserting that the primary is down. Never heard from it:
    /// no lease rests on this standby's acks, so at once.
    pub fn writes_allowed_at_us(&self) -> u64 {
        self.last_heard_us.map_or(0, |h| h.saturating_add(self.wait_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_runs_from_the_send_time_and_only_grows() {
        let mut l = Lease::new(2000);
        assert!(!l.valid(0), "no lease before the first ack");
        l.renew(1_000_000);
        assert!(l.valid(2_999_999) && !l.valid(3_000_000));
        assert_eq!(l.left_ms(2_500_000), 500);
        // An ack of an older message (reordered) does not shorten it.
        l.renew(500_000);
        assert!(l.valid(2_999_999));
        // A primary stopped past its lease resumes expired.
        assert!(!l.valid(10_000_000) && l.left_ms(10_000_000) == 0);
    }

    #[test]
    fn the_standby_waits_lease_times_one_plus_drift_after_the_last_message() {
        let mut w = PromotionWait::new(2000, 0.1);
        assert_eq!(w.writes_allowed_at_us(), 0, "never heard: at once");
        w.heard(5_000_000);
        w.heard(4_000_000);
        assert_eq!(w.writes_allowed_at_us(), 5_000_000 + 2_200_000);
        // The primary's lease, renewed by the ack of a message sent before
        // the standby heard it, always ends first.
        let mut l = Lease::new(2000);
        l.renew(4_900_000);
        assert!(!l.valid(w.writes_allowed_at_us()));
    }
}
