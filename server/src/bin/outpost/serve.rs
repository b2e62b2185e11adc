//! `outpost serve` and `outpost demo`: run the store until Ctrl-C or SIGTERM.

use std::time::Instant;

use anyhow::Context as _;
use outpost_security::auth::password::generate_password;
use outpost_security::auth::roles::Role;
use outpost_server::access::Access;
use outpost_server::config::{DeviceSettings, Settings};
use outpost_server::devices::InjectedDevices;
use outpost_server::sdnotify;
use outpost_server::startup::Application;
use outpost_server::store::StoreOptions;
use outpost_server::update::gate::GateTargets;
use outpost_server::update::probation::{self, Settled};

use crate::cli::Common;

/// `outpost serve`.
pub async fn serve(common: &Common) -> anyhow::Result<()> {
    let s = common.settings()?;
    outpost_server::telemetry::init(&s.log);
    raise_open_files_limit();
    let releases = s.updates.releases_dir.clone();
    let report_cap =
        (s.events.enabled && s.sync.hq_url.is_some()).then_some(s.events.max_pending_alerts);
    // Under outpost-supervisor only: systemd's services are children of pid 1.
    if std::env::var_os(outpost_updater::supervisor::ENV_SUPERVISED).is_some() {
        stop_with_supervisor();
    }
    let app = Application::build(s, InjectedDevices::default()).await?;
    // The health gate after every start; a release on probation that fails it stops.
    let targets = gate_targets(&app);
    let store = app.sales().store().clone();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let notifier = sdnotify::Notifier::from_env().map(std::sync::Arc::new);
    let rest = app.addr();
    let ready = notifier.clone();
    tokio::spawn(async move {
        let settled = probation::settle(&targets, &store, releases.as_deref()).await;
        if let Some(dir) = &releases {
            probation::report_last(&store, dir, report_cap).await;
        }
        let status = match &settled {
            Settled::Failed(r) => {
                let _ = failed_tx.send(r.failures());
                return;
            }
            Settled::Passed(_) => format!("Serving {rest}"),
            Settled::Degraded(r) => format!("Serving {rest}; health gate: {}", r.failures()),
        };
        if let Some(n) = ready {
            n.notify(&format!(
                "READY=1\nSTATUS={status} (release {})",
                outpost_updater::stamp::running_version()
            ));
            if let Some(every) = sdnotify::watchdog_interval() {
                tokio::spawn(sdnotify::watchdog_loop(n, store, rest, every));
            }
        }
    });
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let failed_set = failed.clone();
    let restarting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restarting_set = restarting.clone();
    let restart = app.restart_requested();
    let reopen = storage_failed(app.sales().store().clone());
    let reopening = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reopening_set = reopening.clone();
    let stopping = notifier.clone();
    app.run_until(async move {
        let gate_failed = async {
            match failed_rx.await {
                Ok(why) => why,
                // The gate passed or only degraded: nothing to stop for.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown_signal() => {}
            () = restart => {
                tracing::info!("Switched to a new release: stopping to start it.");
                restarting_set.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            () = reopen => {
                reopening_set.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            why = gate_failed => {
                if let Ok(mut f) = failed_set.lock() {
                    *f = Some(why);
                }
            }
        }
        if let Some(n) = &stopping {
            n.notify("STOPPING=1\nSTATUS=Stopping");
        }
    })
    .await?;
    if reopening.load(std::sync::atomic::Ordering::SeqCst) {
        return restart_to_reopen();
    }
    if restarting.load(std::sync::atomic::Ordering::SeqCst) {
        // The supervisor starts the release the update switched to.
        std::process::exit(outpost_updater::supervisor::EXIT_RESTART);
    }
    let why = failed.lock().ok().and_then(|f| f.clone());
    match why {
        Some(why) => anyhow::bail!("this release failed its health gate and stopped: {why}"),
        None => Ok(()),
    }
}

/// Open files up to the hard limit: every connection is one, and the soft limit
/// (1024 on many systems) would stop the server accepting long before memory runs
/// short; idle and slow connections are closed by the server's timeouts, so the count
/// stays bounded by what clients open within them.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current >= limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = ?limit.current, to = ?limit.maximum, "Raised the open files limit")
        }
        Err(e) => {
            tracing::warn!(error = %e, soft = ?limit.current, "Cannot raise the open files limit")
        }
    }
}

/// What the health gate looks at in a built server.
pub fn gate_targets(app: &Application) -> GateTargets {
    GateTargets {
        rest: app.addr(),
        rest_tls: app.base_url().starts_with("https"),
        grpc: app.grpc_addr(),
        sales: app.sales().clone(),
        devices: app.devices().clone(),
    }
}

/// Under `outpost-supervisor`: SIGTERM (a graceful stop) when the supervisor goes, so
/// a supervisor that is killed never leaves a server behind holding the data dir.
fn stop_with_supervisor() {
    use rustix::process::{Signal, getppid, set_parent_process_death_signal};
    if let Err(e) = set_parent_process_death_signal(Some(Signal::TERM)) {
        tracing::warn!(error = %e, "Cannot tie this server's life to its supervisor's");
    }
    // The supervisor may have gone before the line above.
    if getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
        tracing::warn!("The supervisor is gone; stopping.");
        std::process::exit(1);
    }
}

/// `outpost demo`: seed an empty data dir with `products` demo products, print the
/// demo's credentials, and serve it (with simulated devices when the config names
/// none).
pub async fn demo(common: &Common, products: usize, vending: bool) -> anyhow::Result<()> {
    let mut s = common.settings()?;
    outpost_server::telemetry::init(&s.log);
    raise_open_files_limit();
    if s.devices.is_empty() {
        // Simulators speaking the real wire protocols, so the demo runs the
        // ESC/POS and nexo drivers (or the MDB and OSB/1 ones) end to end.
        s.devices = if vending {
            demo_vending_devices()?
        } else {
            demo_devices(&s)?
        };
        s.validate()?;
    }
    // The demo runs on the development sealer (with its warning) unless a config
    // says otherwise.
    s.security.allow_software = true;
    if s.store.name == outpost_server::config::StoreSettings::default().name {
        s.store.name = "Outpost Demo Store".into();
    }
    {
        let (store, security) = outpost_server::access::open_data_dir(&s, &StoreOptions::of(&s))
            .with_context(|| format!("Failed to open the data dir {}", s.data_dir.display()))?;
        let started = Instant::now();
        if vending {
            match outpost_server::vending::demo::seed(&store).await? {
                Some(m) => eprintln!(
                    "Demo vending machine created in {}: {} products in {} slots, filled ({:.1} s)",
                    s.data_dir.display(),
                    m.products,
                    m.slots,
                    started.elapsed().as_secs_f64()
                ),
                None => eprintln!("Using the existing store in {}", s.data_dir.display()),
            }
        } else {
            match outpost_server::seed::seed_demo(&store, products).await? {
                Some(seeded) => eprintln!(
                    "Demo store created in {}: {} products, {} promotions ({:.1} s)",
                    s.data_dir.display(),
                    seeded.products,
                    seeded.promotions,
                    started.elapsed().as_secs_f64()
                ),
                None => eprintln!("Using the existing store in {}", s.data_dir.display()),
            }
        }
        eprintln!("{}", demo_credentials(&security, &s.data_dir)?);
        drop((store, security));
    }
    let wallet = if vending {
        None
    } else {
        demo_wallet(&mut s).await?
    };
    let app = Application::build(s, InjectedDevices::default()).await?;
    eprintln!(
        "Outpost demo serving on {}  (try /api/v1/products?q=milk, Ctrl-C to stop)",
        app.base_url()
    );
    if let Some(w) = &wallet {
        w.set_notify_url(&format!(
            "{}/api/v1/payments/qr/notifications",
            app.base_url()
        ));
        eprintln!(
            "Simulated wallet for QR payments: {}  (shoppers pay there from /shop/)",
            w.pay_url()
        );
    }
    eprintln!(
        "Technician console: {}/console/  (log in as demo-tech with the password above)",
        app.base_url()
    );
    let reopen = storage_failed(app.sales().store().clone());
    let mut reopening = false;
    app.run_until(async {
        tokio::select! {
            () = shutdown_signal() => {}
            () = reopen => reopening = true,
        }
    })
    .await?;
    if reopening {
        return restart_to_reopen();
    }
    Ok(())
}

/// Resolves once the storage engine failed writing (a disk that filled past the
/// reserve) and the data disk has space again: the data dir must be reopened, which
/// takes a restart of this server (`store::space`).
async fn storage_failed(store: std::sync::Arc<outpost_server::store::Store>) {
    let why = store.space().reopenable().await;
    tracing::warn!(
        error = %why,
        "The data disk has space again: restarting to reopen the data dir its storage engine stopped on"
    );
}

/// Start this server again in its place: its supervisor (or systemd) does when it has
/// one; otherwise the process runs its own binary again, with the same arguments and
/// the same pid.
fn restart_to_reopen() -> anyhow::Result<()> {
    if std::env::var_os(outpost_updater::supervisor::ENV_SUPERVISED).is_some()
        || std::env::var_os("INVOCATION_ID").is_some()
    {
        std::process::exit(outpost_updater::supervisor::EXIT_RESTART);
    }
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new("/proc/self/exe");
    if let Some(argv0) = args.next() {
        again.arg0(argv0);
    }
    let e = again.args(args).exec();
    Err(anyhow::Error::new(e).context("Failed to start this server again to reopen its data dir"))
}

/// The demo's QR payments, unless the config sets `[payment.qr]`: a simulated wallet
/// provider on loopback (`mocks::wallet`) sharing a secret the demo keeps in its data
/// dir (`demo-qr.key`, 0600).
#[cfg(feature = "demo")]
async fn demo_wallet(
    s: &mut Settings,
) -> anyhow::Result<Option<outpost_mocks::wallet::WalletProvider>> {
    if s.payment.qr.enabled() {
        return Ok(None);
    }
    let key = s.data_dir.join("demo-qr.key");
    let secret = match std::fs::read_to_string(&key) {
        Ok(text) => text.trim().to_owned(),
        Err(_) => {
            let bytes: [u8; 32] = rand::random();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&key)
                .and_then(|mut f| f.write_all(hex.as_bytes()))
                .with_context(|| format!("Failed to write {}", key.display()))?;
            hex
        }
    };
    // The unit's address is known once it listens; the provider learns it then.
    let wallet = outpost_mocks::wallet::WalletProvider::start(&secret, "http://127.0.0.1:9/")
        .await
        .context("Failed to start the demo's simulated wallet")?;
    s.payment.qr.pay_url = Some(wallet.pay_url());
    s.payment.qr.merchant = Some("demo-store".into());
    s.payment.qr.secret_file = Some(key);
    s.payment.qr.brand = "DemoPay".into();
    Ok(Some(wallet))
}

/// Without the `demo` feature there is no simulated wallet: QR payments are what the
/// config says.
#[cfg(not(feature = "demo"))]
async fn demo_wallet(s: &mut Settings) -> anyhow::Result<Option<NoWallet>> {
    let _ = s;
    Ok(None)
}

/// What `demo_wallet` gives without the `demo` feature: nothing.
#[cfg(not(feature = "demo"))]
struct NoWallet;

#[cfg(not(feature = "demo"))]
impl NoWallet {
    fn set_notify_url(&self, _: &str) {}
    fn pay_url(&self) -> String {
        String::new()
    }
}

/// The demo's simulated devices, with a payment terminal unless `[payment] terminal`
/// already provides one.
#[cfg(feature = "demo")]
fn demo_devices(s: &Settings) -> anyhow::Result<Vec<DeviceSettings>> {
    Ok(outpost_server::devices::demo_devices(
        s.payment.terminal == "none",
    ))
}

/// The vending demo's simulated reader, board and sensor.
#[cfg(feature = "demo")]
fn demo_vending_devices() -> anyhow::Result<Vec<DeviceSettings>> {
    Ok(outpost_server::devices::demo_vending_devices())
}

/// Without the `demo` feature there are no simulators: the config must name devices.
#[cfg(not(feature = "demo"))]
fn demo_vending_devices() -> anyhow::Result<Vec<DeviceSettings>> {
    demo_devices(&Settings::default())
}

/// Without the `demo` feature there are no simulators: the config must name devices.
#[cfg(not(feature = "demo"))]
fn demo_devices(_: &Settings) -> anyhow::Result<Vec<DeviceSettings>> {
    anyhow::bail!(
        "the demo's simulated devices need the `demo` cargo feature, which this build lacks: \
         configure [[devices]] or build with --features demo"
    )
}

/// Creates the demo's terminal token and technician login (fresh ones at every start:
/// the previous demo terminal is revoked), writes them to
/// `<data-dir>/demo-credentials.json` (0600) and returns what to print.
fn demo_credentials(security: &Access, data_dir: &std::path::Path) -> anyhow::Result<String> {
    use secrecy::ExposeSecret as _;
    security.revoke_terminal("demo", "demo-terminal")?;
    let (_, token) = security.add_terminal("demo", "demo-terminal")?;
    let password = generate_password();
    security.set_user("demo", "demo-tech", &password, vec![Role::Technician])?;
    let path = outpost_security::auth::demo::write_demo_credentials(
        data_dir,
        &token,
        "demo-tech",
        &password,
    )
    .context("Failed to write the demo credentials")?;
    Ok(format!(
        "Demo credentials (also in {}):\n  terminal token: {}\n  technician:     demo-tech / {}",
        path.display(),
        token.expose_secret(),
        password.expose_secret()
    ))
}

/// Resolves at Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
