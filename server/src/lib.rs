//! Outpost store server: terminals on the store's LAN sell through it with no WAN at
//! all; an acknowledged sale is never lost and never recorded twice.
//!
//! # Layout
//! Modules import one way, bottom to top (`docs/architecture.md`; the `layers` test
//! keeps it true):
//! - [`domain`]: catalog, pricing and promotions, tenders, sales, refunds, the payment
//!   state machine. Pure: no I/O, no actix, no sled.
//! - [`telemetry`]: logging set-up and the recent log lines.
//! - [`config`]: settings from file, environment and flags, checked.
//! - [`store`]: sled trees, the single writer with group commit, catalog generations,
//!   and the outbox (what this unit owes HQ).
//! - [`loyalty`]: customers, points and vouchers HQ pushed, this unit's totals, the
//!   offline redemption limit.
//! - [`import`], [`seed`]: the catalog importer and the demo store.
//! - [`devices`]: the device registry and supervisor, the receipt queue and spooler.
//! - [`sales`]: checkout, refunds, idempotency and payment recovery.
//! - [`vending`]: the vending site: slots, the vend state machine and its recovery.
//! - [`access`]: the data key, the presence lease and lockdown, staff and terminal
//!   credentials, sessions, the audit log, tamper sensors, TLS.
//! - [`shopper`]: self-checkout on the shopper's phone: store tokens, shopper
//!   sessions and their carts.
//! - [`mesh`]: this unit's store-mesh node.
//! - [`hq`]: the gRPC port HQ pushes to, the uplink that drains the outbox, events,
//!   the sync status, catalog artifacts through the mesh.
//! - [`sdnotify`]: systemd's notify protocol: ready, watchdog from a health loop.
//! - [`update`]: the health gate, probation, a release applied live.
//! - [`http`]: the REST API v1 and its OpenAPI document.
//! - [`console`]: the technician console, server-rendered pages under `/console/`.
//! - [`shop`]: the shopper page under `/shop/` the store QR opens.
//! - [`startup`]: `Application::build` and `run_until`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod access;
pub mod config;
pub mod console;
pub mod devices;
pub mod domain;
pub mod hq;
pub mod http;
pub mod import;
#[cfg(test)]
mod layers;
pub mod loyalty;
pub mod mesh;
pub mod sales;
pub mod sdnotify;
pub mod seed;
pub mod shop;
pub mod shopper;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod update;
pub mod vending;
