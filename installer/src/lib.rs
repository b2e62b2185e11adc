//! `outpost-installer`: puts Outpost on a store machine and takes it off again, with
//! the binary `outpost-install`. Every step is idempotent and writes files whole
//! (temporary file, fsync, rename), so a second run changes nothing and a run cut
//! short at any point is finished by the next one. Everything can go under a
//! `--root DIR` for staging an image and for tests. See `docs/install.md`.
//!
//! # Layout
//! - [`paths`]: where things go on the machine, and [`paths::Root`] which maps them
//!   under `--root`.
//! - [`fsio`]: a directory or file made to be as asked (content, owner, mode),
//!   reporting whether anything had to change.
//! - [`users`]: the `outpost` system user and group (a sysusers.d snippet applied
//!   by `systemd-sysusers`; removal from the account files).
//! - [`config`]: `outpost.toml` from the flags' template or a given file, and the
//!   facts the units need from it (REST address, low ports, serial ports, start
//!   policy).
//! - [`unit`]: `outpost.service` and `outpost.socket`, generated from those facts.
//! - [`erase`]: the crypto-erase of `uninstall --purge` (the TPM's anchor, then the
//!   key files), before the data dir goes.
//! - [`install`] and [`uninstall`]: the steps, in order, with the dry-run plan and
//!   progress.
//!
//! Dependencies point up the list: `install` uses all the others; `unit` uses only
//! `config`'s facts.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
pub mod erase;
pub mod error;
pub mod fsio;
pub mod install;
pub mod paths;
pub mod uninstall;
pub mod unit;
pub mod users;

pub use error::InstallError;

/// The environment variable that names a step after which `install` or `uninstall`
/// stops dead (`std::process::abort`, as a power cut would): the tests use it to prove
/// that the next run finishes a cut-short one.
pub const FAIL_AFTER_ENV: &str = "OUTPOST_INSTALL_FAIL_AFTER";

/// Aborts the process here when [`FAIL_AFTER_ENV`] names `step`.
pub(crate) fn fail_after(step: &str) {
    if std::env::var_os(FAIL_AFTER_ENV).is_some_and(|v| v == step) {
        eprintln!("{FAIL_AFTER_ENV}={step}: stopping dead");
        std::process::abort();
    }
}
