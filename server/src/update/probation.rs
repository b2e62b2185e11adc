//! After every start: the health gate, and what it means. A release on probation
//! (switched to by an update, `update-state.json` says so) that passes finishes its
//! update and raises the anti-rollback floor; one that fails marks the update failed
//! and stops, and the guard puts the previous release back at the next start. A
//! release not on probation only logs a failed gate: stopping a store that was
//! selling helps nobody.

use std::path::Path;
use std::time::Duration;

use outpost_updater::layout::Layout;
use outpost_updater::state::UpdateState;
use outpost_updater::{guard, stamp};

use super::gate::{self, GateReport, GateTargets};
use crate::access::releases as trust;
use crate::store::Store;
use crate::store::outbox::events::{EventBody, enqueue};

/// How long the gate may take after a start (the server is already serving).
pub const GATE_WITHIN: Duration = Duration::from_secs(60);

/// How the start went.
#[derive(Debug)]
pub enum Settled {
    /// The gate passed (and an update on probation is done).
    Passed(GateReport),
    /// The gate failed on a release not on probation: it keeps serving.
    Degraded(GateReport),
    /// The gate failed on a release on probation: it must stop.
    Failed(GateReport),
}

/// Puts the journal's last update result in the outbox for HQ (an `update` alert
/// whose state is the result) once, and marks it reported. `cap` is the alerts'
/// outbox cap; `None` when there is no HQ to tell (the result waits for one).
pub async fn report_last(store: &Store, releases: &Path, cap: Option<u64>) {
    let Some(cap) = cap else { return };
    let path = Layout::new(releases).state_path();
    let Ok(mut state) = UpdateState::load(&path) else {
        return;
    };
    let Some(last) = state.last.as_mut().filter(|l| !l.reported) else {
        return;
    };
    let body = EventBody::Alert {
        alert: "update".into(),
        state: last.result.as_str().to_owned(),
        subject: Some(format!("{} -> {}", last.from, last.version)),
        message: last.reason.clone(),
    };
    match enqueue(store, body, cap).await {
        Ok(_) => {
            last.reported = true;
            if let Err(e) = state.save(&path) {
                tracing::warn!(error = %e, "Failed to mark the update result reported");
            }
        }
        Err(e) => tracing::warn!(error = %e, "Failed to queue the update result for HQ"),
    }
}

/// Runs the gate and settles an update on probation in `releases`.
pub async fn settle(t: &GateTargets, store: &Store, releases: Option<&Path>) -> Settled {
    let report = gate::run(t, GATE_WITHIN).await;
    let running = stamp::running_version();
    let layout = releases.map(Layout::new);
    let on_probation = layout.as_ref().is_some_and(|l| {
        UpdateState::load(&l.state_path())
            .ok()
            .and_then(|s| s.pending)
            .is_some_and(|p| p.to == running)
    });
    if report.passed {
        if let Err(e) = trust::raise_floor(store, &running) {
            tracing::error!(error = %e, "Failed to keep the anti-rollback floor");
        }
        if let (true, Some(l)) = (on_probation, &layout) {
            match guard::gate_passed(l, &running, outpost_updater::unix_now()) {
                Ok(_) => {
                    tracing::info!(
                        release = %running,
                        "The release passed its health gate: the update is done."
                    );
                    // Current, previous and one older release stay.
                    match l.prune(1) {
                        Ok(gone) if !gone.is_empty() => {
                            tracing::info!(removed = ?gone, "Old releases removed")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "Failed to remove old releases"),
                    }
                }
                Err(e) => tracing::error!(error = %e, "Failed to record the passed health gate"),
            }
        }
        return Settled::Passed(report);
    }
    let why = report.failures();
    match (on_probation, &layout) {
        (true, Some(l)) => {
            tracing::error!(release = %running, failures = %why, "The release failed its health gate; stopping so the previous release comes back.");
            if let Err(e) = guard::gate_failed(l, &running, &why) {
                tracing::error!(error = %e, "Failed to record the failed health gate");
            }
            Settled::Failed(report)
        }
        _ => {
            tracing::warn!(failures = %why, "The health gate failed; serving on.");
            Settled::Degraded(report)
        }
    }
}
