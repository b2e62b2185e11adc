//! argon2id password hashes and the staff user directory.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), so the
//! parameters travel with each hash: raising them later applies to new hashes while old
//! ones still verify. Production parameters are [`PasswordParams::PRODUCTION`]
//! (OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane; about 50 ms per verify on a
//! quiet 2-core box, about 100 ms on the shared one, see BENCHMARKS.md). Tests use [`PasswordParams::FAST`].

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::roles::{Principal, Role};
use super::{AuthError, check_name};

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl PasswordParams {
    /// Production: 19 MiB, t = 2, p = 1 (OWASP password storage cheat sheet).
    pub const PRODUCTION: PasswordParams = PasswordParams {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    /// Tests and demos only: 64 KiB, t = 1 — still argon2id, just cheap.
    pub const FAST: PasswordParams = PasswordParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn argon2(self) -> Result<Argon2<'static>, AuthError> {
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, None).map_err(|e| {
            AuthError::Invalid {
                field: "password params",
                reason: e.to_string(),
            }
        })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted (bounds hashing work per request).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Hashes `password` with a fresh random salt.
pub fn hash_password(password: &SecretString, params: PasswordParams) -> Result<String, AuthError> {
    let pw = password.expose_secret();
    if pw.chars().count() < MIN_PASSWORD_LEN || pw.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::Invalid {
            field: "password",
            reason: format!("{MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"),
        });
    }
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Corrupt(e.to_string()))?;
    let hash = params
        .argon2()?
        .hash_password(pw.as_bytes(), &salt)
        .map_err(|e| AuthError::Corrupt(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks `password` against a stored PHC hash. `Ok(false)` is a wrong password; an
/// error means the stored hash itself is unusable (corrupt, or not argon2id).
pub fn verify_password(phc: &str, password: &SecretString) -> Result<bool, AuthError> {
    let parsed = PasswordHash::new(phc).map_err(|e| AuthError::Corrupt(e.to_string()))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(AuthError::Corrupt(format!(
            "algorithm {} is not argon2id",
            parsed.algorithm
        )));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(AuthError::Corrupt("hash or salt missing".into()));
    }
    if password.expose_secret().len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    match Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(AuthError::Corrupt(e.to_string())),
    }
}

/// A random 24-character password (144 bits), for demo and first-run accounts.
pub fn generate_password() -> SecretString {
    let bytes: [u8; 18] = rand::random();
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// One staff account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Login name.
    pub username: String,
    /// argon2id PHC hash.
    pub password_hash: String,
    /// Roles held.
    pub roles: Vec<Role>,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
}

/// The staff accounts; serializable so the server can store it encrypted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserDirectory {
    users: BTreeMap<String, UserRecord>,
    params: Option<PasswordParams>,
}

impl UserDirectory {
    /// An empty directory hashing new passwords with `params`.
    pub fn new(params: PasswordParams) -> Self {
        Self {
            users: BTreeMap::new(),
            params: Some(params),
        }
    }

    fn params(&self) -> PasswordParams {
        self.params.unwrap_or(PasswordParams::PRODUCTION)
    }

    /// Adds or replaces an account.
    pub fn set_user(
        &mut self,
        username: &str,
        password: &SecretString,
        roles: Vec<Role>,
    ) -> Result<(), AuthError> {
        check_name("username", username)?;
        if roles.is_empty() || roles.contains(&Role::CashierTerminal) {
            return Err(AuthError::Invalid {
                field: "roles",
                reason: "staff accounts need at least one of supervisor, technician, admin".into(),
            });
        }
        let password_hash = hash_password(password, self.params())?;
        self.users.insert(
            username.to_ascii_lowercase(),
            UserRecord {
                username: username.to_owned(),
                password_hash,
                roles,
                disabled: false,
            },
        );
        Ok(())
    }

    /// Disables an account; returns whether it existed.
    pub fn disable(&mut self, username: &str) -> bool {
        match self.users.get_mut(&username.to_ascii_lowercase()) {
            Some(u) => {
                u.disabled = true;
                true
            }
            None => false,
        }
    }

    /// Every account, disabled ones included, in username order.
    pub fn all(&self) -> impl Iterator<Item = &UserRecord> {
        self.users.values()
    }

    /// How many enabled accounts hold `admin` (who can manage accounts and terminals).
    pub fn enabled_admins(&self) -> usize {
        self.users
            .values()
            .filter(|u| !u.disabled && u.roles.contains(&Role::Admin))
            .count()
    }

    /// The account, if any.
    pub fn get(&self, username: &str) -> Option<&UserRecord> {
        self.users.get(&username.to_ascii_lowercase())
    }

    /// Checks a login. Unknown users cost the same argon2 work as known ones, so the
    /// answer time does not reveal which usernames exist.
    pub fn login(&self, username: &str, password: &SecretString) -> Result<Principal, AuthError> {
        match self.get(username) {
            Some(user) if !user.disabled => {
                if verify_password(&user.password_hash, password)? {
                    Ok(Principal {
                        name: user.username.clone(),
                        roles: user.roles.clone(),
                    })
                } else {
                    Err(AuthError::Unauthorized)
                }
            }
            _ => {
                // Spend the same work on a throwaway hash, then refuse.
                let _ = hash_password(
                    &SecretString::from("x".repeat(MIN_PASSWORD_LEN)),
                    self.params(),
                );
                Err(AuthError::Unauthorized)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn hash_and_verify() {
        let h = hash_password(&pw("correct horse battery"), PasswordParams::FAST).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(verify_password(&h, &pw("correct horse battery")).unwrap());
        assert!(!verify_password(&h, &pw("correct horse battery!")).unwrap());
        assert_ne!(
            h,
            hash_password(&pw("correct horse battery"), PasswordParams::FAST).unwrap()
        );
    }

    #[test]
    fn bad_passwords_hashes_and_params_are_refused() {
        assert!(matches!(
            hash_password(&pw("short"), PasswordParams::FAST),
            Err(AuthError::Invalid { .. })
        ));
        assert!(matches!(
            hash_password(&pw(&"x".repeat(300)), PasswordParams::FAST),
            Err(AuthError::Invalid { .. })
        ));
        let bad = PasswordParams {
            m_cost_kib: 1,
            t_cost: 0,
            p_cost: 1,
        };
        assert!(matches!(
            hash_password(&pw("long enough pw"), bad),
            Err(AuthError::Invalid { .. })
        ));
        for phc in [
            "",
            "not a hash",
            "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=64",
        ] {
            assert!(
                matches!(
                    verify_password(phc, &pw("long enough pw")),
                    Err(AuthError::Corrupt(_))
                ),
                "{phc}"
            );
        }
    }

    #[test]
    fn directory_login() {
        let mut dir = UserDirectory::new(PasswordParams::FAST);
        dir.set_user("Tech1", &pw("a good long password"), vec![Role::Technician])
            .unwrap();
        let p = dir.login("tech1", &pw("a good long password")).unwrap();
        assert_eq!(p.roles, vec![Role::Technician]);
        assert_eq!(
            dir.login("tech1", &pw("wrong password!!")),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            dir.login("nobody", &pw("a good long password")),
            Err(AuthError::Unauthorized)
        );
        assert!(dir.disable("TECH1"));
        assert_eq!(
            dir.login("tech1", &pw("a good long password")),
            Err(AuthError::Unauthorized)
        );
        assert!(
            dir.set_user("bad name", &pw("a good long password"), vec![Role::Admin])
                .is_err()
        );
        assert!(
            dir.set_user("x", &pw("a good long password"), vec![])
                .is_err()
        );
        assert!(
            dir.set_user(
                "x",
                &pw("a good long password"),
                vec![Role::CashierTerminal]
            )
            .is_err()
        );
        let json = serde_json::to_string(&dir).unwrap();
        assert!(!json.contains("a good long password"));
    }

    #[test]
    fn enabled_admins_counts_only_enabled_accounts_holding_admin() {
        let mut dir = UserDirectory::new(PasswordParams::FAST);
        assert_eq!(dir.enabled_admins(), 0);
        dir.set_user("root", &pw("a good long password"), vec![Role::Admin])
            .unwrap();
        dir.set_user(
            "boss",
            &pw("a good long password"),
            vec![Role::Supervisor, Role::Admin],
        )
        .unwrap();
        dir.set_user("tech", &pw("a good long password"), vec![Role::Technician])
            .unwrap();
        assert_eq!(dir.enabled_admins(), 2);
        assert!(dir.disable("boss"));
        assert_eq!(dir.enabled_admins(), 1);
        let names: Vec<&str> = dir.all().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["boss", "root", "tech"]);
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate_password();
        assert_eq!(a.expose_secret().len(), 24);
        assert_ne!(a.expose_secret(), generate_password().expose_secret());
    }
}
