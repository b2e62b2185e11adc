//! The demo's devices: wire simulators from `mocks/src/sim` for `driver = "sim"`
//! entries (started in-process on a loopback port; the real driver connects to them),
//! trait mocks from `mocks/src/mock` for `driver = "mock"` entries, and
//! [`demo_devices`], the set `outpost demo` runs with. Compiled with the `demo`
//! feature only; without it `sim` and `mock` entries are refused.

use std::net::SocketAddr;
use std::sync::Arc;

use outpost_mocks::mock::cash::MockCashAcceptor;
use outpost_mocks::mock::display::MockDisplay;
use outpost_mocks::mock::scale::MockScale;
use outpost_mocks::mock::scanner::MockScanner;
use outpost_mocks::mock::sensor::MockSensor;
use outpost_mocks::mock::vend::MockVend;
use outpost_mocks::sim::changer::{ChangerOptions, ChangerSim};
use outpost_mocks::sim::escpos::{self, EscPosSim, SimHandle};
use outpost_mocks::sim::mdb::{MdbOptions, MdbSim};
use outpost_mocks::sim::payment::{self, PaymentSim};
use outpost_mocks::sim::scale::{ScaleOptions, ScaleSim};
use outpost_mocks::sim::scanner::ScannerSim;
use outpost_mocks::sim::spiral::SpiralSim;
use outpost_mocks::sim::validator::{ValidatorOptions, ValidatorSim};
use outpost_peripherals::DeviceKind;
use outpost_peripherals::sensor::SensorReading;

use super::{Built, RegistryError, unsupported};
use crate::config::DeviceSettings;
use crate::config::devices::{DeviceSpec, Driver};
use crate::domain::money::Currency;

/// Simulators started for `driver = "sim"` entries and mocks made for `driver =
/// "mock"` ones; kept alive with the registry, and reachable by tests to script them.
#[derive(Default)]
pub struct Sims {
    /// The ESC/POS printer simulator, when a printer uses the `sim` driver.
    pub printer: Option<SimHandle>,
    /// The nexo terminal simulator, when the payment terminal uses the `sim` driver.
    pub payment: Option<PaymentSim>,
    /// The customer display mock, when the display uses the `mock` driver.
    pub display: Option<MockDisplay>,
    /// MT-SICS scale simulators of `driver = "sim"` scales, by device id.
    pub scales: Vec<(String, ScaleSim)>,
    /// Scanner simulators of `driver = "sim"` scanners, by device id.
    pub scanners: Vec<(String, ScannerSim)>,
    /// Scale mocks of `driver = "mock"` scales, by device id.
    pub mock_scales: Vec<(String, MockScale)>,
    /// Scanner mocks of `driver = "mock"` scanners, by device id.
    pub mock_scanners: Vec<(String, MockScanner)>,
    /// Sensor mocks (there is no real sensor driver yet), by device id.
    pub sensors: Vec<(String, MockSensor)>,
    /// Coin and note acceptor mocks (no real driver yet), by device id.
    pub cash_acceptors: Vec<(String, MockCashAcceptor)>,
    /// Vend dispenser mocks, by device id.
    pub vends: Vec<(String, MockVend)>,
    /// The MDB cashless reader simulator, when the payment terminal uses the
    /// `mdb-sim` driver (it presents a card with funds for every vend).
    pub mdb: Option<MdbSim>,
    /// The OSB/1 spiral board simulator, when the dispenser uses the `sim` driver.
    pub spiral: Option<SpiralSim>,
    /// The MDB coin changer simulator of a `mdb-changer-sim` cash acceptor.
    pub changer: Option<ChangerSim>,
    /// The MDB bill validator simulator of a `mdb-validator-sim` cash acceptor.
    pub validator: Option<ValidatorSim>,
}

impl Drop for Sims {
    fn drop(&mut self) {
        if let Some(p) = &self.printer {
            p.shutdown();
        }
        if let Some(p) = &self.payment {
            p.shutdown();
        }
    }
}

/// The demo vending machine: 6 trays (`A` to `F`) of 8 columns.
pub const DEMO_TRAYS: u8 = 6;
/// Columns per tray of the demo machine.
pub const DEMO_COLUMNS: u8 = 8;
/// Units the simulated board holds in each slot at start.
pub const DEMO_SLOT_UNITS: u32 = 10;

/// Every slot of the demo machine, `A1` to `F8`.
pub fn demo_slots() -> impl Iterator<Item = String> {
    (0..DEMO_TRAYS)
        .flat_map(|t| (1..=DEMO_COLUMNS).map(move |c| format!("{}{c}", char::from(b'A' + t))))
}

/// Where a simulator listens: any free loopback port.
fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Sims {
    /// Start the wire simulator of `s` (a printer, payment terminal, scale or
    /// scanner) and return its address, for the real driver to connect to.
    pub(super) async fn start(&mut self, s: &DeviceSpec) -> Result<String, RegistryError> {
        let failed = |what: &'static str| move |source| RegistryError::Simulator { what, source };
        let (what, addr) = match s.kind {
            DeviceKind::ReceiptPrinter => {
                let sim = EscPosSim::start(loopback(), escpos::SimOptions::default())
                    .await
                    .map_err(failed("ESC/POS printer"))?;
                let addr = sim.local_addr().to_string();
                self.printer = Some(sim);
                ("ESC/POS printer", addr)
            }
            DeviceKind::PaymentTerminal if s.driver == Driver::MdbSim => {
                let sim = MdbSim::start(loopback(), MdbOptions::default())
                    .await
                    .map_err(failed("MDB cashless reader"))?;
                let addr = sim.local_addr().map(|a| a.to_string()).unwrap_or_default();
                self.mdb = Some(sim);
                ("MDB cashless reader", addr)
            }
            DeviceKind::PaymentTerminal => {
                let sim = PaymentSim::start(loopback(), payment::SimOptions::default())
                    .await
                    .map_err(failed("nexo payment terminal"))?;
                let addr = sim.local_addr().to_string();
                self.payment = Some(sim);
                ("nexo payment terminal", addr)
            }
            DeviceKind::Scale => {
                let sim = ScaleSim::start(loopback(), ScaleOptions::default())
                    .await
                    .map_err(failed("MT-SICS scale"))?;
                let addr = sim.local_addr().map(|a| a.to_string()).unwrap_or_default();
                self.scales.push((s.id.clone(), sim));
                ("MT-SICS scale", addr)
            }
            DeviceKind::BarcodeScanner => {
                let sim = ScannerSim::start(loopback())
                    .await
                    .map_err(failed("barcode scanner"))?;
                let addr = sim.local_addr().map(|a| a.to_string()).unwrap_or_default();
                self.scanners.push((s.id.clone(), sim));
                ("barcode scanner", addr)
            }
            DeviceKind::CashAcceptor if s.driver == Driver::MdbChangerSim => {
                let sim = ChangerSim::start(loopback(), ChangerOptions::euro())
                    .await
                    .map_err(failed("MDB coin changer"))?;
                let addr = sim.local_addr().map(|a| a.to_string()).unwrap_or_default();
                self.changer = Some(sim);
                ("MDB coin changer", addr)
            }
            DeviceKind::CashAcceptor if s.driver == Driver::MdbValidatorSim => {
                // Notes up to 20 euro, which the demo changer's tubes can change for
                // any demo price (a 50 would need 48.80 in coins: "exact change only").
                let mut options = ValidatorOptions::euro();
                options.setup.credits = vec![5, 10, 20];
                let sim = ValidatorSim::start(loopback(), options)
                    .await
                    .map_err(failed("MDB bill validator"))?;
                let addr = sim.local_addr().map(|a| a.to_string()).unwrap_or_default();
                self.validator = Some(sim);
                ("MDB bill validator", addr)
            }
            DeviceKind::VendDispenser => {
                let stock: Vec<(String, u32)> =
                    demo_slots().map(|s| (s, DEMO_SLOT_UNITS)).collect();
                let stock: Vec<(&str, u32)> = stock.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                let sim = SpiralSim::start(loopback(), DEMO_TRAYS, DEMO_COLUMNS, &stock)
                    .await
                    .map_err(failed("OSB/1 spiral board"))?;
                let addr = sim.local_addr().map(|a| a.to_string()).unwrap_or_default();
                self.spiral = Some(sim);
                ("OSB/1 spiral board", addr)
            }
            _ => return Err(unsupported(s)),
        };
        tracing::info!(device = %s.id, %addr, "Started the {what} simulator.");
        Ok(addr)
    }

    /// The trait mock standing in for `s` (a cash acceptor takes `currency`).
    pub(super) fn mock(
        &mut self,
        s: &DeviceSpec,
        currency: &Currency,
    ) -> Result<Built, RegistryError> {
        let id = s.id.clone();
        Ok(match s.kind {
            DeviceKind::CustomerDisplay => {
                let d = MockDisplay::new(&s.id);
                self.display = Some(d.clone());
                Built::Display(Arc::new(d))
            }
            DeviceKind::PaymentTerminal => {
                tracing::warn!("Using the simulated payment terminal: card payments are not real.");
                Built::Payment(Arc::new(outpost_mocks::MockTerminal::new()))
            }
            DeviceKind::Scale => {
                // Closed, so the supervisor opens it like any other.
                let m = MockScale::closed(&s.id, 6_000);
                self.mock_scales.push((id, m.clone()));
                Built::Scale(Arc::new(m))
            }
            DeviceKind::BarcodeScanner => {
                let m = MockScanner::closed(&s.id);
                self.mock_scanners.push((id, m.clone()));
                Built::Scanner(Arc::new(m))
            }
            DeviceKind::EnvironmentSensor => {
                let reading = SensorReading {
                    milli_celsius: Some(4_000),
                    door_open: Some(false),
                    case_open: Some(false),
                };
                let m = MockSensor::new(&s.id, reading);
                self.sensors.push((id, m.clone()));
                Built::Sensor(Arc::new(m))
            }
            DeviceKind::CashAcceptor => {
                let m = MockCashAcceptor::new(&s.id, &currency.to_string());
                self.cash_acceptors.push((id, m.clone()));
                Built::Other(Arc::new(m))
            }
            DeviceKind::VendDispenser => {
                // A demo machine: six slots of ten.
                let slots: Vec<(String, u32)> = (1..=6).map(|n| (format!("A{n}"), 10)).collect();
                let slots: Vec<(&str, u32)> = slots.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                let m = MockVend::closed(&s.id, &slots);
                self.vends.push((id, m.clone()));
                Built::Dispenser(Arc::new(m))
            }
            _ => return Err(unsupported(s)),
        })
    }

    /// What the printer simulator printed last (`None` inside: nothing yet); `None`
    /// when no printer is simulated.
    pub(super) fn last_receipt(&self) -> Option<Option<String>> {
        self.printer.as_ref().map(|p| p.last_receipt())
    }
}

/// The devices `outpost demo` runs with when the config names none, one of every
/// kind: an ESC/POS printer simulator with the drawer on its kick port, (when
/// `with_payment`) a nexo terminal simulator, a serial barcode scanner simulator and an
/// MT-SICS scale simulator, each reached through the real driver over loopback TCP;
/// and the trait mocks of the kinds with no real driver yet (customer display, cash
/// acceptor, vend dispenser, environment sensor).
pub fn demo_devices(with_payment: bool) -> Vec<DeviceSettings> {
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

/// The devices `outpost demo --vending` runs with: an MDB cashless reader simulator
/// (a card with funds always presented) and an OSB/1 spiral board simulator of 6
/// trays by 8 columns with its drop sensor, each reached through the real driver
/// over loopback TCP, and the trait mock of the temperature and door sensor (4 °C,
/// door closed).
pub fn demo_vending_devices() -> Vec<DeviceSettings> {
    let dev = |id: &str, kind: &str, driver: &str| DeviceSettings {
        id: id.into(),
        kind: kind.into(),
        driver: driver.into(),
        ..DeviceSettings::default()
    };
    vec![
        dev("reader-1", "payment", "mdb-sim"),
        dev("changer-1", "cash_acceptor", "mdb-changer-sim"),
        dev("validator-1", "cash_acceptor", "mdb-validator-sim"),
        dev("board-1", "vend_dispenser", "sim"),
        dev("sensor-1", "sensor", "mock"),
    ]
}
