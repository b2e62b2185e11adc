//! What HQ pushes besides the catalog, promotions and stock: the tax table, the store
//! profile (name, receipt header), the planogram and the device set.
//!
//! Each is one versioned record in the journal, written through the store's single
//! writer ([`Store::write`]), so the version check and the new value are one atomic,
//! fsync'd job: two pushes racing each other are ordered by the writer, an older
//! version is refused inside the same job that would have written it, and a crash
//! leaves the old record or the new one. Nothing here opens a sled tree.
//!
//! | key | value |
//! |---|---|
//! | `h/tax` | [`Versioned`] [`TaxConfig`] |
//! | `h/store` | [`Versioned`] [`StoreProfile`] |
//! | `h/devices` | [`Versioned`] [`DeviceSet`] |
//! | `h/planogram` | [`Versioned`] [`PlanogramHead`] |
//! | `g/` SKU, 0, aisle, 0, bay, shelf, position (u32 BE) | [`ShelfLocation`] |
//!
//! The live values (tax table, store name) are loaded at start over the config
//! file's, and swapped into the selling service when a push is applied.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::planogram::ShelfLocation;
use crate::domain::pricing::TaxConfig;
use crate::domain::store_profile::StoreProfile;
use crate::domain::vending::SlotConfig;
use crate::store::{Store, StoreError, Tx, from_json, to_json};

/// The tax table HQ pushed.
pub const TAX: &[u8] = b"h/tax";
/// The store profile HQ pushed.
pub const PROFILE: &[u8] = b"h/store";
/// The device set HQ pushed.
pub const DEVICES: &[u8] = b"h/devices";
/// The planogram's version and size.
pub const PLANOGRAM: &[u8] = b"h/planogram";
/// Shelf locations, by SKU.
pub const LOCATION: &[u8] = b"g/";

/// A pushed value with the version HQ gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// HQ's version; only grows.
    pub version: u64,
    /// When this store applied it.
    #[serde(with = "time::serde::rfc3339")]
    pub applied_at: OffsetDateTime,
    /// The value.
    pub value: T,
}

/// The device set as HQ sent it: the `[[devices]]` TOML, parsed again at each start
/// with the same rules as the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSet {
    /// The TOML text.
    pub toml: String,
}

/// What the planogram record says about the locations stored under `g/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanogramHead {
    /// Locations stored.
    pub locations: u64,
}

/// A push whose version is not newer than what the store holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} version {pushed} is not newer than the live version {live}")]
pub struct Stale {
    /// What was pushed.
    pub what: &'static str,
    /// The version pushed.
    pub pushed: u64,
    /// The version held.
    pub live: u64,
}

/// Why a versioned write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// Out of order: nothing changed.
    #[error(transparent)]
    Stale(#[from] Stale),
    /// Storage failed: nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A record, if HQ ever pushed it.
pub fn get<T: DeserializeOwned>(
    store: &Store,
    key: &[u8],
) -> Result<Option<Versioned<T>>, StoreError> {
    store
        .journal_get(key)?
        .map(|v| from_json(&v, "HQ setting"))
        .transpose()
}

/// The version of a record (0: never pushed), without decoding its value.
pub fn version(store: &Store, key: &[u8]) -> Result<u64, StoreError> {
    #[derive(Deserialize)]
    struct Head {
        version: u64,
    }
    Ok(match store.journal_get(key)? {
        Some(v) => from_json::<Head>(&v, "HQ setting")?.version,
        None => 0,
    })
}

fn check_newer(tx: &Tx<'_>, key: &[u8], what: &'static str, pushed: u64) -> Result<(), PutError> {
    #[derive(Deserialize)]
    struct Head {
        version: u64,
    }
    if let Some(v) = tx.get(key)? {
        let live = from_json::<Head>(&v, "HQ setting")?.version;
        if pushed <= live {
            return Err(Stale { what, pushed, live }.into());
        }
    }
    Ok(())
}

/// Store `value` as version `version` of `key`, durably, if it is newer than what is
/// held. The check and the write are one writer job.
pub async fn put<T: Serialize + Send + 'static>(
    store: &Store,
    key: &'static [u8],
    what: &'static str,
    version: u64,
    value: T,
) -> Result<(), PutError> {
    store
        .write(move |tx| {
            check_newer(tx, key, what, version)?;
            let rec = Versioned {
                version,
                applied_at: OffsetDateTime::now_utc(),
                value,
            };
            tx.put(key.to_vec(), to_json(&rec));
            Ok::<(), PutError>(())
        })
        .await?
}

fn location_key(l: &ShelfLocation) -> Vec<u8> {
    let mut k = location_prefix(l.sku.as_str());
    k.extend_from_slice(l.aisle.as_bytes());
    k.push(0);
    k.extend_from_slice(&l.bay.to_be_bytes());
    k.extend_from_slice(&l.shelf.to_be_bytes());
    k.extend_from_slice(&l.position.to_be_bytes());
    k
}

fn location_prefix(sku: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(LOCATION.len() + sku.len() + 1);
    k.extend_from_slice(LOCATION);
    k.extend_from_slice(sku.as_bytes());
    k.push(0);
    k
}

/// Replace the whole planogram with `locations` as version `version`, in one atomic,
/// durable job (readers see the old planogram or the new one).
pub async fn replace_planogram(
    store: &Store,
    version: u64,
    locations: Vec<ShelfLocation>,
    slots: Option<Vec<SlotConfig>>,
) -> Result<(), PutError> {
    store
        .write(move |tx| {
            check_newer(tx, PLANOGRAM, "planogram", version)?;
            if let Some(slots) = slots {
                crate::vending::slots::replace_all(tx, version, slots)?;
            }
            for (k, _) in tx.scan_prefix(LOCATION)? {
                tx.remove(k);
            }
            let n = locations.len() as u64;
            for l in &locations {
                tx.put(location_key(l), to_json(l));
            }
            let rec = Versioned {
                version,
                applied_at: OffsetDateTime::now_utc(),
                value: PlanogramHead { locations: n },
            };
            tx.put(PLANOGRAM.to_vec(), to_json(&rec));
            Ok::<(), PutError>(())
        })
        .await?
}

/// The shelf locations of `sku`.
pub fn locations_of(store: &Store, sku: &str) -> Result<Vec<ShelfLocation>, StoreError> {
    let prefix = location_prefix(sku);
    store
        .journal_scan_from(&prefix, &prefix)
        .map(|kv| kv.and_then(|(_, v)| from_json(&v, "shelf location")))
        .collect()
}

/// Up to `limit` locations in SKU order, starting after the SKU `after` (all of its
/// locations are skipped), with the SKU to continue after when more remain.
pub fn locations_page(
    store: &Store,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<ShelfLocation>, Option<String>), StoreError> {
    let from = match after {
        // One past every key of `after`: its prefix ends in 0, so end in 1 instead.
        Some(sku) => {
            let mut k = location_prefix(sku);
            if let Some(last) = k.last_mut() {
                *last = 1;
            }
            k
        }
        None => LOCATION.to_vec(),
    };
    let mut out: Vec<ShelfLocation> = Vec::new();
    for kv in store.journal_scan_from(LOCATION, &from) {
        let (_, v) = kv?;
        let l: ShelfLocation = from_json(&v, "shelf location")?;
        // Whole SKUs per page, so the cursor (a SKU) never splits one.
        if out.len() >= limit && out.last().is_some_and(|p| p.sku != l.sku) {
            let next = out.last().map(|p| p.sku.as_str().to_owned());
            return Ok((out, next));
        }
        out.push(l);
    }
    Ok((out, None))
}

/// Largest device set text accepted.
pub const MAX_DEVICES_TOML: usize = 64 * 1024;

/// Parse a pushed device set (`[[devices]]` tables and nothing else) and check it with
/// the config file's rules ([`crate::config::devices::DeviceSpec::parse_all`]).
pub fn parse_device_set(
    text: &str,
    legacy_terminal: &str,
) -> Result<Vec<crate::config::DeviceSettings>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        devices: Vec<crate::config::DeviceSettings>,
    }
    let file: File = toml::from_str(text).map_err(|e| format!("devices_toml: {e}"))?;
    crate::config::devices::DeviceSpec::parse_all(&file.devices, legacy_terminal)
        .map_err(|e| format!("devices_toml: setting {}: {}", e.field, e.message))?;
    Ok(file.devices)
}

/// What HQ pushed that the server applies at start, over the config file's values.
#[derive(Debug, Default)]
pub struct AtStart {
    /// The tax table.
    pub tax: Option<Versioned<TaxConfig>>,
    /// The store name and receipt header.
    pub profile: Option<Versioned<StoreProfile>>,
    /// The device set, when it still parses with this build's rules.
    pub devices: Option<(u64, Vec<crate::config::DeviceSettings>)>,
}

impl AtStart {
    /// Read every record. A device set that no longer parses (a driver this build
    /// lacks) is logged and skipped: the config file's devices are used instead.
    pub fn load(store: &Store, legacy_terminal: &str) -> Result<AtStart, StoreError> {
        let devices = match get::<DeviceSet>(store, DEVICES)? {
            None => None,
            Some(rec) => match parse_device_set(&rec.value.toml, legacy_terminal) {
                Ok(d) => Some((rec.version, d)),
                Err(e) => {
                    tracing::error!(version = rec.version, error = %e, "The device set HQ pushed does not parse with this build; using the config file's devices");
                    None
                }
            },
        };
        Ok(AtStart {
            tax: get(store, TAX)?,
            profile: get(store, PROFILE)?,
            devices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::planogram::{RawLocation, parse_planogram};

    fn loc(sku: &str, aisle: &str, position: u32) -> RawLocation {
        RawLocation {
            sku: sku.into(),
            aisle: aisle.into(),
            bay: 1,
            shelf: 2,
            position,
            facings: 1,
            capacity: 0,
        }
    }

    #[tokio::test]
    async fn versions_only_grow_and_a_stale_push_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        assert_eq!(version(&store, TAX).unwrap(), 0);
        let tax = |bp| TaxConfig {
            prices_include_tax: true,
            rates_bp: [("standard".to_owned(), bp)].into(),
        };
        put(&store, TAX, "tax rates", 3, tax(2000)).await.unwrap();
        for v in [0, 2, 3] {
            let e = put(&store, TAX, "tax rates", v, tax(1)).await.unwrap_err();
            assert!(matches!(e, PutError::Stale(Stale { live: 3, .. })), "{e}");
        }
        let rec: Versioned<TaxConfig> = get(&store, TAX).unwrap().unwrap();
        assert_eq!((rec.version, rec.value), (3, tax(2000)));
    }

    #[tokio::test]
    async fn a_planogram_replaces_the_last_one_whole_and_pages_by_sku() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        let first = parse_planogram(vec![loc("A", "X1", 1), loc("B", "X1", 2)]).unwrap();
        replace_planogram(&store, 1, first, None).await.unwrap();
        let second = parse_planogram(vec![
            loc("B", "Y1", 1),
            loc("B", "Y2", 1),
            loc("C", "Y1", 2),
            loc("D", "Y1", 3),
        ])
        .unwrap();
        replace_planogram(&store, 2, second, None).await.unwrap();
        assert!(locations_of(&store, "A").unwrap().is_empty(), "A is gone");
        assert_eq!(locations_of(&store, "B").unwrap().len(), 2);
        let (page, next) = locations_page(&store, None, 1).unwrap();
        assert_eq!(page.len(), 2, "B's two locations stay on one page");
        assert_eq!(next.as_deref(), Some("B"));
        let (page, next) = locations_page(&store, next.as_deref(), 10).unwrap();
        assert_eq!(
            page.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(),
            ["C", "D"]
        );
        assert_eq!(next, None);
        let e = replace_planogram(&store, 2, vec![], None)
            .await
            .unwrap_err();
        assert!(matches!(e, PutError::Stale(_)));
        assert_eq!(locations_of(&store, "C").unwrap().len(), 1);
    }

    #[test]
    fn a_device_set_is_checked_like_the_config_file() {
        let ok = "[[devices]]\nid = \"display-1\"\nkind = \"display\"\ndriver = \"mock\"\n";
        let d = parse_device_set(ok, "none").unwrap();
        assert_eq!(d[0].id, "display-1");
        assert!(parse_device_set("", "none").unwrap().is_empty());
        for bad in [
            "[[devices]]\nid = \"p\"\nkind = \"toaster\"\ndriver = \"mock\"\n",
            "[[devices]]\nid = \"p\"\nkind = \"display\"\ndriver = \"mock\"\n[[devices]]\nid = \"p\"\nkind = \"scanner\"\ndriver = \"mock\"\n",
            "listen = \"0.0.0.0:1\"\n",
            "[[devices]\n",
        ] {
            assert!(parse_device_set(bad, "none").is_err(), "{bad}");
        }
    }
}
