//! A trait-level receipt printer.

use std::collections::VecDeque;

use async_trait::async_trait;
use outpost_peripherals::event::EventBody;
use outpost_peripherals::printer::{PaperLevel, PrintJob, PrintOp, PrinterStatus, ReceiptPrinter};
use outpost_peripherals::{
    Condition, Device, DeviceCore, DeviceFault, DeviceKind, Health, HealthLevel, HealthReport,
};

use super::{Mock, Model, Step, keep};

/// The printer behind a [`MockPrinter`]: its status and the jobs it printed.
#[derive(Debug)]
pub struct PrinterModel {
    status: PrinterStatus,
    jobs: VecDeque<PrintJob>,
}

impl Model for PrinterModel {
    type Step = Step;
    const NAME: &'static str = "MockPrinter";
}

/// A receipt printer that keeps every job it printed. Each `print` takes the next
/// queued [`Step`] (default: ok); an ok step still refuses, like a real printer, when
/// the modelled status says the paper is out or the cover is open. Clones share it.
/// Counters: `receipts_printed`, `cuts`, `test_pages`.
pub type MockPrinter = Mock<PrinterModel>;

impl MockPrinter {
    /// A working printer, already opened, claimed and enabled.
    pub fn new(id: &str) -> Self {
        Self::build(id, true)
    }

    /// A closed, unclaimed printer, for lifecycle and compliance tests.
    pub fn closed(id: &str) -> Self {
        Self::build(id, false)
    }

    fn build(id: &str, ready: bool) -> Self {
        let model = PrinterModel {
            status: PrinterStatus {
                online: true,
                cover_open: false,
                paper: PaperLevel::Ok,
                drawer_open: false,
                error: false,
            },
            jobs: VecDeque::new(),
        };
        Mock::scripted(id, DeviceKind::ReceiptPrinter, ready, Step::Ok, model)
    }

    /// Set the paper level the printer reports (and acts on).
    pub fn set_paper(&self, paper: PaperLevel) {
        self.state().status.paper = paper;
    }

    /// Open or close the cover.
    pub fn set_cover_open(&self, open: bool) {
        self.state().status.cover_open = open;
    }

    /// The jobs printed, oldest first.
    pub fn printed(&self) -> Vec<PrintJob> {
        self.state().jobs.iter().cloned().collect()
    }

    /// The jobs printed, each rendered as text like the simulator renders receipts.
    pub fn receipts(&self) -> Vec<String> {
        self.state().jobs.iter().map(render).collect()
    }

    fn print_now(&self, job: &PrintJob) -> Result<(), DeviceFault> {
        self.step()?;
        let mut st = self.state();
        if st.status.cover_open {
            return Err(DeviceFault::condition(
                Condition::CoverOpen,
                "printer cover is open",
            ));
        }
        if st.status.paper == PaperLevel::Empty {
            return Err(DeviceFault::condition(
                Condition::PaperEmpty,
                "printer is out of paper",
            ));
        }
        keep(&mut st.jobs, job.clone());
        Ok(())
    }
}

/// A job as text: one line per text line, barcodes and QR codes in brackets.
pub fn render(job: &PrintJob) -> String {
    let mut out = String::new();
    for op in &job.ops {
        match op {
            PrintOp::Text { text, .. } => out.push_str(text),
            PrintOp::Feed { lines } => {
                out.extend(std::iter::repeat_n('\n', usize::from(*lines)));
            }
            PrintOp::Barcode { kind, data, .. } => out.push_str(&format!("[{kind:?} {data}]\n")),
            PrintOp::Qr { data, .. } => out.push_str(&format!("[QR {data}]\n")),
            PrintOp::Cut { .. } => {}
        }
    }
    out.trim_end().to_owned()
}

#[async_trait]
impl Device for MockPrinter {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        self.open_device()
    }

    async fn close(&self) {
        self.close_device();
    }

    async fn check_health(&self, level: HealthLevel) -> HealthReport {
        self.checked_health("printer", |m| {
            let status = m.status;
            if status.cover_open || status.paper == PaperLevel::Empty {
                HealthReport::now(Health::Failed, "mock printer cannot print")
            } else if status.paper == PaperLevel::NearEnd {
                HealthReport::now(Health::Degraded, "mock printer paper near end")
            } else {
                if level == HealthLevel::External {
                    self.core.count("test_pages", 1);
                }
                HealthReport::now(Health::Ok, "mock printer ready")
            }
        })
    }
}

#[async_trait]
impl ReceiptPrinter for MockPrinter {
    async fn print(&self, job: &PrintJob) -> Result<(), DeviceFault> {
        let result = self.record(self.print_now(job));
        if result.is_ok() {
            let cuts = job
                .ops
                .iter()
                .filter(|op| matches!(op, PrintOp::Cut { .. }))
                .count();
            self.core.count("receipts_printed", 1);
            self.core.count("cuts", cuts as u64);
            self.core.events().publish(EventBody::OutputComplete {
                job: job.id.clone(),
            });
        }
        result
    }

    async fn status(&self) -> Result<PrinterStatus, DeviceFault> {
        let result = self.core.ensure_ready().map(|()| self.state().status);
        self.record(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::printer::TextStyle;
    use outpost_peripherals::{DeviceError, ErrorKind};

    fn job(id: &str) -> PrintJob {
        PrintJob {
            id: id.into(),
            ops: vec![
                PrintOp::Text {
                    text: "hello\n".into(),
                    style: TextStyle::default(),
                },
                PrintOp::Cut { partial: false },
            ],
        }
    }

    #[tokio::test]
    async fn queued_faults_come_first_then_it_prints() {
        let p = MockPrinter::new("p");
        p.expect([Step::Fail(DeviceFault::timeout("slow"))]);
        assert_eq!(
            p.print(&job("a")).await.unwrap_err().kind(),
            ErrorKind::Timeout
        );
        p.print(&job("a")).await.unwrap();
        assert_eq!(p.receipts(), vec!["hello".to_owned()]);
        assert_eq!(p.core().statistics().counters["cuts"], 1);
        p.done();
    }

    #[tokio::test]
    async fn paper_out_refuses_until_reloaded() {
        let p = MockPrinter::new("p");
        p.set_paper(PaperLevel::Empty);
        let f = p.print(&job("a")).await.unwrap_err();
        assert_eq!(f.device_condition(), Some(Condition::PaperEmpty));
        p.set_paper(PaperLevel::Ok);
        p.print(&job("a")).await.unwrap();
        assert_eq!(p.printed().len(), 1);
    }

    #[test]
    #[should_panic(expected = "never happened")]
    fn an_unused_step_fails_done() {
        let p = MockPrinter::new("p");
        p.expect([Step::Ok]);
        p.done();
    }
}
