//! Login throttling per account and per source: atomic, and in bounded memory.
//!
//! Two kinds of key, each with its own count of failed attempts per `window`:
//! - the **account** at a source, (lower-cased username, client address):
//!   `max_failures` per window (5 per 15 minutes by default);
//! - the **source**, the client address alone: `max_failures_per_source` per window
//!   (20 by default) over every username it tries, so one host can neither spray
//!   guesses over many accounts nor fill the table with made-up usernames.
//!
//! **Atomic.** An attempt reserves its slot on both keys in one locked step,
//! [`LoginRateLimiter::reserve`], *before* the password is hashed: K parallel guesses
//! count as K at once, so at most `max_failures` of them ever reach the password hash
//! in a window (check-then-record would let all K pass the check before the first
//! failure is recorded). The caller then settles the [`Reservation`]:
//! [`failed`](LoginRateLimiter::failed) keeps it counted,
//! [`succeeded`](LoginRateLimiter::succeeded) clears the account key (and gives the
//! source its slot back), [`cancel`](LoginRateLimiter::cancel) gives both slots back
//! (the password was never checked, e.g. the hashing queue was full). A reservation
//! dropped unsettled stays counted: failing closed.
//!
//! A key's window starts with its first reservation and lasts `window`; when it has
//! ended, the key starts a new one.
//!
//! **Bounded, and nothing an attacker does resets a count.** The table holds at most
//! `capacity` keys. Only entries whose window has ended (they hold no throttle state)
//! are ever dropped to make room; an entry inside its window is never evicted,
//! whatever its count. When every entry is live, an attempt that needs a new key is
//! refused ([`AuthError::RateLimited`] until the earliest window ends) instead. See
//! [`LoginRateLimiter::reserve`] for why that is the right trade-off.
//!
//! Time is passed in (`Instant`), so tests need no sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::AuthError;

/// Longest username kept in a key (in characters); longer ones are cut, so a
/// 100 kB username costs no more memory than a normal one.
const KEY_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// (lower-cased username cut to [`KEY_CHARS`], client address).
    Account(String, IpAddr),
    /// The client address alone.
    Source(IpAddr),
}

impl Key {
    fn account(username: &str, ip: IpAddr) -> Key {
        Key::Account(
            username
                .chars()
                .take(KEY_CHARS)
                .collect::<String>()
                .to_lowercase(),
            ip,
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Attempts reserved in this window: failed, or still being checked.
    count: u32,
    /// When the window began; also identifies the window (a reservation settled
    /// after its window ended must not touch the next one).
    window_start: Instant,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    /// No entry's window ends before this (a lower bound, exact after a purge): while
    /// it is in the future, a full table holds only live entries and is not scanned.
    next_expiry: Option<Instant>,
}

impl Table {
    /// The entry of `key` if its window has not ended.
    fn live(&self, key: &Key, now: Instant, window: Duration) -> Option<Entry> {
        self.entries
            .get(key)
            .filter(|e| now < e.window_start + window)
            .copied()
    }

    /// Counts one attempt on `key` (starting a new window when there is none or the
    /// last has ended); returns the window's start.
    fn bump(&mut self, key: Key, now: Instant, window: Duration) -> Instant {
        let e = self.entries.entry(key).or_insert(Entry {
            count: 0,
            window_start: now,
        });
        if now >= e.window_start + window {
            *e = Entry {
                count: 0,
                window_start: now,
            };
        }
        e.count = e.count.saturating_add(1);
        let end = e.window_start + window;
        self.next_expiry = Some(self.next_expiry.map_or(end, |n| n.min(end)));
        e.window_start
    }

    /// Gives back one attempt on `key` if it is still in the window `window_start`;
    /// an entry left with no attempt holds nothing and goes.
    fn refund(&mut self, key: &Key, window_start: Instant) {
        if let Some(e) = self.entries.get_mut(key)
            && e.window_start == window_start
        {
            e.count = e.count.saturating_sub(1);
            if e.count == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// Drops the entries whose window has ended, if any can have; recomputes
    /// `next_expiry`.
    fn purge(&mut self, now: Instant, window: Duration) {
        if self.next_expiry.is_some_and(|n| now < n) {
            return;
        }
        self.entries.retain(|_, e| now < e.window_start + window);
        self.next_expiry = self.entries.values().map(|e| e.window_start + window).min();
    }
}

/// `RateLimited` until `end`, in whole seconds rounded up (a client that waits that
/// long finds the window over), at least 1.
fn retry_at(end: Instant, now: Instant) -> AuthError {
    let wait = end.saturating_duration_since(now);
    AuthError::RateLimited {
        retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
    }
}

/// An attempt counted on its account and source keys; settle it with
/// [`LoginRateLimiter::failed`], [`succeeded`](LoginRateLimiter::succeeded) or
/// [`cancel`](LoginRateLimiter::cancel). Dropped unsettled, it stays counted as a
/// failure.
#[must_use = "settle the reservation: failed, succeeded or cancel"]
#[derive(Debug)]
pub struct Reservation {
    account: Key,
    source: Key,
    account_window: Instant,
    source_window: Instant,
}

/// The limiter. Synchronised inside: a std mutex held only for the table update,
/// never across `.await` or argon2 work, so one lock makes check-and-record atomic.
#[derive(Debug)]
pub struct LoginRateLimiter {
    max_failures: u32,
    max_failures_per_source: u32,
    window: Duration,
    capacity: usize,
    table: Mutex<Table>,
}

impl LoginRateLimiter {
    /// `max_failures` per `window` per (username, address) key, at most `capacity`
    /// keys remembered, no limit per source (see [`Self::with_source_limit`]).
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max_failures: max_failures.max(1),
            max_failures_per_source: u32::MAX,
            window,
            capacity: capacity.max(2),
            table: Mutex::new(Table::default()),
        }
    }

    /// Also limits each client address to `max_failures_per_source` per window, over
    /// every username it tries.
    pub fn with_source_limit(mut self, max_failures_per_source: u32) -> Self {
        self.max_failures_per_source = max_failures_per_source.max(1);
        self
    }

    /// Defaults: 5 failures per 15 minutes per (username, address), 20 per address,
    /// 10,000 keys.
    pub fn default_policy() -> Self {
        Self::new(5, Duration::from_secs(15 * 60), 10_000).with_source_limit(20)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limited(&self, window_start: Instant, now: Instant) -> AuthError {
        retry_at(window_start + self.window, now)
    }

    /// Call before verifying a password: counts the attempt on its account and source
    /// keys in one step, or refuses it (`Err(RateLimited)`: do not even try) when
    /// either key has used up its window or the table has no room for a new key.
    ///
    /// A refused attempt counts nowhere. When the table is full of entries still in
    /// their window, an attempt that needs a new key is refused rather than evicting
    /// one. Evicting a live entry hands its owner a fresh count: an attacker after the
    /// admin's password would flood other usernames or addresses until the admin's
    /// entry is evicted, then guess again, turning the throttle into unlimited
    /// guessing. Refusing makes the worst case a pause of staff logins from new
    /// (username, address) pairs until the earliest window ends. On a store LAN that
    /// is the right side to fail on: filling the table takes `capacity /
    /// max_failures_per_source` hosts inside the store (500 at the defaults), each
    /// paying for its failures through the bounded hashing queue, every failure in the
    /// audit log; selling goes on, because terminals authenticate with bearer tokens
    /// that never touch this table, and staff already logged in keep their sessions.
    pub fn reserve(
        &self,
        username: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Reservation, AuthError> {
        let account = Key::account(username, ip);
        let source = Key::Source(ip);
        let window = self.window;
        let mut t = self.lock();
        if let Some(e) = t.live(&account, now, window)
            && e.count >= self.max_failures
        {
            return Err(self.limited(e.window_start, now));
        }
        if let Some(e) = t.live(&source, now, window)
            && e.count >= self.max_failures_per_source
        {
            return Err(self.limited(e.window_start, now));
        }
        let new_keys = |t: &Table| {
            usize::from(!t.entries.contains_key(&account))
                + usize::from(!t.entries.contains_key(&source))
        };
        if t.entries.len() + new_keys(&t) > self.capacity {
            t.purge(now, window);
            if t.entries.len() + new_keys(&t) > self.capacity {
                return Err(retry_at(t.next_expiry.unwrap_or(now + window), now));
            }
        }
        let account_window = t.bump(account.clone(), now, window);
        let source_window = t.bump(source.clone(), now, window);
        Ok(Reservation {
            account,
            source,
            account_window,
            source_window,
        })
    }

    /// The password was wrong (or the account unknown): the attempt stays counted.
    pub fn failed(&self, reservation: Reservation) {
        drop(reservation);
    }

    /// The password was right: the account key starts clean (as does any other
    /// attempt on it still being checked), and the source gets its slot back.
    pub fn succeeded(&self, reservation: Reservation) {
        let mut t = self.lock();
        t.entries.remove(&reservation.account);
        t.refund(&reservation.source, reservation.source_window);
    }

    /// The password was never checked: both keys get their slot back (unless their
    /// window has ended since, and the slot with it).
    pub fn cancel(&self, reservation: Reservation) {
        let mut t = self.lock();
        t.refund(&reservation.account, reservation.account_window);
        t.refund(&reservation.source, reservation.source_window);
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Barrier};

    use super::*;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    const IP2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8));
    const MINUTE: Duration = Duration::from_secs(60);

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i))
    }

    /// Reserves and records a failure; `false` when refused.
    fn fail(rl: &LoginRateLimiter, user: &str, ip: IpAddr, now: Instant) -> bool {
        match rl.reserve(user, ip, now) {
            Ok(r) => {
                rl.failed(r);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let rl = LoginRateLimiter::new(3, MINUTE, 100);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(fail(&rl, "tech", IP, t0), "attempt {i}");
        }
        assert_eq!(
            rl.reserve("TECH", IP, t0 + Duration::from_secs(10))
                .map(|r| rl.cancel(r)),
            Err(AuthError::RateLimited {
                retry_after_secs: 50
            })
        );
        let other_address = rl
            .reserve("tech", IP2, t0)
            .expect("another address is separate");
        rl.cancel(other_address);
        let other_user = rl
            .reserve("other", IP, t0)
            .expect("another user is separate");
        rl.cancel(other_user);
        let next_window = rl.reserve("tech", IP, t0 + MINUTE).expect("a new window");
        rl.cancel(next_window);
    }

    #[test]
    fn success_clears() {
        let rl = LoginRateLimiter::new(2, MINUTE, 100);
        let t0 = Instant::now();
        assert!(fail(&rl, "a", IP, t0));
        let r = rl.reserve("a", IP, t0).unwrap();
        rl.succeeded(r);
        assert!(fail(&rl, "a", IP, t0));
        let r = rl
            .reserve("a", IP, t0)
            .expect("one failure since the success");
        rl.cancel(r);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let rl = LoginRateLimiter::new(5, MINUTE, 50);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            fail(
                &rl,
                &format!("user{i}"),
                IP,
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(rl.len() <= 50);
        // A long username cannot blow up a key either.
        let t1 = t0 + 2 * MINUTE;
        assert!(fail(&rl, &"x".repeat(100_000), IP, t1));
        assert!(rl.lock().entries.keys().all(|k| match k {
            Key::Account(u, _) => u.len() <= KEY_CHARS,
            Key::Source(_) => true,
        }));
    }

    // Check-then-record let every parallel guess pass the check before the first
    // failure was recorded.
    #[test]
    fn parallel_reservations_from_many_threads_pass_exactly_max_failures() {
        let rl = Arc::new(LoginRateLimiter::new(5, MINUTE, 1000).with_source_limit(12));
        let t0 = Instant::now();
        let threads = 64;
        let barrier = Arc::new(Barrier::new(threads));
        let run = |user: fn(usize) -> String, ip: IpAddr| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let (rl, barrier) = (rl.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        // Held while "argon2 runs", so every thread overlaps.
                        let r = rl.reserve(&user(i), ip, t0);
                        barrier.wait();
                        r.map(|r| rl.failed(r)).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|passed| *passed)
                .count()
        };
        // One account from one address.
        assert_eq!(run(|_| "admin".to_owned(), IP), 5);
        // Many accounts from one address: the source's limit.
        assert_eq!(run(|i| format!("user{i}"), IP2), 12);
    }

    #[test]
    fn eviction_never_resets_a_throttled_or_counting_key() {
        let rl = LoginRateLimiter::new(5, MINUTE, 24);
        let t0 = Instant::now();
        let flood = |from: u32, n: u32, now: Instant| {
            for i in from..from + n {
                fail(&rl, &format!("u{i}"), ip(i), now);
                assert!(rl.len() <= 24);
            }
        };
        // 16 entries whose window ends first.
        flood(0, 8, t0);
        let t1 = t0 + Duration::from_secs(30);
        for _ in 0..5 {
            assert!(fail(&rl, "admin", IP, t1));
        }
        for _ in 0..3 {
            assert!(fail(&rl, "tech", IP2, t1));
        }
        // Flooding other usernames from other addresses: the table fills, nothing live
        // is evicted.
        flood(100, 5_000, t1);
        assert_eq!(rl.len(), 24);
        // Later the first flood's windows have ended: those entries make room for new
        // ones, and only those.
        let t2 = t0 + Duration::from_secs(61);
        flood(10_000, 5_000, t2);
        assert_eq!(rl.len(), 24);
        assert_eq!(
            rl.reserve("admin", IP, t2).map(|r| rl.cancel(r)),
            Err(AuthError::RateLimited {
                retry_after_secs: 29
            })
        );
        // tech has exactly two attempts left.
        assert!(fail(&rl, "tech", IP2, t2));
        assert!(fail(&rl, "tech", IP2, t2));
        assert!(!fail(&rl, "tech", IP2, t2));
    }

    #[test]
    fn a_full_table_refuses_new_keys_until_the_earliest_window_ends() {
        // Room for two (account, source) pairs.
        let rl = LoginRateLimiter::new(5, MINUTE, 4);
        let t0 = Instant::now();
        assert!(fail(&rl, "a", IP, t0));
        assert!(fail(&rl, "b", IP2, t0 + Duration::from_secs(20)));
        assert_eq!(rl.len(), 4);
        let t1 = t0 + Duration::from_secs(30);
        // A new username from a known address needs one new key: refused.
        assert_eq!(
            rl.reserve("c", IP, t1).map(|r| rl.cancel(r)),
            Err(AuthError::RateLimited {
                retry_after_secs: 30
            })
        );
        assert_eq!(rl.len(), 4);
        // Known keys go on counting.
        assert!(fail(&rl, "a", IP, t1));
        // Once "a"'s window has ended, its entries make room.
        let t2 = t0 + MINUTE;
        assert!(fail(&rl, "c", IP, t2));
        assert_eq!(rl.len(), 4, "a's two entries went, c's two came");
        assert!(fail(&rl, "b", IP2, t2));
    }

    #[test]
    fn cancel_gives_both_slots_back_but_never_into_a_later_window() {
        let rl = LoginRateLimiter::new(2, MINUTE, 100).with_source_limit(3);
        let t0 = Instant::now();
        let r1 = rl.reserve("a", IP, t0).unwrap();
        let r2 = rl.reserve("a", IP, t0).unwrap();
        assert!(rl.reserve("a", IP, t0).is_err(), "two in flight");
        rl.cancel(r1);
        let r3 = rl.reserve("a", IP, t0).expect("a slot came back");
        rl.cancel(r2);
        rl.cancel(r3);
        assert!(rl.is_empty(), "nothing counted, nothing kept");

        // Reserved in one window, cancelled in the next: the new window keeps its count.
        let old = rl.reserve("a", IP, t0).unwrap();
        let t1 = t0 + MINUTE;
        assert!(fail(&rl, "a", IP, t1));
        assert!(fail(&rl, "a", IP, t1));
        rl.cancel(old);
        assert!(!fail(&rl, "a", IP, t1));
    }

    #[test]
    fn a_source_is_limited_over_all_usernames_and_a_success_gives_its_slot_back() {
        let rl = LoginRateLimiter::new(2, MINUTE, 100).with_source_limit(3);
        let t0 = Instant::now();
        let ok = rl.reserve("tech", IP, t0).unwrap();
        rl.succeeded(ok);
        for user in ["x", "y", "z"] {
            assert!(fail(&rl, user, IP, t0));
        }
        assert_eq!(
            rl.reserve("tech", IP, t0 + Duration::from_secs(1))
                .map(|r| rl.cancel(r)),
            Err(AuthError::RateLimited {
                retry_after_secs: 59
            })
        );
        // Another address is separate, and an attempt refused on a throttled account
        // does not count on its source.
        assert!(fail(&rl, "x", IP2, t0));
        assert!(fail(&rl, "x", IP2, t0));
        assert!(!fail(&rl, "x", IP2, t0));
        assert!(!fail(&rl, "x", IP2, t0));
        assert!(fail(&rl, "y", IP2, t0), "the source's third failure");
        assert!(!fail(&rl, "z", IP2, t0), "the source is used up");
    }

    #[test]
    fn a_dropped_reservation_stays_counted() {
        let rl = LoginRateLimiter::new(1, MINUTE, 100);
        let t0 = Instant::now();
        let r = rl.reserve("a", IP, t0).unwrap();
        drop(r);
        assert!(rl.reserve("a", IP, t0).is_err());
    }
}
