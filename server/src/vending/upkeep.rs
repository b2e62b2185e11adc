//! The running machine's background work: finishing the vends a restart or a lost
//! answer left open, and feeding the environment sensors' readings (temperature,
//! door) into the alerts.

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
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        Self {
            recovery_every: Duration::from_secs(5),
            sensor_every: Duration::from_secs(5),
            read_bound: Duration::from_secs(3),
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
