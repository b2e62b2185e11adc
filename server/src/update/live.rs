//! A release applied by the running server (`POST /api/v1/update`): verified and
//! staged against the root and floor of the live data dir, self-tested on a
//! consistent copy of it, switched, and then the server restarts into it (its
//! supervisor starts the new release on probation). Selling goes on until the
//! restart; the restart drains what is in flight, and with a socket the supervisor
//! holds, new checkouts wait in its backlog instead of being refused.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_updater::UpdateError;
use outpost_updater::apply::{self, Via};
use outpost_updater::layout::Layout;
use outpost_updater::manifest::UnitFacts;
use outpost_updater::semver::Version;

use crate::access::Access;
use crate::access::releases::{self, ReleaseTrustError};
use crate::config::Settings;
use crate::store::{Store, StoreError};

/// Why a live update did not switch.
#[derive(Debug, thiserror::Error)]
pub enum LiveUpdateError {
    /// `[updates] releases_dir` is not set: this unit does not update itself.
    #[error("this unit does not update itself: no releases directory ([updates] releases_dir)")]
    NotUpdating,
    /// The server was not started with `outpost serve`, so its self-test cannot be
    /// started with the same settings.
    #[error("a live update needs a server started with `outpost serve`")]
    NotServe,
    /// The release was refused or a step failed.
    #[error(transparent)]
    Update(Box<UpdateError>),
    /// The release root or the floor.
    #[error(transparent)]
    Trust(#[from] ReleaseTrustError),
    /// The data dir could not be copied for the self-test.
    #[error("copy the data dir for the self-test: {0}")]
    Copy(String),
    /// Nothing restarts this server through the guard (neither `outpost-supervisor`
    /// nor systemd), so a rollback asked of it would never run.
    #[error("this server runs without its supervisor: stop it and run `outpost update rollback`")]
    NotSupervised,
}

impl From<UpdateError> for LiveUpdateError {
    fn from(e: UpdateError) -> Self {
        LiveUpdateError::Update(Box::new(e))
    }
}

impl LiveUpdateError {
    /// A stable code for the API and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            LiveUpdateError::NotUpdating => "updates_off",
            LiveUpdateError::NotServe => "not_serve",
            LiveUpdateError::Update(e) => e.code(),
            LiveUpdateError::Trust(e) => e.code(),
            LiveUpdateError::Copy(_) => "copy_failed",
            LiveUpdateError::NotSupervised => "not_supervised",
        }
    }
}

/// What switched.
#[derive(Debug, Clone)]
pub struct Switched {
    /// The release before.
    pub from: Version,
    /// The release switched to.
    pub to: Version,
    /// Where its files came from.
    pub via: Via,
}

/// Verifies, stages, self-tests and switches to the bundle in `bundle`; audits the
/// result either way. Blocking (run it off the async workers).
pub fn apply_bundle(
    store: &Arc<Store>,
    access: &Access,
    settings: &Settings,
    bundle: &Path,
    actor: &str,
) -> Result<Switched, LiveUpdateError> {
    let result = apply_inner(store, settings, bundle);
    match &result {
        Ok(s) => access.audit(
            actor,
            "update.switched",
            &format!(
                "from {} to {}, on probation until its health gate; restarting",
                s.from, s.to
            ),
        ),
        Err(e) => access.audit(
            actor,
            "update.refused",
            &format!("{} [{}]: {e}", bundle.display(), e.code()),
        ),
    }
    result
}

fn apply_inner(
    store: &Arc<Store>,
    settings: &Settings,
    bundle: &Path,
) -> Result<Switched, LiveUpdateError> {
    let dir = settings
        .updates
        .releases_dir
        .as_deref()
        .ok_or(LiveUpdateError::NotUpdating)?;
    let args = self_test_args(std::env::args_os().skip(1))?;
    let layout = Layout::new(dir);
    let (running, running_bin) = apply::running_release(&layout)?;
    let root = releases::trusted_root(store, &settings.updates, Some(bundle), true)?;
    let facts = UnitFacts {
        running: running.clone(),
        highest: releases::floor(store)?,
        target: outpost_updater::target().to_owned(),
        now: outpost_updater::unix_now(),
    };
    let staged = apply::stage(&layout, bundle, &root, &facts, &running_bin)?;
    let v = staged.manifest.version.clone();
    let copy = layout.root().join("tmp").join("self-test-data");
    copy_data_dir(store, &settings.data_dir, &copy)?;
    let mut test_args = args;
    test_args.extend([
        OsString::from("--data-dir"),
        copy.clone().into_os_string(),
        OsString::from("--data-is-copy"),
    ]);
    let tested = apply::self_test(
        &layout.binary(&v),
        &v,
        &test_args,
        Duration::from_secs(settings.updates.self_test_timeout_secs),
    );
    let _ = std::fs::remove_dir_all(&copy);
    tested?;
    apply::switch(
        &layout,
        &staged,
        &running,
        Some(&settings.data_dir),
        outpost_updater::unix_now(),
    )?;
    Ok(Switched {
        from: running,
        to: v,
        via: staged.via,
    })
}

/// Time between an update's answer and the restart it asks for, so the answer (and
/// any record of the switch) is out first.
pub const RESTART_DELAY: Duration = Duration::from_millis(200);

/// Asks the server to restart after [`RESTART_DELAY`] (the supervisor or systemd starts
/// it again, the guard first). Needs a Tokio runtime (actix's is one).
pub fn restart_soon(restart: &Arc<tokio::sync::Notify>) {
    let restart = restart.clone();
    tokio::spawn(async move {
        tokio::time::sleep(RESTART_DELAY).await;
        restart.notify_one();
    });
}

/// Asks for a rollback of the running release to the previous one, which the guard
/// does before the next start (with the server stopped, so a migrating release's data
/// snapshot can be put back); the caller then restarts the server. Audited either way.
/// Returns (from, to).
pub fn request_rollback(
    access: &Access,
    settings: &Settings,
    actor: &str,
) -> Result<(Version, Version), LiveUpdateError> {
    let result = (|| {
        let dir = settings
            .updates
            .releases_dir
            .as_deref()
            .ok_or(LiveUpdateError::NotUpdating)?;
        // The supervisor marks the servers it starts; systemd marks every service
        // (and the unit runs the guard before each start).
        if std::env::var_os(outpost_updater::supervisor::ENV_SUPERVISED).is_none()
            && std::env::var_os("INVOCATION_ID").is_none()
        {
            return Err(LiveUpdateError::NotSupervised);
        }
        Ok(outpost_updater::guard::request_rollback(
            &Layout::new(dir),
            actor,
            outpost_updater::unix_now(),
        )?)
    })();
    match &result {
        Ok((from, to)) => access.audit(
            actor,
            "update.rollback_requested",
            &format!("from {from} to {to}; the guard rolls back before the restart"),
        ),
        Err(e) => access.audit(
            actor,
            "update.rollback_refused",
            &format!("[{}]: {e}", e.code()),
        ),
    }
    result
}

/// The server's own flags (`serve ...`) for `self-test`, without `--data-dir` (the
/// copy's is added).
fn self_test_args(
    mut args: impl Iterator<Item = OsString>,
) -> Result<Vec<OsString>, LiveUpdateError> {
    if args.next().as_deref() != Some(std::ffi::OsStr::new("serve")) {
        return Err(LiveUpdateError::NotServe);
    }
    let mut out = Vec::new();
    while let Some(a) = args.next() {
        if a == "--data-dir" {
            args.next();
            continue;
        }
        if a.to_string_lossy().starts_with("--data-dir=") {
            continue;
        }
        out.push(a);
    }
    Ok(out)
}

/// A copy of the live data dir at `to`: the database tree by tree (each consistent
/// as it is read, while selling goes on), the sealed files beside it; the mesh's
/// content is left out (the self-test runs without the mesh).
fn copy_data_dir(store: &Store, data_dir: &Path, to: &Path) -> Result<(), LiveUpdateError> {
    let fail = |e: String| LiveUpdateError::Copy(e);
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).map_err(|e| fail(format!("{}: {e}", to.display())))?;
    for entry in std::fs::read_dir(data_dir).map_err(|e| fail(e.to_string()))? {
        let entry = entry.map_err(|e| fail(e.to_string()))?;
        let name = entry.file_name();
        if name == "db" || name == "p2p" || name.to_string_lossy().starts_with(".failed-") {
            continue;
        }
        let kind = entry.file_type().map_err(|e| fail(e.to_string()))?;
        let dst: PathBuf = to.join(&name);
        if kind.is_file() {
            std::fs::copy(entry.path(), &dst).map_err(|e| fail(e.to_string()))?;
        } else if kind.is_dir() {
            outpost_updater::fsx::copy_tree(&entry.path(), &dst)
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    store
        .copy_database(&to.join("db"))
        .map_err(|e: StoreError| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_test_gets_the_servers_flags_without_its_data_dir() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let got = self_test_args(
            args(&[
                "serve",
                "--config",
                "/etc/o.toml",
                "--data-dir",
                "/var/d",
                "--listen",
                "1.2.3.4:5",
            ])
            .into_iter(),
        )
        .unwrap();
        assert_eq!(
            got,
            args(&["--config", "/etc/o.toml", "--listen", "1.2.3.4:5"])
        );
        let got = self_test_args(args(&["serve", "--data-dir=/x"]).into_iter()).unwrap();
        assert!(got.is_empty());
        assert!(matches!(
            self_test_args(args(&["demo"]).into_iter()),
            Err(LiveUpdateError::NotServe)
        ));
    }
}
