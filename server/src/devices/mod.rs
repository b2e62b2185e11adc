//! The device registry: every configured device, opened and watched by the
//! supervisor, and the receipt queue checkout prints through.
//!
//! # Layout
//! - `build`: [`Registry::build`], one driver per configured device, by kind.
//! - `demo`: the demo's wire simulators and trait mocks (`sim` and `mock` drivers,
//!   the `demo` feature) and [`demo_devices`].
//! - [`supervisor`]: one task per device: open, reconnect with backoff and jitter,
//!   periodic health checks.
//! - [`receipts`]: the durable reprint queue, the spooler that prints it, and the
//!   receipt-to-ESC/POS-job rendering.
//! - [`inputs`]: scanners' scans (resolved to products, kept for terminals) and
//!   weighing checkout lines on a scale.
//!
//! Checkout asks the registry for "the" printer, drawer, display and payment
//! terminal, and for a scale by id; each is optional, and a missing or failing one degrades only what needs
//! it (`docs/devices.md` has the table).

mod build;
// Without the feature, a stand-in of the same name (at the end of this file) refuses
// `sim` and `mock` entries.
#[cfg(feature = "demo")]
mod demo;
pub mod inputs;
pub mod receipts;
pub mod supervisor;

pub use demo::Sims;
#[cfg(feature = "demo")]
pub use demo::{demo_devices, demo_vending_devices};

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use outpost_peripherals::display::CustomerDisplay;
use outpost_peripherals::drawer::CashDrawer;
use outpost_peripherals::event::EventBody;
use outpost_peripherals::payment::PaymentTerminal;
use outpost_peripherals::printer::ReceiptPrinter;
use outpost_peripherals::scale::Scale;
use outpost_peripherals::scanner::BarcodeScanner;
use outpost_peripherals::sensor::EnvironmentSensor;
use outpost_peripherals::vend::VendDispenser;
use outpost_peripherals::{
    Device, DeviceCore, DeviceKind, DeviceState, Health, HealthLevel, HealthReport, PowerState,
    Statistics,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::devices::DeviceSpec;
use inputs::{ScanFeed, ScanPage, WeighError, WeightView};
use receipts::Spooler;
use supervisor::SupervisorConfig;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The latest error event the device raised (rejected input, lost link, a
/// condition), with its time in ms since the Unix epoch.
pub fn last_event_error(core: &DeviceCore) -> Option<String> {
    last_error_event(core).map(|(m, _)| m)
}

fn last_error_event(core: &DeviceCore) -> Option<(String, u64)> {
    core.events()
        .recent()
        .into_iter()
        .rev()
        .find_map(|e| match e.body {
            EventBody::Error { message, .. } => Some((
                message,
                e.at.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            )),
            _ => None,
        })
}

/// What the supervisor knows about a device beyond its core.
#[derive(Debug, Default, Clone)]
struct Watch {
    last_error: Option<String>,
    last_error_at_ms: u64,
    consecutive_failures: u32,
    next_attempt_at_ms: u64,
}

/// One configured device.
pub struct Entry {
    /// Configured id.
    pub id: String,
    /// What it is.
    pub kind: DeviceKind,
    /// The configured driver name (`escpos-tcp`, `sim`, ...).
    pub driver: String,
    /// The device.
    pub device: Arc<dyn Device>,
    /// Between health checks, when the entry sets it.
    pub health_interval: Option<Duration>,
    /// Wakes the device's supervisor task (a health check asked for over the API).
    pub check_now: Notify,
    /// A std mutex: held for a field update, never across an await.
    watch: Mutex<Watch>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("driver", &self.driver)
            .finish()
    }
}

impl Entry {
    fn new(spec: &DeviceSpec, device: Arc<dyn Device>) -> Self {
        Entry {
            id: spec.id.clone(),
            kind: spec.kind,
            driver: spec.driver.name().into(),
            device,
            health_interval: spec.health_interval,
            check_now: Notify::new(),
            watch: Mutex::new(Watch::default()),
        }
    }

    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a failure to open or a failed health check.
    pub fn note_error(&self, e: String) {
        let mut w = self.watch();
        if w.last_error.as_deref() != Some(e.as_str()) {
            tracing::warn!(device = %self.id, error = %e, "Device not usable.");
        }
        w.last_error = Some(e);
        w.last_error_at_ms = now_ms();
        w.consecutive_failures = w.consecutive_failures.saturating_add(1);
    }

    /// Record that the device works.
    pub fn note_ok(&self) {
        let mut w = self.watch();
        if w.consecutive_failures > 0 {
            tracing::info!(device = %self.id, "Device recovered.");
        }
        w.consecutive_failures = 0;
    }

    fn set_next_attempt(&self, after: Duration) {
        self.watch().next_attempt_at_ms = now_ms() + after.as_millis() as u64;
    }

    /// The device as the API shows it.
    pub fn view(&self, queued_receipts: Option<usize>) -> DeviceView {
        let core = self.device.core();
        let info = core.info();
        let w = self.watch().clone();
        let event = last_error_event(core);
        DeviceView {
            id: self.id.clone(),
            kind: self.kind,
            driver: self.driver.clone(),
            transport: info.transport,
            state: core.state(),
            power: core.power(),
            health: core.health(),
            usable: core.state() != DeviceState::Closed
                && w.consecutive_failures == 0
                && core.health().health != Health::Failed,
            last_error: w.last_error,
            last_error_at_ms: w.last_error_at_ms,
            consecutive_failures: w.consecutive_failures,
            next_attempt_at_ms: w.next_attempt_at_ms,
            statistics: core.statistics(),
            queued_receipts,
            last_event_error_at_ms: event.as_ref().map_or(0, |(_, at)| *at),
            last_event_error: event.map(|(m, _)| m),
        }
    }
}

/// A device as `GET /api/v1/devices` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    /// Configured id.
    pub id: String,
    /// `receipt_printer`, `cash_drawer`, `customer_display`, `payment_terminal`, ...
    #[schema(value_type = String)]
    pub kind: DeviceKind,
    /// Configured driver.
    pub driver: String,
    /// How it is reached (`tcp://10.0.0.5:9100`).
    pub transport: String,
    /// `closed`, `idle`, `busy` or `error`.
    #[schema(value_type = String)]
    pub state: DeviceState,
    /// `unknown`, `online`, `off` or `offline`.
    #[schema(value_type = String)]
    pub power: PowerState,
    /// The latest health check.
    #[schema(value_type = Object)]
    pub health: HealthReport,
    /// Open and passing its health checks.
    pub usable: bool,
    /// The latest failure (kept after recovery, with its time, for the technician).
    pub last_error: Option<String>,
    /// When, ms since the Unix epoch (0: never).
    pub last_error_at_ms: u64,
    /// Failed opens or health checks in a row (0: working).
    pub consecutive_failures: u32,
    /// When the supervisor looks at it next, ms since the Unix epoch.
    pub next_attempt_at_ms: u64,
    /// Counters (commands ok/failed, reconnects, receipts printed, ...).
    #[schema(value_type = Object)]
    pub statistics: Statistics,
    /// Receipt printers: receipts waiting in the reprint queue.
    pub queued_receipts: Option<usize>,
    /// The latest error event the device raised, e.g. a scanner's rejected input
    /// (garbage, a truncated frame) or a lost link. Does not make it unusable.
    pub last_event_error: Option<String>,
    /// When, ms since the Unix epoch (0: never).
    pub last_event_error_at_ms: u64,
}

/// Devices the caller (a test) gives instead of those built from the settings.
#[derive(Default, Clone)]
pub struct InjectedDevices {
    /// The payment terminal; replaces any configured one.
    pub terminal: Option<Arc<dyn PaymentTerminal>>,
}

/// Every configured device and what checkout uses of them.
pub struct Registry {
    entries: Vec<Arc<Entry>>,
    printer: Option<Arc<dyn ReceiptPrinter>>,
    drawer: Option<Arc<dyn CashDrawer>>,
    display: Option<Arc<dyn CustomerDisplay>>,
    payment: Option<Arc<dyn PaymentTerminal>>,
    /// Scales by id, with how long a checkout waits for each to settle.
    scales: Vec<(String, Arc<dyn Scale>, Duration)>,
    scans: Vec<Arc<ScanFeed>>,
    /// The vending machine's dispenser.
    dispenser: Option<Arc<dyn VendDispenser>>,
    /// The vending machine's MDB coin changer.
    changer: Option<Arc<dyn outpost_peripherals::changer::CoinChanger>>,
    /// The vending machine's MDB bill validator.
    validator: Option<Arc<dyn outpost_peripherals::validator::BillValidator>>,
    /// Environment sensors by id.
    sensors: Vec<(String, Arc<dyn EnvironmentSensor>)>,
    store: Arc<crate::store::Store>,
    spooler: Arc<Spooler>,
    supervisor: SupervisorConfig,
    sims: Sims,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("entries", &self.entries)
            .finish()
    }
}

/// Why the registry could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A simulator could not bind its loopback port.
    #[error("cannot start the {what} simulator: {source}")]
    Simulator {
        /// Which.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration asks for something this build cannot do.
    #[error("device {id}: {message}")]
    Unsupported {
        /// The device.
        id: String,
        /// What.
        message: String,
    },
    /// The receipt queue could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What building the registry needs besides the device specs.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Supervisor timings.
    pub supervisor: SupervisorConfig,
    /// Most receipts in the reprint queue.
    pub queue_max: usize,
    /// Receipt width in characters.
    pub receipt_width: usize,
    /// Spooler retry interval while the printer fails.
    pub retry: Duration,
    /// The store's currency (an MDB reader is set up for it).
    pub currency: crate::domain::money::Currency,
}

/// One device built from its entry, by the role checkout gives it.
// Displays, cash acceptors, vend dispensers and sensors have only the demo's mocks so
// far: a build without the `demo` feature never makes `Display` or `Other`.
#[cfg_attr(not(feature = "demo"), allow(dead_code))]
enum Built {
    /// The receipt printer; a drawer on its kick port shares its link.
    Printer(outpost_peripherals::escpos::EscPosPrinter),
    Drawer(Arc<dyn CashDrawer>),
    Display(Arc<dyn CustomerDisplay>),
    Payment(Arc<dyn PaymentTerminal>),
    Scale(Arc<dyn Scale>),
    Scanner(Arc<dyn BarcodeScanner>),
    /// The vending machine's dispenser, with its drop sensor.
    Dispenser(Arc<dyn VendDispenser>),
    /// An environment sensor (temperature, door).
    Sensor(Arc<dyn EnvironmentSensor>),
    /// The vending machine's coin changer.
    Changer(Arc<dyn outpost_peripherals::changer::CoinChanger>),
    /// The vending machine's bill validator.
    Validator(Arc<dyn outpost_peripherals::validator::BillValidator>),
    /// A device nothing uses yet: the mock cash acceptor.
    Other(Arc<dyn Device>),
}

/// `s` asks for a driver its kind does not have.
fn unsupported(s: &DeviceSpec) -> RegistryError {
    RegistryError::Unsupported {
        id: s.id.clone(),
        message: format!(
            "driver {} for {} is not available in this build",
            s.driver.name(),
            s.kind
        ),
    }
}

impl Registry {
    /// Open every device once, all at once (each bounded), so a server that starts
    /// with working devices serves with them open. Failures are recorded, not fatal.
    pub async fn open_all(&self) {
        let spooler = self.spooler.clone();
        let cfg = self.supervisor;
        futures::future::join_all(
            self.entries
                .iter()
                .map(|e| supervisor::attempt(e, &cfg, Some(&spooler))),
        )
        .await;
    }

    /// Start the supervisor tasks and the spooler. Abort the handles to stop them.
    pub fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self
            .entries
            .iter()
            .map(|e| {
                tokio::spawn(supervisor::run(
                    e.clone(),
                    self.supervisor,
                    Some(self.spooler.clone()),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(self.spooler.clone().run()));
        for feed in &self.scans {
            tasks.push(tokio::spawn(feed.clone().pump(self.store.clone())));
        }
        tasks
    }

    /// Every device, in configuration order (printers first).
    pub fn views(&self) -> Vec<DeviceView> {
        self.entries.iter().map(|e| self.view_of(e)).collect()
    }

    fn view_of(&self, e: &Entry) -> DeviceView {
        let queued = (e.kind == DeviceKind::ReceiptPrinter).then(|| self.spooler.queue().len());
        e.view(queued)
    }

    /// The device `id`.
    pub fn entry(&self, id: &str) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Check `id` now (opening it first if it is closed), wake its supervisor, and
    /// return the report. `None`: no such device.
    pub async fn health_check(&self, id: &str, level: HealthLevel) -> Option<DeviceView> {
        let e = self.entry(id)?;
        if e.device.core().state() == DeviceState::Closed {
            supervisor::attempt(e, &self.supervisor, Some(&self.spooler)).await;
        }
        if e.device.core().state() != DeviceState::Closed {
            let report = match tokio::time::timeout(
                self.supervisor.attempt_bound,
                e.device.check_health(level),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => HealthReport::now(Health::Failed, "health check timed out"),
            };
            if matches!(report.health, Health::Ok | Health::Degraded) {
                e.note_ok();
                if e.kind == DeviceKind::ReceiptPrinter {
                    self.spooler.wake();
                }
            } else {
                e.note_error(report.detail);
            }
        }
        e.check_now.notify_one();
        Some(self.view_of(e))
    }

    /// The receipt printer, when configured.
    pub fn printer(&self) -> Option<&Arc<dyn ReceiptPrinter>> {
        self.printer.as_ref()
    }

    /// The cash drawer, when configured.
    pub fn drawer(&self) -> Option<&Arc<dyn CashDrawer>> {
        self.drawer.as_ref()
    }

    /// The customer display, when configured.
    pub fn display(&self) -> Option<&Arc<dyn CustomerDisplay>> {
        self.display.as_ref()
    }

    /// The payment terminal, when configured.
    pub fn payment(&self) -> Option<Arc<dyn PaymentTerminal>> {
        self.payment.clone()
    }

    /// The vending machine's dispenser, when configured.
    pub fn dispenser(&self) -> Option<Arc<dyn VendDispenser>> {
        self.dispenser.clone()
    }

    /// The vending machine's coin changer, when configured.
    pub fn changer(&self) -> Option<Arc<dyn outpost_peripherals::changer::CoinChanger>> {
        self.changer.clone()
    }

    /// The vending machine's bill validator, when configured.
    pub fn validator(&self) -> Option<Arc<dyn outpost_peripherals::validator::BillValidator>> {
        self.validator.clone()
    }

    /// Every environment sensor, with its id.
    pub fn sensors(&self) -> &[(String, Arc<dyn EnvironmentSensor>)] {
        &self.sensors
    }

    /// The scale `id`, with how long a checkout waits for it to settle.
    fn scale(&self, id: &str) -> Result<(&Arc<dyn Scale>, Duration), WeighError> {
        if let Some((_, s, wait)) = self.scales.iter().find(|(sid, _, _)| sid == id) {
            return Ok((s, *wait));
        }
        Err(match self.entry(id) {
            Some(e) => WeighError {
                status: 422,
                code: "not_a_scale",
                message: format!("device {id} is a {}, not a scale", e.kind),
            },
            None => WeighError {
                status: 404,
                code: "device_not_found",
                message: format!("no device with id {id}"),
            },
        })
    }

    /// The stable weight on scale `id` now, to sell by: refused while it moves, is
    /// over capacity or cannot be reached.
    pub async fn weigh(&self, id: &str) -> Result<u32, WeighError> {
        let (scale, wait) = self.scale(id)?;
        inputs::stable_grams(id, scale.as_ref(), wait, self.supervisor.attempt_bound).await
    }

    /// The live and stable weight on scale `id`.
    pub async fn weight(&self, id: &str) -> Result<WeightView, WeighError> {
        let (scale, _) = self.scale(id)?;
        inputs::read_weight(id, scale.as_ref(), self.supervisor.attempt_bound).await
    }

    /// Scans of scanner `id` after `after`; `None`: no such scanner (`Some(false)`
    /// in the error: the device exists but is no scanner).
    pub async fn scans(
        &self,
        id: &str,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ScanPage, bool> {
        match self.scans.iter().find(|f| f.id == id) {
            Some(f) => Ok(f.page(after, limit, wait).await),
            None => Err(self.entry(id).is_some()),
        }
    }

    /// The receipt spooler and its queue.
    pub fn spooler(&self) -> &Arc<Spooler> {
        &self.spooler
    }

    /// Simulators and mocks started for `sim`/`mock` entries.
    pub fn sims(&self) -> &Sims {
        &self.sims
    }

    /// What the simulated printer `id` printed last: `None` when `id` is not a
    /// simulated printer, `Some(None)` when it printed nothing yet.
    pub fn simulated_last_receipt(&self, id: &str) -> Option<Option<String>> {
        let e = self.entry(id)?;
        if e.kind != DeviceKind::ReceiptPrinter || e.driver != "sim" {
            return None;
        }
        self.sims.last_receipt()
    }
}

/// What the devices did for one new sale.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SaleDevices {
    /// `printed`, `queued` (in the reprint queue) or `not_queued` (queue full).
    pub receipt_status: receipts::ReceiptStatus,
    /// `opened`, `failed`, `not_configured`, or `not_needed` (no cash tender).
    pub drawer_status: &'static str,
    /// `shown`, `failed` or `not_configured`.
    pub display_status: &'static str,
    /// Why a device did not do its part, for the cashier.
    pub device_errors: Vec<String>,
}

impl Registry {
    /// After a sale is durably recorded: print its receipt (waiting up to `wait`),
    /// open the drawer for cash, show the total and change. Never fails: a device
    /// that does not do its part is reported, and its receipt stays queued.
    pub async fn after_sale(
        &self,
        sale: &crate::domain::sale::Sale,
        wait: Duration,
    ) -> SaleDevices {
        use crate::domain::money::format_amount;
        use crate::domain::sale::TenderMethod;
        let cash = sale.tenders.iter().any(|t| t.method == TenderMethod::Cash);
        let currency = &sale.cart.currency;
        let mut lines = vec![format!(
            "TOTAL {}",
            format_amount(sale.cart.total, currency)
        )];
        if cash {
            lines.push(format!("CHANGE {}", format_amount(sale.change, currency)));
        } else {
            lines.push("PAID - THANK YOU".into());
        }
        let bound = self.supervisor.attempt_bound;
        let show = async {
            match &self.display {
                None => ("not_configured", None),
                Some(d) => match tokio::time::timeout(bound, d.show(&lines)).await {
                    Ok(Ok(())) => ("shown", None),
                    Ok(Err(f)) => ("failed", Some(format!("display: {f}"))),
                    Err(_) => ("failed", Some("display: timed out".to_owned())),
                },
            }
        };
        let kick = async {
            match (&self.drawer, cash) {
                (_, false) => ("not_needed", None),
                (None, true) => ("not_configured", None),
                (Some(d), true) => match tokio::time::timeout(bound, d.open_drawer()).await {
                    Ok(Ok(())) => ("opened", None),
                    Ok(Err(f)) => ("failed", Some(format!("drawer: {f}"))),
                    Err(_) => ("failed", Some("drawer: timed out".to_owned())),
                },
            }
        };
        let print = async {
            let queue = self.spooler.queue();
            if !queue.contains(sale.id) {
                return match queue.status(sale.id) {
                    Ok(s) => (s, None),
                    Err(e) => (
                        receipts::ReceiptStatus::NotQueued,
                        Some(format!("receipt: {e}")),
                    ),
                };
            }
            match self.spooler.wait_printed(sale.id, wait).await {
                receipts::PrintOutcome::Printed => (receipts::ReceiptStatus::Printed, None),
                receipts::PrintOutcome::Queued(why) => (
                    receipts::ReceiptStatus::Queued,
                    Some(format!("receipt queued: {why}")),
                ),
            }
        };
        let ((receipt_status, e1), (drawer_status, e2), (display_status, e3)) =
            tokio::join!(print, kick, show);
        SaleDevices {
            receipt_status,
            drawer_status,
            display_status,
            device_errors: [e1, e2, e3].into_iter().flatten().collect(),
        }
    }
}

/// What a build without the `demo` feature has in place of the demo's simulators:
/// none, and a refusal for every `sim` or `mock` entry (config validation refuses
/// them first, in the same words; this guards specs built in code).
#[cfg(not(feature = "demo"))]
mod demo {
    use super::{Built, RegistryError};
    use crate::config::devices::DeviceSpec;
    use crate::domain::money::Currency;

    /// No simulators run in this build.
    #[derive(Default)]
    pub struct Sims {}

    impl Sims {
        pub(super) async fn start(&mut self, s: &DeviceSpec) -> Result<String, RegistryError> {
            Err(refuse(s))
        }

        pub(super) fn mock(
            &mut self,
            s: &DeviceSpec,
            _: &Currency,
        ) -> Result<Built, RegistryError> {
            Err(refuse(s))
        }

        pub(super) fn last_receipt(&self) -> Option<Option<String>> {
            None
        }
    }

    fn refuse(s: &DeviceSpec) -> RegistryError {
        RegistryError::Unsupported {
            id: s.id.clone(),
            message: format!(
                "driver {} needs the `demo` cargo feature, which this build lacks",
                s.driver.name()
            ),
        }
    }
}
