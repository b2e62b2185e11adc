//! `outpost doctor`: what a technician runs first. Each line is `ok`, `warning` or
//! `error` with what was seen and, when something is wrong, what to do. It reads the
//! settings and looks at the machine around them; it changes nothing and works whether
//! the server runs or not. Exit code 1 when any line is an error.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use outpost_server::config::Settings;

use crate::cli::Common;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warning,
    Error,
}

struct Finding {
    level: Level,
    check: &'static str,
    detail: String,
    fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        check,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Warning,
        check,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn error(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Error,
        check,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

const TIMEOUT: Duration = Duration::from_secs(3);

/// `outpost doctor`.
pub fn run(common: &Common) -> anyhow::Result<()> {
    let mut found = Vec::new();
    match common.settings() {
        Ok(s) => {
            found.push(ok("config", "the settings load and pass their checks"));
            found.extend(checks(&s));
        }
        Err(e) => found.push(error(
            "config",
            format!("{e:#}"),
            "correct the setting the message names (docs/configuration.md)",
        )),
    }
    let mut worst = Level::Ok;
    for f in &found {
        worst = worst.max(f.level);
        let tag = match f.level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        match &f.fix {
            Some(fix) => println!("{tag:<8} {:<10} {} -> {fix}", f.check, f.detail),
            None => println!("{tag:<8} {:<10} {}", f.check, f.detail),
        }
    }
    anyhow::ensure!(
        worst < Level::Error,
        "doctor found errors (lines marked error)"
    );
    Ok(())
}

fn checks(s: &Settings) -> Vec<Finding> {
    let mut out = vec![
        data_dir(&s.data_dir, s.storage.reserve_mib),
        sealer(s),
        clock(),
    ];
    out.push(rest_port(s.listen));
    if let Some(g) = s.sync.grpc_listen {
        out.push(plain_port("grpc", g));
    }
    match &s.sync.awaiting_enrolment {
        Some(aside) => out.push(warn(
            "hq",
            format!(
                "the HQ link ({}) waits for enrolment: it needs the certificate and HQ's CA the enrolment brings; sales stay in the outbox",
                aside.hq_url.as_deref().unwrap_or("gRPC port only")
            ),
            "run `outpost enroll --hq https://HQ-ENROLMENT-HOST:PORT --token TOKEN --hq-ca-pin PIN` with the token and pin HQ issued, then `systemctl restart outpost`",
        )),
        None => out.push(hq(s.sync.hq_url.as_deref())),
    }
    if s.p2p.enabled {
        for peer in &s.p2p.static_peers {
            out.push(mesh_peer(peer));
        }
    }
    for d in &s.devices {
        out.push(device(d));
    }
    out
}

fn data_dir(dir: &Path, reserve_mib: u64) -> Finding {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(dir) else {
        return warn(
            "data",
            format!("{} does not exist yet", dir.display()),
            "nothing to do: the first start creates it (check data_dir if that is not expected)",
        );
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return warn(
            "data",
            format!(
                "{} is open to other users (mode {:o})",
                dir.display(),
                meta.permissions().mode() & 0o777
            ),
            format!("chmod 700 {}", dir.display()),
        );
    }
    match rustix::fs::statvfs(dir) {
        Ok(v) => {
            let free = v.f_bavail.saturating_mul(v.f_frsize);
            let mib = free / (1024 * 1024);
            if mib < reserve_mib.saturating_add(36).max(100) {
                error(
                    "disk",
                    format!("{mib} MiB free for {}", dir.display()),
                    format!(
                        "free space now: below {reserve_mib} MiB free (storage.reserve_mib) every sale is refused with 507 storage_full"
                    ),
                )
            } else if mib < 1024 {
                warn(
                    "disk",
                    format!("{mib} MiB free for {}", dir.display()),
                    "free space: less than 1 GiB left",
                )
            } else {
                ok("disk", format!("{mib} MiB free for {}", dir.display()))
            }
        }
        Err(e) => warn(
            "disk",
            format!("cannot read free space: {e}"),
            "check the mount",
        ),
    }
}

fn sealer(s: &Settings) -> Finding {
    let sec = &s.security;
    if sec.sealer == "software" {
        return if sec.allow_software {
            warn(
                "sealer",
                "the software sealer: a stolen disk is readable",
                "set [security] sealer = \"tpm\" on a store machine",
            )
        } else {
            error(
                "sealer",
                "the software sealer is configured but not allowed: the server will not start",
                "set [security] sealer = \"tpm\" (or allow_software = true on a test machine)",
            )
        };
    }
    if let Some(dev) = sec.tcti.strip_prefix("device:") {
        return if Path::new(dev).exists() {
            ok("tpm", format!("{dev} present"))
        } else {
            error(
                "tpm",
                format!("{dev} does not exist"),
                "enable the TPM in the firmware setup, or correct [security] tcti",
            )
        };
    }
    if let Some(rest) = sec.tcti.strip_prefix("swtpm:") {
        let field = |k: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_owned))
        };
        let host = field("host").unwrap_or_else(|| "127.0.0.1".into());
        let port = field("port").unwrap_or_else(|| "2321".into());
        return match reach(&format!("{host}:{port}")) {
            Ok(a) => ok("tpm", format!("software TPM answers at {a}")),
            Err(e) => error(
                "tpm",
                format!("software TPM at {host}:{port}: {e}"),
                "start swtpm",
            ),
        };
    }
    ok("tpm", format!("tcti {}", sec.tcti))
}

fn clock() -> Finding {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // 2025-01-01: a clock before it was never set.
    if now < 1_735_689_600 {
        return error(
            "clock",
            "the clock is before 2025: it was never set",
            "set the time (timedatectl set-ntp true, or the firmware clock)",
        );
    }
    if Path::new("/run/systemd/timesync/synchronized").exists() {
        return ok("clock", "synchronized (systemd-timesyncd)");
    }
    match std::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output()
    {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "yes" => {
            ok("clock", "synchronized (timedatectl)")
        }
        Ok(o) if o.status.success() => warn(
            "clock",
            "not synchronized",
            "timedatectl set-ntp true; check that NTP reaches a server",
        ),
        _ => warn(
            "clock",
            "cannot tell whether the clock is synchronized",
            "check the time source of this machine",
        ),
    }
}

fn rest_port(addr: SocketAddr) -> Finding {
    if addr.port() == 0 {
        return ok("rest", "port 0: a free port is chosen at start");
    }
    match TcpListener::bind(addr) {
        Ok(_) => ok("rest", format!("{addr} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match healthz(addr) {
            Some(status) if status.starts_with("HTTP/1.1 200") => {
                ok("rest", format!("{addr} is served by a running Outpost"))
            }
            _ => error(
                "rest",
                format!("{addr} is in use by another program"),
                format!("find it with: ss -ltnp 'sport = :{}'", addr.port()),
            ),
        },
        Err(e) => error("rest", format!("cannot bind {addr}: {e}"), "check listen"),
    }
}

fn plain_port(check: &'static str, addr: SocketAddr) -> Finding {
    match TcpListener::bind(addr) {
        Ok(_) => ok(check, format!("{addr} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => warn(
            check,
            format!("{addr} is in use"),
            format!(
                "fine if Outpost runs; else find the program: ss -ltnp 'sport = :{}'",
                addr.port()
            ),
        ),
        Err(e) => error(
            check,
            format!("cannot bind {addr}: {e}"),
            "check the address",
        ),
    }
}

fn healthz(addr: SocketAddr) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let to = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let mut s = TcpStream::connect_timeout(&to, TIMEOUT).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).ok()?;
    Some(
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()?
            .to_owned(),
    )
}

/// Connects to `host:port` (the first address it resolves to).
fn reach(target: &str) -> Result<SocketAddr, String> {
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or("resolves to no address")?;
    TcpStream::connect_timeout(&addr, TIMEOUT)
        .map(|_| addr)
        .map_err(|e| e.to_string())
}

fn hq(url: Option<&str>) -> Finding {
    let Some(url) = url else {
        return warn(
            "hq",
            "no HQ link configured: sales stay in the outbox",
            "set sync.hq_url when this store reports to HQ",
        );
    };
    let (rest, default_port) = match url.split_once("://") {
        Some(("https", r)) => (r, 443),
        Some((_, r)) => (r, 80),
        None => (url, 443),
    };
    let hostport = rest.split('/').next().unwrap_or(rest);
    let target = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default_port}")
    };
    match reach(&target) {
        Ok(a) => ok(
            "hq",
            format!("{url} accepts connections ({a}; TLS not checked here)"),
        ),
        Err(e) => error(
            "hq",
            format!("{url}: {e}"),
            "check the WAN link, DNS and the firewall; the store keeps selling offline meanwhile",
        ),
    }
}

fn mesh_peer(peer: &str) -> Finding {
    let parts: Vec<&str> = peer.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", host, "tcp", port, ..] => match reach(&format!("{host}:{port}")) {
            Ok(_) => ok("mesh", format!("peer {peer} answers")),
            Err(e) => warn(
                "mesh",
                format!("peer {peer}: {e}"),
                "check that unit is on and on this LAN",
            ),
        },
        _ => ok(
            "mesh",
            format!("peer {peer} (not checked: not /ip4 or /ip6 with tcp)"),
        ),
    }
}

fn device(d: &outpost_server::config::DeviceSettings) -> Finding {
    if let Some(port) = &d.port {
        use std::os::unix::fs::FileTypeExt as _;
        return match std::fs::metadata(port) {
            Ok(m) if m.file_type().is_char_device() => {
                ok("device", format!("{} ({}): {port} present", d.id, d.kind))
            }
            Ok(_) => error(
                "device",
                format!("{} ({}): {port} is not a serial device", d.id, d.kind),
                "correct the port of this [[devices]] entry",
            ),
            Err(_) => error(
                "device",
                format!("{} ({}): {port} does not exist", d.id, d.kind),
                "plug the device in and look for it in dmesg; correct the port if it moved",
            ),
        };
    }
    match &d.address {
        Some(addr) => match reach(addr) {
            Ok(a) => ok("device", format!("{} ({}): {a} answers", d.id, d.kind)),
            Err(e) => error(
                "device",
                format!("{} ({}): {addr}: {e}", d.id, d.kind),
                "check its power, cable and IP address",
            ),
        },
        None => ok(
            "device",
            format!(
                "{} ({}): driver {} (nothing to reach)",
                d.id, d.kind, d.driver
            ),
        ),
    }
}
