//! Installing a release on this unit, up to the switch: the manifest verified
//! against the unit's root and facts, the files obtained from a delta against the
//! running binary when the release offers one (else from the full artifact), each
//! checked, the binary's own version slot checked, the release staged beside the
//! running one, its self-test run, and then the journal written and `current`
//! switched. What follows the switch (the restart, the gate, a rollback) is the
//! guard's and the new release's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use semver::Version;

use crate::artifact;
use crate::error::UpdateError;
use crate::layout::{Files, Layout};
use crate::manifest::{BINARY, Manifest, UnitFacts, sha256_hex};
use crate::root::Root;
use crate::signed::SignedDoc;
use crate::stamp;
use crate::state::{Pending, UpdateState};

/// The manifest's file name in a release bundle directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// How the release's files were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A delta against the running binary.
    Delta,
    /// The full artifact.
    Full,
}

/// A release verified and staged, not yet switched.
#[derive(Debug)]
pub struct Staged {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its directory.
    pub dir: PathBuf,
    /// Where its files came from.
    pub via: Via,
}

/// The release that runs here and its binary's bytes (the base of a delta): `current`'s,
/// or, in no releases directory yet, this process's own.
pub fn running_release(layout: &Layout) -> Result<(Version, Vec<u8>), UpdateError> {
    if let Some(v) = layout.current()? {
        let bin = layout.binary(&v);
        let bytes = std::fs::read(&bin).map_err(|e| UpdateError::io("read", &bin, e))?;
        return Ok((v, bytes));
    }
    let exe = std::env::current_exe().map_err(|e| UpdateError::io("find", "this binary", e))?;
    let bytes = std::fs::read(&exe).map_err(|e| UpdateError::io("read", &exe, e))?;
    Ok((stamp::running_version(), bytes))
}

/// The signed manifest of the bundle in `dir`.
pub fn read_manifest(dir: &Path) -> Result<SignedDoc, UpdateError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| UpdateError::io("read", &path, e))?;
    SignedDoc::from_json(&bytes, "release manifest")
}

/// Verifies the release bundle in `dir` for this unit: signature, expiry, target,
/// downgrade, base version. Nothing is written.
pub fn verify(dir: &Path, root: &Root, unit: &UnitFacts) -> Result<Manifest, UpdateError> {
    let m = Manifest::open(&read_manifest(dir)?, root, unit.now)?;
    m.check_for(unit)?;
    Ok(m)
}

/// The release's files from the bundle in `dir`, each checked against `m`; through a
/// delta against `running` (the running binary's bytes) when the bundle has one that
/// applies, else through the full artifact (unpacked under `scratch`).
pub fn files(
    dir: &Path,
    m: &Manifest,
    running: (&Version, &[u8]),
    scratch: &Path,
) -> Result<(Files, Via), UpdateError> {
    let base_hash = sha256_hex(running.1);
    if m.files.len() == 1
        && let Some(d) = m.delta_from(running.0, &base_hash)
        && dir.join(&d.patch.name).is_file()
    {
        let patch = artifact::read_bounded(&dir.join(&d.patch.name))?;
        d.patch.check(&patch, &m.version)?;
        let bin = artifact::apply_delta(running.1, &patch, &m.version)?;
        let entry = m.file(BINARY).ok_or_else(|| UpdateError::Malformed {
            what: "release manifest",
            reason: "no binary".into(),
        })?;
        entry.check(&bin, &m.version)?;
        check_stamp(m, &bin)?;
        return Ok((vec![(BINARY.to_owned(), bin)], Via::Delta));
    }
    if !dir.join(&m.artifact.name).is_file() {
        return Err(UpdateError::NoDelta {
            release: m.version.to_string(),
            from: running.0.to_string(),
        });
    }
    let out = scratch.join(format!("unpack-{}", m.version));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| UpdateError::io("create", &out, e))?;
    artifact::unpack(&dir.join(&m.artifact.name), m, &out)?;
    let mut files = Vec::with_capacity(m.files.len());
    for f in &m.files {
        files.push((f.name.clone(), artifact::read_bounded(&out.join(&f.name))?));
    }
    let _ = std::fs::remove_dir_all(&out);
    if let Some((_, bin)) = files.iter().find(|(n, _)| n == BINARY) {
        check_stamp(m, bin)?;
    }
    Ok((files, Via::Full))
}

fn check_stamp(m: &Manifest, bin: &[u8]) -> Result<(), UpdateError> {
    let stamped = stamp::read(bin).map_err(|e| UpdateError::StampMismatch {
        release: m.version.to_string(),
        stamped: e.to_string(),
    })?;
    if stamped != m.version {
        return Err(UpdateError::StampMismatch {
            release: m.version.to_string(),
            stamped: stamped.to_string(),
        });
    }
    Ok(())
}

/// Verifies and stages the bundle in `dir` (see [`verify`], [`files`]).
pub fn stage(
    layout: &Layout,
    dir: &Path,
    root: &Root,
    unit: &UnitFacts,
    running_binary: &[u8],
) -> Result<Staged, UpdateError> {
    let state = UpdateState::load(&layout.state_path())?;
    if let Some(p) = state.pending {
        return Err(UpdateError::Busy(p.to.to_string()));
    }
    let manifest = verify(dir, root, unit)?;
    let scratch = layout.root().join("tmp");
    let (files, via) = files(dir, &manifest, (&unit.running, running_binary), &scratch)?;
    crate::failpoint("before-stage");
    let staged = layout.stage(&manifest, &files)?;
    crate::failpoint("after-stage");
    Ok(Staged {
        manifest,
        dir: staged,
        via,
    })
}

/// Runs `binary self-test ARGS` with a bound on its time; refuses the release unless
/// it exits 0.
pub fn self_test(
    binary: &Path,
    release: &Version,
    args: &[OsString],
    limit: Duration,
) -> Result<(), UpdateError> {
    let fail = |reason: String| UpdateError::SelfTest {
        release: release.to_string(),
        reason,
    };
    let mut child = std::process::Command::new(binary)
        .arg("self-test")
        .args(args)
        // The REST socket a supervisor handed over is the server's, not the test's.
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        // Nor is systemd's notify socket: a self-test must not say READY for it.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start {}: {e}", binary.display())))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer within {} s", limit.as_secs())));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = (&mut e).take(4096).read_to_string(&mut err);
    }
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(fail(format!("{status}: {last}")))
}

/// Records the switch in the journal, then switches `current` to the staged release.
/// `data_dir` is snapshotted by the guard before the first start when the release
/// migrates the store.
pub fn switch(
    layout: &Layout,
    staged: &Staged,
    from: &Version,
    data_dir: Option<&Path>,
    now: i64,
) -> Result<(), UpdateError> {
    let path = layout.state_path();
    let mut state = UpdateState::load(&path)?;
    state.pending = Some(Pending {
        from: from.clone(),
        to: staged.manifest.version.clone(),
        switched_at: now,
        starts: 0,
        gate_failed: None,
        data_dir: staged.manifest.schema.and(data_dir).map(Path::to_path_buf),
        snapshot_taken: false,
    });
    state.save(&path)?;
    crate::failpoint("after-journal");
    layout.switch_to(&staged.manifest.version)?;
    crate::failpoint("after-switch");
    Ok(())
}
