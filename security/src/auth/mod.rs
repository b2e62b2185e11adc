//! Who may use the server, and for what.
//!
//! - [`password`]: argon2id password hashes and the [`password::UserDirectory`] of
//!   supervisors, technicians and admins.
//! - [`token`]: per-terminal bearer tokens: random, shown once, stored as a hash,
//!   revocable, compared in constant time.
//! - [`roles`]: the four roles and what each may do.
//! - [`ratelimit`]: the login rate limiter (per username and IP, bounded memory).
//! - [`audit`]: the hash-chained audit log, over a Vec or a sled tree.
//! - [`spool`]: audit entries written while locked down, sealed to a public key until
//!   the data key is back.
//! - [`demo`]: `<data-dir>/demo-credentials.json` for `outpost demo`.

pub mod audit;
pub mod demo;
pub mod password;
pub mod ratelimit;
pub mod roles;
pub mod spool;
pub mod token;

/// Why a credential or request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Missing, unknown, revoked or wrong credentials (HTTP 401). Deliberately says
    /// nothing about which.
    #[error("Invalid or missing credentials")]
    Unauthorized,
    /// Authenticated, but the role does not allow this (HTTP 403).
    #[error("Role {role} may not {permission}")]
    Forbidden {
        /// The caller's (highest) role.
        role: String,
        /// What was attempted.
        permission: String,
    },
    /// Too many failed logins for this username from this address (HTTP 429).
    #[error("Too many failed logins; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// A name, username or password that breaks the rules (HTTP 400).
    #[error("Invalid {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A stored hash that does not parse (data corruption, not the caller's fault).
    #[error("Stored credential is corrupt: {0}")]
    Corrupt(String),
}

pub(crate) fn check_name(field: &'static str, name: &str) -> Result<(), AuthError> {
    let ok_len = (1..=64).contains(&name.len());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(AuthError::Invalid {
            field,
            reason: "1 to 64 characters from A-Z a-z 0-9 - _ . @".into(),
        })
    }
}
