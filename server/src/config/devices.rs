//! `[[devices]]` entries, checked: from the file's loose keys to a [`DeviceSpec`] per
//! device. Every error names the entry (`devices[2] (id "printer-1")`) and says what
//! to write instead, so a technician can fix the file without reading code.

use std::collections::HashMap;
use std::time::Duration;

use outpost_peripherals::DeviceKind;
pub use outpost_peripherals::transport::Transport;

use crate::config::DeviceSettings;

/// How Outpost reaches one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// ESC/POS printer on raw TCP (`address`, port 9100 when not given).
    EscPosTcp {
        /// `host` or `host:port`.
        address: String,
    },
    /// ESC/POS printer on a serial port.
    EscPosSerial {
        /// `/dev/ttyUSB0`.
        port: String,
        /// Baud rate.
        baud: u32,
    },
    /// A cash drawer on an ESC/POS printer's kick port.
    EscPosKick {
        /// The printer's device id.
        printer: String,
    },
    /// nexo payment terminal over TCP.
    NexoTcp {
        /// `host:port`.
        address: String,
    },
    /// MDB cashless reader through a serial MDB bridge, as the payment terminal.
    Mdb(Transport),
    /// Line-framed serial barcode scanner (AIM symbology prefixes).
    ScannerSerial(Transport),
    /// Mettler-Toledo MT-SICS scale.
    MtSics(Transport),
    /// Spiral-motor vending board speaking OSB/1 (`docs/vending.md`), with its drop
    /// sensor.
    Osb(Transport),
    /// MDB coin changer through a serial MDB bridge (a cash acceptor).
    MdbChanger(Transport),
    /// MDB bill validator through a serial MDB bridge (a cash acceptor).
    MdbValidator(Transport),
    /// An environment sensor the kernel drives, read from sysfs files
    /// (`outpost_peripherals::sensor_sysfs`).
    Sysfs {
        /// The temperature file.
        temperature: Option<std::path::PathBuf>,
        /// The door switch's GPIO value file.
        door: Option<std::path::PathBuf>,
        /// What the door file reads when open.
        door_open_value: u8,
    },
    /// The real driver (ESC/POS, nexo, scanner or MT-SICS) talking to an in-process wire simulator on a
    /// loopback port. For demos and tests; needs the `demo` feature.
    Sim,
    /// The MDB cashless driver talking to the in-process MDB reader simulator on a
    /// loopback port (a vending demo's card reader). Needs the `demo` feature.
    MdbSim,
    /// The MDB coin changer driver talking to the in-process changer simulator on a
    /// loopback port (a vending demo's changer). Needs the `demo` feature.
    MdbChangerSim,
    /// The MDB bill validator driver talking to the in-process validator simulator
    /// on a loopback port (a vending demo's validator). Needs the `demo` feature.
    MdbValidatorSim,
    /// A trait-level mock (payment terminal, customer display, scanner, scale, cash
    /// acceptor, vend dispenser, environment sensor). For demos and tests;
    /// needs the `demo` feature.
    Mock,
}

impl Driver {
    /// The name written in the config file.
    pub fn name(&self) -> &'static str {
        match self {
            Driver::EscPosTcp { .. } => "escpos-tcp",
            Driver::EscPosSerial { .. } => "escpos-serial",
            Driver::EscPosKick { .. } => "escpos-kick",
            Driver::NexoTcp { .. } => "nexo-tcp",
            Driver::Mdb(_) => "mdb",
            Driver::ScannerSerial(_) => "scanner-serial",
            Driver::MtSics(_) => "mt-sics",
            Driver::Osb(_) => "osb",
            Driver::MdbChanger(_) => "mdb-changer",
            Driver::MdbValidator(_) => "mdb-validator",
            Driver::Sysfs { .. } => "sysfs",
            Driver::Sim => "sim",
            Driver::MdbSim => "mdb-sim",
            Driver::MdbChangerSim => "mdb-changer-sim",
            Driver::MdbValidatorSim => "mdb-validator-sim",
            Driver::Mock => "mock",
        }
    }
}

/// One checked `[[devices]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Unique id.
    pub id: String,
    /// What it is.
    pub kind: DeviceKind,
    /// How it is reached.
    pub driver: Driver,
    /// Bound on opening the transport.
    pub connect_timeout: Option<Duration>,
    /// Bound on each read/write (printer) or status exchange (payment).
    pub io_timeout: Option<Duration>,
    /// Payment terminal: bound on a payment, card holder included.
    pub request_timeout: Option<Duration>,
    /// Payment terminal: POIID.
    pub poi_id: Option<String>,
    /// Payment terminal: SaleID.
    pub sale_id: Option<String>,
    /// Between health checks; the `[receipts]` default when unset.
    pub health_interval: Option<Duration>,
    /// Scale: how long a checkout waits for the weight to settle (zero: one reading).
    pub stable_wait: Duration,
}

/// A `[[devices]]` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The entry (and key) at fault, e.g. `devices[1].address`.
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Kinds a device may be configured as, and the drivers each accepts.
const DRIVERS: &[(DeviceKind, &[&str])] = &[
    (
        DeviceKind::ReceiptPrinter,
        &["escpos-tcp", "escpos-serial", "sim"],
    ),
    (DeviceKind::CashDrawer, &["escpos-kick"]),
    (DeviceKind::CustomerDisplay, &["mock"]),
    (
        DeviceKind::PaymentTerminal,
        &["nexo-tcp", "mdb", "sim", "mdb-sim", "mock"],
    ),
    (
        DeviceKind::BarcodeScanner,
        &["scanner-serial", "sim", "mock"],
    ),
    (DeviceKind::Scale, &["mt-sics", "sim", "mock"]),
    (DeviceKind::VendDispenser, &["osb", "sim", "mock"]),
    (
        DeviceKind::CashAcceptor,
        &[
            "mdb-changer",
            "mdb-validator",
            "mdb-changer-sim",
            "mdb-validator-sim",
            "mock",
        ],
    ),
    (DeviceKind::EnvironmentSensor, &["sysfs", "mock"]),
];

/// Kinds checkout uses "the" one of: a unit has at most one of each.
const SINGLE: &[DeviceKind] = &[
    DeviceKind::ReceiptPrinter,
    DeviceKind::CashDrawer,
    DeviceKind::CustomerDisplay,
    DeviceKind::PaymentTerminal,
    DeviceKind::VendDispenser,
];

/// The config's kind names: the short ones and the API's.
fn parse_kind(s: &str) -> Option<DeviceKind> {
    Some(match s {
        "printer" | "receipt_printer" => DeviceKind::ReceiptPrinter,
        "drawer" | "cash_drawer" => DeviceKind::CashDrawer,
        "display" | "customer_display" => DeviceKind::CustomerDisplay,
        "payment" | "payment_terminal" => DeviceKind::PaymentTerminal,
        "scanner" | "barcode_scanner" => DeviceKind::BarcodeScanner,
        "scale" => DeviceKind::Scale,
        "cash_acceptor" => DeviceKind::CashAcceptor,
        "vend_dispenser" => DeviceKind::VendDispenser,
        "sensor" | "environment_sensor" => DeviceKind::EnvironmentSensor,
        _ => return None,
    })
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `host` or `host:port`, no spaces or scheme; `need_port` requires the port.
fn check_address(a: &str, need_port: bool) -> Result<(), String> {
    if a.is_empty() || a.len() > 255 || a.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!(
            "{a:?} is not an address: write host:port, e.g. \"10.0.0.5:9100\""
        ));
    }
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok(()),
                _ => Err(format!(
                    "{a:?}: port {port:?} is not a port number (1-65535)"
                )),
            }
        }
        _ if need_port => Err(format!(
            "{a:?} has no port: write host:port, e.g. \"10.0.0.7:4100\""
        )),
        _ => Ok(()),
    }
}

fn ms(v: Option<u64>, field: &str, at: &str) -> Result<Option<Duration>, SpecError> {
    match v {
        Some(0) => Err(SpecError {
            field: format!("{at}.{field}"),
            message: "must be at least 1".into(),
        }),
        Some(n) if n > 3_600_000 => Err(SpecError {
            field: format!("{at}.{field}"),
            message: "must be at most one hour".into(),
        }),
        other => Ok(other.map(Duration::from_millis)),
    }
}

impl DeviceSpec {
    /// Check one entry; `index` is its place in the file, for the error.
    pub fn parse(index: usize, d: &DeviceSettings) -> Result<DeviceSpec, SpecError> {
        let at = if d.id.is_empty() {
            format!("devices[{index}]")
        } else {
            format!("devices[{index}] (id {:?})", d.id)
        };
        let err = |key: &str, message: String| SpecError {
            field: if key.is_empty() {
                at.clone()
            } else {
                format!("{at}.{key}")
            },
            message,
        };
        if !valid_id(&d.id) {
            return Err(err(
                "id",
                "every device needs an id of 1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        let kind = parse_kind(&d.kind).ok_or_else(|| {
            err(
                "kind",
                format!(
                    "unknown kind {:?}: use printer, drawer, display, payment, scanner, scale, cash_acceptor, vend_dispenser or sensor",
                    d.kind
                ),
            )
        })?;
        let Some((_, drivers)) = DRIVERS.iter().find(|(k, _)| *k == kind) else {
            return Err(err(
                "kind",
                format!(
                    "a {kind} is not available yet in the server's device registry (its driver is not wired in); remove the entry until it is"
                ),
            ));
        };
        if !drivers.contains(&d.driver.as_str()) {
            return Err(err(
                "driver",
                format!(
                    "unknown driver {:?} for {kind}: use {}",
                    d.driver,
                    drivers.join(", ")
                ),
            ));
        }
        let unused = |key: &str, set: bool| -> Result<(), SpecError> {
            if set {
                Err(err(key, format!("not used by driver {}", d.driver)))
            } else {
                Ok(())
            }
        };
        let required = |key: &str, v: &Option<String>| -> Result<String, SpecError> {
            v.clone()
                .ok_or_else(|| err(key, format!("driver {} needs {key}", d.driver)))
        };
        let driver = match d.driver.as_str() {
            "escpos-tcp" | "nexo-tcp" => {
                let address = required("address", &d.address)?;
                check_address(&address, d.driver == "nexo-tcp").map_err(|m| err("address", m))?;
                unused("port", d.port.is_some())?;
                unused("baud", d.baud.is_some())?;
                if d.driver == "escpos-tcp" {
                    Driver::EscPosTcp { address }
                } else {
                    Driver::NexoTcp { address }
                }
            }
            "escpos-serial" => {
                let port = required("port", &d.port)?;
                if port.trim().is_empty() {
                    return Err(err("port", "must name a serial port".into()));
                }
                unused("address", d.address.is_some())?;
                let baud = d.baud.unwrap_or(19_200);
                if !(1_200..=921_600).contains(&baud) {
                    return Err(err("baud", format!("{baud} is not a serial baud rate")));
                }
                Driver::EscPosSerial { port, baud }
            }
            "mdb" | "mdb-changer" | "mdb-validator" | "scanner-serial" | "mt-sics" | "osb" => {
                let transport = match (&d.address, &d.port) {
                    (Some(address), None) => {
                        check_address(address, false).map_err(|m| err("address", m))?;
                        unused("baud", d.baud.is_some())?;
                        Transport::Tcp {
                            address: address.clone(),
                        }
                    }
                    (None, Some(port)) => {
                        if port.trim().is_empty() {
                            return Err(err("port", "must name a serial port".into()));
                        }
                        let default_baud = match d.driver.as_str() {
                            "mdb" | "mdb-changer" | "mdb-validator" => 115_200,
                            "osb" => 19_200,
                            _ => 9_600,
                        };
                        let baud = d.baud.unwrap_or(default_baud);
                        if !(1_200..=921_600).contains(&baud) {
                            return Err(err("baud", format!("{baud} is not a serial baud rate")));
                        }
                        Transport::Serial {
                            port: port.clone(),
                            baud,
                        }
                    }
                    (Some(_), Some(_)) => {
                        return Err(err(
                            "address",
                            format!(
                                "driver {} takes address (a serial-to-IP converter) or port (a serial port), not both",
                                d.driver
                            ),
                        ));
                    }
                    (None, None) => {
                        return Err(err(
                            "",
                            format!(
                                "driver {} needs port = \"/dev/ttyUSB0\" (serial) or address = \"host:port\" (serial-to-IP converter)",
                                d.driver
                            ),
                        ));
                    }
                };
                match d.driver.as_str() {
                    "mdb" => Driver::Mdb(transport),
                    "mdb-changer" => Driver::MdbChanger(transport),
                    "mdb-validator" => Driver::MdbValidator(transport),
                    "scanner-serial" => Driver::ScannerSerial(transport),
                    "osb" => Driver::Osb(transport),
                    _ => Driver::MtSics(transport),
                }
            }
            "sysfs" => {
                unused("address", d.address.is_some())?;
                unused("port", d.port.is_some())?;
                unused("baud", d.baud.is_some())?;
                let file = |key: &str,
                            v: &Option<String>|
                 -> Result<Option<std::path::PathBuf>, SpecError> {
                    match v {
                        None => Ok(None),
                        Some(p) if p.starts_with('/') && !p.contains("..") => Ok(Some(p.into())),
                        Some(p) => Err(err(
                            key,
                            format!(
                                "{p:?} must be an absolute path (e.g. /sys/bus/w1/devices/28-…/w1_slave)"
                            ),
                        )),
                    }
                };
                let temperature = file("temperature_file", &d.temperature_file)?;
                let door = file("door_file", &d.door_file)?;
                if temperature.is_none() && door.is_none() {
                    return Err(err(
                        "temperature_file",
                        "driver sysfs needs temperature_file, door_file or both".into(),
                    ));
                }
                let door_open_value = match d.door_open_value {
                    None => 1,
                    Some(v @ (0 | 1)) => v,
                    Some(v) => {
                        return Err(err(
                            "door_open_value",
                            format!("{v} is not a GPIO value: 0 or 1"),
                        ));
                    }
                };
                if door.is_none() && d.door_open_value.is_some() {
                    return Err(err("door_open_value", "goes with door_file".into()));
                }
                Driver::Sysfs {
                    temperature,
                    door,
                    door_open_value,
                }
            }
            "escpos-kick" => {
                unused("address", d.address.is_some())?;
                unused("port", d.port.is_some())?;
                Driver::EscPosKick {
                    printer: required("printer", &d.printer)?,
                }
            }
            "sim" | "mdb-sim" | "mdb-changer-sim" | "mdb-validator-sim" | "mock" => {
                if !cfg!(feature = "demo") {
                    return Err(err(
                        "driver",
                        format!(
                            "driver {} needs the `demo` cargo feature, which this build lacks",
                            d.driver
                        ),
                    ));
                }
                unused("address", d.address.is_some())?;
                unused("port", d.port.is_some())?;
                match d.driver.as_str() {
                    "sim" => Driver::Sim,
                    "mdb-sim" => Driver::MdbSim,
                    "mdb-changer-sim" => Driver::MdbChangerSim,
                    "mdb-validator-sim" => Driver::MdbValidatorSim,
                    _ => Driver::Mock,
                }
            }
            other => return Err(err("driver", format!("unknown driver {other:?}"))),
        };
        if !matches!(driver, Driver::EscPosKick { .. }) {
            unused("printer", d.printer.is_some())?;
        }
        if !matches!(driver, Driver::Sysfs { .. }) {
            unused("temperature_file", d.temperature_file.is_some())?;
            unused("door_file", d.door_file.is_some())?;
            unused("door_open_value", d.door_open_value.is_some())?;
        }
        if kind != DeviceKind::PaymentTerminal {
            unused("request_timeout_secs", d.request_timeout_secs.is_some())?;
            unused("poi_id", d.poi_id.is_some())?;
            unused("sale_id", d.sale_id.is_some())?;
        }
        let request_timeout = match d.request_timeout_secs {
            Some(0) => return Err(err("request_timeout_secs", "must be at least 1".into())),
            other => other.map(Duration::from_secs),
        };
        if matches!(driver, Driver::Mdb(_) | Driver::MdbSim) {
            unused("poi_id", d.poi_id.is_some())?;
            unused("sale_id", d.sale_id.is_some())?;
        }
        if kind != DeviceKind::Scale {
            unused("stable_wait_ms", d.stable_wait_ms.is_some())?;
        }
        let stable_wait = match d.stable_wait_ms {
            Some(n) if n > 10_000 => {
                return Err(err(
                    "stable_wait_ms",
                    "must be at most 10000 (a checkout waits this long)".into(),
                ));
            }
            other => Duration::from_millis(other.unwrap_or(0)),
        };
        let health_interval = match d.health_interval_secs {
            Some(0) => return Err(err("health_interval_secs", "must be at least 1".into())),
            other => other.map(Duration::from_secs),
        };
        Ok(DeviceSpec {
            id: d.id.clone(),
            kind,
            driver,
            connect_timeout: ms(d.connect_timeout_ms, "connect_timeout_ms", &at)?,
            io_timeout: ms(d.io_timeout_ms, "io_timeout_ms", &at)?,
            request_timeout,
            poi_id: d.poi_id.clone(),
            sale_id: d.sale_id.clone(),
            health_interval,
            stable_wait,
        })
    }

    /// Check every entry and how they fit together: unique ids, one device of each
    /// kind checkout uses, drawers naming an ESC/POS printer, and the older
    /// `[payment] terminal` setting (`legacy_terminal`) not clashing with a payment
    /// entry. `payment.terminal = "mock"` with no payment entry becomes one.
    pub fn parse_all(
        entries: &[DeviceSettings],
        legacy_terminal: &str,
    ) -> Result<Vec<DeviceSpec>, SpecError> {
        let mut specs = Vec::with_capacity(entries.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, d) in entries.iter().enumerate() {
            let spec = DeviceSpec::parse(i, d)?;
            if let Some(first) = seen.insert(d.id.as_str(), i) {
                return Err(SpecError {
                    field: format!("devices[{i}] (id {:?}).id", d.id),
                    message: format!("duplicate id: devices[{first}] has it too"),
                });
            }
            // A vending machine has one coin changer and one bill validator, both
            // cash acceptors.
            let role = |s: &DeviceSpec| match s.driver {
                Driver::MdbChanger(_) | Driver::MdbChangerSim => Some("coin changer"),
                Driver::MdbValidator(_) | Driver::MdbValidatorSim => Some("bill validator"),
                _ => None,
            };
            if let Some(r) = role(&spec)
                && let Some(other) = specs.iter().find(|s: &&DeviceSpec| role(s) == Some(r))
            {
                return Err(SpecError {
                    field: format!("devices[{i}] (id {:?}).driver", d.id),
                    message: format!("a unit has one {r}; {:?} is already configured", other.id),
                });
            }
            if SINGLE.contains(&spec.kind)
                && let Some(other) = specs.iter().find(|s: &&DeviceSpec| s.kind == spec.kind)
            {
                return Err(SpecError {
                    field: format!("devices[{i}] (id {:?}).kind", d.id),
                    message: format!(
                        "a unit has one {}; {:?} is already configured",
                        spec.kind, other.id
                    ),
                });
            }
            specs.push(spec);
        }
        for (i, s) in specs.iter().enumerate() {
            if let Driver::EscPosKick { printer } = &s.driver {
                let target = specs.iter().find(|p| &p.id == printer);
                let ok = target.is_some_and(|p| {
                    p.kind == DeviceKind::ReceiptPrinter
                        && matches!(
                            p.driver,
                            Driver::EscPosTcp { .. } | Driver::EscPosSerial { .. } | Driver::Sim
                        )
                });
                if !ok {
                    return Err(SpecError {
                        field: format!("devices[{i}] (id {:?}).printer", s.id),
                        message: format!(
                            "{printer:?} is not a configured ESC/POS printer; the drawer opens through its kick port"
                        ),
                    });
                }
            }
        }
        let has_payment = specs.iter().any(|s| s.kind == DeviceKind::PaymentTerminal);
        match legacy_terminal {
            "none" => {}
            "mock" if has_payment => {
                return Err(SpecError {
                    field: "payment.terminal".into(),
                    message: "a payment terminal is configured in [[devices]] too: keep one (set payment.terminal = \"none\" or remove the entry)".into(),
                });
            }
            "mock" => {
                if !cfg!(feature = "demo") {
                    return Err(SpecError {
                        field: "payment.terminal".into(),
                        message: "mock needs the `demo` cargo feature, which this build lacks"
                            .into(),
                    });
                }
                specs.push(DeviceSpec {
                    id: "payment".into(),
                    kind: DeviceKind::PaymentTerminal,
                    driver: Driver::Mock,
                    connect_timeout: None,
                    io_timeout: None,
                    request_timeout: None,
                    poi_id: None,
                    sale_id: None,
                    health_interval: None,
                    stable_wait: Duration::ZERO,
                });
            }
            other => {
                return Err(SpecError {
                    field: "payment.terminal".into(),
                    message: format!(
                        "unknown terminal {other:?}: use none or mock, or configure one in [[devices]]"
                    ),
                });
            }
        }
        Ok(specs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, kind: &str, driver: &str) -> DeviceSettings {
        DeviceSettings {
            id: id.into(),
            kind: kind.into(),
            driver: driver.into(),
            ..DeviceSettings::default()
        }
    }

    fn with_address(mut d: DeviceSettings, a: &str) -> DeviceSettings {
        d.address = Some(a.into());
        d
    }

    fn error(entries: &[DeviceSettings]) -> SpecError {
        DeviceSpec::parse_all(entries, "none").unwrap_err()
    }

    #[test]
    fn a_whole_store_parses() {
        let mut drawer = dev("drawer-1", "drawer", "escpos-kick");
        drawer.printer = Some("printer-1".into());
        let mut serial = dev("p2", "receipt_printer", "escpos-serial");
        serial.port = Some("/dev/ttyUSB0".into());
        let specs = DeviceSpec::parse_all(
            &[
                with_address(dev("printer-1", "printer", "escpos-tcp"), "10.0.0.5"),
                drawer,
                with_address(dev("pay", "payment", "nexo-tcp"), "10.0.0.7:4100"),
            ],
            "none",
        )
        .unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(
            specs[0].driver,
            Driver::EscPosTcp {
                address: "10.0.0.5".into()
            }
        );
        assert_eq!(specs[1].kind, DeviceKind::CashDrawer);
        let s = DeviceSpec::parse(0, &serial).unwrap();
        assert_eq!(
            s.driver,
            Driver::EscPosSerial {
                port: "/dev/ttyUSB0".into(),
                baud: 19_200
            }
        );
    }

    #[test]
    fn each_bad_entry_is_named_with_what_is_wrong() {
        let cases: Vec<(Vec<DeviceSettings>, &str, &str)> = vec![
            (
                vec![dev("x", "toaster", "mock")],
                "devices[0] (id \"x\").kind",
                "unknown kind",
            ),
            (
                vec![dev("x", "printer", "laser")],
                ".driver",
                "unknown driver \"laser\"",
            ),
            (
                vec![dev("x", "printer", "escpos-tcp")],
                ".address",
                "needs address",
            ),
            (
                vec![dev("x", "payment", "nexo-tcp")],
                ".address",
                "needs address",
            ),
            (
                vec![with_address(dev("x", "payment", "nexo-tcp"), "10.0.0.7")],
                ".address",
                "no port",
            ),
            (
                vec![with_address(
                    dev("x", "printer", "escpos-tcp"),
                    "10.0.0.5:99999",
                )],
                ".address",
                "not a port number",
            ),
            (
                vec![dev("x", "printer", "escpos-serial")],
                ".port",
                "needs port",
            ),
            (
                vec![dev("", "printer", "sim")],
                "devices[0].id",
                "needs an id",
            ),
            (
                vec![dev("x", "scanner", "serial")],
                ".driver",
                "use scanner-serial, sim, mock",
            ),
            (
                vec![dev("x", "scale", "serial")],
                ".driver",
                "use mt-sics, sim, mock",
            ),
            (
                vec![dev("x", "sensor", "sim")],
                ".driver",
                "use sysfs, mock",
            ),
            (
                vec![dev("x", "sensor", "sysfs")],
                ".temperature_file",
                "needs temperature_file, door_file or both",
            ),
            (
                vec![DeviceSettings {
                    temperature_file: Some("w1_slave".into()),
                    ..dev("x", "sensor", "sysfs")
                }],
                ".temperature_file",
                "must be an absolute path",
            ),
            (
                vec![DeviceSettings {
                    door_file: Some("/sys/class/gpio/gpio17/value".into()),
                    door_open_value: Some(2),
                    ..dev("x", "sensor", "sysfs")
                }],
                ".door_open_value",
                "0 or 1",
            ),
            (
                vec![DeviceSettings {
                    temperature_file: Some("/sys/bus/w1/devices/28-1/w1_slave".into()),
                    door_open_value: Some(0),
                    ..dev("x", "sensor", "sysfs")
                }],
                ".door_open_value",
                "goes with door_file",
            ),
            (
                vec![DeviceSettings {
                    door_file: Some("/sys/class/gpio/gpio17/value".into()),
                    address: Some("10.0.0.5:9100".into()),
                    ..dev("x", "printer", "escpos-tcp")
                }],
                ".door_file",
                "not used by driver",
            ),
            (
                vec![dev("x", "cash_acceptor", "sim")],
                ".driver",
                "use mdb-changer, mdb-validator, mdb-changer-sim, mdb-validator-sim, mock",
            ),
            (
                vec![dev("x", "cash_acceptor", "mdb-changer")],
                "",
                "needs port",
            ),
            (
                vec![
                    DeviceSettings {
                        address: Some("10.0.0.9:4001".into()),
                        ..dev("c1", "cash_acceptor", "mdb-changer")
                    },
                    DeviceSettings {
                        address: Some("10.0.0.9:4002".into()),
                        ..dev("c2", "cash_acceptor", "mdb-changer")
                    },
                ],
                "devices[1]",
                "one coin changer",
            ),
            (
                vec![dev("x", "vend_dispenser", "escpos-tcp")],
                ".driver",
                "use osb, sim, mock",
            ),
            (
                vec![dev("x", "vend_dispenser", "osb")],
                "devices[0] (id \"x\")",
                "needs port = \"/dev/ttyUSB0\" (serial) or address",
            ),
            (
                vec![
                    dev("a", "vend_dispenser", "mock"),
                    dev("b", "vend_dispenser", "mock"),
                ],
                "devices[1] (id \"b\").kind",
                "one vend_dispenser",
            ),
            (
                vec![dev("x", "scale", "mt-sics")],
                "devices[0] (id \"x\")",
                "needs port = \"/dev/ttyUSB0\" (serial) or address",
            ),
            (
                vec![{
                    let mut d =
                        with_address(dev("x", "scanner", "scanner-serial"), "10.0.0.9:4001");
                    d.port = Some("/dev/ttyS0".into());
                    d
                }],
                ".address",
                "not both",
            ),
            (
                vec![{
                    let mut d = dev("x", "payment", "mdb");
                    d.port = Some("/dev/ttyACM0".into());
                    d.baud = Some(7);
                    d
                }],
                ".baud",
                "not a serial baud rate",
            ),
            (
                vec![{
                    let mut d = with_address(dev("x", "payment", "mdb"), "10.0.0.9:4001");
                    d.poi_id = Some("P1".into());
                    d
                }],
                ".poi_id",
                "not used by driver mdb",
            ),
            (
                vec![with_address(dev("x", "scale", "mt-sics"), "10.0.0.9:99999")],
                ".address",
                "not a port number",
            ),
            (
                vec![{
                    let mut d = dev("x", "scanner", "mock");
                    d.stable_wait_ms = Some(100);
                    d
                }],
                ".stable_wait_ms",
                "not used",
            ),
            (
                vec![{
                    let mut d = dev("x", "scale", "mock");
                    d.stable_wait_ms = Some(60_000);
                    d
                }],
                ".stable_wait_ms",
                "at most 10000",
            ),
            (
                vec![
                    dev("p", "payment", "sim"),
                    with_address(dev("m", "payment", "mdb"), "h:1"),
                ],
                "devices[1] (id \"m\").kind",
                "one payment_terminal",
            ),
            (
                vec![dev("x", "printer", "sim"), dev("x", "payment", "sim")],
                "devices[1] (id \"x\").id",
                "duplicate id",
            ),
            (
                vec![dev("a", "printer", "sim"), dev("b", "printer", "sim")],
                "devices[1] (id \"b\").kind",
                "one receipt_printer",
            ),
            (
                vec![dev("d", "drawer", "escpos-kick")],
                ".printer",
                "needs printer",
            ),
            (
                vec![{
                    let mut d = dev("d", "drawer", "escpos-kick");
                    d.printer = Some("nope".into());
                    d
                }],
                ".printer",
                "not a configured ESC/POS printer",
            ),
            (
                vec![with_address(dev("x", "display", "mock"), "1.2.3.4:1")],
                ".address",
                "not used",
            ),
            (
                vec![{
                    let mut d = dev("x", "printer", "sim");
                    d.io_timeout_ms = Some(0);
                    d
                }],
                ".io_timeout_ms",
                "at least 1",
            ),
        ];
        for (entries, field, message) in cases {
            let e = error(&entries);
            assert!(
                e.field.contains(field) && e.message.contains(message),
                "{entries:?}: got {e}"
            );
        }
    }

    #[test]
    fn serial_devices_parse_with_either_transport() {
        let mut scale = dev("scale-1", "scale", "mt-sics");
        scale.port = Some("/dev/ttyUSB1".into());
        scale.stable_wait_ms = Some(1500);
        let mut mdb = dev("mdb-1", "payment", "mdb");
        mdb.port = Some("/dev/ttyACM0".into());
        let specs = DeviceSpec::parse_all(
            &[
                with_address(dev("scan-1", "scanner", "scanner-serial"), "10.0.0.9"),
                with_address(
                    dev("scan-2", "barcode_scanner", "scanner-serial"),
                    "10.0.0.9:4002",
                ),
                scale,
                mdb,
                dev("door", "sensor", "mock"),
                with_address(dev("board", "vend_dispenser", "osb"), "10.0.0.9"),
            ],
            "none",
        )
        .unwrap();
        assert_eq!(
            specs[0].driver,
            Driver::ScannerSerial(Transport::Tcp {
                address: "10.0.0.9".into()
            })
        );
        assert_eq!(specs[1].kind, DeviceKind::BarcodeScanner);
        assert_eq!(
            specs[2].driver,
            Driver::MtSics(Transport::Serial {
                port: "/dev/ttyUSB1".into(),
                baud: 9_600
            })
        );
        assert_eq!(specs[2].stable_wait, Duration::from_millis(1500));
        assert_eq!(
            specs[3].driver,
            Driver::Mdb(Transport::Serial {
                port: "/dev/ttyACM0".into(),
                baud: 115_200
            })
        );
        assert_eq!(specs[4].kind, DeviceKind::EnvironmentSensor);
        assert_eq!(
            specs[5].driver,
            Driver::Osb(Transport::Tcp {
                address: "10.0.0.9".into()
            })
        );
        let mut serial_board = dev("board", "vend_dispenser", "osb");
        serial_board.port = Some("/dev/ttyS1".into());
        assert_eq!(
            DeviceSpec::parse(0, &serial_board).unwrap().driver,
            Driver::Osb(Transport::Serial {
                port: "/dev/ttyS1".into(),
                baud: 19_200
            })
        );
    }

    #[test]
    fn the_vending_demo_reader_is_the_mdb_driver_on_its_simulator() {
        let spec = DeviceSpec::parse(0, &dev("r", "payment", "mdb-sim")).unwrap();
        assert_eq!(
            (spec.driver.clone(), spec.driver.name()),
            (Driver::MdbSim, "mdb-sim")
        );
        let mut d = dev("r", "payment", "mdb-sim");
        d.poi_id = Some("P1".into());
        assert!(
            DeviceSpec::parse(0, &d)
                .unwrap_err()
                .message
                .contains("not used")
        );
        let e =
            DeviceSpec::parse(0, &with_address(dev("r", "payment", "mdb-sim"), "h:1")).unwrap_err();
        assert_eq!(e.field, "devices[0] (id \"r\").address");
    }

    #[test]
    fn the_older_payment_setting_still_works_and_cannot_clash() {
        let specs = DeviceSpec::parse_all(&[], "mock").unwrap();
        assert_eq!(specs[0].kind, DeviceKind::PaymentTerminal);
        assert_eq!(specs[0].driver, Driver::Mock);
        let e = DeviceSpec::parse_all(&[dev("p", "payment", "sim")], "mock").unwrap_err();
        assert_eq!(e.field, "payment.terminal");
        let e = DeviceSpec::parse_all(&[], "square").unwrap_err();
        assert!(e.message.contains("unknown terminal"), "{e}");
    }
}
