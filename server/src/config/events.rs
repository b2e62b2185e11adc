//! `[events]`: what the event watcher writes for HQ and how much may wait.

use serde::Deserialize;

/// `[events]`: what the event watcher writes and how much may wait for HQ.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Write device events, alerts and telemetry at all.
    pub enabled: bool,
    /// How often devices, backlog and lease are looked at, in milliseconds.
    pub poll_ms: u64,
    /// Milliseconds between telemetry samples (default 300,000: 5 minutes).
    pub telemetry_ms: u64,
    /// Milliseconds between reports of the audit chain's head to HQ, each only when it
    /// changed (default 300,000: 5 minutes; also at start and right after an unlock).
    pub audit_head_ms: u64,
    /// Telemetry samples that may wait for HQ.
    pub max_pending_telemetry: u64,
    /// Device events that may wait for HQ.
    pub max_pending_device_events: u64,
    /// Alerts that may wait for HQ.
    pub max_pending_alerts: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            enabled: true,
            poll_ms: 1000,
            telemetry_ms: 300_000,
            audit_head_ms: 300_000,
            max_pending_telemetry: 288,
            max_pending_device_events: 1000,
            max_pending_alerts: 200,
        }
    }
}

impl EventSettings {
    /// Check values the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.poll_ms == 0 || self.telemetry_ms == 0 || self.audit_head_ms == 0 {
            return Err("poll_ms, telemetry_ms and audit_head_ms must be positive".into());
        }
        let caps = [
            self.max_pending_telemetry,
            self.max_pending_device_events,
            self.max_pending_alerts,
        ];
        if caps.iter().any(|c| !(1..=100_000).contains(c)) {
            return Err("max_pending_* must be between 1 and 100000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_event_settings_are_refused() {
        assert!(EventSettings::default().validate().is_ok());
        type Break = fn(&mut EventSettings);
        let cases: [Break; 6] = [
            |s| s.poll_ms = 0,
            |s| s.telemetry_ms = 0,
            |s| s.audit_head_ms = 0,
            |s| s.max_pending_telemetry = 0,
            |s| s.max_pending_alerts = 100_001,
            |s| s.max_pending_device_events = 0,
        ];
        for break_it in cases {
            let mut s = EventSettings::default();
            break_it(&mut s);
            assert!(s.validate().is_err(), "{s:?}");
        }
        let toml = "[events]\ntelemetry_ms = 0\n";
        let settings = crate::config::Settings::from_toml(toml).unwrap();
        let e = settings.validate().unwrap_err().to_string();
        assert!(e.contains("events"), "{e}");
    }
}
