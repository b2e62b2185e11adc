//! Artifacts HQ offers through the store mesh, and applying them when they are complete.
//!
//! HQ publishes an artifact once per store at an HTTP origin, sealed (an
//! `outpost_security::stream`) and addressed by the BLAKE3 hash of the sealed bytes,
//! then sends the same [`OfferRequest`] to the units of the store over gRPC, signed
//! with HQ's roster key for that store until an expiry (the mesh fetches nothing HQ did
//! not sign: `outpost_p2p::offer`). Each unit checks the signature, records the offer
//! durably, hands it to its mesh node (which elects one unit to download from origin;
//! the others fetch from it: `docs/p2p.md`), and once the artifact is complete and
//! verified, opens it with the key that came with the offer and applies it: a catalog
//! snapshot is imported as the new catalog (`catalog`: readers see the old catalog or
//! the new one); a release is handed to the updater (`release`).
//!
//! Origin and peers only ever hold ciphertext; the key exists only in the offer record
//! (in the store's journal) and in memory while the artifact is applied.
//!
//! The records live in the journal under `a/<root>`; an offer that was not applied when
//! the unit stopped is resumed at start ([`Artifacts::resume`]), and the mesh node resumes
//! its download. Once a newer artifact of the same kind is applied, older ones are
//! released to the mesh's garbage collection and their records dropped.

mod catalog;
mod release;

pub use release::{InstallError, ReleaseInstaller};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use outpost_p2p::{Client, Offer, P2pError, Root, SignedOffer};
use outpost_security::stream::StreamKey;
use outpost_updater::semver::Version;
use serde::{Deserialize, Serialize};

use crate::domain::money::Currency;
use crate::store::{Store, StoreError};

/// Journal prefix of artifact records.
pub const PREFIX: &[u8] = b"a/";
/// Largest artifact a unit accepts.
pub const MAX_SIZE: u64 = 8 * 1024 * 1024 * 1024;
/// How long an artifact waits for a running catalog change before trying again.
const BUSY_RETRY: Duration = Duration::from_millis(500);
/// How many times (at [`BUSY_RETRY`]) it waits before giving up.
const BUSY_ATTEMPTS: u32 = 1_200;
/// How often an artifact that met a locked unit tries again.
const LOCKED_RETRY: Duration = Duration::from_secs(5);

fn key(root: &Root) -> Vec<u8> {
    [PREFIX, root.to_hex().as_bytes()].concat()
}

/// Where an artifact stands on this unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactStage {
    /// Being downloaded (from origin or from peers).
    Fetching,
    /// Complete and verified; being imported.
    Applying,
    /// Imported: its catalog is (or was) live.
    Applied,
    /// Given up; `error` says why. HQ may offer it again.
    Failed,
}

impl ArtifactStage {
    /// The name gRPC and the API use.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactStage::Fetching => "fetching",
            ArtifactStage::Applying => "applying",
            ArtifactStage::Applied => "applied",
            ArtifactStage::Failed => "failed",
        }
    }
}

/// An offer as this unit keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    root: String,
    size: u64,
    url: String,
    chunks_url: String,
    /// The sealed stream's key, hex.
    content_key: String,
    /// The catalog version a snapshot carries (0 for a release).
    catalog_version: u64,
    /// The release a release artifact carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    stage: ArtifactStage,
    error: Option<String>,
    offered_at_ms: i64,
    finished_at_ms: Option<i64>,
    products: Option<u64>,
}

/// What the API and HQ see of an artifact (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ArtifactView {
    /// BLAKE3 of the sealed bytes, hex.
    pub root: String,
    /// Size of the sealed bytes.
    pub size: u64,
    /// The catalog version it carries (0: a release).
    pub catalog_version: u64,
    /// The release it carries, when it is one.
    pub release_version: Option<String>,
    /// Where it stands.
    pub stage: ArtifactStage,
    /// Why it failed.
    pub error: Option<String>,
    /// When HQ offered it (Unix ms).
    pub offered_at_ms: i64,
    /// When it was applied or failed (Unix ms).
    pub finished_at_ms: Option<i64>,
    /// Products of the applied catalog.
    pub products: Option<u64>,
}

impl From<&Record> for ArtifactView {
    fn from(r: &Record) -> Self {
        ArtifactView {
            root: r.root.clone(),
            size: r.size,
            catalog_version: r.catalog_version,
            release_version: r.release.clone(),
            stage: r.stage,
            error: r.error.clone(),
            offered_at_ms: r.offered_at_ms,
            finished_at_ms: r.finished_at_ms,
            products: r.products,
        }
    }
}

/// What an artifact carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carries {
    /// A catalog snapshot that becomes this catalog version.
    Catalog(u64),
    /// A release of Outpost (`outpost_updater::bundle`).
    Release(Version),
}

impl Carries {
    fn of(r: &Record) -> Carries {
        match r.release.as_deref().map(Version::parse) {
            Some(Ok(v)) => Carries::Release(v),
            _ => Carries::Catalog(r.catalog_version),
        }
    }
}

impl std::fmt::Display for Carries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Carries::Catalog(v) => write!(f, "catalog version {v}"),
            Carries::Release(v) => write!(f, "release {v}"),
        }
    }
}

/// HQ's offer of an artifact, as received.
#[derive(Debug, Clone)]
pub struct OfferRequest {
    /// BLAKE3 of the sealed bytes, hex.
    pub root_hex: String,
    /// Size of the sealed bytes.
    pub size: u64,
    /// Origin URL of the sealed bytes.
    pub url: String,
    /// Origin URL of the chunk list.
    pub chunks_url: String,
    /// The key the snapshot was sealed with.
    pub content_key: Vec<u8>,
    /// What it carries.
    pub carries: Carries,
    /// The store HQ signed the offer for.
    pub store_id: String,
    /// Until when (Unix ms) the offer may be taken.
    pub expires_at_ms: u64,
    /// HQ's Ed25519 signature (its roster key) over the mesh offer: root, size, both
    /// URLs, store id and expiry (`outpost_p2p::offer`).
    pub hq_signature: Vec<u8>,
}

/// Why an offer was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// A field is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The offer cannot apply here now (mesh off, version not newer, a release on a
    /// unit that does not update itself).
    #[error("{0}")]
    Precondition(String),
    /// Another artifact already carries this version.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mesh node refused or has stopped.
    #[error(transparent)]
    Mesh(#[from] P2pError),
}

fn now_ms() -> i64 {
    let t = time::OffsetDateTime::now_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The artifact records of `store`, oldest offer first.
pub fn list(store: &Store) -> Result<Vec<ArtifactView>, StoreError> {
    let mut out: Vec<ArtifactView> = records(store)?.iter().map(ArtifactView::from).collect();
    out.sort_by_key(|v| v.offered_at_ms);
    Ok(out)
}

fn records(store: &Store) -> Result<Vec<Record>, StoreError> {
    store
        .journal_scan_from(PREFIX, PREFIX)
        .map(|kv| kv.and_then(|(_, v)| crate::store::from_json::<Record>(&v, "artifact record")))
        .collect()
}

fn live_version(store: &Store) -> Option<u64> {
    store.catalog().version.parse().ok()
}

/// Offers from HQ, their downloads through the mesh, and their application.
pub struct Artifacts {
    store: Arc<Store>,
    mesh: Client,
    currency: Currency,
    /// Who installs releases; none: this unit does not update itself.
    releases: Option<Arc<dyn ReleaseInstaller>>,
    /// Roots with an apply task running.
    running: std::sync::Mutex<HashSet<String>>,
    /// Serializes offers (check then record).
    offers: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifacts").finish_non_exhaustive()
    }
}

impl Artifacts {
    /// Artifacts of this unit, distributed by `mesh`; releases go to `releases` (none:
    /// release offers are refused).
    pub fn new(
        store: Arc<Store>,
        mesh: Client,
        currency: Currency,
        releases: Option<Arc<dyn ReleaseInstaller>>,
    ) -> Arc<Artifacts> {
        Arc::new(Artifacts {
            store,
            mesh,
            currency,
            releases,
            running: std::sync::Mutex::new(HashSet::new()),
            offers: tokio::sync::Mutex::new(()),
        })
    }

    fn get(&self, root: &Root) -> Result<Option<Record>, StoreError> {
        self.store
            .journal_get(&key(root))?
            .map(|v| crate::store::from_json::<Record>(&v, "artifact record"))
            .transpose()
    }

    async fn put(&self, r: &Record) -> Result<(), StoreError> {
        let root = Root::from_hex(&r.root)
            .map_err(|e| StoreError::Corrupt(format!("artifact record root: {e}")))?;
        let (k, v) = (key(&root), crate::store::to_json(r));
        self.store
            .write(move |tx| {
                tx.put(k, v);
                Ok::<(), ()>(())
            })
            .await?
            .map_err(|()| StoreError::Corrupt("artifact record write refused".into()))
    }

    async fn remove(&self, root: &Root) -> Result<(), StoreError> {
        let k = key(root);
        self.store
            .write(move |tx| {
                tx.remove(k);
                Ok::<(), ()>(())
            })
            .await?
            .map_err(|()| StoreError::Corrupt("artifact record removal refused".into()))
    }

    /// The mesh node the artifacts travel through.
    pub fn mesh(&self) -> &Client {
        &self.mesh
    }

    /// What this unit knows of `root_hex`: its record and the mesh's byte counts
    /// (from origin, from peers).
    pub async fn state(
        &self,
        root_hex: &str,
    ) -> Result<Option<(ArtifactView, u64, u64)>, OfferError> {
        let root =
            Root::from_hex(root_hex).map_err(|e| OfferError::Invalid(format!("root_hex: {e}")))?;
        let Some(r) = self.get(&root)? else {
            return Ok(None);
        };
        let (origin, peers) = match self.mesh.status(root).await {
            Ok(Some(s)) => (s.origin_bytes, s.peer_bytes),
            _ => (0, 0),
        };
        Ok(Some((ArtifactView::from(&r), origin, peers)))
    }

    /// Accept HQ's offer: check it, record it durably, hand it to the mesh and start
    /// applying it when complete. Offering the same artifact again answers its state
    /// (and retries it if it had failed).
    pub async fn offer(self: &Arc<Self>, req: OfferRequest) -> Result<ArtifactView, OfferError> {
        let root = Root::from_hex(req.root_hex.trim())
            .map_err(|e| OfferError::Invalid(format!("root_hex: {e}")))?;
        if req.size == 0 || req.size > MAX_SIZE {
            return Err(OfferError::Invalid(format!(
                "size: {} is not between 1 and {MAX_SIZE} bytes",
                req.size
            )));
        }
        if req.size < outpost_security::stream::sealed_len(0) {
            return Err(OfferError::Invalid(format!(
                "size: {} bytes is shorter than an empty sealed stream",
                req.size
            )));
        }
        StreamKey::from_slice(&req.content_key)
            .map_err(|e| OfferError::Invalid(format!("content_key: {e}")))?;
        for (field, url) in [("url", &req.url), ("chunks_url", &req.chunks_url)] {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(OfferError::Invalid(format!(
                    "{field}: {url:?} is not an HTTP URL"
                )));
            }
        }
        match &req.carries {
            Carries::Catalog(0) => {
                return Err(OfferError::Invalid(
                    "catalog_version: must be at least 1".into(),
                ));
            }
            Carries::Catalog(_) => {}
            Carries::Release(v) => {
                if self.releases.is_none() {
                    return Err(OfferError::Precondition(
                        "this unit does not update itself: no releases directory ([updates] releases_dir)"
                            .into(),
                    ));
                }
                let running = outpost_updater::stamp::running_version();
                if *v <= running {
                    return Err(OfferError::Precondition(format!(
                        "release {v} is not newer than the running release {running}"
                    )));
                }
            }
        }
        // Only what HQ signed for this store reaches the mesh, and nothing is recorded
        // of an offer that fails the check.
        let signed = SignedOffer::from_parts(
            Offer {
                root,
                size: req.size,
                url: req.url.clone(),
                chunks_url: req.chunks_url.clone(),
            },
            &req.store_id,
            req.expires_at_ms,
            &req.hq_signature,
        );
        self.mesh
            .verify_offer(&signed)
            .map_err(|e| OfferError::Invalid(format!("hq_signature: {e}")))?;
        let _one = self.offers.lock().await;
        let existing = self.get(&root)?;
        if let Some(r) = &existing
            && r.stage != ArtifactStage::Failed
        {
            if Carries::of(r) != req.carries {
                return Err(OfferError::Conflict(format!(
                    "artifact {} is already offered as {}",
                    r.root,
                    Carries::of(r)
                )));
            }
            return Ok(ArtifactView::from(r));
        }
        for other in records(&self.store)? {
            if Carries::of(&other) == req.carries
                && other.root != root.to_hex()
                && other.stage != ArtifactStage::Failed
            {
                return Err(OfferError::Conflict(format!(
                    "{} is already offered as artifact {}",
                    req.carries, other.root
                )));
            }
        }
        if let Carries::Catalog(v) = req.carries
            && let Some(live) = live_version(&self.store)
            && v <= live
        {
            return Err(OfferError::Precondition(format!(
                "catalog version {v} is not newer than the live version {live}"
            )));
        }
        let record = Record {
            root: root.to_hex(),
            size: req.size,
            url: req.url.clone(),
            chunks_url: req.chunks_url.clone(),
            content_key: hex(&req.content_key),
            catalog_version: match req.carries {
                Carries::Catalog(v) => v,
                Carries::Release(_) => 0,
            },
            release: match &req.carries {
                Carries::Release(v) => Some(v.to_string()),
                Carries::Catalog(_) => None,
            },
            stage: ArtifactStage::Fetching,
            error: None,
            offered_at_ms: now_ms(),
            finished_at_ms: None,
            products: None,
        };
        self.put(&record).await?;
        if let Err(e) = self.mesh.offer(signed).await {
            let refused = matches!(e, P2pError::Offer(_) | P2pError::Refused(_));
            self.fail(&root, format!("the mesh refused the offer: {e}"))
                .await?;
            return Err(if refused {
                OfferError::Invalid(e.to_string())
            } else {
                OfferError::Mesh(e)
            });
        }
        tracing::info!(root = %record.root, size = record.size, carries = %req.carries, "Accepted an artifact from HQ");
        self.spawn(root);
        Ok(ArtifactView::from(&record))
    }

    /// Start applying every artifact that was offered but not applied before the unit
    /// stopped. Returns how many.
    pub fn resume(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut n = 0;
        for r in records(&self.store)? {
            if matches!(r.stage, ArtifactStage::Fetching | ArtifactStage::Applying)
                && let Ok(root) = Root::from_hex(&r.root)
            {
                self.spawn(root);
                n += 1;
            }
        }
        Ok(n)
    }

    fn spawn(self: &Arc<Self>, root: Root) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !running.insert(root.to_hex()) {
            return;
        }
        drop(running);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match this.run(root).await {
                    // The unit locked (its data key is wiped): nothing was recorded;
                    // try again once it may hold its key.
                    Err(StoreError::DeviceLocked) => tokio::time::sleep(LOCKED_RETRY).await,
                    Err(e) => {
                        tracing::error!(root = %root.to_hex(), error = %e, "Failed to record the state of a catalog artifact");
                        break;
                    }
                    Ok(()) => break,
                }
            }
            this.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&root.to_hex());
        });
    }

    async fn fail(&self, root: &Root, why: String) -> Result<(), StoreError> {
        if let Some(mut r) = self.get(root)? {
            tracing::warn!(root = %r.root, carries = %Carries::of(&r), error = %why, "An artifact from HQ failed");
            r.stage = ArtifactStage::Failed;
            r.error = Some(why);
            r.finished_at_ms = Some(now_ms());
            self.put(&r).await?;
        }
        Ok(())
    }

    /// Wait for the artifact, then apply it.
    async fn run(&self, root: Root) -> Result<(), StoreError> {
        let path = match self.mesh.wait_complete(root).await {
            Ok(p) => p,
            // The node is stopping with the unit: the offer resumes at next start.
            Err(P2pError::Stopped) => return Ok(()),
            Err(e) => return self.fail(&root, format!("download failed: {e}")).await,
        };
        let Some(r) = self.get(&root)? else {
            return Ok(());
        };
        match Carries::of(&r) {
            Carries::Catalog(_) => self.apply_catalog(root, path).await,
            Carries::Release(v) => self.apply_release(root, path, v).await,
        }
    }

    /// After `current` is applied, hand every other finished artifact of its kind
    /// (catalog or release) back to the mesh's garbage collection and drop its record.
    async fn release_older(&self, current: &Root) -> Result<(), StoreError> {
        let Some(is_release) = self.get(current)?.map(|r| r.release.is_some()) else {
            return Ok(());
        };
        let mut released = false;
        for r in records(&self.store)? {
            if r.root == current.to_hex()
                || r.release.is_some() != is_release
                || !matches!(r.stage, ArtifactStage::Applied | ArtifactStage::Failed)
            {
                continue;
            }
            let Ok(root) = Root::from_hex(&r.root) else {
                continue;
            };
            // A failed offer the mesh never took has nothing to release.
            if let Err(e) = self.mesh.release(root).await {
                tracing::warn!(root = %r.root, error = %e, "Failed to release an old catalog artifact");
            }
            self.remove(&root).await?;
            released = true;
        }
        if released && let Err(e) = self.mesh.gc().await {
            tracing::warn!(error = %e, "Failed to collect released artifacts");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_bad_digits() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&b)).unwrap(), b);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }

    #[test]
    fn stage_names() {
        assert_eq!(ArtifactStage::Fetching.name(), "fetching");
        assert_eq!(
            serde_json::to_value(ArtifactStage::Applied).unwrap(),
            "applied"
        );
    }
}
