//! Device identity and rustls configurations.
//!
//! - The REST and console port serves **TLS 1.3 only** with the device certificate:
//!   [`server_config`]. Terminals pin that certificate (or the CA that issued it).
//! - The gRPC link to HQ is **mutual TLS**: the device trusts only HQ's CA (pinned at
//!   enrollment, no system roots) and presents its own certificate: [`hq_client_config`].
//!   HQ's side (and the mock HQ) uses [`mtls_server_config`].
//!
//! The device certificate is either provisioned at enrollment (signed by HQ's CA, so HQ
//! can authenticate the device) or, on first start without one, generated here as a
//! ECDSA P-256 certificate for the configured names, signed by a one-off device CA whose
//! key is discarded at once. The files live in the data dir: `device-cert.pem`,
//! `device-key.pem` (mode 0600) and `device-ca.pem` (what terminals pin).
//!
//! All configurations use rustls' *ring* provider explicitly, so nothing depends on a
//! process-wide default provider.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use time::{Duration, OffsetDateTime};

use crate::fsutil::{self, FsError};
use crate::vault::Cipher;

/// File name of the device certificate chain in the data dir.
pub const CERT_FILE: &str = "device-cert.pem";
/// File name of the device private key in the data dir.
pub const KEY_FILE: &str = "device-key.pem";
/// The device's private key in the data dir, sealed (AEAD) under the cipher the caller
/// gives: an identity key sealed to the TPM on an enrolled unit, the data key otherwise.
pub const SEALED_KEY_FILE: &str = "device-key.sealed";
/// The associated data the sealed key is bound to.
const SEALED_KEY_AD: &[u8] = b"outpost device-key.pem v1";
/// File name of the generated device CA certificate (public; terminals pin it).
pub const CA_FILE: &str = "device-ca.pem";
/// Largest PEM file accepted.
pub const MAX_PEM_LEN: u64 = 64 * 1024;

/// Why a certificate, key or configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written (or a key file is not 0600).
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A PEM file does not parse.
    #[error("{what} is not valid PEM: {detail}")]
    Pem {
        /// Which file or input.
        what: String,
        /// The parser's complaint.
        detail: String,
    },
    /// A PEM input holds no certificate.
    #[error("{0} contains no certificate")]
    NoCertificate(String),
    /// The certificate file exists but the key does not, or the other way round.
    #[error("Only one of {cert} and {key} exists; provision both or neither")]
    Incomplete {
        /// The certificate path.
        cert: String,
        /// The key path.
        key: String,
    },
    /// The sealed device key does not open with the key it is sealed under (another
    /// unit's, or edited).
    #[error(
        "the sealed device key {path} does not open with this unit's key ({reason}); restore it from this unit's backup, or remove it and the certificate to make a new one (terminals must then pin the new CA)"
    )]
    Sealed {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Certificate and key do not belong together, or rustls refused them.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// A client certificate verifier could not be built.
    #[error("Client certificate verifier: {0}")]
    Verifier(String),
    /// Certificate generation failed.
    #[error("Certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The crypto provider every configuration here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The device's certificate chain and private key.
#[derive(Clone)]
pub struct DeviceIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A freshly generated identity and its PEM texts.
pub struct GeneratedIdentity {
    /// The identity.
    pub identity: DeviceIdentity,
    /// The leaf certificate.
    pub cert_pem: String,
    /// The one-off CA that signed it (its key is already gone).
    pub ca_pem: String,
    /// The leaf's private key.
    pub key_pem: zeroize::Zeroizing<String>,
}

impl fmt::Debug for GeneratedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedIdentity")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Whether [`DeviceIdentity::load_or_generate`] found files or made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityOrigin {
    /// Loaded from provisioned or earlier generated files.
    Loaded,
    /// Generated now (self-signed) and written.
    Generated,
}

/// Parses every certificate in a PEM input.
pub fn parse_certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what.to_owned()));
    }
    Ok(certs)
}

fn parse_key(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

fn roots(what: &str, ca_pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in parse_certs(what, ca_pem)? {
        store.add(cert)?;
    }
    Ok(store)
}

impl DeviceIdentity {
    /// An identity from PEM text; checks that the key matches the first certificate.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = parse_certs("device certificate", cert_pem)?;
        let key = parse_key("device key", key_pem)?;
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())?;
        Ok(Self {
            chain,
            key: Arc::new(key),
        })
    }

    /// Loads a provisioned identity; the key file must be mode 0600.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert = std::fs::read(cert_path).map_err(|source| FsError::Io {
            op: "read",
            path: cert_path.to_path_buf(),
            source,
        })?;
        let key =
            fsutil::read_private(key_path, MAX_PEM_LEN)?.ok_or_else(|| TlsError::Incomplete {
                cert: cert_path.display().to_string(),
                key: key_path.display().to_string(),
            })?;
        Self::from_pem(&cert, &zeroize::Zeroizing::new(key))
    }

    /// A fresh identity for `names` (DNS names or IP addresses): a one-off device CA
    /// signs the leaf and its key is then thrown away, so terminals can pin
    /// `device-ca.pem` with ordinary WebPKI verification and no CA key lies around.
    /// Valid from a day ago (clock skew) for five years.
    pub fn generate(names: &[String]) -> Result<GeneratedIdentity, TlsError> {
        let first = names.first().map(String::as_str).unwrap_or("outpost");
        let now = OffsetDateTime::now_utc();

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("Outpost device CA {first}"));
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = now - Duration::days(1);
        ca.not_after = now + Duration::days(5 * 365);
        let ca_cert = ca.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first);
        dn.push(DnType::OrganizationName, "Outpost store server");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(5 * 365);
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        let cert_pem = cert.pem();
        let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
        let identity = Self::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
        Ok(GeneratedIdentity {
            identity,
            cert_pem,
            ca_pem: ca_cert.pem(),
            key_pem,
        })
    }

    /// Loads `device-cert.pem` and the sealed `device-key.sealed` from `dir` (opened with
    /// `cipher`), or generates them when neither exists. A plaintext `device-key.pem`
    /// left from before (mode-checked) is sealed and then destroyed. A certificate
    /// without its key, or the other way round, is an error; so is a sealed key that
    /// does not open with `cipher`.
    pub fn load_or_generate_sealed(
        dir: &Path,
        names: &[String],
        cipher: &Cipher,
    ) -> Result<(Self, IdentityOrigin), TlsError> {
        let cert_path = dir.join(CERT_FILE);
        let sealed_path = dir.join(SEALED_KEY_FILE);
        let plain_path = dir.join(KEY_FILE);
        let incomplete = || TlsError::Incomplete {
            cert: cert_path.display().to_string(),
            key: sealed_path.display().to_string(),
        };
        let read_cert = || {
            std::fs::read(&cert_path).map_err(|source| FsError::Io {
                op: "read",
                path: cert_path.clone(),
                source,
            })
        };
        let seal = |key_pem: &[u8]| -> Result<(), TlsError> {
            fsutil::write_private(&sealed_path, &cipher.seal(SEALED_KEY_AD, key_pem))?;
            Ok(())
        };
        match (
            cert_path.exists(),
            sealed_path.exists(),
            plain_path.exists(),
        ) {
            (true, true, _) => {
                let sealed =
                    fsutil::read_private(&sealed_path, MAX_PEM_LEN + 64)?.ok_or_else(incomplete)?;
                let key_pem =
                    cipher
                        .open(SEALED_KEY_AD, &sealed)
                        .map_err(|e| TlsError::Sealed {
                            path: sealed_path.display().to_string(),
                            reason: e.to_string(),
                        })?;
                if plain_path.exists() {
                    fsutil::destroy(&plain_path)?;
                }
                Ok((
                    Self::from_pem(&read_cert()?, &key_pem)?,
                    IdentityOrigin::Loaded,
                ))
            }
            (true, false, true) => {
                let key_pem = zeroize::Zeroizing::new(
                    fsutil::read_private(&plain_path, MAX_PEM_LEN)?.ok_or_else(incomplete)?,
                );
                let identity = Self::from_pem(&read_cert()?, &key_pem)?;
                seal(&key_pem)?;
                fsutil::destroy(&plain_path)?;
                tracing::info!(key = %sealed_path.display(), "Sealed the device key that was in clear");
                Ok((identity, IdentityOrigin::Loaded))
            }
            (false, false, false) => {
                let generated = Self::generate(names)?;
                seal(generated.key_pem.as_bytes())?;
                fsutil::write_private(&dir.join(CA_FILE), generated.ca_pem.as_bytes())?;
                fsutil::write_private(&cert_path, generated.cert_pem.as_bytes())?;
                tracing::info!(cert = %cert_path.display(), "Generated the device certificate");
                Ok((generated.identity, IdentityOrigin::Generated))
            }
            _ => Err(incomplete()),
        }
    }

    /// Seals the device key again under `to` (it was sealed under `from`): enrolment
    /// moves it from the data key to the identity key. Nothing to do without one.
    pub fn reseal_key(dir: &Path, from: &Cipher, to: &Cipher) -> Result<(), TlsError> {
        let path = dir.join(SEALED_KEY_FILE);
        let Some(sealed) = fsutil::read_private(&path, MAX_PEM_LEN + 64)? else {
            return Ok(());
        };
        let key_pem = from
            .open(SEALED_KEY_AD, &sealed)
            .map_err(|e| TlsError::Sealed {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        fsutil::write_private(&path, &to.seal(SEALED_KEY_AD, &key_pem))?;
        Ok(())
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

/// The REST / console server configuration: TLS 1.3 only, the device certificate, no
/// client certificates (terminals authenticate with bearer tokens, staff with sessions).
pub fn server_config(identity: &DeviceIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    Ok(Arc::new(config))
}

/// The device's client configuration for the gRPC link to HQ: TLS 1.3, trusts only the
/// pinned HQ CA (`hq_ca_pem`), presents the device identity for mutual TLS.
pub fn hq_client_config(
    hq_ca_pem: &[u8],
    identity: &DeviceIdentity,
) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots("HQ CA", hq_ca_pem)?)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?;
    Ok(Arc::new(config))
}

/// A server that requires client certificates issued by `client_ca_pem`: HQ's side of
/// the link (used by the mock HQ and the tests).
pub fn mtls_server_config(
    identity: &DeviceIdentity,
    client_ca_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots("client CA", client_ca_pem)?),
        provider(),
    )
    .build()
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    Ok(Arc::new(config))
}

/// [`mtls_server_config`] that also requires the client certificate to name one of
/// `client_names` (a DNS name in its subjectAltName): the store's gRPC port, where only
/// HQ may call although HQ's CA also signs the units' own certificates.
pub fn mtls_server_config_for_names(
    identity: &DeviceIdentity,
    client_ca_pem: &[u8],
    client_names: &[String],
) -> Result<Arc<ServerConfig>, TlsError> {
    let names = client_names
        .iter()
        .map(|n| {
            rustls::pki_types::ServerName::try_from(n.clone())
                .ok()
                .filter(|s| matches!(s, rustls::pki_types::ServerName::DnsName(_)))
                .ok_or_else(|| {
                    TlsError::Verifier(format!(
                        "{n:?} is not a DNS name a client certificate can carry"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err(TlsError::Verifier(
            "no client name is allowed: name at least one".into(),
        ));
    }
    let inner = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots("client CA", client_ca_pem)?),
        provider(),
    )
    .build()
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = Arc::new(NamedClientVerifier { inner, names });
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    Ok(Arc::new(config))
}

/// A client verifier that chains to the CA (the inner WebPKI verifier) and then
/// requires one of `names` among the certificate's DNS names.
#[derive(Debug)]
struct NamedClientVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    names: Vec<rustls::pki_types::ServerName<'static>>,
}

impl rustls::server::danger::ClientCertVerifier for NamedClientVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self
            .names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(verified)
        } else {
            tracing::warn!(
                "Refused a client certificate from the right CA that names none of the allowed clients"
            );
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cipher(byte: u8) -> Cipher {
        crate::vault::KeyVault::new(crate::seal::DataKey::from_bytes([byte; 32]))
            .cipher("file:device-key")
            .unwrap()
    }

    #[test]
    fn generated_identity_persists_sealed_and_nothing_of_the_key_is_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["outpost.local".to_owned(), "127.0.0.1".to_owned()];
        let (a, origin) =
            DeviceIdentity::load_or_generate_sealed(dir.path(), &names, &cipher(1)).unwrap();
        assert_eq!(origin, IdentityOrigin::Generated);
        let sealed = dir.path().join(SEALED_KEY_FILE);
        let mode = std::fs::metadata(&sealed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join(KEY_FILE).exists());
        let bytes = crate::testing::all_bytes(dir.path());
        assert!(!crate::testing::contains(&bytes, "PRIVATE KEY"));
        let (b, origin) =
            DeviceIdentity::load_or_generate_sealed(dir.path(), &names, &cipher(1)).unwrap();
        assert_eq!(origin, IdentityOrigin::Loaded);
        assert_eq!(a.chain(), b.chain());
        server_config(&b).unwrap();
        // Another unit's key opens nothing; a reseal moves it under another key.
        assert!(matches!(
            DeviceIdentity::load_or_generate_sealed(dir.path(), &names, &cipher(2)),
            Err(TlsError::Sealed { .. })
        ));
        DeviceIdentity::reseal_key(dir.path(), &cipher(1), &cipher(2)).unwrap();
        let (c, _) =
            DeviceIdentity::load_or_generate_sealed(dir.path(), &names, &cipher(2)).unwrap();
        assert_eq!(a.chain(), c.chain());
    }

    /// Regression: the generated device key lay in clear in the data dir, so a stolen
    /// disk could impersonate the unit.
    #[test]
    fn a_key_left_in_clear_is_sealed_and_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        let g = DeviceIdentity::generate(&["a.test".into()]).unwrap();
        fsutil::write_private(&dir.path().join(CERT_FILE), g.cert_pem.as_bytes()).unwrap();
        fsutil::write_private(&dir.path().join(KEY_FILE), g.key_pem.as_bytes()).unwrap();
        let (id, origin) =
            DeviceIdentity::load_or_generate_sealed(dir.path(), &[], &cipher(3)).unwrap();
        assert_eq!(origin, IdentityOrigin::Loaded);
        assert!(!dir.path().join(KEY_FILE).exists());
        assert!(dir.path().join(SEALED_KEY_FILE).exists());
        let (again, _) =
            DeviceIdentity::load_or_generate_sealed(dir.path(), &[], &cipher(3)).unwrap();
        assert_eq!(id.chain(), again.chain());
    }

    #[test]
    fn bad_cert_and_key_files_are_refused() {
        let a = DeviceIdentity::generate(&["a.test".into()]).unwrap();
        let (cert_pem, key_pem) = (a.cert_pem, a.key_pem);
        let other_key = DeviceIdentity::generate(&["b.test".into()])
            .unwrap()
            .key_pem;
        assert!(matches!(
            DeviceIdentity::from_pem(b"", key_pem.as_bytes()),
            Err(TlsError::NoCertificate(_))
        ));
        assert!(matches!(
            DeviceIdentity::from_pem(b"garbage", key_pem.as_bytes()),
            Err(TlsError::NoCertificate(_))
        ));
        let broken = cert_pem.replace("MII", "M!I");
        assert!(matches!(
            DeviceIdentity::from_pem(broken.as_bytes(), key_pem.as_bytes()),
            Err(TlsError::Pem { .. })
        ));
        assert!(matches!(
            DeviceIdentity::from_pem(cert_pem.as_bytes(), b"no key here"),
            Err(TlsError::Pem { .. })
        ));
        assert!(matches!(
            DeviceIdentity::from_pem(cert_pem.as_bytes(), other_key.as_bytes()),
            Err(TlsError::Rustls(_))
        ));
        assert!(matches!(
            hq_client_config(
                b"",
                &DeviceIdentity::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap()
            ),
            Err(TlsError::NoCertificate(_))
        ));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CERT_FILE), &cert_pem).unwrap();
        assert!(matches!(
            DeviceIdentity::load_or_generate_sealed(dir.path(), &[], &cipher(1)),
            Err(TlsError::Incomplete { .. })
        ));
        std::fs::write(dir.path().join(KEY_FILE), key_pem.as_bytes()).unwrap();
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            DeviceIdentity::load_or_generate_sealed(dir.path(), &[], &cipher(1)),
            Err(TlsError::Fs(FsError::InsecureMode { .. }))
        ));
    }
}
