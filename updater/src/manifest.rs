//! A release manifest: what a release is (version, target, every file's size and
//! hash, the deltas from earlier versions, the store schema it migrates to), from
//! which version it may be installed, and until when the offer stands. It is trusted
//! only as a [`SignedDoc`] under the unit's [`Root`], and only before its expiry.

use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::UpdateError;
use crate::root::Root;
use crate::signed::{MANIFEST_TYPE, SignedDoc, hex};

const WHAT: &str = "release manifest";

/// The name of the server binary inside a release.
pub const BINARY: &str = "outpost";

/// One release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The release's version (semver); what its binary's version slot says.
    pub version: Version,
    /// The target triple it is built for (`x86_64-unknown-linux-gnu`).
    pub target: String,
    /// The oldest running version it may be installed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_from: Option<Version>,
    /// Unix seconds it was published.
    pub published: i64,
    /// Unix seconds after which a unit refuses it (a stale offer, a freeze attack).
    pub expires: i64,
    /// The store schema version it migrates the data dir to, if it migrates it: the
    /// updater snapshots the data dir before such a release starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
    /// The files the release installs (at least [`BINARY`]).
    pub files: Vec<FileEntry>,
    /// The compressed archive (tar.gz) that carries `files`.
    pub artifact: FileEntry,
    /// Binary deltas from earlier versions' binaries to this one's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Delta>,
}

/// A file: its name, size and SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// A plain file name (no directory).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// A patch that turns version `from`'s binary into this release's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// The version it applies to.
    pub from: Version,
    /// SHA-256 of that version's binary (the patch applies to those bytes only).
    pub from_sha256: String,
    /// The patch file (zstd with the old binary as its reference prefix).
    pub patch: FileEntry,
}

/// What a unit checks a manifest against.
#[derive(Debug, Clone)]
pub struct UnitFacts {
    /// The running version.
    pub running: Version,
    /// The highest version ever installed (the anti-rollback floor).
    pub highest: Option<Version>,
    /// This unit's target triple.
    pub target: String,
    /// Trusted time, unix seconds.
    pub now: i64,
}

impl FileEntry {
    /// The entry for `bytes` named `name`.
    pub fn of(name: &str, bytes: &[u8]) -> FileEntry {
        FileEntry {
            name: name.to_owned(),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }

    /// Refuses `bytes` unless they are this file of release `release`.
    pub fn check(&self, bytes: &[u8], release: &Version) -> Result<(), UpdateError> {
        let mismatch = |detail: String| UpdateError::FileMismatch {
            name: self.name.clone(),
            release: release.to_string(),
            detail,
        };
        if bytes.len() as u64 != self.size {
            return Err(mismatch(format!(
                "{} bytes where the manifest says {}",
                bytes.len(),
                self.size
            )));
        }
        let got = sha256_hex(bytes);
        if got != self.sha256 {
            return Err(mismatch(format!(
                "sha256 {got} where the manifest says {}",
                self.sha256
            )));
        }
        Ok(())
    }
}

/// SHA-256, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl Manifest {
    /// The manifest `doc` carries, if `root` (fresh at `now`) signed it and it is
    /// well-formed and unexpired.
    pub fn open(doc: &SignedDoc, root: &Root, now: i64) -> Result<Manifest, UpdateError> {
        if doc.payload_type != MANIFEST_TYPE {
            return Err(UpdateError::Malformed {
                what: WHAT,
                reason: format!("payload type {:?} is not a manifest", doc.payload_type),
            });
        }
        root.check_fresh(now)?;
        let payload = root.verify(doc, WHAT)?;
        let m: Manifest = serde_json::from_slice(&payload).map_err(|e| UpdateError::Malformed {
            what: WHAT,
            reason: e.to_string(),
        })?;
        m.validate()?;
        if m.expires <= now {
            return Err(UpdateError::Expired {
                what: WHAT,
                expired: m.expires,
                now,
            });
        }
        Ok(m)
    }

    fn validate(&self) -> Result<(), UpdateError> {
        let bad = |reason: String| UpdateError::Malformed { what: WHAT, reason };
        let names = self
            .files
            .iter()
            .map(|f| &f.name)
            .chain(std::iter::once(&self.artifact.name))
            .chain(self.deltas.iter().map(|d| &d.patch.name));
        for name in names {
            if name.is_empty()
                || name.len() > 128
                || name.starts_with('.')
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
            {
                return Err(bad(format!("file name {name:?} is not a plain file name")));
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            if self.files[..i].iter().any(|g| g.name == f.name) {
                return Err(bad(format!("file {} listed twice", f.name)));
            }
        }
        if !self.files.iter().any(|f| f.name == BINARY) {
            return Err(bad(format!("no {BINARY} binary in the release")));
        }
        for s in self
            .files
            .iter()
            .chain(std::iter::once(&self.artifact))
            .chain(self.deltas.iter().map(|d| &d.patch))
            .map(|f| &f.sha256)
            .chain(self.deltas.iter().map(|d| &d.from_sha256))
        {
            if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("{s:?} is not a SHA-256 in hex")));
            }
        }
        if self.expires <= self.published {
            return Err(bad("expires before it was published".into()));
        }
        Ok(())
    }

    /// Refuses a release this unit must not install: another target, older than the
    /// highest ever installed, the running one, or one that does not upgrade from the
    /// running version.
    pub fn check_for(&self, unit: &UnitFacts) -> Result<(), UpdateError> {
        if self.target != unit.target {
            return Err(UpdateError::WrongTarget {
                release: self.version.to_string(),
                target: self.target.clone(),
                ours: unit.target.clone(),
            });
        }
        let floor = match &unit.highest {
            Some(h) if *h > unit.running => h,
            _ => &unit.running,
        };
        if self.version < *floor {
            return Err(UpdateError::Downgrade {
                release: self.version.to_string(),
                highest: floor.to_string(),
            });
        }
        if self.version == unit.running {
            return Err(UpdateError::AlreadyRunning(self.version.to_string()));
        }
        if let Some(min) = &self.min_from
            && unit.running < *min
        {
            return Err(UpdateError::TooOld {
                release: self.version.to_string(),
                min_from: min.to_string(),
                running: unit.running.to_string(),
            });
        }
        Ok(())
    }

    /// The file entry named `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The delta from `from` whose base is the binary with hash `from_sha256`.
    pub fn delta_from(&self, from: &Version, from_sha256: &str) -> Option<&Delta> {
        self.deltas
            .iter()
            .find(|d| d.from == *from && d.from_sha256 == from_sha256)
    }

    /// The manifest signed by `keys`, as HQ's release tool publishes it.
    pub fn sign(&self, keys: &[&ed25519_dalek::SigningKey]) -> SignedDoc {
        // Strings, numbers and versions always serialise.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        SignedDoc::sign(MANIFEST_TYPE, &payload, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn manifest() -> Manifest {
        Manifest {
            version: v("1.1.0"),
            target: "x86_64-unknown-linux-gnu".into(),
            min_from: Some(v("1.0.0")),
            published: 1_000,
            expires: 2_000,
            schema: None,
            files: vec![FileEntry::of(BINARY, b"new binary")],
            artifact: FileEntry::of("outpost-1.1.0.tar.gz", b"archive"),
            deltas: vec![],
        }
    }

    fn unit() -> UnitFacts {
        UnitFacts {
            running: v("1.0.3"),
            highest: Some(v("1.0.3")),
            target: "x86_64-unknown-linux-gnu".into(),
            now: 1_500,
        }
    }

    #[test]
    fn a_signed_fresh_manifest_opens_and_a_stale_one_does_not() {
        let k = SigningKey::from_bytes(&[1; 32]);
        let root = Root::new(1, 10_000, 1, &[&k]);
        let doc = manifest().sign(&[&k]);
        assert_eq!(Manifest::open(&doc, &root, 1_500).unwrap(), manifest());
        let err = Manifest::open(&doc, &root, 2_000).unwrap_err();
        assert_eq!(err.code(), "expired", "{err}");
        // An expired root signs nothing new.
        let old_root = Root::new(1, 1_400, 1, &[&k]);
        assert_eq!(
            Manifest::open(&doc, &old_root, 1_500).unwrap_err().code(),
            "expired"
        );
        let other = SigningKey::from_bytes(&[2; 32]);
        let err = Manifest::open(&manifest().sign(&[&other]), &root, 1_500).unwrap_err();
        assert_eq!(err.code(), "bad_signature", "{err}");
        let unsigned = SignedDoc {
            signatures: vec![],
            ..doc
        };
        assert_eq!(
            Manifest::open(&unsigned, &root, 1_500).unwrap_err().code(),
            "unsigned"
        );
        let as_root = root.sign(&[&k]);
        assert_eq!(
            Manifest::open(&as_root, &root, 1_500).unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn the_unit_refuses_downgrades_other_targets_and_too_old_bases() {
        manifest().check_for(&unit()).unwrap();
        let mut m = manifest();
        m.target = "aarch64-unknown-linux-gnu".into();
        assert_eq!(m.check_for(&unit()).unwrap_err().code(), "wrong_target");
        // Below the floor, even though above the running version (a rolled-back unit).
        let mut u = unit();
        u.highest = Some(v("1.2.0"));
        let err = manifest().check_for(&u).unwrap_err();
        assert_eq!(err.code(), "downgrade");
        assert!(err.to_string().contains("1.2.0"), "{err}");
        let mut m = manifest();
        m.version = v("1.0.2");
        assert_eq!(m.check_for(&unit()).unwrap_err().code(), "downgrade");
        m.version = v("1.0.3");
        assert_eq!(m.check_for(&unit()).unwrap_err().code(), "already_running");
        let mut u = unit();
        u.running = v("0.9.0");
        assert_eq!(manifest().check_for(&u).unwrap_err().code(), "too_old");
    }

    #[test]
    fn malformed_manifests_name_the_field() {
        let k = SigningKey::from_bytes(&[1; 32]);
        let root = Root::new(1, 10_000, 1, &[&k]);
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|m| m.files[0].name = "../outpost".into()),
                "plain file name",
            ),
            (Box::new(|m| m.files.clear()), "no outpost binary"),
            (
                Box::new(|m| m.files.push(m.files[0].clone())),
                "listed twice",
            ),
            (Box::new(|m| m.artifact.sha256 = "zz".into()), "SHA-256"),
            (Box::new(|m| m.expires = m.published), "expires before"),
        ];
        for (edit, expect) in cases {
            let mut m = manifest();
            edit(&mut m);
            let err = Manifest::open(&m.sign(&[&k]), &root, 1_500).unwrap_err();
            assert!(err.to_string().contains(expect), "{expect}: {err}");
        }
        let mut doc = manifest().sign(&[&k]);
        doc.payload = "!!".into();
        assert_eq!(
            Manifest::open(&doc, &root, 1_500).unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn a_file_of_another_release_is_named_as_such() {
        let m = manifest();
        let err = m.files[0].check(b"old binary", &m.version).unwrap_err();
        assert_eq!(err.code(), "file_mismatch");
        assert!(err.to_string().contains("another release"), "{err}");
        m.files[0].check(b"new binary", &m.version).unwrap();
        let err = m.files[0].check(b"new binary!", &m.version).unwrap_err();
        assert!(err.to_string().contains("bytes where"), "{err}");
    }
}
