//! A release as one artifact for the store mesh: a plain tar (its files are compressed
//! already) of part of a release bundle: `manifest.json` and either the delta from the
//! version the store runs or the full archive. HQ picks the part per store
//! ([`pack`]); a unit unpacks it into a bundle directory ([`unpack`]) and applies that
//! as any other bundle, so every file is checked against the signed manifest before
//! anything is staged. The tar itself is trusted for nothing: names are plain, files
//! regular and bounded, and what the manifest does not name is ignored by the apply.

use std::io::{Read, Write};
use std::path::Path;

use semver::Version;

use crate::apply::{MANIFEST_FILE, read_manifest};
use crate::artifact::MAX_FILE_BYTES;
use crate::error::UpdateError;
use crate::manifest::Manifest;

/// Most files a mesh release may carry (the manifest, an archive or a delta, and room
/// for root rotations).
pub const MAX_FILES: usize = 8;
/// Largest manifest (or root) accepted from a mesh release.
const MAX_DOC_BYTES: u64 = 1 << 20;

const WHAT: &str = "mesh release";

/// What a mesh release carries besides the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The delta from this version's binary.
    DeltaFrom(Version),
    /// The full archive.
    Full,
}

/// The files of [`Part`] `part` of the bundle in `dir`: the manifest, the release
/// roots beside it, and the delta or the archive. A delta the manifest does not offer
/// is refused ([`UpdateError::NoDelta`]).
pub fn files_for(dir: &Path, m: &Manifest, part: &Part) -> Result<Vec<String>, UpdateError> {
    let mut names = vec![MANIFEST_FILE.to_owned()];
    let mut roots: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| UpdateError::io("list", dir, e))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("root-") && n.ends_with(".json"))
        .collect();
    roots.sort();
    names.extend(roots);
    match part {
        Part::Full => names.push(m.artifact.name.clone()),
        Part::DeltaFrom(from) => {
            let d =
                m.deltas
                    .iter()
                    .find(|d| &d.from == from)
                    .ok_or_else(|| UpdateError::NoDelta {
                        release: m.version.to_string(),
                        from: from.to_string(),
                    })?;
            names.push(d.patch.name.clone());
        }
    }
    if names.len() > MAX_FILES {
        return Err(UpdateError::Malformed {
            what: WHAT,
            reason: format!("{} files, at most {MAX_FILES}", names.len()),
        });
    }
    Ok(names)
}

/// The manifest of the bundle in `dir`, read without checking its signatures (HQ's
/// side: its own bundle; a unit checks them when it applies).
pub fn manifest_unverified(dir: &Path) -> Result<Manifest, UpdateError> {
    let doc = read_manifest(dir)?;
    let payload = doc.payload_bytes("release manifest")?;
    serde_json::from_slice(&payload).map_err(|e| UpdateError::Malformed {
        what: "release manifest",
        reason: e.to_string(),
    })
}

/// Writes the tar of `part` of the bundle in `dir` to `out`, deterministically (the
/// same part gives the same bytes, so every store offered it shares one address).
pub fn pack(dir: &Path, part: &Part, out: impl Write) -> Result<(), UpdateError> {
    let m = manifest_unverified(dir)?;
    let io = |e| UpdateError::io("pack", dir, e);
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    for name in files_for(dir, &m, part)? {
        let path = dir.join(&name);
        let mut f = std::fs::File::open(&path).map_err(|e| UpdateError::io("open", &path, e))?;
        let len = f
            .metadata()
            .map_err(|e| UpdateError::io("stat", &path, e))?
            .len();
        let mut h = tar::Header::new_gnu();
        h.set_size(len);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, &name, &mut f).map_err(io)?;
    }
    tar.into_inner().map_err(io)?.flush().map_err(io)
}

/// A plain file name: letters, digits, `.`, `_`, `-`, `+`, not starting with a dot.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// Unpacks a mesh release from `from` into the new directory `into` (which must not
/// exist): at most [`MAX_FILES`] regular files with plain names, each bounded, one of
/// them `manifest.json`. Returns the names written. Anything else is refused and
/// nothing is left behind.
pub fn unpack(from: impl Read, into: &Path) -> Result<Vec<String>, UpdateError> {
    std::fs::create_dir(into).map_err(|e| UpdateError::io("create", into, e))?;
    let result = unpack_into(from, into);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(into);
    }
    result
}

fn unpack_into(from: impl Read, into: &Path) -> Result<Vec<String>, UpdateError> {
    let bad = |reason: String| UpdateError::Malformed { what: WHAT, reason };
    let mut archive = tar::Archive::new(from);
    let mut names = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| bad(format!("not a tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| bad(format!("not a tar: {e}")))?;
        let path = entry.path().map_err(|e| bad(format!("entry name: {e}")))?;
        let name = path
            .to_str()
            .filter(|n| plain_name(n))
            .ok_or_else(|| bad(format!("entry {:?} is not a plain file name", path)))?
            .to_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!("entry {name} is not a regular file")));
        }
        if names.contains(&name) {
            return Err(bad(format!("entry {name} appears twice")));
        }
        if names.len() == MAX_FILES {
            return Err(bad(format!("more than {MAX_FILES} files")));
        }
        let limit = if name.ends_with(".json") {
            MAX_DOC_BYTES
        } else {
            MAX_FILE_BYTES
        };
        let size = entry.header().size().map_err(|e| bad(e.to_string()))?;
        if size > limit {
            return Err(bad(format!("{name} is {size} bytes, over {limit}")));
        }
        let path = into.join(&name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| UpdateError::io("create", &path, e))?;
        let copied = std::io::copy(&mut (&mut entry).take(limit + 1), &mut out)
            .map_err(|e| UpdateError::io("write", &path, e))?;
        if copied != size {
            return Err(bad(format!(
                "{name} holds {copied} bytes, its header says {size}"
            )));
        }
        out.sync_all()
            .map_err(|e| UpdateError::io("sync", &path, e))?;
        names.push(name);
    }
    if !names.iter().any(|n| n == MANIFEST_FILE) {
        return Err(bad(format!("no {MANIFEST_FILE}")));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::{Release, publish};
    use ed25519_dalek::SigningKey;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn bundle(dir: &Path) -> Manifest {
        let key = SigningKey::from_bytes(&[7; 32]);
        let old = b"old binary ".repeat(1000);
        let mut new = b"new binary ".repeat(1000);
        new.extend_from_slice(&crate::stamp::slot_for(&v("1.0.0")));
        let (m, _) = publish(
            Release {
                version: v("1.1.0"),
                target: crate::target().into(),
                binary: new,
                delta_from: vec![(v("1.0.0"), &old)],
                min_from: None,
                schema: None,
                published: crate::unix_now(),
                lifetime_secs: 3600,
                delta_level: 3,
            },
            &[&key],
            dir,
        )
        .unwrap();
        m
    }

    fn tar_of(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data, kind) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            // Written raw: the builder's own path checks would stop the bad names.
            let raw = name.as_bytes();
            h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_delta_part_carries_the_manifest_and_that_delta_only_and_unpacks_as_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let m = bundle(&dir.path().join("b"));
        let mut full = Vec::new();
        pack(&dir.path().join("b"), &Part::Full, &mut full).unwrap();
        let mut delta = Vec::new();
        pack(
            &dir.path().join("b"),
            &Part::DeltaFrom(v("1.0.0")),
            &mut delta,
        )
        .unwrap();
        let mut again = Vec::new();
        pack(
            &dir.path().join("b"),
            &Part::DeltaFrom(v("1.0.0")),
            &mut again,
        )
        .unwrap();
        assert_eq!(delta, again, "the same part packs to the same bytes");

        let out = dir.path().join("delta");
        let names = unpack(delta.as_slice(), &out).unwrap();
        assert_eq!(
            names,
            vec![MANIFEST_FILE.to_owned(), m.deltas[0].patch.name.clone()]
        );
        assert_eq!(manifest_unverified(&out).unwrap(), m);
        let out = dir.path().join("full");
        let names = unpack(full.as_slice(), &out).unwrap();
        assert_eq!(
            names,
            vec![MANIFEST_FILE.to_owned(), m.artifact.name.clone()]
        );

        let e = pack(
            &dir.path().join("b"),
            &Part::DeltaFrom(v("0.9.0")),
            Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "no_delta");
    }

    #[test]
    fn a_tar_with_paths_links_duplicates_or_no_manifest_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "path",
                tar_of(&[("../evil", b"x", tar::EntryType::Regular)]),
            ),
            (
                "dir",
                tar_of(&[("sub/manifest.json", b"{}", tar::EntryType::Regular)]),
            ),
            (
                "hidden",
                tar_of(&[(".manifest.json", b"{}", tar::EntryType::Regular)]),
            ),
            (
                "link",
                tar_of(&[
                    (MANIFEST_FILE, b"{}", tar::EntryType::Regular),
                    ("outpost", b"", tar::EntryType::Symlink),
                ]),
            ),
            (
                "twice",
                tar_of(&[
                    (MANIFEST_FILE, b"{}", tar::EntryType::Regular),
                    (MANIFEST_FILE, b"{}", tar::EntryType::Regular),
                ]),
            ),
            (
                "no manifest",
                tar_of(&[("outpost.zst", b"x", tar::EntryType::Regular)]),
            ),
            ("not a tar", b"this is not a tar archive at all".repeat(20)),
        ];
        for (what, bytes) in cases {
            let out = dir.path().join(what.replace(' ', "-"));
            let e = unpack(bytes.as_slice(), &out).unwrap_err();
            assert_eq!(e.code(), "malformed", "{what}: {e}");
            assert!(!out.exists(), "{what}: left {}", out.display());
            assert!(!dir.path().join("evil").exists());
        }
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_FILES)
            .map(|i| (format!("f{i}"), vec![1u8]))
            .collect();
        let entries: Vec<(&str, &[u8], tar::EntryType)> = many
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice(), tar::EntryType::Regular))
            .collect();
        let e = unpack(tar_of(&entries).as_slice(), &dir.path().join("many")).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }
}
