//! Trait-level mocks of the peripheral capability traits: each answers from an
//! expectation queue ([`Expectations`](crate::Expectations)) of [`Step`]s, keeps what
//! it was asked to do for assertions, and fails the test from `done()` when a queued
//! step was never used.
//!
//! - [`printer`]: the receipt printer, [`printer::MockPrinter`].
//! - [`drawer`]: the cash drawer, [`drawer::MockDrawer`].
//! - [`display`]: the customer display, [`display::MockDisplay`].
//! - [`scanner`]: the barcode scanner, [`scanner::MockScanner`].
//! - [`scale`]: the scale, [`scale::MockScale`].
//! - [`cash`]: the coin and note acceptor, [`cash::MockCashAcceptor`].
//! - [`vend`]: the vend dispenser, [`vend::MockVend`].
//! - [`sensor`]: temperature, door and tamper sensors, [`sensor::MockSensor`].

use std::sync::Arc;

use outpost_peripherals::{DeviceCore, DeviceFault, DeviceInfo, DeviceKind};

pub mod cash;
pub mod display;
pub mod drawer;
pub mod printer;
pub mod scale;
pub mod scanner;
pub mod sensor;
pub mod vend;

/// What the next command of a mock does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Behave like a working device.
    Ok,
    /// Fail with this fault, doing nothing.
    Fail(DeviceFault),
}

/// A core for a mock: opened, claimed and enabled when `ready`.
fn core(id: &str, kind: DeviceKind, ready: bool) -> Arc<DeviceCore> {
    let core = Arc::new(DeviceCore::new(DeviceInfo::new(
        id, kind, "mock", "virtual",
    )));
    if ready {
        core.mark_opened();
        // A fresh core is unclaimed, so neither call can fail.
        let _ = core.claim();
        let _ = core.enable();
    }
    core
}

/// Most a mock keeps of what it was asked to do; the oldest goes first.
pub const MAX_KEPT: usize = 10_000;

fn keep<T>(list: &mut std::collections::VecDeque<T>, item: T) {
    if list.len() == MAX_KEPT {
        list.pop_front();
    }
    list.push_back(item);
}
