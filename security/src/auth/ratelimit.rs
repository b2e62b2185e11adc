//! Login rate limiting per (username, IP address), in bounded memory.
//!
//! Each key gets `max_failures` failed attempts per `window`; further attempts are
//! refused until the window that started with the first failure ends. A success clears
//! the key. The table holds at most `capacity` keys: when full, expired keys go first,
//! then the key whose window started earliest (so a flood of fresh usernames can evict
//! old entries, but can never grow memory).
//!
//! Time is passed in (`Instant`), so tests need no sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::AuthError;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
}

/// The limiter. Not synchronised: the server keeps it behind a mutex held only for the
/// table update (never across `.await` or argon2 work).
#[derive(Debug)]
pub struct LoginRateLimiter {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    entries: HashMap<(String, IpAddr), Entry>,
}

impl LoginRateLimiter {
    /// `max_failures` per `window` per key, at most `capacity` keys remembered.
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// Defaults: 5 failures per 15 minutes, 10,000 keys.
    pub fn default_policy() -> Self {
        Self::new(5, Duration::from_secs(15 * 60), 10_000)
    }

    fn key(username: &str, ip: IpAddr) -> (String, IpAddr) {
        (
            username.chars().take(64).collect::<String>().to_lowercase(),
            ip,
        )
    }

    /// Call before verifying a password: `Err(RateLimited)` means do not even try.
    pub fn check(&mut self, username: &str, ip: IpAddr, now: Instant) -> Result<(), AuthError> {
        let key = Self::key(username, ip);
        if let Some(e) = self.entries.get(&key) {
            let ends = e.window_start + self.window;
            if now >= ends {
                self.entries.remove(&key);
            } else if e.failures >= self.max_failures {
                return Err(AuthError::RateLimited {
                    retry_after_secs: (ends - now).as_secs().max(1),
                });
            }
        }
        Ok(())
    }

    /// Records a failed attempt.
    pub fn record_failure(&mut self, username: &str, ip: IpAddr, now: Instant) {
        let key = Self::key(username, ip);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let window = self.window;
        let e = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            window_start: now,
        });
        if now >= e.window_start + window {
            *e = Entry {
                failures: 0,
                window_start: now,
            };
        }
        e.failures = e.failures.saturating_add(1);
    }

    /// Records a success: the key starts clean.
    pub fn record_success(&mut self, username: &str, ip: IpAddr) {
        self.entries.remove(&Self::key(username, ip));
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.entries.retain(|_, e| now < e.window_start + window);
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.window_start)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));
    const IP2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 8));

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let mut rl = LoginRateLimiter::new(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(rl.check("tech", IP, t0).is_ok(), "attempt {i}");
            rl.record_failure("tech", IP, t0);
        }
        assert_eq!(
            rl.check("TECH", IP, t0 + Duration::from_secs(10)),
            Err(AuthError::RateLimited {
                retry_after_secs: 50
            })
        );
        assert!(
            rl.check("tech", IP2, t0).is_ok(),
            "another address is separate"
        );
        assert!(
            rl.check("other", IP, t0).is_ok(),
            "another user is separate"
        );
        assert!(rl.check("tech", IP, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn success_clears() {
        let mut rl = LoginRateLimiter::new(2, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        rl.record_failure("a", IP, t0);
        rl.record_success("a", IP);
        rl.record_failure("a", IP, t0);
        assert!(rl.check("a", IP, t0).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let mut rl = LoginRateLimiter::new(5, Duration::from_secs(60), 50);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            rl.record_failure(
                &format!("user{i}"),
                IP,
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert!(rl.len() <= 50);
        // A long username cannot blow up a key either.
        rl.record_failure(&"x".repeat(100_000), IP, t0);
        assert!(rl.entries.keys().all(|(u, _)| u.len() <= 64));
    }
}
