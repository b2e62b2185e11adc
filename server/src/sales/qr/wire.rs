//! The protocol between the unit and the QR payment provider (docs/qr-payments.md).
//!
//! Both sides hold one 32-byte secret. The unit signs the **pay link** it shows as a
//! QR code, so the provider knows the amount and reference came from this store
//! unaltered; the provider signs each **notification** it posts back, so nobody else
//! can tell the unit that a code was paid. Signatures are BLAKE3 in keyed mode
//! (a MAC) over a context line and the signed fields, hex-encoded.

use serde::Deserialize;

use super::record::Notice;

/// The shared secret.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadSecret(String);

impl Secret {
    /// From the secret file's text: 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, BadSecret> {
        let t = text.trim();
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadSecret(
                "the QR payment secret must be 64 hex digits (32 bytes)".into(),
            ));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16)
                .map_err(|e| BadSecret(e.to_string()))?;
        }
        Ok(Secret(out))
    }

    fn mac(&self, context: &str, parts: &[&[u8]]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(context.as_bytes());
        for p in parts {
            h.update(b"\n");
            h.update(p);
        }
        h.finalize()
    }
}

const LINK_CONTEXT: &str = "outpost-qr-link-v1";
const NOTIFY_CONTEXT: &str = "outpost-qr-notify-v1";

/// What a pay link asks the customer to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link<'a> {
    /// The store's merchant id at the provider.
    pub merchant: &'a str,
    /// The payment's reference (its key).
    pub reference: &'a str,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: &'a str,
    /// Unix seconds after which the unit no longer waits.
    pub expires: i64,
    /// Where the provider sends the customer back after paying (phone checkout).
    pub return_to: Option<&'a str>,
}

/// Percent-encode for a query value.
fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|q| q.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

impl Link<'_> {
    /// The signed link under `base` (the provider's pay address).
    pub fn url(&self, base: &str, secret: &Secret) -> String {
        let amount = self.amount.to_string();
        let expires = self.expires.to_string();
        let ret = self.return_to.unwrap_or("");
        let sig = secret.mac(
            LINK_CONTEXT,
            &[
                self.merchant.as_bytes(),
                self.reference.as_bytes(),
                amount.as_bytes(),
                self.currency.as_bytes(),
                expires.as_bytes(),
                ret.as_bytes(),
            ],
        );
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut url = format!(
            "{base}{sep}m={}&ref={}&amount={amount}&cur={}&exp={expires}",
            enc(self.merchant),
            enc(self.reference),
            enc(self.currency),
        );
        if let Some(r) = self.return_to {
            url.push_str(&format!("&return={}", enc(r)));
        }
        url.push_str(&format!("&sig={}", sig.to_hex()));
        url
    }
}

/// A provider's notification as posted (JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationBody {
    merchant: String,
    reference: String,
    status: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    provider_ref: Option<String>,
    #[serde(default)]
    wallet: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// A notification the unit accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The reference it is about.
    pub reference: String,
    /// What it says.
    pub notice: Notice,
}

/// Why a notification is refused (nothing is recorded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotificationError {
    /// The signature is missing or does not match the body.
    #[error("the notification's signature is missing or wrong")]
    BadSignature,
    /// The body is not a notification (the message says what is wrong).
    #[error("{0}")]
    Malformed(String),
    /// It is for another merchant.
    #[error("the notification is for merchant {0:?}, not this store")]
    OtherMerchant(String),
}

/// The signature header's value for `body`.
pub fn sign_notification(secret: &Secret, body: &[u8]) -> String {
    secret.mac(NOTIFY_CONTEXT, &[body]).to_hex().to_string()
}

fn text(field: &str, v: Option<String>, max: usize) -> Result<String, NotificationError> {
    let v = v.ok_or_else(|| NotificationError::Malformed(format!("{field} is missing")))?;
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(NotificationError::Malformed(format!(
            "{field} must be 1 to {max} printable characters"
        )));
    }
    Ok(v)
}

/// Check `signature` over `body` and read it; `merchant` is this store's id.
pub fn read_notification(
    secret: &Secret,
    merchant: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<Notification, NotificationError> {
    let expected = secret.mac(NOTIFY_CONTEXT, &[body]);
    let given = signature
        .and_then(|s| blake3::Hash::from_hex(s.trim()).ok())
        .ok_or(NotificationError::BadSignature)?;
    // blake3::Hash compares in constant time.
    if given != expected {
        return Err(NotificationError::BadSignature);
    }
    let b: NotificationBody = serde_json::from_slice(body)
        .map_err(|e| NotificationError::Malformed(format!("not a notification: {e}")))?;
    if b.merchant != merchant {
        return Err(NotificationError::OtherMerchant(b.merchant));
    }
    let reference = text("reference", Some(b.reference), 64)?;
    if !reference
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-')
    {
        return Err(NotificationError::Malformed(
            "reference may hold only letters, digits and '-'".into(),
        ));
    }
    let notice = match b.status.as_str() {
        "paid" => {
            let amount = b
                .amount
                .ok_or_else(|| NotificationError::Malformed("amount is missing".into()))?;
            if amount <= 0 {
                return Err(NotificationError::Malformed(
                    "amount must be positive".into(),
                ));
            }
            let currency = text("currency", b.currency, 3)?;
            if currency.len() != 3 || !currency.bytes().all(|c| c.is_ascii_uppercase()) {
                return Err(NotificationError::Malformed(
                    "currency must be an ISO 4217 code".into(),
                ));
            }
            Notice::Paid {
                amount,
                currency,
                provider_ref: text("provider_ref", b.provider_ref, 64)?,
                wallet: b.wallet.map(|w| w.chars().take(32).collect()),
            }
        }
        "failed" => Notice::Failed {
            reason: b
                .reason
                .map(|r| r.chars().filter(|c| !c.is_control()).take(200).collect())
                .unwrap_or_else(|| "no reason given".into()),
        },
        other => {
            return Err(NotificationError::Malformed(format!(
                "status must be \"paid\" or \"failed\", not {other:?}"
            )));
        }
    };
    Ok(Notification { reference, notice })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_hex(&"ab".repeat(32)).unwrap()
    }

    fn body(status: &str) -> Vec<u8> {
        serde_json::json!({
            "merchant": "store-1", "reference": "0190-0", "status": status,
            "amount": 250, "currency": "EUR", "provider_ref": "pp-1", "wallet": "DemoPay",
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_signed_notification_is_read() {
        let s = secret();
        let b = body("paid");
        let sig = sign_notification(&s, &b);
        let n = read_notification(&s, "store-1", &b, Some(&sig)).unwrap();
        assert_eq!(n.reference, "0190-0");
        assert!(matches!(n.notice, Notice::Paid { amount: 250, .. }));
    }

    #[test]
    fn a_wrong_missing_or_foreign_signature_is_refused() {
        let s = secret();
        let b = body("paid");
        let other = Secret::from_hex(&"cd".repeat(32)).unwrap();
        for sig in [
            None,
            Some("zz".to_owned()),
            Some(sign_notification(&other, &b)),
        ] {
            assert_eq!(
                read_notification(&s, "store-1", &b, sig.as_deref()),
                Err(NotificationError::BadSignature)
            );
        }
        // A body changed after signing.
        let sig = sign_notification(&s, &b);
        let mut changed = b.clone();
        let at = changed.iter().position(|&c| c == b'2').unwrap();
        changed[at] = b'9';
        assert_eq!(
            read_notification(&s, "store-1", &changed, Some(&sig)),
            Err(NotificationError::BadSignature)
        );
    }

    #[test]
    fn malformed_or_foreign_notifications_are_refused_with_a_reason() {
        let s = secret();
        let sign = |b: &[u8]| sign_notification(&s, b);
        let b = body("refunded");
        assert!(matches!(
            read_notification(&s, "store-1", &b, Some(&sign(&b))),
            Err(NotificationError::Malformed(m)) if m.contains("status")
        ));
        let b = body("paid");
        assert!(matches!(
            read_notification(&s, "store-2", &b, Some(&sign(&b))),
            Err(NotificationError::OtherMerchant(_))
        ));
        let b = b"{not json".to_vec();
        assert!(matches!(
            read_notification(&s, "store-1", &b, Some(&sign(&b))),
            Err(NotificationError::Malformed(_))
        ));
        let b = serde_json::json!({"merchant":"store-1","reference":"a/b","status":"failed"})
            .to_string()
            .into_bytes();
        assert!(matches!(
            read_notification(&s, "store-1", &b, Some(&sign(&b))),
            Err(NotificationError::Malformed(m)) if m.contains("reference")
        ));
    }

    #[test]
    fn a_link_carries_its_fields_and_a_signature_over_them() {
        let s = secret();
        let l = Link {
            merchant: "store 1",
            reference: "0190-0",
            amount: 250,
            currency: "EUR",
            expires: 1_800_000_000,
            return_to: Some("http://127.0.0.1:1/shop/?paid=1&x=2"),
        };
        let url = l.url("http://pay.example/pay", &s);
        assert!(url.starts_with("http://pay.example/pay?m=store+1&ref=0190-0&amount=250&cur=EUR&exp=1800000000&return=http%3A%2F%2F127.0.0.1%3A1%2Fshop%2F%3Fpaid%3D1%26x%3D2&sig="), "{url}");
        let other = Link {
            amount: 251,
            ..l.clone()
        }
        .url("http://pay.example/pay", &s);
        assert_ne!(url.rsplit("sig=").next(), other.rsplit("sig=").next());
    }

    #[test]
    fn secrets_must_be_64_hex_digits() {
        assert!(Secret::from_hex(&format!(" {}\n", "0f".repeat(32))).is_ok());
        assert!(Secret::from_hex("abc").is_err());
        assert!(Secret::from_hex(&"zz".repeat(32)).is_err());
    }
}
