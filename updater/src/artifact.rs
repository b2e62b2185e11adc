//! Release artifacts on the wire: the full release as a deterministic tar.gz (the
//! stripped binary compresses about 2.5×), and binary deltas, zstd with the old binary
//! as its reference prefix and long-distance matching (zstd's "patch-from" mode), so a
//! point release costs a fraction of the full artifact. Unpacking uses `self_update`'s
//! extractor; every extracted file is checked against the manifest before it is used.

use std::io::{Read as _, Write as _};
use std::path::Path;

use semver::Version;

use crate::error::UpdateError;
use crate::manifest::{BINARY, Manifest};

/// The largest file a release may hold (a guard against a decompression bomb).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// A tar.gz of `files` (name, bytes), in the given order, with fixed metadata (mtime
/// 0, uid 0, mode 0755 for the binary and 0644 otherwise), so the same files give the
/// same bytes.
pub fn pack(files: &[(&str, &[u8])]) -> Result<Vec<u8>, UpdateError> {
    let io = |e| UpdateError::io("pack", "release archive", e);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(if *name == BINARY { 0o755 } else { 0o644 });
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, *bytes).map_err(io)?;
    }
    tar.into_inner().map_err(io)?.finish().map_err(io)
}

/// Extracts every file of `manifest` from the archive at `archive` into `into`, after
/// checking the archive's own hash, and checks each extracted file.
pub fn unpack(archive: &Path, manifest: &Manifest, into: &Path) -> Result<(), UpdateError> {
    let bytes = read_bounded(archive)?;
    manifest.artifact.check(&bytes, &manifest.version)?;
    drop(bytes);
    for f in &manifest.files {
        self_update::Extract::from_source(archive)
            .archive(self_update::ArchiveKind::Tar(Some(
                self_update::Compression::Gz,
            )))
            .extract_file(into, &f.name)
            .map_err(|e| UpdateError::Malformed {
                what: "release archive",
                reason: format!("cannot extract {}: {e}", f.name),
            })?;
        let got = read_bounded(&into.join(&f.name))?;
        f.check(&got, &manifest.version)?;
    }
    Ok(())
}

/// Reads a file of at most [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, UpdateError> {
    let file = std::fs::File::open(path).map_err(|e| UpdateError::io("open", path, e))?;
    let mut out = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| UpdateError::io("read", path, e))?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(UpdateError::Malformed {
            what: "release file",
            reason: format!("{} is over {MAX_FILE_BYTES} bytes", path.display()),
        });
    }
    Ok(out)
}

/// zstd's window for a patch between files of these sizes: it must cover the old
/// file (the prefix) and the new one.
fn window_log(old: usize, new: usize) -> u32 {
    let span = (old.max(new) as u64).max(1 << 20).saturating_mul(2);
    (64 - span.leading_zeros()).clamp(20, 31)
}

/// A patch that turns `old` into `new` (zstd level `level`, 1..=19).
pub fn make_delta(old: &[u8], new: &[u8], level: i32) -> Result<Vec<u8>, UpdateError> {
    let io = |e| UpdateError::io("make delta", "patch", e);
    let wlog = window_log(old.len(), new.len());
    let mut enc =
        zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), level, old).map_err(io)?;
    enc.long_distance_matching(true).map_err(io)?;
    enc.window_log(wlog).map_err(io)?;
    enc.set_pledged_src_size(Some(new.len() as u64))
        .map_err(io)?;
    enc.include_contentsize(true).map_err(io)?;
    enc.write_all(new).map_err(io)?;
    enc.finish().map_err(io)
}

/// `old` patched by `patch`, at most [`MAX_FILE_BYTES`]; the caller checks the result
/// against the manifest.
pub fn apply_delta(old: &[u8], patch: &[u8], release: &Version) -> Result<Vec<u8>, UpdateError> {
    let bad = |e: std::io::Error| UpdateError::Malformed {
        what: "release delta",
        reason: format!("does not apply to the running binary of release {release}'s base: {e}"),
    };
    let mut dec = zstd::stream::read::Decoder::with_ref_prefix(patch, old).map_err(bad)?;
    dec.window_log_max(31).map_err(bad)?;
    let mut out = Vec::new();
    (&mut dec)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(bad)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(bad(std::io::Error::other(
            "the result is over the size bound",
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FileEntry;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_delta_of_a_small_change_is_small_and_rebuilds_the_new_file_exactly() {
        let old = pseudo_random(4 << 20, 1);
        let mut new = old.clone();
        new[1000..1100].copy_from_slice(&pseudo_random(100, 2));
        new.splice(2_000_000..2_000_000, pseudo_random(5_000, 3));
        let patch = make_delta(&old, &new, 3).unwrap();
        assert!(patch.len() < 20_000, "patch of {} bytes", patch.len());
        let v = Version::new(1, 0, 0);
        assert_eq!(apply_delta(&old, &patch, &v).unwrap(), new);
        // Against another base it does not give the new file.
        let other = pseudo_random(4 << 20, 9);
        match apply_delta(&other, &patch, &v) {
            Ok(out) => assert_ne!(out, new),
            Err(e) => assert_eq!(e.code(), "malformed"),
        }
        assert!(apply_delta(&old, b"not zstd", &v).is_err());
    }

    #[test]
    fn pack_is_deterministic_and_unpack_checks_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 2] = [(BINARY, b"#!/bin/sh\nexit 0\n"), ("NOTICE", b"hi")];
        let a = pack(&files).unwrap();
        assert_eq!(a, pack(&files).unwrap());
        let path = dir.path().join("outpost-1.0.0.tar.gz");
        std::fs::write(&path, &a).unwrap();
        let manifest = Manifest {
            version: Version::new(1, 0, 0),
            target: "t".into(),
            min_from: None,
            published: 0,
            expires: 1,
            schema: None,
            files: files.iter().map(|(n, b)| FileEntry::of(n, b)).collect(),
            artifact: FileEntry::of("outpost-1.0.0.tar.gz", &a),
            deltas: vec![],
        };
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        unpack(&path, &manifest, &out).unwrap();
        assert_eq!(std::fs::read(out.join(BINARY)).unwrap(), files[0].1);
        // An archive with another binary inside, and the manifest's archive hash
        // updated to match: the file's own hash catches it.
        let swapped = pack(&[(BINARY, b"#!/bin/sh\nexit 1\n"), ("NOTICE", b"hi")]).unwrap();
        std::fs::write(&path, &swapped).unwrap();
        let mut m2 = manifest.clone();
        m2.artifact = FileEntry::of("outpost-1.0.0.tar.gz", &swapped);
        let err = unpack(&path, &m2, &out).unwrap_err();
        assert_eq!(err.code(), "file_mismatch", "{err}");
        // And the original manifest refuses the swapped archive before extracting.
        let err = unpack(&path, &manifest, &out).unwrap_err();
        assert!(err.to_string().contains("outpost-1.0.0.tar.gz"), "{err}");
    }
}
