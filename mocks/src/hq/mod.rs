//! The mock HQ: a real tonic server of `HqService` that stores what stores upload, and
//! HQ's client side of `StoreService` (catalog pushes, status, signed artifact offers).
//! Behind the `hq` feature.
//!
//! # Layout
//! - [`server`]: [`MockHq`] / [`MockHqHandle`]: `Upload` (Hello, batches, acks of the
//!   highest contiguous sequence, dedup by (unit, seq)), fault injection ([`Faults`]),
//!   stop/start on the same port, counters ([`HqStats`]).
//! - [`storage`]: the sled store under the data dir, mirrored in memory for tests.
//! - [`escrow`]: HQ's keys (`hq-keys`), the enrolment bundles it signs, and its side
//!   of the blinded escrow exchange of enrolled units (share and recovery).
//! - [`enrol`]: enrolment with a one-time token (`Enroll`): the tokens in sled, HQ's
//!   CA that certifies the units' keys, the signed bundle in the answer.
//! - [`enrol_endpoint`]: `Enroll` over TLS without a client certificate on its own
//!   port, its chain ending in HQ's CA (what a unit pins to enrol over the WAN).
//! - [`audit`]: the last audit head per unit, and alerts for a chain that went
//!   backwards.
//! - [`loyalty`]: [`LoyaltyLedger`]: customers' points and vouchers across units, from
//!   the sales they upload, and the balances and offline allowances HQ pushes back.
//! - [`product`]: JSON-lines products (the REST product's fields) to `hq.Product`, with
//!   line numbers on every error.
//! - [`push`]: [`push_catalog`] (checked, chunked, resumable through `GetPushState`),
//!   [`store_status`].
//! - [`auth`]: [`Credentials`] for a store port without mutual TLS (HQ's push token or
//!   an admin session), HQ's key file.
//! - [`offer`]: artifact offers for the store mesh, signed with HQ's roster key
//!   ([`sign_offer`]) and sent with [`offer_artifact`].
//! - [`roster`]: the store rosters: a unit that enrols with its mesh peer id is put on
//!   its store's roster, signed with HQ's key, which HQ then pushes to the store.
//! - [`release`]: release rollouts: the cohort, the part a store is sent, the origin,
//!   canary first.
//!
//! The binary `outpost-hq` (`src/bin/outpost-hq/`) is a thin CLI over these; see
//! `docs/mock-hq.md`.

pub mod audit;
pub mod auth;
pub mod enrol;
pub mod enrol_endpoint;
pub mod escrow;
pub mod loyalty;
pub mod offer;
pub mod product;
pub mod push;
pub mod release;
pub mod roster;
pub mod server;
pub mod storage;

pub use audit::{AuditHead, ChainAlert};
pub use auth::{Credentials, HqKey, StoreClient, load_hq_key};
pub use loyalty::{AccountId, LoyaltyLedger};
pub use offer::{OfferSignError, offer_artifact, read_roster_key, sign_offer};
pub use product::{LineError, parse_product_line};
pub use push::{CatalogSource, PushError, PushKind, PushOptions, push_catalog, store_status};
pub use server::{Faults, HqError, HqStats, MockHq, MockHqHandle};
