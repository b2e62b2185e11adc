//! `[tls]`: TLS on the REST / console port and the device certificate.

use std::path::PathBuf;

use serde::Deserialize;

use super::Settings;

/// Whether the REST / console port speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpTls {
    /// TLS unless the listen address is loopback (the default).
    Auto,
    /// Always TLS, loopback included.
    On,
    /// Plain HTTP; refused unless the listen address is loopback.
    Off,
}

impl std::str::FromStr for HttpTls {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(HttpTls::Auto),
            "on" => Ok(HttpTls::On),
            "off" => Ok(HttpTls::Off),
            _ => Err(format!("must be auto, on or off, not {s:?}")),
        }
    }
}

/// TLS on the REST / console port, and the device certificate it (and the gRPC port,
/// and the uplink to HQ) presents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// `auto` (TLS 1.3 unless `listen` is loopback), `on` or `off` (loopback only).
    /// `OUTPOST_TLS`.
    pub http: HttpTls,
    /// A provisioned device certificate chain (PEM, leaf first), e.g. issued by HQ's CA
    /// at enrollment. With `key`; when both are unset, a certificate is generated at
    /// first start under the data dir (`device-cert.pem`, `device-key.pem`,
    /// `device-ca.pem`).
    pub cert: Option<PathBuf>,
    /// The provisioned certificate's private key (PEM, mode 0600).
    pub key: Option<PathBuf>,
    /// DNS names or IP addresses a generated certificate is valid for, besides the
    /// listen address's IP (when it is not a wildcard like `0.0.0.0`).
    pub names: Vec<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            http: HttpTls::Auto,
            cert: None,
            key: None,
            names: Vec::new(),
        }
    }
}

impl Settings {
    /// Whether the REST / console port serves TLS.
    pub fn http_tls(&self) -> bool {
        match self.tls.http {
            HttpTls::On => true,
            HttpTls::Off => false,
            HttpTls::Auto => !self.listen.ip().is_loopback(),
        }
    }

    /// The names a generated device certificate covers: `tls.names`, then the listen
    /// IP unless it is a wildcard.
    pub fn certificate_names(&self) -> Vec<String> {
        let mut names = self.tls.names.clone();
        let ip = self.listen.ip();
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
        names
    }

    /// Whether the HQ link (gRPC port and uplink) uses mutual TLS.
    pub fn hq_mtls(&self) -> bool {
        self.sync.hq_ca.is_some()
    }
}
