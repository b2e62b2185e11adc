//! The vending demo (`outpost demo --vending`): a catalog of snacks and drinks and a
//! machine of 6 trays by 8 columns with every slot set up and filled, snacks in the
//! top three trays (ambient), drinks in the bottom three (chilled).

use std::sync::Arc;

use crate::domain::product::parse_product_json;
use crate::domain::vending::slot::{RawSlot, parse_slot};
use crate::store::{ImportMode, Store, StoreError};

use super::{VendError, slots};

/// Trays of the demo machine (`A` to `F`).
pub const TRAYS: u8 = 6;
/// Columns per tray.
pub const COLUMNS: u8 = 8;
/// Units each slot holds, and is filled with.
pub const CAPACITY: u32 = 10;

/// (SKU, name, price in cents): one per column of trays `A` to `C`.
const SNACKS: [(&str, &str, i64); 8] = [
    ("VEND-CHIPS", "Salted Crisps 40 g", 150),
    ("VEND-CHOCO", "Milk Chocolate Bar 45 g", 130),
    ("VEND-NUTS", "Roasted Peanuts 50 g", 140),
    ("VEND-PRETZEL", "Pretzel Sticks 75 g", 120),
    ("VEND-GUMMY", "Fruit Gummies 100 g", 160),
    ("VEND-COOKIE", "Chocolate Chip Cookies 60 g", 170),
    ("VEND-GRANOLA", "Granola Bar 35 g", 110),
    ("VEND-WAFER", "Hazelnut Wafer 45 g", 100),
];

/// (SKU, name, price in cents): one per column of trays `D` to `F`.
const DRINKS: [(&str, &str, i64); 8] = [
    ("VEND-COLA", "Cola 0.33 L", 180),
    ("VEND-COLA-ZERO", "Cola Zero 0.33 L", 180),
    ("VEND-WATER", "Still Water 0.5 L", 120),
    ("VEND-SPARKLING", "Sparkling Water 0.5 L", 120),
    ("VEND-ORANGE", "Orange Juice 0.33 L", 220),
    ("VEND-ICETEA", "Peach Iced Tea 0.5 L", 200),
    ("VEND-ENERGY", "Energy Drink 0.25 L", 250),
    ("VEND-COFFEE", "Iced Coffee 0.25 L", 240),
];

/// What the vending demo seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeededMachine {
    /// Products in the catalog.
    pub products: usize,
    /// Slots set up and filled.
    pub slots: usize,
}

/// Seed the catalog and the machine's slots, if the store has no catalog yet;
/// `None` when it had one (a demo started again on its data dir).
pub async fn seed(store: &Arc<Store>) -> Result<Option<SeededMachine>, VendError> {
    if store.catalog().generation != 0 {
        return Ok(None);
    }
    let corrupt = |e: String| VendError::Store(StoreError::Corrupt(e));
    let mut import = store.begin_catalog_import(ImportMode::Replace)?;
    let products = SNACKS
        .iter()
        .map(|p| (p, "snacks"))
        .chain(DRINKS.iter().map(|p| (p, "drinks")));
    for (i, ((sku, name, price), category)) in products.enumerate() {
        let json = serde_json::json!({
            "sku": sku, "name": name, "category": category, "price": price,
            "currency": "EUR", "tax_class": "standard",
        });
        let product = parse_product_json(json.to_string().as_bytes())
            .map_err(|e| corrupt(format!("demo product {sku}: {e}")))?;
        import
            .add(&product, i as u64 + 1)?
            .map_err(|c| corrupt(format!("demo catalog conflict: {c}")))?;
    }
    import.finish("vending-demo-1")?;
    let mut n = 0;
    for tray in 0..TRAYS {
        let letter = char::from(b'A' + tray);
        let (list, chilled) = if tray < TRAYS / 2 {
            (&SNACKS, false)
        } else {
            (&DRINKS, true)
        };
        for column in 1..=COLUMNS {
            let (sku, _, price) = list[usize::from(column - 1)];
            let config = parse_slot(
                RawSlot {
                    slot: format!("{letter}{column}"),
                    sku: sku.into(),
                    price,
                    capacity: CAPACITY,
                    par: CAPACITY / 2,
                    chilled,
                },
                "",
            )
            .map_err(|e| corrupt(format!("demo slot {letter}{column}: {}", e.message)))?;
            let id = config.slot;
            slots::put_one(store, config).await?;
            slots::refill(store, id, CAPACITY).await?;
            n += 1;
        }
    }
    Ok(Some(SeededMachine {
        products: SNACKS.len() + DRINKS.len(),
        slots: n,
    }))
}
