//! Active alerts in plain words, each with what to do, worst first.

use outpost_peripherals::Health;

use super::catalogue::Msg;
use super::facts::Facts;

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Selling is affected or soon will be.
    Critical,
    /// Needs attention.
    Warning,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// How bad.
    pub level: Level,
    /// What is wrong.
    pub what: Msg,
    /// What to do.
    pub todo: Msg,
    /// The service's own words (a device's error, the lock's reason).
    pub detail: Option<String>,
}

/// Free disk space below which the dashboard alerts, in per cent.
pub const DISK_LOW_PERCENT: u64 = 10;
/// A lease with less than this left raises an alert before it expires.
pub const LEASE_SOON_SECS: u64 = 6 * 3600;

fn alert(level: Level, what: Msg, todo: Msg, detail: Option<String>) -> Alert {
    Alert {
        level,
        what,
        todo,
        detail,
    }
}

/// The alerts `facts` raise, critical first.
pub fn alerts(f: &Facts) -> Vec<Alert> {
    use Level::*;
    let mut out = Vec::new();
    match f.lease.state.as_str() {
        "locked" => out.push(alert(
            Critical,
            Msg::AlertLocked,
            Msg::TodoLocked,
            Some(f.lease.reason.clone()),
        )),
        "grace" => out.push(alert(Critical, Msg::AlertGrace, Msg::TodoGrace, None)),
        "active"
            if f.lease_left_secs(time::OffsetDateTime::now_utc())
                .is_some_and(|s| s < LEASE_SOON_SECS) =>
        {
            out.push(alert(
                Warning,
                Msg::AlertLeaseSoon,
                Msg::TodoLeaseSoon,
                None,
            ))
        }
        _ => {}
    }
    if let Ok(s) = &f.sync {
        if s.alert {
            out.push(alert(
                Critical,
                Msg::AlertBacklog,
                Msg::TodoBacklog,
                Some(format!("{} s", s.outbox_oldest_age_secs)),
            ));
        }
        if s.uplink_enabled && !s.connected {
            out.push(alert(
                Warning,
                Msg::AlertHqDown,
                Msg::TodoHqDown,
                s.last_error.clone(),
            ));
        }
    }
    for d in &f.devices {
        if !d.usable {
            out.push(alert(
                Critical,
                Msg::AlertDeviceDown,
                Msg::TodoDeviceDown,
                Some(format!(
                    "{}: {}",
                    d.id,
                    d.last_error.as_deref().unwrap_or(&d.health.detail)
                )),
            ));
        } else if d.health.health == Health::Degraded {
            out.push(alert(
                Warning,
                Msg::AlertDeviceDegraded,
                Msg::TodoDeviceDegraded,
                Some(format!("{}: {}", d.id, d.health.detail)),
            ));
        }
    }
    if f.receipt_queue > 0 {
        out.push(alert(
            Warning,
            Msg::AlertReceiptsWaiting,
            Msg::TodoReceiptsWaiting,
            f.printer_error.clone(),
        ));
    }
    if let Some(d) = f.disk
        && d.free_percent() < DISK_LOW_PERCENT
    {
        out.push(alert(
            Critical,
            Msg::AlertDiskLow,
            Msg::TodoDiskLow,
            Some(format!("{} %", d.free_percent())),
        ));
    }
    if let Ok(u) = &f.update
        && let Some(last) = &u.last
        && last.result != "installed"
    {
        out.push(alert(
            Warning,
            Msg::AlertUpdateFailed,
            Msg::TodoUpdateFailed,
            Some(format!("{}: {}", last.version, last.reason)),
        ));
    }
    if let Ok(v) = &f.vending_alerts
        && !v.is_empty()
    {
        // Stock levels and exact change can wait for the next visit; the rest stops
        // some or all selling.
        let level = if v
            .iter()
            .all(|a| matches!(a.alert.as_str(), "slot_low" | "exact_change"))
        {
            Warning
        } else {
            Critical
        };
        let names: Vec<String> = v
            .iter()
            .map(|a| format!("{} {}", a.alert, a.subject))
            .collect();
        out.push(alert(
            level,
            Msg::AlertVending,
            Msg::TodoVending,
            Some(names.join(", ")),
        ));
    }
    out.sort_by_key(|a| a.level);
    out
}
