//! The coordinator of a run: sample the catalog, start the connections, warm up, read
//! the storage counters, open the recorded window, collect and print the report (with
//! the server's memory before and after, given `--server-pid`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use crate::cli::{Cli, Scenario};
use crate::http::Target;
use crate::memory::ServerMemory;
use crate::metrics::StorageCounters;
use crate::report::Summary;
use crate::sample::fetch_sample;
use crate::stats::Stats;
use crate::work::{CART_LINES, Work};
use crate::worker::{GRACE, Shared, Worker};

/// Runs the whole load test and prints its report.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let target = Target::resolve(&cli.url).await?;
    if cli.scenario == Scenario::Shopper {
        return crate::shopper::run(&cli, target).await;
    }
    let work = if cli.scenario == Scenario::LoginStorm {
        eprintln!(
            "outpost-load: wrong passwords for {} from {} source address(es)",
            cli.login_user.as_deref().map_or_else(
                || "fresh unknown usernames".to_owned(),
                |u| format!("{u:?}")
            ),
            cli.sources
        );
        Work::login(&target, cli.login_user.clone())?
    } else {
        let products = fetch_sample(&target, cli.sample).await?;
        let work = Work::prepare(cli.scenario, &products, &target)?;
        eprintln!(
            "outpost-load: sampled {} products from {}; {} usable for {}",
            products.len(),
            target.url,
            work.len(),
            cli.scenario.name()
        );
        if work.len() < CART_LINES
            && matches!(cli.scenario, Scenario::Checkout | Scenario::CardCheckout)
        {
            eprintln!(
                "outpost-load: only {} products can go in a cart; carts will be smaller than {CART_LINES}",
                work.len()
            );
        }
        work
    };
    let memory_before = cli.server_pid.map(ServerMemory::read).transpose()?;
    let shared = Arc::new(Shared::new(target, work, cli.sources));

    let warmup = Duration::from_secs(cli.warmup);
    let duration = Duration::from_secs(cli.duration);
    eprintln!(
        "outpost-load: {} connections, {} s warm-up, {} s recorded",
        cli.connections, cli.warmup, cli.duration
    );
    let warmup_end = Instant::now() + warmup;
    let (window_tx, window_rx) = watch::channel(None);
    let mut handles = Vec::with_capacity(cli.connections);
    for id in 0..cli.connections {
        let worker = Worker::new(Arc::clone(&shared), id)?;
        handles.push(tokio::spawn(worker.run(warmup_end, window_rx.clone())));
    }
    drop(window_rx);

    if !shared
        .wait_parked(cli.connections, warmup_end + GRACE)
        .await
    {
        eprintln!("outpost-load: some warm-up requests did not finish; recording anyway");
    }
    let before = if matches!(cli.scenario, Scenario::Checkout | Scenario::CardCheckout) {
        match StorageCounters::read(&shared.target).await {
            Ok(counters) => Some(counters),
            Err(err) => {
                eprintln!("outpost-load: cannot read /metrics before the window: {err:#}");
                None
            }
        }
    } else {
        None
    };
    let window_start = Instant::now();
    let window_end = window_start + duration;
    // Every worker holds a receiver until it gets here, so this only fails if all are gone.
    let _ = window_tx.send(Some(window_end));

    let mut total = Stats::new()?;
    let hard = window_end + GRACE + Duration::from_secs(1);
    let mut lost = 0usize;
    for handle in handles {
        let abort = handle.abort_handle();
        match timeout_at(hard, handle).await {
            Ok(Ok(stats)) => total.merge(&stats)?,
            Ok(Err(err)) => {
                eprintln!("outpost-load: a connection task failed: {err}");
                lost += 1;
            }
            Err(_) => {
                abort.abort();
                lost += 1;
            }
        }
    }
    if lost > 0 {
        eprintln!("outpost-load: {lost} connection(s) did not report and are left out");
    }

    let storage = match before {
        Some(before) => match StorageCounters::read(&shared.target).await {
            Ok(after) => Some(after.since(before)),
            Err(err) => {
                eprintln!("outpost-load: cannot read /metrics after the window: {err:#}");
                None
            }
        },
        None => None,
    };

    let memory_after = cli.server_pid.map(ServerMemory::read).transpose()?;
    let summary =
        Summary::new(&cli, duration, &total, storage).with_memory(memory_before, memory_after);
    let mut report = summary.render();
    let bodies = shared.bodies.lock().map(|b| b.clone()).unwrap_or_default();
    if !bodies.is_empty() {
        report.push_str("first non-2xx responses:\n");
        for (status, body) in &bodies {
            report.push_str(&format!("  {status}: {}\n", body.trim()));
        }
    }
    let samples = shared
        .transport_samples
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    if !samples.is_empty() {
        report.push_str("first transport errors:\n");
        for sample in &samples {
            report.push_str(&format!("  {sample}\n"));
        }
    }
    print!("{report}");
    println!(
        "{}",
        serde_json::to_string(&summary).context("serializing the summary")?
    );
    // Every login of the storm is meant to be refused; it fails only unanswered.
    if cli.scenario == Scenario::LoginStorm {
        if summary.requests == 0 {
            bail!("no request was answered");
        }
    } else if summary.requests - summary.non_2xx == 0 {
        bail!("no request succeeded");
    }
    Ok(())
}
