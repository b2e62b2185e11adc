//! What HQ learns of updates: the last update's result reaches HQ once, as an
//! `update` alert through the outbox; `GetStatus`, `GET /api/v1/update` and `/metrics`
//! carry the version census.

use outpost_proto::hq::{EnvelopeKind, GetStatusRequest};
use outpost_updater::layout::Layout;
use outpost_updater::semver::Version;
use outpost_updater::state::{Outcome, Result as Ended, UpdateState};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_update_reaches_hq_once_and_the_census_shows_it() {
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = mock_hq(hq_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let releases = dir.path().join("opt");
    let layout = Layout::new(&releases);
    let (v1, v2) = (Version::new(0, 1, 0), Version::new(0, 2, 0));
    layout.install_first(&v2, b"new").unwrap();
    layout.install_first(&v1, b"old").unwrap();
    UpdateState {
        pending: None,
        last: Some(Outcome {
            version: v2.clone(),
            from: v1.clone(),
            result: Ended::RolledBack,
            reason: "release 0.2.0 started 3 times without passing its health gate (a crash loop)"
                .into(),
            at: 1_000,
            reported: false,
        }),
        rollback_requested: None,
    }
    .save(&layout.state_path())
    .unwrap();

    let mut s = settings(&dir.path().join("unit"), Some(hq.url()));
    s.updates.releases_dir = Some(releases.clone());
    let app = spawn_with(s).await;

    // The census, over gRPC and REST.
    let status = app
        .client()
        .await
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.last_update_result, "rolled_back");
    assert_eq!(status.last_update_version, "0.2.0");
    assert!(status.last_update_reason.contains("crash loop"));
    assert_eq!(status.pending_version, "");
    let (code, body) = app.get_json("/api/v1/update").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["current"], "0.1.0", "{body}");
    assert_eq!(body["installed"], serde_json::json!(["0.1.0", "0.2.0"]));
    assert_eq!(body["last"]["result"], "rolled_back", "{body}");
    // A rollback asked of a server nothing restarts through the guard is refused.
    if std::env::var_os("INVOCATION_ID").is_none() {
        let r = app
            .http
            .post(format!("{}/api/v1/update/rollback", app.base))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(
            (code, body["code"].as_str()),
            (409, Some("not_supervised")),
            "{body}"
        );
    }
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\noutpost_update_last_rolled_back 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\noutpost_update_on_probation 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "outpost_release_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );

    // Reported twice (two starts): HQ gets it once.
    for _ in 0..2 {
        outpost_server::update::probation::report_last(&app.store, &releases, Some(200)).await;
    }
    assert!(
        UpdateState::load(&layout.state_path())
            .unwrap()
            .last
            .unwrap()
            .reported
    );
    eventually(20, "the update alert at HQ", || async {
        hq.received_kind("unit-1", EnvelopeKind::Alert)
            .iter()
            .any(|e| String::from_utf8_lossy(&e.json).contains("\"alert\":\"update\""))
    })
    .await;
    let alerts: Vec<serde_json::Value> = hq
        .received_kind("unit-1", EnvelopeKind::Alert)
        .iter()
        .map(|e| serde_json::from_slice(&e.json).unwrap())
        .filter(|v: &serde_json::Value| v["alert"] == "update")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "rolled_back");
    assert_eq!(alerts[0]["subject"], "0.1.0 -> 0.2.0");
    app.stop().await;
}
