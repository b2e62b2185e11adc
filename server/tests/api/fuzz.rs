//! The server's parsers of outside input under arbitrary bytes, on the stable
//! toolchain: REST bodies (checkout, cart, refund), a catalog line (the JSON-lines
//! import and HQ's snapshots), and HQ's gRPC messages with their conversion into
//! products. Nothing panics; an error names what is wrong; what parses is what the
//! document allows (a body that parses re-serialises and parses to the same request).
//! Bounded by `PROPTEST_CASES` (default 256 per property); failures are kept in
//! `proptest-regressions/`.

use outpost_proto::hq;
use outpost_server::domain::product::parse_product_json;
use outpost_server::http::body::parse;
use outpost_server::sales::checkout::{CartRequest, CheckoutRequest};
use outpost_server::sales::refund::RefundRequest;
use proptest::prelude::*;
use prost::Message as _;

/// A JSON value of bounded depth: the shapes bodies are made of, with the field
/// names a body uses so that the parser gets past its first line.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[ -~]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("MILK")),
        Just(serde_json::Value::from("96385074")),
        Just(serde_json::Value::from("cash")),
        Just(serde_json::Value::from("card")),
    ];
    let keys = prop_oneof![
        Just("lines".to_owned()),
        Just("sku".to_owned()),
        Just("barcode".to_owned()),
        Just("quantity".to_owned()),
        Just("weight_grams".to_owned()),
        Just("payment".to_owned()),
        Just("payments".to_owned()),
        Just("method".to_owned()),
        Just("tendered".to_owned()),
        Just("amount".to_owned()),
        Just("line".to_owned()),
        Just("reason".to_owned()),
        Just("age_verified".to_owned()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Random bytes, and JSON documents, whole or cut short.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (json(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let b = v.to_string().into_bytes();
            // Most whole, some cut.
            let at = cut.index(b.len() * 4 + 1);
            b[..at.min(b.len())].to_vec()
        }),
    ]
}

fn round_trips<T>(b: &[u8]) -> Result<(), TestCaseError>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    match parse::<T>(b) {
        Ok(req) => {
            let again = serde_json::to_vec(&req).unwrap();
            prop_assert_eq!(parse::<T>(&again).unwrap(), req);
        }
        Err(e) => {
            prop_assert!(!e.code.is_empty() && !e.message.is_empty());
            prop_assert_eq!(e.status.as_u16(), 400);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn checkout_bodies(b in body()) {
        round_trips::<CheckoutRequest>(&b)?;
    }

    #[test]
    fn cart_bodies(b in body()) {
        round_trips::<CartRequest>(&b)?;
    }

    #[test]
    fn refund_bodies(b in body()) {
        round_trips::<RefundRequest>(&b)?;
    }

    #[test]
    fn catalog_lines(b in body()) {
        if let Err(e) = parse_product_json(&b) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn hq_messages_and_their_products(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(p) = hq::Product::decode(b.as_slice()) {
            // A product HQ sends is taken only when it is valid as a product.
            if let Ok(product) = outpost_server::hq::convert::product(p) {
                prop_assert!(product.validate().is_ok());
            }
        }
        let _ = hq::CatalogChunk::decode(b.as_slice());
        let _ = hq::PlanogramPush::decode(b.as_slice());
        let _ = hq::PromotionsPush::decode(b.as_slice());
        let _ = hq::TaxRatesPush::decode(b.as_slice());
        let _ = hq::Command::decode(b.as_slice());
        let _ = hq::ArtifactOffer::decode(b.as_slice());
    }
}
