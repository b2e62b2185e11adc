//! Outpost store server: terminals on the store's LAN sell through it with no WAN at
//! all; an acknowledged sale is never lost and never recorded twice.
//!
//! # Layout
//! - [`domain`]: catalog, pricing and promotions, tenders, sales, refunds, the payment
//!   state machine. Pure: no I/O, no actix, no sled.
//! - [`store`]: sled trees, the single writer with group commit, catalog generations.
//! - [`sales`]: checkout, refunds, idempotency and payment recovery.
//! - [`http`]: the REST API v1 and its OpenAPI document.
//! - [`devices`]: the device registry and supervisor, the receipt queue and spooler.
//! - [`hq_settings`]: what HQ pushed besides the catalog (tax table, store profile,
//!   planogram, device set): versioned records written through the store's writer.
//! - [`events`]: device events, alerts and telemetry written to the outbox for HQ.
//! - [`config`]: settings from file, environment and flags.
//! - [`startup`]: `Application::build` and `run_until`.
//! - [`tls`]: which rustls configuration the REST port, the gRPC port and the uplink get.
//! - [`import`], [`seed`]: the catalog importer and the demo store.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod artifacts;
pub mod config;
pub mod devices;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod hq_settings;
pub mod http;
pub mod import;
pub mod mesh;
pub mod sales;
pub mod security;
pub mod seed;
pub mod startup;
pub mod store;
pub mod tamper;
pub mod telemetry;
pub mod tls;
