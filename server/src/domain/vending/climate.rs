//! The chilled compartment's temperature watch: when chilled goods have been too warm
//! for too long, they stop selling until a technician clears it.
//!
//! Above `limit` starts the clock; the clock stops only once the temperature is back
//! at or below `limit - hysteresis`, so readings wobbling around the limit (door
//! opened for a refill, a defrost cycle) do not restart it. Once the clock has run
//! for `hold`, the excursion is raised, and stays raised until a technician clears it,
//! which is allowed only at or below `limit - hysteresis`.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// The thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempPolicy {
    /// Highest allowed temperature, thousandths of a degree Celsius (8 °C: 8000).
    pub limit_milli_c: i32,
    /// How far below the limit counts as cold again (1 °C: 1000).
    pub hysteresis_milli_c: i32,
    /// How long above the limit raises the excursion.
    pub hold: Duration,
}

impl Default for TempPolicy {
    fn default() -> Self {
        Self {
            limit_milli_c: 8_000,
            hysteresis_milli_c: 1_000,
            hold: Duration::minutes(15),
        }
    }
}

/// Where the watch stands; persisted, so a restart keeps the clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TempWatch {
    /// When the temperature went above the limit (and has not been cold again since).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub warm_since: Option<OffsetDateTime>,
    /// The excursion is raised: chilled slots do not sell.
    pub raised: bool,
    /// The last reading.
    pub last_milli_c: Option<i32>,
}

/// What a reading or a clear did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempChange {
    /// The excursion was raised now.
    Raised,
    /// A technician cleared it.
    Cleared,
}

/// Why a clear is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClearRefused {
    /// Nothing is raised.
    #[error("no temperature excursion is raised")]
    NotRaised,
    /// Still too warm (or never read).
    #[error("the chilled compartment is at {now}; it must be at or below {max} m°C to clear")]
    TooWarm {
        /// Last reading, m°C (none: never read).
        now: String,
        /// The most it may be.
        max: i32,
    },
}

impl TempWatch {
    /// Take a reading at `at`.
    pub fn observe(
        &mut self,
        p: &TempPolicy,
        milli_c: i32,
        at: OffsetDateTime,
    ) -> Option<TempChange> {
        self.last_milli_c = Some(milli_c);
        if milli_c > p.limit_milli_c {
            self.warm_since.get_or_insert(at);
        } else if milli_c <= p.limit_milli_c - p.hysteresis_milli_c {
            self.warm_since = None;
        }
        match self.warm_since {
            Some(since) if !self.raised && at - since >= p.hold => {
                self.raised = true;
                Some(TempChange::Raised)
            }
            _ => None,
        }
    }

    /// A technician clears the excursion.
    pub fn clear(&mut self, p: &TempPolicy) -> Result<TempChange, ClearRefused> {
        if !self.raised {
            return Err(ClearRefused::NotRaised);
        }
        let max = p.limit_milli_c - p.hysteresis_milli_c;
        match self.last_milli_c {
            Some(t) if t <= max => {
                self.raised = false;
                self.warm_since = None;
                Ok(TempChange::Cleared)
            }
            other => Err(ClearRefused::TooWarm {
                now: other.map_or("no reading yet".into(), |t| format!("{t} m°C")),
                max,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_minutes_above_eight_degrees_raises_once_and_wobbles_do_not_restart_it() {
        let p = TempPolicy::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let m = |n: i64| t0 + Duration::minutes(n);
        let mut w = TempWatch::default();
        assert_eq!(w.observe(&p, 7_500, m(0)), None);
        assert_eq!(w.observe(&p, 8_500, m(1)), None);
        // 7.9 °C is below the limit but not cold again: the clock keeps running.
        assert_eq!(w.observe(&p, 7_900, m(10)), None);
        assert_eq!(w.observe(&p, 8_200, m(15)), None, "14 minutes");
        assert_eq!(w.observe(&p, 8_200, m(16)), Some(TempChange::Raised));
        assert_eq!(w.observe(&p, 9_000, m(40)), None, "raised once");
        assert!(matches!(w.clear(&p), Err(ClearRefused::TooWarm { .. })));
        assert_eq!(w.observe(&p, 6_900, m(50)), None);
        assert!(w.raised, "stays raised until cleared");
        assert_eq!(w.clear(&p), Ok(TempChange::Cleared));
        assert_eq!(w.clear(&p), Err(ClearRefused::NotRaised));
    }

    #[test]
    fn cold_again_stops_the_clock() {
        let p = TempPolicy::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let m = |n: i64| t0 + Duration::minutes(n);
        let mut w = TempWatch::default();
        w.observe(&p, 9_000, m(0));
        w.observe(&p, 7_000, m(10));
        assert_eq!(w.observe(&p, 9_000, m(14)), None);
        assert_eq!(
            w.observe(&p, 9_000, m(28)),
            None,
            "the clock restarted at 14"
        );
        assert_eq!(w.observe(&p, 9_000, m(29)), Some(TempChange::Raised));
    }
}
