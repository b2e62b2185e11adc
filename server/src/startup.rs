//! Building and running the server: `Application::build(settings)` binds the listener
//! and exposes the bound port; `run_until(shutdown)` serves until the future resolves.
//! Tests start the app through this very path on port 0.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use anyhow::Context as _;

use crate::access::Opening;
use crate::access::escrow_link::EscrowLink;
use crate::config::Settings;
use crate::config::devices::DeviceSpec;
use crate::devices::supervisor::SupervisorConfig;
use crate::devices::{InjectedDevices, Registry, RegistryConfig};
use crate::hq::uplink::{SyncState, UplinkConfig};
use crate::http::{self, AppState, body::BodyLimit};
use crate::sales::{Sales, SalesConfig};
use crate::store::StoreOptions;

/// The REST port's socket when a supervisor (or systemd's socket activation) hands
/// one over (`LISTEN_FDS`): it stays open across restarts, so a connection made while
/// the server restarts waits in its backlog instead of being refused.
fn inherited_listener() -> anyhow::Result<Option<TcpListener>> {
    let listener = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .context("LISTEN_FDS names no usable TCP socket")?;
    if let Some(l) = &listener {
        tracing::info!(addr = ?l.local_addr().ok(), "Serving on the listening socket handed over (LISTEN_FDS)");
    }
    Ok(listener)
}

/// A built, bound, not yet running server.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    sales: Sales,
    vending: crate::vending::Vending,
    sales_recovery_secs: u64,
    settings: Arc<Settings>,
    sync: Arc<SyncState>,
    grpc: Option<(SocketAddr, tokio::net::TcpListener)>,
    registry: Arc<Registry>,
    mesh: Option<outpost_p2p::Client>,
    security: Arc<crate::access::Access>,
    artifacts: Option<Arc<crate::hq::artifacts::Artifacts>>,
    tls: crate::access::transport::TlsSetup,
    restart: Arc<tokio::sync::Notify>,
}

/// How [`Application::start`] went.
pub enum Start {
    /// Bound and ready to run.
    Ready(Box<Application>),
    /// An enrolled unit whose data key waits for a second factor or HQ's recovery: the
    /// unlock gate serves on the REST port meanwhile.
    Waiting(Box<Waiting>),
}

/// A unit serving its unlock gate (`http::gate`).
pub struct Waiting {
    gate: crate::http::gate::Gate,
    settings: Settings,
    devices: InjectedDevices,
    tls: crate::access::transport::TlsSetup,
    escrow: Option<Arc<dyn EscrowLink>>,
}

impl Waiting {
    /// Where the gate serves (the REST port's address).
    pub fn addr(&self) -> SocketAddr {
        self.gate.addr()
    }

    /// Waits for a factor to open the unit, then builds the server on the same port.
    pub async fn opened(self) -> anyhow::Result<Application> {
        let ((store, security), listener) = self
            .gate
            .opened()
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| {
                format!(
                    "Failed to open the data dir {}",
                    self.settings.data_dir.display()
                )
            })?;
        Application::finish(
            self.settings,
            self.devices,
            store,
            security,
            self.tls,
            listener,
            self.escrow,
        )
        .await
    }
}

impl Application {
    /// Open the store, bind the listener, and prepare the server; an enrolled unit that
    /// waits for a factor serves its unlock gate first and builds once it opens.
    pub async fn build(
        settings: Settings,
        devices: InjectedDevices,
    ) -> anyhow::Result<Application> {
        match Self::start(settings, devices).await? {
            Start::Ready(app) => Ok(*app),
            Start::Waiting(w) => w.opened().await,
        }
    }

    /// Like [`Application::build`], but hands back the unlock gate instead of waiting.
    pub async fn start(settings: Settings, devices: InjectedDevices) -> anyhow::Result<Start> {
        let listener = match inherited_listener()? {
            Some(l) => l,
            None => TcpListener::bind(settings.listen)
                .with_context(|| format!("Failed to bind {}", settings.listen))?,
        };
        let open_err = || {
            format!(
                "Failed to open the data dir {}",
                settings.data_dir.display()
            )
        };
        std::fs::create_dir_all(&settings.data_dir).with_context(open_err)?;
        if let Some(aside) = &settings.sync.awaiting_enrolment {
            tracing::warn!(
                hq_url = ?aside.hq_url,
                grpc_listen = ?aside.grpc_listen,
                "The HQ link is off until this unit is enrolled: it needs mutual TLS with the certificate and HQ's CA the enrolment brings (outpost enroll --hq URL --token T, then restart)"
            );
        }
        let key_path = settings.data_dir.join(crate::access::legacy::KEY_FILE);
        let escrow_for = |tls: &crate::access::transport::TlsSetup| {
            settings.sync.hq_url.clone().map(|url| {
                Arc::new(crate::hq::escrow::GrpcEscrow::new(
                    url,
                    tls.uplink.clone(),
                    Duration::from_secs(settings.sync.ack_timeout_secs),
                )) as Arc<dyn EscrowLink>
            })
        };
        if !crate::access::anchor::is_enrolled(&key_path).with_context(open_err)? {
            // Not enrolled (or enrolled now, from the config's bundle): the key is in
            // memory once it opens, and the device key is sealed under it (or, enrolled
            // now, under the identity secret).
            let (store, security) =
                match crate::access::unseal_data_dir(&settings, &StoreOptions::of(&settings))
                    .with_context(open_err)?
                {
                    Opening::Open(store, security) => (store, security),
                    Opening::Waiting(p) => anyhow::bail!("{}", p.needs_text()),
                };
            let cipher = crate::access::device_key_cipher(&settings, Some(&security))
                .context("Failed to open the device key")?;
            let tls = crate::access::transport::TlsSetup::load(&settings, &cipher)
                .context("Failed to set up TLS")?;
            let escrow = escrow_for(&tls);
            return Ok(Start::Ready(Box::new(
                Self::finish(settings, devices, store, security, tls, listener, escrow).await?,
            )));
        }
        // Enrolled: the device key opens before the data key (the identity secret is not
        // bound to the lock), so a locked unit still reaches HQ for its factor or recovery.
        let cipher = crate::access::device_key_cipher(&settings, None)
            .context("Failed to open the device key")?;
        let tls = crate::access::transport::TlsSetup::load(&settings, &cipher)
            .context("Failed to set up TLS")?;
        let escrow = escrow_for(&tls);
        match crate::access::unseal_data_dir(&settings, &StoreOptions::of(&settings))
            .with_context(open_err)?
        {
            Opening::Open(store, security) => Ok(Start::Ready(Box::new(
                Self::finish(settings, devices, store, security, tls, listener, escrow).await?,
            ))),
            Opening::Waiting(pending) => {
                let gate = crate::http::gate::Gate::start(
                    listener,
                    tls.http.clone(),
                    *pending,
                    escrow.clone(),
                )
                .context("Failed to serve the unlock gate")?;
                Ok(Start::Waiting(Box::new(Waiting {
                    gate,
                    settings,
                    devices,
                    tls,
                    escrow,
                })))
            }
        }
    }

    /// Builds the server around an opened data dir.
    async fn finish(
        settings: Settings,
        devices: InjectedDevices,
        store: Arc<crate::store::Store>,
        security: Arc<crate::access::Access>,
        tls: crate::access::transport::TlsSetup,
        listener: TcpListener,
        escrow: Option<Arc<dyn EscrowLink>>,
    ) -> anyhow::Result<Application> {
        if let Some(link) = escrow {
            security.set_escrow_link(link);
        }
        if settings.p2p.enabled
            && let Some(enrolled) = security.hq_verifying_key()
            && let Some(named) = settings.p2p.hq_public_key.as_deref()
        {
            let hex = outpost_security::enroll::to_hex(enrolled.as_bytes());
            if !named.trim().eq_ignore_ascii_case(&hex) {
                anyhow::bail!(
                    "setting p2p.hq_public_key: it must be the HQ key this unit is enrolled with ({hex}): the mesh trusts rosters and offers signed by it"
                );
            }
        }
        let mut settings = settings;
        match crate::access::hq_pin::check(&settings, &security) {
            Ok(_) => {}
            // Locked, or waiting for HQ's share: the link is what brings the key back.
            Err(crate::access::hq_pin::PinError::Access(e)) => {
                tracing::warn!(error = %e, "HQ's CA pin is checked once the data key is open");
            }
            Err(e) => {
                tracing::error!(error = %e, "The HQ link is off");
                settings.sync.hq_url = None;
                settings.sync.grpc_listen = None;
            }
        }
        if !settings.security.tamper_sensors.is_empty() && security.hq_verifying_key().is_none() {
            anyhow::bail!(
                "setting security.tamper_sensors: needs a unit enrolled with HQ ([security] enrollment): a tamper lock is lifted only by HQ's signed unlock"
            );
        }
        // What HQ pushed (tax table, store profile, device set) wins over the file.
        let pushed = crate::hq::records::AtStart::load(&store, &settings.payment.terminal)
            .context("Failed to read the settings HQ pushed")?;
        let (devices_version, device_entries) = match &pushed.devices {
            Some((version, entries)) => {
                tracing::info!(
                    version,
                    devices = entries.len(),
                    "Opening the device set HQ pushed"
                );
                (*version, entries.clone())
            }
            None => (0, settings.devices.clone()),
        };
        let specs = DeviceSpec::parse_all(&device_entries, &settings.payment.terminal)
            .map_err(|e| anyhow::anyhow!("setting {e}"))?;
        let r = &settings.receipts;
        let registry = Registry::build(
            &specs,
            devices,
            store.clone(),
            RegistryConfig {
                supervisor: SupervisorConfig {
                    backoff_min: Duration::from_millis(r.backoff_min_ms),
                    backoff_max: Duration::from_millis(r.backoff_max_ms),
                    health_interval: Duration::from_secs(r.health_interval_secs),
                    attempt_bound: Duration::from_secs(10),
                },
                queue_max: r.queue_max,
                receipt_width: settings.store.receipt_width,
                retry: Duration::from_millis(r.retry_ms),
                currency: settings.currency(),
            },
        )
        .await
        .context("Failed to set up the devices")?;
        crate::access::tamper::check(&registry, &settings.security.tamper_sensors)?;
        registry.open_all().await;
        let registry = Arc::new(registry);
        let mesh = crate::mesh::start(&settings.p2p, &settings.data_dir, &security)
            .await
            .context("Failed to join the store mesh")?;
        // A device that was locked when it stopped locks again before serving.
        security.enforce_lockdown();
        // Asked for by a live update (`POST /api/v1/update`) or a release from the mesh.
        let restart = Arc::new(tokio::sync::Notify::new());
        let releases = crate::update::distribute::MeshReleases::for_unit(
            store.clone(),
            security.clone(),
            &settings,
            restart.clone(),
        );
        let artifacts = mesh.clone().map(|m| {
            crate::hq::artifacts::Artifacts::new(store.clone(), m, settings.currency(), releases)
        });
        let qr = crate::sales::qr::QrConfig::load(&settings.payment.qr)
            .map_err(|(field, m)| anyhow::anyhow!("setting {field}: {m}"))?
            .map(|c| Arc::new(crate::sales::qr::QrPayments::new(store.clone(), c)));
        let exposure = crate::sales::exposure::Exposure::load(
            &store,
            settings.offline_caps().context("Invalid offline caps")?,
            pushed.profile.as_ref().and_then(|p| p.value.offline_caps),
        )
        .context("Failed to read the offline exposure")?;
        let sales = Sales::new(
            store,
            registry.payment(),
            SalesConfig {
                store_name: pushed
                    .profile
                    .as_ref()
                    .map_or_else(|| settings.store.name.clone(), |p| p.value.name.clone()),
                currency: settings.currency(),
                tax: pushed
                    .tax
                    .as_ref()
                    .map_or_else(|| settings.tax(), |t| t.value.clone()),
                payment_timeout: settings.payment_timeout(),
                receipt_width: settings.store.receipt_width,
                receipt_header: pushed
                    .profile
                    .as_ref()
                    .map(|p| p.value.receipt_header.clone())
                    .unwrap_or_default(),
                variable_measure: settings.store.variable_measure.clone(),
            },
        )
        .with_receipts(registry.spooler().queue().clone())
        .with_exposure(Arc::new(exposure));
        let sales = match qr {
            Some(q) => sales.with_qr(q),
            None => sales,
        };
        let grpc = match settings.sync.grpc_listen {
            Some(at) => {
                let l = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("Failed to bind the gRPC port {at}"))?;
                Some((l.local_addr()?, l))
            }
            None => None,
        };
        let sync = Arc::new(SyncState::default());
        sync.device_config_applied
            .store(devices_version, std::sync::atomic::Ordering::Relaxed);
        let addr = listener.local_addr()?;
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let settings = Arc::new(settings);
        let vending = crate::vending::Vending::new(
            sales.clone(),
            crate::vending::VendDevices {
                cashless: registry.payment(),
                dispenser: registry.dispenser(),
                changer: registry.changer(),
                validator: registry.validator(),
            },
            Default::default(),
        )
        .with_temp_policy(crate::domain::vending::climate::TempPolicy {
            limit_milli_c: settings.vending.limit_milli_c(),
            hysteresis_milli_c: settings.vending.hysteresis_milli_c(),
            hold: time::Duration::minutes(settings.vending.chilled_hold_mins as i64),
        });
        let state = web::Data::new(AppState {
            vending: vending.clone(),
            sales: sales.clone(),
            settings: settings.clone(),
            started: Instant::now(),
            sync: sync.clone(),
            devices: registry.clone(),
            mesh: mesh.clone(),
            security: security.clone(),
            tls: tls.http.is_some(),
            restart: restart.clone(),
            shoppers: Arc::new(crate::shopper::Sessions::new(settings.shopper.clone())),
        });
        let limit = web::Data::new(BodyLimit(settings.http.max_body_bytes));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(http::observe::track))
                .app_data(state.clone())
                .app_data(limit.clone())
                .configure(http::extractor_config)
                .configure(http::register)
                .configure(crate::console::register)
                .configure(crate::shop::register)
                .default_service(web::to(http::no_such_route))
        })
        .workers(workers)
        .backlog(1024)
        .max_connections(10_000)
        .disable_signals()
        .shutdown_timeout(settings.http.shutdown_timeout_secs);
        let server = match &tls.http {
            Some(config) => server.listen_rustls_0_23(listener, (**config).clone())?,
            None => server.listen(listener)?,
        }
        .run();
        tracing::info!(%addr, tls = ?tls, grpc = ?grpc.as_ref().map(|g| g.0), catalog_products = sales.store().catalog().len, "Outpost is listening");
        let sales_recovery_secs = settings.payment.recovery_interval_secs;
        Ok(Application {
            addr,
            server,
            sales,
            vending,
            sales_recovery_secs,
            settings,
            sync,
            grpc,
            registry,
            mesh,
            security,
            artifacts,
            tls,
            restart,
        })
    }

    /// Resolves when an update switched this unit to a new release and asked for a
    /// restart into it (the caller stops gracefully and exits with
    /// `outpost_updater::supervisor::EXIT_RESTART`).
    pub fn restart_requested(&self) -> impl Future<Output = ()> + use<> {
        let restart = self.restart.clone();
        async move { restart.notified().await }
    }

    /// `https://ADDR` when the REST port serves TLS, else `http://ADDR`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.http.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Credentials, sessions and the audit log (the CLI and tests add terminals and
    /// users through it).
    pub fn security(&self) -> &Arc<crate::access::Access> {
        &self.security
    }

    /// The device registry.
    pub fn devices(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// This unit's store-mesh node, when `[p2p] enabled`.
    pub fn mesh(&self) -> Option<&outpost_p2p::Client> {
        self.mesh.as_ref()
    }

    /// The bound gRPC address, when the gRPC port is configured.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|g| g.0)
    }

    /// The uplink's state.
    pub fn sync_state(&self) -> Arc<SyncState> {
        self.sync.clone()
    }

    /// The bound address (port 0 in the settings becomes a real port here).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The selling service, for tests and the CLI.
    pub fn sales(&self) -> &Sales {
        &self.sales
    }

    /// Serve until `shutdown` resolves, then stop gracefully. Resolves pending
    /// payments at start and periodically meanwhile.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let every = Duration::from_secs(self.sales_recovery_secs);
        let recovery = self.sales.spawn_recovery(every);
        let lockdown = self.security.spawn_lockdown_watch(Duration::from_secs(1));
        // Vends a restart left open are finished first (recovery holds the machine).
        // The sensors feed the machine's alerts only on a vending site (one with a
        // dispenser): a till's door sensor is the tamper watch's.
        let vend_sensors = match self.registry.dispenser() {
            Some(_) => self.registry.sensors(),
            None => &[],
        };
        let vending = self.vending.spawn_upkeep(
            vend_sensors,
            crate::vending::upkeep::UpkeepConfig {
                recovery_every: every,
                sensor_every: Duration::from_secs(self.settings.vending.sensor_interval_secs),
                ..Default::default()
            },
        );
        let mut device_tasks = self.registry.start();
        device_tasks.extend(crate::access::tamper::spawn(
            &self.registry,
            &self.settings.security.tamper_sensors,
            self.security.clone(),
        ));
        if let Some(a) = &self.artifacts {
            match a.resume() {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    artifacts = n,
                    "Resuming artifacts offered before the restart"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "Failed to read the artifacts offered before the restart")
                }
            }
        }
        let store = self.sales.store().clone();
        let uplink =
            UplinkConfig::from_settings(&self.settings.sync, &self.settings.store.id).map(|cfg| {
                let cfg = cfg.with_tls(self.tls.uplink.clone());
                tracing::info!(hq = %cfg.hq_url, unit = %cfg.unit_id, "Starting the HQ uplink");
                tokio::spawn(crate::hq::uplink::run(
                    store.clone(),
                    cfg,
                    self.sync.clone(),
                ))
            });
        let (grpc_stop, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
        let grpc = self.grpc.map(|(_, listener)| {
            tokio::spawn(crate::hq::serve(
                listener,
                self.tls.grpc.clone(),
                self.sales.clone(),
                self.settings.clone(),
                self.sync.clone(),
                self.security.clone(),
                self.artifacts.clone(),
                async {
                    let _ = grpc_stopped.await;
                },
            ))
        });
        let sweeper = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    if let Err(e) = store.sweep_retired_catalogs() {
                        tracing::warn!(error = %e, "Failed to drop a replaced catalog generation");
                    }
                }
            })
        };
        // Events are for HQ: without an uplink there is nobody to deliver them to.
        let events_on = self.settings.events.enabled && self.settings.sync.hq_url.is_some();
        let events = events_on.then(|| {
            tokio::spawn(crate::hq::events::run(
                crate::hq::events::Watched {
                    store: store.clone(),
                    settings: self.settings.clone(),
                    sync: self.sync.clone(),
                    registry: self.registry.clone(),
                    security: self.security.clone(),
                },
                self.settings.events.clone(),
            ))
        });
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.await;
        tracing::info!("Shutting down");
        let _ = grpc_stop.send(());
        handle.stop(true).await;
        recovery.abort();
        lockdown.abort();
        for t in vending {
            t.abort();
        }
        sweeper.abort();
        if let Some(e) = events {
            e.abort();
        }
        for t in device_tasks {
            t.abort();
        }
        if let Some(u) = uplink {
            u.abort();
        }
        if let Some(m) = &self.mesh
            && let Err(e) = m.shutdown().await
        {
            tracing::warn!(error = %e, "The store mesh node did not stop cleanly");
        }
        if let Some(g) = grpc {
            g.await
                .context("Failed to join the gRPC server")?
                .context("The gRPC server failed")?;
        }
        server.await.context("Failed to join the HTTP server")??;
        Ok(())
    }
}
