//! A catalog snapshot from the mesh, imported as the new catalog.

use std::io::BufReader;
use std::path::PathBuf;

use outpost_p2p::Root;
use outpost_security::stream::{OpeningReader, StreamKey};

use super::{ArtifactStage, Artifacts, BUSY_ATTEMPTS, BUSY_RETRY, live_version, now_ms, unhex};
use crate::import::{ImportError, import_catalog};
use crate::store::{ImportMode, StoreError};

impl Artifacts {
    /// Import the complete artifact at `path` as the new catalog, waiting out (bounded)
    /// another catalog change.
    pub(super) async fn apply_catalog(&self, root: Root, path: PathBuf) -> Result<(), StoreError> {
        for _ in 0..BUSY_ATTEMPTS {
            let Some(mut r) = self.get(&root)? else {
                return Ok(());
            };
            if r.stage == ArtifactStage::Applied {
                return Ok(());
            }
            if let Some(live) = live_version(&self.store)
                && r.catalog_version <= live
            {
                return self
                    .fail(
                        &root,
                        format!(
                            "superseded: the live catalog version {live} is not older than {}",
                            r.catalog_version
                        ),
                    )
                    .await;
            }
            let Some(key) = unhex(&r.content_key) else {
                return self
                    .fail(&root, "the recorded content key is not hex".into())
                    .await;
            };
            if r.stage != ArtifactStage::Applying {
                r.stage = ArtifactStage::Applying;
                self.put(&r).await?;
            }
            let (store, currency, version, file) = (
                self.store.clone(),
                self.currency,
                r.catalog_version.to_string(),
                path.clone(),
            );
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                let key = StreamKey::from_slice(&key).map_err(|e| {
                    ImportError::Read(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                })?;
                let f = std::fs::File::open(&file)?;
                let plain = OpeningReader::new(&key, BufReader::with_capacity(1 << 20, f))?;
                import_catalog(
                    &store,
                    BufReader::with_capacity(1 << 20, plain),
                    &currency,
                    ImportMode::Replace,
                    &version,
                    |_| {},
                )
            })
            .await;
            match result {
                Ok(Ok(summary)) => {
                    r.stage = ArtifactStage::Applied;
                    r.error = None;
                    r.finished_at_ms = Some(now_ms());
                    r.products = Some(summary.imported);
                    self.put(&r).await?;
                    tracing::info!(root = %r.root, version = r.catalog_version, products = summary.imported, apply_ms = started.elapsed().as_millis() as u64, "Applied a catalog artifact from the store mesh");
                    self.release_older(&root).await?;
                    return Ok(());
                }
                Ok(Err(ImportError::Store(StoreError::Busy(_)))) => {
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                // Locked mid-import: nothing of it is live; the caller retries.
                Ok(Err(ImportError::Store(StoreError::DeviceLocked))) => {
                    return Err(StoreError::DeviceLocked);
                }
                Ok(Err(ImportError::Read(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return self
                        .fail(
                            &root,
                            format!("the artifact does not open with the key HQ sent: {e}"),
                        )
                        .await;
                }
                Ok(Err(e)) => return self.fail(&root, format!("import failed: {e}")).await,
                Err(e) => return self.fail(&root, format!("import task failed: {e}")).await,
            }
        }
        self.fail(
            &root,
            "another catalog change kept the catalog busy for 10 minutes".into(),
        )
        .await
    }
}
