//! The start guard: run before every start of the server (by the supervisor, or by
//! systemd's `ExecStartPre`), never by the release on probation itself, so a release
//! that crashes before it can say anything is still rolled back. It counts the
//! probation release's starts, snapshots the data dir before a migrating release's
//! first start, and puts the previous release and its data back when the release
//! failed its gate, crashed too often, or never passed its gate in time.

use std::path::Path;
use std::time::Duration;

use semver::Version;

use crate::error::UpdateError;
use crate::fsx;
use crate::layout::Layout;
use crate::state::{Outcome, Pending, Result as Ended, RollbackRequest, UpdateState};

/// When a release on probation has failed.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Starts without passing the gate before a rollback (a crash loop).
    pub max_starts: u32,
    /// Time from the switch to a passed gate before a rollback.
    pub gate_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_starts: 3,
            gate_timeout: Duration::from_secs(300),
        }
    }
}

/// What the guard decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start `current` (no update on probation).
    Start(Version),
    /// Start `to`, on probation (this is start number `start`).
    Probation {
        /// The release on probation.
        to: Version,
        /// Its start count, this one included.
        start: u32,
    },
    /// The release failed; `back` is current again and starts.
    RolledBack {
        /// The release that failed.
        failed: Version,
        /// The release running again.
        back: Version,
        /// Why.
        reason: String,
    },
}

/// Decides what starts now (`now` in unix seconds), doing the rollback or the snapshot
/// it needs first.
pub fn before_start(layout: &Layout, policy: &Policy, now: i64) -> Result<Decision, UpdateError> {
    let path = layout.state_path();
    let mut state = UpdateState::load(&path)?;
    let current = layout.current()?.ok_or_else(|| UpdateError::Malformed {
        what: "releases directory",
        reason: format!("{} has no current release", layout.root().display()),
    })?;
    if let Some(req) = state.rollback_requested.clone() {
        return requested_rollback(layout, &mut state, req, current, now);
    }
    let Some(mut p) = state.pending.clone() else {
        return Ok(Decision::Start(current));
    };
    if current != p.to {
        if current == p.from && p.starts > 0 {
            // A rollback stopped after its switch back: finish recording it.
            let reason = format!(
                "release {} was being rolled back when the unit stopped; the rollback is finished",
                p.to
            );
            rollback(
                layout,
                &mut state,
                &p,
                reason.clone(),
                Ended::RolledBack,
                now,
            )?;
            return Ok(Decision::RolledBack {
                failed: p.to,
                back: p.from,
                reason,
            });
        }
        // A power cut between the journal and the switch: the switch never happened.
        state.pending = None;
        state.save(&path)?;
        return Ok(Decision::Start(current));
    }
    let reason = if let Some(why) = &p.gate_failed {
        Some(format!("release {} failed its health gate: {why}", p.to))
    } else if p.starts >= policy.max_starts {
        Some(format!(
            "release {} started {} times without passing its health gate (a crash loop)",
            p.to, p.starts
        ))
    } else if p.starts > 0 && now - p.switched_at > policy.gate_timeout.as_secs() as i64 {
        Some(format!(
            "release {} did not pass its health gate within {} s",
            p.to,
            policy.gate_timeout.as_secs()
        ))
    } else {
        None
    };
    if let Some(reason) = reason {
        rollback(
            layout,
            &mut state,
            &p,
            reason.clone(),
            Ended::RolledBack,
            now,
        )?;
        return Ok(Decision::RolledBack {
            failed: p.to,
            back: p.from,
            reason,
        });
    }
    if let Some(data) = &p.data_dir
        && !p.snapshot_taken
    {
        take_snapshot(layout, &p.to, data)?;
        p.snapshot_taken = true;
    }
    p.starts += 1;
    let start = p.starts;
    state.pending = Some(p);
    state.save(&path)?;
    Ok(Decision::Probation { to: current, start })
}

fn take_snapshot(layout: &Layout, to: &Version, data: &Path) -> Result<(), UpdateError> {
    let snap = layout.snapshot_dir(to);
    let partial = snap.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    fsx::copy_tree_except(data, &partial, is_failed_copy)?;
    let _ = std::fs::remove_dir_all(&snap);
    std::fs::rename(&partial, &snap).map_err(|e| UpdateError::io("rename", &snap, e))?;
    fsx::sync_dir(snap.parent().unwrap_or(layout.root()))
}

/// The data a failed release left, kept inside the data dir for the technician and
/// HQ to look at (`.failed-<version>-<switch time>`).
fn is_failed_copy(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with(".failed-")
}

/// Puts the snapshot back into `data` in place: the data dir itself is neither
/// renamed nor replaced (the service may write only inside it, and the snapshot may be
/// on another mount), its entries move into `data/.failed-<to>-<switched_at>` (one per
/// attempt, so a later failure of the same release keeps its own), and the snapshot's
/// are copied in. A stop half-way is finished by the next rollback of the same attempt:
/// the snapshot stays until the copy is complete.
fn restore_snapshot(
    layout: &Layout,
    to: &Version,
    switched_at: i64,
    data: &Path,
) -> Result<(), UpdateError> {
    let snap = layout.snapshot_dir(to);
    if !snap.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(data).map_err(|e| UpdateError::io("create", data, e))?;
    let failed = data.join(format!(".failed-{to}-{switched_at}"));
    std::fs::create_dir_all(&failed).map_err(|e| UpdateError::io("create", &failed, e))?;
    let entries = std::fs::read_dir(data).map_err(|e| UpdateError::io("read", data, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| UpdateError::io("read", data, e))?;
        if is_failed_copy(&entry.file_name()) {
            continue;
        }
        let dst = failed.join(entry.file_name());
        if dst.exists() {
            // A previous, interrupted restore already kept this one: the entry in the
            // data dir is a partial copy of the snapshot.
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| UpdateError::io("remove", &path, e))?;
        } else {
            std::fs::rename(entry.path(), &dst).map_err(|e| UpdateError::io("rename", &dst, e))?;
        }
    }
    fsx::copy_tree_except(&snap, data, |_| false)?;
    std::fs::remove_dir_all(&snap).map_err(|e| UpdateError::io("remove", &snap, e))?;
    fsx::sync_dir(data)
}

fn rollback(
    layout: &Layout,
    state: &mut UpdateState,
    p: &Pending,
    reason: String,
    how: Ended,
    now: i64,
) -> Result<(), UpdateError> {
    tracing::warn!(failed = %p.to, back = %p.from, %reason, "Rolling back the update.");
    if p.snapshot_taken
        && let Some(data) = &p.data_dir
    {
        restore_snapshot(layout, &p.to, p.switched_at, data)?;
    }
    crate::failpoint("rollback-before-switch");
    layout.switch_back(&p.from)?;
    crate::failpoint("rollback-after-switch");
    state.pending = None;
    state.last = Some(Outcome {
        version: p.to.clone(),
        from: p.from.clone(),
        result: how,
        reason,
        at: now,
        reported: false,
    });
    state.save(&layout.state_path())
}

/// Called by the release on probation once its gate passed: the update is done.
/// Returns whether there was one to finish.
pub fn gate_passed(layout: &Layout, running: &Version, now: i64) -> Result<bool, UpdateError> {
    let path = layout.state_path();
    let mut state = UpdateState::load(&path)?;
    let Some(p) = state.pending.clone().filter(|p| p.to == *running) else {
        return Ok(false);
    };
    state.pending = None;
    state.last = Some(Outcome {
        version: p.to.clone(),
        from: p.from.clone(),
        result: Ended::Installed,
        reason: format!("release {} passed its health gate", p.to),
        at: now,
        reported: false,
    });
    state.save(&path)?;
    if p.snapshot_taken {
        let _ = std::fs::remove_dir_all(layout.snapshot_dir(&p.to));
    }
    Ok(true)
}

/// Called by the release on probation when its gate failed: the next start rolls back.
pub fn gate_failed(layout: &Layout, running: &Version, why: &str) -> Result<(), UpdateError> {
    let path = layout.state_path();
    let mut state = UpdateState::load(&path)?;
    if let Some(p) = state.pending.as_mut().filter(|p| p.to == *running) {
        p.gate_failed = Some(why.to_owned());
        state.save(&path)?;
    }
    Ok(())
}

/// A technician's rollback of the running release to `previous` (the server stopped).
pub fn rollback_by_hand(layout: &Layout, now: i64) -> Result<Version, UpdateError> {
    let path = layout.state_path();
    let mut state = UpdateState::load(&path)?;
    let cur = layout.current()?.ok_or(UpdateError::NoPrevious)?;
    let prev = layout.previous()?.ok_or(UpdateError::NoPrevious)?;
    let p = state.pending.clone().unwrap_or(Pending {
        from: prev.clone(),
        to: cur,
        switched_at: now,
        starts: 0,
        gate_failed: None,
        data_dir: None,
        snapshot_taken: false,
    });
    rollback(
        layout,
        &mut state,
        &p,
        format!("rolled back by hand from {} to {}", p.to, p.from),
        Ended::RolledBackByHand,
        now,
    )?;
    Ok(prev)
}

/// Asks for a rollback of the running release to `previous`, done by the guard before
/// the next start (the server restarts after asking). Returns (from, to).
pub fn request_rollback(
    layout: &Layout,
    by: &str,
    now: i64,
) -> Result<(Version, Version), UpdateError> {
    let path = layout.state_path();
    let mut state = UpdateState::load(&path)?;
    let cur = layout.current()?.ok_or(UpdateError::NoPrevious)?;
    let prev = layout
        .previous()?
        .filter(|p| *p != cur && layout.binary(p).is_file())
        .ok_or(UpdateError::NoPrevious)?;
    state.rollback_requested = Some(RollbackRequest {
        from: cur.clone(),
        to: prev.clone(),
        by: by.to_owned(),
        at: now,
    });
    state.save(&path)?;
    Ok((cur, prev))
}

/// The guard's side of [`request_rollback`]. Idempotent: a stop after the switch back
/// finds `current` already at the target and only finishes the record; a request that
/// no longer fits (another release is current) is dropped.
fn requested_rollback(
    layout: &Layout,
    state: &mut UpdateState,
    req: RollbackRequest,
    current: Version,
    now: i64,
) -> Result<Decision, UpdateError> {
    let reason = format!(
        "rolled back by hand by {} from {} to {}",
        req.by, req.from, req.to
    );
    state.rollback_requested = None;
    if current == req.from {
        // An update on probation keeps its data snapshot, which the rollback restores.
        let p = state
            .pending
            .clone()
            .filter(|p| p.to == req.from && p.from == req.to)
            .unwrap_or(Pending {
                from: req.to.clone(),
                to: req.from.clone(),
                switched_at: req.at,
                starts: 0,
                gate_failed: None,
                data_dir: None,
                snapshot_taken: false,
            });
        rollback(
            layout,
            state,
            &p,
            reason.clone(),
            Ended::RolledBackByHand,
            now,
        )?;
    } else if current == req.to {
        state.pending = None;
        state.last = Some(Outcome {
            version: req.from.clone(),
            from: req.to.clone(),
            result: Ended::RolledBackByHand,
            reason: reason.clone(),
            at: now,
            reported: false,
        });
        state.save(&layout.state_path())?;
    } else {
        tracing::warn!(asked_from = %req.from, current = %current, "Dropped a rollback request that no longer fits the running release");
        state.save(&layout.state_path())?;
        return Ok(Decision::Start(current));
    }
    Ok(Decision::RolledBack {
        failed: req.from,
        back: req.to,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_rollback_is_done_by_the_guard_once_even_after_a_stop_mid_way() {
        let (_d, l, v1, v2) = setup();
        l.switch_to(&v2).unwrap();
        assert_eq!(l.previous().unwrap(), Some(v1.clone()));
        let (from, to) = request_rollback(&l, "tech", 10).unwrap();
        assert_eq!((from, to), (v2.clone(), v1.clone()));
        // Nothing moves until the guard runs.
        assert_eq!(l.current().unwrap(), Some(v2.clone()));
        let d = before_start(&l, &Policy::default(), 20).unwrap();
        assert!(
            matches!(d, Decision::RolledBack { ref back, .. } if *back == v1),
            "{d:?}"
        );
        assert_eq!(l.current().unwrap(), Some(v1.clone()));
        let s = UpdateState::load(&l.state_path()).unwrap();
        assert!(s.rollback_requested.is_none());
        let last = s.last.unwrap();
        assert_eq!(last.result, Ended::RolledBackByHand);
        assert!(last.reason.contains("by tech"), "{}", last.reason);
        assert_eq!(
            before_start(&l, &Policy::default(), 30).unwrap(),
            Decision::Start(v1.clone())
        );

        // A stop after the switch back, before the record: the next guard finishes it.
        l.switch_to(&v2).unwrap();
        request_rollback(&l, "tech", 40).unwrap();
        l.switch_back(&v1).unwrap();
        let d = before_start(&l, &Policy::default(), 50).unwrap();
        assert!(matches!(d, Decision::RolledBack { .. }), "{d:?}");
        assert_eq!(l.current().unwrap(), Some(v1.clone()));
        assert!(
            UpdateState::load(&l.state_path())
                .unwrap()
                .rollback_requested
                .is_none()
        );

        // Nothing to go back to: refused, nothing recorded.
        assert!(matches!(
            request_rollback(&l, "tech", 60),
            Err(UpdateError::NoPrevious)
        ));
        assert!(
            UpdateState::load(&l.state_path())
                .unwrap()
                .rollback_requested
                .is_none()
        );
    }

    fn setup() -> (tempfile::TempDir, Layout, Version, Version) {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path().join("opt"));
        let (v1, v2) = (Version::new(1, 0, 0), Version::new(1, 1, 0));
        l.install_first(&v1, b"one").unwrap();
        l.install_first(&v2, b"two").unwrap();
        l.switch_to(&v1).unwrap();
        (dir, l, v1, v2)
    }

    fn switch(l: &Layout, from: &Version, to: &Version, data: Option<&Path>) {
        UpdateState {
            pending: Some(Pending {
                from: from.clone(),
                to: to.clone(),
                switched_at: 100,
                starts: 0,
                gate_failed: None,
                data_dir: data.map(Path::to_path_buf),
                snapshot_taken: false,
            }),
            last: None,
            rollback_requested: None,
        }
        .save(&l.state_path())
        .unwrap();
        l.switch_to(to).unwrap();
    }

    #[test]
    fn a_crash_loop_rolls_back_after_max_starts() {
        let (_d, l, v1, v2) = setup();
        switch(&l, &v1, &v2, None);
        let p = Policy::default();
        for n in 1..=3 {
            assert_eq!(
                before_start(&l, &p, 101).unwrap(),
                Decision::Probation {
                    to: v2.clone(),
                    start: n
                }
            );
        }
        let Decision::RolledBack {
            failed,
            back,
            reason,
        } = before_start(&l, &p, 102).unwrap()
        else {
            panic!("no rollback")
        };
        assert_eq!((failed, back.clone()), (v2.clone(), v1.clone()));
        assert!(reason.contains("crash loop"), "{reason}");
        assert_eq!(l.current().unwrap(), Some(v1.clone()));
        let last = UpdateState::load(&l.state_path()).unwrap().last.unwrap();
        assert_eq!(last.result, Ended::RolledBack);
        assert_eq!(before_start(&l, &p, 103).unwrap(), Decision::Start(v1));
    }

    #[test]
    fn a_failed_gate_rolls_back_at_once_and_restores_the_data_snapshot() {
        let (d, l, v1, v2) = setup();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("db"), b"schema 1").unwrap();
        switch(&l, &v1, &v2, Some(&data));
        let p = Policy::default();
        assert!(matches!(
            before_start(&l, &p, 101).unwrap(),
            Decision::Probation { start: 1, .. }
        ));
        assert!(l.snapshot_dir(&v2).join("db").is_file());
        // The new release migrates, then fails its gate.
        std::fs::write(data.join("db"), b"schema 2").unwrap();
        gate_failed(&l, &v2, "price lookup failed").unwrap();
        let Decision::RolledBack { reason, .. } = before_start(&l, &p, 102).unwrap() else {
            panic!("no rollback")
        };
        assert!(reason.contains("price lookup failed"), "{reason}");
        assert_eq!(std::fs::read(data.join("db")).unwrap(), b"schema 1");
        assert_eq!(
            std::fs::read(data.join(".failed-1.1.0-100/db")).unwrap(),
            b"schema 2"
        );
        assert!(!l.snapshot_dir(&v2).exists());
    }

    #[test]
    fn a_passed_gate_ends_probation_and_a_slow_one_rolls_back() {
        let (_d, l, v1, v2) = setup();
        switch(&l, &v1, &v2, None);
        let p = Policy {
            max_starts: 3,
            gate_timeout: Duration::from_secs(60),
        };
        before_start(&l, &p, 101).unwrap();
        assert!(gate_passed(&l, &v2, 110).unwrap());
        assert_eq!(
            before_start(&l, &p, 1_000).unwrap(),
            Decision::Start(v2.clone())
        );
        let last = UpdateState::load(&l.state_path()).unwrap().last.unwrap();
        assert_eq!(last.result, Ended::Installed);
        // The technician rolls back by hand.
        assert_eq!(rollback_by_hand(&l, 2_000).unwrap(), v1.clone());
        assert_eq!(l.current().unwrap(), Some(v1.clone()));
        // A release that never passes in time.
        switch(&l, &v1, &v2, None);
        before_start(&l, &p, 101).unwrap();
        assert!(matches!(
            before_start(&l, &p, 200).unwrap(),
            Decision::RolledBack { .. }
        ));
    }

    #[test]
    fn a_rollback_cut_after_its_switch_back_is_recorded_at_the_next_start() {
        let (_d, l, v1, v2) = setup();
        switch(&l, &v1, &v2, None);
        before_start(&l, &Policy::default(), 101).unwrap();
        // The rollback switched back, then the power went before the journal.
        l.switch_back(&v1).unwrap();
        let Decision::RolledBack { reason, .. } =
            before_start(&l, &Policy::default(), 102).unwrap()
        else {
            panic!("not recorded")
        };
        assert!(reason.contains("was being rolled back"), "{reason}");
        let last = UpdateState::load(&l.state_path()).unwrap().last.unwrap();
        assert_eq!(last.result, Ended::RolledBack);
    }

    #[test]
    fn a_journal_without_its_switch_is_dropped() {
        let (_d, l, v1, v2) = setup();
        switch(&l, &v1, &v2, None);
        l.switch_back(&v1).unwrap(); // as if the power went before the switch
        assert_eq!(
            before_start(&l, &Policy::default(), 101).unwrap(),
            Decision::Start(v1)
        );
        assert!(
            UpdateState::load(&l.state_path())
                .unwrap()
                .pending
                .is_none()
        );
    }
}
