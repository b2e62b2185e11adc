//! Per-terminal bearer tokens.
//!
//! A token is `opt_<id>_<secret>`: `id` is 16 hex characters (a lookup key, not secret),
//! `secret` is 32 random bytes in base64url. It is shown once when issued
//! (`outpost terminals add NAME`); the server keeps only
//! `BLAKE3-derive_key("outpost terminal token v1", secret)`. A 256-bit random secret
//! needs no slow hash: nobody can guess it offline from the stored value. The stored
//! and computed hashes are compared in constant time.

use std::collections::BTreeMap;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::roles::{Principal, Role};
use super::{AuthError, check_name};

const PREFIX: &str = "opt_";
const HASH_CONTEXT: &str = "outpost terminal token v1";

/// One terminal's stored credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalRecord {
    /// The token's public lookup id (16 hex characters).
    pub id: String,
    /// The terminal's name, as given to `outpost terminals add`.
    pub name: String,
    /// Hex of the BLAKE3-derived hash of the secret part.
    pub hash: String,
    /// When issued (unix seconds).
    pub created_at: i64,
    /// When revoked (unix seconds); revoked tokens never authenticate again.
    pub revoked_at: Option<i64>,
}

/// All terminal tokens; serializable so the server stores it (encrypted).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TerminalTokens {
    by_id: BTreeMap<String, TerminalRecord>,
}

fn hash_secret(secret: &str) -> [u8; 32] {
    blake3::derive_key(HASH_CONTEXT, secret.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Splits a presented token into id and secret; `None` if it is not token-shaped.
fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

impl TerminalTokens {
    /// No tokens.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues a token for terminal `name` (unique among active terminals). The returned
    /// secret is the only copy: show it once and drop it.
    pub fn issue(
        &mut self,
        name: &str,
        now_unix: i64,
    ) -> Result<(TerminalRecord, SecretString), AuthError> {
        check_name("terminal name", name)?;
        if self.active().any(|r| r.name == name) {
            return Err(AuthError::Invalid {
                field: "terminal name",
                reason: format!("{name:?} already has an active token; revoke it first"),
            });
        }
        let id = hex(&rand::random::<[u8; 8]>());
        let secret =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let record = TerminalRecord {
            id: id.clone(),
            name: name.to_owned(),
            hash: hex(&hash_secret(&secret)),
            created_at: now_unix,
            revoked_at: None,
        };
        self.by_id.insert(id.clone(), record.clone());
        Ok((record, SecretString::from(format!("{PREFIX}{id}_{secret}"))))
    }

    /// Checks a presented bearer token. Every failure is the same
    /// [`AuthError::Unauthorized`], so a caller learns nothing about which part was wrong.
    pub fn authenticate(&self, presented: &str) -> Result<Principal, AuthError> {
        let (id, secret) = split(presented).ok_or(AuthError::Unauthorized)?;
        let record = self.by_id.get(id).ok_or(AuthError::Unauthorized)?;
        let stored = unhex32(&record.hash).ok_or(AuthError::Unauthorized)?;
        let matches: bool = hash_secret(secret).ct_eq(&stored).into();
        if !matches || record.revoked_at.is_some() {
            return Err(AuthError::Unauthorized);
        }
        Ok(Principal {
            name: record.name.clone(),
            roles: vec![Role::CashierTerminal],
        })
    }

    /// [`TerminalTokens::authenticate`] for a secret held as `SecretString`.
    pub fn authenticate_secret(&self, presented: &SecretString) -> Result<Principal, AuthError> {
        self.authenticate(presented.expose_secret())
    }

    /// Revokes the active token of terminal `name`; returns whether there was one.
    pub fn revoke(&mut self, name: &str, now_unix: i64) -> bool {
        let mut found = false;
        for r in self.by_id.values_mut() {
            if r.name == name && r.revoked_at.is_none() {
                r.revoked_at = Some(now_unix);
                found = true;
            }
        }
        found
    }

    /// Tokens not revoked.
    pub fn active(&self) -> impl Iterator<Item = &TerminalRecord> {
        self.by_id.values().filter(|r| r.revoked_at.is_none())
    }

    /// All records, revoked included (for the console's list).
    pub fn all(&self) -> impl Iterator<Item = &TerminalRecord> {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_authenticate_revoke() {
        let mut tokens = TerminalTokens::new();
        let (record, secret) = tokens.issue("till-1", 100).unwrap();
        let principal = tokens.authenticate_secret(&secret).unwrap();
        assert_eq!(principal.name, "till-1");
        assert_eq!(principal.roles, vec![Role::CashierTerminal]);
        let stored = serde_json::to_string(&tokens).unwrap();
        // The secret itself is base64url and may contain '_': split after the id.
        let (_, secret_part) = split(secret.expose_secret()).unwrap();
        let secret_part = secret_part.to_owned();
        assert!(!stored.contains(&secret_part), "only the hash is stored");
        assert!(stored.contains(&record.hash));
        assert!(
            tokens.issue("till-1", 101).is_err(),
            "one active token per terminal"
        );
        assert!(tokens.revoke("till-1", 102));
        assert_eq!(
            tokens.authenticate_secret(&secret),
            Err(AuthError::Unauthorized)
        );
        assert!(!tokens.revoke("till-1", 103));
        let (_, again) = tokens.issue("till-1", 104).unwrap();
        assert!(tokens.authenticate_secret(&again).is_ok());
        assert_eq!(tokens.all().count(), 2);
    }

    #[test]
    fn malformed_and_wrong_tokens_are_unauthorized() {
        let mut tokens = TerminalTokens::new();
        let (_, secret) = tokens.issue("till-1", 0).unwrap();
        let good = secret.expose_secret().to_owned();
        let mut wrong_secret = good.clone();
        let last = wrong_secret.pop().unwrap();
        wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
        let cases = vec![
            String::new(),
            "Bearer".into(),
            good.replace("opt_", "opx_"),
            good[..good.len() - 1].to_owned(),
            format!("{good}x"),
            good.to_uppercase(),
            wrong_secret,
            format!("opt_{}_{}", "0".repeat(16), &good[21..]),
            "opt_\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}_x".into(),
        ];
        for c in cases {
            assert_eq!(
                tokens.authenticate(&c),
                Err(AuthError::Unauthorized),
                "{c:?}"
            );
        }
        assert!(tokens.issue("bad name!", 0).is_err());
        assert!(tokens.issue("", 0).is_err());
    }
}
