//! `outpost-load`: an HTTP/1.1 load generator for the Outpost store server.
//!
//! It samples real products from the catalog, then drives `--connections` keep-alive
//! connections, one request in flight on each, for a warm-up and then a recorded window,
//! and prints a readable summary followed by one JSON line with the same figures:
//!
//! ```text
//! outpost-load --url http://127.0.0.1:8080 --scenario checkout --connections 64 --duration 10 --warmup 2
//! ```
//!
//! Scenarios:
//! - `sku`: `GET /api/v1/products/{sku}` for random sampled SKUs;
//! - `barcode`: `GET /api/v1/products?barcode=…` for random sampled barcodes;
//! - `checkout`: `POST /api/v1/checkout` with three distinct random products sold by the
//!   piece, a fresh `Idempotency-Key` each; the storage counters of `/metrics` are read
//!   before and after the recorded window to report fsyncs per checkout;
//! - `card-checkout`: the same, paid by card through the server's payment terminal;
//! - `login-storm`: `POST /api/v1/auth/login` with a wrong password, for `--login-user`
//!   or a fresh unknown username each time (no catalog sample, no token), optionally
//!   from `--sources` loopback addresses. Every answer is a refusal (401 or 429) by
//!   design; with `--server-pid` the report adds the server's peak resident memory;
//! - `shopper`: `--connections` shoppers on their phones, whole visits paid by QR
//!   with the provider's notifications played (`--qr-secret-file`), latency per step
//!   ([`shopper`]).
//!
//! Between the warm-up and the recorded window every connection finishes its request in
//! flight and waits, so that the `/metrics` reading before the window sees no warm-up
//! checkout still being written. Latency is measured from sending a request to the end of
//! its response body, in microseconds, for every response whatever its status; a non-2xx
//! status and a transport error (connect, send, read or timeout) each count as an error.
//! The run always ends by itself: each phase's requests are cut off a few seconds after the
//! phase ends.
//!
//! The server needs credentials: set `OUTPOST_TOKEN` to a terminal token (`outpost
//! terminals add NAME`); it is sent as `Authorization: Bearer` with every request. A
//! terminal may not read `/metrics` (technician / admin), so the fsyncs-per-checkout
//! figure of the checkout scenario is not available with a terminal token yet.
//!
//! # Layout
//!
//! - [`cli`]: the command-line options and the scenarios;
//! - [`http`]: where requests go (`--url`), connections, the few requests made outside
//!   the load, reading a response body;
//! - [`sample`]: sampling products from the catalog;
//! - [`work`]: the requests of each scenario, prepared once from the sample;
//! - [`worker`]: one connection's driver and the state the connections share;
//! - [`stats`]: what a connection recorded (latency histogram, statuses, errors);
//! - [`metrics`]: the storage counters of `/metrics` (fsyncs per checkout);
//! - [`memory`]: the server's resident memory from `/proc` (`--server-pid`);
//! - [`report`]: the summary, as readable text and one JSON line;
//! - [`run`]: the coordinator: sample, warm up, record, report;
//! - [`shopper`]: the shopper scenario, its own driver and report.

mod cli;
mod http;
mod memory;
mod metrics;
mod report;
mod run;
mod sample;
mod shopper;
mod stats;
mod work;
mod worker;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::Cli;

/// Parses the options, starts the runtime (current-thread unless `--threads` > 1) and runs.
fn try_main() -> Result<()> {
    let cli = Cli::parse();
    let mut builder = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if cli.threads > 1 {
        builder.worker_threads(cli.threads);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run::run(cli))
}

/// Runs and reports a failure as one line with its causes, exiting with status 1.
fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("outpost-load: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
