//! `[tls]`: TLS on the REST / console port and the device certificate.

use std::path::{Path, PathBuf};

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

    /// When the config names none of `tls.cert`, `tls.key` and `sync.hq_ca`: the
    /// certificate, key and HQ's CA a token enrolment kept in the data dir
    /// ([`enrolled_files`]) are used. Without them, a data dir not enrolled yet whose
    /// HQ link needs mutual TLS (an `https://` HQ, a gRPC port off loopback) has the
    /// link set aside ([`super::SyncSettings::awaiting_enrolment`]): the unit starts
    /// and sells, and the link starts with the first start after `outpost enroll`.
    pub fn adopt_enrolment(&mut self) {
        if self.tls.cert.is_some() || self.tls.key.is_some() || self.sync.hq_ca.is_some() {
            return;
        }
        if let Some([cert, key, ca]) = enrolled_files(&self.data_dir) {
            self.tls.cert = Some(cert);
            self.tls.key = Some(key);
            self.sync.hq_ca = Some(ca);
            return;
        }
        let https = self
            .sync
            .hq_url
            .as_deref()
            .is_some_and(|u| matches!(super::url_scheme_and_loopback(u), Ok((true, _))));
        let open_port = self.sync.grpc_listen.is_some_and(|a| !a.ip().is_loopback());
        let enrolled = self
            .data_dir
            .join(outpost_security::trust::TRUST_FILE)
            .exists();
        if (https || open_port) && !enrolled {
            self.sync.awaiting_enrolment = Some(super::HqLinkAside {
                hq_url: self.sync.hq_url.take(),
                grpc_listen: self.sync.grpc_listen.take(),
            });
        }
    }
}

/// Where a token enrolment keeps the certificate, its key and HQ's CA when the config
/// names no place for them: this directory in the data dir.
pub const HQ_LINK_DIR: &str = "hq-link";
/// The files in [`HQ_LINK_DIR`]: the certificate, its key, HQ's CA.
pub const HQ_LINK_FILES: [&str; 3] = ["device-cert.pem", "device-key.pem", "hq-ca.pem"];

/// The certificate, key and CA a token enrolment put in `data_dir`, when all three
/// are there.
pub fn enrolled_files(data_dir: &Path) -> Option<[PathBuf; 3]> {
    let dir = data_dir.join(HQ_LINK_DIR);
    let files = HQ_LINK_FILES.map(|f| dir.join(f));
    files.iter().all(|f| f.is_file()).then_some(files)
}
