//! `[security]`: the sealer, logins and sessions, enrolment, tamper sensors.

use std::path::PathBuf;

use serde::Deserialize;

/// Sealing, authentication and sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Which sealer protects the data key: `software` (development) or `tpm` (needs a
    /// build with the `tpm` cargo feature, which links libtss2). `OUTPOST_SEALER`.
    pub sealer: String,
    /// With `sealer = "tpm"`: how to reach the TPM (a TCTI string).
    /// `device:/dev/tpmrm0` (the kernel's resource manager) by default;
    /// `swtpm:host=127.0.0.1,port=2321` for a software TPM. `OUTPOST_TPM_TCTI`.
    pub tcti: String,
    /// With `sealer = "tpm"`: the PCRs (SHA-256 bank, 1 to 8 of 0..=23) the data key is
    /// sealed to. Default `[7]` (the Secure Boot state), which survives kernel and
    /// firmware updates that keep the Secure Boot policy; adding 0, 2 or 4 binds the
    /// key to the exact firmware and boot loader, so every such update must re-seal.
    /// Used when the key is first sealed; an existing sealed key keeps the PCRs it was
    /// sealed to. `OUTPOST_TPM_PCRS` (`7` or `0,2,4,7`).
    pub pcrs: Vec<u8>,
    /// Allow the software sealer. Production configs leave this false, so a missing
    /// TPM stops the server instead of silently downgrading. `OUTPOST_ALLOW_SOFTWARE_SEALER=1`.
    pub allow_software: bool,
    /// Lifetime of a staff login session, in seconds (default 8 hours).
    pub session_ttl_secs: u64,
    /// Failed logins per (username, client address) before the window locks.
    pub login_max_failures: u32,
    /// The login rate-limit window, in seconds.
    pub login_window_secs: u64,
    /// Failed logins per client address, over every username it tries, before that
    /// address is refused for the rest of its window (default 20): one host can
    /// neither spray guesses over many accounts nor fill the throttle's table.
    pub login_max_failures_per_source: u32,
    /// How many password checks (argon2: 19 MiB each with `production` hashing) run at
    /// once, 1 to 256; unset, the number of CPU cores. This bounds the memory that
    /// logins can take, whatever the number of parallel requests.
    pub login_hash_permits: Option<u32>,
    /// How many logins may wait for a hashing permit (default 32, at most 10,000);
    /// past that a login is refused at once with `429 rate_limited` and
    /// `Retry-After: 1`.
    pub login_hash_queue: u32,
    /// argon2id cost for new password hashes: `production` (m 19 MiB, t 2) or `fast`
    /// (m 64 KiB, t 1: tests only).
    pub password_hashing: String,
    /// HQ's signed enrolment bundle (JSON, `outpost-hq enroll` or HQ's enrolment
    /// service): enrols the unit at its first start, which fixes HQ's key, the lease
    /// policy and the unlock policy in the trust record and the TPM. After that it may
    /// stay (it must name the enrolment in force) or go; the config file decides nothing
    /// about the lock any more. `OUTPOST_ENROLLMENT`.
    pub enrollment: Option<PathBuf>,
    /// No longer read: HQ's key comes from the enrolment bundle. Kept to refuse an old
    /// config with a message that says so.
    #[serde(default)]
    pub hq_public_key: Option<toml::Value>,
    /// No longer read: the offline grace comes from the enrolment bundle.
    #[serde(default)]
    pub offline_grace_secs: Option<toml::Value>,
    /// Ids of `[[devices]]` sensors (kind `sensor`) on the case or the cabinet door: a
    /// door/case opening on any of them locks the device at once (tamper), and only a
    /// signed unlock from HQ lifts it. Needs an enrolled unit. Kept local on purpose: a
    /// device set pushed by HQ cannot change which sensors guard the box.
    pub tamper_sensors: Vec<String>,
}

impl SecuritySettings {
    /// The TPM sealer's settings, checked without touching a TPM: `Err((field,
    /// message))`. A build without the `tpm` feature refuses `sealer = "tpm"` here, so
    /// the mistake shows at start, before the data dir is opened.
    pub(super) fn validate_tpm(&self) -> Result<(), (&'static str, String)> {
        #[cfg(not(feature = "tpm"))]
        {
            Err((
                "security.sealer",
                "\"tpm\" is not in this build: rebuild outpost with `--features tpm` \
                 (cargo build --release --features tpm; needs libtss2-dev), or use \
                 sealer = \"software\" with allow_software = true for development"
                    .into(),
            ))
        }
        #[cfg(feature = "tpm")]
        {
            use outpost_security::seal::TpmConfig;
            let tcti = TpmConfig {
                tcti: self.tcti.clone(),
                ..TpmConfig::default()
            };
            tcti.validate()
                .map_err(|e| ("security.tcti", e.to_string()))?;
            self.tpm_config()
                .validate()
                .map_err(|e| ("security.pcrs", e.to_string()))
        }
    }

    /// The TPM sealer's configuration from these settings.
    #[cfg(feature = "tpm")]
    pub fn tpm_config(&self) -> outpost_security::seal::TpmConfig {
        outpost_security::seal::TpmConfig {
            tcti: self.tcti.clone(),
            pcrs: self.pcrs.clone(),
            ..outpost_security::seal::TpmConfig::default()
        }
    }

    /// How many password checks run at once: `login_hash_permits`, or the number of
    /// CPU cores (at least 1).
    pub fn login_hash_permits(&self) -> usize {
        match self.login_hash_permits {
            Some(n) => (n as usize).max(1),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            sealer: "software".into(),
            tcti: "device:/dev/tpmrm0".into(),
            pcrs: vec![7],
            allow_software: false,
            session_ttl_secs: 8 * 3600,
            login_max_failures: 5,
            login_window_secs: 15 * 60,
            login_max_failures_per_source: 20,
            login_hash_permits: None,
            login_hash_queue: 32,
            password_hashing: "production".into(),
            enrollment: None,
            hq_public_key: None,
            offline_grace_secs: None,
            tamper_sensors: Vec::new(),
        }
    }
}
