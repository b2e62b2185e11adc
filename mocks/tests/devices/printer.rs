//! The ESC/POS driver against the printer simulator, and the printer and drawer
//! mocks, through the compliance suite; then faults mid-sale.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outpost_mocks::compliance::printer::sample_job;
use outpost_mocks::compliance::{drawer::cash_drawer, printer::receipt_printer};
use outpost_mocks::mock::drawer::MockDrawer;
use outpost_mocks::mock::printer::MockPrinter;
use outpost_mocks::sim::escpos::{EscPosSim, SimHandle, SimOptions};
use outpost_peripherals::drawer::CashDrawer;
use outpost_peripherals::escpos::{EscPosConfig, EscPosPrinter};
use outpost_peripherals::printer::{PaperLevel, ReceiptPrinter};
use outpost_peripherals::{Condition, Device, DeviceError, DeviceState, ErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config() -> EscPosConfig {
    EscPosConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(1),
        drawer_poll: Duration::from_millis(20),
        ..EscPosConfig::default()
    }
}

async fn sim(opts: SimOptions) -> SimHandle {
    EscPosSim::start(local(), opts)
        .await
        .expect("start the simulator")
}

/// A simulator and an open, claimed and enabled driver on it.
async fn ready() -> (SimHandle, EscPosPrinter) {
    let sim = sim(SimOptions::default()).await;
    let p = EscPosPrinter::tcp("printer-1", &sim.local_addr().to_string(), config());
    p.open().await.expect("open");
    p.core().claim().expect("claim");
    p.core().enable().expect("enable");
    (sim, p)
}

#[tokio::test]
async fn escpos_driver_against_the_simulator_meets_the_printer_contract() {
    let sim = sim(SimOptions::default()).await;
    let p = EscPosPrinter::tcp("printer-1", &sim.local_addr().to_string(), config());
    timeout(LIMIT, receipt_printer(&p, &sim))
        .await
        .expect("suite in time");
    assert!(p.core().statistics().counters["bytes_sent"] > 0);
}

#[tokio::test]
async fn mock_printer_meets_the_printer_contract() {
    let p = MockPrinter::closed("printer-mock");
    timeout(LIMIT, receipt_printer(&p, &p))
        .await
        .expect("suite in time");
    p.done();
}

#[tokio::test]
async fn escpos_drawer_against_the_simulator_meets_the_drawer_contract() {
    let sim = sim(SimOptions::default()).await;
    let p = EscPosPrinter::tcp("printer-1", &sim.local_addr().to_string(), config());
    let d = p.drawer("drawer-1");
    timeout(LIMIT, cash_drawer(&d, &sim))
        .await
        .expect("suite in time");
    assert_eq!(sim.counters().kicks, 1);
}

#[tokio::test]
async fn mock_drawer_meets_the_drawer_contract() {
    let d = MockDrawer::closed("drawer-mock");
    timeout(LIMIT, cash_drawer(&d, &d))
        .await
        .expect("suite in time");
    d.done();
}

#[tokio::test]
async fn drawer_and_printer_share_one_connection() {
    let (sim, p) = ready().await;
    let d = p.drawer("drawer-1");
    d.open().await.unwrap();
    d.core().claim().unwrap();
    d.core().enable().unwrap();
    let job = sample_job("r1", "Sale 1");
    let (printed, kicked) = tokio::join!(p.print(&job), d.open_drawer());
    printed.unwrap();
    kicked.unwrap();
    assert!(sim.drawer_open());
    assert!(p.status().await.unwrap().drawer_open);
    assert_eq!(sim.counters().connections, 1);
}

#[tokio::test]
async fn paper_out_mid_sale_refuses_and_the_receipt_reprints_after_new_paper() {
    let (sim, p) = ready().await;
    sim.load_paper(0);
    let job = sample_job("receipt:sale-1", "Sale 1");
    let f = p.print(&job).await.unwrap_err();
    assert_eq!(f.kind(), ErrorKind::DeviceSpecific);
    assert_eq!(f.device_condition(), Some(Condition::PaperEmpty));
    assert_eq!(p.core().state(), DeviceState::Error);
    assert!(sim.receipts().is_empty());
    sim.load_paper(500);
    p.print(&job).await.unwrap();
    assert_eq!(p.core().state(), DeviceState::Idle);
    assert_eq!(sim.receipts().len(), 1);
    assert!(sim.last_receipt().unwrap().contains("Sale 1"));
}

#[tokio::test]
async fn paper_running_out_during_a_job_is_an_error_and_the_torn_receipt_is_not_kept() {
    let (sim, p) = ready().await;
    sim.paper_out_after(3);
    let job = sample_job("receipt:sale-2", "Sale 2");
    let f = p.print(&job).await.unwrap_err();
    assert_eq!(f.device_condition(), Some(Condition::PaperEmpty), "{f:?}");
    assert!(f.message().contains("reprint"), "{f}");
    assert_eq!(sim.counters().torn, 1);
    assert!(sim.receipts().is_empty());
    sim.load_paper(500);
    p.print(&job).await.unwrap();
    assert_eq!(sim.receipts().len(), 1);
    assert!(sim.last_receipt().unwrap().contains("Total 1,50 €"));
}

#[tokio::test]
async fn cover_open_mid_sale_refuses_and_the_receipt_reprints_after_closing() {
    let (sim, p) = ready().await;
    sim.set_cover_open(true);
    let job = sample_job("receipt:sale-3", "Sale 3");
    let f = p.print(&job).await.unwrap_err();
    assert_eq!(f.device_condition(), Some(Condition::CoverOpen));
    let st = p.status().await.unwrap();
    assert!(st.cover_open && !st.online);
    sim.set_cover_open(false);
    p.print(&job).await.unwrap();
    assert_eq!(sim.receipts().len(), 1);
}

#[tokio::test]
async fn status_split_into_single_bytes_still_parses() {
    let (sim, p) = ready().await;
    sim.set_split_replies(true);
    sim.load_paper(50);
    let st = p.status().await.unwrap();
    assert_eq!(st.paper, PaperLevel::NearEnd);
    p.print(&sample_job("r", "Split")).await.unwrap();
    assert_eq!(sim.receipts().len(), 1);
}

#[tokio::test]
async fn a_silent_printer_times_out_and_reopening_recovers() {
    let (sim, p) = ready().await;
    sim.set_silent(true);
    let f = timeout(LIMIT, p.print(&sample_job("r", "Silent")))
        .await
        .expect("the driver's own timeout ends the wait")
        .unwrap_err();
    assert_eq!(f.kind(), ErrorKind::Timeout, "{f:?}");
    assert_eq!(p.core().state(), DeviceState::Closed);
    assert!(
        sim.receipts().is_empty(),
        "nothing sent after a silent status"
    );
    // Still silent: open fails the same way; answering again: open succeeds.
    assert_eq!(p.open().await.unwrap_err().kind(), ErrorKind::Timeout);
    sim.set_silent(false);
    p.open().await.unwrap();
    p.print(&sample_job("r", "Back")).await.unwrap();
    assert_eq!(sim.receipts().len(), 1);
    assert!(p.core().statistics().reconnects >= 1);
}

#[tokio::test]
async fn a_dropped_connection_mid_job_is_an_error_and_the_next_open_reconnects() {
    let (sim, p) = ready().await;
    // The 9 status query bytes, then a few bytes of the job.
    sim.drop_after_bytes(30);
    let job = sample_job("receipt:sale-4", "Sale 4");
    let f = p.print(&job).await.unwrap_err();
    assert!(
        matches!(f.kind(), ErrorKind::Offline | ErrorKind::Failure),
        "{f:?}"
    );
    assert!(f.message().contains("reprint"), "{f}");
    assert_eq!(p.core().state(), DeviceState::Closed);
    assert!(sim.receipts().is_empty());
    assert_eq!(sim.counters().dropped, 1);
    // Until reopened the printer refuses; open reconnects and the reprint prints.
    assert_eq!(p.print(&job).await.unwrap_err().kind(), ErrorKind::Offline);
    p.open().await.unwrap();
    p.print(&job).await.unwrap();
    assert_eq!(sim.receipts().len(), 1);
    assert_eq!(sim.counters().connections, 2);
    assert_eq!(p.core().statistics().reconnects, 1);
}

#[tokio::test]
async fn the_serial_transport_prints_through_a_pseudo_terminal() {
    use tokio_serial::SerialPort;
    let sim = sim(SimOptions::default()).await;
    let (master, slave) = tokio_serial::SerialStream::pair().expect("a pseudo-terminal pair");
    let path = slave.name().expect("the pty has a path");
    sim.attach(master);
    let p = EscPosPrinter::serial("printer-serial", &path, 19200, config());
    p.open().await.expect("open the serial printer");
    p.core().claim().unwrap();
    p.core().enable().unwrap();
    p.print(&sample_job("serial-1", "Over serial"))
        .await
        .unwrap();
    assert!(sim.last_receipt().unwrap().contains("Over serial"));
    assert!(p.core().info().transport.starts_with("serial://"));
    drop(slave);
}

#[tokio::test]
async fn a_cancelled_print_never_corrupts_the_next_command() {
    let (sim, p) = ready().await;
    // Cancel a print while it waits for a status answer that will never come.
    sim.set_silent(true);
    let cancelled = timeout(
        Duration::from_millis(100),
        p.print(&sample_job("r", "Cancelled")),
    )
    .await;
    assert!(cancelled.is_err(), "the print was still waiting");
    assert_eq!(p.core().state(), DeviceState::Idle, "not left busy");
    sim.set_silent(false);
    // The link is out of step: the next command drops it instead of reading the
    // stale answer, and a reopen gives a clean link.
    assert_eq!(p.status().await.unwrap_err().kind(), ErrorKind::Offline);
    p.open().await.unwrap();
    p.print(&sample_job("r", "After")).await.unwrap();
    assert!(sim.last_receipt().unwrap().contains("After"));
}

#[tokio::test]
async fn the_simulator_parses_a_job_that_arrives_one_byte_at_a_time() {
    use outpost_peripherals::escpos::{EncodeOptions, encode};
    let sim = sim(SimOptions::default()).await;
    let job = sample_job("bytes", "Byte by byte");
    let bytes = encode(&job, &EncodeOptions::default()).unwrap();
    let mut s = tokio::net::TcpStream::connect(sim.local_addr())
        .await
        .unwrap();
    s.set_nodelay(true).unwrap();
    for b in &bytes {
        s.write_all(&[*b]).await.unwrap();
    }
    // The status answer arrives only after every byte before it was handled.
    s.write_all(&[0x10, 0x04, 0x01]).await.unwrap();
    let mut answer = [0u8; 1];
    timeout(LIMIT, s.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer[0] & 0x93, 0x12);
    let receipt = sim.last_receipt().unwrap();
    for want in [
        "OUTPOST",
        "Byte by byte",
        "Total 1,50 €",
        "[EAN13 4006381333931]",
        "[QR https://receipt.invalid/bytes]",
    ] {
        assert!(receipt.contains(want), "{want:?} missing from:\n{receipt}");
    }
    assert_eq!(sim.counters().skipped, 0);
}

#[tokio::test]
async fn an_unreachable_printer_fails_to_open_as_offline() {
    // Bind then close a port, so nothing listens there.
    let l = TcpListener::bind(local()).await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let p = EscPosPrinter::tcp("p", &addr.to_string(), config());
    assert_eq!(p.open().await.unwrap_err().kind(), ErrorKind::Offline);
    assert_eq!(p.core().state(), DeviceState::Closed);
}

#[tokio::test]
async fn a_printer_answering_garbage_gets_a_clear_error() {
    let l = TcpListener::bind(local()).await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut q = [0u8; 9];
        s.read_exact(&mut q).await.unwrap();
        // Endless bytes that are not status answers.
        let _ = timeout(Duration::from_secs(2), async {
            loop {
                if s.write_all(&[0xAA; 256]).await.is_err() {
                    break;
                }
            }
        })
        .await;
    });
    let p = EscPosPrinter::tcp("p", &addr.to_string(), config());
    let f = p.open().await.unwrap_err();
    assert_eq!(f.kind(), ErrorKind::Failure, "{f:?}");
    assert!(f.message().contains("not status answers"), "{f}");
    server.abort();
}

#[tokio::test]
async fn a_job_the_encoder_refuses_sends_nothing() {
    let (sim, p) = ready().await;
    let mut job = sample_job("bad", "Bad barcode");
    job.ops
        .push(outpost_peripherals::printer::PrintOp::Barcode {
            kind: outpost_peripherals::printer::BarcodeKind::Ean13,
            data: "12".into(),
            hri: false,
        });
    let before = sim.counters().bytes_received;
    let f = p.print(&job).await.unwrap_err();
    assert_eq!(f.kind(), ErrorKind::Illegal);
    assert_eq!(sim.counters().bytes_received, before);
}

#[tokio::test]
async fn external_health_check_prints_a_test_page() {
    let (sim, p) = ready().await;
    let r = p
        .check_health(outpost_peripherals::HealthLevel::External)
        .await;
    assert_eq!(r.health, outpost_peripherals::Health::Ok, "{r:?}");
    assert!(sim.last_receipt().unwrap().contains("OUTPOST TEST PAGE"));
    assert_eq!(p.core().statistics().counters["test_pages"], 1);
    sim.load_paper(10);
    let r = p
        .check_health(outpost_peripherals::HealthLevel::Internal)
        .await;
    assert_eq!(r.health, outpost_peripherals::Health::Degraded, "{r:?}");
}

/// Receipts per second through the driver to the simulator over loopback TCP.
/// Run: `cargo test -p outpost-mocks --release --test devices -- --ignored --nocapture receipts_per_second`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand, prints a number"]
async fn receipts_per_second() {
    const N: u32 = 2000;
    let (sim, p) = ready().await;
    sim.load_paper(u64::MAX / 2);
    let job = sample_job("bench", "Benchmark receipt");
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..N {
            p.print(&job).await.unwrap();
        }
        rates.push(f64::from(N) / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let bytes = p.core().statistics().counters["bytes_sent"] / u64::from(3 * N);
    println!(
        "escpos receipts/s: median {:.0} of {:?} ({N} receipts per run, {bytes} bytes each)",
        rates[1],
        rates.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    assert_eq!(sim.counters().cuts, u64::from(3 * N));
}
