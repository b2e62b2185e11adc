//! A release applied by the running server while terminals keep selling: every
//! acknowledged checkout is a sale afterwards, once, and checkouts sent during the
//! restart wait in the backlog of the socket the supervisor holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_updater::state::Result as Ended;

use crate::{Supervised, Unit, get, last_result, v, wait_for};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One acknowledged checkout: its key, sale id and when the answer came.
type Acked = (String, String, Instant);

#[test]
fn an_update_applied_while_selling_loses_no_sale_and_makes_no_duplicate() {
    let unit = Unit::new();
    let token = String::from_utf8(unit.outpost(&["terminals", "add", "till-1"], &[]).stdout)
        .unwrap()
        .trim()
        .to_owned();
    let tech = unit.outpost(&["users", "add", "tech", "--role", "technician"], &[]);
    let password = String::from_utf8(tech.stdout).unwrap().trim().to_owned();
    assert!(
        !password.is_empty(),
        "{}",
        String::from_utf8_lossy(&tech.stderr)
    );
    let bundle = unit.publish("r011", "0.1.1", &unit.base, true);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let sup = Supervised::start_with(&unit, &["--listen", &addr]);
    let base = format!("http://{addr}");
    wait_for("the server", Duration::from_secs(90), || {
        get(&format!("{base}/healthz")).is_some_and(|(s, _)| s == 200)
    });

    // Four terminals sell; each retries a checkout with its key until it is answered.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let sellers: Vec<_> = (0..4)
        .map(|t| {
            let (stop, acked, base, token) =
                (stop.clone(), acked.clone(), base.clone(), token.clone());
            std::thread::spawn(move || {
                rt().block_on(async move {
                    let client = reqwest::Client::new();
                    let mut n = 0u32;
                    while !stop.load(Ordering::SeqCst) {
                        let key = format!("t{t}-{n}");
                        n += 1;
                        let deadline = Instant::now() + Duration::from_secs(60);
                        loop {
                            assert!(Instant::now() < deadline, "{key} never answered");
                            let r = client
                                .post(format!("{base}/api/v1/checkout"))
                                .bearer_auth(&token)
                                .header("Idempotency-Key", &key)
                                .json(&serde_json::json!({
                                    "lines": [{"sku": "MILK", "quantity": 1}],
                                    "payment": {"method": "cash", "tendered": 500}
                                }))
                                .timeout(Duration::from_secs(20))
                                .send()
                                .await;
                            match r {
                                Ok(r) if r.status().as_u16() == 201 => {
                                    let v: serde_json::Value = r.json().await.unwrap();
                                    let id = v["sale_id"].as_str().unwrap().to_owned();
                                    acked.lock().unwrap().push((key, id, Instant::now()));
                                    break;
                                }
                                // Refused while the server stops, or the connection
                                // dropped: the same key again.
                                _ => tokio::time::sleep(Duration::from_millis(20)).await,
                            }
                        }
                    }
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    // The technician applies the release on the running server.
    let answer = rt().block_on(async {
        let client = reqwest::Client::new();
        let login = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "tech", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status().as_u16(), 200);
        let cookie = login
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let r = client
            .post(format!("{base}/api/v1/update"))
            .header("cookie", cookie)
            .json(&serde_json::json!({"bundle": bundle}))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.json::<serde_json::Value>().await.unwrap_or_default(),
        )
    });
    assert_eq!(answer.0, 202, "{}", answer.1);
    assert_eq!(answer.1["to"], "0.1.1");
    assert_eq!(answer.1["via"], "delta");
    wait_for("0.1.1 through its gate", Duration::from_secs(120), || {
        last_result(&unit) == Some(Ended::Installed)
    });
    let (_, health) = get(&format!("{base}/healthz")).unwrap();
    assert_eq!(health["version"], "0.1.1");
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    for s in sellers {
        s.join().unwrap();
    }

    // Every acknowledged checkout is one sale; no key made two.
    let acked = acked.lock().unwrap().clone();
    let mut ids: Vec<&str> = acked.iter().map(|(_, id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), acked.len(), "two keys got one sale");
    let listed = rt().block_on(async {
        let client = reqwest::Client::new();
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/api/v1/sales?limit=200");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: serde_json::Value = client
                .get(url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for s in page["items"].as_array().unwrap() {
                all.push(s["sale_id"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break all,
            }
        }
    });
    assert_eq!(
        listed.len(),
        acked.len(),
        "sales in the journal vs acknowledged"
    );
    for id in &ids {
        assert!(
            listed.iter().any(|l| l == id),
            "acknowledged sale {id} is missing"
        );
    }
    let mut times: Vec<Instant> = acked.iter().map(|(_, _, t)| *t).collect();
    times.sort();
    let gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} checkouts acknowledged; the longest time without one: {} ms",
        acked.len(),
        gap.as_millis()
    );
    drop(sup);
    assert_eq!(unit.current(), v("0.1.1"));
}
