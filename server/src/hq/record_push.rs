//! The pushes of what HQ owns besides catalog, promotions and stock: tax rates, the
//! store profile, the planogram and the device set.
//!
//! Each push is checked whole first (any bad entry: `INVALID_ARGUMENT` naming it, or
//! `RESOURCE_EXHAUSTED` for one over its size limit), then written as one versioned,
//! durable writer job that refuses a version not newer than the live one
//! (`FAILED_PRECONDITION`), and only then applied to what is served. On any error
//! nothing changes.

use outpost_proto::hq;
use tonic::Status;

use crate::domain::exposure::ExposureCaps;
use crate::domain::planogram::{self, PlanogramError, RawLocation};
use crate::domain::pricing::TaxConfig;
use crate::domain::store_profile::StoreProfile;
use crate::domain::tax::{TaxTableError, parse_tax_table};
use crate::domain::vending::slot::{self, RawSlot};
use crate::hq::records::{self as settings, DeviceSet, PutError};
use crate::sales::Sales;
use crate::store::Store;

use super::store_status as storage;

fn put_error(e: PutError) -> Status {
    match e {
        PutError::Stale(s) => Status::failed_precondition(s.to_string()),
        PutError::Store(e) => storage(e),
    }
}

/// Held from a tax or profile push's write to its apply, so two pushes racing each
/// other cannot leave the older one live after the newer one is stored. A tokio
/// mutex: it is held across the writer job's await.
pub type ApplyLock = tokio::sync::Mutex<()>;

/// `PushTaxRates`: the whole tax table, and optionally the inclusive/exclusive mode.
pub async fn tax_rates(
    sales: &Sales,
    apply: &ApplyLock,
    push: hq::TaxRatesPush,
) -> Result<hq::PushReply, Status> {
    let include = match hq::TaxMode::try_from(push.mode) {
        Ok(hq::TaxMode::Unspecified) => sales.config().tax.prices_include_tax,
        Ok(hq::TaxMode::Inclusive) => true,
        Ok(hq::TaxMode::Exclusive) => false,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "mode: unknown value {}",
                push.mode
            )));
        }
    };
    let entries: Vec<(String, i64)> = push
        .rates
        .into_iter()
        .map(|r| (r.tax_class, i64::from(r.rate_bp)))
        .collect();
    let tax = parse_tax_table(&entries, include).map_err(|e| match e {
        TaxTableError::TooMany { .. } => Status::resource_exhausted(e.to_string()),
        e => Status::invalid_argument(format!("{}: {e}", e.field())),
    })?;
    let _applying = apply.lock().await;
    settings::put(
        sales.store(),
        settings::TAX,
        "tax rates",
        push.version,
        tax.clone(),
    )
    .await
    .map_err(put_error)?;
    log_classes(&tax);
    sales.set_tax(tax);
    Ok(hq::PushReply {
        version: push.version,
    })
}

fn log_classes(tax: &TaxConfig) {
    tracing::info!(
        classes = tax.rates_bp.len(),
        prices_include_tax = tax.prices_include_tax,
        "Applied a tax table from HQ"
    );
}

/// `PushStoreConfig`: the store name, receipt header and offline exposure caps.
pub async fn store_config(
    sales: &Sales,
    apply: &ApplyLock,
    push: hq::StoreConfigPush,
) -> Result<hq::PushReply, Status> {
    let mut profile = StoreProfile::parse(push.store_name, push.receipt_header)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    profile.offline_caps = push
        .offline_exposure
        .map(|c| ExposureCaps::parse(c.store, c.per_card))
        .transpose()
        .map_err(|e| Status::invalid_argument(format!("offline_exposure.{e}")))?;
    let _applying = apply.lock().await;
    settings::put(
        sales.store(),
        settings::PROFILE,
        "store config",
        push.version,
        profile.clone(),
    )
    .await
    .map_err(put_error)?;
    tracing::info!(version = push.version, name = %profile.name, "Applied a store profile from HQ");
    sales.set_profile(&profile);
    Ok(hq::PushReply {
        version: push.version,
    })
}

/// `PushPlanogram`: every shelf location of the store, and a vending site's slots.
pub async fn planogram(store: &Store, push: hq::PlanogramPush) -> Result<hq::PushReply, Status> {
    let slots = if push.slots.is_empty() {
        None
    } else {
        let raw = push
            .slots
            .into_iter()
            .map(|s| RawSlot {
                slot: s.slot,
                sku: s.sku,
                price: s.price,
                capacity: s.capacity,
                par: s.par,
                chilled: s.chilled,
            })
            .collect();
        Some(
            slot::parse_slots(raw)
                .map_err(|e| Status::invalid_argument(format!("{}: {e}", e.field)))?,
        )
    };
    let n_slots = slots.as_ref().map_or(0, Vec::len);
    let raw = push
        .locations
        .into_iter()
        .map(|l| RawLocation {
            sku: l.sku,
            aisle: l.aisle,
            bay: l.bay,
            shelf: l.shelf,
            position: l.position,
            facings: l.facings,
            capacity: l.capacity,
        })
        .collect();
    let locations = tokio::task::spawn_blocking(move || planogram::parse_planogram(raw))
        .await
        .map_err(|e| Status::internal(format!("planogram check failed: {e}")))?
        .map_err(|e| match e {
            PlanogramError::TooMany { .. } => Status::resource_exhausted(e.to_string()),
            e => Status::invalid_argument(format!("{}: {e}", e.field())),
        })?;
    let n = locations.len();
    settings::replace_planogram(store, push.version, locations, slots)
        .await
        .map_err(put_error)?;
    tracing::info!(
        version = push.version,
        locations = n,
        slots = n_slots,
        "Applied a planogram from HQ"
    );
    Ok(hq::PushReply {
        version: push.version,
    })
}

/// `PushDeviceConfig`: the `[[devices]]` set, checked like the config file's and
/// stored; the device registry opens it at the unit's next start.
pub async fn device_config(
    store: &Store,
    legacy_terminal: &str,
    push: hq::DeviceConfigPush,
) -> Result<hq::PushReply, Status> {
    if push.devices_toml.len() > settings::MAX_DEVICES_TOML {
        return Err(Status::resource_exhausted(format!(
            "devices_toml of {} bytes is over the limit of {}",
            push.devices_toml.len(),
            settings::MAX_DEVICES_TOML
        )));
    }
    let devices = settings::parse_device_set(&push.devices_toml, legacy_terminal)
        .map_err(Status::invalid_argument)?;
    settings::put(
        store,
        settings::DEVICES,
        "device config",
        push.version,
        DeviceSet {
            toml: push.devices_toml,
        },
    )
    .await
    .map_err(put_error)?;
    tracing::info!(
        version = push.version,
        devices = devices.len(),
        "Stored a device set from HQ; it applies at the next start"
    );
    Ok(hq::PushReply {
        version: push.version,
    })
}
