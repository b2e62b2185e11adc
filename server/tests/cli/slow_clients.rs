//! Slow and broken clients against the real binary: 10,000 idle connections, slowloris
//! (a request head or an HTTP/2 preface trickled a byte at a time), connections that
//! send half a request and close their side, and silent gRPC connections, all at once.
//! Meanwhile ordinary clients look products up, check out and ask gRPC health, and are
//! served. The server closes what will never become a request (the REST port after
//! `client_request_timeout`, 5 s; the gRPC port after 10 s without a preface), so its
//! open files fall back while the attackers still hold their ends, and its memory
//! stays bounded.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{GOOD, Serving, created, outpost};

/// Idle connections held open on the REST port.
const IDLE: usize = 10_000;
/// Connections of each other kind.
const EACH: usize = 100;
/// Bound on the server's memory growth with everything above open.
const MAX_GROWTH_MIB: u64 = 384;

fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn rss_mib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:") / 1024
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// This process's open files limit raised to `need`; `Err` says why it cannot be.
fn allow_open_files(need: u64) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    let max = l.maximum.unwrap_or(u64::MAX);
    if max < need {
        return Err(format!("the hard open files limit is {max}, below {need}"));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(max),
            maximum: l.maximum,
        },
    )
    .map_err(|e| e.to_string())
}

/// Writes `bytes` one at a time, `every` apart, until the server closes the connection
/// or `bytes` run out; returns how long the server let it go on.
async fn trickle(addr: std::net::SocketAddr, bytes: Vec<u8>, every: Duration) -> Duration {
    let started = Instant::now();
    let Ok(mut c) = TcpStream::connect(addr).await else {
        return Duration::ZERO;
    };
    for b in bytes {
        if c.write_all(&[b]).await.is_err() {
            return started.elapsed();
        }
        let mut buf = [0u8; 512];
        // An answer (408) or a close ends it.
        if let Ok(Ok(n)) = tokio::time::timeout(every, c.read(&mut buf)).await {
            let _ = n;
            return started.elapsed();
        }
    }
    Duration::MAX
}

/// Sends half a request head, closes its writing side, and waits for the server to
/// close; returns how long that took.
async fn half_close(addr: std::net::SocketAddr) -> Duration {
    let started = Instant::now();
    let Ok(mut c) = TcpStream::connect(addr).await else {
        return Duration::ZERO;
    };
    let _ = c
        .write_all(b"GET /api/v1/products/A HTTP/1.1\r\nHost: x\r\n")
        .await;
    let _ = c.shutdown().await;
    let mut buf = Vec::new();
    match tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut buf)).await {
        Ok(_) => started.elapsed(),
        Err(_) => Duration::MAX,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_half_closed_clients_do_not_stop_the_others() {
    if let Err(why) = allow_open_files(IDLE as u64 + 2_000) {
        eprintln!("SKIPPED idle_slow_and_half_closed_clients...: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let catalog = dir.path().join("catalog.jsonl");
    std::fs::write(&catalog, GOOD).unwrap();
    created(&outpost(
        &["import", "catalog", catalog.to_str().unwrap()],
        &data,
    ));
    let token = created(&outpost(&["terminals", "add", "slow-till"], &data));
    let config = dir.path().join("outpost.toml");
    std::fs::write(&config, "[sync]\ngrpc_listen = \"127.0.0.1:0\"\n").unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .env("OUTPOST_LOG", "info")
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .env_remove("RUST_LOG");
    let server = Serving::spawn(command);
    let pid = server.pid();
    let rest: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let grpc: std::net::SocketAddr = {
        let logs = server.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("Outpost is listening"))
            .unwrap();
        let v: Value = serde_json::from_str(line).unwrap();
        let g = v["grpc"].as_str().unwrap();
        g.trim_start_matches("Some(")
            .trim_end_matches(')')
            .parse()
            .unwrap()
    };
    let (rss0, files0) = (rss_mib(pid), open_files(pid));

    // The attack: idle connections first, then the slow ones beside them.
    let mut idle = Vec::with_capacity(IDLE);
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..IDLE {
        connecting.spawn(TcpStream::connect(rest));
        if connecting.len() >= 256
            && let Some(c) = connecting.join_next().await
        {
            idle.push(c.unwrap().expect("an idle connection"));
        }
    }
    while let Some(c) = connecting.join_next().await {
        idle.push(c.unwrap().expect("an idle connection"));
    }
    let head = b"GET /api/v1/products/A HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec();
    let preface = outpost_proto::grpc_accept::H2_PREFACE.to_vec();
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..EACH {
        slow.spawn(trickle(rest, head.clone(), Duration::from_millis(250)));
        slow.spawn(trickle(grpc, preface.clone(), Duration::from_millis(800)));
    }
    let mut halves = tokio::task::JoinSet::new();
    for _ in 0..EACH {
        halves.spawn(half_close(rest));
    }
    let mut silent_grpc = Vec::new();
    for _ in 0..EACH {
        silent_grpc.push(TcpStream::connect(grpc).await.unwrap());
    }
    let peak_files = open_files(pid);
    let mut peak_rss = rss_mib(pid);

    // The others are served meanwhile.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    for i in 0..40 {
        let started = Instant::now();
        let r = client
            .get(format!("{}/api/v1/products/A", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("a lookup is answered under attack");
        assert_eq!(r.status(), 200);
        if i % 4 == 0 {
            let r = client
                .post(format!("{}/api/v1/checkout", server.base))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("slow-{i}"))
                .json(&json!({"lines": [{"sku": "A", "quantity": 1}], "payment": {"method": "cash", "tendered": 1000}}))
                .send()
                .await
                .expect("a checkout is answered under attack");
            assert_eq!(r.status(), 201);
        }
        slowest = slowest.max(started.elapsed());
        peak_rss = peak_rss.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("gRPC connects under attack");
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("gRPC health answers under attack");
    assert_eq!(health.into_inner().status, 1, "SERVING");

    // What never becomes a request is closed by the server, while the attackers still
    // hold their ends.
    let mut trickled = Vec::new();
    while let Some(d) = slow.join_next().await {
        trickled.push(d.unwrap());
    }
    let mut halved = Vec::new();
    while let Some(d) = halves.join_next().await {
        halved.push(d.unwrap());
    }
    let longest = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    assert!(
        longest(&trickled) < Duration::from_secs(20),
        "a slowloris client was let go on: {:?}",
        longest(&trickled)
    );
    assert!(
        longest(&halved) < Duration::from_secs(20),
        "a half-closed client was kept: {:?}",
        longest(&halved)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_files(pid) > files0 + 50 {
        assert!(
            Instant::now() < deadline,
            "the server still holds {} files (it started with {files0}) with the attackers idle",
            open_files(pid)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let growth = peak_rss.saturating_sub(rss0);
    assert!(
        growth < MAX_GROWTH_MIB,
        "memory grew by {growth} MiB under the attack"
    );
    eprintln!(
        "slow clients: {IDLE} idle + {} slow/half/silent connections; server files {files0} -> peak {peak_files} -> {}; RSS {rss0} MiB -> peak {peak_rss} MiB; slowest good request {slowest:?}; slowloris closed after {:?}, half-closed after {:?}",
        4 * EACH,
        open_files(pid),
        longest(&trickled),
        longest(&halved)
    );
    drop((idle, silent_grpc));
    server.stop();
}
