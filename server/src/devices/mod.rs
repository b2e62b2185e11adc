//! The device registry: every configured device, opened and watched by the
//! supervisor, and the receipt queue checkout prints through.
//!
//! # Layout
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

pub mod inputs;
pub mod receipts;
pub mod supervisor;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use outpost_peripherals::display::CustomerDisplay;
use outpost_peripherals::drawer::CashDrawer;
use outpost_peripherals::event::EventBody;
use outpost_peripherals::payment::PaymentTerminal;
use outpost_peripherals::printer::ReceiptPrinter;
use outpost_peripherals::scale::Scale;
use outpost_peripherals::scanner::BarcodeScanner;
use outpost_peripherals::{
    Device, DeviceCore, DeviceKind, DeviceState, Health, HealthLevel, HealthReport, PowerState,
    Statistics,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::devices::{DeviceSpec, Driver, Transport};
use inputs::{ScanFeed, ScanPage, WeighError, WeightView};
use receipts::{ReceiptQueue, Spooler};
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

/// Simulators started for `driver = "sim"` entries; kept alive with the registry.
#[derive(Default)]
pub struct Sims {
    /// The ESC/POS printer simulator, when a printer uses the `sim` driver.
    #[cfg(feature = "demo")]
    pub printer: Option<outpost_mocks::sim::escpos::SimHandle>,
    /// The nexo terminal simulator, when the payment terminal uses the `sim` driver.
    #[cfg(feature = "demo")]
    pub payment: Option<outpost_mocks::sim::PaymentSim>,
    /// The customer display mock, when the display uses the `mock` driver.
    #[cfg(feature = "demo")]
    pub display: Option<outpost_mocks::mock::display::MockDisplay>,
    /// MT-SICS scale simulators of `driver = "sim"` scales, by device id.
    #[cfg(feature = "demo")]
    pub scales: Vec<(String, outpost_mocks::sim::scale::ScaleSim)>,
    /// Scanner simulators of `driver = "sim"` scanners, by device id.
    #[cfg(feature = "demo")]
    pub scanners: Vec<(String, outpost_mocks::sim::scanner::ScannerSim)>,
    /// Scale mocks of `driver = "mock"` scales, by device id.
    #[cfg(feature = "demo")]
    pub mock_scales: Vec<(String, outpost_mocks::mock::scale::MockScale)>,
    /// Scanner mocks of `driver = "mock"` scanners, by device id.
    #[cfg(feature = "demo")]
    pub mock_scanners: Vec<(String, outpost_mocks::mock::scanner::MockScanner)>,
    /// Sensor mocks (there is no real sensor driver yet), by device id.
    #[cfg(feature = "demo")]
    pub sensors: Vec<(String, outpost_mocks::mock::sensor::MockSensor)>,
    /// Coin and note acceptor mocks (no real driver yet), by device id.
    #[cfg(feature = "demo")]
    pub cash_acceptors: Vec<(String, outpost_mocks::mock::cash::MockCashAcceptor)>,
    /// Vend dispenser mocks (no real driver yet), by device id.
    #[cfg(feature = "demo")]
    pub vends: Vec<(String, outpost_mocks::mock::vend::MockVend)>,
}

impl Drop for Sims {
    fn drop(&mut self) {
        #[cfg(feature = "demo")]
        {
            if let Some(p) = &self.printer {
                p.shutdown();
            }
            if let Some(p) = &self.payment {
                p.shutdown();
            }
        }
    }
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

impl Registry {
    /// Build every device from `specs` (starting simulators for `sim` entries), and
    /// the receipt queue over `store`. Opens nothing: [`start`](Self::start) does.
    pub async fn build(
        specs: &[DeviceSpec],
        overrides: InjectedDevices,
        store: Arc<crate::store::Store>,
        cfg: RegistryConfig,
    ) -> Result<Registry, RegistryError> {
        let mut entries = Vec::new();
        let mut printer: Option<Arc<dyn ReceiptPrinter>> = None;
        let mut escpos: Option<(String, outpost_peripherals::escpos::EscPosPrinter)> = None;
        let mut drawer: Option<Arc<dyn CashDrawer>> = None;
        // Only the `demo` feature has a display backend (the mock) so far.
        #[cfg_attr(not(feature = "demo"), allow(unused_mut))]
        let mut display: Option<Arc<dyn CustomerDisplay>> = None;
        let mut payment: Option<Arc<dyn PaymentTerminal>> = None;
        let mut scales: Vec<(String, Arc<dyn Scale>, Duration)> = Vec::new();
        let mut scans: Vec<Arc<ScanFeed>> = Vec::new();
        #[allow(unused_mut)]
        let mut sims = Sims::default();
        let unsupported = |s: &DeviceSpec| RegistryError::Unsupported {
            id: s.id.clone(),
            message: format!(
                "driver {} for {} is not available in this build",
                s.driver.name(),
                s.kind
            ),
        };
        // Printers first: drawers open through a printer's kick port.
        let mut ordered: Vec<&DeviceSpec> = specs.iter().collect();
        ordered.sort_by_key(|s| s.kind != DeviceKind::ReceiptPrinter);
        for s in ordered {
            match (s.kind, &s.driver) {
                (DeviceKind::ReceiptPrinter, d) => {
                    let mut c = outpost_peripherals::escpos::EscPosConfig::default();
                    if let Some(t) = s.connect_timeout {
                        c.connect_timeout = t;
                    }
                    if let Some(t) = s.io_timeout {
                        c.io_timeout = t;
                    }
                    let p = match d {
                        Driver::EscPosTcp { address } => {
                            outpost_peripherals::escpos::EscPosPrinter::tcp(&s.id, address, c)
                        }
                        Driver::EscPosSerial { port, baud } => {
                            outpost_peripherals::escpos::EscPosPrinter::serial(
                                &s.id, port, *baud, c,
                            )
                        }
                        #[cfg(feature = "demo")]
                        Driver::Sim => {
                            let sim = outpost_mocks::sim::escpos::EscPosSim::start(
                                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                                outpost_mocks::sim::escpos::SimOptions::default(),
                            )
                            .await
                            .map_err(|source| {
                                RegistryError::Simulator {
                                    what: "ESC/POS printer",
                                    source,
                                }
                            })?;
                            let addr = sim.local_addr().to_string();
                            tracing::info!(device = %s.id, %addr, "Started the ESC/POS printer simulator.");
                            sims.printer = Some(sim);
                            outpost_peripherals::escpos::EscPosPrinter::tcp(&s.id, &addr, c)
                        }
                        _ => return Err(unsupported(s)),
                    };
                    let arc = Arc::new(p.clone());
                    printer = Some(arc.clone());
                    entries.push(Arc::new(Entry::new(s, arc)));
                    escpos = Some((s.id.clone(), p));
                }
                (DeviceKind::CashDrawer, Driver::EscPosKick { printer: pid }) => {
                    let Some((id, p)) = escpos.as_ref().filter(|(id, _)| id == pid) else {
                        return Err(RegistryError::Unsupported {
                            id: s.id.clone(),
                            message: format!("printer {pid} is not an ESC/POS printer"),
                        });
                    };
                    let _ = id;
                    let d = Arc::new(p.drawer(&s.id));
                    drawer = Some(d.clone());
                    entries.push(Arc::new(Entry::new(s, d)));
                }
                #[cfg(feature = "demo")]
                (DeviceKind::CustomerDisplay, Driver::Mock) => {
                    let d = outpost_mocks::mock::display::MockDisplay::new(&s.id);
                    sims.display = Some(d.clone());
                    let d = Arc::new(d);
                    display = Some(d.clone());
                    entries.push(Arc::new(Entry::new(s, d)));
                }
                (DeviceKind::PaymentTerminal, d) if overrides.terminal.is_none() => {
                    let t: Arc<dyn PaymentTerminal> = match d {
                        Driver::NexoTcp { address } => Arc::new(nexo(s, address)),
                        Driver::Mdb(transport) => Arc::new(mdb(s, transport, &cfg.currency)),
                        #[cfg(feature = "demo")]
                        Driver::Sim => {
                            let sim = outpost_mocks::sim::PaymentSim::start(
                                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                                outpost_mocks::sim::payment::SimOptions::default(),
                            )
                            .await
                            .map_err(|source| {
                                RegistryError::Simulator {
                                    what: "nexo payment terminal",
                                    source,
                                }
                            })?;
                            let addr = sim.local_addr().to_string();
                            tracing::info!(device = %s.id, %addr, "Started the nexo payment terminal simulator.");
                            sims.payment = Some(sim);
                            Arc::new(nexo(s, &addr))
                        }
                        #[cfg(feature = "demo")]
                        Driver::Mock => {
                            tracing::warn!(
                                "Using the simulated payment terminal: card payments are not real."
                            );
                            Arc::new(outpost_mocks::MockTerminal::new())
                        }
                        _ => return Err(unsupported(s)),
                    };
                    payment = Some(t.clone());
                    entries.push(Arc::new(Entry::new(s, t)));
                }
                (DeviceKind::PaymentTerminal, _) => {}
                (DeviceKind::Scale, d) => {
                    let mut c = outpost_peripherals::sics::SicsConfig::default();
                    if let Some(t) = s.connect_timeout {
                        c.connect_timeout = t;
                    }
                    if let Some(t) = s.io_timeout {
                        c.io_timeout = t;
                    }
                    let scale: Arc<dyn Scale> = match d {
                        Driver::MtSics(transport) => {
                            Arc::new(outpost_peripherals::sics::SicsScale::with_connector(
                                &s.id,
                                transport.connector(outpost_peripherals::sics::DEFAULT_PORT),
                                c,
                            ))
                        }
                        #[cfg(feature = "demo")]
                        Driver::Sim => {
                            let sim = outpost_mocks::sim::scale::ScaleSim::start(
                                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                                outpost_mocks::sim::scale::ScaleOptions::default(),
                            )
                            .await
                            .map_err(|source| {
                                RegistryError::Simulator {
                                    what: "MT-SICS scale",
                                    source,
                                }
                            })?;
                            let addr = sim.local_addr().map(|a| a.to_string()).unwrap_or_default();
                            tracing::info!(device = %s.id, %addr, "Started the MT-SICS scale simulator.");
                            sims.scales.push((s.id.clone(), sim));
                            Arc::new(outpost_peripherals::sics::SicsScale::tcp(&s.id, &addr, c))
                        }
                        #[cfg(feature = "demo")]
                        Driver::Mock => {
                            // Closed, so the supervisor opens it like any other.
                            let m = outpost_mocks::mock::scale::MockScale::closed(&s.id, 6_000);
                            sims.mock_scales.push((s.id.clone(), m.clone()));
                            Arc::new(m)
                        }
                        _ => return Err(unsupported(s)),
                    };
                    scales.push((s.id.clone(), scale.clone(), s.stable_wait));
                    entries.push(Arc::new(Entry::new(s, scale)));
                }
                (DeviceKind::BarcodeScanner, d) => {
                    let c = outpost_peripherals::scanner_serial::ScannerConfig {
                        connect_timeout: s
                            .connect_timeout
                            .unwrap_or(std::time::Duration::from_secs(3)),
                        ..Default::default()
                    };
                    let scanner: Arc<dyn BarcodeScanner> = match d {
                        Driver::ScannerSerial(transport) => Arc::new(
                            outpost_peripherals::scanner_serial::SerialScanner::with_connector(
                                &s.id,
                                transport
                                    .connector(outpost_peripherals::scanner_serial::DEFAULT_PORT),
                                c,
                            ),
                        ),
                        #[cfg(feature = "demo")]
                        Driver::Sim => {
                            let sim = outpost_mocks::sim::scanner::ScannerSim::start(
                                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                            )
                            .await
                            .map_err(|source| {
                                RegistryError::Simulator {
                                    what: "barcode scanner",
                                    source,
                                }
                            })?;
                            let addr = sim.local_addr().map(|a| a.to_string()).unwrap_or_default();
                            tracing::info!(device = %s.id, %addr, "Started the barcode scanner simulator.");
                            sims.scanners.push((s.id.clone(), sim));
                            Arc::new(outpost_peripherals::scanner_serial::SerialScanner::tcp(
                                &s.id, &addr, c,
                            ))
                        }
                        #[cfg(feature = "demo")]
                        Driver::Mock => {
                            let m = outpost_mocks::mock::scanner::MockScanner::closed(&s.id);
                            sims.mock_scanners.push((s.id.clone(), m.clone()));
                            Arc::new(m)
                        }
                        _ => return Err(unsupported(s)),
                    };
                    scans.push(Arc::new(ScanFeed::new(&s.id, scanner.clone())));
                    entries.push(Arc::new(Entry::new(s, scanner)));
                }
                #[cfg(feature = "demo")]
                (DeviceKind::EnvironmentSensor, Driver::Mock) => {
                    let m = outpost_mocks::mock::sensor::MockSensor::new(
                        &s.id,
                        outpost_peripherals::sensor::SensorReading {
                            milli_celsius: Some(4_000),
                            door_open: Some(false),
                            case_open: Some(false),
                        },
                    );
                    sims.sensors.push((s.id.clone(), m.clone()));
                    entries.push(Arc::new(Entry::new(s, Arc::new(m))));
                }
                #[cfg(feature = "demo")]
                (DeviceKind::CashAcceptor, Driver::Mock) => {
                    let m = outpost_mocks::mock::cash::MockCashAcceptor::new(
                        &s.id,
                        &cfg.currency.to_string(),
                    );
                    sims.cash_acceptors.push((s.id.clone(), m.clone()));
                    entries.push(Arc::new(Entry::new(s, Arc::new(m))));
                }
                #[cfg(feature = "demo")]
                (DeviceKind::VendDispenser, Driver::Mock) => {
                    // A demo machine: six slots of ten.
                    let slots: Vec<(String, u32)> =
                        (1..=6).map(|n| (format!("A{n}"), 10)).collect();
                    let slots: Vec<(&str, u32)> =
                        slots.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                    let m = outpost_mocks::mock::vend::MockVend::closed(&s.id, &slots);
                    sims.vends.push((s.id.clone(), m.clone()));
                    entries.push(Arc::new(Entry::new(s, Arc::new(m))));
                }
                _ => return Err(unsupported(s)),
            }
        }
        if let Some(t) = overrides.terminal {
            let info = t.core().info();
            let spec = DeviceSpec {
                id: info.id.clone(),
                kind: DeviceKind::PaymentTerminal,
                driver: Driver::Mock,
                connect_timeout: None,
                io_timeout: None,
                request_timeout: None,
                poi_id: None,
                sale_id: None,
                health_interval: None,
                stable_wait: Duration::ZERO,
            };
            let mut e = Entry::new(&spec, t.clone());
            e.driver = info.driver;
            entries.push(Arc::new(e));
            payment = Some(t);
        }
        let queue = Arc::new(ReceiptQueue::open(store.clone(), cfg.queue_max)?);
        let spooler = Arc::new(Spooler::new(
            queue,
            store.clone(),
            printer.clone(),
            cfg.receipt_width,
            cfg.retry,
        ));
        Ok(Registry {
            entries,
            printer,
            drawer,
            display,
            payment,
            scales,
            scans,
            store,
            spooler,
            supervisor: cfg.supervisor,
            sims,
        })
    }

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
        #[cfg(feature = "demo")]
        {
            self.sims.printer.as_ref().map(|p| p.last_receipt())
        }
        #[cfg(not(feature = "demo"))]
        {
            None
        }
    }
}

fn nexo(s: &DeviceSpec, address: &str) -> outpost_peripherals::nexo::NexoTerminal {
    let mut c = outpost_peripherals::nexo::NexoConfig::new(s.id.clone(), address.to_owned());
    if let Some(t) = s.connect_timeout {
        c.connect_timeout = t;
    }
    if let Some(t) = s.io_timeout {
        c.status_timeout = t;
    }
    if let Some(t) = s.request_timeout {
        c.request_timeout = t;
    }
    if let Some(p) = &s.poi_id {
        c.poi_id = p.clone();
    }
    if let Some(id) = &s.sale_id {
        c.sale_id = id.clone();
    }
    outpost_peripherals::nexo::NexoTerminal::new(c)
}

fn mdb(
    s: &DeviceSpec,
    transport: &Transport,
    currency: &crate::domain::money::Currency,
) -> outpost_peripherals::mdb::MdbCashless {
    let mut c = outpost_peripherals::mdb::MdbConfig {
        currency: currency.code().to_owned(),
        decimal_places: currency.exponent(),
        ..Default::default()
    };
    if let Some(t) = s.connect_timeout {
        c.connect_timeout = t;
    }
    if let Some(t) = s.io_timeout {
        c.io_timeout = t;
    }
    if let Some(t) = s.request_timeout {
        c.session_wait = t;
    }
    outpost_peripherals::mdb::MdbCashless::with_connector(
        &s.id,
        transport.connector(outpost_peripherals::mdb::driver::DEFAULT_PORT),
        c,
    )
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

/// The devices `outpost demo` runs with when the config names none, one of every
/// kind: an ESC/POS printer simulator with the drawer on its kick port, (when
/// `with_payment`) a nexo terminal simulator, a serial barcode scanner simulator and an
/// MT-SICS scale simulator, each reached through the real driver over loopback TCP;
/// and the trait mocks of the kinds with no real driver yet (customer display, cash
/// acceptor, vend dispenser, environment sensor). (Without the `demo` feature,
/// validation refuses these drivers with an error saying so.)
pub fn demo_devices(with_payment: bool) -> Vec<crate::config::DeviceSettings> {
    use crate::config::DeviceSettings;
    let dev = |id: &str, kind: &str, driver: &str| DeviceSettings {
        id: id.into(),
        kind: kind.into(),
        driver: driver.into(),
        ..DeviceSettings::default()
    };
    let mut v = vec![
        dev("printer-1", "printer", "sim"),
        DeviceSettings {
            printer: Some("printer-1".into()),
            ..dev("drawer-1", "drawer", "escpos-kick")
        },
        dev("display-1", "display", "mock"),
    ];
    if with_payment {
        v.push(dev("payment-1", "payment", "sim"));
    }
    v.extend([
        dev("scanner-1", "scanner", "sim"),
        dev("scale-1", "scale", "sim"),
        dev("cash-1", "cash_acceptor", "mock"),
        dev("vend-1", "vend_dispenser", "mock"),
        dev("sensor-1", "sensor", "mock"),
    ]);
    v
}
