//! Outpost's security layer: a stolen store server must be useless to the thief, and on
//! the store LAN only the store's own terminals and staff may use it, each for what their
//! role allows.
//!
//! The crate is a library with no I/O of its own beyond the files it is pointed at; the
//! server wires it in (see `docs/security.md` for the design and the key hierarchy).
//!
//! # Layout
//!
//! - [`seal`]: the [`seal::Sealer`] trait that seals the 32-byte data key, the
//!   [`seal::SoftwareSealer`] for development, the TPM 2.0 sealer (feature `tpm`), and
//!   [`seal::SealedKeyFile`], which creates, unseals and crypto-erases the sealed key.
//! - [`vault`]: [`vault::KeyVault`] derives one subkey per purpose from the data key;
//!   [`vault::Cipher`] is the XChaCha20-Poly1305 AEAD used for data at rest, with the
//!   tree name and key bound as associated data.
//! - [`lease`]: the HQ-signed presence [`lease::Lease`], signed HQ commands
//!   (lock / unlock / wipe) and the [`lease::LeaseGuard`] state machine
//!   (active -> grace -> locked) with an injectable [`lease::Clock`].
//! - [`push_token`]: the short-lived HQ-signed [`push_token::PushToken`] that lets HQ
//!   push to a store's gRPC port that has no mutual TLS.
//! - [`tls`]: the device identity (certificate generated at first start or provisioned)
//!   and the rustls configurations: TLS 1.3 server, mutual TLS to HQ with its CA pinned.
//! - [`auth`]: argon2id passwords, terminal bearer tokens, roles and permissions, the
//!   login rate limiter, the hash-chained audit log and the demo credentials file.
//! - [`fsutil`]: owner-only (0600) file writes and reads shared by the modules above.
//! - `testing` (feature `test-utils`): fixtures other crates' tests reuse; with `tpm`,
//!   a software TPM (swtpm) on loopback.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod auth;
pub mod fsutil;
pub mod lease;
pub mod push_token;
pub mod seal;
pub mod stream;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod tls;
pub mod vault;
