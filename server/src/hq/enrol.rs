//! Enrolment with a one-time token (`outpost enroll --hq URL --token T`): the unit
//! makes its device key and a certificate request, HQ answers `HqService.Enroll`
//! with the signed bundle, the unit's certificate and HQ's CA, and the bundle is
//! applied exactly as `outpost enroll --bundle` applies a file
//! ([`crate::access::enroll_data_dir`]: TPM provisioning, the envelope, the trust
//! record). The certificate, its key and HQ's CA go where `[tls] cert`, `[tls] key` and
//! `sync.hq_ca` name them.
//!
//! Nothing is half-done: everything that can be checked without HQ is checked first
//! (not enrolled yet, the three paths set and free, the TPM answering and not enrolled
//! by another data dir, the URL), so a refusal there leaves the token unspent; after
//! HQ answered, the answer is checked whole (the bundle's signature, unit and store,
//! the certificate for this key, the CA) before anything is written; the files are
//! staged beside their places and renamed in only once the data dir is enrolled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_proto::hq::hq_service_client::HqServiceClient;
use outpost_proto::hq::{EnrollRequest, TpmFacts};
use outpost_security::enroll::Enrollment;
use outpost_security::fsutil;
use outpost_security::tls::DeviceIdentity;
use secrecy::{ExposeSecret as _, SecretString};

use crate::access::AccessError;
use crate::config::Settings;
use crate::store::StoreOptions;

/// How long the call to HQ may take.
const TIMEOUT: Duration = Duration::from_secs(20);

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
}

fn not_ready(s: impl Into<String>) -> TokenEnrolError {
    TokenEnrolError::NotReady(s.into())
}

/// The three destinations: `[tls] cert`, `[tls] key`, `sync.hq_ca`, each free.
fn destinations(settings: &Settings) -> Result<[PathBuf; 3], TokenEnrolError> {
    let (Some(cert), Some(key), Some(ca)) = (
        settings.tls.cert.clone(),
        settings.tls.key.clone(),
        settings.sync.hq_ca.clone(),
    ) else {
        return Err(not_ready(
            "set [tls] cert and key and [sync] hq_ca in the config: the enrolment writes the certificate HQ issues, its key and HQ's CA there",
        ));
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

/// Enrols the stopped server's data dir with HQ at `url` and the one-time `token`.
pub async fn enroll_with_token(
    settings: &Settings,
    url: &str,
    token: &SecretString,
) -> Result<TokenEnrolment, TokenEnrolError> {
    let key_path = settings.data_dir.join(crate::access::legacy::KEY_FILE);
    if crate::access::anchor::is_enrolled(&key_path).map_err(|e| not_ready(e.to_string()))? {
        return Err(not_ready(format!(
            "{} is enrolled already",
            settings.data_dir.display()
        )));
    }
    let files = destinations(settings)?;
    match crate::config::url_scheme_and_loopback(url) {
        Ok((false, true)) => {}
        Ok(_) => {
            return Err(not_ready(format!(
                "--hq {url}: before its first enrolment the unit has no pin for HQ's certificate, so this build enrols over loopback only (http://127.0.0.1:PORT, e.g. through an SSH tunnel to HQ)"
            )));
        }
        Err(m) => return Err(not_ready(format!("--hq: {m}"))),
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

    let unreachable = |reason: String| TokenEnrolError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let reply = HqServiceClient::new(channel)
        .enroll(EnrollRequest {
            token: token.expose_secret().to_owned(),
            unit_id: unit.clone(),
            csr_pem: csr,
            tpm: Some(tpm),
        })
        .await;
    let reply = match reply {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::Unavailable => {
            return Err(unreachable(s.message().to_owned()));
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

    let staged = [
        stage(&files[0], reply.certificate_pem.as_bytes(), false)?,
        stage(&files[1], key_pem.as_bytes(), true)?,
        stage(&files[2], reply.hq_ca_pem.as_bytes(), false)?,
    ];
    // A bare data dir is made here, and taken away again if the bundle does not apply.
    let made_dir = !settings.data_dir.exists();
    if made_dir {
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| TokenEnrolError::Write {
            path: settings.data_dir.clone(),
            reason: e.to_string(),
        })?;
    }
    let applied = {
        let s = settings.clone();
        let json = reply.bundle_json.clone().into_bytes();
        tokio::task::spawn_blocking(move || {
            crate::access::enroll_data_dir(&s, &StoreOptions::default(), &json, None)
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
        }
        return Err(TokenEnrolError::Apply(e));
    }
    for (from, to) in staged.iter().zip(&files) {
        std::fs::rename(from, to).map_err(|e| TokenEnrolError::Write {
            path: to.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(TokenEnrolment {
        store_id: reply.store_id,
        unit_id: unit,
        files,
    })
}
