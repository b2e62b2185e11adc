//! The store mesh in the server: this unit's `outpost-p2p` node, started from the
//! `[p2p]` settings, its identity, and what the API shows of it (`GET /api/v1/peers`).
//!
//! The settings are [`crate::config::P2pSettings`]; `outpost p2p id` prints the peer id
//! HQ puts on the roster. The protocol is in `docs/p2p.md`.
//!
//! The identity (the Ed25519 key whose peer id is on HQ's roster) is a long-term secret:
//! whoever holds it is this unit on the mesh. It is kept in
//! `<data-dir>/p2p/identity.sealed`, encrypted under the data key (purpose
//! [`IDENTITY_PURPOSE`]), so a copy of the disk does not carry it away; the file is
//! written 0600 and refused if group or others may read it. A plaintext
//! `p2p/identity.key` left by an older unit is moved into it at the next start (the
//! peer id stays the same, so the roster still holds) and then destroyed. A token
//! enrolment makes the identity and seals it under the new data key itself
//! ([`seal_identity`]).
//!
//! The roster HQ gave the unit (in its enrolment answer, then by `PushRoster`) is kept
//! in `<data-dir>/p2p/roster.json`: signed by HQ, so its integrity needs no sealing; it
//! is read at start beside `[p2p] roster_file` and the newer version wins.

use std::path::{Path, PathBuf};

use outpost_p2p::Client;
use outpost_p2p::identity::Keypair;
use outpost_security::fsutil::{self, FsError};
use outpost_security::vault::Cipher;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::access::{Access, AccessError};
use crate::config::P2pSettings;
use crate::config::mesh::MeshTrust;
use outpost_p2p::roster::SignedRoster;

/// The data-key purpose of the sealed mesh identity.
pub const IDENTITY_PURPOSE: &str = "file:mesh-identity";
/// The sealed identity, in [`mesh_dir`].
const SEALED_FILE: &str = "identity.sealed";
/// An older unit's plaintext identity, in [`mesh_dir`].
const PLAIN_FILE: &str = "identity.key";
/// Bound to the ciphertext, so the sealed identity cannot be passed off as another
/// sealed secret of the same purpose.
const SEALED_AD: &[u8] = b"outpost p2p/identity.sealed v1";
/// Larger than any sealed identity (32 bytes plus the AEAD's overhead).
const SEALED_MAX: u64 = 1024;
/// The roster HQ gave this unit, in [`mesh_dir`].
pub const ROSTER_FILE: &str = "roster.json";
/// Larger than any roster a store has (a peer id is ~53 bytes).
const ROSTER_MAX: u64 = 1024 * 1024;

/// Why the mesh identity could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The data key is not available (locked), or the cipher could not be made.
    #[error("the mesh identity is sealed under the data key: {0}")]
    Access(#[from] AccessError),
    /// A file could not be read or written, or its mode is unsafe.
    #[error("mesh identity: {0}")]
    File(#[from] FsError),
    /// The sealed file does not open under this data dir's key.
    #[error(
        "the mesh identity {path} does not decrypt under this data dir's key ({reason}): it belongs to another data dir or was changed; restore it from this data dir's backup, or remove it to make a new identity (HQ must then put the new peer id on the roster)"
    )]
    Sealed {
        /// The sealed file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The plaintext key of an older unit is unusable (its mode, owner or content).
    #[error(transparent)]
    Plain(#[from] outpost_p2p::P2pError),
    /// A plaintext key sits beside a sealed one with another identity.
    #[error(
        "{plain} holds another identity than {sealed}: remove the one HQ's roster does not list"
    )]
    Conflict {
        /// The plaintext key.
        plain: PathBuf,
        /// The sealed key.
        sealed: PathBuf,
    },
}

/// Where a unit keeps its mesh identity and content.
pub fn mesh_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("p2p")
}

/// [`mesh_dir`], made when missing.
fn made_mesh_dir(data_dir: &Path) -> Result<PathBuf, FsError> {
    let dir = mesh_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|source| FsError::Io {
        op: "create",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// This unit's mesh identity, sealed under the data key in `data_dir` (with `cipher`
/// for [`IDENTITY_PURPOSE`]): read, or moved from an older unit's plaintext
/// `identity.key`, or made on first use.
pub fn identity(data_dir: &Path, cipher: &Cipher) -> Result<Keypair, IdentityError> {
    let dir = made_mesh_dir(data_dir)?;
    let (sealed, plain) = (dir.join(SEALED_FILE), dir.join(PLAIN_FILE));
    if let Some(bytes) = fsutil::read_private(&sealed, SEALED_MAX)? {
        let kp = open_sealed(&sealed, cipher, &bytes)?;
        // A move that stopped between sealing and destroying left the plaintext.
        if let Some(old) = outpost_p2p::keyfile::read(&plain)? {
            if old.public() != kp.public() {
                return Err(IdentityError::Conflict { plain, sealed });
            }
            fsutil::destroy(&plain)?;
            tracing::info!(file = %plain.display(), "Destroyed the plaintext mesh identity left by an interrupted move");
        }
        return Ok(kp);
    }
    let (kp, moved) = match outpost_p2p::keyfile::read(&plain)? {
        Some(kp) => (kp, true),
        None => (Keypair::generate_ed25519(), false),
    };
    write_sealed(&sealed, cipher, &kp)?;
    if moved {
        fsutil::destroy(&plain)?;
        tracing::info!(sealed = %sealed.display(), destroyed = %plain.display(), peer_id = %kp.public().to_peer_id(), "Moved the mesh identity under the data key");
    } else {
        tracing::info!(peer_id = %kp.public().to_peer_id(), "Created the mesh identity");
    }
    Ok(kp)
}

fn write_sealed(sealed: &Path, cipher: &Cipher, kp: &Keypair) -> Result<(), IdentityError> {
    let secret = outpost_p2p::keyfile::secret_of(kp).ok_or_else(|| IdentityError::Sealed {
        path: sealed.to_owned(),
        reason: "not an Ed25519 key".into(),
    })?;
    fsutil::write_private(sealed, &cipher.seal(SEALED_AD, &secret[..]))?;
    Ok(())
}

/// Keeps `kp` as this unit's identity, sealed with `cipher` (for [`IDENTITY_PURPOSE`]):
/// the enrolment's, made before the data key existed. Refused over an identity already
/// there.
pub fn seal_identity(data_dir: &Path, cipher: &Cipher, kp: &Keypair) -> Result<(), IdentityError> {
    let dir = made_mesh_dir(data_dir)?;
    let sealed = dir.join(SEALED_FILE);
    if sealed.exists() {
        return Err(IdentityError::Conflict {
            plain: sealed.clone(),
            sealed,
        });
    }
    write_sealed(&sealed, cipher, kp)
}

fn open_sealed(path: &Path, cipher: &Cipher, bytes: &[u8]) -> Result<Keypair, IdentityError> {
    let bad = |reason: String| IdentityError::Sealed {
        path: path.to_owned(),
        reason,
    };
    let plain = cipher
        .open(SEALED_AD, bytes)
        .map_err(|e| bad(e.to_string()))?;
    let mut secret = Zeroizing::new([0u8; 32]);
    if plain.len() != secret.len() {
        return Err(bad(format!("{} bytes, not a 32-byte key", plain.len())));
    }
    secret.copy_from_slice(&plain);
    outpost_p2p::keyfile::from_secret(&mut secret).map_err(|e| bad(e.to_string()))
}

/// The plaintext identity file (`p2p/identity.key`) the enrolment writes.
pub fn plain_identity_file(data_dir: &Path) -> PathBuf {
    mesh_dir(data_dir).join(PLAIN_FILE)
}

/// The roster HQ gave this unit, if any.
pub fn kept_roster(data_dir: &Path) -> Result<Option<SignedRoster>, RosterFileError> {
    let path = mesh_dir(data_dir).join(ROSTER_FILE);
    let Some(bytes) = fsutil::read_private(&path, ROSTER_MAX)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|_| RosterFileError::Unreadable {
        path: path.clone(),
        reason: "not UTF-8".into(),
    })?;
    SignedRoster::from_json(&text)
        .map(Some)
        .map_err(|e| RosterFileError::Unreadable {
            path,
            reason: e.to_string(),
        })
}

/// Keeps `roster` as the one HQ gave this unit (atomically, 0600; verified by the
/// caller).
pub fn keep_roster(data_dir: &Path, roster: &SignedRoster) -> Result<(), RosterFileError> {
    let dir = made_mesh_dir(data_dir)?;
    let json = serde_json::to_vec(roster).map_err(|e| RosterFileError::Unreadable {
        path: dir.join(ROSTER_FILE),
        reason: e.to_string(),
    })?;
    fsutil::write_private(&dir.join(ROSTER_FILE), &json)?;
    Ok(())
}

/// Why the kept roster could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RosterFileError {
    /// The file could not be read or written, or its mode is unsafe.
    #[error("mesh roster: {0}")]
    File(#[from] FsError),
    /// The file is not a roster.
    #[error(
        "the mesh roster {path} is unreadable ({reason}): remove it; HQ pushes the store's roster again"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What the unit holds for the mesh: the HQ key of its enrolment and the kept roster.
pub fn trust(data_dir: &Path, access: &Access) -> anyhow::Result<MeshTrust> {
    let enrolled_key = access
        .hq_verifying_key()
        .map(|k| outpost_p2p::identity::ed25519::PublicKey::try_from_bytes(k.as_bytes()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("the enrolled HQ key is not an Ed25519 key: {e}"))?;
    Ok(MeshTrust {
        enrolled_key,
        kept_roster: kept_roster(data_dir)?,
    })
}

/// This unit's identity, with the data key `access` holds.
pub fn unit_identity(data_dir: &Path, access: &Access) -> Result<Keypair, IdentityError> {
    identity(data_dir, &access.cipher(IDENTITY_PURPOSE)?)
}

/// This unit's peer id (created once and kept sealed in the data dir), for HQ's roster.
pub fn peer_id(data_dir: &Path, access: &Access) -> Result<String, IdentityError> {
    Ok(unit_identity(data_dir, access)?
        .public()
        .to_peer_id()
        .to_base58())
}

/// Start this unit's node, when the mesh is enabled.
pub async fn start(
    settings: &P2pSettings,
    data_dir: &Path,
    access: &Access,
) -> anyhow::Result<Option<Client>> {
    // A plaintext identity an older unit left is sealed at start, mesh on or off.
    if plain_identity_file(data_dir).exists() {
        unit_identity(data_dir, access)?;
    }
    if !settings.enabled {
        return Ok(None);
    }
    let keypair = unit_identity(data_dir, access)?;
    let cfg = settings.node_config(&mesh_dir(data_dir), keypair, trust(data_dir, access)?)?;
    let client = outpost_p2p::start(cfg).await?;
    tracing::info!(peer_id = %client.peer_id(), listen = ?client.listen_addrs(), "Joined the store mesh");
    Ok(Some(client))
}

/// What `GET /api/v1/peers` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeersView {
    /// Whether this unit is on the store mesh (`[p2p] enabled`).
    pub enabled: bool,
    /// This unit's peer id.
    pub peer_id: Option<String>,
    /// Where this unit listens.
    pub listen: Vec<String>,
    /// The store's other units this one knows of, with their state (`connected`,
    /// `disconnected`, `banned`, `rejected`).
    #[schema(value_type = Vec<Object>)]
    pub peers: Vec<outpost_p2p::PeerInfo>,
    /// Artifacts in this unit's content store, with bytes from origin, from peers
    /// and served to peers.
    #[schema(value_type = Vec<Object>)]
    pub artifacts: Vec<outpost_p2p::ArtifactStatus>,
}

/// The view of the mesh for the API.
pub async fn view(client: Option<&Client>) -> Result<PeersView, outpost_p2p::P2pError> {
    let Some(c) = client else {
        return Ok(PeersView {
            enabled: false,
            peer_id: None,
            listen: Vec::new(),
            peers: Vec::new(),
            artifacts: Vec::new(),
        });
    };
    Ok(PeersView {
        enabled: true,
        peer_id: Some(c.peer_id().to_base58()),
        listen: c.listen_addrs().iter().map(ToString::to_string).collect(),
        peers: c.peers().await?,
        artifacts: c.artifacts().await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_security::seal::DataKey;
    use outpost_security::vault::KeyVault;
    use std::os::unix::fs::PermissionsExt;

    fn cipher(seed: u8) -> Cipher {
        KeyVault::new(DataKey::from_bytes([seed; 32]))
            .cipher(IDENTITY_PURPOSE)
            .unwrap()
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_sealed_identity_holds_nothing_of_the_key_in_clear_and_keeps_its_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let kp = identity(dir.path(), &cipher(1)).unwrap();
        let sealed = mesh_dir(dir.path()).join(SEALED_FILE);
        let bytes = std::fs::read(&sealed).unwrap();
        let secret = outpost_p2p::keyfile::secret_of(&kp).unwrap();
        assert!(!contains(&bytes, &secret[..]), "the secret key is in clear");
        assert!(
            !contains(&bytes, &secret[..8]),
            "part of the secret key is in clear"
        );
        let mode = std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!mesh_dir(dir.path()).join(PLAIN_FILE).exists());
        let again = identity(dir.path(), &cipher(1)).unwrap();
        assert_eq!(again.public(), kp.public());
        // Another data key does not open it, and says which file.
        let e = identity(dir.path(), &cipher(2)).unwrap_err().to_string();
        assert!(e.contains("identity.sealed"), "{e}");
    }

    #[test]
    fn a_plaintext_identity_is_moved_under_the_data_key_with_the_same_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let plain = mesh_dir(dir.path()).join(PLAIN_FILE);
        let old = outpost_p2p::keyfile::load_or_create(&plain).unwrap();
        let kp = identity(dir.path(), &cipher(1)).unwrap();
        assert_eq!(kp.public().to_peer_id(), old.public().to_peer_id());
        assert!(!plain.exists(), "the plaintext key was destroyed");
        let again = identity(dir.path(), &cipher(1)).unwrap();
        assert_eq!(again.public(), old.public());
    }

    #[test]
    fn a_plaintext_identity_group_or_others_can_read_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let plain = mesh_dir(dir.path()).join(PLAIN_FILE);
        outpost_p2p::keyfile::load_or_create(&plain).unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = identity(dir.path(), &cipher(1)).unwrap_err().to_string();
        assert!(e.contains("identity.key") && e.contains("chmod 600"), "{e}");
        assert!(plain.exists());
        assert!(!mesh_dir(dir.path()).join(SEALED_FILE).exists());
    }

    #[test]
    fn a_group_readable_sealed_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        identity(dir.path(), &cipher(1)).unwrap();
        let sealed = mesh_dir(dir.path()).join(SEALED_FILE);
        std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = identity(dir.path(), &cipher(1)).unwrap_err().to_string();
        assert!(
            e.contains("identity.sealed") && e.contains("chmod 600"),
            "{e}"
        );
    }

    #[test]
    fn a_move_interrupted_before_the_destroy_is_finished_and_a_stranger_key_refused() {
        let dir = tempfile::tempdir().unwrap();
        let plain = mesh_dir(dir.path()).join(PLAIN_FILE);
        let kp = identity(dir.path(), &cipher(1)).unwrap();
        outpost_p2p::keyfile::write(&plain, &kp).unwrap();
        assert_eq!(
            identity(dir.path(), &cipher(1)).unwrap().public(),
            kp.public()
        );
        assert!(!plain.exists());
        outpost_p2p::keyfile::load_or_create(&plain).unwrap();
        assert!(matches!(
            identity(dir.path(), &cipher(1)),
            Err(IdentityError::Conflict { .. })
        ));
    }
}
