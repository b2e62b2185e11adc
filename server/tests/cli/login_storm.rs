//! Login under attack, on the real binary: 500 parallel wrong logins against `outpost
//! demo` with production argon2 (19 MiB per password check). The server's peak memory
//! stays bounded, nothing answers 5xx, at most `login_max_failures` guesses at one
//! account are checked in a window, and the right password works once the window has
//! passed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// argon2 runs at once (`login_hash_permits`).
const PERMITS: u64 = 2;
/// Logins that may wait for a permit (`login_hash_queue`).
const QUEUE: u64 = 8;
/// `login_max_failures` per (username, address).
const MAX_FAILURES: usize = 5;
/// `login_window_secs`: longer than the storm takes (a few seconds: 10 argon2 runs, 2
/// at a time), short enough to wait out.
const WINDOW_SECS: u64 = 8;
/// Parallel wrong logins.
const STORM: usize = 500;
/// Of which against the demo's real account (the rest: unknown usernames, which cost
/// the same argon2 work).
const AGAINST_THE_ACCOUNT: usize = 100;
/// Memory of one production argon2 run (m = 19 MiB), plus a MiB for its bookkeeping.
const ARGON2_MIB: u64 = 20;

/// `outpost demo` on loopback port 0, its output drained into a bounded tail.
struct Demo {
    child: Child,
    base: String,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Demo {
    fn start(data: &std::path::Path, config: &std::path::Path, env: &[(&str, &str)]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["demo", "--products", "50", "--listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env("OUTPOST_LOG", "info")
            .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let (tail, tx) = (tail.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains("Outpost is listening") {
                        let v: Value = serde_json::from_str(&line).unwrap_or_default();
                        let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                    }
                    let mut t = tail.lock().unwrap();
                    if t.len() >= 200 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        drop(tx);
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => Demo {
                child,
                base: format!("http://{addr}"),
                tail,
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = tail.lock().unwrap();
                panic!(
                    "outpost demo did not log its address:\n{}",
                    Vec::from(tail.clone()).join("\n")
                );
            }
        }
    }

    /// `VmHWM` (peak resident memory) or `VmRSS` of the server, in KiB.
    fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.child.id()))
    }

    fn logs(&self) -> String {
        Vec::from(self.tail.lock().unwrap().clone()).join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One login: the status, the `code` of an error body, and `Retry-After`.
async fn login(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> (u16, String, Option<u64>) {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body: Value = r.json().await.unwrap_or_default();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        retry,
    )
}

// The `tpm` target runs the same storm on a TPM-sealed unit (tests/tpm/theft.rs).
#[cfg(not(feature = "tpm"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_logins_keep_memory_bounded_and_the_right_password_works_after_the_window() {
    storm(&[]).await;
}

/// The storm against `outpost demo` started with `env` (the sealer's variables).
#[cfg_attr(feature = "tpm", allow(dead_code))]
pub(crate) async fn storm(env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("outpost.toml");
    // Production hashing, so each check really takes 19 MiB. The per-address limit is
    // lifted (every request comes from 127.0.0.1 here), so that the hashing gate, not
    // the throttle, is what bounds memory under a storm of distinct usernames.
    std::fs::write(
        &config,
        format!(
            "[security]\npassword_hashing = \"production\"\nlogin_max_failures = {MAX_FAILURES}\n\
             login_window_secs = {WINDOW_SECS}\nlogin_max_failures_per_source = 100000\n\
             login_hash_permits = {PERMITS}\nlogin_hash_queue = {QUEUE}\n"
        ),
    )
    .unwrap();
    let demo = Demo::start(&data, &config, env);
    let creds: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo-credentials.json")).unwrap())
            .unwrap();
    let user = creds["technician"]["username"].as_str().unwrap().to_owned();
    let password = creds["technician"]["password"].as_str().unwrap().to_owned();
    let base = demo.base.clone();

    // The peak so far: start-up, the demo seed and the demo account's own argon2 hash.
    let baseline_kib = demo.memory_kib("VmHWM");
    // What the storm may add: PERMITS argon2 runs at once; 500 connections' buffers
    // and request state (well under 64 KiB each: 32 MiB); 32 MiB of allocator slack.
    // Without the gate every request hashes at once: 500 x 19 MiB.
    let bound_kib = baseline_kib + (PERMITS * ARGON2_MIB + 32 + 32) * 1024;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..STORM {
        let (http, base) = (http.clone(), base.clone());
        let username = if i % (STORM / AGAINST_THE_ACCOUNT) == 0 {
            user.clone()
        } else {
            format!("storm-{i}")
        };
        tasks.spawn(async move {
            let answer = login(&http, &base, &username, "a wrong password, guessed").await;
            (username, answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.unwrap());
    }
    let storm_secs = started.elapsed().as_secs_f64();
    let peak_kib = demo.memory_kib("VmHWM");
    let rss_kib = demo.memory_kib("VmRSS");

    let count = |f: &dyn Fn(&str, u16, &str) -> bool| {
        answers.iter().filter(|(u, (s, c, _))| f(u, *s, c)).count()
    };
    let summary = format!(
        "{} answers in {storm_secs:.1} s: {} 401, {} 429 (throttle or queue); peak RSS {} MiB \
         (baseline {} MiB, bound {} MiB), RSS now {} MiB",
        answers.len(),
        count(&|_, s, _| s == 401),
        count(&|_, s, _| s == 429),
        peak_kib / 1024,
        baseline_kib / 1024,
        bound_kib / 1024,
        rss_kib / 1024,
    );
    eprintln!("{summary}");
    assert_eq!(answers.len(), STORM);
    for (u, (status, code, retry)) in &answers {
        match status {
            401 => assert_eq!(code, "unauthorized", "{u}"),
            429 => {
                assert_eq!(code, "rate_limited", "{u}");
                assert!(retry.is_some_and(|s| s >= 1), "429 without Retry-After");
            }
            other => panic!("{u}: {other} {code}: {summary}\n{}", demo.logs()),
        }
    }
    assert!(
        count(&|_, s, _| s == 401) >= 1,
        "no password was checked: {summary}"
    );
    // Unknown usernames are each tried once and the address is not limited: their
    // 429s are the hashing queue's.
    assert!(
        count(&|u, s, _| u != user && s == 429) >= 1,
        "a full queue never refused: {summary}"
    );
    let checked_on_the_account = count(&|u, s, _| u == user && s == 401);
    assert!(
        checked_on_the_account <= MAX_FAILURES,
        "{checked_on_the_account} guesses at {user} were checked in one window: {summary}"
    );
    assert!(
        peak_kib <= bound_kib,
        "peak RSS over the bound: {summary}\n{}",
        demo.logs()
    );

    // Guess on until the account is throttled (with a second or more of its window
    // left); then even the right password waits.
    let mut retry_after = None;
    for _ in 0..3 * (MAX_FAILURES + 1) {
        match login(&http, &base, &user, "another wrong password").await {
            (401, _, _) => {}
            (429, _, Some(secs)) if secs >= 2 => {
                retry_after = Some(secs);
                break;
            }
            (429, _, Some(secs)) => tokio::time::sleep(Duration::from_secs(secs)).await,
            other => panic!("{other:?}: {}", demo.logs()),
        }
    }
    let retry_after = retry_after.expect("the account was never throttled");
    assert!(retry_after <= WINDOW_SECS, "{retry_after}");
    let (status, code, _) = login(&http, &base, &user, &password).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));

    // Once the window has passed, the right password logs in.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(500)).await;
    let (status, code, _) = login(&http, &base, &user, &password).await;
    assert_eq!(status, 200, "{code}: {}", demo.logs());
}
