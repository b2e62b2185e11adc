//! The common device model every device family shares (UnifiedPOS's open, claim,
//! enable, release, CheckHealth and statistics).
//!
//! A backend embeds one [`DeviceCore`], which keeps the lifecycle state, the health
//! last seen, the statistics counters and the event bus, and implements [`Device`]
//! for the parts only it knows: opening its transport and checking its health.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::event::{EventBody, EventBus};
use crate::fault::DeviceFault;
use crate::{DeviceError, ErrorKind};

/// What a device is for. The names are the API's and the configuration's.
#[non_exhaustive]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Prints receipts.
    ReceiptPrinter,
    /// Holds the cash; opened by a kick pulse.
    CashDrawer,
    /// Reads barcodes.
    BarcodeScanner,
    /// Weighs goods sold by weight.
    Scale,
    /// Shows the customer what they are paying.
    CustomerDisplay,
    /// Takes card payments.
    PaymentTerminal,
    /// Takes coins and notes.
    CashAcceptor,
    /// Drops a product from a vending slot.
    VendDispenser,
    /// Temperature, door and case sensors.
    EnvironmentSensor,
}

impl DeviceKind {
    /// Every kind, in API order.
    pub const ALL: [DeviceKind; 9] = [
        DeviceKind::ReceiptPrinter,
        DeviceKind::CashDrawer,
        DeviceKind::BarcodeScanner,
        DeviceKind::Scale,
        DeviceKind::CustomerDisplay,
        DeviceKind::PaymentTerminal,
        DeviceKind::CashAcceptor,
        DeviceKind::VendDispenser,
        DeviceKind::EnvironmentSensor,
    ];

    /// The API and configuration name, e.g. `receipt_printer`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::ReceiptPrinter => "receipt_printer",
            DeviceKind::CashDrawer => "cash_drawer",
            DeviceKind::BarcodeScanner => "barcode_scanner",
            DeviceKind::Scale => "scale",
            DeviceKind::CustomerDisplay => "customer_display",
            DeviceKind::PaymentTerminal => "payment_terminal",
            DeviceKind::CashAcceptor => "cash_acceptor",
            DeviceKind::VendDispenser => "vend_dispenser",
            DeviceKind::EnvironmentSensor => "environment_sensor",
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown device kind {s:?}"))
    }
}

/// Who a device is. The configured part (`id`, `kind`, `driver`, `transport`) is known
/// before opening; the rest is learned from the device when it says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    /// The configured id, unique in the store unit.
    pub id: String,
    /// What the device is for.
    pub kind: DeviceKind,
    /// The driver's name, e.g. `escpos`, `nexo`, `mock`.
    pub driver: String,
    /// How it is reached, e.g. `tcp://10.0.0.5:9100` or `serial:///dev/ttyUSB0`.
    pub transport: String,
    /// Maker, when the device says.
    pub vendor: Option<String>,
    /// Model, when the device says.
    pub model: Option<String>,
    /// Firmware version, when the device says.
    pub firmware: Option<String>,
    /// Serial number, when the device says.
    pub serial: Option<String>,
}

impl DeviceInfo {
    /// The configured part of a device's identity.
    pub fn new(
        id: impl Into<String>,
        kind: DeviceKind,
        driver: impl Into<String>,
        transport: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            kind,
            driver: driver.into(),
            transport: transport.into(),
            vendor: None,
            model: None,
            firmware: None,
            serial: None,
        }
    }
}

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Not opened, or closed after a failure.
    Closed,
    /// Open and ready.
    Idle,
    /// Working on a command.
    Busy,
    /// Open but in an error the device reported (cover open, jam, ...).
    Error,
}

/// Whether the device has power and is reachable (UnifiedPOS power reporting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// Not known yet.
    Unknown,
    /// Powered and reachable.
    Online,
    /// Reachable but switched off or asleep.
    Off,
    /// Not reachable.
    Offline,
}

/// How far a health check may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthLevel {
    /// Ask the device its status; nothing visible happens.
    Internal,
    /// Exercise the device where it can be (a test print, a display test pattern).
    External,
}

/// The verdict of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not checked yet.
    Unknown,
    /// Works.
    Ok,
    /// Works, but needs attention soon (paper near end, coin box nearly full).
    Degraded,
    /// Does not work.
    Failed,
}

/// The result of the latest health check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthReport {
    /// The verdict.
    pub health: Health,
    /// What was checked and what was found, for the technician.
    pub detail: String,
    /// When, in milliseconds since the Unix epoch (0 when never checked).
    pub checked_at_ms: u64,
}

impl HealthReport {
    /// A report made now.
    pub fn now(health: Health, detail: impl Into<String>) -> Self {
        let checked_at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            health,
            detail: detail.into(),
            checked_at_ms,
        }
    }

    fn never() -> Self {
        Self {
            health: Health::Unknown,
            detail: "not checked yet".into(),
            checked_at_ms: 0,
        }
    }
}

/// A snapshot of a device's counters (UnifiedPOS statistics).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Statistics {
    /// Commands that succeeded.
    pub commands_ok: u64,
    /// Commands that failed, whatever the kind.
    pub commands_failed: u64,
    /// Times the transport was opened after the first.
    pub reconnects: u64,
    /// Health checks run.
    pub health_checks: u64,
    /// Device-specific counters (`receipts_printed`, `cuts`, `scans_rejected`, ...).
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Lifecycle {
    state: DeviceState,
    power: PowerState,
    claimed: bool,
    enabled: bool,
    opened_once: bool,
    health: HealthReport,
}

/// What every backend shares: identity, lifecycle, health, statistics and events.
#[derive(Debug)]
pub struct DeviceCore {
    /// Identity; the learned fields change at open. Held only briefly.
    info: Mutex<DeviceInfo>,
    /// Lifecycle and health; a std mutex because it is never held across an await.
    life: Mutex<Lifecycle>,
    commands_ok: AtomicU64,
    commands_failed: AtomicU64,
    reconnects: AtomicU64,
    health_checks: AtomicU64,
    counters: Mutex<BTreeMap<String, u64>>,
    events: EventBus,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent, so a poisoned lock
    // (a panic elsewhere while held) is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DeviceCore {
    /// A closed, unclaimed device.
    pub fn new(info: DeviceInfo) -> Self {
        let events = EventBus::new(info.id.clone());
        Self {
            info: Mutex::new(info),
            life: Mutex::new(Lifecycle {
                state: DeviceState::Closed,
                power: PowerState::Unknown,
                claimed: false,
                enabled: false,
                opened_once: false,
                health: HealthReport::never(),
            }),
            commands_ok: AtomicU64::new(0),
            commands_failed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            counters: Mutex::new(BTreeMap::new()),
            events,
        }
    }

    /// Who the device is.
    pub fn info(&self) -> DeviceInfo {
        lock(&self.info).clone()
    }

    /// The configured id.
    pub fn id(&self) -> String {
        lock(&self.info).id.clone()
    }

    /// Record what the device said about itself at open.
    pub fn set_identity(
        &self,
        vendor: Option<String>,
        model: Option<String>,
        firmware: Option<String>,
        serial: Option<String>,
    ) {
        let mut info = lock(&self.info);
        info.vendor = vendor.or(info.vendor.take());
        info.model = model.or(info.model.take());
        info.firmware = firmware.or(info.firmware.take());
        info.serial = serial.or(info.serial.take());
    }

    /// The lifecycle state.
    pub fn state(&self) -> DeviceState {
        lock(&self.life).state
    }

    /// The power state.
    pub fn power(&self) -> PowerState {
        lock(&self.life).power
    }

    /// Move to `to`, raising a status event when it changes.
    pub fn set_state(&self, to: DeviceState) {
        let from = {
            let mut life = lock(&self.life);
            let from = life.state;
            life.state = to;
            from
        };
        if from != to {
            self.events.publish(EventBody::Status { from, to });
        }
    }

    /// Record the power state, raising a power event when it changes.
    pub fn set_power(&self, to: PowerState) {
        let changed = {
            let mut life = lock(&self.life);
            let changed = life.power != to;
            life.power = to;
            changed
        };
        if changed {
            self.events.publish(EventBody::Power { state: to });
        }
    }

    /// The transport is open: the device is idle and powered. Counts reconnects.
    pub fn mark_opened(&self) {
        {
            let mut life = lock(&self.life);
            if life.opened_once {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            life.opened_once = true;
        }
        self.set_power(PowerState::Online);
        self.set_state(DeviceState::Idle);
    }

    /// The transport is closed (by us or by a failure).
    pub fn mark_closed(&self, power: PowerState) {
        self.set_power(power);
        self.set_state(DeviceState::Closed);
    }

    /// Take exclusive use of the device (UnifiedPOS claim). Fails as busy when it is
    /// already claimed.
    pub fn claim(&self) -> Result<(), DeviceFault> {
        let mut life = lock(&self.life);
        if life.claimed {
            return Err(DeviceFault::new(ErrorKind::Busy, "device already claimed"));
        }
        life.claimed = true;
        Ok(())
    }

    /// Give up exclusive use; disables the device too.
    pub fn release(&self) {
        let mut life = lock(&self.life);
        life.claimed = false;
        life.enabled = false;
    }

    /// Allow commands and input (UnifiedPOS DeviceEnabled). The device must be claimed.
    pub fn enable(&self) -> Result<(), DeviceFault> {
        let mut life = lock(&self.life);
        if !life.claimed {
            return Err(DeviceFault::illegal("enable before claim"));
        }
        life.enabled = true;
        Ok(())
    }

    /// Stop commands and input without giving up the claim.
    pub fn disable(&self) {
        lock(&self.life).enabled = false;
    }

    /// Whether the device is claimed and enabled.
    pub fn is_enabled(&self) -> bool {
        let life = lock(&self.life);
        life.claimed && life.enabled
    }

    /// Refuse a command unless the device is open, claimed and enabled.
    pub fn ensure_ready(&self) -> Result<(), DeviceFault> {
        let life = lock(&self.life);
        if life.state == DeviceState::Closed {
            return Err(DeviceFault::offline("device is not open"));
        }
        if !(life.claimed && life.enabled) {
            return Err(DeviceFault::illegal("device is not claimed and enabled"));
        }
        Ok(())
    }

    /// Count a command's result; a failure also raises an error event.
    pub fn record<T>(&self, result: &Result<T, DeviceFault>) {
        match result {
            Ok(_) => {
                self.commands_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(fault) => {
                self.commands_failed.fetch_add(1, Ordering::Relaxed);
                self.raise_error(fault);
            }
        }
    }

    /// Raise an error event (also for rejected input that was not a command).
    pub fn raise_error(&self, fault: &DeviceFault) {
        self.events.publish(EventBody::Error {
            kind: fault.kind(),
            condition: fault.device_condition(),
            message: fault.message().to_owned(),
        });
    }

    /// Add to a device-specific counter.
    pub fn count(&self, name: &str, by: u64) {
        *lock(&self.counters).entry(name.to_owned()).or_default() += by;
    }

    /// Store the result of a health check.
    pub fn set_health(&self, report: HealthReport) {
        self.health_checks.fetch_add(1, Ordering::Relaxed);
        lock(&self.life).health = report;
    }

    /// The latest health check.
    pub fn health(&self) -> HealthReport {
        lock(&self.life).health.clone()
    }

    /// A snapshot of the counters.
    pub fn statistics(&self) -> Statistics {
        Statistics {
            commands_ok: self.commands_ok.load(Ordering::Relaxed),
            commands_failed: self.commands_failed.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            health_checks: self.health_checks.load(Ordering::Relaxed),
            counters: lock(&self.counters).clone(),
        }
    }

    /// The device's event bus.
    pub fn events(&self) -> &EventBus {
        &self.events
    }
}

/// What every device does, whatever it is for.
#[async_trait]
pub trait Device: Send + Sync {
    /// The shared state; see [`DeviceCore`].
    fn core(&self) -> &DeviceCore;

    /// Open the transport and learn the device's identity. Opening an open device
    /// succeeds without reconnecting. On success the core is marked opened.
    async fn open(&self) -> Result<(), DeviceFault>;

    /// Close the transport. Safe to call at any time.
    async fn close(&self);

    /// Check the device and store the verdict in the core (UnifiedPOS CheckHealth).
    /// An unreachable device is a `Failed` report, not an error.
    async fn check_health(&self, level: HealthLevel) -> HealthReport;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> DeviceCore {
        DeviceCore::new(DeviceInfo::new(
            "printer-1",
            DeviceKind::ReceiptPrinter,
            "test",
            "virtual",
        ))
    }

    #[test]
    fn commands_need_open_claimed_and_enabled() {
        let c = core();
        assert_eq!(c.ensure_ready().unwrap_err().kind(), ErrorKind::Offline);
        c.mark_opened();
        assert_eq!(c.ensure_ready().unwrap_err().kind(), ErrorKind::Illegal);
        assert_eq!(c.enable().unwrap_err().kind(), ErrorKind::Illegal);
        c.claim().unwrap();
        assert_eq!(c.claim().unwrap_err().kind(), ErrorKind::Busy);
        c.enable().unwrap();
        c.ensure_ready().unwrap();
        c.release();
        assert!(!c.is_enabled());
    }

    #[test]
    fn state_changes_raise_events_and_reconnects_are_counted() {
        let c = core();
        c.mark_opened();
        c.mark_closed(PowerState::Offline);
        c.mark_opened();
        let kinds: Vec<_> = c.events().recent().into_iter().map(|e| e.body).collect();
        assert_eq!(
            kinds,
            vec![
                EventBody::Power {
                    state: PowerState::Online
                },
                EventBody::Status {
                    from: DeviceState::Closed,
                    to: DeviceState::Idle
                },
                EventBody::Power {
                    state: PowerState::Offline
                },
                EventBody::Status {
                    from: DeviceState::Idle,
                    to: DeviceState::Closed
                },
                EventBody::Power {
                    state: PowerState::Online
                },
                EventBody::Status {
                    from: DeviceState::Closed,
                    to: DeviceState::Idle
                },
            ]
        );
        assert_eq!(c.statistics().reconnects, 1);
    }

    #[test]
    fn failures_are_counted_and_raised() {
        let c = core();
        c.record::<()>(&Ok(()));
        c.record::<()>(&Err(DeviceFault::condition(
            crate::fault::Condition::PaperEmpty,
            "no paper",
        )));
        c.count("receipts_printed", 2);
        let s = c.statistics();
        assert_eq!((s.commands_ok, s.commands_failed), (1, 1));
        assert_eq!(s.counters["receipts_printed"], 2);
        assert!(matches!(
            c.events().recent().last().unwrap().body,
            EventBody::Error {
                kind: ErrorKind::DeviceSpecific,
                ..
            }
        ));
        assert_eq!(
            "cash_drawer".parse::<DeviceKind>().unwrap(),
            DeviceKind::CashDrawer
        );
        assert!("toaster".parse::<DeviceKind>().is_err());
    }
}
