//! A unit stopped dead at each step of an update (the step's failpoint aborts the
//! process, as a power cut would) starts again on the old release or the new one,
//! never neither, and the update can be finished afterwards.

use std::time::Duration;

use outpost_updater::FAILPOINT_ENV;

use crate::{Supervised, Unit, get, v, wait_for};

/// Each step, and the release the unit must start on after a stop there.
const STEPS: &[(&str, &str)] = &[
    ("before-stage", "0.1.0"),
    ("partial-written", "0.1.0"),
    ("after-stage", "0.1.0"),
    ("after-self-test", "0.1.0"),
    ("after-journal", "0.1.0"),
    ("between-links", "0.1.0"),
    ("after-switch", "0.1.1"),
];

#[test]
fn a_stop_at_every_step_of_an_update_leaves_a_unit_that_starts_and_can_finish_it() {
    let first = Unit::new();
    // One bundle for every unit: the release keys are the same.
    let bundle = first.publish("r011", "0.1.1", &first.base, true);
    for (i, (step, expect)) in STEPS.iter().enumerate() {
        let unit = if i == 0 { None } else { Some(Unit::new()) };
        let unit = unit.as_ref().unwrap_or(&first);
        let out = unit.outpost_env(
            &["update", "apply"],
            &[bundle.as_os_str()],
            &[(FAILPOINT_ENV, step)],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{step}: the update went through");
        assert!(err.contains(&format!("failpoint {step}")), "{step}: {err}");

        {
            let sup = Supervised::start(unit);
            let addr = sup.address(0, Duration::from_secs(90));
            wait_for(
                &format!("{step}: a serving unit"),
                Duration::from_secs(60),
                || {
                    get(&format!("http://{addr}/healthz"))
                        .is_some_and(|(s, b)| s == 200 && b["version"] == *expect)
                },
            );
            wait_for(
                &format!("{step}: no update left pending"),
                Duration::from_secs(60),
                || unit.state().pending.is_none(),
            );
        }
        assert_eq!(unit.current(), v(expect), "{step}");

        // The update can be finished after the stop.
        if *expect == "0.1.0"
            && matches!(*step, "partial-written" | "after-journal" | "between-links")
        {
            let out = unit.apply(&bundle);
            assert!(
                out.status.success(),
                "{step}: apply after the stop: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(unit.current(), v("0.1.1"), "{step}");
        }
    }
}
