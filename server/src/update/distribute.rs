//! Releases that come through the store mesh (`hq::artifacts`): the sealed tar is
//! opened with the key HQ sent and unpacked into `<releases>/incoming/<version>`, then
//! applied as a bundle on disk is ([`super::live::apply_bundle`]: every file checked
//! against the signed manifest and the unit's root, staged, self-tested on a copy of
//! the data dir, switched), and the server restarts into it.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_security::stream::{OpeningReader, StreamKey};
use outpost_updater::apply::MANIFEST_FILE;
use outpost_updater::bundle;
use outpost_updater::semver::Version;

use crate::access::Access;
use crate::config::Settings;
use crate::hq::artifacts::{InstallError, ReleaseInstaller};
use crate::store::Store;

/// Who the audit log names for a release HQ sent.
const ACTOR: &str = "hq (store mesh)";

/// The updater, for releases from the mesh.
pub struct MeshReleases {
    store: Arc<Store>,
    access: Arc<Access>,
    settings: Settings,
    restart: Arc<tokio::sync::Notify>,
}

impl MeshReleases {
    /// The installer of a unit that updates itself (`[updates] releases_dir` set), or
    /// none.
    pub fn for_unit(
        store: Arc<Store>,
        access: Arc<Access>,
        settings: &Settings,
        restart: Arc<tokio::sync::Notify>,
    ) -> Option<Arc<dyn ReleaseInstaller>> {
        settings.updates.releases_dir.as_ref()?;
        Some(Arc::new(MeshReleases {
            store,
            access,
            settings: settings.clone(),
            restart,
        }))
    }

    fn incoming(&self, version: &Version) -> Option<PathBuf> {
        let dir = self.settings.updates.releases_dir.as_deref()?;
        Some(dir.join("incoming").join(version.to_string()))
    }
}

fn refused(code: &str, message: impl Into<String>) -> InstallError {
    InstallError {
        code: code.into(),
        message: message.into(),
    }
}

/// Unpacks the sealed mesh release at `sealed` into `into` (replaced), and checks the
/// manifest inside names `version` (its signatures are checked when it is applied).
pub fn unpack(
    sealed: &Path,
    key: &StreamKey,
    version: &Version,
    into: &Path,
) -> Result<(), InstallError> {
    if let Some(parent) = into.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| refused("io", format!("create {}: {e}", parent.display())))?;
    }
    let _ = std::fs::remove_dir_all(into);
    let file = std::fs::File::open(sealed)
        .map_err(|e| refused("io", format!("open {}: {e}", sealed.display())))?;
    let plain = OpeningReader::new(key, BufReader::with_capacity(1 << 20, file)).map_err(|e| {
        refused(
            "malformed",
            format!("the release does not open with the key HQ sent: {e}"),
        )
    })?;
    let mut opened = Opened {
        inner: plain,
        error: None,
    };
    let unpacked = bundle::unpack(BufReader::with_capacity(1 << 20, &mut opened), into);
    if let Some(e) = opened.error {
        return Err(refused(
            "malformed",
            format!("the release does not open with the key HQ sent: {e}"),
        ));
    }
    unpacked.map_err(|e| refused(e.code(), e.to_string()))?;
    let m = bundle::manifest_unverified(into).map_err(|e| refused(e.code(), e.to_string()))?;
    if &m.version != version {
        let _ = std::fs::remove_dir_all(into);
        return Err(refused(
            "malformed",
            format!(
                "HQ offered release {version} but the artifact's {MANIFEST_FILE} is release {}",
                m.version
            ),
        ));
    }
    Ok(())
}

/// A reader that keeps its first error: the sealed stream's (a wrong key, a changed
/// byte) told apart from what the tar reader makes of the bytes.
struct Opened<R> {
    inner: R,
    error: Option<std::io::Error>,
}

impl<R: std::io::Read> std::io::Read for &mut Opened<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if self.error.is_none() {
                self.error = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

impl ReleaseInstaller for MeshReleases {
    fn install(
        &self,
        sealed: &Path,
        key: &StreamKey,
        version: &Version,
    ) -> Result<(), InstallError> {
        let into = self
            .incoming(version)
            .ok_or_else(|| refused("updates_off", "this unit does not update itself"))?;
        if let Err(e) = unpack(sealed, key, version, &into) {
            self.access.audit(
                ACTOR,
                "update.refused",
                &format!(
                    "release {version} from the store mesh [{}]: {}",
                    e.code, e.message
                ),
            );
            return Err(e);
        }
        let result =
            super::live::apply_bundle(&self.store, &self.access, &self.settings, &into, ACTOR);
        let _ = std::fs::remove_dir_all(&into);
        result
            .map(|_| ())
            .map_err(|e| refused(e.code(), e.to_string()))
    }

    fn restart(&self) {
        super::live::restart_soon(&self.restart);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_security::stream::seal;

    fn tar_with_manifest_of(version: &str) -> Vec<u8> {
        let payload = serde_json::json!({
            "version": version, "target": "t", "published": 0, "expires": 1,
            "files": [], "artifact": {"name": "a.tar.gz", "size": 0, "sha256": ""}
        });
        let doc = outpost_updater::signed::SignedDoc::sign(
            outpost_updater::signed::MANIFEST_TYPE,
            payload.to_string().as_bytes(),
            &[],
        );
        let json = doc.to_json();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(json.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, MANIFEST_FILE, json.as_slice())
            .unwrap();
        b.into_inner().unwrap()
    }

    fn sealed(dir: &Path, key: &StreamKey, plain: &[u8]) -> PathBuf {
        let mut out = Vec::new();
        seal(key, plain, &mut out).unwrap();
        let path = dir.join("sealed");
        std::fs::write(&path, out).unwrap();
        path
    }

    #[test]
    fn a_release_opens_only_with_its_key_and_must_be_the_version_offered() {
        let dir = tempfile::tempdir().unwrap();
        let key = StreamKey::generate();
        let file = sealed(dir.path(), &key, &tar_with_manifest_of("1.2.3"));
        let into = dir.path().join("incoming/1.2.3");
        unpack(&file, &key, &Version::new(1, 2, 3), &into).unwrap();
        assert!(into.join(MANIFEST_FILE).is_file());

        let e = unpack(&file, &StreamKey::generate(), &Version::new(1, 2, 3), &into).unwrap_err();
        assert_eq!(e.code, "malformed");
        assert!(e.message.contains("key HQ sent"), "{e}");

        let e = unpack(&file, &key, &Version::new(1, 2, 4), &into).unwrap_err();
        assert!(e.message.contains("is release 1.2.3"), "{e}");
        assert!(!into.exists(), "a refused release is not left behind");

        let junk = sealed(
            dir.path(),
            &key,
            b"not a tar at all, just words".repeat(30).as_slice(),
        );
        let e = unpack(&junk, &key, &Version::new(1, 2, 3), &into).unwrap_err();
        assert_eq!(e.code, "malformed", "{e}");
    }
}
