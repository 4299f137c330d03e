//! The send window: which seq to send next, what is in flight, and what an ack or a timeout means.
//!
//! Pure state (time is passed in), so every case is a unit test. The rule it keeps: after any doubt
//! — a reconnect, an ack timeout, or repeated acks that show the hub is missing a batch — send
//! again from the last acknowledged seq. The hub dedupes by seq, so re-sending is always safe;
//! waiting on the broker to re-deliver is not (rumqttc drops its queue on a session-less reconnect).

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
}

#[derive(Debug)]
pub struct Window {
    acked: u64,
    next: u64,
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
            next: acked + 1,
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
        self.next = last + 1;
    }

    pub fn on_ack(&mut self, through: u64, now: Instant) -> AckOutcome {
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
                front.0 = front.0.max(through + 1);
            }
            self.next = self.next.max(through + 1);
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
        self.next = self.acked + 1;
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
    fn an_ack_past_what_was_sent_moves_next_forward() {
        // After a restart the hub may already hold what the outbox still lists.
        let (mut w, now) = window();
        w.sent(101, 150, now);
        assert_eq!(w.on_ack(180, now), AckOutcome::Advanced(180));
        assert_eq!(w.next_seq(), 181);
        assert_eq!(w.in_flight(), 0);
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
