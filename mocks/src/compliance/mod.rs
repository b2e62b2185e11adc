//! The compliance suite: what every backend of a capability trait must do, real
//! driver against its simulator and mock alike (vector's component spec tests).
//!
//! Each check takes the device under test, closed and unclaimed, and a harness: a
//! small trait through which the check makes the world misbehave (paper out, cover
//! open, drawer pushed shut) and sees what came out, whatever the backend. The
//! checks panic with a message naming the broken rule, like `assert!`.
//!
//! - [`printer`]: the receipt printer check, [`printer::receipt_printer`], and its
//!   [`printer::PrinterHarness`].
//! - [`drawer`]: the cash drawer check, [`drawer::cash_drawer`], and its
//!   [`drawer::DrawerHarness`].

pub mod drawer;
pub mod printer;
