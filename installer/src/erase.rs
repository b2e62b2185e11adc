//! The crypto-erase of `uninstall --purge`: the data key is destroyed before the data
//! dir is removed, so the ciphertext that stays on the disk (deleted blocks, a copy
//! someone made) never opens again.
//!
//! Every value in the data dir is encrypted under the data key; the key itself is in
//! `sealed-key`, opened by the sealer or, on an enrolled unit, by a TPM share bound to
//! the trust anchor's lock key plus a second share (`docs/security.md`). What the
//! erase destroys, in this order:
//!
//! 1. On an enrolled TPM unit, the trust anchor in the TPM: the lock key is evicted
//!    (no share sealed to it opens again, from any copy of the disk, on any OS) and
//!    the lock and epoch counters are undefined (so a fresh install is not taken for a
//!    tampered enrolled unit). The TPM is asked first: if it cannot be reached the
//!    purge stops before anything is removed.
//! 2. The key files in the data dir, each overwritten with random bytes, fsynced and
//!    removed: the sealed key, the software sealer's and the software anchor's state,
//!    the identity secret and the device key.
//!
//! A TPM-sealed key of a unit that was never enrolled (format 1) is a sealed object
//! bound to the PCRs only: nothing of it lives in the TPM, so there is nothing to
//! evict, and a copy of the disk made *before* the purge still opens on that TPM in
//! that boot state. The step says so; enrolled units do not have that limit.

use std::path::Path;

use outpost_security::anchor;
use outpost_security::fsutil;
use outpost_security::seal::{SealedKeyFile, SealerKind};

use crate::error::InstallError;
use crate::paths::{CONFIG_FILE, DATA_DIR, Root};

/// The sealed data key in the data dir (`outpost_server::access::legacy::KEY_FILE`).
pub const SEALED_KEY: &str = "sealed-key";

/// Files in the data dir that hold key material, destroyed after the TPM: the
/// software sealer's key, the software anchor's state, the identity secret sealed to
/// the TPM, the device key (sealed, or a provisioned one in PEM), the key a token
/// enrolment kept for the HQ link, and the mesh identity an enrolment wrote before the
/// first start sealed it. Their names are those the server writes
/// (`outpost_server::access`, `outpost_security::tls`, `outpost_server::hq::enrol`,
/// `outpost_server::mesh`); the server's TPM test purges a real enrolled data dir.
pub const KEY_FILES: [&str; 7] = [
    "software-kek",
    "software-anchor",
    "identity-key",
    "device-key.sealed",
    "device-key.pem",
    "hq-link/device-key.pem",
    "p2p/identity.key",
];

/// The default TCTI the server uses when `[security] tcti` is not set.
const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// What the sealed key file says about the data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sealed {
    /// No sealed key (never started, or already erased).
    None,
    /// Format 1: the data key sealed by itself, by this sealer.
    Legacy(SealerKind),
    /// Format 2: an enrolled envelope on this anchor.
    Enrolled(SealerKind),
}

fn sealed(key: &Path) -> Result<Sealed, InstallError> {
    let file = SealedKeyFile::new(key);
    let fail = |e: outpost_security::seal::SealError| InstallError::Erase {
        reason: format!("cannot read the sealed key {}: {e}", key.display()),
    };
    let Some(version) = file.format_version().map_err(fail)? else {
        return Ok(Sealed::None);
    };
    let kind = file
        .sealed_kind()
        .map_err(fail)?
        .ok_or_else(|| InstallError::Erase {
            reason: format!("{} vanished while it was read", key.display()),
        })?;
    Ok(if version >= 2 {
        Sealed::Enrolled(kind)
    } else {
        Sealed::Legacy(kind)
    })
}

/// `[security] tcti` of the installed config, or the server's default.
fn tcti(root: &Root) -> Result<String, InstallError> {
    let path = root.path(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DEFAULT_TCTI.into()),
        Err(e) => return Err(InstallError::io("read", path, e)),
    };
    let table: toml::Table = text.parse().map_err(|e| InstallError::Erase {
        reason: format!(
            "{CONFIG_FILE} is not valid TOML ({e}), so the TPM it names is unknown: fix it and run again"
        ),
    })?;
    Ok(table
        .get("security")
        .and_then(|s| s.get("tcti"))
        .and_then(toml::Value::as_str)
        .unwrap_or(DEFAULT_TCTI)
        .to_owned())
}

/// Destroys the data key (or, with `apply` false, says what it would destroy).
/// Returns whether anything was (or would be) destroyed, and what.
pub fn crypto_erase(root: &Root, apply: bool) -> Result<(bool, String), InstallError> {
    let data = root.path(DATA_DIR);
    let key = data.join(SEALED_KEY);
    let state = sealed(&key)?;
    let mut done: Vec<String> = Vec::new();
    let mut note = String::new();

    match state {
        Sealed::Enrolled(SealerKind::Tpm) => {
            let tcti = tcti(root)?;
            if apply {
                let refused = |e: outpost_security::seal::SealError| InstallError::Erase {
                    reason: format!(
                        "the data dir is enrolled on the TPM at {tcti:?}, whose lock key must be evicted first or the key stays recoverable from a copy of the disk: {e}. Nothing was removed; make the TPM reachable ([security] tcti) and run the purge again"
                    ),
                };
                let mut tpm = anchor::open_tpm(&tcti).map_err(refused)?;
                tpm.erase().map_err(refused)?;
            }
            done.push(format!(
                "the TPM's lock key evicted and its counters undefined ({tcti})"
            ));
        }
        Sealed::Legacy(SealerKind::Tpm) => {
            note = " (this unit was never enrolled: its TPM-sealed key has no part in the TPM to destroy, so a copy of the disk made before this purge still opens on this TPM in this boot state)".into();
        }
        _ => {}
    }

    let mut changed = state != Sealed::None;
    for name in std::iter::once(SEALED_KEY).chain(KEY_FILES) {
        let path = data.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {
                if apply {
                    fsutil::destroy(&path).map_err(|e| InstallError::Erase {
                        reason: format!("cannot destroy {}: {e}", path.display()),
                    })?;
                }
                changed = true;
                done.push(name.to_owned());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(InstallError::io("stat", path, e)),
        }
    }
    let detail = if done.is_empty() {
        "no data key to destroy".to_owned()
    } else {
        format!("destroyed first: {}{note}", done.join(", "))
    };
    Ok((changed, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tcti_comes_from_the_config_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::staged(dir.path());
        assert_eq!(tcti(&root).unwrap(), DEFAULT_TCTI);
        std::fs::create_dir_all(root.path("/etc/outpost")).unwrap();
        std::fs::write(
            root.path(CONFIG_FILE),
            "[security]\nsealer = \"tpm\"\ntcti = \"swtpm:port=2321\"\n",
        )
        .unwrap();
        assert_eq!(tcti(&root).unwrap(), "swtpm:port=2321");
        std::fs::write(root.path(CONFIG_FILE), "[security\n").unwrap();
        assert!(matches!(tcti(&root), Err(InstallError::Erase { .. })));
    }

    #[test]
    fn a_sealed_key_that_is_not_one_stops_the_purge() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::staged(dir.path());
        let data = root.path(DATA_DIR);
        std::fs::create_dir_all(&data).unwrap();
        fsutil::write_private(&data.join(SEALED_KEY), b"garbage!").unwrap();
        let err = crypto_erase(&root, true).unwrap_err().to_string();
        assert!(err.contains("sealed key"), "{err}");
        assert!(data.join(SEALED_KEY).exists(), "nothing was removed");
    }
}
