//! The serial scanner driver against the scanner simulator, and the scanner mock,
//! through the compliance suite; then garbage on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outpost_mocks::compliance::scanner::barcode_scanner;
use outpost_mocks::mock::scanner::MockScanner;
use outpost_mocks::sim::scanner::ScannerSim;
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::scanner::{BarcodeScanner, Symbology};
use outpost_peripherals::scanner_serial::{ScannerConfig, SerialScanner};
use outpost_peripherals::{Device, DeviceError, DeviceState, ErrorKind};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn config() -> ScannerConfig {
    ScannerConfig {
        connect_timeout: Duration::from_secs(2),
        frame_timeout: Duration::from_millis(100),
        max_frame: 64,
        ..ScannerConfig::default()
    }
}

async fn ready(sim: &ScannerSim) -> SerialScanner {
    let s =
        SerialScanner::with_connector("scanner-1", Arc::new(sim.connector("scanner-1")), config());
    s.open().await.expect("open");
    s.core().claim().expect("claim");
    s.core().enable().expect("enable");
    s
}

#[tokio::test]
async fn serial_scanner_against_the_simulator_meets_the_scanner_contract() {
    let sim = ScannerSim::new();
    let s =
        SerialScanner::with_connector("scanner-1", Arc::new(sim.connector("scanner-1")), config());
    timeout(LIMIT, barcode_scanner(&s, &sim))
        .await
        .expect("suite in time");
}

#[tokio::test]
async fn mock_scanner_meets_the_scanner_contract() {
    let m = MockScanner::closed("scanner-mock");
    timeout(LIMIT, barcode_scanner(&m, &m))
        .await
        .expect("suite in time");
    m.done();
}

#[tokio::test]
async fn scanner_over_tcp_reads_scans_split_across_writes() {
    let sim = ScannerSim::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("start");
    let addr = sim.local_addr().expect("address").to_string();
    // A generous gap: the two halves of a scan must not look truncated on a busy
    // machine.
    let s = SerialScanner::tcp(
        "scanner-tcp",
        &addr,
        ScannerConfig {
            frame_timeout: Duration::from_secs(2),
            ..config()
        },
    );
    s.open().await.expect("open");
    s.core().claim().unwrap();
    s.core().enable().unwrap();
    assert!(sim.wait_connected(1, Duration::from_secs(5)).await);
    sim.send_raw(b"]Q1https://ex");
    tokio::time::sleep(Duration::from_millis(20)).await;
    sim.send_raw(b".invalid/p?1\r");
    sim.send_raw(b"\n]E496385074\n");
    let a = timeout(LIMIT, s.next_scan()).await.unwrap().unwrap();
    let b = timeout(LIMIT, s.next_scan()).await.unwrap().unwrap();
    assert_eq!(
        (a.data.as_str(), a.symbology),
        ("https://ex.invalid/p?1", Symbology::Qr)
    );
    assert_eq!(
        (b.data.as_str(), b.symbology),
        ("96385074", Symbology::Ean8)
    );
}

/// The proof the issue asks for: a scanner sending garbage is rejected with an
/// error event for every bad frame, nothing crashes, and good scans keep coming.
#[tokio::test]
async fn scanner_garbage_is_rejected_with_error_events_and_the_driver_keeps_going() {
    let sim = ScannerSim::new();
    let s = ready(&sim).await;
    let mut rx = s.core().events().subscribe();
    let mut noise = Vec::new();
    noise.extend(b"\xff\xfe\xfd\xfc\r\n"); // not UTF-8
    noise.extend(vec![b'9'; 200]); // over-long
    noise.extend(b"\r\n]E0123\r\n"); // EAN-13 of three digits
    noise.extend(b"\x1b[2J\x07\r\n"); // terminal control bytes
    noise.extend(b"]E04006381333931\r\n"); // good
    noise.extend(b"]C0cut off"); // truncated: silence follows
    sim.send_raw(&noise);
    let good = timeout(LIMIT, s.next_scan()).await.unwrap().unwrap();
    assert_eq!(good.data, "4006381333931");
    let mut errors = 0;
    let mut scans = 0;
    timeout(LIMIT, async {
        while errors < 5 {
            match rx.recv().await.unwrap().body {
                EventBody::Error { kind, .. } => {
                    assert_eq!(kind, ErrorKind::Failure);
                    errors += 1;
                }
                EventBody::Data {
                    data: DataEvent::Scan(_),
                } => scans += 1,
                _ => {}
            }
        }
    })
    .await
    .expect("five rejections raised");
    assert_eq!(scans, 1);
    let stats = s.core().statistics();
    assert_eq!(stats.counters["scans_rejected"], 5);
    assert_eq!(
        s.core().state(),
        DeviceState::Idle,
        "still open after garbage"
    );
    sim.scan("]A0", "AFTER-NOISE");
    let after = timeout(LIMIT, s.next_scan()).await.unwrap().unwrap();
    assert_eq!(
        (after.data.as_str(), after.symbology),
        ("AFTER-NOISE", Symbology::Code39)
    );
}

#[tokio::test]
async fn a_dropped_link_fails_waiting_callers_as_offline_and_reopens() {
    let sim = ScannerSim::new();
    let s = ready(&sim).await;
    let waiting = {
        let s = s.clone();
        tokio::spawn(async move { s.next_scan().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.drop_connections();
    let r = timeout(LIMIT, waiting).await.unwrap().unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Offline);
    assert_eq!(s.core().state(), DeviceState::Closed);
    s.open().await.expect("reopen");
    sim.scan("]E0", "4006381333931");
    let scan = timeout(LIMIT, s.next_scan()).await.unwrap().unwrap();
    assert_eq!(scan.symbology, Symbology::Ean13);
    assert_eq!(s.core().statistics().reconnects, 1);
}

/// Wait (bounded) until the driver's counter `name` reaches `n`.
async fn wait_for(s: &SerialScanner, name: &str, n: u64) {
    for _ in 0..500 {
        if s.core()
            .statistics()
            .counters
            .get(name)
            .copied()
            .unwrap_or(0)
            >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("counter {name} never reached {n}");
}

#[tokio::test]
async fn scans_while_disabled_are_discarded_and_a_full_queue_drops_the_oldest() {
    let sim = ScannerSim::new();
    let s = SerialScanner::with_connector(
        "scanner-q",
        Arc::new(sim.connector("q")),
        ScannerConfig {
            queue: 2,
            ..config()
        },
    );
    s.open().await.unwrap();
    s.core().claim().unwrap();
    sim.scan("]A0", "WHILE-DISABLED");
    wait_for(&s, "scans_discarded", 1).await;
    s.core().enable().unwrap();
    for i in 0..3 {
        sim.scan("]A0", &format!("S{i}"));
    }
    wait_for(&s, "scans", 3).await;
    let a = s.next_scan().await.unwrap();
    let b = s.next_scan().await.unwrap();
    assert_eq!((a.data.as_str(), b.data.as_str()), ("S1", "S2"));
    let c = s.core().statistics().counters;
    assert_eq!((c["scans_discarded"], c["scans_overflowed"]), (1, 1));
}
