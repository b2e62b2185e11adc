//! Setting QR payments up from `[payment.qr]`: the settings checked, the shared
//! secret read from its file.

use std::time::Duration;

use super::{QrConfig, Secret};
use crate::config::QrSettings;

impl QrConfig {
    /// The QR payment setup, reading the secret file (`None`: not configured).
    pub fn load(s: &QrSettings) -> Result<Option<QrConfig>, (&'static str, String)> {
        s.validate()?;
        let (Some(url), Some(merchant), Some(path)) = (&s.pay_url, &s.merchant, &s.secret_file)
        else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                "payment.qr.secret_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let secret = Secret::from_hex(&text)
            .map_err(|e| ("payment.qr.secret_file", format!("{}: {e}", path.display())))?;
        Ok(Some(QrConfig {
            pay_url: url.clone(),
            merchant: merchant.clone(),
            secret,
            expiry: Duration::from_secs(s.expiry_secs),
            brand: s.brand.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(dir: &std::path::Path) -> QrSettings {
        let f = dir.join("qr.key");
        std::fs::write(&f, format!("{}\n", "1f".repeat(32))).unwrap();
        QrSettings {
            pay_url: Some("https://pay.example/p".into()),
            merchant: Some("store-12".into()),
            secret_file: Some(f),
            ..QrSettings::default()
        }
    }

    #[test]
    fn off_by_default_and_loaded_when_complete() {
        assert!(QrConfig::load(&QrSettings::default()).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let c = QrConfig::load(&full(dir.path())).unwrap().unwrap();
        assert_eq!(c.merchant, "store-12");
        assert_eq!(c.expiry, Duration::from_secs(300));
    }

    #[test]
    fn a_missing_or_bad_secret_file_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let missing = QrSettings {
            secret_file: Some(dir.path().join("nope")),
            ..full(dir.path())
        };
        assert_eq!(
            QrConfig::load(&missing).unwrap_err().0,
            "payment.qr.secret_file"
        );
        let short = full(dir.path());
        std::fs::write(short.secret_file.as_ref().unwrap(), "abcd").unwrap();
        let e = QrConfig::load(&short).unwrap_err();
        assert_eq!(e.0, "payment.qr.secret_file");
        assert!(e.1.contains("64 hex digits"), "{}", e.1);
    }
}
