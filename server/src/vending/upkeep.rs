//! The running machine's background work: finishing the vends a restart or a lost
//! answer left open, feeding the environment sensors' readings (temperature, door)
//! into the alerts, and, on a machine with a coin changer or bill validator,
//! polling them for coins and notes (credit), finishing the cash operations a
//! restart left in flight, and checking the tubes and the cash box (alerts).

use std::sync::Arc;
use std::time::Duration;

use outpost_peripherals::sensor::EnvironmentSensor;

use super::Vending;

/// How often the background tasks look.
#[derive(Debug, Clone, Copy)]
pub struct UpkeepConfig {
    /// Between recovery rounds while a vend is open.
    pub recovery_every: Duration,
    /// Between sensor readings.
    pub sensor_every: Duration,
    /// Bound on one sensor reading.
    pub read_bound: Duration,
    /// Between polls of the coin changer and bill validator.
    pub cash_every: Duration,
    /// Between checks of the tubes (exact change) and the cash box.
    pub cash_levels_every: Duration,
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        Self {
            recovery_every: Duration::from_secs(5),
            sensor_every: Duration::from_secs(5),
            read_bound: Duration::from_secs(3),
            cash_every: Duration::from_millis(250),
            cash_levels_every: Duration::from_secs(30),
        }
    }
}

impl Vending {
    /// Start recovery (a round now, then one every `recovery_every` while a vend is
    /// open) and one reading task per sensor. Abort the handles to stop them.
    pub fn spawn_upkeep(
        &self,
        sensors: &[(String, Arc<dyn EnvironmentSensor>)],
        cfg: UpkeepConfig,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(self.clone().recovery_loop(cfg.recovery_every))];
        if self.devices.changer.is_some() || self.devices.validator.is_some() {
            tasks.push(tokio::spawn(self.clone().cash_loop(cfg)));
        }
        for (id, sensor) in sensors {
            tasks.push(tokio::spawn(self.clone().sensor_loop(
                id.clone(),
                sensor.clone(),
                cfg,
            )));
        }
        tasks
    }

    async fn recovery_loop(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match super::open_vends(self.store()) {
                Ok(open) if open.is_empty() => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "Failed to read the open vends");
                    continue;
                }
            }
            match self.recover().await {
                Ok(r) if r.open > 0 => tracing::warn!(
                    finished = r.finished,
                    open = r.open,
                    "Vends still open: a device cannot say yet what happened"
                ),
                Ok(r) => tracing::info!(finished = r.finished, "Finished the open vends"),
                Err(e) => tracing::error!(error = %e, "Failed to recover the open vends"),
            }
        }
    }

    /// Whether the changer and validator (those configured) are open and enabled.
    fn cash_ready(&self) -> bool {
        let changer = self
            .devices
            .changer
            .as_ref()
            .is_none_or(|c| c.core().ensure_ready().is_ok());
        let validator = self
            .devices
            .validator
            .as_ref()
            .is_none_or(|v| v.core().ensure_ready().is_ok());
        changer && validator
    }

    async fn cash_loop(self, cfg: UpkeepConfig) {
        let mut tick = tokio::time::interval(cfg.cash_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut started = false;
        let mut failing = false;
        let mut levels_at: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            if !started {
                if !self.cash_ready() {
                    continue;
                }
                // Opening reset the validator, which gave back a note left in
                // escrow; then what a restart left in flight is finished before any
                // new coin is taken.
                let first = async {
                    self.record_fitted().await?;
                    self.cash_restarted().await?;
                    self.recover().await?;
                    self.accept_cash(true).await
                };
                match first.await {
                    Ok(()) => {
                        tracing::info!("Taking coins and notes");
                        started = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot start taking cash yet");
                        continue;
                    }
                }
            }
            match self.poll_cash().await {
                Ok(_) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "Cannot poll the cash devices");
                    }
                    failing = true;
                }
            }
            let in_flight = self
                .cash()
                .map(|c| c.payout.is_some() || c.stacking.is_some() || c.pay_due.is_some())
                .unwrap_or(false);
            if in_flight
                && let Ok(_machine) = self.machine.try_lock()
                && let Err(e) = self.settle_cash().await
            {
                tracing::warn!(error = %e, "A cash operation is still in flight");
            }
            if levels_at.is_none_or(|at| at.elapsed() >= cfg.cash_levels_every) {
                levels_at = Some(tokio::time::Instant::now());
                if let Err(e) = self.check_cash_levels().await {
                    tracing::warn!(error = %e, "Cannot check the tubes and the cash box");
                }
            }
        }
    }

    async fn sensor_loop(self, id: String, sensor: Arc<dyn EnvironmentSensor>, cfg: UpkeepConfig) {
        let mut tick = tokio::time::interval(cfg.sensor_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let reading = match tokio::time::timeout(cfg.read_bound, sensor.read()).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(sensor = %id, error = %e, "Cannot read the sensor");
                    }
                    failing = true;
                    continue;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(sensor = %id, "The sensor did not answer in time");
                    }
                    failing = true;
                    continue;
                }
            };
            failing = false;
            let at = time::OffsetDateTime::now_utc();
            if let Err(e) = self
                .observe(reading.milli_celsius, reading.door_open, at)
                .await
            {
                tracing::error!(sensor = %id, error = %e, "Failed to record a sensor reading");
            }
        }
    }
}
