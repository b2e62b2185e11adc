//! Starts N units on loopback and a local HTTP origin, distributes a random M MiB
//! artifact, and prints `origin_bytes_ratio=R`, `all_units_verified=true|false` and
//! timings.
//!
//! `cargo run --release -p outpost-p2p --example store_swarm -- --units 4 --size-mb 64`
//!
//! `--wan-mbit R` puts the origin behind one shared link of R Mbit/s (the store's WAN);
//! `--baseline` then also has every unit download its own copy from the origin over
//! HTTP at once, as products without a store mesh do, and prints the same figures with
//! a `baseline_` prefix. Every run also prints the chunk verification throughput of one
//! core (`chunk_verify_mb_s_per_core`).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use outpost_p2p::chunks::ChunkList;
use outpost_p2p::roster::{SignedRoster, demo_hq_keypair};
use outpost_p2p::testing::{OriginServer, random_file};
use outpost_p2p::{Multiaddr, P2pConfig, identity_for, start};

#[derive(Parser)]
struct Args {
    /// Units in the store.
    #[arg(long, default_value_t = 4)]
    units: usize,
    /// Artifact size in MiB.
    #[arg(long, default_value_t = 64)]
    size_mb: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// The origin's link, shared by every download from it, in Mbit/s (0: unlimited).
    #[arg(long, default_value_t = 0.0)]
    wan_mbit: f64,
    /// Afterwards, every unit downloads its own copy from the origin over HTTP at once.
    #[arg(long)]
    baseline: bool,
}

/// One unit's download from the origin without the mesh: the whole body over HTTP to
/// its own file, then the BLAKE3 check a unit must do before using it. Returns whether
/// it verified.
async fn plain_download(
    client: reqwest::Client,
    url: String,
    dest: std::path::PathBuf,
    root: outpost_p2p::chunks::Root,
) -> anyhow::Result<bool> {
    use tokio::io::AsyncWriteExt;
    let mut resp = client.get(&url).send().await?.error_for_status()?;
    let mut f = tokio::io::BufWriter::new(tokio::fs::File::create(&dest).await?);
    while let Some(b) = resp.chunk().await? {
        f.write_all(&b).await?;
    }
    f.flush().await?;
    drop(f);
    let got = tokio::task::spawn_blocking(move || {
        ChunkList::compute(std::fs::File::open(&dest)?).map(|l| l.root())
    })
    .await??;
    Ok(got == root)
}

/// MB/s of [`ChunkList::verify`] on one core over every chunk of `file`.
fn verify_throughput(file: &std::path::Path) -> anyhow::Result<f64> {
    use std::io::Read;
    let list = ChunkList::compute(std::fs::File::open(file)?)?;
    let mut f = std::fs::File::open(file)?;
    let mut buf = vec![0u8; outpost_p2p::chunks::CHUNK_SIZE as usize];
    let mut spent = Duration::ZERO;
    for i in 0..list.count() {
        let len = outpost_p2p::chunks::chunk_len(list.size(), i) as usize;
        f.read_exact(&mut buf[..len])?;
        let t = Instant::now();
        list.verify(i, &buf[..len])?;
        spent += t.elapsed();
    }
    Ok(list.size() as f64 / (1024.0 * 1024.0) / spent.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!((1..=64).contains(&args.units), "--units must be 1..=64");
    anyhow::ensure!(args.size_mb >= 1, "--size-mb must be at least 1");
    let tmp = tempfile::tempdir().context("Failed to create a temp dir")?;
    let file = tmp.path().join("artifact.bin");
    random_file(&file, args.size_mb * 1024 * 1024).context("Failed to write the artifact")?;
    anyhow::ensure!(
        args.wan_mbit >= 0.0 && args.wan_mbit.is_finite(),
        "--wan-mbit must be 0 (unlimited) or more"
    );
    let origin = OriginServer::start(&file)
        .await
        .context("Failed to start the origin")?;
    origin.set_link_rate((args.wan_mbit * 1_000_000.0 / 8.0) as u64);
    let offer = origin.offer();
    let signed = outpost_p2p::testing::demo_signed(offer.clone(), "demo-store");

    let dirs: Vec<_> = (0..args.units)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let ids = dirs
        .iter()
        .map(|d| Ok(identity_for(d.path())?.public().to_peer_id()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let roster = SignedRoster::sign(&demo_hq_keypair(), "demo-store", 1, ids.iter().copied());
    let mut units = Vec::new();
    for d in &dirs {
        let key = identity_for(d.path())?;
        let mut c = P2pConfig::loopback(d.path(), key, roster.clone(), demo_hq_keypair().public());
        c.static_peers = units
            .iter()
            .map(|u: &outpost_p2p::Client| {
                format!("{}/p2p/{}", u.listen_addrs()[0], u.peer_id()).parse::<Multiaddr>()
            })
            .collect::<Result<_, _>>()?;
        units.push(start(c).await.context("Failed to start a unit")?);
    }
    // Let the mesh connect before HQ's offer arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    for u in &units {
        u.offer(signed.clone()).await?;
    }
    let mut times = Vec::new();
    let waits = units.iter().map(|u| {
        let u = u.clone();
        async move {
            let r = tokio::time::timeout(
                Duration::from_secs(args.timeout_secs),
                u.wait_complete(offer.root),
            )
            .await;
            (r, t0.elapsed())
        }
    });
    let results = futures::future::join_all(waits).await;
    let mut all_verified = true;
    for (i, (r, t)) in results.into_iter().enumerate() {
        match r {
            Ok(Ok(path)) => {
                let root = ChunkList::compute(std::fs::File::open(&path)?)?.root();
                let ok = root == offer.root;
                all_verified &= ok;
                times.push(t);
                println!("unit={i} complete_ms={} verified={ok}", t.as_millis());
            }
            Ok(Err(e)) => {
                all_verified = false;
                println!("unit={i} failed={e}");
            }
            Err(_) => {
                all_verified = false;
                println!("unit={i} timed_out");
            }
        }
    }
    // Time until the last unit completed (excluding this program's own re-hashing).
    let total = times.iter().max().copied().unwrap_or_else(|| t0.elapsed());
    for (i, u) in units.iter().enumerate() {
        if let Some(s) = u.status(offer.root).await? {
            println!(
                "unit={i} origin_bytes={} peer_bytes={} served_bytes={} rejected_chunks={}",
                s.origin_bytes, s.peer_bytes, s.served_bytes, s.rejected_chunks
            );
        }
    }
    let ratio = origin.bytes_sent() as f64 / offer.size as f64;
    println!("units={} size_mb={}", args.units, args.size_mb);
    println!("time_to_all_complete_ms={}", total.as_millis());
    println!(
        "throughput_mb_s={:.1}",
        (args.size_mb * args.units as u64) as f64 / total.as_secs_f64()
    );
    println!("origin_bytes_ratio={ratio:.4}");
    println!("all_units_verified={all_verified}");
    for u in &units {
        u.shutdown().await?;
    }

    if args.baseline {
        let before = origin.bytes_sent();
        let client = reqwest::Client::new();
        let t0 = Instant::now();
        let downloads = dirs.iter().map(|d| {
            let (client, url) = (client.clone(), offer.url.clone());
            let dest = d.path().join("plain-download.bin");
            async move {
                let r = tokio::time::timeout(
                    Duration::from_secs(args.timeout_secs),
                    plain_download(client, url, dest, offer.root),
                )
                .await;
                (r, t0.elapsed())
            }
        });
        let mut all_verified = true;
        let mut last = Duration::ZERO;
        for (i, (r, t)) in futures::future::join_all(downloads)
            .await
            .into_iter()
            .enumerate()
        {
            match r {
                Ok(Ok(ok)) => {
                    all_verified &= ok;
                    last = last.max(t);
                    println!(
                        "baseline unit={i} complete_ms={} verified={ok}",
                        t.as_millis()
                    );
                }
                Ok(Err(e)) => {
                    all_verified = false;
                    println!("baseline unit={i} failed={e:#}");
                }
                Err(_) => {
                    all_verified = false;
                    println!("baseline unit={i} timed_out");
                }
            }
        }
        let ratio = (origin.bytes_sent() - before) as f64 / offer.size as f64;
        println!("baseline_time_to_all_complete_ms={}", last.as_millis());
        println!("baseline_origin_bytes_ratio={ratio:.4}");
        println!("baseline_all_units_verified={all_verified}");
    }
    let file2 = file.clone();
    let mb_s = tokio::task::spawn_blocking(move || verify_throughput(&file2)).await??;
    println!("chunk_verify_mb_s_per_core={mb_s:.0}");
    Ok(())
}
