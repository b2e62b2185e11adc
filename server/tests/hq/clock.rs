//! The wall clock jumping while a store sells and syncs, on the real binary under
//! libfaketime (Debian package `faketime`; without it the test says SKIPPED): the
//! store's clock goes back 3 hours, the store is killed and restarted while it is
//! back, then it jumps 5 hours forward and back to the true time. Only the wall
//! clock moves (`DONT_FAKE_MONOTONIC`), as an NTP step or a technician fixing the date
//! does.
//!
//! What must hold: every sale is kept once and reaches HQ exactly once, in sequence;
//! ids keep the order the sales were made in, across the restart with the clock
//! back (each phase's ids above every earlier phase's); the listing shows them all.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outpost_mocks::hq::Faults;

use crate::helpers::*;
use crate::uplink::{assert_exactly_once, start_hq, start_store};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// Sales per phase.
const PER_PHASE: usize = 150;

/// Sets the store's clock offset (libfaketime's relative format: `+0`, `-3h`, `+5h`,
/// `hours` the same as a number) and waits until the store's clock shows it: the
/// `Date` header of its answers (libfaketime reads the file at most once a second).
async fn set_clock(file: &Path, offset: &str, hours: i64, base: &str) {
    std::fs::write(file, offset).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        let date = r
            .headers()
            .get("date")
            .and_then(|d| d.to_str().ok())
            .and_then(|d| httpdate::parse_http_date(d).ok());
        if let Some(date) = date {
            let shown = time::OffsetDateTime::from(date);
            let want = time::OffsetDateTime::now_utc() + time::Duration::hours(hours);
            if (shown - want).abs() < time::Duration::minutes(1) {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store's clock did not move to {offset}"
        );
    }
}

/// Every sale the store lists, in its order (oldest first).
async fn listed(base: &str) -> Vec<String> {
    let client = authed(base);
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/api/v1/sales?limit=200&cursor={c}"),
            None => format!("{base}/api/v1/sales?limit=200"),
        };
        let v: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        for s in v["items"].as_array().unwrap() {
            out.push(s["sale_id"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clock_jumps_back_and_forward_lose_nothing_duplicate_nothing_and_keep_ids_ordered() {
    if !Path::new(LIBFAKETIME).exists() {
        eprintln!("SKIPPED clock jumps: {LIBFAKETIME} is missing (apt-get install faketime)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hq = start_hq(&dir.path().join("hq"), Faults::none()).await;
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[sync]\nhq_url = \"{}\"\nbatch_max = 50\nwindow = 2\nbackoff_min_ms = 50\nbackoff_max_secs = 1\nack_timeout_secs = 10\n",
            hq.url()
        ),
    )
    .unwrap();
    let catalog = dir.path().join("catalog.jsonl");
    let mut f = std::fs::File::create(&catalog).unwrap();
    writeln!(f, r#"{{"sku":"CLK-1","name":"Clock item","category":"test","price":100,"currency":"EUR","tax_class":"standard"}}"#).unwrap();
    drop(f);
    let data = dir.path().join("data");
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    cli(&["import", "catalog", catalog.to_str().unwrap()]);
    let password = cli(&["users", "add", "clock", "--role", "supervisor,technician"]);

    let clock = dir.path().join("clock");
    std::fs::write(&clock, "+0").unwrap();
    let env: [(&str, &std::ffi::OsStr); 4] = [
        ("LD_PRELOAD", LIBFAKETIME.as_ref()),
        ("FAKETIME_TIMESTAMP_FILE", clock.as_os_str()),
        ("FAKETIME_CACHE_DURATION", "1".as_ref()),
        ("DONT_FAKE_MONOTONIC", "1".as_ref()),
    ];
    let mut store = start_store(&config, &data, &env);
    log_in(&store.base, "clock", &password).await;

    // Each phase sells PER_PHASE sales under its clock; `phases` keeps their ids.
    let mut phases: Vec<(String, Vec<String>)> = Vec::new();
    for (name, offset, hours, restart) in [
        ("true time", "+0", 0, false),
        ("3 h back", "-3h", -3, false),
        ("3 h back, restarted", "-3h", -3, true),
        ("5 h ahead", "+5h", 5, false),
        ("true time again", "+0", 0, false),
    ] {
        if restart {
            drop(store); // SIGKILL, with the clock back
            store = start_store(&config, &data, &env);
            log_in(&store.base, "clock", &password).await;
        }
        set_clock(&clock, offset, hours, &store.base).await;
        let ids = sell(
            &store.base,
            "CLK-1",
            PER_PHASE,
            8,
            &format!("clock-{}", phases.len()),
        )
        .await;
        phases.push((name.to_owned(), ids));
    }

    // The store's clock did move: a sale of the second phase says it was made about
    // 3 hours before one of the first, one of the fourth about 5 hours after.
    let at = |id: String| {
        let base = store.base.clone();
        async move {
            let v: serde_json::Value = authed(&base)
                .get(format!("{base}/api/v1/sales/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            time::OffsetDateTime::parse(
                v["created_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        }
    };
    let first = at(phases[0].1[0].clone()).await;
    let back = at(phases[1].1[0].clone()).await;
    let ahead = at(phases[3].1[0].clone()).await;
    let hours = |d: time::Duration| d.as_seconds_f64() / 3600.0;
    assert!(
        (hours(first - back) - 3.0).abs() < 0.1,
        "{first} then {back}"
    );
    assert!(
        (hours(ahead - first) - 5.0).abs() < 0.1,
        "{first} then {ahead}"
    );

    // Ids keep the order the phases sold in, whatever the clock said.
    for w in phases.windows(2) {
        let (before, after) = (&w[0], &w[1]);
        let newest_before = before.1.iter().max().unwrap();
        let oldest_after = after.1.iter().min().unwrap();
        assert!(
            oldest_after > newest_before,
            "a sale of phase \"{}\" ({oldest_after}) sorts before one of phase \"{}\" ({newest_before})",
            after.0,
            before.0
        );
    }
    let sold: Vec<String> = phases.iter().flat_map(|(_, ids)| ids.clone()).collect();
    let distinct: HashSet<&String> = sold.iter().collect();
    assert_eq!(distinct.len(), sold.len(), "two sales got one id");

    // The listing has every sale once, in the order they were made.
    let listed = listed(&store.base).await;
    let mut expected = sold.clone();
    expected.sort();
    assert!(
        listed == expected,
        "the listing ({} sales) is not every sale once in id order ({} sold)",
        listed.len(),
        expected.len()
    );

    // HQ gets every sale exactly once, in sequence.
    let base = store.base.clone();
    eventually(120, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    assert_exactly_once(&hq.received("unit-1"), &sold);
    drop(store);
    hq.shutdown().await.unwrap();
}
