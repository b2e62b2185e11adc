//! `outpost update status|check|apply|rollback` and `outpost self-test`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use outpost_server::access::releases as trust;
use outpost_server::config::Settings;
use outpost_server::devices::InjectedDevices;
use outpost_server::startup::Application;
use outpost_server::store::StoreOptions;
use outpost_server::update::gate;
use outpost_updater::apply::{self, Via};
use outpost_updater::guard;
use outpost_updater::layout::Layout;
use outpost_updater::manifest::UnitFacts;
use outpost_updater::semver::Version;

use crate::cli::{Common, Releases, UpdateWhat};

/// `outpost update ...`.
pub async fn run(what: UpdateWhat) -> anyhow::Result<()> {
    match what {
        UpdateWhat::Status { releases, common } => status(&releases, &common),
        UpdateWhat::Check {
            bundle,
            releases,
            common,
        } => check(&bundle, &releases, &common),
        UpdateWhat::Apply {
            bundle,
            releases,
            common,
        } => apply_bundle(&bundle, &releases, &common),
        UpdateWhat::Rollback { releases, common } => rollback(&releases, &common),
    }
}

fn layout(releases: &Releases, s: &Settings) -> anyhow::Result<Layout> {
    let dir = releases
        .dir
        .clone()
        .or_else(|| s.updates.releases_dir.clone())
        .context("no releases directory: give --releases DIR or set [updates] releases_dir")?;
    Ok(Layout::new(dir))
}

fn status(releases: &Releases, common: &Common) -> anyhow::Result<()> {
    let s = common.settings()?;
    let l = layout(releases, &s)?;
    // The floor is in the data dir, which a running server holds: not shown here.
    let status = outpost_server::http::updates::update_status(Some(l.root()), None)?;
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(())
}

/// A stopped server's data dir, for the root, the floor and the audit log.
struct Opened {
    store: std::sync::Arc<outpost_server::store::Store>,
    access: std::sync::Arc<outpost_server::access::Access>,
}

fn open(s: &Settings) -> anyhow::Result<Opened> {
    outpost_server::telemetry::init("warn");
    let (store, access) = outpost_server::access::open_data_dir(s, &StoreOptions::of(s))
        .with_context(|| {
            format!(
                "Failed to open the data dir {} (is the server running?)",
                s.data_dir.display()
            )
        })?;
    Ok(Opened { store, access })
}

impl Opened {
    /// The root (rotated through the bundle's root files; with `persist`, a rotated or
    /// first root is kept) and the unit's facts.
    fn facts(
        &self,
        s: &Settings,
        bundle: &Path,
        running: &Version,
        persist: bool,
    ) -> anyhow::Result<(outpost_updater::root::Root, UnitFacts)> {
        let root = trust::trusted_root(&self.store, &s.updates, Some(bundle), persist)?;
        let facts = UnitFacts {
            running: running.clone(),
            highest: trust::floor(&self.store)?,
            target: outpost_updater::target().to_owned(),
            now: outpost_updater::unix_now(),
        };
        Ok((root, facts))
    }

    /// Records a refused update in the audit log, with the refusal's code.
    fn audit_refusal(&self, bundle: &Path, e: &anyhow::Error) {
        let code = e
            .downcast_ref::<outpost_updater::UpdateError>()
            .map(outpost_updater::UpdateError::code)
            .or_else(|| {
                e.downcast_ref::<outpost_server::access::releases::ReleaseTrustError>()
                    .map(outpost_server::access::releases::ReleaseTrustError::code)
            })
            .unwrap_or("failed");
        self.access.audit(
            "cli",
            "update.refused",
            &format!("{} [{code}]: {e:#}", bundle.display()),
        );
    }
}

fn check(bundle: &Path, releases: &Releases, common: &Common) -> anyhow::Result<()> {
    let s = common.settings()?;
    let l = layout(releases, &s)?;
    let (running, _) = apply::running_release(&l)?;
    let unit = open(&s)?;
    let verified = unit
        .facts(&s, bundle, &running, false)
        .and_then(|(root, facts)| Ok((apply::verify(bundle, &root, &facts)?, root)));
    let (m, root) = verified.inspect_err(|e| unit.audit_refusal(bundle, e))?;
    println!(
        "Release {} verified for this unit (running {running}; expires at {} unix time; signed under root {}).",
        m.version, m.expires, root.version
    );
    Ok(())
}

fn apply_bundle(bundle: &Path, releases: &Releases, common: &Common) -> anyhow::Result<()> {
    let s = common.settings()?;
    let l = layout(releases, &s)?;
    let (running, running_bin) = apply::running_release(&l)?;
    let unit = open(&s)?;
    let staged = unit
        .facts(&s, bundle, &running, true)
        .and_then(|(root, facts)| Ok(apply::stage(&l, bundle, &root, &facts, &running_bin)?))
        .inspect_err(|e| unit.audit_refusal(bundle, e))?;
    let v = staged.manifest.version.clone();
    eprintln!(
        "Release {v} verified and staged in {} (from {}).",
        staged.dir.display(),
        match staged.via {
            Via::Delta => "a delta against the running binary",
            Via::Full => "the full archive",
        }
    );
    apply::self_test(
        &l.binary(&v),
        &v,
        &common.to_args(),
        Duration::from_secs(s.updates.self_test_timeout_secs),
    )
    .map_err(anyhow::Error::from)
    .inspect_err(|e| unit.audit_refusal(bundle, e))?;
    eprintln!("Release {v} passed its self-test.");
    outpost_updater::failpoint("after-self-test");
    apply::switch(
        &l,
        &staged,
        &running,
        Some(&s.data_dir),
        outpost_updater::unix_now(),
    )?;
    unit.access.audit(
        "cli",
        "update.switched",
        &format!("from {running} to {v}, on probation until its health gate"),
    );
    println!(
        "Switched to {v}: its next start runs on probation until it passes its health gate; \
         it is rolled back to {running} by itself if it does not."
    );
    Ok(())
}

fn rollback(releases: &Releases, common: &Common) -> anyhow::Result<()> {
    let s = common.settings()?;
    let l = layout(releases, &s)?;
    let back = guard::rollback_by_hand(&l, outpost_updater::unix_now())?;
    println!("Rolled back: {back} is current again; start the server.");
    Ok(())
}

/// `outpost self-test`: this binary on a copy of the data dir (the mesh's content and
/// kept failed data left out), with no devices, no HQ and no mesh, on loopback ports;
/// the gate's report on standard output. With `data_is_copy` the data dir is already a
/// scratch copy and is used as it is.
pub async fn self_test(common: &Common, data_is_copy: bool) -> anyhow::Result<()> {
    let mut s = common.settings()?;
    outpost_server::telemetry::init("warn");
    // Kept until the end: the copy lives in it.
    let mut _scratch = None;
    if !data_is_copy {
        let scratch = tempfile::Builder::new()
            .prefix(".outpost-self-test")
            .tempdir_in(s.data_dir.parent().unwrap_or(Path::new(".")))
            .context("make a scratch dir beside the data dir")?;
        let copy: PathBuf = scratch.path().join("data");
        outpost_updater::fsx::copy_tree_except(&s.data_dir, &copy, |name| {
            name == "p2p" || name.to_string_lossy().starts_with(".failed-")
        })?;
        s.data_dir = copy;
        _scratch = Some(scratch);
    }
    s.listen = ([127, 0, 0, 1], 0).into();
    if s.sync.grpc_listen.is_some() {
        s.sync.grpc_listen = Some(([127, 0, 0, 1], 0).into());
    }
    s.sync.hq_url = None;
    s.p2p.enabled = false;
    s.devices.clear();
    s.payment.terminal = "none".into();
    let app = Application::build(s, InjectedDevices::default())
        .await
        .context("the release could not start on a copy of the data dir")?;
    let targets = crate::serve::gate_targets(&app);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let report = gate::run(&targets, Duration::from_secs(30)).await;
    let _ = stop.send(());
    let _ = server.await;
    println!("{}", serde_json::to_string_pretty(&report)?);
    anyhow::ensure!(report.passed, "health gate failed: {}", report.failures());
    Ok(())
}
