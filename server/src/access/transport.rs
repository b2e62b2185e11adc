//! The server's TLS wiring: which rustls configuration each port and the uplink get.
//!
//! - **REST / console port**: TLS 1.3 with the device certificate when
//!   [`Settings::http_tls`] (the listen address is not loopback, or `tls.http = "on"`).
//! - **gRPC port** (HQ's pushes) and **uplink** (to HQ): mutual TLS 1.3 when
//!   `sync.hq_ca` is set: the port accepts only clients with a certificate issued by
//!   HQ's CA *and* naming one of `sync.hq_client_names` (default `hq`; the CA also signs
//!   the units, whose certificates must not push), and the uplink trusts only that CA
//!   and presents the device certificate.
//!
//! The device certificate is the provisioned one (`tls.cert`, `tls.key`) or, when none
//! is configured and TLS is needed, the one generated at first start under the data dir
//! (see `outpost_security::tls`). Plaintext is allowed only on loopback: the settings
//! refuse anything else before this runs.

use std::path::Path;
use std::sync::Arc;

use outpost_security::tls::{self as sectls, DeviceIdentity, IdentityOrigin, TlsError};
use outpost_security::vault::Cipher;
use rustls::{ClientConfig, ServerConfig};

use crate::config::Settings;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerTlsError {
    /// The device certificate or key could not be loaded or generated.
    #[error("device certificate: {0}")]
    Identity(#[source] TlsError),
    /// The settings ask for plaintext off loopback, or are otherwise inconsistent.
    #[error(transparent)]
    Settings(#[from] crate::config::ConfigError),
    /// HQ's CA file could not be read.
    #[error("cannot read HQ's CA certificate {path}: {source}")]
    ReadCa {
        /// `sync.hq_ca`.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// HQ's CA file is too large to be a CA certificate.
    #[error("HQ's CA certificate {path} is over {max} bytes")]
    CaTooLarge {
        /// `sync.hq_ca`.
        path: String,
        /// The limit.
        max: u64,
    },
    /// HQ's CA does not parse, or rustls refused a configuration.
    #[error("HQ link TLS ({path}): {source}")]
    HqLink {
        /// `sync.hq_ca`.
        path: String,
        /// Why.
        #[source]
        source: TlsError,
    },
}

/// The rustls configurations of one run; `None` where that side is plaintext (loopback)
/// or off.
#[derive(Clone, Default)]
pub struct TlsSetup {
    /// The REST / console port's configuration (TLS 1.3, no client certificates).
    pub http: Option<Arc<ServerConfig>>,
    /// The gRPC port's configuration (TLS 1.3, client certificate from HQ's CA).
    pub grpc: Option<Arc<ServerConfig>>,
    /// The uplink's configuration (TLS 1.3, HQ's CA pinned, device certificate).
    pub uplink: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("http", &self.http.is_some())
            .field("grpc", &self.grpc.is_some())
            .field("uplink", &self.uplink.is_some())
            .finish()
    }
}

impl TlsSetup {
    /// Loads (or generates) what `settings` call for. The data dir must exist.
    ///
    /// `key_cipher` seals the device key in the data dir (see
    /// [`super::device_key_cipher`]); a provisioned key (`tls.key`) is the operator's file.
    pub fn load(settings: &Settings, key_cipher: &Cipher) -> Result<TlsSetup, ServerTlsError> {
        settings.validate_tls()?;
        let http_tls = settings.http_tls();
        let mtls = settings.hq_mtls();
        if !http_tls && !mtls {
            return Ok(TlsSetup::default());
        }
        let identity = device_identity(settings, key_cipher)?;
        let http = if http_tls {
            Some(sectls::server_config(&identity).map_err(ServerTlsError::Identity)?)
        } else {
            None
        };
        let (grpc, uplink) = match &settings.sync.hq_ca {
            Some(path) => {
                let ca = read_ca(path)?;
                let hq_err = |source| ServerTlsError::HqLink {
                    path: path.display().to_string(),
                    source,
                };
                let grpc = settings
                    .sync
                    .grpc_listen
                    .map(|_| {
                        sectls::mtls_server_config_for_names(
                            &identity,
                            &ca,
                            &settings.sync.hq_client_names,
                        )
                    })
                    .transpose()
                    .map_err(hq_err)?;
                let uplink = settings
                    .sync
                    .hq_url
                    .as_ref()
                    .map(|_| sectls::hq_client_config(&ca, &identity))
                    .transpose()
                    .map_err(hq_err)?;
                (grpc, uplink)
            }
            None => (None, None),
        };
        Ok(TlsSetup { http, grpc, uplink })
    }
}

fn device_identity(
    settings: &Settings,
    key_cipher: &Cipher,
) -> Result<DeviceIdentity, ServerTlsError> {
    if let (Some(cert), Some(key)) = (&settings.tls.cert, &settings.tls.key) {
        let identity = DeviceIdentity::load(cert, key).map_err(ServerTlsError::Identity)?;
        tracing::info!(cert = %cert.display(), "Loaded the provisioned device certificate");
        return Ok(identity);
    }
    let names = settings.certificate_names();
    let (identity, origin) =
        DeviceIdentity::load_or_generate_sealed(&settings.data_dir, &names, key_cipher)
            .map_err(ServerTlsError::Identity)?;
    let ca = settings.data_dir.join(sectls::CA_FILE);
    match origin {
        IdentityOrigin::Generated => tracing::warn!(
            ?names,
            ca = %ca.display(),
            "Generated a device certificate: terminals must pin its CA"
        ),
        IdentityOrigin::Loaded => {
            tracing::info!(ca = %ca.display(), "Loaded the device certificate from the data dir");
        }
    }
    Ok(identity)
}

fn read_ca(path: &Path) -> Result<Vec<u8>, ServerTlsError> {
    let read_err = |source| ServerTlsError::ReadCa {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > sectls::MAX_PEM_LEN {
        return Err(ServerTlsError::CaTooLarge {
            path: path.display().to_string(),
            max: sectls::MAX_PEM_LEN,
        });
    }
    std::fs::read(path).map_err(read_err)
}
