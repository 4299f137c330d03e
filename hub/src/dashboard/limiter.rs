//! Sign-in throttling: failed attempts are counted per name *from* a client address, and per client
//! address, over a sliding window (a stranger guessing a name from elsewhere cannot lock its owner
//! out: the owner's address has its own count); past the limit, sign-in answers 429 until the oldest failure leaves the window. Each
//! attempt is counted before its password is checked and taken back when it succeeds, so parallel
//! guesses cannot race past the limit. Kept in memory (a restart forgives); the caller's clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Failures allowed per name and client address in [`WINDOW_MS`].
pub const PER_NAME: usize = 5;
/// Failures allowed per client address in [`WINDOW_MS`] (an office behind one NAT shares it).
pub const PER_ADDRESS: usize = 20;
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

/// Counts recent failures by key ("name:…@address", "ip:…").
#[derive(Debug, Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Limiter {
    /// Counts an attempt under each key before the password is checked (so that attempts made in
    /// parallel cannot all slip under the limit), or says how many milliseconds to wait when a key
    /// is at its limit (nothing is counted then).
    pub fn attempt(&self, keys: &[(String, usize)], now_ms: i64) -> Result<(), i64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys
            .iter()
            .filter_map(|(key, limit)| {
                let q = map.get_mut(key)?;
                while q.front().is_some_and(|t| *t <= now_ms - WINDOW_MS) {
                    q.pop_front();
                }
                (q.len() >= *limit).then(|| q.front().map_or(0, |t| t + WINDOW_MS - now_ms))
            })
            .max();
        if let Some(wait) = wait {
            return Err(wait.max(1));
        }
        // Bound the memory an attacker can make us use: forget everything stale first.
        if map.len() > 100_000 {
            map.retain(|_, q| q.back().is_some_and(|t| *t > now_ms - WINDOW_MS));
        }
        for (key, _) in keys {
            map.entry(key.clone()).or_default().push_back(now_ms);
        }
        Ok(())
    }

    /// The attempt made at `at` succeeded: the name's count is cleared, and the attempt no longer
    /// counts against the address.
    pub fn succeeded(&self, keys: &[(String, usize)], at: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (n, (key, _)) in keys.iter().enumerate() {
            if n == 0 {
                map.remove(key);
            } else if let Some(q) = map.get_mut(key) {
                if let Some(pos) = q.iter().rposition(|t| *t == at) {
                    q.remove(pos);
                }
            }
        }
    }
}

/// The keys a sign-in attempt is counted under. Names are cut to 64 characters (no account has a
/// longer one), so that made-up megabyte names cannot fill memory.
pub fn keys(name: &str, address: &str) -> Vec<(String, usize)> {
    let name: String = name.trim().chars().take(64).collect();
    vec![
        (format!("name:{}@{address}", name.to_lowercase()), PER_NAME),
        (format!("ip:{address}"), PER_ADDRESS),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_for_a_name_block_it_for_the_rest_of_the_window() {
        let l = Limiter::default();
        let k = keys("wang", "10.0.0.1");
        for i in 0..5 {
            assert_eq!(l.attempt(&k, i * 1000), Ok(()), "try {i}");
        }
        assert_eq!(l.attempt(&k, 5_000), Err(WINDOW_MS - 5_000));
        // Another name from another address is not affected.
        assert_eq!(l.attempt(&keys("li", "10.0.0.2"), 5_000), Ok(()));
        // The same name from the same address is, whatever its case.
        assert!(l.attempt(&keys("WANG", "10.0.0.1"), 5_000).is_err());
        // The same name from elsewhere (its owner at the office) is not.
        assert_eq!(l.attempt(&keys("wang", "10.0.0.3"), 5_000), Ok(()));
        // The first failure leaves the window: one more try.
        assert_eq!(l.attempt(&k, WINDOW_MS + 1), Ok(()));
        assert!(l.attempt(&k, WINDOW_MS + 2).is_err());
    }

    #[test]
    fn keys_are_bounded() {
        let k = keys(&"x".repeat(1_000_000), "a");
        assert!(k[0].0.len() <= 72, "{}", k[0].0.len());
    }

    #[test]
    fn an_address_trying_many_names_is_blocked() {
        let l = Limiter::default();
        for i in 0..PER_ADDRESS {
            assert_eq!(l.attempt(&keys(&format!("user{i}"), "10.0.0.9"), 0), Ok(()));
        }
        assert!(l.attempt(&keys("someone-else", "10.0.0.9"), 1).is_err());
    }

    #[test]
    fn success_clears_the_name_and_does_not_count_against_the_address() {
        let l = Limiter::default();
        let k = keys("wang", "a");
        for t in 0..4 {
            l.attempt(&k, t).unwrap();
        }
        l.attempt(&k, 10).unwrap();
        l.succeeded(&k, 10);
        for t in 0..4 {
            assert_eq!(l.attempt(&k, 20 + t), Ok(()));
        }
        // The address holds the 4 + 4 failures, not the success.
        for i in 0..PER_ADDRESS - 8 {
            assert_eq!(l.attempt(&keys(&format!("u{i}"), "a"), 30), Ok(()), "{i}");
        }
        assert!(l.attempt(&keys("v", "a"), 31).is_err());
    }
}
