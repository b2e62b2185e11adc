//! `[shopper]`: self-checkout on the shopper's phone (docs/self-checkout.md).

use serde::Deserialize;

/// `[shopper]`: how long store tokens and shopper sessions live, and how many there may
/// be. Every bound exists because the session route is open to anyone in the store who
/// holds a store token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShopperSettings {
    /// Seconds a store token (the QR at the entrance or on a kiosk) stays valid after
    /// it is issued (default 86,400: a printed code is reprinted daily).
    pub store_token_ttl_secs: u64,
    /// Seconds a shopper session lives at most (default 7,200).
    pub session_ttl_secs: u64,
    /// Seconds a shopper session lives without a request (default 1,800).
    pub idle_secs: u64,
    /// Shopper sessions open at once; more are refused (default 500).
    pub max_sessions: usize,
    /// Sessions one client address may open per minute (default 10).
    pub sessions_per_minute_per_ip: u32,
    /// Requests one session may make per minute (default 120).
    pub requests_per_minute: u32,
    /// Lines one shopper cart may have (default 50).
    pub max_lines: usize,
    /// Units of one product one line may have (default 99).
    pub max_quantity: u32,
    /// The address shoppers' phones reach this unit at (e.g.
    /// `https://store-12.example:8443`), put in the store QR. Default: the scheme and
    /// host the staff member's request came in on.
    pub public_url: Option<String>,
    /// Percent of paid shopper baskets the exit check picks for a re-scan (0 to 100).
    pub audit_percent: u8,
}

impl Default for ShopperSettings {
    fn default() -> Self {
        ShopperSettings {
            store_token_ttl_secs: 86_400,
            session_ttl_secs: 7_200,
            idle_secs: 1_800,
            max_sessions: 500,
            sessions_per_minute_per_ip: 10,
            requests_per_minute: 120,
            max_lines: 50,
            max_quantity: 99,
            public_url: None,
            audit_percent: 5,
        }
    }
}

impl ShopperSettings {
    /// Check values the types cannot: the field at fault and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let ranges: [(&'static str, u64, u64, u64); 8] = [
            (
                "shopper.store_token_ttl_secs",
                self.store_token_ttl_secs,
                60,
                30 * 86_400,
            ),
            (
                "shopper.session_ttl_secs",
                self.session_ttl_secs,
                60,
                86_400,
            ),
            ("shopper.idle_secs", self.idle_secs, 30, 86_400),
            ("shopper.max_sessions", self.max_sessions as u64, 1, 100_000),
            (
                "shopper.sessions_per_minute_per_ip",
                self.sessions_per_minute_per_ip.into(),
                1,
                10_000,
            ),
            (
                "shopper.requests_per_minute",
                self.requests_per_minute.into(),
                1,
                100_000,
            ),
            ("shopper.max_lines", self.max_lines as u64, 1, 500),
            ("shopper.max_quantity", self.max_quantity.into(), 1, 9_999),
        ];
        for (field, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err((field, format!("must be between {lo} and {hi}, not {v}")));
            }
        }
        if self.audit_percent > 100 {
            return Err((
                "shopper.audit_percent",
                format!("must be between 0 and 100, not {}", self.audit_percent),
            ));
        }
        if let Some(url) = &self.public_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return Err((
                    "shopper.public_url",
                    format!("must be an http:// or https:// address, not {url:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(ShopperSettings::default().validate().is_ok());
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let s = ShopperSettings {
            max_sessions: 0,
            ..ShopperSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "shopper.max_sessions");
        let s = ShopperSettings {
            idle_secs: 5,
            ..ShopperSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "shopper.idle_secs");
        let s = ShopperSettings {
            public_url: Some("ftp://x".into()),
            ..ShopperSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "shopper.public_url");
        let s = ShopperSettings {
            public_url: Some("https://".into()),
            ..ShopperSettings::default()
        };
        assert!(s.validate().is_err());
    }
}
