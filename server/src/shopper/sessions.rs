//! Shopper sessions: who holds which cart, for how long, and how often they may ask.
//!
//! The table lives in memory: a session is a phone's visit of a few minutes, bounded
//! in number (`[shopper] max_sessions`) and in time (`session_ttl_secs`, `idle_secs`).
//! A restart ends every session and its unpaid cart; the shopper scans the store QR
//! again. Nothing is sold until checkout, which goes through the durable sale journal.
//!
//! A session is named by a 256-bit random secret (the `outpost_shopper` cookie); the
//! table keys it by the secret's BLAKE3 hash, so the table holds no usable credential.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::ShopperSettings;
use crate::sales::checkout::LineRequest;

/// Client addresses remembered for the opening rate limit at once; past it, opening is
/// refused until the minute turns (a flood of addresses cannot grow the table).
const MAX_TRACKED_ADDRESSES: usize = 10_000;
/// The rate limits' window.
const WINDOW: Duration = Duration::from_secs(60);

/// Why a session could not be opened or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No session with this secret, or it expired.
    #[error("no shopper session, or it expired: scan the store's QR code to start one")]
    Unknown,
    /// `max_sessions` are open.
    #[error(
        "{0} shopper sessions are open, the most this store allows; try again in a few minutes"
    )]
    Full(usize),
    /// Too many openings from one address, or too many requests in one session.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// When to retry.
        retry_after_secs: u64,
    },
}

/// One shopper's state.
#[derive(Debug)]
pub struct Session {
    /// A short number for logs and the audit trail (not a credential).
    pub number: u64,
    /// The cart's lines as the shopper added them.
    pub lines: Vec<LineRequest>,
    /// The checkout paying the cart, once started (until the shopper starts a new
    /// cart after paying, or the payment failed and the cart is edited again).
    pub checkout: Option<super::checkout::Started>,
    /// The exit code of the paid checkout, made once.
    pub exit_code: Option<String>,
    /// The loyalty customer the shopper named by their card (HQ's id): the carts they
    /// pay are sold to them.
    pub customer: Option<String>,
    created: Instant,
    last_seen: Instant,
    window: (Instant, u32),
}

impl Session {
    fn expires_at(&self, s: &ShopperSettings) -> Instant {
        let absolute = self.created + Duration::from_secs(s.session_ttl_secs);
        let idle = self.last_seen + Duration::from_secs(s.idle_secs);
        absolute.min(idle)
    }
}

/// A session just opened.
#[derive(Debug)]
pub struct Opened {
    /// The secret the phone keeps (cookie value).
    pub secret: String,
    /// Its number.
    pub number: u64,
    /// Seconds it lives at most.
    pub expires_in_secs: u64,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<[u8; 32], Arc<Mutex<Session>>>,
    opened_by: HashMap<IpAddr, (Instant, u32)>,
    next_number: u64,
}

/// The open shopper sessions.
pub struct Sessions {
    settings: ShopperSettings,
    // A std mutex: held for a map look-up or insert, never across an await or while
    // pricing (each session has its own lock for that).
    table: Mutex<Table>,
}

fn hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

impl Sessions {
    /// An empty table under `settings`.
    pub fn new(settings: ShopperSettings) -> Self {
        Sessions {
            settings,
            table: Mutex::new(Table::default()),
        }
    }

    /// The settings the table enforces.
    pub fn settings(&self) -> &ShopperSettings {
        &self.settings
    }

    /// Open a session for a client at `ip` (the store token already checked).
    pub fn open(&self, ip: IpAddr, now: Instant) -> Result<Opened, SessionError> {
        let s = &self.settings;
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.sessions.retain(|_, v| {
            let v = v.lock().unwrap_or_else(|p| p.into_inner());
            v.expires_at(s) > now
        });
        t.opened_by
            .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        let tracked = t.opened_by.len();
        let (start, count) = match t.opened_by.get(&ip) {
            Some(w) => *w,
            None if tracked >= MAX_TRACKED_ADDRESSES => {
                return Err(SessionError::RateLimited {
                    retry_after_secs: WINDOW.as_secs(),
                });
            }
            None => (now, 0),
        };
        if count >= s.sessions_per_minute_per_ip {
            return Err(SessionError::RateLimited {
                retry_after_secs: retry_after(start, now),
            });
        }
        if t.sessions.len() >= s.max_sessions {
            return Err(SessionError::Full(s.max_sessions));
        }
        t.opened_by.insert(ip, (start, count + 1));
        let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        t.next_number += 1;
        let number = t.next_number;
        t.sessions.insert(
            hash(&secret),
            Arc::new(Mutex::new(Session {
                number,
                lines: Vec::new(),
                checkout: None,
                exit_code: None,
                customer: None,
                created: now,
                last_seen: now,
                window: (now, 0),
            })),
        );
        Ok(Opened {
            secret,
            number,
            expires_in_secs: s.session_ttl_secs,
        })
    }

    /// The live session named by `secret`, counted against its request budget and
    /// kept alive. Lock the returned session to read or change its cart.
    pub fn touch(&self, secret: &str, now: Instant) -> Result<Arc<Mutex<Session>>, SessionError> {
        let key = hash(secret);
        let session = {
            let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            t.sessions.get(&key).cloned().ok_or(SessionError::Unknown)?
        };
        {
            let mut v = session.lock().unwrap_or_else(|p| p.into_inner());
            if v.expires_at(&self.settings) <= now {
                drop(v);
                self.end(secret);
                return Err(SessionError::Unknown);
            }
            let (start, count) = v.window;
            if now.duration_since(start) >= WINDOW {
                v.window = (now, 1);
            } else if count >= self.settings.requests_per_minute {
                return Err(SessionError::RateLimited {
                    retry_after_secs: retry_after(start, now),
                });
            } else {
                v.window.1 += 1;
            }
            v.last_seen = now;
        }
        Ok(session)
    }

    /// End the session named by `secret`; `false` when there was none.
    pub fn end(&self, secret: &str) -> bool {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.sessions.remove(&hash(secret)).is_some()
    }

    /// Sessions open now (expired ones included until the next opening sweeps them).
    pub fn len(&self) -> usize {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn retry_after(window_start: Instant, now: Instant) -> u64 {
    WINDOW
        .saturating_sub(now.duration_since(window_start))
        .as_secs()
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ShopperSettings {
        ShopperSettings {
            max_sessions: 3,
            sessions_per_minute_per_ip: 2,
            requests_per_minute: 5,
            session_ttl_secs: 600,
            idle_secs: 60,
            ..ShopperSettings::default()
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));

    #[test]
    fn openings_per_address_are_limited_per_minute() {
        let t = Sessions::new(settings());
        let now = Instant::now();
        t.open(A, now).unwrap();
        t.open(A, now).unwrap();
        assert!(matches!(
            t.open(A, now + Duration::from_secs(10)),
            Err(SessionError::RateLimited {
                retry_after_secs: 50
            })
        ));
        // Another address is not held back, and the next minute opens again.
        t.open(B, now).unwrap();
        assert!(matches!(t.open(C, now), Err(SessionError::Full(3))));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn sessions_expire_when_idle_and_expired_ones_free_their_place() {
        let t = Sessions::new(settings());
        let now = Instant::now();
        let a = t.open(A, now).unwrap();
        t.open(A, now).unwrap();
        t.open(B, now).unwrap();
        // Kept alive by use.
        assert!(t.touch(&a.secret, now + Duration::from_secs(50)).is_ok());
        assert!(t.touch(&a.secret, now + Duration::from_secs(100)).is_ok());
        // Idle past 60 s: gone.
        assert_eq!(
            t.touch(&a.secret, now + Duration::from_secs(161))
                .unwrap_err(),
            SessionError::Unknown
        );
        // The two never touched since `now` expired too: C gets a place.
        t.open(C, now + Duration::from_secs(161)).unwrap();
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_session_lives_no_longer_than_its_ttl_however_busy() {
        let t = Sessions::new(settings());
        let now = Instant::now();
        let a = t.open(A, now).unwrap();
        for s in (30..600).step_by(30) {
            assert!(
                t.touch(&a.secret, now + Duration::from_secs(s)).is_ok(),
                "{s}"
            );
        }
        assert_eq!(
            t.touch(&a.secret, now + Duration::from_secs(600))
                .unwrap_err(),
            SessionError::Unknown
        );
    }

    #[test]
    fn requests_per_session_are_limited_per_minute() {
        let t = Sessions::new(ShopperSettings {
            idle_secs: 120,
            ..settings()
        });
        let now = Instant::now();
        let a = t.open(A, now).unwrap();
        let b = t.open(B, now).unwrap();
        for _ in 0..5 {
            t.touch(&a.secret, now).unwrap();
        }
        assert!(matches!(
            t.touch(&a.secret, now + Duration::from_secs(1)),
            Err(SessionError::RateLimited { .. })
        ));
        // The other session has its own budget; the next minute a new one.
        t.touch(&b.secret, now).unwrap();
        t.touch(&a.secret, now + Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn unknown_and_ended_secrets_are_refused() {
        let t = Sessions::new(settings());
        let now = Instant::now();
        assert_eq!(t.touch("nope", now).unwrap_err(), SessionError::Unknown);
        let a = t.open(A, now).unwrap();
        assert!(t.end(&a.secret));
        assert_eq!(t.touch(&a.secret, now).unwrap_err(), SessionError::Unknown);
        assert!(!t.end(&a.secret));
    }
}
