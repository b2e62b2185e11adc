//! Building the registry: one driver per `[[devices]]` entry, chosen by its kind and
//! configured with its timeouts. `sim` and `mock` entries are the demo's
//! ([`super::demo`]): a wire simulator the real driver reaches over loopback, or a trait
//! mock for the kinds with no real driver yet.

use std::sync::Arc;
use std::time::Duration;

use outpost_peripherals::changer::CoinChanger;
use outpost_peripherals::display::CustomerDisplay;
use outpost_peripherals::drawer::CashDrawer;
use outpost_peripherals::escpos::{EscPosConfig, EscPosPrinter};
use outpost_peripherals::mdb::MdbCashless;
use outpost_peripherals::nexo::{NexoConfig, NexoTerminal};
use outpost_peripherals::payment::PaymentTerminal;
use outpost_peripherals::printer::ReceiptPrinter;
use outpost_peripherals::scale::Scale;
use outpost_peripherals::scanner::BarcodeScanner;
use outpost_peripherals::scanner_serial::{ScannerConfig, SerialScanner};
use outpost_peripherals::sensor::EnvironmentSensor;
use outpost_peripherals::sensor_sysfs::{SysfsSensor, SysfsSensorConfig};
use outpost_peripherals::sics::{SicsConfig, SicsScale};
use outpost_peripherals::spiral::{SpiralBoard, SpiralConfig};
use outpost_peripherals::validator::BillValidator;
use outpost_peripherals::vend::VendDispenser;
use outpost_peripherals::{Device, DeviceKind};

use super::demo::Sims;
use super::inputs::ScanFeed;
use super::receipts::{ReceiptQueue, Spooler};
use super::{Built, Entry, InjectedDevices, Registry, RegistryConfig, RegistryError, unsupported};
use crate::config::devices::{DeviceSpec, Driver, Transport};
use crate::domain::money::Currency;

impl Registry {
    /// Build every device from `specs` (starting simulators for `sim` entries), and
    /// the receipt queue over `store`. Opens nothing: [`start`](Self::start) does.
    pub async fn build(
        specs: &[DeviceSpec],
        overrides: InjectedDevices,
        store: Arc<crate::store::Store>,
        cfg: RegistryConfig,
    ) -> Result<Registry, RegistryError> {
        let mut parts = Parts::default();
        let mut sims = Sims::default();
        // Printers first: drawers open through a printer's kick port.
        let mut ordered: Vec<&DeviceSpec> = specs.iter().collect();
        ordered.sort_by_key(|s| s.kind != DeviceKind::ReceiptPrinter);
        for s in ordered {
            let built = match (s.kind, &s.driver) {
                // The injected terminal replaces the configured one, which is not built.
                (DeviceKind::PaymentTerminal, _) if overrides.terminal.is_some() => continue,
                // A trait mock stands in for the whole device: no driver to configure.
                (_, Driver::Mock) => sims.mock(s, &cfg.currency)?,
                (DeviceKind::ReceiptPrinter, _) => printer(s, &mut sims).await?,
                (DeviceKind::CashDrawer, _) => drawer(s, &parts)?,
                (DeviceKind::PaymentTerminal, _) => payment(s, &mut sims, &cfg.currency).await?,
                (DeviceKind::Scale, _) => scale(s, &mut sims).await?,
                (DeviceKind::BarcodeScanner, _) => scanner(s, &mut sims).await?,
                (DeviceKind::VendDispenser, _) => dispenser(s, &mut sims).await?,
                (DeviceKind::CashAcceptor, _) => cash(s, &mut sims, &cfg.currency).await?,
                (
                    DeviceKind::EnvironmentSensor,
                    Driver::Sysfs {
                        temperature,
                        door,
                        door_open_value,
                    },
                ) => Built::Sensor(Arc::new(SysfsSensor::new(
                    &s.id,
                    SysfsSensorConfig {
                        temperature: temperature.clone(),
                        door: door.clone(),
                        door_open_value: *door_open_value,
                    },
                ))),
                // Customer displays have no real driver yet: only the mocks above.
                _ => return Err(unsupported(s)),
            };
            parts.add(s, built);
        }
        if let Some(t) = overrides.terminal {
            parts.inject_terminal(t);
        }
        let queue = Arc::new(ReceiptQueue::open(store.clone(), cfg.queue_max)?);
        let spooler = Arc::new(Spooler::new(
            queue,
            store.clone(),
            parts.printer.clone(),
            cfg.receipt_width,
            cfg.retry,
        ));
        Ok(Registry {
            entries: parts.entries,
            printer: parts.printer,
            drawer: parts.drawer,
            display: parts.display,
            payment: parts.payment,
            scales: parts.scales,
            scans: parts.scans,
            dispenser: parts.dispenser,
            changer: parts.changer,
            validator: parts.validator,
            sensors: parts.sensors,
            store,
            spooler,
            supervisor: cfg.supervisor,
            sims,
        })
    }
}

/// The registry's devices as they are built: every entry, and the ones checkout uses
/// by role.
#[derive(Default)]
struct Parts {
    entries: Vec<Arc<Entry>>,
    printer: Option<Arc<dyn ReceiptPrinter>>,
    /// The ESC/POS printer by id: a drawer on its kick port shares its link.
    escpos: Option<(String, EscPosPrinter)>,
    drawer: Option<Arc<dyn CashDrawer>>,
    display: Option<Arc<dyn CustomerDisplay>>,
    payment: Option<Arc<dyn PaymentTerminal>>,
    scales: Vec<(String, Arc<dyn Scale>, Duration)>,
    scans: Vec<Arc<ScanFeed>>,
    dispenser: Option<Arc<dyn VendDispenser>>,
    changer: Option<Arc<dyn CoinChanger>>,
    validator: Option<Arc<dyn BillValidator>>,
    sensors: Vec<(String, Arc<dyn EnvironmentSensor>)>,
}

impl Parts {
    /// Keep `built` as the entry of `s`, in the role its kind gives it.
    fn add(&mut self, s: &DeviceSpec, built: Built) {
        let device: Arc<dyn Device> = match built {
            Built::Printer(p) => {
                let arc = Arc::new(p.clone());
                self.printer = Some(arc.clone());
                self.escpos = Some((s.id.clone(), p));
                arc
            }
            Built::Drawer(d) => {
                self.drawer = Some(d.clone());
                d
            }
            Built::Display(d) => {
                self.display = Some(d.clone());
                d
            }
            Built::Payment(t) => {
                self.payment = Some(t.clone());
                t
            }
            Built::Scale(scale) => {
                self.scales
                    .push((s.id.clone(), scale.clone(), s.stable_wait));
                scale
            }
            Built::Scanner(scanner) => {
                self.scans
                    .push(Arc::new(ScanFeed::new(&s.id, scanner.clone())));
                scanner
            }
            Built::Dispenser(d) => {
                self.dispenser = Some(d.clone());
                d
            }
            Built::Sensor(sensor) => {
                self.sensors.push((s.id.clone(), sensor.clone()));
                sensor
            }
            Built::Changer(c) => {
                self.changer = Some(c.clone());
                c
            }
            Built::Validator(v) => {
                self.validator = Some(v.clone());
                v
            }
            Built::Other(d) => d,
        };
        self.entries.push(Arc::new(Entry::new(s, device)));
    }

    /// The caller's payment terminal, listed with the driver it names itself by.
    fn inject_terminal(&mut self, t: Arc<dyn PaymentTerminal>) {
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
        self.entries.push(Arc::new(e));
        self.payment = Some(t);
    }
}

/// A receipt printer: ESC/POS over TCP or a serial port, or against the demo's
/// ESC/POS simulator.
async fn printer(s: &DeviceSpec, sims: &mut Sims) -> Result<Built, RegistryError> {
    let mut c = EscPosConfig::default();
    if let Some(t) = s.connect_timeout {
        c.connect_timeout = t;
    }
    if let Some(t) = s.io_timeout {
        c.io_timeout = t;
    }
    let p = match &s.driver {
        Driver::EscPosTcp { address } => EscPosPrinter::tcp(&s.id, address, c),
        Driver::EscPosSerial { port, baud } => EscPosPrinter::serial(&s.id, port, *baud, c),
        Driver::Sim => EscPosPrinter::tcp(&s.id, &sims.start(s).await?, c),
        _ => return Err(unsupported(s)),
    };
    Ok(Built::Printer(p))
}

/// A cash drawer on the kick port of the ESC/POS printer it names (built before it).
fn drawer(s: &DeviceSpec, parts: &Parts) -> Result<Built, RegistryError> {
    let Driver::EscPosKick { printer: pid } = &s.driver else {
        return Err(unsupported(s));
    };
    let Some((_, p)) = parts.escpos.as_ref().filter(|(id, _)| id == pid) else {
        return Err(RegistryError::Unsupported {
            id: s.id.clone(),
            message: format!("printer {pid} is not an ESC/POS printer"),
        });
    };
    Ok(Built::Drawer(Arc::new(p.drawer(&s.id))))
}

/// The payment terminal: nexo over TCP, an MDB cashless reader in the store's
/// currency, or the demo's nexo or MDB reader simulator.
async fn payment(
    s: &DeviceSpec,
    sims: &mut Sims,
    currency: &Currency,
) -> Result<Built, RegistryError> {
    let t: Arc<dyn PaymentTerminal> = match &s.driver {
        Driver::NexoTcp { address } => Arc::new(nexo(s, address)),
        Driver::Mdb(transport) => Arc::new(mdb(s, transport, currency)),
        Driver::MdbSim => {
            let address = sims.start(s).await?;
            Arc::new(mdb(s, &Transport::Tcp { address }, currency))
        }
        Driver::Sim => Arc::new(nexo(s, &sims.start(s).await?)),
        _ => return Err(unsupported(s)),
    };
    Ok(Built::Payment(t))
}

/// A scale: MT-SICS over a serial port or TCP, or the demo's MT-SICS simulator.
async fn scale(s: &DeviceSpec, sims: &mut Sims) -> Result<Built, RegistryError> {
    let mut c = SicsConfig::default();
    if let Some(t) = s.connect_timeout {
        c.connect_timeout = t;
    }
    if let Some(t) = s.io_timeout {
        c.io_timeout = t;
    }
    let scale: Arc<dyn Scale> = match &s.driver {
        Driver::MtSics(transport) => Arc::new(SicsScale::with_connector(
            &s.id,
            transport.connector(outpost_peripherals::sics::DEFAULT_PORT),
            c,
        )),
        Driver::Sim => Arc::new(SicsScale::tcp(&s.id, &sims.start(s).await?, c)),
        _ => return Err(unsupported(s)),
    };
    Ok(Built::Scale(scale))
}

/// A barcode scanner: line-framed over a serial port or TCP, or the demo's scanner
/// simulator.
async fn scanner(s: &DeviceSpec, sims: &mut Sims) -> Result<Built, RegistryError> {
    let c = ScannerConfig {
        connect_timeout: s.connect_timeout.unwrap_or(Duration::from_secs(3)),
        ..Default::default()
    };
    let scanner: Arc<dyn BarcodeScanner> = match &s.driver {
        Driver::ScannerSerial(transport) => Arc::new(SerialScanner::with_connector(
            &s.id,
            transport.connector(outpost_peripherals::scanner_serial::DEFAULT_PORT),
            c,
        )),
        Driver::Sim => Arc::new(SerialScanner::tcp(&s.id, &sims.start(s).await?, c)),
        _ => return Err(unsupported(s)),
    };
    Ok(Built::Scanner(scanner))
}

/// A vend dispenser: a spiral board speaking OSB/1 over a serial port or TCP, or the
/// demo's OSB/1 board simulator.
async fn dispenser(s: &DeviceSpec, sims: &mut Sims) -> Result<Built, RegistryError> {
    let mut c = SpiralConfig::default();
    if let Some(t) = s.connect_timeout {
        c.connect_timeout = t;
    }
    if let Some(t) = s.io_timeout {
        c.io_timeout = t;
    }
    let board: Arc<dyn VendDispenser> = match &s.driver {
        Driver::Osb(transport) => Arc::new(SpiralBoard::with_connector(
            &s.id,
            transport.connector(outpost_peripherals::spiral::DEFAULT_PORT),
            c,
        )),
        Driver::Sim => Arc::new(SpiralBoard::tcp(&s.id, &sims.start(s).await?, c)),
        _ => return Err(unsupported(s)),
    };
    Ok(Built::Dispenser(board))
}

/// A cash acceptor: an MDB coin changer or bill validator through a serial MDB
/// bridge, or the demo's simulator of either.
async fn cash(
    s: &DeviceSpec,
    sims: &mut Sims,
    currency: &Currency,
) -> Result<Built, RegistryError> {
    use outpost_peripherals::mdb::{ChangerConfig, MdbChanger, MdbValidator, ValidatorConfig};
    let port = outpost_peripherals::mdb::driver::DEFAULT_PORT;
    let mut cc = ChangerConfig {
        decimal_places: currency.exponent(),
        ..Default::default()
    };
    let mut vc = ValidatorConfig {
        decimal_places: currency.exponent(),
        ..Default::default()
    };
    if let Some(t) = s.connect_timeout {
        cc.connect_timeout = t;
        vc.connect_timeout = t;
    }
    if let Some(t) = s.io_timeout {
        cc.io_timeout = t;
        vc.io_timeout = t;
    }
    Ok(match &s.driver {
        Driver::MdbChanger(t) => Built::Changer(Arc::new(MdbChanger::with_connector(
            &s.id,
            t.connector(port),
            cc,
        ))),
        Driver::MdbValidator(t) => Built::Validator(Arc::new(MdbValidator::with_connector(
            &s.id,
            t.connector(port),
            vc,
        ))),
        Driver::MdbChangerSim => {
            Built::Changer(Arc::new(MdbChanger::tcp(&s.id, &sims.start(s).await?, cc)))
        }
        Driver::MdbValidatorSim => Built::Validator(Arc::new(MdbValidator::tcp(
            &s.id,
            &sims.start(s).await?,
            vc,
        ))),
        _ => return Err(unsupported(s)),
    })
}

fn nexo(s: &DeviceSpec, address: &str) -> NexoTerminal {
    let mut c = NexoConfig::new(s.id.clone(), address.to_owned());
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
    NexoTerminal::new(c)
}

fn mdb(s: &DeviceSpec, transport: &Transport, currency: &Currency) -> MdbCashless {
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
    MdbCashless::with_connector(
        &s.id,
        transport.connector(outpost_peripherals::mdb::driver::DEFAULT_PORT),
        c,
    )
}
