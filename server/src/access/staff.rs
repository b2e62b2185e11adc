//! Terminal tokens, staff accounts, logins and sessions.

use std::net::IpAddr;
use std::time::Instant;

use outpost_security::auth::AuthError;
use outpost_security::auth::password::UserDirectory;
use outpost_security::auth::password::UserRecord;
use outpost_security::auth::roles::{Principal, Role};
use outpost_security::auth::token::TerminalRecord;
use secrecy::SecretString;

use super::{Access, AccessError, MAX_SESSIONS, Session, TERMINALS_KEY, USERS_KEY, now_unix};

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

    /// Checks a staff login (rate-limited per username and client address) and opens
    /// a session; returns the session id (the cookie value) and who logged in.
    pub fn login(
        &self,
        username: &str,
        password: &SecretString,
        ip: IpAddr,
    ) -> Result<(String, Principal), AuthError> {
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(username, ip, Instant::now())?;
        let result = {
            let users = self.users.read().unwrap_or_else(|p| p.into_inner());
            users.login(username, password)
        };
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(principal) => {
                limiter.record_success(username, ip);
                drop(limiter);
                self.audit(&principal.name, "login", &format!("from {ip}"));
                Ok((self.start_session(principal.clone()), principal))
            }
            Err(e) => {
                limiter.record_failure(username, ip, Instant::now());
                drop(limiter);
                let shown: String = username.chars().take(64).collect();
                self.audit("-", "login.failed", &format!("user {shown:?} from {ip}"));
                Err(e)
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
