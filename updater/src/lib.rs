//! `outpost-updater`: how an Outpost unit takes a new release without losing a sale
//! and gives it back by itself when it fails.
//!
//! # Layout
//! - [`signed`]: signed documents (payload, type, Ed25519 signatures).
//! - [`root`]: the release root (k-of-n keys, expiry, rotation).
//! - [`manifest`]: the release manifest and its checks against a unit.
//! - [`stamp`]: the version slot in the binary.
//! - [`artifact`]: the full archive and binary deltas.
//! - [`layout`]: the releases directory and its atomic switch.
//! - [`state`]: the update journal.
//! - [`apply`]: verify, stage, self-test, switch.
//! - [`guard`]: before every start: probation, crash loops, rollback.
//! - [`supervisor`]: the process that starts the server and restarts it.
//! - [`fsx`]: durable file steps (atomic write, symlink switch, tree copy).
//! - [`publish`]: building a signed release bundle (HQ's side).
//! - [`bundle`]: part of a bundle as one artifact for the store mesh.
//!
//! Dependencies point down the list: `signed` ← `root` ← `manifest` ← `artifact`,
//! `layout` ← `state` ← `apply`, `guard` ← `supervisor`. See `docs/updates.md`.

pub mod apply;
pub mod artifact;
pub mod bundle;
pub mod error;
pub mod fsx;
pub mod guard;
pub mod layout;
pub mod manifest;
pub mod publish;
pub mod root;
pub mod signed;
pub mod stamp;
pub mod state;
pub mod supervisor;

pub use error::UpdateError;
pub use semver;

/// This build's target triple (what a manifest's `target` must say).
pub fn target() -> &'static str {
    self_update::get_target()
}

/// Unix seconds now, by the wall clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The environment variable that names a step at which an update stops dead
/// (`std::process::abort`, as a power cut or SIGKILL would): the crash tests use it to
/// prove every step leaves a unit that starts on the old or the new release.
pub const FAILPOINT_ENV: &str = "OUTPOST_UPDATE_FAILPOINT";

/// Aborts the process here when [`FAILPOINT_ENV`] names `step`.
pub fn failpoint(step: &str) {
    if std::env::var_os(FAILPOINT_ENV).is_some_and(|v| v == step) {
        eprintln!("failpoint {step}: stopping dead");
        std::process::abort();
    }
}
