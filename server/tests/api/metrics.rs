//! `/metrics`: the families a Prometheus user looks for first, in a text format
//! `promtool` accepts, and the alerting rules shipped beside them.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::{spawn_configured, test_settings};

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("promtool is not installed (apt-get install prometheus): its checks are skipped");
    }
    found.then_some("promtool")
}

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_sales_devices_disk_and_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    s.devices = outpost_server::devices::demo_devices(false);
    let app = spawn_configured(s, Some(outpost_mocks::MockTerminal::new()), true).await;
    let cart =
        json!({"lines":[{"sku":"MILK","quantity":1}],"payment":{"method":"cash","tendered":500}});
    let (st, sale, _) = app.checkout("metrics-1", &cart).await;
    assert_eq!(st, 201, "{sale}");
    let (st, _, _) = app.checkout("metrics-1", &cart).await;
    assert_eq!(st, 201);
    let bad =
        json!({"lines":[{"sku":"NOPE","quantity":1}],"payment":{"method":"cash","tendered":500}});
    let (st, v, _) = app.checkout("metrics-2", &bad).await;
    assert_eq!(st, 422, "{v}");
    let code = v["code"].as_str().unwrap().to_owned();
    let id = sale["sale_id"].as_str().unwrap();
    let (st, v, _) = app
        .post(
            &format!("/api/v1/sales/{id}/refunds"),
            Some("metrics-r1"),
            &json!({}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, _) = app.get(&format!("/api/v1/sales/{id}")).await;
    assert_eq!(st, 200);
    let (st, _) = app.get("/no/such/route").await;
    assert_eq!(st, 404);

    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("outpost_build_info{version=\""), "{text}");
    let ok = |prefix: &str| {
        let v = sample(&text, prefix);
        assert!(
            v.is_some_and(|v| v >= 1.0),
            "{prefix} missing or 0 in:\n{text}"
        );
    };
    ok(
        "outpost_requests_total{protocol=\"http\",route=\"/api/v1/checkout\",method=\"POST\",status=\"201\"}",
    );
    ok(
        "outpost_requests_total{protocol=\"http\",route=\"/api/v1/checkout\",method=\"POST\",status=\"422\"}",
    );
    // Paths with ids are counted under their route pattern, unknown paths together.
    ok(
        "outpost_requests_total{protocol=\"http\",route=\"/api/v1/sales/{id}\",method=\"GET\",status=\"200\"}",
    );
    ok(
        "outpost_requests_total{protocol=\"http\",route=\"unmatched\",method=\"GET\",status=\"404\"}",
    );
    assert!(!text.contains(id), "a sale id became a label");
    ok(
        "outpost_request_duration_seconds_count{protocol=\"http\",route=\"/api/v1/checkout\",method=\"POST\",status=\"201\"}",
    );
    ok(
        "outpost_request_duration_seconds_bucket{protocol=\"http\",route=\"/api/v1/checkout\",method=\"POST\",status=\"201\",le=\"+Inf\"}",
    );
    ok("outpost_checkouts_total{outcome=\"completed\",tender=\"cash\"}");
    ok("outpost_checkouts_total{outcome=\"replayed\",tender=\"cash\"}");
    ok(&format!(
        "outpost_checkouts_total{{outcome=\"{code}\",tender=\"cash\"}}"
    ));
    ok("outpost_refunds_total{outcome=\"completed\",tender=\"cash\"}");
    ok("outpost_device_up{device=\"printer-1\",kind=\"receipt_printer\"}");
    assert_eq!(
        sample(
            &text,
            "outpost_device_health{device=\"printer-1\",health=\"failed\"}"
        ),
        Some(0.0)
    );
    ok("outpost_data_disk_free_bytes");
    ok("outpost_data_disk_size_bytes");
    ok("process_resident_memory_bytes");
    ok("process_open_fds");
    assert!(sample(&text, "process_cpu_seconds_total").is_some());

    // Every sample belongs to a family with a TYPE line.
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = l.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(f)))
            .unwrap_or(name);
        assert!(typed.contains(&family), "{name} has no TYPE line");
    }
    if let Some(tool) = promtool() {
        let mut child = Command::new(tool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        // Lint findings (help texts, naming) are printed but only errors fail it.
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !said.contains("error while linting") && !said.contains("text format parsing error"),
            "{said}"
        );
    }
}

#[test]
fn the_alerting_rules_pass_promtool() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus/outpost-rules.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    // Each alert the docs promise is there.
    for alert in [
        "OutpostBacklogOld",
        "OutpostDeviceDown",
        "OutpostLeaseExpiring",
        "OutpostLeaseInGrace",
        "OutpostDiskNearlyFull",
        "OutpostCrashLoop",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "{alert}");
    }
    let Some(tool) = promtool() else { return };
    let out = Command::new(tool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_scrape_token_reads_metrics_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("metrics-token")
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A second run keeps the token unless told to replace it.
    let again = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("metrics-token")
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);

    let mut s = test_settings(&dir.path().join("data"));
    s.metrics.token_file = Some(token_file.clone());
    let app = spawn_configured(s, None, true).await;
    let bare = reqwest::Client::new();
    let get = |path: &str, bearer: Option<&str>| {
        let mut r = bare.get(app.url(path));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        r.send()
    };
    let r = get("/metrics", Some(&token)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("outpost_build_info"));
    // Not a terminal or staff credential: nothing else opens with it.
    for path in [
        "/api/v1/sales",
        "/api/v1/products/MILK",
        "/api/v1/security/status",
    ] {
        let r = get(path, Some(&token)).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // A wrong token, a terminal's token and no token are refused.
    assert_eq!(
        get("/metrics", Some(&"0".repeat(64)))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(get("/metrics", None).await.unwrap().status(), 401);
    let (_, till) = app.security.add_terminal("test", "metrics-till").unwrap();
    use secrecy::ExposeSecret as _;
    assert_eq!(
        get("/metrics", Some(till.expose_secret()))
            .await
            .unwrap()
            .status(),
        403
    );
    // Replacing the file rotates the token at the next scrape.
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["metrics-token", "--force"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(get("/metrics", Some(&token)).await.unwrap().status(), 401);
    let fresh = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(get("/metrics", Some(&fresh)).await.unwrap().status(), 200);
}
