//! HQ's side of a release rollout (`outpost-hq publish-release`, `docs/updates.md`,
//! "Distribution"): which stores take a release (a cohort: a percentage of stores by a
//! stable hash, or a list), what a store is sent (the delta from the version its units
//! run when the bundle has one, else the full archive), sealed and served once at an
//! HTTP origin for the store's mesh, and the order within a store: one unit (the
//! canary) first, the others only after its health gate passed; a canary that fails
//! halts the store's rollout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_p2p::roster::HqKeypair;
use outpost_p2p::testing::OriginServer;
use outpost_proto::hq::{ArtifactOffer, GetArtifactStateRequest, ReleaseArtifact, artifact_offer};
use outpost_security::stream::{StreamKey, seal};
use outpost_updater::bundle::{self, Part};
use outpost_updater::manifest::Manifest;
use outpost_updater::semver::Version;

use super::auth::Credentials;
use super::offer::{expiry_in, offer_artifact, sign_offer};
use super::push::{PushError, connect, store_status};

/// How often a rollout asks a unit how it stands.
const POLL: Duration = Duration::from_millis(250);

/// Which stores take a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cohort {
    /// Every store.
    All,
    /// This share of stores, 0 to 100, chosen by a stable hash of the release and the
    /// store id: the same stores for the same release every time, and a larger share
    /// keeps every store of a smaller one.
    Percent(u8),
    /// These store ids.
    Stores(Vec<String>),
}

impl Cohort {
    /// Whether `store_id` takes `release`.
    pub fn includes(&self, store_id: &str, release: &Version) -> bool {
        match self {
            Cohort::All => true,
            Cohort::Stores(ids) => ids.iter().any(|s| s == store_id),
            Cohort::Percent(p) => bucket(store_id, release) < u32::from(*p) * 100,
        }
    }
}

/// The store's place in 0..10,000 for `release`: BLAKE3 of the release and the store id.
pub fn bucket(store_id: &str, release: &Version) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(b"outpost-cohort-v1\0");
    h.update(release.to_string().as_bytes());
    h.update(b"\0");
    h.update(store_id.as_bytes());
    let b = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&b.as_bytes()[..8]);
    (u64::from_be_bytes(first) % 10_000) as u32
}

/// What goes to a store whose units run `running`: the delta from it when the bundle
/// offers one, else the full archive.
pub fn part_for(m: &Manifest, running: &[Version]) -> Part {
    match running {
        [first, rest @ ..]
            if rest.iter().all(|v| v == first) && m.deltas.iter().any(|d| &d.from == first) =>
        {
            Part::DeltaFrom(first.clone())
        }
        _ => Part::Full,
    }
}

/// Why a rollout stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// The bundle or the sealing failed.
    #[error("release bundle: {0}")]
    Bundle(String),
    /// A unit could not be reached or refused a call.
    #[error(transparent)]
    Push(#[from] PushError),
    /// A unit refused the release, failed it, or rolled it back: the store's rollout
    /// stops there.
    #[error("rollout halted at {unit}: {reason}")]
    Halted {
        /// The unit's gRPC URL.
        unit: String,
        /// What it reported.
        reason: String,
    },
    /// A unit did not report within the bound.
    #[error("{unit} did not report {what} within {secs} s")]
    Timeout {
        /// The unit's gRPC URL.
        unit: String,
        /// What was awaited.
        what: &'static str,
        /// The bound.
        secs: u64,
    },
}

/// A unit of the store: its gRPC URL and what proves HQ to it.
#[derive(Debug, Clone)]
pub struct Unit {
    /// gRPC URL (plain `http://` on loopback; `https://` with `tls`).
    pub url: String,
    /// Credentials for the offer (a port without mutual TLS needs them).
    pub credentials: Credentials,
}

/// A release sealed for one store's mesh and served at an origin.
pub struct Published {
    /// The release.
    pub version: Version,
    /// What the artifact carries.
    pub part: Part,
    /// The origin serving it (stops when dropped).
    pub origin: OriginServer,
    key: StreamKey,
    /// The sealed file.
    pub file: PathBuf,
}

impl Published {
    /// Seals `part` of the bundle in `bundle_dir` under a fresh key into `work` and
    /// serves it on loopback.
    pub async fn start(
        bundle_dir: &Path,
        part: Part,
        work: &Path,
    ) -> Result<Published, RolloutError> {
        let bad = |e: String| RolloutError::Bundle(e);
        let m = bundle::manifest_unverified(bundle_dir).map_err(|e| bad(e.to_string()))?;
        let key = StreamKey::generate();
        let name = match &part {
            Part::Full => format!("release-{}-full.sealed", m.version),
            Part::DeltaFrom(from) => format!("release-{}-from-{from}.sealed", m.version),
        };
        let file = work.join(name);
        let (dir, p, f) = (bundle_dir.to_owned(), part.clone(), file.clone());
        let k = StreamKey::from_slice(key.as_bytes()).map_err(bad)?;
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut tar = Vec::new();
            bundle::pack(&dir, &p, &mut tar).map_err(|e| e.to_string())?;
            let out = std::fs::File::create(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            let mut out = std::io::BufWriter::new(out);
            seal(&k, tar.as_slice(), &mut out).map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut out).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| bad(e.to_string()))?
        .map_err(bad)?;
        let origin = OriginServer::start(&file)
            .await
            .map_err(|e| bad(format!("origin: {e}")))?;
        Ok(Published {
            version: m.version,
            part,
            origin,
            key,
            file,
        })
    }

    /// The offer of it to the units of `store_id`, signed with HQ's roster key.
    pub fn offer(&self, roster_key: &HqKeypair, store_id: &str, ttl: Duration) -> ArtifactOffer {
        let o = self.origin.offer();
        let mut offer = ArtifactOffer {
            root_hex: o.root.to_hex(),
            size: o.size,
            url: o.url,
            chunks_url: o.chunks_url,
            content_key: self.key.as_bytes().to_vec(),
            payload: Some(artifact_offer::Payload::Release(ReleaseArtifact {
                version: self.version.to_string(),
            })),
            ..ArtifactOffer::default()
        };
        // The root is the origin's own hex: signing cannot fail on it.
        let _ = sign_offer(&mut offer, roster_key, store_id, expiry_in(ttl));
        offer
    }
}

/// How one unit's update ended.
#[derive(Debug, Clone)]
pub struct UnitResult {
    /// The unit's gRPC URL.
    pub unit: String,
    /// When its health gate was seen passed.
    pub installed_at: Instant,
    /// Bytes it took from origin and from its peers.
    pub origin_bytes: u64,
    /// Bytes it took from its peers.
    pub peer_bytes: u64,
}

/// Rolls `published` out to `units` (the first is the canary): offer it to the canary,
/// wait until it switched and passed its health gate, then offer it to the others and
/// wait for each. Any refusal, failure or rollback halts the rollout (units not yet
/// offered are not offered). `within` bounds each unit's wait.
pub async fn rollout(
    published: &Published,
    units: &[Unit],
    offer: &ArtifactOffer,
    tls: Option<&Arc<rustls::ClientConfig>>,
    within: Duration,
) -> Result<Vec<UnitResult>, RolloutError> {
    let Some((canary, rest)) = units.split_first() else {
        return Ok(Vec::new());
    };
    let mut done = vec![install_one(published, canary, offer, tls, within).await?];
    tracing::info!(unit = %canary.url, release = %published.version, "The canary passed its health gate; the rest of the store follows");
    let others = rest
        .iter()
        .map(|u| install_one(published, u, offer, tls, within));
    for r in futures::future::join_all(others).await {
        done.push(r?);
    }
    Ok(done)
}

/// Offers to one unit and waits until it runs the release with its gate passed.
async fn install_one(
    published: &Published,
    unit: &Unit,
    offer: &ArtifactOffer,
    tls: Option<&Arc<rustls::ClientConfig>>,
    within: Duration,
) -> Result<UnitResult, RolloutError> {
    let halted = |reason: String| RolloutError::Halted {
        unit: unit.url.clone(),
        reason,
    };
    let state = offer_artifact(&unit.url, offer.clone(), tls, &unit.credentials)
        .await
        .map_err(|e| halted(e.to_string()))?;
    let root = state.root_hex;
    let want = published.version.to_string();
    let deadline = Instant::now() + within;
    let timeout = |what| RolloutError::Timeout {
        unit: unit.url.clone(),
        what,
        secs: within.as_secs(),
    };
    // Until the unit switched (it then restarts and stops answering for a while).
    let (origin_bytes, peer_bytes) = loop {
        if Instant::now() > deadline {
            return Err(timeout("the artifact applied"));
        }
        if let Ok(mut c) = connect(&unit.url, tls, &Credentials::None).await
            && let Ok(s) = c
                .get_artifact_state(GetArtifactStateRequest {
                    root_hex: root.clone(),
                })
                .await
        {
            let s = s.into_inner();
            match s.state.as_str() {
                "applied" => break (s.origin_bytes, s.peer_bytes),
                "failed" => return Err(halted(format!("release {want}: {}", s.error))),
                _ => {}
            }
        }
        // A unit that already restarted into the release answers for it too.
        if let Ok(s) = store_status(&unit.url, tls).await
            && s.software_version == want
        {
            break (0, 0);
        }
        tokio::time::sleep(POLL).await;
    };
    loop {
        if Instant::now() > deadline {
            return Err(timeout("its health gate"));
        }
        if let Ok(s) = store_status(&unit.url, tls).await
            && s.last_update_version == want
        {
            match s.last_update_result.as_str() {
                "installed" if s.software_version == want => {
                    return Ok(UnitResult {
                        unit: unit.url.clone(),
                        installed_at: Instant::now(),
                        origin_bytes,
                        peer_bytes,
                    });
                }
                r if r.starts_with("rolled_back") => {
                    return Err(halted(format!(
                        "release {want} was rolled back: {}",
                        s.last_update_reason
                    )));
                }
                _ => {}
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn a_percent_cohort_is_stable_and_nested_and_near_its_share() {
        let release = v("2.4.0");
        let stores: Vec<String> = (0..2000).map(|i| format!("store-{i:04}")).collect();
        let in10: Vec<&String> = stores
            .iter()
            .filter(|s| Cohort::Percent(10).includes(s, &release))
            .collect();
        let in30: Vec<&String> = stores
            .iter()
            .filter(|s| Cohort::Percent(30).includes(s, &release))
            .collect();
        assert!(
            (150..250).contains(&in10.len()),
            "{} of 2000 in 10 %",
            in10.len()
        );
        assert!(
            (500..700).contains(&in30.len()),
            "{} of 2000 in 30 %",
            in30.len()
        );
        assert!(in10.iter().all(|s| in30.contains(s)), "10 % is inside 30 %");
        let again: Vec<&String> = stores
            .iter()
            .filter(|s| Cohort::Percent(10).includes(s, &release))
            .collect();
        assert_eq!(in10, again);
        assert!(!Cohort::Percent(0).includes("store-0001", &release));
        assert!(Cohort::Percent(100).includes("store-0001", &release));
        // Another release draws other stores.
        let next: Vec<&String> = stores
            .iter()
            .filter(|s| Cohort::Percent(10).includes(s, &v("2.5.0")))
            .collect();
        assert_ne!(in10, next);
        let list = Cohort::Stores(vec!["a".into(), "b".into()]);
        assert!(list.includes("a", &release) && !list.includes("c", &release));
    }
}
