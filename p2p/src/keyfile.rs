//! A unit's identity key in a plain file, for tests, the example and demos, and for
//! moving an older unit's `identity.key` elsewhere; the server keeps its identity
//! encrypted instead and hands the node the key pair (`P2pConfig::keypair`).
//!
//! A key file is created with mode 0600 from its first byte (never chmod'ed after the
//! fact), written to a temporary file, synced and renamed into place. It is refused when
//! group or others may read it, or when another user owns it: a key others could read
//! must be assumed copied, and whoever holds it is this unit on the mesh.
//!
//! (`outpost-security` has the same logic for the server's secrets; this crate does not
//! depend on it, to stay usable without the server's key hierarchy.)

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use libp2p::identity::{Keypair, ed25519};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::P2pError;

/// Bytes of a key file: the Ed25519 secret key then its public key.
const KEY_FILE_LEN: u64 = 64;

fn err(path: &Path, reason: impl Into<String>) -> P2pError {
    P2pError::Identity {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The key pair of a 32-byte Ed25519 secret key (the bytes are wiped).
pub fn from_secret(secret: &mut [u8; 32]) -> Result<Keypair, P2pError> {
    let secret = ed25519::SecretKey::try_from_bytes(secret)
        .map_err(|e| P2pError::Config(format!("not an Ed25519 secret key: {e}")))?;
    Ok(Keypair::from(ed25519::Keypair::from(secret)))
}

/// The 32 secret bytes of an Ed25519 key pair (`None` for another key type).
pub fn secret_of(keypair: &Keypair) -> Option<Zeroizing<[u8; 32]>> {
    let kp = keypair.clone().try_into_ed25519().ok()?;
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(kp.secret().as_ref());
    Some(out)
}

/// Reads the key pair in `path`; `Ok(None)` if there is no such file. Refuses a file
/// that group or others may read, or that another user owns, naming the file and the
/// fix.
pub fn read(path: &Path) -> Result<Option<Keypair>, P2pError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(path, format!("cannot open: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| err(path, format!("cannot stat: {e}")))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(
            path,
            format!(
                "has mode {mode:o}: group or others may read this secret key, so it must be assumed copied; make it readable by its owner only (chmod 600 {})",
                path.display()
            ),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(err(
            path,
            format!(
                "is owned by uid {}, not by this user (uid {me}): another user could have written or read it; check it, then chown it to this user and chmod 600 {}",
                meta.uid(),
                path.display()
            ),
        ));
    }
    if meta.len() != KEY_FILE_LEN {
        return Err(err(
            path,
            format!(
                "is {} bytes, not a {KEY_FILE_LEN}-byte Ed25519 key pair",
                meta.len()
            ),
        ));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN as usize));
    Read::by_ref(&mut file)
        .take(KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(path, format!("cannot read: {e}")))?;
    let kp = ed25519::Keypair::try_from_bytes(&mut bytes)
        .map_err(|e| err(path, format!("not a 64-byte Ed25519 key pair: {e}")))?;
    Ok(Some(Keypair::from(kp)))
}

/// Writes `keypair` to `path` atomically, readable and writable by its owner only.
pub fn write(path: &Path, keypair: &Keypair) -> Result<(), P2pError> {
    let kp = keypair
        .clone()
        .try_into_ed25519()
        .map_err(|_| err(path, "only Ed25519 identities are stored"))?;
    let bytes = Zeroizing::new(kp.to_bytes());
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{:08x}", rand::rng().next_u32()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(&tmp, format!("cannot create: {e}")))?;
        f.write_all(&bytes[..])
            .and_then(|()| f.sync_all())
            .map_err(|e| err(&tmp, format!("cannot write: {e}")))?;
        fs::rename(&tmp, path).map_err(|e| err(path, format!("cannot rename into place: {e}")))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err(dir, format!("cannot sync the directory: {e}")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads the key pair in `path`, or creates one there (0600) if there is none.
pub fn load_or_create(path: &Path) -> Result<Keypair, P2pError> {
    if let Some(kp) = read(path)? {
        return Ok(kp);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| err(dir, format!("cannot create: {e}")))?;
    }
    let kp = Keypair::generate_ed25519();
    write(path, &kp)?;
    Ok(kp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_created_key_file_is_owner_only_and_reads_back_the_same_peer_id() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/identity.key");
        let kp = load_or_create(&path).expect("created");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path).expect("read");
        assert_eq!(again.public().to_peer_id(), kp.public().to_peer_id());
        let mut secret = *secret_of(&kp).expect("ed25519");
        let back = from_secret(&mut secret).expect("key");
        assert_eq!(back.public(), kp.public());
        assert_eq!(secret, [0u8; 32], "the secret bytes are wiped");
    }

    #[test]
    fn a_key_file_group_or_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("identity.key");
        load_or_create(&path).expect("created");
        for mode in [0o640, 0o604, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let e = read(&path).expect_err("refused").to_string();
            assert!(e.contains("identity.key"), "{e}");
            assert!(e.contains("chmod 600"), "{e}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(read(&path).expect("read").is_some());
    }

    #[test]
    fn a_malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("identity.key");
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("create");
        f.write_all(&[7u8; 40]).expect("write");
        drop(f);
        let e = read(&path).expect_err("refused").to_string();
        assert!(e.contains("40 bytes"), "{e}");
    }
}
