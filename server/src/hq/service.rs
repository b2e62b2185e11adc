//! `StoreService`: what HQ pushes to the store, applied atomically or not at all.
//! The catalog push is in [`super::catalog_push`]; tax rates, store profile,
//! planogram and device set are in [`super::record_push`].

use std::collections::VecDeque;
use std::sync::Arc;

use outpost_proto::hq::{self, store_service_server::StoreService};
use time::OffsetDateTime;
use tonic::{Request, Response, Status, Streaming};

use super::catalog_push::CatalogPushes;
use super::record_push;
use super::status::sync_status;
use super::store_status as internal;
use super::uplink::SyncState;
use crate::config::Settings;
use crate::domain::promotion::Promotion;
use crate::domain::sale::MovementKind;
use crate::sales::journal;
use crate::store::{PROMOTIONS_VERSION, Store, StoreError, keys};

/// Commands remembered for answering a repeated command id.
const COMMANDS_REMEMBERED: usize = 256;

/// The store's gRPC service for HQ.
pub struct StoreGrpc {
    store: Arc<Store>,
    /// Tax table and store profile pushes are applied to its configuration.
    sales: crate::sales::Sales,
    /// Orders the write and the apply of tax and profile pushes.
    apply: record_push::ApplyLock,
    settings: Arc<Settings>,
    sync: Arc<SyncState>,
    /// Catalog pushes: the one in progress or parked.
    pushes: CatalogPushes,
    /// Answers to recent commands, by command id.
    commands: Arc<std::sync::Mutex<VecDeque<hq::CommandReply>>>,
    /// The presence lease and signed commands (absent: refused as not configured).
    security: Option<Arc<crate::access::Access>>,
    /// Artifacts offered through the store mesh (absent: the mesh is off).
    artifacts: Option<Arc<crate::hq::artifacts::Artifacts>>,
}

impl StoreGrpc {
    /// A service over the store.
    pub fn new(sales: crate::sales::Sales, settings: Arc<Settings>, sync: Arc<SyncState>) -> Self {
        Self {
            store: sales.store().clone(),
            pushes: CatalogPushes::new(sales.store().clone(), settings.clone()),
            sales,
            apply: record_push::ApplyLock::default(),
            settings,
            sync,
            commands: Arc::default(),
            security: None,
            artifacts: None,
        }
    }

    /// Take artifact offers through the store mesh.
    pub fn with_artifacts(
        mut self,
        artifacts: Option<Arc<crate::hq::artifacts::Artifacts>>,
    ) -> Self {
        self.artifacts = artifacts;
        self
    }

    fn artifacts(&self) -> Result<&Arc<crate::hq::artifacts::Artifacts>, Status> {
        self.artifacts.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "the store mesh is off on this unit ([p2p] enabled = false): push the catalog with PushCatalog",
            )
        })
    }

    /// Route signed leases and lock / unlock / wipe commands to `security`.
    pub fn with_security(mut self, security: Arc<crate::access::Access>) -> Self {
        self.security = Some(security);
        self
    }

    fn security(&self) -> Result<&Arc<crate::access::Access>, Status> {
        self.security
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("security is not wired to this service"))
    }
}

/// A refused lease, command or enrolment update as a gRPC status.
fn guard_status(e: crate::access::GuardError) -> Status {
    use crate::access::GuardError;
    match e {
        GuardError::Off => Status::failed_precondition(e.to_string()),
        GuardError::Refused(r) => Status::permission_denied(format!("refused: {r}")),
        GuardError::Enrollment(r) => Status::permission_denied(format!("refused: {r}")),
        other => Status::unavailable(other.to_string()),
    }
}

fn meta_version(store: &Store, key: &str) -> Result<u64, Status> {
    match store.meta_get(key).map_err(internal)? {
        Some(v) => keys::decode_u64(&v).map_err(internal),
        None => Ok(0),
    }
}

#[tonic::async_trait]
impl StoreService for StoreGrpc {
    async fn push_catalog(
        &self,
        request: Request<Streaming<hq::CatalogChunk>>,
    ) -> Result<Response<hq::PushCatalogReply>, Status> {
        self.pushes
            .receive(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_push_state(
        &self,
        request: Request<hq::GetPushStateRequest>,
    ) -> Result<Response<hq::PushState>, Status> {
        self.pushes
            .state(request.into_inner().push_id)
            .map(Response::new)
    }

    async fn push_promotions(
        &self,
        request: Request<hq::PromotionsPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        let push = request.into_inner();
        // A cheap early answer for a stale push; the store checks again atomically.
        let current = meta_version(&self.store, PROMOTIONS_VERSION)?;
        let stale = |live: u64| {
            Status::failed_precondition(format!(
                "promotions version {} is not newer than the live version {live}",
                push.version
            ))
        };
        if push.version <= current {
            return Err(stale(current));
        }
        let mut promos = Vec::with_capacity(push.promotions.len());
        let mut ids = std::collections::HashSet::new();
        for (i, p) in push.promotions.iter().enumerate() {
            let promo: Promotion = serde_json::from_str(&p.json)
                .map_err(|e| Status::invalid_argument(format!("promotions[{i}]: {e}")))?;
            promo.validate().map_err(|e| {
                Status::invalid_argument(format!("promotions[{i}].{}: {e}", e.field()))
            })?;
            if !ids.insert(promo.id.clone()) {
                return Err(Status::invalid_argument(format!(
                    "promotions[{i}]: id {} appears twice",
                    promo.id
                )));
            }
            promos.push(promo);
        }
        let store = self.store.clone();
        let version = push.version;
        tokio::task::spawn_blocking(move || store.push_promotions(promos, version))
            .await
            .map_err(|e| Status::internal(format!("promotions push task: {e}")))?
            .map_err(internal)?
            .map_err(stale)?;
        Ok(Response::new(hq::PushReply {
            version: push.version,
        }))
    }

    async fn push_tax_rates(
        &self,
        request: Request<hq::TaxRatesPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        record_push::tax_rates(&self.sales, &self.apply, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn push_loyalty_rules(
        &self,
        request: Request<hq::LoyaltyRulesPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        super::loyalty_push::rules(&self.store, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn push_loyalty_accounts(
        &self,
        request: Request<hq::LoyaltyAccountsPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        super::loyalty_push::accounts(&self.store, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn push_planogram(
        &self,
        request: Request<hq::PlanogramPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        record_push::planogram(&self.store, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn push_store_config(
        &self,
        request: Request<hq::StoreConfigPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        record_push::store_config(&self.sales, &self.apply, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn push_device_config(
        &self,
        request: Request<hq::DeviceConfigPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        record_push::device_config(
            &self.store,
            &self.settings.payment.terminal,
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn push_roster(
        &self,
        request: Request<hq::RosterPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        super::roster_push::apply(
            &self.settings,
            self.security()?,
            self.artifacts.as_ref().map(|a| a.mesh()),
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn push_stock_counts(
        &self,
        request: Request<hq::StockCountsPush>,
    ) -> Result<Response<hq::PushReply>, Status> {
        let push = request.into_inner();
        let current = meta_version(&self.store, "stock_counts_version")?;
        if push.version <= current {
            return Err(Status::failed_precondition(format!(
                "stock counts version {} is not newer than the live version {current}",
                push.version
            )));
        }
        if push.counts.len() > 1_000_000 {
            return Err(Status::resource_exhausted(
                "more than 1,000,000 counts in one push",
            ));
        }
        let as_of =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(push.as_of_unix_ms) * 1_000_000)
                .map_err(|e| Status::invalid_argument(format!("as_of_unix_ms: {e}")))?;
        let mut counts = Vec::with_capacity(push.counts.len());
        for (i, c) in push.counts.into_iter().enumerate() {
            crate::domain::product::Sku::parse(&c.sku)
                .map_err(|e| Status::invalid_argument(format!("counts[{i}].sku: {e}")))?;
            if !(0..=1_000_000_000).contains(&c.quantity) {
                return Err(Status::invalid_argument(format!(
                    "counts[{i}].quantity must be between 0 and 1000000000"
                )));
            }
            counts.push((c.sku, c.quantity));
        }
        let since = store_movements_since(as_of);
        let store = self.store.clone();
        store
            .write(move |tx| {
                for (sku, counted) in &counts {
                    // HQ's count is the truth as of `as_of`; this store's own movements
                    // after that moment happened on top of it.
                    let mut later = 0i64;
                    for (k, _) in tx.scan_prefix(&keys::sku_movements(sku))? {
                        let id = keys::uuid_suffix(&k)?;
                        if id < since {
                            continue;
                        }
                        if let Some(v) = tx.get(&keys::movement(id))? {
                            let m: crate::domain::sale::Movement =
                                crate::store::from_json(&v, "movement")?;
                            if m.at > as_of && m.kind != MovementKind::Count {
                                later += m.delta;
                            }
                        }
                    }
                    let target = counted + later;
                    let current = match tx.get(&keys::stock(sku))? {
                        Some(v) => keys::decode_i64(&v)?,
                        None => 0,
                    };
                    if current != target {
                        journal::move_stock(
                            tx,
                            sku,
                            target - current,
                            MovementKind::Count,
                            Some(format!("HQ count as of {as_of}")),
                            None,
                            OffsetDateTime::now_utc(),
                        )?;
                    }
                }
                Ok::<(), StoreError>(())
            })
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.store
            .meta_put("stock_counts_version", &push.version.to_be_bytes())
            .map_err(internal)?;
        Ok(Response::new(hq::PushReply {
            version: push.version,
        }))
    }

    async fn send_command(
        &self,
        request: Request<hq::Command>,
    ) -> Result<Response<hq::CommandReply>, Status> {
        let cmd = request.into_inner();
        if cmd.command_id.is_empty() || cmd.command_id.len() > 128 {
            return Err(Status::invalid_argument(
                "command_id must be 1 to 128 characters",
            ));
        }
        if let Some(done) = self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|r| r.command_id == cmd.command_id)
        {
            return Ok(Response::new(done.clone()));
        }
        let mut reply = hq::CommandReply {
            command_id: cmd.command_id.clone(),
            ..Default::default()
        };
        match cmd.kind {
            Some(hq::command::Kind::Resync(_)) => {
                self.sync.wake.notify_one();
                reply.result = "uplink woken: it reconnects now if it was waiting".into();
            }
            Some(hq::command::Kind::CollectLogs(c)) => {
                let max = (c.max_lines as usize).clamp(1, crate::telemetry::RING_LINES);
                let lines = crate::telemetry::recent_lines(max);
                reply.result = format!("{} log lines", lines.len());
                reply.logs = lines.join("\n").into_bytes();
            }
            Some(hq::command::Kind::SetLogLevel(c)) => {
                crate::telemetry::set_filter(&c.filter).map_err(|e| match e {
                    crate::telemetry::LogError::BadFilter { .. } => {
                        Status::invalid_argument(e.to_string())
                    }
                    _ => Status::failed_precondition(e.to_string()),
                })?;
                reply.result = format!("log filter set to {:?}", c.filter);
            }
            Some(hq::command::Kind::SignedLease(bytes)) => {
                let state = self
                    .security()?
                    .accept_lease(&bytes)
                    .await
                    .map_err(guard_status)?;
                reply.result = format!("lease accepted: {state}");
            }
            Some(hq::command::Kind::SignedCommand(bytes)) => {
                reply.result = self
                    .security()?
                    .apply_command(&bytes)
                    .await
                    .map_err(guard_status)?;
            }
            Some(hq::command::Kind::SignedEnrollment(bytes)) => {
                reply.result = self
                    .security()?
                    .apply_enrollment(&bytes)
                    .await
                    .map_err(guard_status)?;
            }
            None => return Err(Status::invalid_argument("command has no kind")),
        }
        let mut done = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        if done.len() == COMMANDS_REMEMBERED {
            done.pop_front();
        }
        done.push_back(reply.clone());
        Ok(Response::new(reply))
    }

    async fn get_status(
        &self,
        _request: Request<hq::GetStatusRequest>,
    ) -> Result<Response<hq::StoreStatus>, Status> {
        let status = sync_status(&self.store, &self.settings, &self.sync).map_err(internal)?;
        let catalog = self.store.catalog();
        Ok(Response::new(hq::StoreStatus {
            unit_id: self.settings.sync.unit_id.clone(),
            store_id: self.settings.store.id.clone(),
            software_version: outpost_updater::stamp::running_version().to_string(),
            catalog_version: catalog.version.parse().unwrap_or(0),
            catalog_products: catalog.len,
            promotions_version: status.versions.promotions,
            tax_rates_version: status.versions.tax_rates,
            planogram_version: status.versions.planogram,
            store_config_version: status.versions.store_config,
            device_config_version: status.versions.device_config,
            device_config_applied_version: status.versions.device_config_applied,
            stock_counts_version: status.versions.stock_counts,
            outbox_pending: status.outbox_pending,
            outbox_oldest_age_secs: status.outbox_oldest_age_secs,
            outbox_bytes: status.outbox_bytes,
            acked_seq: status.acked_seq,
            last_sync_unix_ms: status.last_sync_unix_ms,
            health: status.health.to_owned(),
            health_reasons: status.reasons,
            ..census(self.settings.updates.releases_dir.as_deref())
        }))
    }

    async fn offer_artifact(
        &self,
        request: Request<hq::ArtifactOffer>,
    ) -> Result<Response<hq::ArtifactState>, Status> {
        use crate::hq::artifacts::{Carries, OfferError, OfferRequest};
        let artifacts = self.artifacts()?;
        let offer = request.into_inner();
        let carries = match offer.payload {
            Some(hq::artifact_offer::Payload::CatalogSnapshot(c)) => Carries::Catalog(c.version),
            Some(hq::artifact_offer::Payload::Release(r)) => Carries::Release(
                outpost_updater::semver::Version::parse(r.version.trim()).map_err(|e| {
                    Status::invalid_argument(format!(
                        "release.version: {:?} is not a semantic version: {e}",
                        r.version
                    ))
                })?,
            ),
            None => {
                return Err(Status::invalid_argument(
                    "payload: an artifact offer must say what it carries (catalog_snapshot or release)",
                ));
            }
        };
        let view = artifacts
            .offer(OfferRequest {
                root_hex: offer.root_hex,
                size: offer.size,
                url: offer.url,
                chunks_url: offer.chunks_url,
                content_key: offer.content_key,
                carries,
                store_id: offer.store_id,
                expires_at_ms: offer.expires_at_ms,
                hq_signature: offer.hq_signature,
            })
            .await
            .map_err(|e| match e {
                OfferError::Invalid(m) => Status::invalid_argument(m),
                OfferError::Precondition(m) => Status::failed_precondition(m),
                OfferError::Conflict(m) => Status::already_exists(m),
                OfferError::Store(e) => internal(e),
                OfferError::Mesh(e) => Status::unavailable(format!("store mesh: {e}")),
            })?;
        Ok(Response::new(artifact_state(&view, 0, 0)))
    }

    async fn get_artifact_state(
        &self,
        request: Request<hq::GetArtifactStateRequest>,
    ) -> Result<Response<hq::ArtifactState>, Status> {
        let artifacts = self.artifacts()?;
        let root = request.into_inner().root_hex;
        match artifacts.state(root.trim()).await {
            Ok(Some((view, origin, peers))) => {
                Ok(Response::new(artifact_state(&view, origin, peers)))
            }
            Ok(None) => Err(Status::not_found(format!(
                "no artifact {root} was offered to this unit"
            ))),
            Err(crate::hq::artifacts::OfferError::Invalid(m)) => Err(Status::invalid_argument(m)),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

fn artifact_state(
    view: &crate::hq::artifacts::ArtifactView,
    origin_bytes: u64,
    peer_bytes: u64,
) -> hq::ArtifactState {
    hq::ArtifactState {
        root_hex: view.root.clone(),
        state: view.stage.name().into(),
        error: view.error.clone().unwrap_or_default(),
        origin_bytes,
        peer_bytes,
        catalog_version: view.catalog_version,
        release_version: view.release_version.clone().unwrap_or_default(),
    }
}

/// The first UUIDv7 a movement recorded at or after `t` can have.
fn store_movements_since(t: OffsetDateTime) -> uuid::Uuid {
    let ms = (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    uuid::Uuid::from_bytes(bytes)
}

/// The update fields of `StoreStatus`, from the releases directory's journal.
fn census(releases: Option<&std::path::Path>) -> hq::StoreStatus {
    let state = outpost_updater::state::UpdateState::of_releases(releases);
    let (result, version, reason) = state
        .last
        .map(|l| {
            (
                l.result.as_str().to_owned(),
                l.version.to_string(),
                l.reason,
            )
        })
        .unwrap_or_default();
    hq::StoreStatus {
        pending_version: state.pending.map(|p| p.to.to_string()).unwrap_or_default(),
        last_update_result: result,
        last_update_version: version,
        last_update_reason: reason,
        ..Default::default()
    }
}
