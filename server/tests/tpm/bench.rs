//! Start-up-to-serving time of `outpost serve` with the TPM sealer on swtpm against the
//! software sealer, for BENCHMARKS.md; `#[ignore]`d so CI stays short. Run:
//! `TSS2_LOG=all+none cargo test -p outpost-server --features tpm --release --test tpm -- --ignored --nocapture start_up`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outpost_security::testing::Swtpm;

/// `outpost serve` on `dir` with `env`; returns the time from spawn to the first
/// `200` on `/healthz`, then stops it with SIGTERM and waits for it to exit.
fn start_to_serving(dir: &Path, env: &[(&str, String)]) -> Duration {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(addr.to_string())
        .env_remove("OUTPOST_ALLOW_SOFTWARE_SEALER")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("OUTPOST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // No readiness event crosses the process boundary but the port itself: poll it
    // every millisecond, for at most 30 s.
    let mut served = None;
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(mut s) = TcpStream::connect(addr) {
            s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && &head[9..12] == b"200" {
                served = Some(start.elapsed());
                break;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "outpost serve exited");
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
    served.expect("outpost serve did not answer /healthz within 30 s")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore]
fn start_up_to_serving_tpm_vs_software() {
    let tpm = Swtpm::start();
    let tpm_dir = tempfile::tempdir().unwrap();
    let sw_dir = tempfile::tempdir().unwrap();
    let tpm_env = [
        ("OUTPOST_SEALER", "tpm".to_owned()),
        ("OUTPOST_TPM_TCTI", tpm.tcti()),
    ];
    let sw_env = [("OUTPOST_ALLOW_SOFTWARE_SEALER", "1".to_owned())];
    // First starts create and seal the keys; the measured ones unseal, as every start
    // of a store server after its first does.
    start_to_serving(tpm_dir.path(), &tpm_env);
    start_to_serving(sw_dir.path(), &sw_env);
    let (mut tpm_runs, mut sw_runs) = (Vec::new(), Vec::new());
    for _ in 0..11 {
        sw_runs.push(start_to_serving(sw_dir.path(), &sw_env));
        tpm_runs.push(start_to_serving(tpm_dir.path(), &tpm_env));
    }
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("software sealer runs (ms): {}", ms(&sw_runs));
    println!("tpm sealer (swtpm) runs (ms): {}", ms(&tpm_runs));
    println!(
        "start-up to serving /healthz, median of 11 interleaved: software {:.0} ms, tpm on swtpm {:.0} ms",
        median(sw_runs).as_secs_f64() * 1e3,
        median(tpm_runs).as_secs_f64() * 1e3
    );
}
