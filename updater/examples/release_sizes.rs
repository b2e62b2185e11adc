//! What a release costs on the wire: publishes NEW as release 1.0.1 with a delta from
//! OLD (as 1.0.0), as HQ's release tool does, and prints the sizes of the full archive,
//! the delta, and the two mesh artifacts a store can be sent (`bundle::Part`).
//!
//! ```sh
//! cargo run --release -p outpost-updater --example release_sizes -- OLD NEW [ZSTD_LEVEL]
//! ```

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use outpost_updater::bundle::{self, Part};
use outpost_updater::publish::{Release, publish};
use outpost_updater::semver::Version;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(old), Some(new)) = (args.first(), args.get(1)) else {
        return Err("usage: release_sizes OLD NEW [ZSTD_LEVEL]".into());
    };
    let level: i32 = args.get(2).map_or(Ok(19), |l| l.parse())?;
    let old_bin = std::fs::read(old)?;
    let new_bin = std::fs::read(new)?;
    let mut old_stamped = old_bin.clone();
    outpost_updater::stamp::write(&mut old_stamped, &Version::new(1, 0, 0))?;
    let out: PathBuf = std::env::temp_dir().join(format!("release-sizes-{}", std::process::id()));
    let key = SigningKey::from_bytes(&[1; 32]);
    let started = std::time::Instant::now();
    let (m, _) = publish(
        Release {
            version: Version::new(1, 0, 1),
            target: outpost_updater::target().into(),
            binary: new_bin.clone(),
            delta_from: vec![(Version::new(1, 0, 0), &old_stamped)],
            min_from: None,
            schema: None,
            published: outpost_updater::unix_now(),
            lifetime_secs: 3600,
            delta_level: level,
        },
        &[&key],
        &out,
    )?;
    let publish_ms = started.elapsed().as_millis();
    let mut full = Vec::new();
    bundle::pack(&out, &Part::Full, &mut full)?;
    let mut delta = Vec::new();
    bundle::pack(&out, &Part::DeltaFrom(Version::new(1, 0, 0)), &mut delta)?;
    let _ = std::fs::remove_dir_all(&out);
    println!(
        "{{\"old_binary\":{},\"new_binary\":{},\"full_archive\":{},\"delta\":{},\"mesh_full\":{},\"mesh_delta\":{},\"delta_share_of_full\":{:.4},\"zstd_level\":{level},\"publish_ms\":{publish_ms}}}",
        old_bin.len(),
        new_bin.len(),
        m.artifact.size,
        m.deltas[0].patch.size,
        full.len(),
        delta.len(),
        delta.len() as f64 / full.len() as f64,
    );
    Ok(())
}
