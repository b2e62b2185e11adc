//! The compliance suites: what every backend of a capability trait must do, real
//! driver against its simulator and mock alike (vector's component spec tests).
//!
//! Each check takes the device under test and a harness: a small trait through which
//! the check makes the world misbehave (paper out, cover open, a lost answer) and sees
//! what came out, whatever the backend. The checks panic with a message naming the
//! broken rule, like `assert!`.
//!
//! - [`printer`]: the receipt printer check, [`printer::receipt_printer`], and its
//!   [`printer::PrinterHarness`].
//! - [`drawer`]: the cash drawer check, [`drawer::cash_drawer`], and its
//!   [`drawer::DrawerHarness`].
//! - [`payment`]: every [`PaymentTerminal`](outpost_peripherals::payment::PaymentTerminal).
//! - [`scanner`]: the barcode scanner check, [`scanner::barcode_scanner`].
//! - [`scale`]: the scale check, [`scale::scale`].
//! - [`vend`]: the vend dispenser check, [`vend::vend_dispenser`].
//! - [`changer`]: the coin changer check, [`changer::coin_changer`].
//! - [`validator`]: the bill validator check, [`validator::bill_validator`].

pub mod changer;
pub mod drawer;
pub mod payment;
pub mod printer;
pub mod scale;
pub mod scanner;
pub mod validator;
pub mod vend;
