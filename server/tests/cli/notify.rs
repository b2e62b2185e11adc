//! The real binary under systemd's notify protocol: a test-bound `NOTIFY_SOCKET`
//! receives `READY=1` once the server serves, then `WATCHDOG=1` pings, and
//! `STOPPING=1` when it stops.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn ready_once_serving_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 1024];
    while got.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() < 3 {
        assert!(Instant::now() < deadline, "no pings: {got:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = got
        .iter()
        .position(|m| m.starts_with("READY=1"))
        .expect("READY=1");
    let first_ping = got.iter().position(|m| m == "WATCHDOG=1").unwrap();
    assert!(ready < first_ping, "{got:?}");
    assert!(got[ready].contains("STATUS=Serving 127.0.0.1:"), "{got:?}");
    // SIGTERM: a graceful stop says so.
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stopping = false;
    while !stopping && Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            stopping = String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1");
        }
    }
    assert!(stopping, "no STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// Run as systemd runs the unit (`OUTPOST_RELEASES` set, the parent pid 1: here an
/// orphan re-parented to init), the server serves: only a server that
/// `outpost-supervisor` started ties its life to its parent's.
#[test]
fn a_server_whose_parent_is_init_serves_when_not_supervised() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("outpost.log");
    let out = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\" >\"$2\" 2>&1 & echo $!")
        .arg(env!("CARGO_BIN_EXE_outpost"))
        .arg(dir.path().join("data"))
        .arg(&log)
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .env("OUTPOST_RELEASES", dir.path().join("opt"))
        .env("OUTPOST_LOG", "info")
        .env_remove("RUST_LOG")
        .env_remove("OUTPOST_SUPERVISED")
        .output()
        .unwrap();
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let listening = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Outpost is listening") {
            break true;
        }
        if text.contains("supervisor is gone") || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    assert!(
        listening,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
