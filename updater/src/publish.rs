//! Building a release bundle, as HQ's release tool (and the mock HQ's
//! `publish-release`) does: the binary stamped with the release's version, the full
//! artifact, deltas from earlier binaries, and the manifest signed by the release keys.

use std::path::Path;

use ed25519_dalek::SigningKey;
use semver::Version;

use crate::apply::MANIFEST_FILE;
use crate::artifact;
use crate::error::UpdateError;
use crate::fsx;
use crate::manifest::{BINARY, Delta, FileEntry, Manifest, sha256_hex};
use crate::signed::SignedDoc;
use crate::stamp;

/// What to publish.
pub struct Release<'a> {
    /// The release's version; the binary is stamped with it.
    pub version: Version,
    /// Target triple.
    pub target: String,
    /// The server binary (any version stamp; rewritten).
    pub binary: Vec<u8>,
    /// Earlier versions' binaries to offer deltas from.
    pub delta_from: Vec<(Version, &'a [u8])>,
    /// The oldest version it installs over.
    pub min_from: Option<Version>,
    /// The store schema it migrates to, if any.
    pub schema: Option<u32>,
    /// Unix seconds now, and the offer's lifetime.
    pub published: i64,
    /// Seconds until it expires.
    pub lifetime_secs: i64,
    /// zstd level of the deltas.
    pub delta_level: i32,
}

/// Writes the bundle into `out` (created): `manifest.json`, the artifact and the
/// patches. Returns the signed manifest.
pub fn publish(
    release: Release<'_>,
    keys: &[&SigningKey],
    out: &Path,
) -> Result<(Manifest, SignedDoc), UpdateError> {
    std::fs::create_dir_all(out).map_err(|e| UpdateError::io("create", out, e))?;
    let mut bin = release.binary;
    stamp::write(&mut bin, &release.version)?;
    let v = &release.version;
    let archive_name = format!("outpost-{v}-{}.tar.gz", release.target);
    let archive = artifact::pack(&[(BINARY, &bin)])?;
    fsx::write_atomic(&out.join(&archive_name), &archive, 0o644)?;
    let mut deltas = Vec::new();
    for (from, old) in &release.delta_from {
        let patch = artifact::make_delta(old, &bin, release.delta_level)?;
        let name = format!("outpost-{from}-to-{v}-{}.zst", release.target);
        fsx::write_atomic(&out.join(&name), &patch, 0o644)?;
        deltas.push(Delta {
            from: from.clone(),
            from_sha256: sha256_hex(old),
            patch: FileEntry::of(&name, &patch),
        });
    }
    let manifest = Manifest {
        version: v.clone(),
        target: release.target,
        min_from: release.min_from,
        published: release.published,
        expires: release.published.saturating_add(release.lifetime_secs),
        schema: release.schema,
        files: vec![FileEntry::of(BINARY, &bin)],
        artifact: FileEntry::of(&archive_name, &archive),
        deltas,
    };
    let doc = manifest.sign(keys);
    fsx::write_atomic(&out.join(MANIFEST_FILE), &doc.to_json(), 0o644)?;
    Ok((manifest, doc))
}
