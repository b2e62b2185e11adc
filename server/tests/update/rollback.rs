//! Releases started by the supervisor: a good one passes its health gate and stays;
//! one that crashes at start, and one that never passes its gate, are rolled back by
//! themselves and the previous release serves again.

use std::time::{Duration, Instant};

use outpost_updater::state::Result as Ended;

use crate::{Supervised, Unit, get, last_result, script_release, v, wait_for};

#[test]
fn a_good_release_arrives_as_a_delta_and_passes_its_gate_under_the_supervisor() {
    let unit = Unit::new();
    let bundle = unit.publish("r011", "0.1.1", &unit.base, true);
    let size = |suffix: &str| {
        std::fs::read_dir(&bundle)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .unwrap()
    };
    let (full, delta) = (size(".tar.gz"), size(".zst"));
    eprintln!("full artifact {full} bytes, delta {delta} bytes");
    assert!(
        delta * 10 <= full,
        "a stamp-only change: delta {delta} of {full}"
    );

    let out = unit.apply(&bundle);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("from a delta against the running binary"),
        "{err}"
    );
    assert!(err.contains("passed its self-test"), "{err}");
    assert_eq!(unit.current(), v("0.1.1"));
    assert_eq!(unit.state().pending.unwrap().to, v("0.1.1"));

    let admin = unit.outpost(&["users", "add", "admin", "--role", "admin"], &[]);
    let password = String::from_utf8(admin.stdout).unwrap().trim().to_owned();
    let sup = Supervised::start(&unit);
    let addr = sup.address(0, Duration::from_secs(90));
    wait_for("the gate to pass", Duration::from_secs(90), || {
        last_result(&unit) == Some(Ended::Installed)
    });
    let (status, body) = get(&format!("http://{addr}/healthz")).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["version"], "0.1.1", "{body}");
    assert_eq!(unit.current(), v("0.1.1"));
    assert_eq!(unit.layout.previous().unwrap(), Some(v("0.1.0")));
    let version = unit.outpost(&["--version"], &[]);
    assert!(String::from_utf8_lossy(&version.stdout).contains("0.1.1"));

    // An admin rolls it back on the running server: the guard switches back before
    // the restart, and the previous release serves.
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let http = reqwest::Client::new();
            let r = http
                .post(format!("http://{addr}/api/v1/auth/login"))
                .json(&serde_json::json!({"username": "admin", "password": password}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
            let session = cookie.split(';').next().unwrap().to_owned();
            let r = http
                .post(format!("http://{addr}/api/v1/update/rollback"))
                .header("cookie", session)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        });
    assert_eq!(answer.0, 202, "{}", answer.1);
    assert_eq!(
        (answer.1["from"].as_str(), answer.1["to"].as_str()),
        (Some("0.1.1"), Some("0.1.0"))
    );
    let back = sup.address(1, Duration::from_secs(90));
    wait_for("0.1.0 to serve", Duration::from_secs(90), || {
        get(&format!("http://{back}/healthz")).is_some_and(|(_, b)| b["version"] == "0.1.0")
    });
    assert_eq!(unit.current(), v("0.1.0"));
    let last = unit.state().last.unwrap();
    assert_eq!(last.result, Ended::RolledBackByHand);
    assert!(last.reason.contains("by admin"), "{}", last.reason);
    assert!(unit.state().rollback_requested.is_none());
}

#[test]
fn a_release_that_crashes_at_start_is_rolled_back_by_itself() {
    let unit = Unit::new();
    let crash = script_release("0.1.2", "echo 'release 0.1.2: cannot start' >&2");
    let bundle = unit.publish("crash", "0.1.2", &crash, false);
    let out = unit.apply(&bundle);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(unit.current(), v("0.1.2"));

    let started = Instant::now();
    let sup = Supervised::start(&unit);
    // The first server that logs an address is the old release, back.
    let addr = sup.address(0, Duration::from_secs(90));
    wait_for("the old release to serve", Duration::from_secs(60), || {
        get(&format!("http://{addr}/healthz"))
            .is_some_and(|(s, b)| s == 200 && b["version"] == "0.1.0")
    });
    eprintln!(
        "crashing release to the old one serving: {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(unit.current(), v("0.1.0"));
    let last = unit.state().last.unwrap();
    assert_eq!(last.result, Ended::RolledBack);
    assert!(last.reason.contains("crash loop"), "{}", last.reason);
    let lines = sup.lines.lock().unwrap().join("\n");
    assert_eq!(
        lines.matches("release 0.1.2: cannot start").count(),
        3,
        "three starts before the rollback"
    );
}

#[test]
fn a_release_that_never_passes_its_gate_is_stopped_and_rolled_back() {
    let unit = Unit::new();
    let hang = script_release("0.1.3", "exec sleep 120");
    let bundle = unit.publish("hang", "0.1.3", &hang, false);
    let out = unit.apply(&bundle);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sup = Supervised::start(&unit);
    let addr = sup.address(0, Duration::from_secs(90));
    let (status, body) = get(&format!("http://{addr}/healthz")).unwrap();
    assert_eq!((status, body["version"].as_str()), (200, Some("0.1.0")));
    let last = unit.state().last.unwrap();
    assert_eq!(last.result, Ended::RolledBack);
    assert!(
        last.reason
            .contains("did not pass its health gate within 10 s"),
        "{}",
        last.reason
    );
}
