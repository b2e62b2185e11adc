//! A unit's first contact with HQ, before it holds HQ's CA certificate: enrolment
//! over the WAN. HQ prints, with each enrolment token, the SHA-256 fingerprint of its
//! CA certificate (what `openssl x509 -noout -fingerprint -sha256` shows); the unit
//! is given both. HQ's enrolment endpoint sends its CA certificate in its chain, and
//! the unit trusts the connection only when a certificate of that chain hashes to the
//! pin *and* the server's certificate verifies under it (WebPKI: the chain, the
//! validity dates, the server name). So the token goes nowhere but to the HQ whose CA
//! was pinned, with no system roots and nothing trusted on first use.
//!
//! The unit presents no certificate on that connection (it has none yet); HQ's
//! enrolment endpoint serves `Enroll` only.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest as _, Sha256};

use crate::tls::{TlsError, provider};

/// The SHA-256 of a CA certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CaPin([u8; 32]);

impl std::fmt::Debug for CaPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaPin({self})")
    }
}

impl std::fmt::Display for CaPin {
    /// `sha256:` and 64 lowercase hex digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a pin did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a CA pin: give the SHA-256 of HQ's CA certificate as 64 hex digits (\"sha256:\" and colons allowed), as printed with the token"
)]
pub struct PinError(String);

impl CaPin {
    /// The 32 bytes of the hash.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// A pin from the 32 bytes of a hash.
    pub fn from_bytes(bytes: [u8; 32]) -> CaPin {
        CaPin(bytes)
    }

    /// The pin of a certificate (DER).
    pub fn of(der: &[u8]) -> CaPin {
        CaPin(Sha256::digest(der).into())
    }

    /// The pin of the first certificate in `pem`.
    pub fn of_pem(what: &str, pem: &[u8]) -> Result<CaPin, TlsError> {
        let certs = crate::tls::parse_certs(what, pem)?;
        let first = certs
            .first()
            .ok_or_else(|| TlsError::NoCertificate(what.into()))?;
        Ok(CaPin::of(first.as_ref()))
    }

    /// Parses `sha256:` + 64 hex digits, with or without the prefix, colons or case
    /// (OpenSSL prints `AB:CD:...`).
    pub fn parse(s: &str) -> Result<CaPin, PinError> {
        let t = s.trim();
        let t = t
            .strip_prefix("sha256:")
            .or_else(|| t.strip_prefix("SHA256:"))
            .or_else(|| t.strip_prefix("sha256 Fingerprint="))
            .or_else(|| t.strip_prefix("SHA256 Fingerprint="))
            .unwrap_or(t);
        let hex: String = t.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PinError(s.to_owned()));
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| PinError(s.into()))?;
        }
        Ok(CaPin(out))
    }
}

/// A client configuration (TLS 1.3, no client certificate) that trusts the server
/// only under the CA certificate `pin` names, which the server must send in its chain.
pub fn pinned_client_config(pin: CaPin) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa { pin }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedCa {
    pin: CaPin,
}

fn refused(why: &str) -> rustls::Error {
    tracing::warn!(why, "Refused HQ's enrolment endpoint");
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(PinRefused(why.to_owned())),
    )))
}

#[derive(Debug)]
struct PinRefused(String);

impl std::fmt::Display for PinRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PinRefused {}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| CaPin::of(c.as_ref()) == self.pin)
        else {
            return Err(refused(
                "no certificate in the server's chain has the pinned SHA-256: this is not the HQ whose CA was pinned (or it does not send its CA)",
            ));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|_| refused("the pinned certificate is not a usable CA"))?;
        let rest: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| c.as_ref() != ca.as_ref())
            .cloned()
            .collect();
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| refused(&format!("the pinned CA: {e}")))?
            .verify_server_cert(end_entity, &rest, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_parses_as_openssl_and_outpost_print_it_and_nothing_else() {
        let pin = CaPin::of(b"a certificate");
        let shown = pin.to_string();
        assert!(shown.starts_with("sha256:") && shown.len() == 7 + 64);
        assert_eq!(CaPin::parse(&shown).unwrap(), pin);
        let openssl: Vec<String> = shown.as_bytes()[7..]
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_uppercase())
            .collect();
        let openssl = format!("sha256 Fingerprint={}", openssl.join(":"));
        assert_eq!(CaPin::parse(&openssl).unwrap(), pin);
        for bad in [
            "",
            "sha256:",
            "abc",
            &shown[..60],
            &format!("{shown}00"),
            &shown.replace('a', "g"),
        ] {
            if bad == shown {
                continue;
            }
            assert!(CaPin::parse(bad).is_err(), "{bad:?}");
        }
    }
}
