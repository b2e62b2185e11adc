//! A big snapshot while the store keeps answering lookups.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use outpost_proto::hq;
use outpost_proto::hq::CatalogPushKind::Snapshot;

use crate::helpers::*;

const CHUNK: u64 = 5_000;

/// Chunks of a snapshot of `n` products at `price`, generated lazily.
fn lazy_snapshot(
    id: &str,
    version: u64,
    n: u64,
    price: i64,
) -> impl tokio_stream::Stream<Item = hq::CatalogChunk> + Send + 'static {
    let h = header(id, Snapshot, version, 0, n, 0);
    let chunks = n.div_ceil(CHUNK);
    tokio_stream::iter((0..chunks).map(move |c| {
        let from = c * CHUNK;
        let to = (from + CHUNK).min(n);
        hq::CatalogChunk {
            header: (c == 0).then(|| h.clone()),
            offset: from,
            products: (from..to).map(|i| product(i, price)).collect(),
            removed_skus: vec![],
            last: to == n,
        }
    }))
}

fn products_from_env(default: u64) -> u64 {
    std::env::var("OUTPOST_PUSH_PRODUCTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn lookups_answer_from_the_old_catalog_while_a_big_snapshot_applies() {
    let n = products_from_env(50_000);
    let app = spawn(None).await;
    let mut c = app.client().await;
    c.push_catalog(lazy_snapshot("v1", 1, 1_000, 100))
        .await
        .unwrap();
    let url = format!("{}/api/v1/products/P0000500", app.base);
    let http = app.http.clone();
    // One lookup before the push starts: the old catalog answers.
    let first: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["price"], 100);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            // Bounded: at most 100,000 lookups, and it stops when the push is done.
            for _ in 0..100_000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                // On a loaded machine a keep-alive connection may be closed just as a
                // request goes out, or the server may give up waiting for a request
                // head (408): a terminal resends a lookup; the answer must then be 200.
                let mut tries = 0;
                let r = loop {
                    match http.get(&url).send().await {
                        Ok(r) if r.status().as_u16() == 408 && tries < 3 => tries += 1,
                        Ok(r) => break r,
                        Err(e) if tries < 3 && (e.is_connect() || e.is_request()) => tries += 1,
                        Err(e) => panic!("a lookup failed during the push: {e}"),
                    }
                };
                assert_eq!(r.status().as_u16(), 200, "a lookup failed during the push");
                let body: serde_json::Value = r.json().await.unwrap();
                seen.push(body["price"].as_i64().unwrap());
            }
            seen
        })
    };
    let started = Instant::now();
    let reply = c
        .push_catalog(lazy_snapshot("v2", 2, n, 7))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let seen = watcher.await.unwrap();
    assert_eq!((reply.version, reply.products), (2, n));
    // Every answer is the old price or the new one, and once new, never old again.
    assert!(seen.iter().all(|p| *p == 100 || *p == 7), "{seen:?}");
    let first_new = seen.iter().position(|p| *p == 7).unwrap_or(seen.len());
    assert!(seen[first_new..].iter().all(|p| *p == 7));
    let (_, body) = app.get_json("/api/v1/products/P0000500").await;
    assert_eq!(body["price"], 7);
    eprintln!(
        "snapshot of {n} products pushed and applied in {:.2} s ({:.0} products/s, apply {} ms); {} lookups meanwhile",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        reply.apply_ms,
        seen.len()
    );

    // A 1,000-price delta on top of it: measured from the push to the first lookup
    // that serves the new price.
    let changed: Vec<u64> = (0..1_000).map(|k| k * (n / 1_000).max(1) % n).collect();
    let delta = chunks(
        header(
            "d3",
            hq::CatalogPushKind::Delta,
            3,
            2,
            changed.len() as u64,
            0,
        ),
        changed.iter().map(|i| product(*i, 9)).collect(),
        500,
        vec![],
    );
    let probe = format!(
        "{}/api/v1/products/P{:07}",
        app.base,
        changed[changed.len() - 1]
    );
    let started = Instant::now();
    let reply = push(&mut c, delta).await.unwrap();
    assert_eq!((reply.version, reply.products), (3, n));
    let mut served = false;
    for _ in 0..1_000 {
        let body: serde_json::Value = app
            .http
            .get(&probe)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["price"] == 9 {
            served = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(served, "the delta's price is never served");
    let (_, body) = app.get_json("/api/v1/products/P0000001").await;
    assert_eq!(body["price"], 7, "a product outside the delta changed");
    eprintln!(
        "1,000-price delta on {n} products: push to served in {:.1} ms (apply {} ms)",
        took.as_secs_f64() * 1000.0,
        reply.apply_ms
    );
    app.stop().await;
}
