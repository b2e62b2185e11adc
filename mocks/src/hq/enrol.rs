//! Enrolment with a one-time token (`HqService.Enroll`): the tokens HQ issues per
//! store, its CA that signs the units' certificates, and the answer (the signed
//! bundle, the certificate, the CA).
//!
//! **Tokens** live in the sled tree `enroll-tokens` of the HQ's storage, keyed by the
//! BLAKE3 hash of the token (the database never holds a usable token), each with its
//! store, expiry and, once used, the unit that used it. Redeeming is one
//! compare-and-swap, so two units racing with the same token cannot both win; a used
//! token stays in the tree, so a second Enroll with it is told "already used" rather
//! than "unknown".
//!
//! **The CA** is `<data-dir>/hq-ca.pem` and its key `hq-ca-key.pem` (0600), made on
//! first use. It signs a unit's certificate for the public key of the unit's
//! certificate request, after checking the request's signature (the unit holds the
//! key), with the request's DNS and IP names, for client and server authentication.
//!
//! **The roster**: a request with a mesh peer id puts that peer on its store's roster
//! ([`super::roster`]), and the answer carries the new roster, signed with HQ's key.

use std::path::Path;

use outpost_proto::hq::{EnrollReply, EnrollRequest};
use outpost_security::enroll::{LeasePolicy, SecondFactors};
use outpost_security::fsutil;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tonic::Status;

use super::escrow::HqKeys;
use super::roster::Rosters;

/// The sled tree of tokens.
pub const TOKENS_TREE: &str = "enroll-tokens";
/// HQ's CA certificate in the data dir.
pub const CA_FILE: &str = "hq-ca.pem";
/// HQ's CA key in the data dir (0600).
pub const CA_KEY_FILE: &str = "hq-ca-key.pem";
/// Longest certificate request accepted.
const MAX_CSR_PEM: usize = 16 * 1024;
/// How long the certificates HQ issues are valid.
const CERT_DAYS: i64 = 825;

/// Why a token or the CA failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// sled refused.
    #[error("HQ token store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record or file does not parse.
    #[error("HQ enrolment state is corrupt: {0}")]
    Corrupt(String),
    /// The CA files could not be read or written.
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
    /// rcgen refused.
    #[error("HQ's CA: {0}")]
    Ca(#[from] rcgen::Error),
    /// An argument that makes no sense.
    #[error("{0}")]
    Invalid(String),
}

/// Why a token was refused: what the unit's technician is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// HQ never issued it (a typo, or another HQ's token).
    #[error("the enrolment token is not one HQ issued (check it, or ask HQ for a new one)")]
    Unknown,
    /// Issued, but its time ran out.
    #[error("the enrolment token expired at {0} (unix time): ask HQ for a new one")]
    Expired(i64),
    /// Used already, by this unit or another.
    #[error(
        "the enrolment token was already used (by unit {0:?}): a token enrols one unit once; ask HQ for a new one"
    )]
    Used(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct TokenRecord {
    store_id: String,
    expires_at: i64,
    used_by: Option<String>,
}

fn token_key(token: &str) -> [u8; 32] {
    *blake3::hash(token.trim().as_bytes()).as_bytes()
}

/// The one-time tokens, in HQ's sled storage.
#[derive(Debug, Clone)]
pub struct Tokens {
    tree: sled::Tree,
}

impl Tokens {
    /// The tokens in `tree` ([`TOKENS_TREE`] of HQ's database).
    pub fn new(tree: sled::Tree) -> Tokens {
        Tokens { tree }
    }

    /// Issues a token for `store_id`, valid `ttl_secs` from now, and flushes it.
    pub fn issue(&self, store_id: &str, ttl_secs: u64) -> Result<String, EnrolError> {
        if store_id.trim().is_empty() || store_id.len() > 128 {
            return Err(EnrolError::Invalid(
                "the store id must be 1 to 128 bytes".into(),
            ));
        }
        let ttl = i64::try_from(ttl_secs)
            .ok()
            .filter(|t| (1..=30 * 86_400).contains(t))
            .ok_or_else(|| {
                EnrolError::Invalid("the token's lifetime must be 1 s to 30 days".into())
            })?;
        let token = format!("OPET-{}", hex(&rand::random::<[u8; 16]>()));
        let record = TokenRecord {
            store_id: store_id.to_owned(),
            expires_at: OffsetDateTime::now_utc().unix_timestamp() + ttl,
            used_by: None,
        };
        self.tree.insert(token_key(&token), encode(&record)?)?;
        self.tree.flush()?;
        Ok(token)
    }

    /// Uses `token` for `unit_id` at `now`: the store it was issued for, or why not.
    /// The token is marked used (and flushed) before this returns `Ok`.
    pub fn redeem(
        &self,
        token: &str,
        unit_id: &str,
        now: i64,
    ) -> Result<Result<String, TokenRefusal>, EnrolError> {
        let key = token_key(token);
        loop {
            let Some(old) = self.tree.get(key)? else {
                return Ok(Err(TokenRefusal::Unknown));
            };
            let record: TokenRecord = serde_json::from_slice(&old)
                .map_err(|e| EnrolError::Corrupt(format!("a token record: {e}")))?;
            if let Some(unit) = record.used_by {
                return Ok(Err(TokenRefusal::Used(unit)));
            }
            if now >= record.expires_at {
                return Ok(Err(TokenRefusal::Expired(record.expires_at)));
            }
            let used = TokenRecord {
                used_by: Some(unit_id.to_owned()),
                ..record.clone()
            };
            if self
                .tree
                .compare_and_swap(key, Some(old), Some(encode(&used)?))?
                .is_ok()
            {
                self.tree.flush()?;
                return Ok(Ok(record.store_id));
            }
            // Another Enroll changed it meanwhile: read it again.
        }
    }
}

fn encode(r: &TokenRecord) -> Result<Vec<u8>, EnrolError> {
    serde_json::to_vec(r).map_err(|e| EnrolError::Corrupt(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A public key taken from a certificate request, for rcgen to certify.
struct RequestKey {
    raw: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for RequestKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// What a verified certificate request asks for.
struct Request {
    key: RequestKey,
    names: Vec<rcgen::SanType>,
}

fn parse_request(pem: &str) -> Result<Request, String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};
    use x509_parser::prelude::FromDer as _;

    if pem.len() > MAX_CSR_PEM {
        return Err(format!("the request is over {MAX_CSR_PEM} bytes"));
    }
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate request: {e}"))?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(format!(
            "a PEM {:?} block, not a CERTIFICATE REQUEST",
            block.label
        ));
    }
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| format!("not a PKCS#10 request: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the request".into());
    }
    csr.verify_signature()
        .map_err(|e| format!("its signature does not verify with its key: {e}"))?;
    let spki = &csr.certification_request_info.subject_pki;
    let alg = if spki.algorithm.algorithm == OID_SIG_ED25519 {
        &rcgen::PKCS_ED25519
    } else if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|o| o == OID_EC_P256)
    {
        &rcgen::PKCS_ECDSA_P256_SHA256
    } else {
        return Err(format!(
            "key algorithm {} is not one HQ certifies (ECDSA P-256 or Ed25519)",
            spki.algorithm.algorithm
        ));
    };
    let mut names = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(d) => names.push(rcgen::SanType::DnsName(
                        (*d).try_into()
                            .map_err(|_| format!("{d:?} is not a DNS name"))?,
                    )),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => names.push(rcgen::SanType::IpAddress(std::net::IpAddr::from(
                            <[u8; 4]>::try_from(*ip).map_err(|_| "bad IPv4 name")?,
                        ))),
                        16 => names.push(rcgen::SanType::IpAddress(std::net::IpAddr::from(
                            <[u8; 16]>::try_from(*ip).map_err(|_| "bad IPv6 name")?,
                        ))),
                        _ => return Err("an IP name of neither 4 nor 16 bytes".into()),
                    },
                    _ => {}
                }
            }
        }
    }
    Ok(Request {
        key: RequestKey {
            raw: spki.subject_public_key.data.to_vec(),
            alg,
        },
        names,
    })
}

/// HQ's CA: signs the units' certificates.
pub struct HqCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pem: String,
}

impl std::fmt::Debug for HqCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HqCa").finish_non_exhaustive()
    }
}

fn ca_params() -> Result<rcgen::CertificateParams, EnrolError> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Outpost mock HQ CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    Ok(p)
}

impl HqCa {
    /// The CA in `data_dir`, made (and written) when there is none.
    ///
    /// Only the key is needed to sign: the issuer is rebuilt from the same name and
    /// key each time, so what it signs chains to the stored certificate.
    pub fn load_or_create(data_dir: &Path) -> Result<HqCa, EnrolError> {
        let key_path = data_dir.join(CA_KEY_FILE);
        let cert_path = data_dir.join(CA_FILE);
        let key = match fsutil::read_private(&key_path, 16 * 1024)? {
            Some(pem) => rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&pem))?,
            None => {
                let key = rcgen::KeyPair::generate()?;
                fsutil::write_private(&key_path, key.serialize_pem().as_bytes())?;
                key
            }
        };
        let cert = ca_params()?.self_signed(&key)?;
        let pem = match std::fs::read_to_string(&cert_path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = cert.pem();
                std::fs::write(&cert_path, &pem).map_err(|e| {
                    EnrolError::Corrupt(format!("cannot write {}: {e}", cert_path.display()))
                })?;
                pem
            }
            Err(e) => {
                return Err(EnrolError::Corrupt(format!(
                    "cannot read {}: {e}",
                    cert_path.display()
                )));
            }
        };
        Ok(HqCa { cert, key, pem })
    }

    /// The CA certificate (PEM), as units pin it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The SHA-256 pin of the CA certificate, as units are given it with a token.
    pub fn pin(&self) -> Result<outpost_security::tls_pin::CaPin, outpost_security::tls::TlsError> {
        outpost_security::tls_pin::CaPin::of_pem("HQ's CA", self.pem().as_bytes())
    }

    /// A certificate for `names` with a fresh key (HQ's own server certificate, or a
    /// test's client): `(certificate PEM, key PEM)`.
    pub fn issue(&self, names: &[&str]) -> Result<(String, String), EnrolError> {
        let key = rcgen::KeyPair::generate()?;
        let params = leaf_params(
            names.iter().map(|n| (*n).to_owned()).collect(),
            "Outpost HQ",
        )?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Certifies the key of the certificate request `csr_pem` for `store` / `unit`.
    pub fn certify(&self, csr_pem: &str, store: &str, unit: &str) -> Result<String, String> {
        let request = parse_request(csr_pem)?;
        let mut params =
            leaf_params(Vec::new(), &format!("{store}/{unit}")).map_err(|e| e.to_string())?;
        params.subject_alt_names = request.names;
        params
            .signed_by(&request.key, &self.cert, &self.key)
            .map(|c| c.pem())
            .map_err(|e| e.to_string())
    }
}

fn leaf_params(names: Vec<String>, cn: &str) -> Result<rcgen::CertificateParams, EnrolError> {
    let mut p = rcgen::CertificateParams::new(names)?;
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(CERT_DAYS);
    Ok(p)
}

/// Answers one Enroll: checks the request, uses the token, certifies the key and
/// signs the bundle. The token is spent only once the request is known good.
pub fn enroll(
    tokens: &Tokens,
    ca: &HqCa,
    keys: &HqKeys,
    rosters: &Rosters,
    request: &EnrollRequest,
) -> Result<EnrollReply, Status> {
    let unit = request.unit_id.trim();
    if unit.is_empty() || unit.len() > 128 {
        return Err(Status::invalid_argument("unit_id must be 1 to 128 bytes"));
    }
    let tpm = request.tpm.as_ref();
    if tpm.is_some_and(|t| t.sealer == "tpm" && !t.reachable) {
        return Err(Status::failed_precondition(
            "the unit's TPM did not answer it: HQ enrols a TPM unit only with its TPM",
        ));
    }
    // Checked before the token is spent: a bad request leaves the token usable.
    parse_request(&request.csr_pem)
        .map_err(|e| Status::invalid_argument(format!("csr_pem: {e}")))?;
    let peer = match request.mesh_peer_id.trim() {
        "" => None,
        p => Some(p.parse::<outpost_p2p::PeerId>().map_err(|_| {
            Status::invalid_argument(format!("mesh_peer_id {p:?} is not a peer id"))
        })?),
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let store = match tokens.redeem(&request.token, unit, now) {
        Ok(Ok(store)) => store,
        Ok(Err(refusal)) => return Err(Status::permission_denied(refusal.to_string())),
        Err(e) => return Err(Status::internal(e.to_string())),
    };
    let certificate = ca
        .certify(&request.csr_pem, &store, unit)
        .map_err(|e| Status::internal(format!("certifying the unit: {e}")))?;
    let bundle = keys
        .enrollment(
            &store,
            unit,
            SecondFactors::default(),
            LeasePolicy::default(),
        )
        .map_err(|e| Status::internal(format!("signing the bundle: {e}")))?;
    let roster_json = match peer {
        Some(peer) => {
            let roster = rosters
                .add(&store, peer, &keys.roster_keypair())
                .map_err(|e| Status::internal(e.to_string()))?;
            tracing::info!(store = %store, unit = %unit, %peer, version = roster.version, "Put the unit on its store's roster");
            serde_json::to_string(&roster).map_err(|e| Status::internal(e.to_string()))?
        }
        None => String::new(),
    };
    tracing::info!(store = %store, unit = %unit, "Enrolled a unit with a one-time token");
    Ok(EnrollReply {
        store_id: store,
        bundle_json: bundle,
        certificate_pem: certificate,
        hq_ca_pem: ca.pem().to_owned(),
        roster_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer as _;

    fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .unwrap();
        (dir, Tokens::new(db.open_tree(TOKENS_TREE).unwrap()))
    }

    fn csr(names: &[&str]) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        (params.serialize_request(&key).unwrap().pem().unwrap(), key)
    }

    #[test]
    fn a_token_is_used_once_and_expires() {
        let (_d, t) = tokens();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let token = t.issue("store-7", 60).unwrap();
        assert!(token.starts_with("OPET-"));
        assert_eq!(
            t.redeem("OPET-nope", "u", now).unwrap(),
            Err(TokenRefusal::Unknown)
        );
        assert_eq!(
            t.redeem(&token, "unit-1", now).unwrap(),
            Ok("store-7".into())
        );
        assert_eq!(
            t.redeem(&token, "unit-2", now).unwrap(),
            Err(TokenRefusal::Used("unit-1".into()))
        );
        let late = t.issue("store-7", 60).unwrap();
        assert!(matches!(
            t.redeem(&late, "unit-3", now + 61).unwrap(),
            Err(TokenRefusal::Expired(_))
        ));
        // The expired token is still unused: the refusal did not spend it.
        assert_eq!(
            t.redeem(&late, "unit-3", now).unwrap(),
            Ok("store-7".into())
        );
        assert!(t.issue("", 60).is_err());
        assert!(t.issue("s", 0).is_err());
        // The database holds no usable token.
        for kv in t.tree.iter() {
            let (k, v) = kv.unwrap();
            assert!(!String::from_utf8_lossy(&k).contains(&token[5..]));
            assert!(!String::from_utf8_lossy(&v).contains(&token[5..]));
        }
    }

    #[test]
    fn the_ca_certifies_the_requested_key_and_names_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let ca = HqCa::load_or_create(dir.path()).unwrap();
        let (request, _key) = csr(&["till-1.store-7.lan", "10.0.0.2"]);
        let pem = ca.certify(&request, "store-7", "unit-1").unwrap();
        // Reloaded, it is the same CA: a certificate it signs now chains to the
        // certificate written at first use.
        let again = HqCa::load_or_create(dir.path()).unwrap();
        assert_eq!(again.pem(), ca.pem());
        let later = again.certify(&request, "store-7", "unit-1").unwrap();
        let ca_der = rustls_pki_der(ca.pem());
        let (_, ca_x) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        for cert in [&pem, &later] {
            let der = rustls_pki_der(cert);
            let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
            x.verify_signature(Some(ca_x.public_key())).unwrap();
            assert_eq!(
                x.public_key().raw,
                x509_parser::certification_request::X509CertificationRequest::from_der(
                    &x509_parser::pem::parse_x509_pem(request.as_bytes())
                        .unwrap()
                        .1
                        .contents
                )
                .map(|(_, r)| r.certification_request_info.subject_pki.raw.to_vec())
                .unwrap()
            );
            let san = x.subject_alternative_name().unwrap().unwrap();
            assert_eq!(san.value.general_names.len(), 2);
        }
    }

    fn rustls_pki_der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    #[test]
    fn a_request_that_is_not_one_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let ca = HqCa::load_or_create(dir.path()).unwrap();
        let (good, _) = csr(&["a.lan"]);
        let mut forged = good.clone().into_bytes();
        // Flip a byte in the middle of the base64 body (the signed data or signature).
        let i = forged.len() / 2;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        for (pem, why) in [
            ("not pem".to_owned(), "PEM"),
            (ca.pem().to_owned(), "not a CERTIFICATE REQUEST"),
            (forged, ""),
            ("x".repeat(MAX_CSR_PEM + 1), "over"),
        ] {
            let err = ca.certify(&pem, "s", "u").unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }
}
