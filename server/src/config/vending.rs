//! `[vending]`: the vending machine's chilled compartment watch and its sensor
//! readings (docs/vending.md, "Alerts").

use serde::Deserialize;

/// `[vending]`: when chilled goods count as too warm, and how often the sensors are
/// read. The defaults are the usual food-safety rule for chilled vending: above 8 °C
/// for 15 minutes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VendingSettings {
    /// Highest allowed temperature of the chilled compartment, °C (default 8).
    pub chilled_limit_c: f64,
    /// How far below the limit counts as cold again, °C (default 1): readings
    /// wobbling around the limit neither restart nor end an excursion.
    pub chilled_hysteresis_c: f64,
    /// Minutes above the limit before the alert is raised and chilled slots stop
    /// selling (default 15).
    pub chilled_hold_mins: u64,
    /// Seconds between sensor readings (default 5).
    pub sensor_interval_secs: u64,
}

impl Default for VendingSettings {
    fn default() -> Self {
        VendingSettings {
            chilled_limit_c: 8.0,
            chilled_hysteresis_c: 1.0,
            chilled_hold_mins: 15,
            sensor_interval_secs: 5,
        }
    }
}

impl VendingSettings {
    /// Each value within what a vending machine can mean.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(-30.0..=30.0).contains(&self.chilled_limit_c) {
            return Err((
                "vending.chilled_limit_c",
                format!("{} °C: must be between -30 and 30", self.chilled_limit_c),
            ));
        }
        if !(0.1..=10.0).contains(&self.chilled_hysteresis_c) {
            return Err((
                "vending.chilled_hysteresis_c",
                format!(
                    "{} °C: must be between 0.1 and 10",
                    self.chilled_hysteresis_c
                ),
            ));
        }
        if !(1..=24 * 60).contains(&self.chilled_hold_mins) {
            return Err((
                "vending.chilled_hold_mins",
                format!("{}: must be 1 to 1440 minutes", self.chilled_hold_mins),
            ));
        }
        if !(1..=3600).contains(&self.sensor_interval_secs) {
            return Err((
                "vending.sensor_interval_secs",
                format!("{}: must be 1 to 3600 seconds", self.sensor_interval_secs),
            ));
        }
        Ok(())
    }

    /// The limit, in thousandths of a degree.
    pub fn limit_milli_c(&self) -> i32 {
        (self.chilled_limit_c * 1000.0).round() as i32
    }

    /// The hysteresis, in thousandths of a degree.
    pub fn hysteresis_milli_c(&self) -> i32 {
        (self.chilled_hysteresis_c * 1000.0).round() as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_food_safety_rule_and_bad_values_name_their_setting() {
        let d = VendingSettings::default();
        d.validate().unwrap();
        assert_eq!((d.limit_milli_c(), d.hysteresis_milli_c()), (8_000, 1_000));
        let s: VendingSettings =
            toml::from_str("chilled_limit_c = 5.5\nchilled_hold_mins = 30").unwrap();
        s.validate().unwrap();
        assert_eq!(s.limit_milli_c(), 5_500);
        for (text, field) in [
            ("chilled_limit_c = 40.0", "vending.chilled_limit_c"),
            ("chilled_hysteresis_c = 0.0", "vending.chilled_hysteresis_c"),
            ("chilled_hold_mins = 0", "vending.chilled_hold_mins"),
            ("sensor_interval_secs = 0", "vending.sensor_interval_secs"),
        ] {
            let s: VendingSettings = toml::from_str(text).unwrap();
            assert_eq!(s.validate().unwrap_err().0, field, "{text}");
        }
        assert!(toml::from_str::<VendingSettings>("chilled_limit = 8").is_err());
    }
}
