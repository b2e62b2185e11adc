//! HQ's push token: proof that a call to a store's gRPC port comes from HQ, for a port
//! that has no mutual TLS (plaintext on loopback, no `sync.hq_ca`), where any local
//! process could otherwise push prices, tax rates or a device set.
//!
//! HQ signs a short-lived [`PushToken`] with the same Ed25519 key that signs leases and
//! commands (the key the unit pins as `[security] hq_public_key`), and sends it with
//! each state-changing call in the gRPC metadata [`PUSH_TOKEN_METADATA`], standard
//! base64. The wire format follows [`crate::lease`]:
//!
//! ```text
//! "OPPUSH01" || u8 len || store || u8 len || unit || issued_at u64 || expires_at u64
//!            || nonce [16] || Ed25519 signature [64] over every byte before it
//! ```
//!
//! Integers are big-endian unix seconds; ids are 1 to [`MAX_ID_LEN`] bytes of UTF-8
//! without control characters. The magic separates the domain: a signed lease or
//! command is never a push token, nor the reverse. A token lives at most
//! [`MAX_PUSH_TOKEN_LIFETIME`]; the unit accepts it within [`PUSH_TOKEN_CLOCK_SKEW`] of
//! its validity, so HQ's clock and the unit's may disagree by that much.
//!
//! A token names one unit of one store and is not bound to one request: within its few
//! minutes it authorises any call to that unit. HQ mints one per call.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use time::{Duration, OffsetDateTime};

use crate::lease::MAX_ID_LEN;

/// Magic of a signed push token.
pub const PUSH_TOKEN_MAGIC: &[u8; 8] = b"OPPUSH01";
/// The gRPC metadata key that carries the token (base64 of the signed bytes).
pub const PUSH_TOKEN_METADATA: &str = "x-outpost-hq-token";
/// Longest validity a token may claim (`expires_at - issued_at`).
pub const MAX_PUSH_TOKEN_LIFETIME: Duration = Duration::minutes(10);
/// How far the unit's clock may be from HQ's, at either end of a token's validity.
pub const PUSH_TOKEN_CLOCK_SKEW: Duration = Duration::minutes(5);
/// The validity [`PushTokenSigner::mint`] gives a token.
pub const DEFAULT_PUSH_TOKEN_LIFETIME: Duration = Duration::minutes(5);

const NONCE_LEN: usize = 16;
const SIGNATURE_LEN: usize = 64;
/// Longest signed token: magic, two ids, two times, nonce, signature.
const MAX_TOKEN_LEN: usize = 8 + 2 * (1 + MAX_ID_LEN) + 8 + 8 + NONCE_LEN + SIGNATURE_LEN;
/// Longest base64 text of a token (4 characters per 3 bytes, padded).
pub const MAX_PUSH_TOKEN_TEXT: usize = MAX_TOKEN_LEN.div_ceil(3) * 4;

/// Why a push token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushTokenError {
    /// Not base64, or the bytes do not parse.
    #[error("malformed push token: {0}")]
    Malformed(String),
    /// The signature is not the pinned HQ key's over these bytes.
    #[error("push token not signed by the HQ key this unit trusts")]
    BadSignature,
    /// Signed for another store or unit.
    #[error("push token for store {store:?} unit {unit:?}, not this unit")]
    WrongDevice {
        /// The store named in the token.
        store: String,
        /// The unit named in the token.
        unit: String,
    },
    /// Claims a validity longer than [`MAX_PUSH_TOKEN_LIFETIME`].
    #[error(
        "push token valid for {secs} s, longer than the {} s allowed",
        MAX_PUSH_TOKEN_LIFETIME.whole_seconds()
    )]
    TooLong {
        /// Its claimed validity in seconds.
        secs: i64,
    },
    /// Issued further ahead of this unit's clock than the skew allows.
    #[error("push token issued at {issued_at}, in the future of this unit's clock ({now})")]
    FromTheFuture {
        /// When it claims to be issued.
        issued_at: OffsetDateTime,
        /// The unit's time.
        now: OffsetDateTime,
    },
    /// Expired (beyond the skew allowed).
    #[error("push token expired at {until}, now {now}")]
    Expired {
        /// End of validity.
        until: OffsetDateTime,
        /// The unit's time.
        now: OffsetDateTime,
    },
}

fn malformed(detail: impl Into<String>) -> PushTokenError {
    PushTokenError::Malformed(detail.into())
}

/// HQ's statement that the bearer may change unit `unit` of store `store` until
/// `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushToken {
    /// The store id, as enrolled.
    pub store: String,
    /// The unit id within the store.
    pub unit: String,
    /// When HQ issued it (whole seconds).
    pub issued_at: OffsetDateTime,
    /// End of validity (whole seconds), at most [`MAX_PUSH_TOKEN_LIFETIME`] after
    /// `issued_at`.
    pub expires_at: OffsetDateTime,
    /// Random, so two tokens issued in the same second differ.
    pub nonce: [u8; NONCE_LEN],
}

fn check_id(s: &str) -> Result<(), PushTokenError> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(malformed(format!(
            "id of {} bytes (1..={MAX_ID_LEN})",
            s.len()
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(malformed("id contains control characters"));
    }
    Ok(())
}

fn unix(t: OffsetDateTime) -> u64 {
    t.unix_timestamp().max(0) as u64
}

/// Reads the signed fields in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], PushTokenError> {
        if self.rest.len() < n {
            return Err(malformed(format!("truncated at {field}")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn time(&mut self, field: &str) -> Result<OffsetDateTime, PushTokenError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, field)?);
        let secs = i64::try_from(u64::from_be_bytes(b))
            .map_err(|_| malformed(format!("{field} is out of range")))?;
        OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|_| malformed(format!("{field} {secs} is out of range")))
    }

    fn string(&mut self, field: &str) -> Result<String, PushTokenError> {
        let len = self.take(1, field)?[0] as usize;
        let s = std::str::from_utf8(self.take(len, field)?)
            .map_err(|_| malformed(format!("{field} is not UTF-8")))?;
        check_id(s)?;
        Ok(s.to_owned())
    }
}

impl PushToken {
    /// A token for `unit` of `store`, issued at `now` (whole seconds) and valid for
    /// `lifetime`, with a random nonce.
    pub fn new(
        store: impl Into<String>,
        unit: impl Into<String>,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Self {
        let issued_at = now.replace_nanosecond(0).unwrap_or(now);
        PushToken {
            store: store.into(),
            unit: unit.into(),
            issued_at,
            expires_at: issued_at + lifetime,
            nonce: rand::random(),
        }
    }

    /// The bytes HQ signs. Refuses what [`PushToken::verify`] would refuse as malformed
    /// or too long, so HQ never signs a token no unit accepts.
    fn body(&self) -> Result<Vec<u8>, PushTokenError> {
        check_id(&self.store)?;
        check_id(&self.unit)?;
        check_lifetime(self.issued_at, self.expires_at)?;
        let mut out = Vec::with_capacity(MAX_TOKEN_LEN);
        out.extend_from_slice(PUSH_TOKEN_MAGIC);
        for id in [&self.store, &self.unit] {
            // Lengths are checked above.
            out.push(id.len() as u8);
            out.extend_from_slice(id.as_bytes());
        }
        out.extend_from_slice(&unix(self.issued_at).to_be_bytes());
        out.extend_from_slice(&unix(self.expires_at).to_be_bytes());
        out.extend_from_slice(&self.nonce);
        Ok(out)
    }

    /// Parses signed token bytes and checks the magic, the signature against `hq_key`,
    /// and the lifetime rule; [`PushToken::check`] then checks the unit and the time.
    pub fn verify(bytes: &[u8], hq_key: &VerifyingKey) -> Result<PushToken, PushTokenError> {
        if bytes.len() > MAX_TOKEN_LEN {
            return Err(malformed(format!("{} bytes is too long", bytes.len())));
        }
        if bytes.len() < PUSH_TOKEN_MAGIC.len() + SIGNATURE_LEN {
            return Err(malformed(format!("{} bytes is too short", bytes.len())));
        }
        if &bytes[..PUSH_TOKEN_MAGIC.len()] != PUSH_TOKEN_MAGIC {
            return Err(malformed("wrong magic"));
        }
        let (body, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
        let mut sig_bytes = [0u8; SIGNATURE_LEN];
        sig_bytes.copy_from_slice(sig);
        hq_key
            .verify_strict(body, &Signature::from_bytes(&sig_bytes))
            .map_err(|_| PushTokenError::BadSignature)?;
        let mut r = Reader {
            rest: &body[PUSH_TOKEN_MAGIC.len()..],
        };
        let store = r.string("store")?;
        let unit = r.string("unit")?;
        let issued_at = r.time("issued_at")?;
        let expires_at = r.time("expires_at")?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(r.take(NONCE_LEN, "nonce")?);
        if !r.rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", r.rest.len())));
        }
        check_lifetime(issued_at, expires_at)?;
        Ok(PushToken {
            store,
            unit,
            issued_at,
            expires_at,
            nonce,
        })
    }

    /// [`PushToken::verify`] of the base64 text sent in [`PUSH_TOKEN_METADATA`].
    pub fn verify_text(text: &str, hq_key: &VerifyingKey) -> Result<PushToken, PushTokenError> {
        let text = text.trim();
        if text.len() > MAX_PUSH_TOKEN_TEXT {
            return Err(malformed(format!("{} characters is too long", text.len())));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| malformed("not standard base64"))?;
        Self::verify(&bytes, hq_key)
    }

    /// Whether this token lets its bearer change unit `unit` of store `store` at
    /// `now`, allowing [`PUSH_TOKEN_CLOCK_SKEW`] either way.
    pub fn check(
        &self,
        store: &str,
        unit: &str,
        now: OffsetDateTime,
    ) -> Result<(), PushTokenError> {
        if self.store != store || self.unit != unit {
            return Err(PushTokenError::WrongDevice {
                store: self.store.clone(),
                unit: self.unit.clone(),
            });
        }
        if self.issued_at > now + PUSH_TOKEN_CLOCK_SKEW {
            return Err(PushTokenError::FromTheFuture {
                issued_at: self.issued_at,
                now,
            });
        }
        if now > self.expires_at + PUSH_TOKEN_CLOCK_SKEW {
            return Err(PushTokenError::Expired {
                until: self.expires_at,
                now,
            });
        }
        Ok(())
    }
}

fn check_lifetime(
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<(), PushTokenError> {
    if expires_at <= issued_at {
        return Err(malformed("expires_at is not after issued_at"));
    }
    let lifetime = expires_at - issued_at;
    if lifetime > MAX_PUSH_TOKEN_LIFETIME {
        return Err(PushTokenError::TooLong {
            secs: lifetime.whole_seconds(),
        });
    }
    Ok(())
}

/// HQ's side: signs push tokens with HQ's Ed25519 key (the secret behind the units'
/// `hq_public_key`, the same one [`crate::lease::HqSigner`] signs leases with). Used by
/// HQ, the mock HQ and tests.
pub struct PushTokenSigner {
    key: SigningKey,
}

impl fmt::Debug for PushTokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushTokenSigner")
            .field("public", &self.key.verifying_key())
            .finish_non_exhaustive()
    }
}

impl PushTokenSigner {
    /// The signer for a 32-byte Ed25519 secret key.
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The public key units pin.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs a token; the bytes [`PushToken::verify`] takes.
    pub fn sign(&self, token: &PushToken) -> Result<Vec<u8>, PushTokenError> {
        let mut body = token.body()?;
        let sig = self.key.sign(&body);
        body.extend_from_slice(&sig.to_bytes());
        Ok(body)
    }

    /// Signs a token and encodes it for [`PUSH_TOKEN_METADATA`].
    pub fn sign_text(&self, token: &PushToken) -> Result<String, PushTokenError> {
        Ok(base64::engine::general_purpose::STANDARD.encode(self.sign(token)?))
    }

    /// A fresh token for `unit` of `store`, valid [`DEFAULT_PUSH_TOKEN_LIFETIME`] from
    /// now, encoded for [`PUSH_TOKEN_METADATA`].
    pub fn mint(&self, store: &str, unit: &str) -> Result<String, PushTokenError> {
        self.sign_text(&PushToken::new(
            store,
            unit,
            OffsetDateTime::now_utc(),
            DEFAULT_PUSH_TOKEN_LIFETIME,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{HqSigner, Lease};

    const T0: OffsetDateTime = time::macros::datetime!(2025-03-01 12:00:00 UTC);
    const SECRET: [u8; 32] = [9; 32];

    fn token(lifetime: Duration) -> PushToken {
        PushToken::new("store-1", "unit-1", T0, lifetime)
    }

    fn signer() -> PushTokenSigner {
        PushTokenSigner::from_bytes(SECRET)
    }

    #[test]
    fn a_signed_token_verifies_and_holds_for_its_unit_while_valid() {
        let s = signer();
        let t = token(Duration::minutes(5));
        let text = s.sign_text(&t).unwrap();
        assert!(text.len() <= MAX_PUSH_TOKEN_TEXT);
        let back = PushToken::verify_text(&text, &s.verifying_key()).unwrap();
        assert_eq!(back, t);
        for at in [T0, T0 + Duration::minutes(5), T0 - Duration::minutes(4)] {
            back.check("store-1", "unit-1", at).unwrap();
        }
    }

    #[test]
    fn new_truncates_to_whole_seconds_so_the_signed_times_round_trip() {
        let s = signer();
        let t = PushToken::new(
            "s",
            "u",
            T0 + Duration::milliseconds(700),
            Duration::minutes(1),
        );
        assert_eq!(t.issued_at, T0);
        let back = PushToken::verify(&s.sign(&t).unwrap(), &s.verifying_key()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn a_token_for_another_store_or_unit_is_refused() {
        let t = token(Duration::minutes(5));
        for (store, unit) in [("store-1", "unit-2"), ("store-2", "unit-1")] {
            assert_eq!(
                t.check(store, unit, T0),
                Err(PushTokenError::WrongDevice {
                    store: "store-1".into(),
                    unit: "unit-1".into()
                })
            );
        }
    }

    #[test]
    fn an_expired_or_future_token_is_refused_beyond_the_skew() {
        let t = token(Duration::minutes(5));
        let late = T0 + Duration::minutes(5) + PUSH_TOKEN_CLOCK_SKEW + Duration::seconds(1);
        assert!(matches!(
            t.check("store-1", "unit-1", late),
            Err(PushTokenError::Expired { .. })
        ));
        t.check("store-1", "unit-1", late - Duration::seconds(1))
            .unwrap();
        let early = T0 - PUSH_TOKEN_CLOCK_SKEW - Duration::seconds(1);
        assert!(matches!(
            t.check("store-1", "unit-1", early),
            Err(PushTokenError::FromTheFuture { .. })
        ));
    }

    #[test]
    fn a_token_signed_by_another_key_or_altered_is_refused() {
        let s = signer();
        let other = PushTokenSigner::from_bytes([3; 32]);
        let bytes = other.sign(&token(Duration::minutes(5))).unwrap();
        assert_eq!(
            PushToken::verify(&bytes, &s.verifying_key()),
            Err(PushTokenError::BadSignature)
        );
        let mut bytes = s.sign(&token(Duration::minutes(5))).unwrap();
        // The unit id's last byte: "unit-1" -> "unit-2".
        let at = 8 + 1 + "store-1".len() + 1 + "unit-".len();
        bytes[at] = b'2';
        assert_eq!(
            PushToken::verify(&bytes, &s.verifying_key()),
            Err(PushTokenError::BadSignature)
        );
    }

    #[test]
    fn a_lifetime_over_ten_minutes_is_neither_signed_nor_accepted() {
        let s = signer();
        let long = token(MAX_PUSH_TOKEN_LIFETIME + Duration::seconds(1));
        assert_eq!(s.sign(&long), Err(PushTokenError::TooLong { secs: 601 }));
        s.sign(&token(MAX_PUSH_TOKEN_LIFETIME)).unwrap();
        // A token built by hand (not through `sign`) with a long life is refused too.
        let mut body = token(Duration::minutes(1)).body().unwrap();
        let expires = 8 + 1 + 7 + 1 + 6 + 8;
        body[expires..expires + 8].copy_from_slice(&unix(T0 + Duration::hours(1)).to_be_bytes());
        let sig = SigningKey::from_bytes(&SECRET).sign(&body);
        body.extend_from_slice(&sig.to_bytes());
        assert_eq!(
            PushToken::verify(&body, &s.verifying_key()),
            Err(PushTokenError::TooLong { secs: 3600 })
        );
        let backwards = PushToken {
            expires_at: T0 - Duration::seconds(1),
            ..token(Duration::minutes(1))
        };
        assert!(matches!(
            s.sign(&backwards),
            Err(PushTokenError::Malformed(_))
        ));
    }

    #[test]
    fn a_lease_signed_by_the_same_key_is_not_a_push_token() {
        let hq = HqSigner::from_bytes(SECRET);
        let lease = hq
            .sign_lease(&Lease {
                store: "store-1".into(),
                unit: "unit-1".into(),
                issued_at: T0,
                expires_at: T0 + Duration::minutes(5),
                nonce: [0; 16],
            })
            .unwrap();
        assert_eq!(
            PushToken::verify(&lease, &hq.verifying_key()),
            Err(malformed("wrong magic"))
        );
        // And the two signers agree on the key: HQ needs one secret for both.
        assert_eq!(hq.verifying_key(), signer().verifying_key());
    }

    #[test]
    fn malformed_tokens_are_refused_with_what_is_wrong() {
        let s = signer();
        let key = s.verifying_key();
        let good = s.sign(&token(Duration::minutes(5))).unwrap();
        let resign = |body: &[u8]| {
            let mut b = body.to_vec();
            b.extend_from_slice(&SigningKey::from_bytes(&SECRET).sign(body).to_bytes());
            b
        };
        let body = &good[..good.len() - SIGNATURE_LEN];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "too short"),
            (vec![0; MAX_TOKEN_LEN + 1], "too long"),
            (resign(&body[..body.len() - 1]), "truncated at nonce"),
            (resign(&[body, &[0]].concat()), "1 trailing bytes"),
            (resign(&[&body[..8], &[0]].concat()), "id of 0 bytes"),
            (resign(b"OPPUSH01\x02\x00\x01"), "control characters"),
            (resign(b"OPPUSH01\x02\xff\xfe"), "store is not UTF-8"),
        ];
        for (bytes, want) in cases {
            match PushToken::verify(&bytes, &key) {
                Err(PushTokenError::Malformed(m)) => assert!(m.contains(want), "{m} !~ {want}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        for text in ["not base64!", "", &"A".repeat(MAX_PUSH_TOKEN_TEXT + 4)] {
            assert!(matches!(
                PushToken::verify_text(text, &key),
                Err(PushTokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn ids_that_are_empty_too_long_or_controls_are_never_signed() {
        let s = signer();
        for (store, unit) in [("", "u"), ("s", &"x".repeat(MAX_ID_LEN + 1)), ("s\n", "u")] {
            let t = PushToken::new(store, unit, T0, Duration::minutes(1));
            assert!(
                matches!(s.sign(&t), Err(PushTokenError::Malformed(_))),
                "{t:?}"
            );
        }
    }

    #[test]
    fn two_tokens_minted_at_once_differ() {
        let s = signer();
        assert_ne!(s.mint("s", "u").unwrap(), s.mint("s", "u").unwrap());
    }
}
