//! Terminal tokens, staff accounts, logins and sessions.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use outpost_security::auth::AuthError;
use outpost_security::auth::password::UserDirectory;
use outpost_security::auth::password::UserRecord;
use outpost_security::auth::ratelimit::{LoginRateLimiter, Reservation};
use outpost_security::auth::roles::{Principal, Role};
use outpost_security::auth::token::TerminalRecord;
use secrecy::SecretString;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Access, AccessError, MAX_SESSIONS, Session, TERMINALS_KEY, USERS_KEY, now_unix};

/// `Retry-After` of a login refused because the hashing queue is full: each permit
/// frees up every 50 to 100 ms on a store server, so a second is enough for a
/// retry to find room once the burst has passed.
const BUSY_RETRY_SECS: u64 = 1;

/// Why a staff login was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// Wrong credentials, throttled (`RateLimited`), or the credential store failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Every password-hashing permit is taken and the wait queue is full: the
    /// password was not checked and the attempt counts nowhere.
    #[error("too many logins are being checked at once; retry in {retry_after_secs} s")]
    Busy {
        /// Seconds to wait before trying again.
        retry_after_secs: u64,
    },
}

/// argon2 behind a semaphore with a bounded wait queue: at most `permits` password
/// hashes run at once (each holds 19 MiB with the production parameters), at most
/// `queue` more wait for a permit, and any further login is refused at once. Memory
/// stays at `permits` x argon2's memory, whatever the number of parallel logins.
pub struct LoginGate {
    /// Places: running plus waiting. Taken without waiting (`try_acquire`), so a
    /// full queue answers at once.
    places: Arc<Semaphore>,
    /// The argon2 permits (tokio's semaphore serves waiters in order).
    permits: Arc<Semaphore>,
}

impl LoginGate {
    /// `permits` argon2 runs at once (at least 1), `queue` more waiting.
    pub fn new(permits: usize, queue: usize) -> Self {
        let permits = permits.max(1);
        Self {
            places: Arc::new(Semaphore::new(permits + queue)),
            permits: Arc::new(Semaphore::new(permits)),
        }
    }

    /// A place in the queue, or `None` when it is full.
    fn enter(&self) -> Option<QueuePlace> {
        let place = self.places.clone().try_acquire_owned().ok()?;
        Some(QueuePlace {
            _place: place,
            permits: self.permits.clone(),
        })
    }
}

/// A login's place in the hashing queue.
struct QueuePlace {
    _place: OwnedSemaphorePermit,
    permits: Arc<Semaphore>,
}

/// A staff login that holds its throttle reservation and its place in the hashing
/// queue ([`Access::begin_login`]). Dropped before its password was checked (the
/// client went away, the blocking pool refused the job), it gives both back.
pub struct LoginAttempt {
    username: String,
    ip: IpAddr,
    limiter: Arc<LoginRateLimiter>,
    /// `Some` until the password was checked and the outcome recorded.
    reservation: Option<Reservation>,
    place: QueuePlace,
}

impl LoginAttempt {
    /// Waits for an argon2 permit. Cancel-safe: dropping the future drops the
    /// attempt, which leaves the queue and gives its throttle slot back.
    pub async fn turn(self) -> Result<LoginTurn, LoginError> {
        match self.place.permits.clone().acquire_owned().await {
            Ok(permit) => Ok(LoginTurn(self, permit)),
            // The semaphore is never closed; if it were, nothing could be hashed.
            Err(_) => Err(LoginError::Busy {
                retry_after_secs: BUSY_RETRY_SECS,
            }),
        }
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            self.limiter.cancel(r);
        }
    }
}

/// A login attempt holding an argon2 permit: move it into the blocking job that runs
/// [`Access::finish_login`], so the permit is held for exactly as long as argon2 runs
/// (even when the request that started it is dropped meanwhile).
pub struct LoginTurn(LoginAttempt, OwnedSemaphorePermit);

/// Refuses a change of accounts that leaves no enabled admin where there was one.
fn keeps_an_admin(
    before: &UserDirectory,
    after: &UserDirectory,
    username: &str,
) -> Result<(), AccessError> {
    if before.enabled_admins() > 0 && after.enabled_admins() == 0 {
        return Err(AccessError::LastAdmin(username.to_owned()));
    }
    Ok(())
}

impl Access {
    /// Issues a token for terminal `name`; the token is returned once and only its
    /// hash is kept.
    pub fn add_terminal(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<(TerminalRecord, SecretString), AccessError> {
        let mut t = self.terminals.write().unwrap_or_else(|p| p.into_inner());
        let mut next = t.clone();
        let issued = next.issue(name, now_unix())?;
        self.save(TERMINALS_KEY, &next)?;
        *t = next;
        drop(t);
        self.audit(actor, "terminal.add", &format!("terminal {name}"));
        Ok(issued)
    }

    /// Revokes terminal `name`'s token; `false` when it had none.
    pub fn revoke_terminal(&self, actor: &str, name: &str) -> Result<bool, AccessError> {
        let mut t = self.terminals.write().unwrap_or_else(|p| p.into_inner());
        let mut next = t.clone();
        if !next.revoke(name, now_unix()) {
            return Ok(false);
        }
        self.save(TERMINALS_KEY, &next)?;
        *t = next;
        drop(t);
        self.audit(actor, "terminal.revoke", &format!("terminal {name}"));
        Ok(true)
    }

    /// Every terminal token ever issued (hashes only), revoked ones included.
    pub fn terminals(&self) -> Vec<TerminalRecord> {
        let t = self.terminals.read().unwrap_or_else(|p| p.into_inner());
        t.all().cloned().collect()
    }

    /// Adds or replaces a staff account; `true` when it is new. Replacing one (new
    /// password, other roles, re-enabled) ends its open sessions, so narrowed roles
    /// apply at once. Refused when it would leave no enabled admin.
    pub fn set_user(
        &self,
        actor: &str,
        username: &str,
        password: &SecretString,
        roles: Vec<Role>,
    ) -> Result<bool, AccessError> {
        let mut u = self.users.write().unwrap_or_else(|p| p.into_inner());
        let mut next = u.clone();
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let detail = format!("user {username} roles {}", names.join("+"));
        let created = next.get(username).is_none();
        next.set_user(username, password, roles)?;
        keeps_an_admin(&u, &next, username)?;
        self.save(USERS_KEY, &next)?;
        *u = next;
        drop(u);
        if !created {
            self.end_sessions_of(username);
        }
        self.audit(actor, "user.set", &detail);
        Ok(created)
    }

    /// Disables a staff account and ends its sessions; `false` when there is no such
    /// account. Refused when it would leave no enabled admin. The record stays (the
    /// audit log names it); setting a new password enables it again.
    pub fn disable_user(&self, actor: &str, username: &str) -> Result<bool, AccessError> {
        let mut u = self.users.write().unwrap_or_else(|p| p.into_inner());
        let mut next = u.clone();
        if !next.disable(username) {
            return Ok(false);
        }
        keeps_an_admin(&u, &next, username)?;
        self.save(USERS_KEY, &next)?;
        *u = next;
        drop(u);
        let ended = self.end_sessions_of(username);
        self.audit(
            actor,
            "user.disable",
            &format!("user {username} ({ended} sessions ended)"),
        );
        Ok(true)
    }

    /// Every staff account (password hashes included: callers show none of them).
    pub fn users(&self) -> Vec<UserRecord> {
        let u = self.users.read().unwrap_or_else(|p| p.into_inner());
        u.all().cloned().collect()
    }

    /// Ends every session of `username` (usernames compare case-insensitively, as at
    /// login); returns how many.
    pub fn end_sessions_of(&self, username: &str) -> usize {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let before = sessions.len();
        sessions.retain(|_, s| !s.principal.name.eq_ignore_ascii_case(username));
        before - sessions.len()
    }

    /// First step of a staff login, cheap and never blocking: reserves the attempt's
    /// slot in the login throttle (per username and client address, and per address)
    /// and its place in the password-hashing queue. `RateLimited` when the throttle
    /// refuses, [`LoginError::Busy`] when the queue is full; either way nothing was
    /// hashed. Next: [`LoginAttempt::turn`], then [`Access::finish_login`].
    pub fn begin_login(&self, username: &str, ip: IpAddr) -> Result<LoginAttempt, LoginError> {
        let reservation = self.limiter.reserve(username, ip, Instant::now())?;
        let Some(place) = self.login_gate.enter() else {
            self.limiter.cancel(reservation);
            tracing::debug!(%ip, "Login refused: the password-hashing queue is full");
            return Err(LoginError::Busy {
                retry_after_secs: BUSY_RETRY_SECS,
            });
        };
        Ok(LoginAttempt {
            username: username.to_owned(),
            ip,
            limiter: self.limiter.clone(),
            reservation: Some(reservation),
            place,
        })
    }

    /// Last step of a staff login: checks the password (argon2: run it on the
    /// blocking pool) and opens a session; returns the session id (the cookie value)
    /// and who logged in. The attempt holds its hashing permit until this returns.
    pub fn finish_login(
        &self,
        turn: LoginTurn,
        password: &SecretString,
    ) -> Result<(String, Principal), LoginError> {
        let LoginTurn(mut attempt, permit) = turn;
        // Taken before argon2 runs: from here on the attempt counts, even if
        // hashing panics.
        let reservation = attempt
            .reservation
            .take()
            .ok_or(LoginError::Auth(AuthError::Unauthorized))?;
        let (username, ip) = (std::mem::take(&mut attempt.username), attempt.ip);
        let result = {
            let users = self.users.read().unwrap_or_else(|p| p.into_inner());
            users.login(&username, password)
        };
        drop((permit, attempt));
        match result {
            Ok(principal) => {
                self.limiter.succeeded(reservation);
                self.audit(&principal.name, "login", &format!("from {ip}"));
                Ok((self.start_session(principal.clone()), principal))
            }
            Err(e) => {
                self.limiter.failed(reservation);
                let shown: String = username.chars().take(64).collect();
                self.audit("-", "login.failed", &format!("user {shown:?} from {ip}"));
                Err(e.into())
            }
        }
    }

    /// Opens a session for an authenticated principal; returns its id.
    pub fn start_session(&self, principal: Principal) -> String {
        use base64::Engine as _;
        let id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                principal,
                expires: now + self.session_ttl,
                created: now,
            },
        );
        id
    }

    /// Ends a session; returns who it belonged to.
    pub fn end_session(&self, id: &str) -> Option<Principal> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(id).map(|s| s.principal)
    }

    /// Who holds the session `id`, if it is live.
    pub fn session(&self, id: &str) -> Result<Principal, AuthError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(id) {
            Some(s) if s.expires > Instant::now() => Ok(s.principal.clone()),
            Some(_) => {
                sessions.remove(id);
                Err(AuthError::Unauthorized)
            }
            None => Err(AuthError::Unauthorized),
        }
    }

    /// Who holds the terminal bearer token `token`.
    pub fn terminal(&self, token: &str) -> Result<Principal, AuthError> {
        self.terminals
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .authenticate(token)
    }
}
