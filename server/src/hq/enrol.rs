//! Enrolment with a one-time token (`outpost enroll --hq URL --token T`): the unit
//! makes its device key and a certificate request, HQ answers `HqService.Enroll`
//! with the signed bundle, the unit's certificate and HQ's CA, and the bundle is
//! applied exactly as `outpost enroll --bundle` applies a file
//! ([`crate::access::enroll_data_dir`]: TPM provisioning, the envelope, the trust
//! record). The certificate, its key and HQ's CA go where `[tls] cert`, `[tls] key` and
//! `sync.hq_ca` name them, or, when the config names none, into the data dir's
//! [`HQ_LINK_DIR`], where the server finds them ([`crate::config::Settings::load`]).
//!
//! The unit also makes its store-mesh identity and sends its peer id: HQ puts it on the
//! store's roster and answers the roster, which is checked under the bundle's HQ key
//! and kept (`p2p/roster.json`). The identity and the pin of HQ's CA are sealed under
//! the new data key as soon as the bundle is applied ([`crate::mesh::seal_identity`],
//! [`crate::access::hq_pin`]): the CA the unit trusts is fixed in its protected state.
//!
//! Over loopback (an SSH tunnel) HQ is reached in plaintext; over the WAN, `https://`
//! with the SHA-256 pin of HQ's CA given with the token
//! ([`outpost_security::tls_pin`]): the token is sent only to the HQ whose CA hashes to
//! it, and HQ's answer must carry that same CA.
//!
//! Nothing is half-done: everything that can be checked without HQ is checked first
//! (not enrolled yet, the three paths set and free, the TPM answering and not enrolled
//! by another data dir, the URL), so a refusal there leaves the token unspent; after
//! HQ answered, the answer is checked whole (the bundle's signature, unit and store,
//! the certificate for this key, the CA) before anything is written; the files are
//! staged beside their places and renamed in only once the data dir is enrolled.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_p2p::roster::SignedRoster;
use outpost_proto::hq::hq_service_client::HqServiceClient;
use outpost_proto::hq::{EnrollRequest, TpmFacts};
use outpost_security::enroll::Enrollment;
use outpost_security::fsutil;
use outpost_security::tls::DeviceIdentity;
use outpost_security::tls_pin::CaPin;
use secrecy::{ExposeSecret as _, SecretString};

use crate::access::AccessError;
use crate::config::Settings;
use crate::store::StoreOptions;

/// How long the call to HQ may take.
const TIMEOUT: Duration = Duration::from_secs(20);
pub use crate::config::tls::{HQ_LINK_DIR, HQ_LINK_FILES, enrolled_files};

/// Why an enrolment with a token stopped. Each says whether the token was spent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenEnrolError {
    /// Something on this unit is not ready; HQ was not asked, the token is unspent.
    #[error("{0}. Nothing was changed and HQ was not asked: the token is still good")]
    NotReady(String),
    /// HQ could not be reached; the token is unspent.
    #[error(
        "HQ at {url} cannot be reached ({reason}). Nothing was changed: the token is still good once HQ answers"
    )]
    Unreachable {
        /// `--hq`.
        url: String,
        /// The transport's reason.
        reason: String,
    },
    /// HQ refused (a wrong, expired or used token; a request it did not accept).
    #[error("HQ refused the enrolment: {0}. Nothing was changed")]
    Refused(String),
    /// HQ answered something this unit does not accept; the token is spent.
    #[error(
        "HQ's answer is not usable: {0}. Nothing was changed, but the token is spent: ask HQ for a new one"
    )]
    BadAnswer(String),
    /// Applying the bundle failed; the token is spent.
    #[error(
        "applying HQ's bundle failed: {0}. The certificate was not installed; the token is spent: ask HQ for a new one"
    )]
    Apply(#[source] AccessError),
    /// HQ's enrolment endpoint did not show the pinned CA; the token was not sent.
    #[error(
        "HQ at {url} is not the HQ whose CA was pinned ({reason}). Nothing was sent or changed: check the pin printed with the token and the URL"
    )]
    NotPinned {
        /// `--hq`.
        url: String,
        /// The TLS verifier's reason.
        reason: String,
    },
    /// Writing the certificate, key or CA failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What an enrolment made.
#[derive(Debug, Clone)]
pub struct TokenEnrolment {
    /// The store HQ enrolled the unit into.
    pub store_id: String,
    /// The unit.
    pub unit_id: String,
    /// Where the certificate, key and HQ's CA went.
    pub files: [PathBuf; 3],
    /// The unit's store-mesh peer id.
    pub peer_id: String,
    /// The version of the store roster HQ put the unit on (none: HQ sent no roster).
    pub roster_version: Option<u64>,
}

fn not_ready(s: impl Into<String>) -> TokenEnrolError {
    TokenEnrolError::NotReady(s.into())
}

/// The three destinations: `[tls] cert`, `[tls] key`, `sync.hq_ca` when the config
/// names all three, the data dir's [`HQ_LINK_DIR`] when it names none; each free.
fn destinations(settings: &Settings) -> Result<[PathBuf; 3], TokenEnrolError> {
    let named = (
        settings.tls.cert.clone(),
        settings.tls.key.clone(),
        settings.sync.hq_ca.clone(),
    );
    let [cert, key, ca] = match named {
        (Some(cert), Some(key), Some(ca)) => [cert, key, ca],
        (None, None, None) => {
            let dir = settings.data_dir.join(HQ_LINK_DIR);
            HQ_LINK_FILES.map(|f| dir.join(f))
        }
        _ => {
            return Err(not_ready(
                "set all of [tls] cert and key and [sync] hq_ca in the config, or none of them (the enrolment then keeps the certificate HQ issues, its key and HQ's CA in the data dir)",
            ));
        }
    };
    for p in [&cert, &key] {
        if p.exists() {
            return Err(not_ready(format!(
                "{} exists: this unit already has a certificate (remove it to enrol with a new one)",
                p.display()
            )));
        }
    }
    Ok([cert, key, ca])
}

/// The TPM facts, after checking the sealer can enrol here.
fn tpm_facts(settings: &Settings) -> Result<TpmFacts, TokenEnrolError> {
    let sec = &settings.security;
    let pcrs = sec.pcrs.iter().map(|p| u32::from(*p)).collect();
    match sec.sealer.as_str() {
        "tpm" => {
            let mut anchor = crate::access::anchor::open_anchor(settings)
                .map_err(|e| not_ready(e.to_string()))?;
            if anchor
                .is_provisioned()
                .map_err(|e| not_ready(format!("the TPM: {e}")))?
            {
                return Err(not_ready(
                    "this TPM already holds an enrolment (of another data dir, or one that was removed): clear it with `outpost-install uninstall --purge` on the old install first",
                ));
            }
            Ok(TpmFacts {
                sealer: "tpm".into(),
                pcrs,
                reachable: true,
            })
        }
        "software" if sec.allow_software => Ok(TpmFacts {
            sealer: "software".into(),
            pcrs,
            reachable: false,
        }),
        "software" => Err(not_ready(
            "the software sealer is configured but not allowed (allow_software = false): a store unit enrols with its TPM",
        )),
        other => Err(not_ready(format!("[security] sealer {other:?} is unknown"))),
    }
}

/// Writes `bytes` to `path.enrolling` (owner-only for the key).
fn stage(path: &Path, bytes: &[u8], private: bool) -> Result<PathBuf, TokenEnrolError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".enrolling");
    let staged = PathBuf::from(name);
    let result = if private {
        fsutil::write_private(&staged, bytes).map_err(|e| e.to_string())
    } else {
        std::fs::write(&staged, bytes).map_err(|e| e.to_string())
    };
    result.map_err(|reason| TokenEnrolError::Write {
        path: staged.clone(),
        reason,
    })?;
    Ok(staged)
}

/// How to reach HQ: plaintext on loopback, or TLS under the pinned CA.
async fn connect(
    url: &str,
    pin: Option<CaPin>,
) -> Result<tonic::transport::Channel, TokenEnrolError> {
    let unreachable = |reason: String| TokenEnrolError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT);
    match pin {
        None => endpoint
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string())),
        Some(pin) => {
            let config = outpost_security::tls_pin::pinned_client_config(pin)
                .map_err(|e| not_ready(format!("the TLS configuration: {e}")))?;
            let connector = outpost_proto::grpc_tls::TlsConnector::new(&config);
            let channel = endpoint.connect_with_connector(connector.clone()).await;
            channel.map_err(|e| {
                let reason = connector
                    .take_error()
                    .unwrap_or_else(|| outpost_proto::grpc_tls::error_chain(&e));
                if reason.contains("invalid peer certificate") {
                    TokenEnrolError::NotPinned {
                        url: url.to_owned(),
                        reason,
                    }
                } else {
                    unreachable(reason)
                }
            })
        }
    }
}

/// Enrols the stopped server's data dir with HQ at `url` and the one-time `token`;
/// `pin` (HQ's CA's SHA-256, given with the token) is needed for an `https://` URL.
pub async fn enroll_with_token(
    settings: &Settings,
    url: &str,
    token: &SecretString,
    pin: Option<CaPin>,
) -> Result<TokenEnrolment, TokenEnrolError> {
    let key_path = settings.data_dir.join(crate::access::legacy::KEY_FILE);
    if crate::access::anchor::is_enrolled(&key_path).map_err(|e| not_ready(e.to_string()))? {
        return Err(not_ready(format!(
            "{} is enrolled already",
            settings.data_dir.display()
        )));
    }
    let files = destinations(settings)?;
    match (crate::config::url_scheme_and_loopback(url), pin) {
        (Ok((false, true)), None) | (Ok((true, _)), Some(_)) => {}
        (Ok((true, _)), None) => {
            return Err(not_ready(format!(
                "--hq {url}: the unit has no HQ CA yet, so it needs the pin HQ printed with the token: add --hq-ca-pin sha256:..."
            )));
        }
        (Ok((false, _)), Some(_)) => {
            return Err(not_ready(format!(
                "--hq {url}: a pin goes with an https:// URL (HQ's enrolment endpoint)"
            )));
        }
        (Ok((false, false)), None) => {
            return Err(not_ready(format!(
                "--hq {url}: plaintext only reaches HQ on loopback (http://127.0.0.1:PORT, e.g. through an SSH tunnel); over the network use https:// with --hq-ca-pin"
            )));
        }
        (Err(m), _) => return Err(not_ready(format!("--hq: {m}"))),
    }
    let mesh_plain = crate::mesh::plain_identity_file(&settings.data_dir);
    let mesh_dir = crate::mesh::mesh_dir(&settings.data_dir);
    let pinned = settings.data_dir.join(crate::access::hq_pin::PIN_FILE);
    if pinned.exists() {
        return Err(not_ready(format!(
            "{} exists: this data dir was enrolled before (remove what is left of the old enrolment first)",
            pinned.display()
        )));
    }
    if mesh_dir.join("identity.sealed").exists() || mesh_plain.exists() {
        return Err(not_ready(format!(
            "{} holds a mesh identity already: the enrolment makes the unit's identity for HQ's roster (remove it on a unit that was never on a roster)",
            mesh_dir.display()
        )));
    }
    let tpm = {
        let s = settings.clone();
        tokio::task::spawn_blocking(move || tpm_facts(&s))
            .await
            .map_err(|e| not_ready(format!("the TPM check failed: {e}")))??
    };
    let unit = settings.sync.unit_id.clone();
    let key = rcgen::KeyPair::generate().map_err(|e| not_ready(format!("the device key: {e}")))?;
    let csr = rcgen::CertificateParams::new(settings.certificate_names())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| not_ready(format!("the certificate request: {e}")))?;

    let identity = outpost_p2p::identity::Keypair::generate_ed25519();
    let peer = identity.public().to_peer_id();

    let channel = connect(url, pin).await?;
    let reply = HqServiceClient::new(channel)
        .enroll(EnrollRequest {
            token: token.expose_secret().to_owned(),
            unit_id: unit.clone(),
            csr_pem: csr,
            tpm: Some(tpm),
            mesh_peer_id: peer.to_base58(),
        })
        .await;
    let reply = match reply {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::Unavailable => {
            return Err(TokenEnrolError::Unreachable {
                url: url.to_owned(),
                reason: s.message().to_owned(),
            });
        }
        Err(s) => return Err(TokenEnrolError::Refused(s.message().to_owned())),
    };

    // The answer, whole, before anything is written.
    let bad = TokenEnrolError::BadAnswer;
    let bundle = Enrollment::verify(reply.bundle_json.as_bytes())
        .map_err(|e| bad(format!("the bundle: {e}")))?;
    if bundle.unit_id != unit || bundle.store_id != reply.store_id {
        return Err(bad(format!(
            "the bundle enrols {}/{}, not {}/{unit}",
            bundle.store_id, bundle.unit_id, reply.store_id
        )));
    }
    let default_store = Settings::default().store.id;
    if settings.store.id != default_store && settings.store.id != reply.store_id {
        return Err(bad(format!(
            "the token enrols into store {:?}, but this unit's config says store.id = {:?}",
            reply.store_id, settings.store.id
        )));
    }
    let key_pem = key.serialize_pem();
    DeviceIdentity::from_pem(reply.certificate_pem.as_bytes(), key_pem.as_bytes())
        .map_err(|e| bad(format!("the certificate is not for this unit's key: {e}")))?;
    outpost_security::tls::parse_certs("HQ's CA", reply.hq_ca_pem.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    if let Some(pin) = pin {
        let answered =
            CaPin::of_pem("HQ's CA", reply.hq_ca_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
        if answered != pin {
            return Err(bad(format!(
                "the CA in the answer ({answered}) is not the pinned one ({pin})"
            )));
        }
    }
    let roster = roster_for(&bundle, &reply.roster_json, &peer).map_err(bad)?;

    // A bare data dir is made here, and taken away again if the bundle does not apply.
    let made_dir = !settings.data_dir.exists();
    let made: Vec<PathBuf> = [
        settings.data_dir.clone(),
        settings.data_dir.join(HQ_LINK_DIR),
        mesh_dir.clone(),
    ]
    .into_iter()
    .filter(|d| !d.exists())
    .collect();
    let undo_dirs = |made: &[PathBuf]| {
        for d in made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    };
    let needed: Vec<&Path> = files
        .iter()
        .filter_map(|f| f.parent())
        .chain([mesh_dir.as_path()])
        .collect();
    for dir in needed {
        let created = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
        if let Err(e) = created {
            undo_dirs(&made);
            return Err(TokenEnrolError::Write {
                path: dir.to_owned(),
                reason: e.to_string(),
            });
        }
    }
    let mut staged: Vec<PathBuf> = Vec::new();
    let staging = (|| -> Result<(), TokenEnrolError> {
        staged.push(stage(&files[0], reply.certificate_pem.as_bytes(), false)?);
        staged.push(stage(&files[1], key_pem.as_bytes(), true)?);
        staged.push(stage(&files[2], reply.hq_ca_pem.as_bytes(), false)?);
        if let Some(roster) = &roster {
            let json = serde_json::to_vec(roster)
                .map_err(|e| TokenEnrolError::BadAnswer(e.to_string()))?;
            staged.push(stage(
                &mesh_dir.join(crate::mesh::ROSTER_FILE),
                &json,
                true,
            )?);
        }
        Ok(())
    })();
    if let Err(e) = staging {
        for f in &staged {
            let _ = std::fs::remove_file(f);
        }
        undo_dirs(&made);
        return Err(e);
    }
    let ca_pin = CaPin::of_pem("HQ's CA", reply.hq_ca_pem.as_bytes())
        .map_err(|e| TokenEnrolError::BadAnswer(e.to_string()))?;
    let applied = {
        let s = settings.clone();
        let json = reply.bundle_json.clone().into_bytes();
        tokio::task::spawn_blocking(move || {
            crate::access::enroll_data_dir_with_ciphers(
                &s,
                &StoreOptions::default(),
                &json,
                &[
                    crate::mesh::IDENTITY_PURPOSE,
                    crate::access::hq_pin::PIN_PURPOSE,
                ],
            )
        })
        .await
        .map_err(|e| TokenEnrolError::BadAnswer(format!("the enrolment task failed: {e}")))?
    };
    if let Err(e) = applied {
        for f in &staged {
            let _ = std::fs::remove_file(f);
        }
        if made_dir {
            let _ = std::fs::remove_dir_all(&settings.data_dir);
        } else {
            undo_dirs(&made);
        }
        return Err(TokenEnrolError::Apply(e));
    }
    // The data dir is enrolled: the mesh identity and HQ's CA pin are sealed under its
    // new key before anything else opens it.
    if let Ok(Some(ciphers)) = &applied {
        let sealed = crate::mesh::seal_identity(&settings.data_dir, &ciphers[0], &identity)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                crate::access::hq_pin::seal(&settings.data_dir, &ciphers[1], ca_pin)
                    .map_err(|e| e.to_string())
            });
        if let Err(reason) = sealed {
            return Err(TokenEnrolError::Write {
                path: settings.data_dir.clone(),
                reason: format!(
                    "the unit is enrolled, but its mesh identity or HQ's CA pin could not be sealed ({reason}): the first start makes a new identity (off HQ's roster) and pins the CA then"
                ),
            });
        }
    }
    let mut places: Vec<PathBuf> = files.to_vec();
    if roster.is_some() {
        places.push(mesh_dir.join(crate::mesh::ROSTER_FILE));
    }
    for (from, to) in staged.iter().zip(&places) {
        std::fs::rename(from, to).map_err(|e| TokenEnrolError::Write {
            path: to.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(TokenEnrolment {
        store_id: reply.store_id,
        unit_id: unit,
        files,
        peer_id: peer.to_base58(),
        roster_version: roster.map(|r| r.version),
    })
}

/// HQ's roster from the answer: none when HQ sent none; else signed by the bundle's HQ
/// key, for the bundle's store, naming this unit.
fn roster_for(
    bundle: &Enrollment,
    json: &str,
    me: &outpost_p2p::PeerId,
) -> Result<Option<SignedRoster>, String> {
    if json.is_empty() {
        return Ok(None);
    }
    let key = bundle.hq_key().map_err(|e| e.to_string())?;
    let key = outpost_p2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())
        .map_err(|e| format!("the HQ key: {e}"))?;
    let signed = SignedRoster::from_json(json).map_err(|e| format!("the roster: {e}"))?;
    let roster = signed
        .verify(&key)
        .map_err(|e| format!("the roster: {e}"))?;
    if roster.store_id != bundle.store_id || !roster.contains(me) {
        return Err(format!(
            "the roster is for store {:?} and does not name this unit ({me})",
            roster.store_id
        ));
    }
    Ok(Some(signed))
}
