//! The requests of each scenario, prepared once from the sampled products (or, for
//! the login storm, from nothing), and the bodies each checkout or login request is
//! written into.

use anyhow::{Context, Result, bail};
use hyper::Uri;
use rand::Rng;

use crate::cli::Scenario;
use crate::http::{Target, login_uri, percent_encode};
use crate::sample::Product;

/// Products per checkout cart.
pub(crate) const CART_LINES: usize = 3;
/// The fixed tail of every cash checkout body.
const CHECKOUT_TAIL: &str =
    "],\"payment\":{\"method\":\"cash\",\"tendered\":100000000},\"age_verified\":true}";
/// The fixed tail of every card checkout body (the server's payment terminal pays it).
const CARD_CHECKOUT_TAIL: &str = "],\"payment\":{\"method\":\"card\"},\"age_verified\":true}";

/// What each request is made of, prepared once from the sample.
#[derive(Debug)]
pub(crate) enum Work {
    /// GET one of these request targets.
    Get(Vec<Uri>),
    /// POST a checkout of products among these SKUs, each already a JSON string
    /// literal, with this tail (the tender).
    Checkout(Vec<String>, &'static str),
    /// POST a wrong password to this login target, for this account or (`None`) a
    /// fresh unknown username each time.
    Login(Uri, Option<String>),
}

/// The password of every login-storm request: long enough to be checked (10 to 256
/// characters), and wrong.
pub(crate) const WRONG_PASSWORD: &str = "not the password, a guess";

impl Work {
    /// Prepares the requests of `scenario` from the sampled products.
    pub(crate) fn prepare(
        scenario: Scenario,
        products: &[Product],
        target: &Target,
    ) -> Result<Self> {
        match scenario {
            Scenario::Sku => {
                let uris = products
                    .iter()
                    .map(|p| target.uri(&format!("/api/v1/products/{}", percent_encode(&p.sku))))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Work::Get(uris))
            }
            Scenario::Barcode => {
                let uris = products
                    .iter()
                    .flat_map(|p| p.barcodes.iter())
                    .map(|b| target.uri(&format!("/api/v1/products?barcode={}", percent_encode(b))))
                    .collect::<Result<Vec<_>>>()?;
                if uris.is_empty() {
                    bail!(
                        "none of the {} sampled products has a barcode",
                        products.len()
                    );
                }
                Ok(Work::Get(uris))
            }
            Scenario::Checkout | Scenario::CardCheckout => {
                let skus = products
                    .iter()
                    .filter(|p| p.active && p.sold_by.as_deref() == Some("each"))
                    .map(|p| serde_json::to_string(&p.sku))
                    .collect::<Result<Vec<_>, _>>()
                    .context("encoding a SKU as JSON")?;
                if skus.is_empty() {
                    bail!(
                        "none of the {} sampled products is active and sold by the piece (sold_by \"each\")",
                        products.len()
                    );
                }
                let tail = if scenario == Scenario::CardCheckout {
                    CARD_CHECKOUT_TAIL
                } else {
                    CHECKOUT_TAIL
                };
                Ok(Work::Checkout(skus, tail))
            }
            Scenario::LoginStorm => bail!("the login storm is not made of products: Work::login"),
            Scenario::Shopper => bail!("the shopper scenario has its own driver (shopper.rs)"),
        }
    }

    /// The login storm's requests: wrong passwords for `user` or unknown usernames.
    pub(crate) fn login(target: &Target, user: Option<String>) -> Result<Self> {
        Ok(Work::Login(login_uri(target)?, user))
    }

    /// How many distinct request targets or products there are.
    pub(crate) fn len(&self) -> usize {
        match self {
            Work::Get(uris) => uris.len(),
            Work::Checkout(skus, _) => skus.len(),
            Work::Login(..) => 1,
        }
    }
}

/// Picks `min(out.len(), n)` distinct indexes below `n` into `out`; returns how many.
pub(crate) fn pick_distinct(rng: &mut impl Rng, n: usize, out: &mut [usize]) -> usize {
    let k = n.min(out.len());
    for i in 0..k {
        loop {
            let candidate = rng.random_range(0..n);
            if !out[..i].contains(&candidate) {
                out[i] = candidate;
                break;
            }
        }
    }
    k
}

/// Writes a checkout body for `(JSON-quoted SKU, quantity 1..=9)` lines and the tender
/// `tail` into `buf`.
pub(crate) fn write_checkout_body<'a>(
    buf: &mut String,
    lines: impl IntoIterator<Item = (&'a str, u8)>,
    tail: &str,
) {
    buf.clear();
    buf.push_str("{\"lines\":[");
    for (i, (sku, quantity)) in lines.into_iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str("{\"sku\":");
        buf.push_str(sku);
        buf.push_str(",\"quantity\":");
        buf.push(char::from(b'0' + quantity.clamp(1, 9)));
        buf.push('}');
    }
    buf.push_str(tail);
}

/// Writes a login body for `username` with [`WRONG_PASSWORD`] into `buf`.
pub(crate) fn write_login_body(buf: &mut String, username: &str) -> Result<()> {
    buf.clear();
    buf.push_str(
        &serde_json::to_string(&serde_json::json!({
            "username": username,
            "password": WRONG_PASSWORD,
        }))
        .context("encoding a login body")?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hyper::header::HeaderValue;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn checkout_body_is_valid_json() -> Result<()> {
        let skus = [
            serde_json::to_string("SKU-1")?,
            serde_json::to_string("SKU-\"2\"")?,
        ];
        let mut buf = String::new();
        write_checkout_body(
            &mut buf,
            [(skus[0].as_str(), 1), (skus[1].as_str(), 3)],
            CHECKOUT_TAIL,
        );
        let v: serde_json::Value = serde_json::from_str(&buf)?;
        assert_eq!(v["lines"][1]["sku"], "SKU-\"2\"");
        assert_eq!(v["lines"][1]["quantity"], 3);
        assert_eq!(v["payment"]["tendered"], 100_000_000);
        assert_eq!(v["age_verified"], true);
        write_checkout_body(&mut buf, [(skus[0].as_str(), 2)], CARD_CHECKOUT_TAIL);
        let v: serde_json::Value = serde_json::from_str(&buf)?;
        assert_eq!(v["payment"], serde_json::json!({"method": "card"}));
        assert_eq!(v["lines"][0]["quantity"], 2);
        Ok(())
    }

    #[test]
    fn picks_distinct_indexes() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut out = [0usize; 3];
        for _ in 0..1000 {
            assert_eq!(pick_distinct(&mut rng, 5, &mut out), 3);
            assert!(out[0] != out[1] && out[1] != out[2] && out[0] != out[2]);
            assert!(out.iter().all(|&i| i < 5));
        }
        assert_eq!(pick_distinct(&mut rng, 2, &mut out), 2);
        assert_ne!(out[0], out[1]);
    }

    #[test]
    fn prepares_work_from_products() -> Result<()> {
        let products: Vec<Product> = serde_json::from_str(
            r#"[{"sku":"A","barcodes":["111"],"sold_by":"each","active":true,"price":1},
                {"sku":"B","barcodes":[],"sold_by":"weight","active":true},
                {"sku":"C","barcodes":["222","333"],"sold_by":"each","active":false}]"#,
        )?;
        let target = Target {
            url: "http://x".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            host: HeaderValue::from_static("x"),
            base: String::new(),
        };
        assert_eq!(Work::prepare(Scenario::Sku, &products, &target)?.len(), 3);
        assert_eq!(
            Work::prepare(Scenario::Barcode, &products, &target)?.len(),
            3
        );
        match Work::prepare(Scenario::Checkout, &products, &target)? {
            Work::Checkout(skus, tail) => {
                assert_eq!(skus, vec!["\"A\"".to_owned()]);
                assert_eq!(tail, CHECKOUT_TAIL);
            }
            _ => bail!("checkout prepared something else"),
        }
        match Work::prepare(Scenario::CardCheckout, &products, &target)? {
            Work::Checkout(_, tail) => assert_eq!(tail, CARD_CHECKOUT_TAIL),
            _ => bail!("card checkout prepared something else"),
        }
        assert!(Work::prepare(Scenario::Checkout, &products[1..2], &target).is_err());
        assert!(Work::prepare(Scenario::Barcode, &products[1..2], &target).is_err());
        match Work::login(&target, None)? {
            Work::Login(uri, None) => assert_eq!(uri.path(), "/api/v1/auth/login"),
            _ => bail!("login prepared something else"),
        }
        Ok(())
    }

    #[test]
    fn login_body_is_valid_json() -> Result<()> {
        let mut buf = String::from("left over");
        write_login_body(&mut buf, "storm-\"1\"")?;
        let v: serde_json::Value = serde_json::from_str(&buf)?;
        assert_eq!(v["username"], "storm-\"1\"");
        assert_eq!(v["password"], WRONG_PASSWORD);
        Ok(())
    }
}
