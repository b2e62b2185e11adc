//! Filling an empty data dir with the demo store.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::domain::demo;
use crate::store::{ImportMode, Store, StoreError, keys};

/// What the demo seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    /// Products.
    pub products: u64,
    /// Promotions.
    pub promotions: usize,
}

/// Seed `n` demo products, their stock and five promotions, if the store has no
/// catalog yet. Returns `None` when the store already had one.
pub async fn seed_demo(store: &Arc<Store>, n: usize) -> Result<Option<Seeded>, StoreError> {
    if store.catalog().generation != 0 {
        return Ok(None);
    }
    const SEED: u64 = 7;
    // Stock and promotions first, the catalog last: the catalog switch is what marks
    // the store as seeded, so a demo killed half-way seeds again from the start.
    // Opening stock is set as plain levels: the movement journal (and HQ's outbox)
    // starts empty, as in a store that just went live.
    let skus: Vec<(String, i64)> = demo::demo_products(n, SEED)
        .enumerate()
        .map(|(i, p)| (p.sku.as_str().to_owned(), demo::demo_stock(i, SEED)))
        .collect();
    for chunk in skus.chunks(2_000) {
        let chunk = chunk.to_vec();
        store
            .write(move |tx| {
                for (sku, stock) in chunk {
                    tx.put(keys::stock(&sku), stock.to_be_bytes().to_vec());
                }
                Ok::<(), StoreError>(())
            })
            .await??;
    }
    let promos = demo::demo_promotions(OffsetDateTime::now_utc());
    let count = promos.len();
    store.replace_promotions(promos)?;
    let mut import = store.begin_catalog_import(ImportMode::Replace)?;
    for (i, p) in demo::demo_products(n, SEED).enumerate() {
        import
            .add(&p, i as u64 + 1)?
            .map_err(|c| StoreError::Corrupt(format!("demo catalog conflict: {c}")))?;
    }
    let summary = import.finish("demo-1")?;
    Ok(Some(Seeded {
        products: summary.imported,
        promotions: count,
    }))
}
