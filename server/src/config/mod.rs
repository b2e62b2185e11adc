//! Settings: the config file, then `OUTPOST_*` environment variables, then flags.
//!
//! What describes the store lives in the file (`[store]`, `[payment]`); what only
//! changes one run (`listen`, `data_dir`) may also come from the environment or flags.
//! Unknown keys in the file are refused, so a typo never silently does nothing.

pub mod devices;
pub mod events;
pub mod mesh;
pub mod qr;
pub mod security;
pub mod shopper;
pub mod tls;
pub mod updates;
pub mod vending;

pub use devices::{DeviceSpec, Driver, SpecError};
pub use events::EventSettings;
pub use mesh::{MeshConfigError, P2pSettings};
pub use qr::QrSettings;
pub use security::SecuritySettings;
pub use shopper::ShopperSettings;
pub use tls::{HttpTls, TlsSettings};
pub use updates::UpdateSettings;
pub use vending::VendingSettings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::money::Currency;
use crate::domain::pricing::TaxConfig;

/// All settings of one Outpost run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address of the REST API. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Where the data lives. Default `./outpost-data`.
    pub data_dir: PathBuf,
    /// The store itself.
    pub store: StoreSettings,
    /// The payment terminal.
    pub payment: PaymentSettings,
    /// HTTP limits.
    pub http: HttpSettings,
    /// Storage tuning.
    pub storage: StorageSettings,
    /// The HQ link: the gRPC port HQ pushes to and the uplink to HQ.
    pub sync: SyncSettings,
    /// The store's devices (`[[devices]]` entries), opened and supervised by the
    /// device registry. Validated as a whole by [`devices`].
    pub devices: Vec<DeviceSettings>,
    /// The receipt reprint queue and the supervisor's timings.
    pub receipts: ReceiptSettings,
    /// The store mesh (`[p2p]`): units of one store share artifacts over libp2p.
    pub p2p: P2pSettings,
    /// Log level filter (tracing `EnvFilter` syntax); `RUST_LOG` wins when set.
    pub log: String,
    /// Sealing, authentication and sessions (`[security]`).
    pub security: SecuritySettings,
    /// Device events, alerts and telemetry for HQ (`[events]`).
    pub events: EventSettings,
    /// TLS on the REST / console port and the device certificate (`[tls]`).
    pub tls: TlsSettings,
    /// Self-update: the releases directory, the first release root, the health gate
    /// (`[updates]`).
    pub updates: UpdateSettings,
    /// Self-checkout on the shopper's phone (`[shopper]`).
    pub shopper: ShopperSettings,
    /// `[vending]`: the chilled compartment watch and the sensor readings.
    pub vending: VendingSettings,
    /// Prometheus's access to `/metrics` (`[metrics]`).
    pub metrics: MetricsSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./outpost-data"),
            store: StoreSettings::default(),
            payment: PaymentSettings::default(),
            http: HttpSettings::default(),
            storage: StorageSettings::default(),
            sync: SyncSettings::default(),
            devices: Vec::new(),
            receipts: ReceiptSettings::default(),
            p2p: P2pSettings::default(),
            log: "info".into(),
            security: SecuritySettings::default(),
            events: EventSettings::default(),
            tls: TlsSettings::default(),
            updates: UpdateSettings::default(),
            shopper: ShopperSettings::default(),
            vending: VendingSettings::default(),
            metrics: MetricsSettings::default(),
        }
    }
}

/// Prometheus's access to `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// A file holding the scrape token (`outpost metrics-token FILE` makes one): a
    /// request with `Authorization: Bearer <it>` may read `/metrics` and nothing else.
    /// Read at each scrape, so replacing the file rotates the token. Without it,
    /// `/metrics` needs a staff session that may read logs.
    pub token_file: Option<PathBuf>,
}

/// What the store is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Store id, as HQ knows it.
    pub id: String,
    /// Name printed on receipts.
    pub name: String,
    /// ISO 4217 currency the store sells in.
    pub currency: String,
    /// Whether shelf prices include tax (most of Europe) or tax is added at the till.
    pub prices_include_tax: bool,
    /// Tax rate per tax class, in basis points (1900 = 19 %).
    pub tax_rates_bp: BTreeMap<String, u32>,
    /// Receipt width in characters.
    pub receipt_width: usize,
    /// Layouts of the weight labels the store's own scales print
    /// (`[[store.variable_measure]]`: `prefix`, `item_digits`, `value = "grams"`); none
    /// by default. See [`crate::domain::variable_measure`].
    pub variable_measure: Vec<crate::domain::variable_measure::VariableMeasureRule>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            id: "store-1".into(),
            name: "Outpost Store".into(),
            currency: "EUR".into(),
            prices_include_tax: true,
            tax_rates_bp: BTreeMap::from([
                ("standard".into(), 1900),
                ("reduced".into(), 700),
                ("zero".into(), 0),
            ]),
            receipt_width: 42,
            variable_measure: Vec::new(),
        }
    }
}

/// Which payment terminal to use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// `none` (cash only, unless a `[[devices]]` entry is a payment terminal) or `mock`
    /// (a simulated terminal that approves; for demos and tests; needs the `demo`
    /// feature). Kept for older config files: new ones configure the terminal as a
    /// `[[devices]]` entry.
    pub terminal: String,
    /// Seconds to wait for the terminal before its outcome counts as unknown.
    pub timeout_secs: u64,
    /// Seconds between recovery passes over payments in doubt.
    pub recovery_interval_secs: u64,
    /// `[payment.qr]`: QR payments through a wallet provider (off unless set).
    pub qr: QrSettings,
    /// At most this much card and wallet money (minor units) approved offline by the
    /// terminal and not yet forwarded, in the store, unless HQ sets another cap
    /// (`docs/payments.md`, "Offline exposure"). 0 accepts nothing offline.
    pub offline_store_cap: i64,
    /// At most this much of it on one card or wallet.
    pub offline_card_cap: i64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            terminal: "none".into(),
            timeout_secs: 60,
            recovery_interval_secs: 30,
            qr: QrSettings::default(),
            offline_store_cap: crate::domain::exposure::ExposureCaps::default().store.0,
            offline_card_cap: crate::domain::exposure::ExposureCaps::default().per_card.0,
        }
    }
}

/// One `[[devices]]` entry as written in the file. Which keys apply depends on the
/// driver; [`DeviceSpec::parse`] checks them and names the entry
/// in every error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSettings {
    /// Unique id of the device in this unit (`printer-1`).
    pub id: String,
    /// What it is: `printer`, `drawer`, `display`, `payment`, `scanner`, `scale`, ...
    /// (or the API names `receipt_printer`, `cash_drawer`, ...).
    pub kind: String,
    /// How Outpost talks to it: `escpos-tcp`, `escpos-serial`, `escpos-kick`,
    /// `nexo-tcp`, `mdb`, `scanner-serial`, `mt-sics`, `sim`, `mock`.
    pub driver: String,
    /// `host:port` of a network device.
    pub address: Option<String>,
    /// Serial port of a serial device (`/dev/ttyUSB0`).
    pub port: Option<String>,
    /// Baud rate of a serial device.
    pub baud: Option<u32>,
    /// For a drawer on a printer's kick port: the printer's id.
    pub printer: Option<String>,
    /// Bound on opening the transport, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// Bound on each read or write (printer) or status query (payment), in ms.
    pub io_timeout_ms: Option<u64>,
    /// Payment terminal: how long a payment may take, card holder included, in s.
    pub request_timeout_secs: Option<u64>,
    /// Payment terminal: the terminal's POIID (default: the device id).
    pub poi_id: Option<String>,
    /// Payment terminal: this unit's SaleID (default `outpost`).
    pub sale_id: Option<String>,
    /// Seconds between the supervisor's health checks of this device.
    pub health_interval_secs: Option<u64>,
    /// Scale: how long a checkout waits for the weight to settle, in ms (default 0:
    /// one reading, the weight at that moment).
    pub stable_wait_ms: Option<u64>,
    /// Sensor (`sysfs`): the temperature file, a 1-Wire probe's `w1_slave` or an
    /// hwmon `temp*_input` (millidegrees).
    pub temperature_file: Option<String>,
    /// Sensor (`sysfs`): the door switch's GPIO value file (`0` or `1`).
    pub door_file: Option<String>,
    /// Sensor (`sysfs`): what the door file reads when the door is open (default 1).
    pub door_open_value: Option<u8>,
}

/// The receipt reprint queue and the device supervisor's timings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptSettings {
    /// Most receipts waiting in the reprint queue; further receipts are not queued
    /// (the sale still completes, `receipt_status` says `not_queued`).
    pub queue_max: usize,
    /// How long a checkout waits for its receipt to print before answering `queued`.
    pub print_wait_ms: u64,
    /// How often the spooler retries the queue while the printer fails.
    pub retry_ms: u64,
    /// First reconnect delay of a device that failed, in ms (doubles, with jitter).
    pub backoff_min_ms: u64,
    /// Longest reconnect delay, in ms.
    pub backoff_max_ms: u64,
    /// Default seconds between health checks of an open device.
    pub health_interval_secs: u64,
}

impl Default for ReceiptSettings {
    fn default() -> Self {
        ReceiptSettings {
            queue_max: 10_000,
            print_wait_ms: 5_000,
            retry_ms: 5_000,
            backoff_min_ms: 250,
            backoff_max_ms: 30_000,
            health_interval_secs: 10,
        }
    }
}

/// HTTP limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// Seconds to let requests finish at shutdown.
    pub shutdown_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: 256 * 1024,
            workers: 0,
            shutdown_timeout_secs: 10,
        }
    }
}

/// Storage tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Most writes flushed together by one fsync.
    pub max_group: usize,
    /// sled cache size in MiB.
    pub cache_mib: u64,
    /// MiB kept free on the data disk: below it every write is refused with `507
    /// storage_full` until space is freed (`store::space`). 0 turns the reserve off,
    /// and a full disk then stops the storage engine until the server reopens it.
    pub reserve_mib: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            max_group: 512,
            cache_mib: 256,
            reserve_mib: 64,
        }
    }
}

/// The HQ link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Address of the store's gRPC port (HQ's pushes, health, reflection); off when
    /// unset. Mutual TLS when `hq_ca` is set (clients need a certificate from HQ's
    /// CA); plaintext otherwise, and then only on a loopback address.
    pub grpc_listen: Option<SocketAddr>,
    /// HQ's gRPC URL; the uplink is off when unset. `https://HOST:PORT` dials mutual
    /// TLS (needs `hq_ca`); `http://` is plaintext, only to a loopback host.
    pub hq_url: Option<String>,
    /// HQ's CA certificate (PEM), pinned: the uplink trusts only it, and the gRPC port
    /// accepts only clients with a certificate it issued. Needs a provisioned device
    /// certificate (`tls.cert`, `tls.key`) issued by that CA. `OUTPOST_HQ_CA`.
    pub hq_ca: Option<PathBuf>,
    /// With `hq_ca`: the DNS names HQ's client certificate may carry (subjectAltName).
    /// HQ's CA also signs the units' device certificates, so the CA alone would let
    /// another unit push; only a certificate naming one of these may call the gRPC
    /// port. Default `["hq"]`.
    pub hq_client_names: Vec<String>,
    /// This unit's id, as HQ knows it. Outbox sequences are per unit.
    pub unit_id: String,
    /// Most envelopes per upload batch.
    pub batch_max: usize,
    /// Batches sent and not yet acknowledged, at most.
    pub window: usize,
    /// First retry delay after a failure, in milliseconds (doubles, with jitter).
    pub backoff_min_ms: u64,
    /// Longest retry delay, in seconds.
    pub backoff_max_secs: u64,
    /// Seconds to wait for an acknowledgment before reconnecting.
    pub ack_timeout_secs: u64,
    /// Raise the backlog alert when the oldest unsent entry is older than this.
    pub alert_after_secs: u64,
    /// Largest catalog push accepted, in products.
    pub max_push_products: u64,
    /// Seconds within which each chunk of a catalog push stream must arrive whole
    /// (counted from the previous one); else the store stops waiting: the push is parked
    /// (resumable) and the push lock is free again, so a stalled HQ cannot hold every
    /// other push and `GetPushState` off. A whole chunk, not a byte: on a slow WAN link
    /// it must exceed the time a chunk takes to send.
    pub push_idle_secs: u64,
    /// Seconds a parked push stays resumable. It holds the catalog's change lock (no
    /// other push, import or artifact can change the catalog meanwhile), so it expires.
    pub push_resume_secs: u64,
    /// Seconds between HTTP/2 pings on the gRPC port, and how long a ping may go
    /// unanswered before the connection is closed: a peer that vanished (a cut cable,
    /// a half-open connection) lets go of its streams in at most twice this.
    pub grpc_keepalive_secs: u64,
    /// The HQ link a unit not enrolled yet cannot run (it needs mutual TLS, and the
    /// certificate and HQ's CA come with the enrolment): set aside at load, so the unit
    /// sells with the link off until `outpost enroll` ([`Settings::load`]).
    #[serde(skip)]
    pub awaiting_enrolment: Option<HqLinkAside>,
}

/// `sync.hq_url` and `sync.grpc_listen` as configured, set aside until enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HqLinkAside {
    /// The configured `sync.hq_url`.
    pub hq_url: Option<String>,
    /// The configured `sync.grpc_listen`.
    pub grpc_listen: Option<SocketAddr>,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            grpc_listen: None,
            hq_url: None,
            hq_ca: None,
            hq_client_names: vec!["hq".into()],
            awaiting_enrolment: None,
            unit_id: "unit-1".into(),
            batch_max: 500,
            window: 8,
            backoff_min_ms: 200,
            backoff_max_secs: 30,
            ack_timeout_secs: 30,
            alert_after_secs: 3600,
            max_push_products: 5_000_000,
            push_idle_secs: 60,
            push_resume_secs: 300,
            grpc_keepalive_secs: 30,
        }
    }
}

/// Whether `url` is `https://` (`true`) or `http://` (`false`), and whether its host is
/// a loopback address (`localhost` or 127.0.0.0/8, `::1`).
pub(crate) fn url_scheme_and_loopback(url: &str) -> Result<(bool, bool), String> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => {
            return Err(format!(
                "{url:?} must start with https:// (mutual TLS) or http:// (loopback only)"
            ));
        }
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_owned(),
    };
    if host == "localhost" {
        return Ok((https, true));
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok((https, ip.is_loopback()));
    }
    let dns_name = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if dns_name {
        Ok((https, false))
    } else {
        Err(format!("{url:?} has no valid host"))
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// An environment variable is not valid.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A value is not valid.
    #[error("setting {field}: {message}")]
    Invalid {
        /// The setting.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Flags that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--grpc-listen`.
    pub grpc_listen: Option<SocketAddr>,
    /// `--hq-url`.
    pub hq_url: Option<String>,
}

impl Settings {
    /// Load: defaults, then `file`, then `env` (`OUTPOST_*` pairs), then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Flags,
    ) -> Result<Settings, ConfigError> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => Settings::default(),
        };
        for (name, value) in env {
            match name.as_str() {
                "OUTPOST_LISTEN" => {
                    s.listen = value.parse().map_err(|e| ConfigError::Env {
                        name,
                        message: format!("not an address ({e}): {value}"),
                    })?;
                }
                "OUTPOST_DATA_DIR" => s.data_dir = PathBuf::from(value),
                "OUTPOST_RELEASES" => s.updates.releases_dir = Some(PathBuf::from(value)),
                "OUTPOST_LOG" => s.log = value,
                "OUTPOST_PAYMENT_TERMINAL" => s.payment.terminal = value,
                "OUTPOST_GRPC_LISTEN" => {
                    s.sync.grpc_listen = Some(value.parse().map_err(|e| ConfigError::Env {
                        name,
                        message: format!("not an address ({e}): {value}"),
                    })?);
                }
                "OUTPOST_HQ_URL" => s.sync.hq_url = Some(value),
                "OUTPOST_HQ_CA" => s.sync.hq_ca = Some(PathBuf::from(value)),
                "OUTPOST_TLS" => {
                    s.tls.http = value
                        .parse()
                        .map_err(|message| ConfigError::Env { name, message })?;
                }
                "OUTPOST_SEALER" => s.security.sealer = value,
                "OUTPOST_ENROLLMENT" => s.security.enrollment = Some(PathBuf::from(value)),
                "OUTPOST_TPM_TCTI" => s.security.tcti = value,
                "OUTPOST_TPM_PCRS" => {
                    s.security.pcrs = value
                        .split(',')
                        .map(|p| p.trim().parse::<u8>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| ConfigError::Env {
                            name,
                            message: format!(
                                "must be PCR numbers separated by commas (\"7\" or \"0,2,4,7\"), not {value:?}"
                            ),
                        })?;
                }
                "OUTPOST_ALLOW_SOFTWARE_SEALER" => {
                    s.security.allow_software = match value.as_str() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => {
                            return Err(ConfigError::Env {
                                name,
                                message: format!("must be 1, 0, true or false, not {value:?}"),
                            });
                        }
                    };
                }
                _ => {}
            }
        }
        if let Some(l) = flags.listen {
            s.listen = l;
        }
        if let Some(d) = &flags.data_dir {
            s.data_dir = d.clone();
        }
        if let Some(g) = flags.grpc_listen {
            s.sync.grpc_listen = Some(g);
        }
        if let Some(u) = &flags.hq_url {
            s.sync.hq_url = Some(u.clone());
        }
        s.adopt_enrolment();
        s.validate()?;
        Ok(s)
    }

    /// Parse a config file's text.
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Check values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: field.into(),
            message,
        };
        Currency::parse(&self.store.currency)
            .map_err(|e| invalid("store.currency", e.to_string()))?;
        if self.store.name.trim().is_empty() {
            return Err(invalid("store.name", "must not be empty".into()));
        }
        for (class, bp) in &self.store.tax_rates_bp {
            if *bp > 10_000 {
                return Err(invalid(
                    &format!("store.tax_rates_bp.{class}"),
                    format!("{bp} is over 100 %"),
                ));
            }
        }
        if !(24..=80).contains(&self.store.receipt_width) {
            return Err(invalid(
                "store.receipt_width",
                "must be between 24 and 80".into(),
            ));
        }
        crate::domain::variable_measure::check_rules(&self.store.variable_measure)
            .map_err(|(i, e)| invalid(&format!("store.variable_measure[{i}]"), e))?;
        DeviceSpec::parse_all(&self.devices, &self.payment.terminal)
            .map_err(|e| invalid(&e.field, e.message))?;
        self.updates
            .validate()
            .map_err(|(field, message)| invalid(field, message))?;
        let r = &self.receipts;
        if r.queue_max == 0 || r.queue_max > 1_000_000 {
            return Err(invalid(
                "receipts.queue_max",
                "must be between 1 and 1000000".into(),
            ));
        }
        if r.print_wait_ms == 0
            || r.retry_ms == 0
            || r.backoff_min_ms == 0
            || r.backoff_max_ms < r.backoff_min_ms
            || r.health_interval_secs == 0
        {
            return Err(invalid(
                "receipts",
                "timings must be positive and backoff_max_ms at least backoff_min_ms".into(),
            ));
        }
        if let Err(e) = self.offline_caps() {
            return Err(invalid("payment", format!("offline caps: {e}")));
        }
        if self.payment.timeout_secs == 0 || self.payment.recovery_interval_secs == 0 {
            return Err(invalid(
                "payment",
                "timeouts must be at least one second".into(),
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid(
                "http.max_body_bytes",
                "must be at least 1024".into(),
            ));
        }
        self.events.validate().map_err(|m| invalid("events", m))?;
        self.payment
            .qr
            .validate()
            .map_err(|(field, m)| invalid(field, m))?;
        self.shopper
            .validate()
            .map_err(|(field, m)| invalid(field, m))?;
        self.vending
            .validate()
            .map_err(|(field, m)| invalid(field, m))?;
        if self.storage.max_group == 0 {
            return Err(invalid("storage.max_group", "must be at least 1".into()));
        }
        self.validate_tls()?;
        self.p2p
            .validate()
            .map_err(|e| invalid(&e.field, e.message))?;
        let sec = &self.security;
        match sec.sealer.as_str() {
            "software" => {}
            "tpm" => sec.validate_tpm().map_err(|(field, m)| invalid(field, m))?,
            other => {
                return Err(invalid(
                    "security.sealer",
                    format!("must be \"tpm\" or \"software\", not {other:?}"),
                ));
            }
        }
        if !matches!(sec.password_hashing.as_str(), "production" | "fast") {
            return Err(invalid(
                "security.password_hashing",
                format!(
                    "must be \"production\" or \"fast\", not {:?}",
                    sec.password_hashing
                ),
            ));
        }
        for (field, set) in [
            ("security.hq_public_key", sec.hq_public_key.is_some()),
            (
                "security.offline_grace_secs",
                sec.offline_grace_secs.is_some(),
            ),
        ] {
            if set {
                return Err(invalid(
                    field,
                    "is no longer read from the config file (a thief could delete the line): HQ's key and the lease policy come from HQ's signed enrolment bundle, `[security] enrollment = \"bundle.json\"` (made by HQ, e.g. `outpost-hq enroll`), and stay fixed in the unit's trust record".into(),
                ));
            }
        }
        if let Some(path) = &sec.enrollment
            && !path.is_file()
        {
            return Err(invalid(
                "security.enrollment",
                format!("{} is not a readable file", path.display()),
            ));
        }
        if sec.session_ttl_secs == 0 || sec.login_max_failures == 0 || sec.login_window_secs == 0 {
            return Err(invalid(
                "security",
                "session_ttl_secs, login_max_failures and login_window_secs must be positive"
                    .into(),
            ));
        }
        if sec.login_max_failures_per_source == 0 {
            return Err(invalid(
                "security.login_max_failures_per_source",
                "must be positive".into(),
            ));
        }
        if sec
            .login_hash_permits
            .is_some_and(|n| !(1..=256).contains(&n))
        {
            return Err(invalid(
                "security.login_hash_permits",
                "must be 1 to 256 (or unset: the number of CPU cores)".into(),
            ));
        }
        if sec.login_hash_queue > 10_000 {
            return Err(invalid(
                "security.login_hash_queue",
                "must be 0 to 10000".into(),
            ));
        }
        if self.sync.unit_id.trim().is_empty() || self.sync.unit_id.len() > 64 {
            return Err(invalid("sync.unit_id", "must be 1 to 64 characters".into()));
        }
        if self.sync.batch_max == 0
            || self.sync.batch_max > 10_000
            || self.sync.window == 0
            || self.sync.window > 64
        {
            return Err(invalid(
                "sync",
                "batch_max must be 1..=10000 and window 1..=64".into(),
            ));
        }
        if self.sync.backoff_min_ms == 0
            || self.sync.backoff_max_secs == 0
            || self.sync.ack_timeout_secs == 0
            || self.sync.push_idle_secs == 0
            || self.sync.push_resume_secs == 0
            || self.sync.grpc_keepalive_secs == 0
        {
            return Err(invalid(
                "sync",
                "backoff and timeouts must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The `[tls]` section and the HQ link's transport: plaintext only on loopback.
    /// Part of [`validate`](Self::validate); also run by [`crate::access::transport::TlsSetup::load`],
    /// so settings built in code cannot serve plaintext off loopback either.
    pub fn validate_tls(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: field.into(),
            message,
        };
        let tls = &self.tls;
        if tls.http == HttpTls::Off && !self.listen.ip().is_loopback() {
            return Err(invalid(
                "tls.http",
                format!(
                    "listen {} is not loopback: plain HTTP is only allowed on loopback; set tls.http to \"auto\" or \"on\"",
                    self.listen
                ),
            ));
        }
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(invalid(
                "tls.cert",
                "tls.cert and tls.key go together: give both (a provisioned certificate) or neither (one is generated)".into(),
            ));
        }
        for name in &tls.names {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:*".contains(&b));
            if !ok {
                return Err(invalid(
                    "tls.names",
                    format!("{name:?} is not a DNS name or an IP address"),
                ));
            }
        }
        if self.http_tls() && tls.cert.is_none() && self.certificate_names().is_empty() {
            return Err(invalid(
                "tls.names",
                format!(
                    "listen {} is a wildcard address: name at least one DNS name or IP address for the generated certificate",
                    self.listen
                ),
            ));
        }
        let mtls = self.hq_mtls();
        if mtls && tls.cert.is_none() {
            return Err(invalid(
                "sync.hq_ca",
                "mutual TLS with HQ needs a device certificate issued by HQ's CA: set tls.cert and tls.key".into(),
            ));
        }
        if mtls && self.sync.grpc_listen.is_some() {
            if self.sync.hq_client_names.is_empty() {
                return Err(invalid(
                    "sync.hq_client_names",
                    "name at least one DNS name HQ's client certificate carries (default \"hq\")"
                        .into(),
                ));
            }
            for n in &self.sync.hq_client_names {
                let dns = rustls::pki_types::ServerName::try_from(n.as_str())
                    .is_ok_and(|s| matches!(s, rustls::pki_types::ServerName::DnsName(_)));
                if !dns {
                    return Err(invalid(
                        "sync.hq_client_names",
                        format!("{n:?} is not a DNS name"),
                    ));
                }
            }
        }
        if let Some(addr) = self.sync.grpc_listen
            && !mtls
            && !addr.ip().is_loopback()
        {
            return Err(invalid(
                "sync.grpc_listen",
                format!(
                    "{addr} is not loopback: plaintext gRPC is only allowed on loopback; set sync.hq_ca for mutual TLS"
                ),
            ));
        }
        if let Some(url) = &self.sync.hq_url {
            match url_scheme_and_loopback(url) {
                Ok((true, _)) if !mtls => {
                    return Err(invalid(
                        "sync.hq_url",
                        format!("{url} is https: set sync.hq_ca to HQ's CA certificate"),
                    ));
                }
                Ok((false, false)) => {
                    return Err(invalid(
                        "sync.hq_url",
                        format!(
                            "{url} is not loopback: plaintext gRPC is only allowed on loopback; use https:// with sync.hq_ca"
                        ),
                    ));
                }
                Ok(_) => {}
                Err(message) => return Err(invalid("sync.hq_url", message)),
            }
        }
        Ok(())
    }

    /// The store's currency (validated by [`validate`](Self::validate)).
    pub fn currency(&self) -> Currency {
        Currency::parse(&self.store.currency).unwrap_or_else(|_| unreachable!("validated at load"))
    }

    /// The tax configuration.
    pub fn tax(&self) -> TaxConfig {
        TaxConfig {
            prices_include_tax: self.store.prices_include_tax,
            rates_bp: self.store.tax_rates_bp.clone(),
        }
    }

    /// How long to wait for the payment terminal.
    pub fn payment_timeout(&self) -> Duration {
        Duration::from_secs(self.payment.timeout_secs)
    }

    /// The offline exposure caps of the config file (`[payment]`).
    pub fn offline_caps(
        &self,
    ) -> Result<crate::domain::exposure::ExposureCaps, crate::domain::exposure::CapsError> {
        crate::domain::exposure::ExposureCaps::parse(
            self.payment.offline_store_cap,
            self.payment.offline_card_cap,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("outpost.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[store]\nname = \"Corner\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f), env(&[]), &Flags::default()).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.store.name, "Corner");
        let s = Settings::load(
            Some(&f),
            env(&[
                ("OUTPOST_LISTEN", "127.0.0.1:9001"),
                ("OUTPOST_DATA_DIR", "/from/env"),
            ]),
            &Flags::default(),
        )
        .unwrap();
        assert_eq!(
            (s.listen.port(), s.data_dir.to_str().unwrap()),
            (9001, "/from/env")
        );
        let flags = Flags {
            listen: Some("127.0.0.1:9002".parse().unwrap()),
            ..Flags::default()
        };
        let s = Settings::load(
            Some(&f),
            env(&[("OUTPOST_LISTEN", "127.0.0.1:9001")]),
            &flags,
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9002);
    }

    #[test]
    fn bad_files_are_refused_with_a_clear_error() {
        let e = Settings::from_toml("lisen = \"x\"").unwrap_err();
        assert!(e.contains("lisen"), "{e}");
        assert!(Settings::from_toml("listen = 5").is_err());
        let mut s = Settings::default();
        s.store.currency = "EURO".into();
        assert!(
            matches!(s.validate(), Err(ConfigError::Invalid { field, .. }) if field == "store.currency")
        );
        let err = Settings::load(None, env(&[("OUTPOST_LISTEN", "nope")]), &Flags::default())
            .unwrap_err();
        assert!(err.to_string().contains("OUTPOST_LISTEN"));
    }

    #[test]
    fn weight_label_rules_load_and_bad_ones_name_the_entry() {
        let s = Settings::from_toml(
            "[[store.variable_measure]]\nprefix = \"21\"\nitem_digits = 5\nvalue = \"grams\"\n",
        )
        .unwrap();
        assert_eq!(s.store.variable_measure.len(), 1);
        s.validate().unwrap();
        // Price-embedded labels are not supported: refused when parsed.
        let e = Settings::from_toml(
            "[[store.variable_measure]]\nprefix = \"24\"\nitem_digits = 5\nvalue = \"price\"\n",
        )
        .unwrap_err();
        assert!(e.contains("price"), "{e}");
        let s = Settings::from_toml(
            "[[store.variable_measure]]\nprefix = \"21\"\nitem_digits = 5\nvalue = \"grams\"\n\
             [[store.variable_measure]]\nprefix = \"29\"\nitem_digits = 8\nvalue = \"grams\"\n",
        )
        .unwrap();
        match s.validate() {
            Err(ConfigError::Invalid { field, message }) => {
                assert_eq!(field, "store.variable_measure[1]");
                assert!(message.contains("4, 5 or 6"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn device_entries_load_from_the_file_and_bad_ones_name_the_entry() {
        let ok = "[[devices]]\nid = \"printer-1\"\nkind = \"printer\"\ndriver = \"escpos-tcp\"\naddress = \"10.0.0.5:9100\"\n";
        let s = Settings::from_toml(ok).unwrap();
        s.validate().unwrap();
        assert_eq!(s.devices[0].address.as_deref(), Some("10.0.0.5:9100"));
        // A typo in an entry's key is a parse error naming the key.
        let e = Settings::from_toml(&ok.replace("address", "adress")).unwrap_err();
        assert!(e.contains("adress"), "{e}");
        // A missing address is named with its entry.
        let s = Settings::from_toml(&ok.replace("address = \"10.0.0.5:9100\"\n", "")).unwrap();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("devices[0] (id \"printer-1\").address"), "{e}");
        let mut s = Settings::default();
        s.receipts.backoff_max_ms = 1;
        assert!(s.validate().unwrap_err().to_string().contains("receipts"));
    }

    #[test]
    fn offline_caps_load_from_the_file_and_bad_ones_are_named() {
        let s = Settings::from_toml("[payment]\noffline_store_cap = 0\noffline_card_cap = 700\n")
            .unwrap();
        s.validate().unwrap();
        let caps = s.offline_caps().unwrap();
        assert_eq!((caps.store.0, caps.per_card.0), (0, 700));
        for bad in ["offline_store_cap = -1", "offline_card_cap = 1000000000001"] {
            let s = Settings::from_toml(&format!("[payment]\n{bad}\n")).unwrap();
            let e = s.validate().unwrap_err().to_string();
            assert!(
                e.contains("payment") && e.contains("offline caps"),
                "{bad}: {e}"
            );
        }
        let d = Settings::default().offline_caps().unwrap();
        assert_eq!(
            (d.store.0, d.per_card.0),
            (50_000, 10_000),
            "docs/configuration.md"
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::load(None, env(&[]), &Flags::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./outpost-data"));
    }

    #[test]
    fn plaintext_grpc_is_refused_off_loopback() {
        let ok = Settings::load(
            None,
            env(&[
                ("OUTPOST_GRPC_LISTEN", "127.0.0.1:50051"),
                ("OUTPOST_HQ_URL", "http://localhost:50052"),
            ]),
            &Flags::default(),
        )
        .unwrap();
        assert_eq!(ok.sync.hq_url.as_deref(), Some("http://localhost:50052"));
        // A link that needs mutual TLS, on a data dir not enrolled yet: set aside (the
        // port stays closed), not served in plaintext.
        for (name, value) in [
            ("OUTPOST_GRPC_LISTEN", "0.0.0.0:50051"),
            ("OUTPOST_HQ_URL", "https://127.0.0.1:1"),
        ] {
            let s = Settings::load(None, env(&[(name, value)]), &Flags::default()).unwrap();
            assert!(s.sync.awaiting_enrolment.is_some(), "{value}");
            assert_eq!(
                (s.sync.grpc_listen, s.sync.hq_url.as_deref()),
                (None, None),
                "{value}"
            );
            let mut back = s.clone();
            let aside = back.sync.awaiting_enrolment.take().unwrap();
            (back.sync.grpc_listen, back.sync.hq_url) = (aside.grpc_listen, aside.hq_url);
            let err = back.validate().unwrap_err().to_string();
            assert!(err.contains("hq_ca"), "{value}: {err}");
        }
        for (name, value, field) in [
            ("OUTPOST_HQ_URL", "http://10.0.0.1:50051", "sync.hq_url"),
            ("OUTPOST_HQ_URL", "http://:1", "sync.hq_url"),
            ("OUTPOST_HQ_URL", "ftp://127.0.0.1:1", "sync.hq_url"),
            ("OUTPOST_HQ_URL", "http://bad host:1", "sync.hq_url"),
        ] {
            let err = Settings::load(None, env(&[(name, value)]), &Flags::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{value}: {err}");
        }
        let flags = Flags {
            hq_url: Some("http://[::1]:7".into()),
            ..Flags::default()
        };
        let s = Settings::load(
            None,
            env(&[("OUTPOST_HQ_URL", "http://127.0.0.1:1")]),
            &flags,
        )
        .unwrap();
        assert_eq!(s.sync.hq_url.as_deref(), Some("http://[::1]:7"));
    }

    #[test]
    fn sealer_settings_from_file_and_env() {
        let load = |pairs: &[(&str, &str)]| Settings::load(None, env(pairs), &Flags::default());
        let s = load(&[]).unwrap();
        assert_eq!(
            (s.security.sealer.as_str(), s.security.tcti.as_str()),
            ("software", "device:/dev/tpmrm0")
        );
        assert_eq!(s.security.pcrs, vec![7]);
        let err = load(&[("OUTPOST_SEALER", "hsm")]).unwrap_err().to_string();
        assert!(
            err.contains("security.sealer") && err.contains("\"hsm\""),
            "{err}"
        );
        for bad in ["", "7,", "0;2", "300", "-1", "seven"] {
            let err = load(&[("OUTPOST_TPM_PCRS", bad)]).unwrap_err().to_string();
            assert!(err.contains("OUTPOST_TPM_PCRS"), "{bad:?}: {err}");
        }
        let s = load(&[
            ("OUTPOST_TPM_TCTI", "swtpm:host=127.0.0.1,port=2321"),
            ("OUTPOST_TPM_PCRS", "0, 2,4,7"),
        ])
        .unwrap();
        assert_eq!(s.security.tcti, "swtpm:host=127.0.0.1,port=2321");
        assert_eq!(s.security.pcrs, vec![0, 2, 4, 7]);
        let s = Settings::from_toml(
            "[security]\nsealer = \"software\"\ntcti = \"swtpm:port=9\"\npcrs = [0, 7]\n",
        )
        .unwrap();
        assert_eq!(s.security.pcrs, vec![0, 7]);
    }

    #[test]
    fn login_limits_default_parse_and_are_checked() {
        let s = Settings::default();
        assert_eq!(s.security.login_max_failures_per_source, 20);
        assert_eq!(s.security.login_hash_queue, 32);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(s.security.login_hash_permits(), cores);
        let s = Settings::from_toml(
            "[security]\nlogin_max_failures_per_source = 50\nlogin_hash_permits = 3\nlogin_hash_queue = 0\n",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.security.login_hash_permits(), 3);
        assert_eq!(s.security.login_max_failures_per_source, 50);
        for (text, field) in [
            (
                "login_max_failures_per_source = 0",
                "login_max_failures_per_source",
            ),
            ("login_hash_permits = 0", "login_hash_permits"),
            ("login_hash_permits = 257", "login_hash_permits"),
            ("login_hash_queue = 10001", "login_hash_queue"),
        ] {
            let err = Settings::from_toml(&format!("[security]\n{text}\n"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }

    /// sealer = "tpm" in a build without the feature: the error says how to get one.
    #[cfg(not(feature = "tpm"))]
    #[test]
    fn tpm_sealer_without_the_feature_says_to_rebuild() {
        let text = "[security]\nsealer = \"tpm\"\n";
        let err = Settings::from_toml(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("security.sealer") && err.contains("--features tpm"),
            "{err}"
        );
        let err = Settings::load(None, env(&[("OUTPOST_SEALER", "tpm")]), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--features tpm"), "{err}");
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let load = |pairs: &[(&str, &str)]| Settings::load(None, env(pairs), &Flags::default());
        // Loopback: plain by default, TLS on request.
        let s = load(&[]).unwrap();
        assert!(!s.http_tls());
        assert!(load(&[("OUTPOST_TLS", "on")]).unwrap().http_tls());
        // Off loopback: TLS by default, plain refused with a clear error.
        let s = load(&[("OUTPOST_LISTEN", "192.0.2.7:8443")]).unwrap();
        assert!(s.http_tls());
        assert_eq!(s.certificate_names(), vec!["192.0.2.7".to_owned()]);
        let err = load(&[("OUTPOST_LISTEN", "192.0.2.7:8080"), ("OUTPOST_TLS", "off")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls.http") && err.contains("not loopback"),
            "{err}"
        );
        let err = load(&[("OUTPOST_TLS", "maybe")]).unwrap_err().to_string();
        assert!(err.contains("OUTPOST_TLS"), "{err}");
        // A wildcard listen needs a name for the generated certificate.
        let err = load(&[("OUTPOST_LISTEN", "0.0.0.0:8443")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.names"), "{err}");
        let s = Settings::from_toml("listen = \"0.0.0.0:8443\"\n[tls]\nnames = [\"till.local\"]\n")
            .unwrap();
        s.validate().unwrap();
        assert_eq!(s.certificate_names(), vec!["till.local".to_owned()]);
        let e = Settings::from_toml("[tls]\nhttp = \"yes\"\n").unwrap_err();
        assert!(e.contains("http"), "{e}");
        for bad in ["[tls]\ncert = \"/c.pem\"\n", "[tls]\nnames = [\"a b\"]\n"] {
            let e = Settings::from_toml(bad).unwrap().validate().unwrap_err();
            assert!(e.to_string().contains("tls."), "{bad}: {e}");
        }
    }

    #[test]
    fn mutual_tls_with_hq_needs_its_ca_and_a_provisioned_certificate() {
        let load = |pairs: &[(&str, &str)]| Settings::load(None, env(pairs), &Flags::default());
        let err = load(&[("OUTPOST_HQ_CA", "/hq-ca.pem")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sync.hq_ca") && err.contains("tls.cert"),
            "{err}"
        );
        let text = "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n[sync]\nhq_ca = \"/hq-ca.pem\"\n\
                    grpc_listen = \"0.0.0.0:50051\"\nhq_url = \"https://hq.example.com:443\"\n";
        let s = Settings::from_toml(text).unwrap();
        s.validate().unwrap();
        assert!(s.hq_mtls());
        assert_eq!(s.sync.hq_client_names, ["hq"]);
        // HQ's client names must be DNS names, at least one.
        for (names, want) in [("[]", "at least one"), ("[\"10.0.0.1\"]", "not a DNS name")] {
            let s = Settings::from_toml(&format!("{text}hq_client_names = {names}\n")).unwrap();
            let err = s.validate().unwrap_err().to_string();
            assert!(
                err.contains("sync.hq_client_names") && err.contains(want),
                "{names}: {err}"
            );
        }
        let s = Settings::from_toml(&format!("{text}hq_client_names = [\"hq.example.com\"]\n"))
            .unwrap();
        s.validate().unwrap();
        // Without HQ's CA, neither an https URL nor a non-loopback gRPC port.
        let s = Settings::from_toml(&text.replace("hq_ca = \"/hq-ca.pem\"\n", "")).unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("sync.grpc_listen"), "{err}");
        let mut s = s;
        s.sync.grpc_listen = None;
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("sync.hq_url") && err.contains("hq_ca"),
            "{err}"
        );
    }

    #[test]
    fn a_unit_not_enrolled_sets_its_hq_link_aside_and_an_enrolled_one_finds_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("outpost.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\n[sync]\nhq_url = \"https://hq.example.com:443\"\ngrpc_listen = \"0.0.0.0:50051\"\n"
            ),
        )
        .unwrap();
        let load = || Settings::load(Some(&config), env(&[]), &Flags::default());
        // Not enrolled: the unit loads with the link off, kept aside for later.
        let s = load().unwrap();
        assert_eq!((s.sync.hq_url.as_deref(), s.sync.grpc_listen), (None, None));
        let aside = s.sync.awaiting_enrolment.unwrap();
        assert_eq!(aside.hq_url.as_deref(), Some("https://hq.example.com:443"));
        assert_eq!(aside.grpc_listen, Some("0.0.0.0:50051".parse().unwrap()));
        // Enrolled (a trust record) but without the link's files: a config error, as
        // before: an enrolled unit must not run with its link silently off.
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join(outpost_security::trust::TRUST_FILE), b"x").unwrap();
        let err = load().unwrap_err().to_string();
        assert!(err.contains("hq_ca"), "{err}");
        // With the files the token enrolment keeps: adopted, the link on.
        let link = data.join(tls::HQ_LINK_DIR);
        std::fs::create_dir_all(&link).unwrap();
        for f in tls::HQ_LINK_FILES {
            std::fs::write(link.join(f), b"pem").unwrap();
        }
        let s = load().unwrap();
        assert!(s.sync.awaiting_enrolment.is_none());
        assert_eq!(s.sync.hq_ca, Some(link.join("hq-ca.pem")));
        assert_eq!(s.tls.cert, Some(link.join("device-cert.pem")));
        assert_eq!(s.tls.key, Some(link.join("device-key.pem")));
        assert_eq!(s.sync.hq_url.as_deref(), Some("https://hq.example.com:443"));
        // A config that names its own paths keeps them.
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n[sync]\nhq_ca = \"/ca.pem\"\nhq_url = \"https://hq.example.com:443\"\n"
            ),
        )
        .unwrap();
        assert_eq!(load().unwrap().sync.hq_ca, Some("/ca.pem".into()));
    }
}
