//! What every [`ReceiptPrinter`] must do.

use std::time::Duration;

use outpost_peripherals::event::{DeviceEvent, EventBody};
use outpost_peripherals::printer::{
    Align, BarcodeKind, PaperLevel, PrintJob, PrintOp, ReceiptPrinter, TextStyle,
};
use outpost_peripherals::{Condition, DeviceError, DeviceState, ErrorKind, Health, HealthLevel};
use tokio::sync::broadcast;

use crate::mock::printer::MockPrinter;
use crate::sim::escpos::SimHandle;

/// How the suite makes a printer's world misbehave and sees what it printed.
pub trait PrinterHarness: Send + Sync {
    /// The roll runs out.
    fn paper_out(&self);
    /// A full roll goes in.
    fn paper_in(&self);
    /// The cover opens or closes.
    fn set_cover_open(&self, open: bool);
    /// What came out, as text, one entry per receipt, oldest first.
    fn receipts(&self) -> Vec<String>;
}

impl PrinterHarness for SimHandle {
    fn paper_out(&self) {
        self.load_paper(0);
    }
    fn paper_in(&self) {
        self.load_paper(10_000);
    }
    fn set_cover_open(&self, open: bool) {
        SimHandle::set_cover_open(self, open);
    }
    fn receipts(&self) -> Vec<String> {
        SimHandle::receipts(self)
    }
}

impl PrinterHarness for MockPrinter {
    fn paper_out(&self) {
        self.set_paper(PaperLevel::Empty);
    }
    fn paper_in(&self) {
        self.set_paper(PaperLevel::Ok);
    }
    fn set_cover_open(&self, open: bool) {
        MockPrinter::set_cover_open(self, open);
    }
    fn receipts(&self) -> Vec<String> {
        MockPrinter::receipts(self)
    }
}

/// A receipt whose text is `line`, with a barcode, a QR code and a cut.
pub fn sample_job(id: &str, line: &str) -> PrintJob {
    PrintJob {
        id: id.to_owned(),
        ops: vec![
            PrintOp::Text {
                text: "OUTPOST\n".into(),
                style: TextStyle {
                    bold: true,
                    double_width: true,
                    align: Align::Center,
                    ..TextStyle::default()
                },
            },
            PrintOp::Text {
                text: format!("{line}\nTotal 1,50 €\n"),
                style: TextStyle::default(),
            },
            PrintOp::Barcode {
                kind: BarcodeKind::Ean13,
                data: "4006381333931".into(),
                hri: true,
            },
            PrintOp::Qr {
                data: format!("https://receipt.invalid/{id}"),
                module: 4,
            },
            PrintOp::Cut { partial: true },
        ],
    }
}

fn counter(p: &impl ReceiptPrinter, name: &str) -> u64 {
    p.core()
        .statistics()
        .counters
        .get(name)
        .copied()
        .unwrap_or(0)
}

#[track_caller]
fn expect_kind<T: std::fmt::Debug>(
    r: Result<T, outpost_peripherals::DeviceFault>,
    kind: ErrorKind,
    rule: &str,
) -> outpost_peripherals::DeviceFault {
    match r {
        Ok(v) => panic!("{rule}: expected a {kind:?} fault, got Ok({v:?})"),
        Err(f) => {
            assert_eq!(f.kind(), kind, "{rule}: wrong kind in {f:?}");
            f
        }
    }
}

/// Drain what the subscription has now, bounded.
fn drain(rx: &mut broadcast::Receiver<DeviceEvent>) -> Vec<DeviceEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
        if out.len() > 10_000 {
            break;
        }
    }
    out
}

/// Check the receipt printer contract. `p` must be closed and unclaimed, with a
/// working printer behind it; `h` controls that printer.
///
/// The rules: commands are refused before open (offline) and before claim and
/// enable (illegal); an open printer reports its status; a job prints and its text
/// comes out whole, with an output-complete event and the `receipts_printed` and
/// `cuts` counters; a printer out of paper or with its cover open refuses with the
/// device-specific `PaperEmpty` or `CoverOpen`, prints nothing, and prints the same
/// job again after recovery; failures are counted and raised as error events; events
/// are numbered without gaps; an internal health check of a working printer is ok;
/// a closed printer refuses again.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn receipt_printer<P: ReceiptPrinter>(p: &P, h: &dyn PrinterHarness) {
    let job1 = sample_job("compliance-1", "Compliance receipt one");
    let job2 = sample_job("compliance-2", "Compliance receipt two");

    expect_kind(
        p.print(&job1).await,
        ErrorKind::Offline,
        "print before open",
    );
    expect_kind(p.status().await, ErrorKind::Offline, "status before open");

    let mut events = p.core().events().subscribe();
    p.open().await.expect("open a working printer");
    assert_ne!(p.core().state(), DeviceState::Closed, "state after open");
    expect_kind(
        p.print(&job1).await,
        ErrorKind::Illegal,
        "print before claim",
    );
    p.core().claim().expect("claim");
    p.core().enable().expect("enable");

    let st = p.status().await.expect("status of a working printer");
    assert!(
        st.online && !st.cover_open,
        "working printer status: {st:?}"
    );
    assert_ne!(st.paper, PaperLevel::Empty, "working printer has paper");

    let before = p.core().statistics();
    let printed = h.receipts().len();
    p.print(&job1).await.expect("print a job");
    let receipts = h.receipts();
    assert_eq!(receipts.len(), printed + 1, "one job, one receipt");
    let last = receipts.last().map(String::as_str).unwrap_or("");
    for want in [
        "OUTPOST",
        "Compliance receipt one",
        "Total 1,50 €",
        "4006381333931",
    ] {
        assert!(last.contains(want), "receipt lacks {want:?}:\n{last}");
    }
    assert_eq!(
        counter(p, "receipts_printed"),
        1,
        "receipts_printed counted"
    );
    assert_eq!(counter(p, "cuts"), 1, "cuts counted");
    assert!(
        p.core().statistics().commands_ok > before.commands_ok,
        "commands_ok counted"
    );
    let got = drain(&mut events);
    assert!(
        got.iter().any(|e| e.body
            == EventBody::OutputComplete {
                job: "compliance-1".into()
            }),
        "output-complete event for the job: {got:?}"
    );

    // Paper out: refused as device-specific PaperEmpty, nothing printed.
    h.paper_out();
    let st = p.status().await.expect("status of a printer out of paper");
    assert_eq!(st.paper, PaperLevel::Empty, "status shows paper out");
    let failed = p.core().statistics().commands_failed;
    let f = expect_kind(p.print(&job2).await, ErrorKind::DeviceSpecific, "paper out");
    assert_eq!(f.device_condition(), Some(Condition::PaperEmpty), "{f:?}");
    assert_eq!(
        h.receipts().len(),
        printed + 1,
        "nothing printed without paper"
    );
    assert!(
        p.core().statistics().commands_failed > failed,
        "failure counted"
    );
    // Recovery: the same job prints.
    h.paper_in();
    p.print(&job2).await.expect("reprint after new paper");
    let receipts = h.receipts();
    assert_eq!(receipts.len(), printed + 2, "reprint printed once");
    assert!(
        receipts
            .last()
            .is_some_and(|r| r.contains("Compliance receipt two")),
        "reprinted receipt whole"
    );

    // Cover open: refused as device-specific CoverOpen.
    h.set_cover_open(true);
    assert!(p.status().await.expect("status with cover open").cover_open);
    let f = expect_kind(
        p.print(&job1).await,
        ErrorKind::DeviceSpecific,
        "cover open",
    );
    assert_eq!(f.device_condition(), Some(Condition::CoverOpen), "{f:?}");
    h.set_cover_open(false);
    p.print(&job1).await.expect("print after closing the cover");
    assert_eq!(counter(p, "receipts_printed"), 3, "three receipts printed");
    assert_eq!(h.receipts().len(), printed + 3, "three receipts came out");

    let got = drain(&mut events);
    for cond in [Condition::PaperEmpty, Condition::CoverOpen] {
        assert!(
            got.iter().any(|e| matches!(
                e.body,
                EventBody::Error { kind: ErrorKind::DeviceSpecific, condition: Some(c), .. } if c == cond
            )),
            "error event for {cond}: {got:?}"
        );
    }
    assert!(
        got.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "events numbered without gaps: {:?}",
        got.iter().map(|e| e.seq).collect::<Vec<_>>()
    );

    let report = p.check_health(HealthLevel::Internal).await;
    assert_eq!(
        report.health,
        Health::Ok,
        "health of a working printer: {report:?}"
    );
    assert_eq!(p.core().health(), report, "health report stored");

    p.close().await;
    assert_eq!(p.core().state(), DeviceState::Closed, "state after close");
    expect_kind(
        p.print(&job1).await,
        ErrorKind::Offline,
        "print after close",
    );
    let report = tokio::time::timeout(
        Duration::from_secs(5),
        p.check_health(HealthLevel::Internal),
    )
    .await
    .expect("health check of a closed printer answers");
    assert_eq!(report.health, Health::Failed, "health of a closed printer");
}
