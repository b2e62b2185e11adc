//! The store mesh's commands: a catalog snapshot offered to a unit, and a release
//! rolled out to a store (`outpost_mocks::hq::release`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use outpost_mocks::hq::release::{self, Cohort, Published, Unit};

use super::{ClientTlsArgs, CredentialArgs};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("signer").required(true).args(["roster_key", "demo_roster_key"])))]
pub(crate) struct OfferArgs {
    /// The unit's gRPC URL (https:// with --ca).
    #[arg(long)]
    store: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    auth: CredentialArgs,
    /// The sealed artifact exactly as origin serves it at --url (its BLAKE3 hash and
    /// size go into the offer).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// Where origin serves FILE (must honour Range requests).
    #[arg(long)]
    url: String,
    /// Where origin serves FILE's chunk list.
    #[arg(long)]
    chunks_url: String,
    /// The key FILE was sealed with: 64 hex digits in a file only its owner may read.
    #[arg(long, value_name = "FILE")]
    content_key_file: PathBuf,
    /// The catalog version the snapshot becomes.
    #[arg(long)]
    catalog_version: u64,
    /// The store the offer is for (the roster's store id).
    #[arg(long)]
    store_id: String,
    /// HQ's roster key: the Ed25519 secret key as 64 hex digits, mode 0600.
    #[arg(long, value_name = "FILE")]
    roster_key: Option<PathBuf>,
    /// Sign with the public demo roster key (units whose hq_public_key is the demo's).
    #[arg(long)]
    demo_roster_key: bool,
    /// How long units may take the offer.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("signer").required(true).args(["roster_key", "demo_roster_key"])))]
#[command(group(clap::ArgGroup::new("cohort").args(["cohort_percent", "cohort_stores"])))]
pub(crate) struct PublishReleaseArgs {
    /// The release bundle (`manifest.json`, the archive, its deltas), as HQ's release
    /// tool writes it.
    #[arg(long, value_name = "DIR")]
    bundle: PathBuf,
    /// The store (the roster's store id).
    #[arg(long)]
    store_id: String,
    /// A unit's gRPC URL; repeat for each unit of the store. The first is the canary.
    #[arg(long = "unit", value_name = "URL", required = true)]
    units: Vec<String>,
    /// Only this share of stores takes the release (0-100, a stable hash of the release
    /// and the store id); a store outside it is left alone (exit 0).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    cohort_percent: Option<u8>,
    /// Only these stores take the release (comma-separated store ids).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    cohort_stores: Vec<String>,
    /// Send the full archive even when the bundle has a delta from the running version.
    #[arg(long)]
    full: bool,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    auth: CredentialArgs,
    /// HQ's roster key: the Ed25519 secret key as 64 hex digits, mode 0600.
    #[arg(long, value_name = "FILE")]
    roster_key: Option<PathBuf>,
    /// Sign with the public demo roster key (units whose hq_public_key is the demo's).
    #[arg(long)]
    demo_roster_key: bool,
    /// How long units may take the offer.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
    /// How long each unit may take to download, switch and pass its health gate.
    #[arg(long, default_value_t = 900)]
    unit_timeout_secs: u64,
    /// Where the sealed artifact is written (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

pub(crate) async fn publish_release(args: PublishReleaseArgs) -> anyhow::Result<()> {
    use outpost_mocks::hq::offer;
    let m = outpost_updater::bundle::manifest_unverified(&args.bundle)
        .with_context(|| format!("Failed to read the bundle {}", args.bundle.display()))?;
    let cohort = match (args.cohort_percent, args.cohort_stores.is_empty()) {
        (Some(p), _) => Cohort::Percent(p),
        (None, false) => Cohort::Stores(args.cohort_stores.clone()),
        (None, true) => Cohort::All,
    };
    if !cohort.includes(&args.store_id, &m.version) {
        println!(
            "{}",
            serde_json::json!({"store_id": args.store_id, "release": m.version.to_string(), "in_cohort": false})
        );
        return Ok(());
    }
    let key = match &args.roster_key {
        Some(path) => offer::read_roster_key(path)?,
        None => offer::demo_hq_keypair(),
    };
    let tls = args.tls.config()?;
    let credentials = args.auth.credentials()?;
    let mut running = Vec::new();
    for u in &args.units {
        let s = outpost_mocks::hq::store_status(u, tls.as_ref())
            .await
            .with_context(|| format!("Failed to read the status of {u}"))?;
        running.push(
            outpost_updater::semver::Version::parse(&s.software_version)
                .with_context(|| format!("{u} reports version {:?}", s.software_version))?,
        );
    }
    let part = if args.full {
        outpost_updater::bundle::Part::Full
    } else {
        release::part_for(&m, &running)
    };
    let work = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("outpost-hq-release-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work)
        .with_context(|| format!("Failed to make the work directory {}", work.display()))?;
    let published = Published::start(&args.bundle, part, &work).await?;
    let result = roll_out(&args, &m, &published, credentials, &key, tls.as_ref()).await;
    let _ = std::fs::remove_file(&published.file);
    result
}

async fn roll_out(
    args: &PublishReleaseArgs,
    m: &outpost_updater::manifest::Manifest,
    published: &Published,
    credentials: outpost_mocks::hq::Credentials,
    key: &outpost_mocks::hq::offer::HqKeypair,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> anyhow::Result<()> {
    let units: Vec<Unit> = args
        .units
        .iter()
        .map(|url| Unit {
            url: url.clone(),
            credentials: credentials.clone(),
        })
        .collect();
    let offer_msg = published.offer(key, &args.store_id, Duration::from_secs(args.ttl_secs));
    let size = offer_msg.size;
    let done = release::rollout(
        published,
        &units,
        &offer_msg,
        tls,
        Duration::from_secs(args.unit_timeout_secs),
    )
    .await?;
    for (i, u) in done.iter().enumerate() {
        println!(
            "{}",
            serde_json::json!({
                "unit": u.unit,
                "canary": i == 0,
                "release": m.version.to_string(),
                "result": "installed",
                "origin_bytes": u.origin_bytes,
                "peer_bytes": u.peer_bytes,
            })
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "store_id": args.store_id,
            "release": m.version.to_string(),
            "part": match &published.part {
                outpost_updater::bundle::Part::Full => "full".to_owned(),
                outpost_updater::bundle::Part::DeltaFrom(v) => format!("delta from {v}"),
            },
            "artifact_bytes": size,
            "origin_bytes_sent": published.origin.bytes_sent(),
        })
    );
    Ok(())
}

pub(crate) async fn offer_artifact(args: OfferArgs) -> anyhow::Result<()> {
    use outpost_mocks::hq::offer;
    use outpost_proto::hq::{ArtifactOffer, CatalogArtifact, artifact_offer::Payload};
    let key = match &args.roster_key {
        Some(path) => offer::read_roster_key(path)?,
        None => offer::demo_hq_keypair(),
    };
    let content_key = offer::read_secret_hex(&args.content_key_file)?.to_vec();
    let file = args.file.clone();
    let list = tokio::task::spawn_blocking(move || {
        outpost_p2p::chunks::ChunkList::compute(std::fs::File::open(&file)?)
    })
    .await?
    .with_context(|| format!("Failed to hash {}", args.file.display()))?;
    let mut o = ArtifactOffer {
        root_hex: list.root().to_hex(),
        size: list.size(),
        url: args.url,
        chunks_url: args.chunks_url,
        content_key,
        payload: Some(Payload::CatalogSnapshot(CatalogArtifact {
            version: args.catalog_version,
        })),
        ..ArtifactOffer::default()
    };
    let expires = offer::expiry_in(std::time::Duration::from_secs(args.ttl_secs));
    offer::sign_offer(&mut o, &key, &args.store_id, expires)?;
    let credentials = args.auth.credentials()?;
    let state =
        offer::offer_artifact(&args.store, o, args.tls.config()?.as_ref(), &credentials).await?;
    println!(
        "{}",
        serde_json::json!({
            "root_hex": state.root_hex,
            "state": state.state,
            "error": state.error,
            "catalog_version": state.catalog_version,
            "expires_at_ms": expires,
        })
    );
    Ok(())
}
