//! `outpost.toml`: written from the flags' template, or taken from a file after it
//! parses; and the facts the units are generated from, read from the file the
//! service will start with (so the units always match the installed config). The
//! server checks every setting at its start; the installer reads only what the units
//! need and refuses only what the units could not serve.

use std::net::SocketAddr;

use crate::error::InstallError;
use crate::paths::DATA_DIR;

/// Drivers whose `port` is a serial device (`docs/configuration.md`, "Devices").
/// Their `address` is a serial-to-IP converter on the network: no device to allow.
const SERIAL_DRIVERS: [&str; 4] = ["escpos-serial", "mdb", "scanner-serial", "mt-sics"];

/// What seals the data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealer {
    /// The TPM (production; a build with `--features tpm`).
    Tpm,
    /// The development sealer, its key on the same disk.
    Software,
}

/// The template's inputs: the settings that differ from store to store.
#[derive(Debug, Clone)]
pub struct Template {
    /// The REST address terminals reach.
    pub listen: SocketAddr,
    /// The store id HQ knows.
    pub store_id: String,
    /// The name on receipts.
    pub store_name: Option<String>,
    /// HQ's gRPC URL.
    pub hq_url: Option<String>,
    /// The gRPC port HQ pushes to.
    pub grpc_listen: Option<SocketAddr>,
    /// Names of the generated TLS certificate.
    pub tls_names: Vec<String>,
    /// What seals the data key.
    pub sealer: Sealer,
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

impl Template {
    /// The config file's text.
    pub fn render(&self) -> Result<String, InstallError> {
        let invalid = |what: &str, reason: &str| InstallError::Invalid {
            what: what.into(),
            reason: reason.into(),
        };
        if self.store_id.trim().is_empty() {
            return Err(invalid("--store-id", "must not be empty"));
        }
        if self.listen.ip().is_unspecified() && self.tls_names.is_empty() {
            return Err(invalid(
                "--listen",
                "a wildcard address serves TLS with a certificate generated at the first start, which needs the names terminals use: give --tls-name NAME (or listen on the unit's LAN address)",
            ));
        }
        if let Some(url) = &self.hq_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("--hq-url", "write https://host:port"));
        }
        let mut t = String::from(
            "# Outpost's settings (docs/configuration.md), written by outpost-install.\n",
        );
        t += &format!("listen = {}\n", quoted(&self.listen.to_string()));
        t += &format!("data_dir = {}\n", quoted(DATA_DIR));
        t += &format!("\n[store]\nid = {}\n", quoted(&self.store_id));
        if let Some(name) = &self.store_name {
            t += &format!("name = {}\n", quoted(name));
        }
        if !self.tls_names.is_empty() {
            let names: Vec<String> = self.tls_names.iter().map(|n| quoted(n)).collect();
            t += &format!("\n[tls]\nnames = [{}]\n", names.join(", "));
        }
        t += "\n[security]\n";
        t += match self.sealer {
            Sealer::Tpm => "sealer = \"tpm\"\n",
            Sealer::Software => {
                "# Development only: the wrapping key is on the same disk.\nsealer = \"software\"\nallow_software = true\n"
            }
        };
        if self.hq_url.is_some() || self.grpc_listen.is_some() {
            t += "\n[sync]\n";
            if let Some(url) = &self.hq_url {
                t += &format!("hq_url = {}\n", quoted(url));
            }
            if let Some(g) = &self.grpc_listen {
                t += &format!("grpc_listen = {}\n", quoted(&g.to_string()));
            }
        }
        Ok(t)
    }
}

/// What the units need to know from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The REST address (`listen`), which the socket unit binds.
    pub listen: SocketAddr,
    /// Ports under 1024 the server binds itself (gRPC, the store mesh).
    pub low_ports: Vec<u16>,
    /// Device nodes the service opens: the TPM and every configured serial port.
    pub devices: Vec<String>,
    /// `[updates] max_starts`.
    pub max_starts: u32,
    /// `[updates] gate_timeout_secs`.
    pub gate_timeout_secs: u64,
}

fn bad(key: &str, reason: impl Into<String>) -> InstallError {
    InstallError::Invalid {
        what: format!("config setting {key}"),
        reason: reason.into(),
    }
}

/// The TCP port of a libp2p multiaddr such as `/ip4/0.0.0.0/tcp/4011`.
fn multiaddr_tcp_port(addr: &str) -> Option<u16> {
    let parts: Vec<&str> = addr.split('/').collect();
    parts
        .windows(2)
        .find(|w| w[0] == "tcp")
        .and_then(|w| w[1].parse().ok())
}

impl Facts {
    /// Reads the facts from the config file's text, refusing a file that does not
    /// parse or whose data dir is not the one the unit gives the service.
    pub fn read(text: &str) -> Result<Facts, InstallError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| InstallError::Invalid {
                    what: "config file".into(),
                    reason: format!("not valid TOML: {e}"),
                })?;
        let str_at = |section: Option<&str>, key: &str| -> Result<Option<String>, InstallError> {
            let t = match section {
                Some(s) => match table.get(s) {
                    Some(toml::Value::Table(t)) => t,
                    Some(_) => return Err(bad(s, "must be a table")),
                    None => return Ok(None),
                },
                None => &table,
            };
            match t.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(key, "must be a string")),
            }
        };
        let int_at = |section: &str, key: &str, default: i64| -> Result<i64, InstallError> {
            match table.get(section).and_then(|s| s.get(key)) {
                None => Ok(default),
                Some(toml::Value::Integer(i)) => Ok(*i),
                Some(_) => Err(bad(&format!("{section}.{key}"), "must be an integer")),
            }
        };
        match str_at(None, "data_dir")? {
            Some(d) if d.trim_end_matches('/') == DATA_DIR => {}
            other => {
                return Err(bad(
                    "data_dir",
                    format!(
                        "is {}; the service may write only {DATA_DIR}: set data_dir = \"{DATA_DIR}\"",
                        other.map_or("not set".into(), |d| format!("{d:?}"))
                    ),
                ));
            }
        }
        let listen = match str_at(None, "listen")? {
            Some(l) => l
                .parse()
                .map_err(|_| bad("listen", format!("{l:?} is not an address (ip:port)")))?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let mut low_ports = Vec::new();
        if let Some(g) = str_at(Some("sync"), "grpc_listen")? {
            let g: SocketAddr = g
                .parse()
                .map_err(|_| bad("sync.grpc_listen", format!("{g:?} is not an address")))?;
            low_ports.push(g.port());
        }
        let p2p = table.get("p2p");
        if p2p
            .and_then(|p| p.get("enabled"))
            .and_then(toml::Value::as_bool)
            .unwrap_or(false)
        {
            match p2p.and_then(|p| p.get("listen")) {
                None => low_ports.push(4011),
                Some(toml::Value::Array(a)) => low_ports.extend(
                    a.iter()
                        .filter_map(|v| v.as_str().and_then(multiaddr_tcp_port)),
                ),
                Some(_) => return Err(bad("p2p.listen", "must be a list of multiaddrs")),
            }
        }
        low_ports.retain(|p| *p != 0 && *p < 1024);
        low_ports.sort_unstable();
        low_ports.dedup();
        let mut devices = vec!["/dev/tpmrm0".to_owned()];
        if let Some(tcti) = str_at(Some("security"), "tcti")?
            && let Some(dev) = tcti.strip_prefix("device:")
        {
            devices.push(dev.to_owned());
        }
        match table.get("devices") {
            None => {}
            Some(toml::Value::Array(entries)) => {
                for (i, d) in entries.iter().enumerate() {
                    let driver = d.get("driver").and_then(toml::Value::as_str);
                    let port = d.get("port").and_then(toml::Value::as_str);
                    if let (Some(driver), Some(port)) = (driver, port)
                        && SERIAL_DRIVERS.contains(&driver)
                    {
                        if !port.starts_with("/dev/") {
                            return Err(bad(
                                &format!("devices[{i}].port"),
                                format!("{port:?} is not a device path (/dev/...)"),
                            ));
                        }
                        devices.push(port.to_owned());
                    }
                }
            }
            Some(_) => return Err(bad("devices", "must be [[devices]] entries")),
        }
        let mut seen = std::collections::HashSet::new();
        devices.retain(|d| seen.insert(d.clone()));
        let max_starts = int_at("updates", "max_starts", 3)?;
        let gate_timeout_secs = int_at("updates", "gate_timeout_secs", 300)?;
        Ok(Facts {
            listen,
            low_ports,
            devices,
            max_starts: u32::try_from(max_starts)
                .ok()
                .filter(|n| (1..=20).contains(n))
                .ok_or_else(|| bad("updates.max_starts", "must be 1 to 20"))?,
            gate_timeout_secs: u64::try_from(gate_timeout_secs)
                .ok()
                .filter(|n| (10..=3600).contains(n))
                .ok_or_else(|| bad("updates.gate_timeout_secs", "must be 10 to 3600"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template {
            listen: "10.0.0.2:8443".parse().unwrap(),
            store_id: "store-\"42\"".into(),
            store_name: Some("Corner".into()),
            hq_url: Some("https://hq.example.com:443".into()),
            grpc_listen: Some("0.0.0.0:50051".parse().unwrap()),
            tls_names: vec![],
            sealer: Sealer::Tpm,
        }
    }

    #[test]
    fn the_template_parses_back_to_its_inputs() {
        let text = template().render().unwrap();
        let t: toml::Table = text.parse().unwrap();
        assert_eq!(t["store"]["id"].as_str(), Some("store-\"42\""));
        assert_eq!(
            t["sync"]["hq_url"].as_str(),
            Some("https://hq.example.com:443")
        );
        let f = Facts::read(&text).unwrap();
        assert_eq!(f.listen, "10.0.0.2:8443".parse().unwrap());
        assert!(f.low_ports.is_empty());
        assert_eq!(f.devices, vec!["/dev/tpmrm0"]);
        assert_eq!((f.max_starts, f.gate_timeout_secs), (3, 300));
    }

    #[test]
    fn a_wildcard_listen_needs_a_tls_name() {
        let mut t = template();
        t.listen = "0.0.0.0:8443".parse().unwrap();
        assert!(t.render().unwrap_err().to_string().contains("--tls-name"));
        t.tls_names = vec!["till-1.lan".into()];
        assert!(t.render().unwrap().contains("names = [\"till-1.lan\"]"));
    }

    #[test]
    fn serial_ports_low_ports_and_the_start_policy_are_read() {
        let text = r#"
listen = "0.0.0.0:443"
data_dir = "/var/lib/outpost/"
[sync]
grpc_listen = "0.0.0.0:443"
[p2p]
enabled = true
listen = ["/ip4/0.0.0.0/tcp/400", "/ip4/0.0.0.0/tcp/4011"]
[security]
tcti = "device:/dev/tpm0"
[updates]
max_starts = 4
[[devices]]
id = "printer"
kind = "printer"
driver = "escpos-serial"
port = "/dev/ttyUSB0"
[[devices]]
id = "scale"
kind = "scale"
driver = "mt-sics"
address = "10.0.0.9:4001"
[[devices]]
id = "reader"
kind = "payment"
driver = "mdb"
port = "/dev/serial/by-id/usb-mdb"
"#;
        let f = Facts::read(text).unwrap();
        // The REST port (443) is bound by systemd's socket, so it needs no capability.
        assert_eq!(f.low_ports, vec![400, 443]);
        assert_eq!(
            f.devices,
            vec![
                "/dev/tpmrm0",
                "/dev/tpm0",
                "/dev/ttyUSB0",
                "/dev/serial/by-id/usb-mdb"
            ]
        );
        assert_eq!(f.max_starts, 4);
    }

    #[test]
    fn a_config_the_unit_cannot_serve_is_refused() {
        assert!(Facts::read("listen = ").is_err());
        let e = Facts::read("listen = \"127.0.0.1:8080\"").unwrap_err();
        assert!(e.to_string().contains("data_dir"), "{e}");
        let e = Facts::read("data_dir = \"/srv/x\"").unwrap_err();
        assert!(e.to_string().contains("/var/lib/outpost"), "{e}");
        let e = Facts::read("data_dir = \"/var/lib/outpost\"\n[updates]\nmax_starts = 0\n")
            .unwrap_err();
        assert!(e.to_string().contains("max_starts"), "{e}");
    }
}
