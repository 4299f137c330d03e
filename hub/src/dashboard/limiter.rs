//! Sign-in throttling: failed attempts are counted per name and per client address over a sliding
//! window; past the limit, sign-in answers 429 until the oldest failure leaves the window. Kept in
//! memory (a restart forgives), pure apart from the caller's clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Failures allowed per name in [`WINDOW_MS`].
pub const PER_NAME: usize = 5;
/// Failures allowed per client address in [`WINDOW_MS`] (an office behind one NAT shares it).
pub const PER_ADDRESS: usize = 20;
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

/// Counts recent failures by key ("name:…", "ip:…").
#[derive(Debug, Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Limiter {
    /// Milliseconds to wait before another try for these keys, or `None` when a try is allowed.
    pub fn blocked(&self, keys: &[(String, usize)], now_ms: i64) -> Option<i64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|(key, limit)| {
                let q = map.get_mut(key)?;
                while q.front().is_some_and(|t| *t <= now_ms - WINDOW_MS) {
                    q.pop_front();
                }
                (q.len() >= *limit).then(|| q.front().map_or(0, |t| t + WINDOW_MS - now_ms))
            })
            .max()
    }

    /// Records a failed attempt under each key.
    pub fn failed(&self, keys: &[(String, usize)], now_ms: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the memory an attacker can make us use: forget everything stale first.
        if map.len() > 100_000 {
            map.retain(|_, q| q.back().is_some_and(|t| *t > now_ms - WINDOW_MS));
        }
        for (key, limit) in keys {
            let q = map.entry(key.clone()).or_default();
            q.push_back(now_ms);
            while q.len() > *limit {
                q.pop_front();
            }
        }
    }

    /// A successful sign-in clears the name's count (not the address's).
    pub fn succeeded(&self, name_key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(name_key);
    }
}

/// The keys a sign-in attempt is counted under.
pub fn keys(name: &str, address: &str) -> Vec<(String, usize)> {
    vec![
        (format!("name:{}", name.trim().to_lowercase()), PER_NAME),
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
            assert_eq!(l.blocked(&k, i * 1000), None, "try {i}");
            l.failed(&k, i * 1000);
        }
        assert_eq!(l.blocked(&k, 5_000), Some(WINDOW_MS - 5_000));
        // Another name from another address is not affected.
        assert_eq!(l.blocked(&keys("li", "10.0.0.2"), 5_000), None);
        // The same name from elsewhere is.
        assert!(l.blocked(&keys("WANG", "10.0.0.3"), 5_000).is_some());
        // The first failure leaves the window: one more try.
        assert_eq!(l.blocked(&k, WINDOW_MS + 1), None);
    }

    #[test]
    fn an_address_trying_many_names_is_blocked() {
        let l = Limiter::default();
        for i in 0..PER_ADDRESS {
            let k = keys(&format!("user{i}"), "10.0.0.9");
            assert_eq!(l.blocked(&k, 0), None);
            l.failed(&k, 0);
        }
        assert!(l.blocked(&keys("someone-else", "10.0.0.9"), 1).is_some());
    }

    #[test]
    fn success_clears_the_name() {
        let l = Limiter::default();
        let k = keys("wang", "a");
        for _ in 0..4 {
            l.failed(&k, 0);
        }
        l.succeeded(&k[0].0);
        l.failed(&k, 0);
        assert_eq!(l.blocked(&k, 0), None);
    }
}
