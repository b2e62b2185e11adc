//! The releases directory: every installed release in its own versioned directory,
//! and two symlinks, `current` (what starts) and `previous` (what a rollback goes back
//! to), each switched atomically. The installer creates it; the updater stages into
//! it and switches; the service starts `current/outpost`.
//!
//! ```text
//! <root>/releases/<version>/outpost
//! <root>/current  -> releases/<version>
//! <root>/previous -> releases/<version>
//! <root>/update-state.json
//! <root>/snapshots/<version>/      data dir copies taken before a migrating release
//! ```

use std::path::{Path, PathBuf};

use semver::Version;

use crate::error::UpdateError;
use crate::fsx;
use crate::manifest::{BINARY, Manifest};

/// A release's files: (name, bytes).
pub type Files = Vec<(String, Vec<u8>)>;

/// A releases directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root` (not created).
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of release `v`.
    pub fn release_dir(&self, v: &Version) -> PathBuf {
        self.root.join("releases").join(v.to_string())
    }

    /// The binary of release `v`.
    pub fn binary(&self, v: &Version) -> PathBuf {
        self.release_dir(v).join(BINARY)
    }

    /// The update journal's path.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("update-state.json")
    }

    /// Where the data dir is copied before release `v` migrates it.
    pub fn snapshot_dir(&self, v: &Version) -> PathBuf {
        self.root.join("snapshots").join(v.to_string())
    }

    fn link(&self, name: &str) -> Result<Option<Version>, UpdateError> {
        let path = self.root.join(name);
        match std::fs::read_link(&path) {
            Ok(target) => {
                let v = target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| Version::parse(n).ok())
                    .ok_or_else(|| UpdateError::Malformed {
                        what: "releases directory",
                        reason: format!(
                            "{} points at {}, not a release",
                            path.display(),
                            target.display()
                        ),
                    })?;
                Ok(Some(v))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(UpdateError::io("read link", path, e)),
        }
    }

    /// The release `current` names.
    pub fn current(&self) -> Result<Option<Version>, UpdateError> {
        self.link("current")
    }

    /// The release `previous` names.
    pub fn previous(&self) -> Result<Option<Version>, UpdateError> {
        self.link("previous")
    }

    /// The installed releases, oldest first.
    pub fn installed(&self) -> Result<Vec<Version>, UpdateError> {
        let dir = self.root.join("releases");
        let mut out: Vec<Version> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| Version::parse(n).ok()))
                .filter(|v| self.binary(v).is_file())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(UpdateError::io("read", dir, e)),
        };
        out.sort();
        Ok(out)
    }

    /// Installs `binary` as release `v` and makes it current (the installer's first
    /// install; an update uses [`Layout::stage`] and [`Layout::switch_to`]).
    pub fn install_first(&self, v: &Version, binary: &[u8]) -> Result<(), UpdateError> {
        self.write_release(v, &[(BINARY.to_owned(), binary.to_vec())])?;
        fsx::replace_symlink(&self.root.join("current"), &self.rel(v))
    }

    /// Writes the verified files of `manifest` as its release directory, whole or not
    /// at all (a `.partial` directory renamed into place). A release already staged
    /// with the same files is kept.
    pub fn stage(
        &self,
        manifest: &Manifest,
        files: &[(String, Vec<u8>)],
    ) -> Result<PathBuf, UpdateError> {
        for f in &manifest.files {
            let Some((_, bytes)) = files.iter().find(|(n, _)| *n == f.name) else {
                return Err(UpdateError::Malformed {
                    what: "release",
                    reason: format!("file {} missing", f.name),
                });
            };
            f.check(bytes, &manifest.version)?;
        }
        let dir = self.release_dir(&manifest.version);
        if dir.is_dir() {
            let same = manifest.files.iter().all(|f| {
                crate::artifact::read_bounded(&dir.join(&f.name))
                    .is_ok_and(|b| f.check(&b, &manifest.version).is_ok())
            });
            if same {
                return Ok(dir);
            }
            // A damaged copy: replaced below.
            let _ = std::fs::remove_dir_all(&dir);
        }
        self.write_release(&manifest.version, files)?;
        Ok(dir)
    }

    fn write_release(&self, v: &Version, files: &[(String, Vec<u8>)]) -> Result<(), UpdateError> {
        let releases = self.root.join("releases");
        std::fs::create_dir_all(&releases).map_err(|e| UpdateError::io("create", &releases, e))?;
        let partial = releases.join(format!("{v}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir(&partial).map_err(|e| UpdateError::io("create", &partial, e))?;
        for (name, bytes) in files {
            let mode = if name == BINARY { 0o755 } else { 0o644 };
            fsx::write_atomic(&partial.join(name), bytes, mode)?;
        }
        crate::failpoint("partial-written");
        let dir = self.release_dir(v);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&partial, &dir).map_err(|e| UpdateError::io("rename", &dir, e))?;
        fsx::sync_dir(&releases)
    }

    fn rel(&self, v: &Version) -> PathBuf {
        Path::new("releases").join(v.to_string())
    }

    /// Makes `v` current and the release that was current `previous`: `previous`
    /// first, then `current`, each atomic, so a power cut between them leaves the old
    /// release current.
    pub fn switch_to(&self, v: &Version) -> Result<(), UpdateError> {
        if !self.binary(v).is_file() {
            return Err(UpdateError::Malformed {
                what: "releases directory",
                reason: format!("release {v} is not staged"),
            });
        }
        if let Some(cur) = self.current()?
            && cur != *v
        {
            fsx::replace_symlink(&self.root.join("previous"), &self.rel(&cur))?;
        }
        crate::failpoint("between-links");
        fsx::replace_symlink(&self.root.join("current"), &self.rel(v))
    }

    /// Makes `v` current again after release `failed` did not pass its gate; `previous`
    /// is removed (there is nothing older to go back to from here).
    pub fn switch_back(&self, v: &Version) -> Result<(), UpdateError> {
        if !self.binary(v).is_file() {
            return Err(UpdateError::NoPrevious);
        }
        fsx::replace_symlink(&self.root.join("current"), &self.rel(v))?;
        let prev = self.root.join("previous");
        match std::fs::remove_file(&prev) {
            Ok(()) => fsx::sync_dir(&self.root),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(UpdateError::io("remove", prev, e)),
        }
    }

    /// Removes every release but `current`, `previous` and the `keep` newest others.
    pub fn prune(&self, keep: usize) -> Result<Vec<Version>, UpdateError> {
        let (cur, prev) = (self.current()?, self.previous()?);
        let mut others: Vec<Version> = self
            .installed()?
            .into_iter()
            .filter(|v| Some(v) != cur.as_ref() && Some(v) != prev.as_ref())
            .collect();
        let n = others.len().saturating_sub(keep);
        let gone: Vec<Version> = others.drain(..n).collect();
        for v in &gone {
            let dir = self.release_dir(v);
            std::fs::remove_dir_all(&dir).map_err(|e| UpdateError::io("remove", dir, e))?;
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FileEntry;

    fn manifest(v: &Version, bin: &[u8]) -> Manifest {
        Manifest {
            version: v.clone(),
            target: "t".into(),
            min_from: None,
            published: 0,
            expires: 1,
            schema: None,
            files: vec![FileEntry::of(BINARY, bin)],
            artifact: FileEntry::of("a.tar.gz", b""),
            deltas: vec![],
        }
    }

    #[test]
    fn stage_switch_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let (v1, v2) = (Version::new(1, 0, 0), Version::new(1, 1, 0));
        l.install_first(&v1, b"one").unwrap();
        assert_eq!(l.current().unwrap(), Some(v1.clone()));
        assert_eq!(l.previous().unwrap(), None);
        // Staging checks the files against the manifest.
        let err = l
            .stage(&manifest(&v2, b"two"), &[(BINARY.into(), b"tw0".to_vec())])
            .unwrap_err();
        assert_eq!(err.code(), "file_mismatch");
        assert!(!l.release_dir(&v2).exists());
        l.stage(&manifest(&v2, b"two"), &[(BINARY.into(), b"two".to_vec())])
            .unwrap();
        assert_eq!(
            l.current().unwrap(),
            Some(v1.clone()),
            "staging switches nothing"
        );
        l.switch_to(&v2).unwrap();
        assert_eq!(l.current().unwrap(), Some(v2.clone()));
        assert_eq!(l.previous().unwrap(), Some(v1.clone()));
        assert_eq!(
            std::fs::read(dir.path().join("current/outpost")).unwrap(),
            b"two"
        );
        l.switch_back(&v1).unwrap();
        assert_eq!(l.current().unwrap(), Some(v1.clone()));
        assert_eq!(l.previous().unwrap(), None);
        assert_eq!(l.installed().unwrap(), vec![v1.clone(), v2.clone()]);
        assert_eq!(l.prune(0).unwrap(), vec![v2]);
        assert_eq!(
            l.switch_back(&Version::new(9, 9, 9)).unwrap_err().code(),
            "no_previous"
        );
    }
}
