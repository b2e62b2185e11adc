//! Products and imports shared by the catalog's tests.

use std::sync::Arc;

use super::{ImportMode, ImportSummary};
use crate::domain::product::{Product, parse_product_json};
use crate::store::{Store, from_json};

/// Product `i` in `category`: SKU `S{i:05}`, one GTIN-13, named `{name} {i}`, 1.00 EUR.
pub(super) fn product(i: usize, category: &str, name: &str) -> Product {
    let gtin = format!("29{i:010}");
    let check = crate::domain::gtin::check_digit(&gtin).unwrap();
    let json = format!(
        r#"{{"sku":"S{i:05}","barcodes":["{gtin}{check}"],"name":"{name} {i}","category":"{category}","price":100,"currency":"EUR","tax_class":"standard"}}"#
    );
    parse_product_json(json.as_bytes()).unwrap()
}

/// Import `products` in `mode` as version `v`; every product must be accepted.
pub(super) fn import(
    store: &Arc<Store>,
    mode: ImportMode,
    products: impl Iterator<Item = Product>,
) -> ImportSummary {
    let mut imp = store.begin_catalog_import(mode).unwrap();
    for (i, p) in products.enumerate() {
        imp.add(&p, i as u64 + 1).unwrap().unwrap();
    }
    imp.finish("v").unwrap()
}

/// The SKUs of a page of product JSON.
pub(super) fn skus(page: &[Vec<u8>]) -> Vec<String> {
    page.iter()
        .map(|j| {
            from_json::<Product>(j, "p")
                .unwrap()
                .sku
                .as_str()
                .to_owned()
        })
        .collect()
}
