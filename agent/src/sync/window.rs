//! The send window: which seq to send next, what is in flight, and what an ack or a timeout means.
//!
//! Pure state (time is passed in), so every case is a unit test. The rule it keeps: after any doubt
//! — a reconnect, an ack timeout, or repeated acks that show the hub is missing a batch — send
//! again from the last acknowledged seq. The hub dedupes by seq, so re-sending is always safe;
//! waiting on the broker to re-deliver is not (rumqttc drops its queue on a session-less reconnect).
//!
//! A second rule guards what an ack may delete: never past the newest seq this box has *sent*.
//! An ack beyond it is refused whole, even sealed by the hub (a hub that claims what it was never
//! sent is wrong, and deleting on its word would lose events). All seq arithmetic saturates: no
//! value in an ack can overflow it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What an incoming ack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The hub committed more: delete through this seq.
    Advanced(u64),
    /// Nothing new; nothing to do.
    Stale,
    /// The hub is missing a batch: sending again from the last ack.
    Rewound,
    /// Past the newest seq sent (`sent`): refused, nothing changes.
    BeyondSent { through: u64, sent: u64 },
}

#[derive(Debug)]
pub struct Window {
    acked: u64,
    next: u64,
    /// The newest seq handed to MQTT since start (at least `acked`).
    sent_max: u64,
    in_flight: VecDeque<(u64, u64)>,
    capacity: usize,
    connected: bool,
    last_progress: Instant,
    ack_timeout: Duration,
    stale_acks: u32,
    /// Stale acks still expected for batches sent before the last rewind; they prove nothing.
    ignore_stale: usize,
}

impl Window {
    /// A window whose hub has acknowledged through `acked`.
    pub fn new(acked: u64, capacity: usize, ack_timeout: Duration, now: Instant) -> Window {
        Window {
            acked,
            next: acked.saturating_add(1),
            sent_max: acked,
            in_flight: VecDeque::new(),
            capacity: capacity.max(1),
            connected: false,
            last_progress: now,
            ack_timeout,
            stale_acks: 0,
            ignore_stale: 0,
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The first seq of the next batch to send.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// True when another batch may be sent now.
    pub fn can_send(&self) -> bool {
        self.connected && self.in_flight.len() < self.capacity
    }

    /// The broker accepted our session: everything unacknowledged goes again.
    pub fn connected(&mut self, now: Instant) {
        self.connected = true;
        self.rewind(now);
    }

    pub fn disconnected(&mut self) {
        self.connected = false;
        self.ignore_stale += self.in_flight.len();
        self.in_flight.clear();
    }

    /// A batch `first..=last` was handed to MQTT.
    pub fn sent(&mut self, first: u64, last: u64, now: Instant) {
        if self.in_flight.is_empty() {
            // The ack clock starts when there is something to wait for.
            self.last_progress = now;
        }
        self.in_flight.push_back((first, last));
        self.next = last.saturating_add(1);
        self.sent_max = self.sent_max.max(last);
    }

    /// The newest seq sent so far.
    pub fn sent_max(&self) -> u64 {
        self.sent_max
    }

    pub fn on_ack(&mut self, through: u64, now: Instant) -> AckOutcome {
        if through > self.sent_max {
            return AckOutcome::BeyondSent {
                through,
                sent: self.sent_max,
            };
        }
        if through > self.acked {
            self.acked = through;
            while self
                .in_flight
                .front()
                .is_some_and(|&(_, last)| last <= through)
            {
                self.in_flight.pop_front();
            }
            if let Some(front) = self.in_flight.front_mut() {
                front.0 = front.0.max(through.saturating_add(1));
            }
            self.next = self.next.max(through.saturating_add(1));
            self.last_progress = now;
            self.stale_acks = 0;
            self.ignore_stale = 0;
            return AckOutcome::Advanced(through);
        }
        if self.ignore_stale > 0 {
            self.ignore_stale -= 1;
            return AckOutcome::Stale;
        }
        if self.in_flight.is_empty() {
            return AckOutcome::Stale;
        }
        // An ack that does not advance while batches are in flight answers a batch the hub could not
        // apply because one before it is missing. Two in a row make that certain.
        self.stale_acks += 1;
        if self.stale_acks >= 2 {
            self.rewind(now);
            return AckOutcome::Rewound;
        }
        AckOutcome::Stale
    }

    /// Call now and then: true when the ack timeout ran out and the window was rewound.
    pub fn on_tick(&mut self, now: Instant) -> bool {
        if !self.in_flight.is_empty() && now.duration_since(self.last_progress) >= self.ack_timeout
        {
            self.rewind(now);
            return true;
        }
        false
    }

    fn rewind(&mut self, now: Instant) {
        self.ignore_stale += self.in_flight.len();
        self.in_flight.clear();
        self.next = self.acked.saturating_add(1);
        self.last_progress = now;
        self.stale_acks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn window() -> (Window, Instant) {
        let now = Instant::now();
        let mut w = Window::new(100, 2, T, now);
        w.connected(now);
        (w, now)
    }

    #[test]
    fn sends_from_the_last_ack_and_fills_the_window() {
        let (mut w, now) = window();
        assert_eq!(w.next_seq(), 101);
        w.sent(101, 150, now);
        assert!(w.can_send());
        w.sent(151, 200, now);
        assert!(!w.can_send());
        assert_eq!(w.on_ack(150, now), AckOutcome::Advanced(150));
        assert!(w.can_send());
        assert_eq!(w.next_seq(), 201);
    }

    #[test]
    fn a_reconnect_resends_everything_unacked() {
        let (mut w, now) = window();
        w.sent(101, 150, now);
        w.sent(151, 200, now);
        w.disconnected();
        assert!(!w.can_send());
        w.connected(now);
        assert_eq!(w.next_seq(), 101);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn an_ack_timeout_rewinds_once() {
        let (mut w, now) = window();
        w.sent(101, 150, now);
        assert!(!w.on_tick(now + T / 2));
        assert!(w.on_tick(now + T));
        assert_eq!(w.next_seq(), 101);
        assert!(!w.on_tick(now + T), "nothing in flight after the rewind");
    }

    #[test]
    fn repeated_stale_acks_mean_the_hub_missed_a_batch() {
        let (mut w, now) = window();
        w.sent(101, 150, now); // lost on the way
        w.sent(151, 200, now);
        assert_eq!(w.on_ack(100, now), AckOutcome::Stale);
        w.sent(201, 250, now);
        assert_eq!(w.on_ack(100, now), AckOutcome::Rewound);
        assert_eq!(w.next_seq(), 101);
        // Acks still queued for the old sends do not rewind again until progress is made.
        w.sent(101, 150, now);
        assert_eq!(w.on_ack(100, now), AckOutcome::Stale);
        assert_eq!(w.on_ack(100, now), AckOutcome::Stale);
        assert_eq!(w.on_ack(150, now), AckOutcome::Advanced(150));
    }

    #[test]
    fn an_ack_past_what_was_sent_is_refused_whole() {
        let (mut w, now) = window();
        w.sent(101, 150, now);
        assert_eq!(
            w.on_ack(180, now),
            AckOutcome::BeyondSent {
                through: 180,
                sent: 150
            }
        );
        assert_eq!((w.acked(), w.next_seq(), w.in_flight()), (100, 151, 1));
        for through in [u64::MAX, u64::MAX - 1, 151] {
            assert!(matches!(
                w.on_ack(through, now),
                AckOutcome::BeyondSent { .. }
            ));
        }
        // After a restart nothing was sent yet: any ack past the last one is refused.
        let mut fresh = Window::new(100, 2, T, now);
        fresh.connected(now);
        assert!(matches!(
            fresh.on_ack(101, now),
            AckOutcome::BeyondSent { .. }
        ));
        assert_eq!(w.on_ack(150, now), AckOutcome::Advanced(150));
    }

    #[test]
    fn no_value_overflows() {
        let now = Instant::now();
        let mut w = Window::new(u64::MAX, 1, T, now);
        w.connected(now);
        assert_eq!(w.next_seq(), u64::MAX);
        w.sent(u64::MAX, u64::MAX, now);
        assert_eq!(w.on_ack(u64::MAX, now), AckOutcome::Stale);
        assert!(w.on_tick(now + T));
    }

    proptest::proptest! {
        /// Whatever acks arrive, the window never claims more than was sent, and never panics.
        #[test]
        fn acks_never_pass_what_was_sent(
            sends in proptest::collection::vec(1u64..50, 0..10),
            acks in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..20),
        ) {
            let now = Instant::now();
            let mut w = Window::new(0, 4, T, now);
            w.connected(now);
            let mut next = 1u64;
            for n in sends {
                if w.can_send() {
                    w.sent(next, next + n - 1, now);
                    next += n;
                }
            }
            for a in acks {
                let before = w.acked();
                match w.on_ack(a, now) {
                    AckOutcome::Advanced(t) => proptest::prop_assert!(t == a && t <= w.sent_max()),
                    _ => proptest::prop_assert_eq!(w.acked(), before),
                }
                proptest::prop_assert!(w.acked() <= w.sent_max());
            }
        }
    }

    #[test]
    fn a_partial_ack_trims_the_front_batch() {
        let (mut w, now) = window();
        w.sent(101, 150, now);
        assert_eq!(w.on_ack(120, now), AckOutcome::Advanced(120));
        assert_eq!(w.in_flight(), 1);
        assert_eq!(w.on_ack(150, now), AckOutcome::Advanced(150));
        assert_eq!(w.in_flight(), 0);
    }
}
