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
//!   [`seal::SealedKeyFile`], which creates, unseals and crypto-erases the sealed key
//!   (format version 1, units not enrolled); [`seal::Envelope`] is the enrolled sealed
//!   key (version 2): the data key under a TPM share and a second share from HQ or a PIN.
//! - [`anchor`]: the trust anchor ([`anchor::Anchor`]): the TPM lock that revokes shares,
//!   the lock and epoch NV counters, the TPM clock, and sealing of shares, PIN shares and
//!   identity secrets; `TpmAnchor` (feature `tpm`) and [`anchor::SoftwareAnchor`].
//! - [`escrow`]: the blinded key exchange (McCallum–Relyea, as tang) on Ristretto255
//!   through which HQ holds a network share without ever seeing it.
//! - `tpm` (feature `tpm`, private): the TPM plumbing the sealer and the anchor share
//!   (primary key, salted policy sessions, PCR selection, the PCR-changed retry).
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
//! - [`tls_pin`]: a unit's first contact with HQ over the WAN, before it holds HQ's CA:
//!   the CA is trusted by the SHA-256 pin printed with the enrolment token.
//! - [`auth`]: argon2id passwords, terminal bearer tokens, roles and permissions, the
//!   login rate limiter, the hash-chained audit log and the demo credentials file.
//! - [`enroll`]: the enrolment bundle HQ signs (store, unit, HQ key, escrow keys,
//!   lease policy, second factors) and its signed updates.
//! - [`trust`]: the trust record (the anchors, the guard's state, the epoch, the time
//!   base) sealed under the data key, and the trusted clock.
//! - [`fsutil`]: owner-only (0600) file writes and reads shared by the modules above.
//! - [`sled_lock`]: opening a sled database whose last handle was just dropped (its
//!   lock outlives the handle a moment), for every crate that opens sled; with
//!   `test-utils`, [`sled_lock::reopen`] for tests.
//! - `testing` (feature `test-utils`): fixtures other crates' tests reuse; with `tpm`,
//!   a software TPM (swtpm) on loopback that can restart with its state, and the
//!   tpm2-tools proof that a locked share does not unseal outside this crate.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod anchor;
pub mod auth;
pub mod enroll;
pub mod escrow;
pub mod fsutil;
pub mod lease;
pub mod push_token;
pub mod seal;
pub mod sled_lock;
pub mod stream;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod tls;
pub mod tls_pin;
#[cfg(feature = "tpm")]
mod tpm;
pub mod trust;
pub mod vault;
