//! systemd's notify protocol (`sd_notify`): `READY=1` once the server serves and its
//! health gate passed, `WATCHDOG=1` from a health loop that proves the store still
//! commits and the REST port still accepts (never from a bare timer, so a wedged
//! store stops the pings and systemd's `WatchdogSec` restarts it), `STATUS=` lines a
//! technician reads in `systemctl status`, and `STOPPING=1`. Without `NOTIFY_SOCKET`
//! (not under systemd) it does nothing.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use crate::store::{Store, StoreError};

/// A connection to systemd's notify socket.
pub struct Notifier {
    socket: UnixDatagram,
    to: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names (a path, or `@name` in the abstract
    /// namespace); `None` when it is unset or unusable (logged).
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy().into_owned();
        let to = if let Some(abs) = name.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes())
        } else {
            std::os::unix::net::SocketAddr::from_pathname(&name)
        };
        match (to, UnixDatagram::unbound()) {
            (Ok(to), Ok(socket)) => Some(Notifier { socket, to }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(socket = %name, error = %e, "Cannot use NOTIFY_SOCKET");
                None
            }
        }
    }

    /// Sends one notification (`KEY=value` lines); a failure is logged, never fatal.
    pub fn notify(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.to) {
            tracing::warn!(error = %e, "Failed to notify systemd");
        }
    }
}

/// Half of `WATCHDOG_USEC` (systemd's advice), when systemd asks for pings.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Whether the server is healthy enough to be pinged for: a writer round trip
/// commits and the REST port accepts a connection, each within `within`.
pub async fn healthy(store: &Store, rest: SocketAddr, within: Duration) -> Result<(), String> {
    let write = store.write(|_tx| Ok::<(), StoreError>(()));
    match tokio::time::timeout(within, write).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e)) | Err(e)) => return Err(format!("the store does not commit: {e}")),
        Err(_) => {
            return Err(format!(
                "the store did not commit within {} ms",
                within.as_millis()
            ));
        }
    }
    let rest = if rest.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], rest.port()))
    } else {
        rest
    };
    match tokio::time::timeout(within, tokio::net::TcpStream::connect(rest)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("the REST port {rest} refuses: {e}")),
        Err(_) => Err(format!("the REST port {rest} does not accept")),
    }
}

/// Pings the watchdog every `every` while [`healthy`]; says why not otherwise.
pub async fn watchdog_loop(
    notifier: Arc<Notifier>,
    store: Arc<Store>,
    rest: SocketAddr,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The READY=1 message said "Serving …".
    let mut status = String::from("Serving");
    loop {
        tick.tick().await;
        let now = match healthy(&store, rest, every).await {
            Ok(()) => {
                notifier.notify("WATCHDOG=1");
                storage_trouble(&store).unwrap_or_else(|| "Serving".into())
            }
            Err(why) => {
                tracing::error!(%why, "Unhealthy: not pinging the watchdog");
                format!("Unhealthy: {why}")
            }
        };
        if now != status {
            notifier.notify(&format!("STATUS={now}"));
            status = now;
        }
    }
}

/// What a technician reading `systemctl status` must know about the data disk: a
/// server that refuses writes at the reserve, or waits to reopen a failed storage
/// engine, is alive (the watchdog is pinged) but not selling.
fn storage_trouble(store: &Store) -> Option<String> {
    let space = store.space();
    let mib = |b: u64| b / (1024 * 1024);
    let free = space
        .free()
        .map_or("unknown".into(), |f| format!("{} MiB", mib(f)));
    if let Some(why) = space.failure() {
        return Some(format!(
            "Not selling: the storage engine failed ({why}); restarting once the data disk has {} MiB free (now {free})",
            mib(space.reserve()).max(1)
        ));
    }
    space.is_low().then(|| {
        format!(
            "Not selling: the data disk is down to its reserve ({free} free, {} MiB reserved); free space and selling resumes",
            mib(space.reserve())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(sock: &UnixDatagram, within: Duration) -> Vec<String> {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let deadline = std::time::Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while std::time::Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pings_while_healthy_and_none_while_the_store_is_wedged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let notifier = Arc::new(Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            to: std::os::unix::net::SocketAddr::from_pathname(&path).unwrap(),
        });
        let store = Store::open(
            &dir.path().join("data"),
            &crate::store::StoreOptions::default(),
            &crate::store::crypt::test_vault(),
        )
        .unwrap();
        let rest = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = rest.local_addr().unwrap();
        let task = tokio::spawn(watchdog_loop(
            notifier,
            store.clone(),
            addr,
            Duration::from_millis(100),
        ));
        let got = tokio::task::spawn_blocking({
            let sock = sock.try_clone().unwrap();
            move || receive(&sock, Duration::from_millis(600))
        })
        .await
        .unwrap();
        assert!(
            got.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
            "{got:?}"
        );
        // The single writer is held by a job that does not end: the store is wedged.
        let held = store.clone();
        let wedge = tokio::spawn(async move {
            held.write(|_tx| {
                std::thread::sleep(Duration::from_millis(1_500));
                Ok::<(), StoreError>(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let during = tokio::task::spawn_blocking({
            let sock = sock.try_clone().unwrap();
            move || receive(&sock, Duration::from_millis(900))
        })
        .await
        .unwrap();
        assert!(!during.iter().any(|m| m == "WATCHDOG=1"), "{during:?}");
        assert!(
            during
                .iter()
                .any(|m| m.starts_with("STATUS=Unhealthy: the store")),
            "{during:?}"
        );
        wedge.await.unwrap().unwrap().unwrap();
        let after = tokio::task::spawn_blocking(move || receive(&sock, Duration::from_millis(800)))
            .await
            .unwrap();
        assert!(after.iter().any(|m| m == "WATCHDOG=1"), "{after:?}");
        task.abort();
    }
}
