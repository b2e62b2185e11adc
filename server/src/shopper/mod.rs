//! Self-checkout on the shopper's own phone (docs/self-checkout.md).
//!
//! A store token (the QR at the entrance or on a kiosk, issued to staff) is exchanged
//! for a shopper session; the session builds its own cart, priced by the store's
//! pricing engine. A shopper is no staff member and no terminal: the API's
//! permission checks refuse it everywhere but its own routes.
//!
//! # Layout
//! - [`token`]: the store token, sealed under a subkey of the data key.
//! - [`sessions`]: the bounded, expiring, rate-limited session table.
//! - [`cart`]: adding and removing lines, pricing the cart.
//! - [`checkout`]: paying the cart with a QR code on the phone.
//! - [`exit`]: the exit code a paid shopper shows at the door.
//! - [`qr`]: the store QR as SVG.

pub mod cart;
pub mod checkout;
pub mod exit;
pub mod qr;
pub mod sessions;
pub mod token;

pub use sessions::{Opened, Session, SessionError, Sessions};
pub use token::{StoreToken, TokenError};

/// Name of the shopper session cookie (distinct from the staff session's, so neither
/// is ever taken for the other).
pub const SHOPPER_COOKIE: &str = "outpost_shopper";

/// The path of the shopper page a store QR opens; the token follows as `?t=`.
pub const PAGE_PATH: &str = "/shop/";
