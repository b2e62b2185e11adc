//! `[updates]`: where this unit's releases live, whose release keys it trusts first,
//! and when a new release on probation has failed.

use std::path::PathBuf;

use serde::Deserialize;

/// `[updates]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateSettings {
    /// The releases directory (`releases/<version>/`, `current`, `previous`, the
    /// update journal). The supervisor sets it through `OUTPOST_RELEASES`; unset, this
    /// unit does not update itself and `outpost update` needs `--releases`.
    pub releases_dir: Option<PathBuf>,
    /// HQ's first release root: a root document signed by its own keys. Trusted at its
    /// first use and then kept sealed in the data dir; every later root must chain from
    /// the kept one, so editing this setting changes nothing after that.
    pub release_root: Option<PathBuf>,
    /// Starts of a new release without passing its health gate before it is rolled
    /// back (a crash loop).
    pub max_starts: u32,
    /// Seconds from the switch to a passed health gate before the release is rolled
    /// back.
    pub gate_timeout_secs: u64,
    /// Seconds a new release's self-test may take before it is refused.
    pub self_test_timeout_secs: u64,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        UpdateSettings {
            releases_dir: None,
            release_root: None,
            max_starts: 3,
            gate_timeout_secs: 300,
            self_test_timeout_secs: 120,
        }
    }
}

impl UpdateSettings {
    /// Check values the types cannot.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=20).contains(&self.max_starts) {
            return Err(("updates.max_starts", "must be between 1 and 20".into()));
        }
        if !(10..=3600).contains(&self.gate_timeout_secs) {
            return Err((
                "updates.gate_timeout_secs",
                "must be between 10 and 3600".into(),
            ));
        }
        if !(5..=3600).contains(&self.self_test_timeout_secs) {
            return Err((
                "updates.self_test_timeout_secs",
                "must be between 5 and 3600".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_with_the_field_named() {
        UpdateSettings::default().validate().unwrap();
        let s = UpdateSettings {
            max_starts: 0,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "updates.max_starts");
        let s = UpdateSettings {
            gate_timeout_secs: 1,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "updates.gate_timeout_secs");
    }
}
