//! Translating HQ's messages into domain types, with field-level errors.

use outpost_proto::hq;

use crate::domain::gtin::Gtin;
use crate::domain::money::{Currency, Money};
use crate::domain::product::{Product, Sku, SoldBy};

/// Turn HQ's product into a validated domain product. The error names the field.
pub fn product(p: hq::Product) -> Result<Product, String> {
    let sku = Sku::parse(&p.sku).map_err(|e| format!("sku: {e}"))?;
    let barcodes = p
        .barcodes
        .iter()
        .enumerate()
        .map(|(i, b)| Gtin::parse(b).map_err(|e| format!("barcodes[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let currency = Currency::parse(&p.currency).map_err(|e| format!("currency: {e}"))?;
    let sold_by = match hq::SoldBy::try_from(p.sold_by) {
        Ok(hq::SoldBy::Unspecified | hq::SoldBy::Each) => SoldBy::Each,
        Ok(hq::SoldBy::Weight) => SoldBy::Weight,
        Err(_) => return Err(format!("sold_by: unknown value {}", p.sold_by)),
    };
    let product = Product {
        sku,
        barcodes,
        name: p.name,
        description: p.description,
        category: p.category,
        price: Money(p.price_minor),
        currency,
        tax_class: p.tax_class,
        sold_by,
        active: p.active,
        age_restricted: p.age_restricted,
    };
    product
        .validate()
        .map_err(|e| format!("{}: {e}", e.field()))?;
    Ok(product)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> hq::Product {
        hq::Product {
            sku: "SKU-1".into(),
            barcodes: vec!["4006381333931".into()],
            name: "Pen".into(),
            description: String::new(),
            category: "office".into(),
            price_minor: 129,
            currency: "EUR".into(),
            tax_class: "standard".into(),
            sold_by: hq::SoldBy::Each as i32,
            active: true,
            age_restricted: false,
        }
    }

    #[test]
    fn a_good_product_converts() {
        let p = product(good()).unwrap();
        assert_eq!(p.price, Money(129));
        assert_eq!(p.barcodes.len(), 1);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Break = fn(&mut hq::Product);
        let cases: Vec<(Break, &str)> = vec![
            (|p| p.sku = String::new(), "sku"),
            (|p| p.barcodes = vec!["4006381333932".into()], "barcodes[0]"),
            (|p| p.currency = "EURO".into(), "currency"),
            (|p| p.sold_by = 9, "sold_by"),
            (|p| p.name = " ".into(), "name"),
            (|p| p.price_minor = -1, "price"),
        ];
        for (break_it, field) in cases {
            let mut p = good();
            break_it(&mut p);
            let err = product(p).unwrap_err();
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }
}
