//! Trait-level mocks of the peripheral capability traits: each answers from an
//! expectation queue ([`Expectations`](crate::Expectations)) of [`Step`]s, keeps what
//! it was asked to do for assertions, and fails the test from `done()` when a queued
//! step was never used.
//!
//! - [`scripted`]: [`Mock`], what every one of them is made of (its device core,
//!   its step queue, its modelled state, and the lifecycle and health they share);
//!   each mock's type is `Mock` of its model.
//! - [`printer`]: the receipt printer, [`printer::MockPrinter`].
//! - [`drawer`]: the cash drawer, [`drawer::MockDrawer`].
//! - [`display`]: the customer display, [`display::MockDisplay`].
//! - [`scanner`]: the barcode scanner, [`scanner::MockScanner`].
//! - [`scale`]: the scale, [`scale::MockScale`].
//! - [`cash`]: the coin and note acceptor, [`cash::MockCashAcceptor`].
//! - [`vend`]: the vend dispenser, [`vend::MockVend`].
//! - [`changer`]: the coin changer, [`changer::MockChanger`].
//! - [`validator`]: the bill validator, [`validator::MockValidator`].
//! - [`sensor`]: temperature, door and tamper sensors, [`sensor::MockSensor`].

use outpost_peripherals::DeviceFault;

pub mod cash;
pub mod changer;
pub mod display;
pub mod drawer;
pub mod printer;
pub mod scale;
pub mod scanner;
pub mod scripted;
pub mod sensor;
pub mod validator;
pub mod vend;

pub use scripted::{Mock, Model};

/// What the next command of a mock does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Behave like a working device.
    Ok,
    /// Fail with this fault, doing nothing.
    Fail(DeviceFault),
}

/// Most a mock keeps of what it was asked to do; the oldest goes first.
pub const MAX_KEPT: usize = 10_000;

fn keep<T>(list: &mut std::collections::VecDeque<T>, item: T) {
    if list.len() == MAX_KEPT {
        list.pop_front();
    }
    list.push_back(item);
}
