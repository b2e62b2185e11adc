//! The supervisor: one task per device that opens it, reconnects it with exponential
//! backoff and jitter when it fails, and checks its health on a timer.
//!
//! A device that cannot be opened is never fatal: the task records the error (shown
//! by `GET /api/v1/devices`) and tries again later, and whatever depends on the
//! device degrades (see `docs/devices.md`). When a receipt printer turns healthy the
//! supervisor wakes the receipt spooler, so queued receipts print at once.

use std::sync::Arc;
use std::time::Duration;

use outpost_peripherals::{DeviceKind, DeviceState, Health, HealthLevel};
use rand::Rng as _;

use super::Entry;
use super::receipts::Spooler;

/// Timings of the supervisor.
#[derive(Debug, Clone, Copy)]
pub struct SupervisorConfig {
    /// First delay after a failed open.
    pub backoff_min: Duration,
    /// Longest delay between open attempts.
    pub backoff_max: Duration,
    /// Between health checks of an open device (unless the device sets its own).
    pub health_interval: Duration,
    /// Bound on one open or health check, whatever the driver's own timeouts.
    pub attempt_bound: Duration,
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random, so
/// devices that failed together do not retry in lockstep.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starting at `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = d / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the shortest delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Open the device once if it is closed, claim and enable it, then check its health.
/// Returns whether the device is usable now. Bounded by `cfg.attempt_bound`.
pub async fn attempt(entry: &Entry, cfg: &SupervisorConfig, spooler: Option<&Spooler>) -> bool {
    let dev = &entry.device;
    if dev.core().state() == DeviceState::Closed {
        match tokio::time::timeout(cfg.attempt_bound, dev.open()).await {
            Ok(Ok(())) => {
                // Claimed already after a reconnect: the core keeps the claim.
                let _ = dev.core().claim();
                if let Err(e) = dev.core().enable() {
                    entry.note_error(format!("cannot enable: {e}"));
                    return false;
                }
                tracing::info!(device = %entry.id, "Device opened.");
            }
            Ok(Err(f)) => {
                entry.note_error(format!("cannot open: {f}"));
                return false;
            }
            Err(_) => {
                entry.note_error(format!(
                    "open did not finish within {:?}",
                    cfg.attempt_bound
                ));
                return false;
            }
        }
    }
    let report = match tokio::time::timeout(
        cfg.attempt_bound,
        dev.check_health(HealthLevel::Internal),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => {
            entry.note_error(format!(
                "health check did not finish within {:?}",
                cfg.attempt_bound
            ));
            return false;
        }
    };
    let usable = matches!(report.health, Health::Ok | Health::Degraded);
    if usable {
        entry.note_ok();
        if entry.kind == DeviceKind::ReceiptPrinter
            && let Some(s) = spooler
        {
            s.wake();
        }
    } else {
        entry.note_error(report.detail.clone());
    }
    usable
}

/// Supervise one device until the task is aborted.
pub async fn run(entry: Arc<Entry>, cfg: SupervisorConfig, spooler: Option<Arc<Spooler>>) {
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let interval = entry.health_interval.unwrap_or(cfg.health_interval);
    loop {
        let was_closed = entry.device.core().state() == DeviceState::Closed;
        let usable = attempt(&entry, &cfg, spooler.as_deref()).await;
        let open = entry.device.core().state() != DeviceState::Closed;
        let wait = if open {
            backoff.reset();
            interval
        } else {
            if was_closed && !usable {
                tracing::debug!(device = %entry.id, "Device still closed; backing off.");
            }
            backoff.next_delay()
        };
        entry.set_next_attempt(wait);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = entry.check_now.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let bounds = [100u64, 200, 400, 800, 800];
        for hi in bounds {
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= hi / 2 && d <= hi, "{d} not in [{}, {hi}]", hi / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
