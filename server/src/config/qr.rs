//! `[payment.qr]`: QR payments through a wallet provider (docs/qr-payments.md).
//!
//! Off unless `pay_url`, `merchant` and `secret_file` are all given. The secret is
//! read at start-up (`sales::qr::QrConfig::load`): a file of 64 hex digits shared
//! with the provider, readable by the service only.

use std::path::PathBuf;

use serde::Deserialize;

/// `[payment.qr]` as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QrSettings {
    /// The provider's pay address; the unit's signed pay link starts with it.
    pub pay_url: Option<String>,
    /// The store's merchant id at the provider.
    pub merchant: Option<String>,
    /// The file holding the secret shared with the provider (64 hex digits).
    pub secret_file: Option<PathBuf>,
    /// Seconds a code may be paid (default 300).
    pub expiry_secs: u64,
    /// What a receipt calls the tender when the provider names no wallet.
    pub brand: String,
}

impl Default for QrSettings {
    fn default() -> Self {
        QrSettings {
            pay_url: None,
            merchant: None,
            secret_file: None,
            expiry_secs: 300,
            brand: "QR".into(),
        }
    }
}

impl QrSettings {
    /// Whether QR payments are configured at all.
    pub fn enabled(&self) -> bool {
        self.pay_url.is_some() || self.merchant.is_some() || self.secret_file.is_some()
    }

    /// Check the values (not the secret file, read by [`Self::load`]); the error
    /// names its field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.enabled() {
            return Ok(());
        }
        let (Some(url), Some(merchant), Some(_)) =
            (&self.pay_url, &self.merchant, &self.secret_file)
        else {
            return Err((
                "payment.qr",
                "QR payments need pay_url, merchant and secret_file together".into(),
            ));
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            return Err((
                "payment.qr.pay_url",
                format!("must be an http:// or https:// address, not {url:?}"),
            ));
        }
        if merchant.is_empty() || merchant.len() > 64 || merchant.chars().any(char::is_control) {
            return Err((
                "payment.qr.merchant",
                "must be 1 to 64 printable characters".into(),
            ));
        }
        if !(30..=3600).contains(&self.expiry_secs) {
            return Err((
                "payment.qr.expiry_secs",
                format!("must be between 30 and 3600, not {}", self.expiry_secs),
            ));
        }
        if self.brand.is_empty() || self.brand.len() > 32 {
            return Err(("payment.qr.brand", "must be 1 to 32 characters".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> QrSettings {
        QrSettings {
            pay_url: Some("https://pay.example/p".into()),
            merchant: Some("store-12".into()),
            secret_file: Some("/etc/outpost/qr.key".into()),
            ..QrSettings::default()
        }
    }

    #[test]
    fn off_by_default_and_valid_when_complete() {
        assert!(!QrSettings::default().enabled());
        assert!(QrSettings::default().validate().is_ok());
        assert!(full().validate().is_ok());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let half = QrSettings {
            secret_file: None,
            ..full()
        };
        assert_eq!(half.validate().unwrap_err().0, "payment.qr");
        let url = QrSettings {
            pay_url: Some("ftp://x".into()),
            ..full()
        };
        assert_eq!(url.validate().unwrap_err().0, "payment.qr.pay_url");
        let exp = QrSettings {
            expiry_secs: 5,
            ..full()
        };
        assert_eq!(exp.validate().unwrap_err().0, "payment.qr.expiry_secs");
    }
}
