//! Sampling products from the server's catalog: the SKUs and barcodes the load asks for.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::http::{SimpleClient, Target, percent_encode};

/// Page size used while sampling the catalog (the server's maximum).
const PAGE_LIMIT: usize = 200;

/// The fields of a catalog product this tool uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Product {
    /// The product's SKU.
    pub(crate) sku: String,
    /// Its barcodes.
    #[serde(default)]
    pub(crate) barcodes: Vec<String>,
    /// `each` or `weight`.
    #[serde(default)]
    pub(crate) sold_by: Option<String>,
    /// Whether it can be sold.
    #[serde(default = "default_active")]
    pub(crate) active: bool,
    /// Whether the buyer's age must be checked (never on the phone).
    #[serde(default)]
    pub(crate) age_restricted: bool,
}

/// Products without an `active` field are taken as active.
fn default_active() -> bool {
    true
}

/// A page of `GET /api/v1/products`.
#[derive(Debug, Deserialize)]
struct ProductPage {
    /// The products of this page.
    items: Vec<Product>,
    /// Cursor of the next page; `None` at the end.
    next_cursor: Option<String>,
}

/// Fetches up to `sample` products, following `next_cursor`.
pub(crate) async fn fetch_sample(target: &Target, sample: usize) -> Result<Vec<Product>> {
    let mut client = SimpleClient::connect(target).await?;
    let mut products: Vec<Product> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/products?limit={PAGE_LIMIT}");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(&percent_encode(c));
        }
        let (status, body) = client.get(&path).await?;
        if !status.is_success() {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
        }
        let page: ProductPage = serde_json::from_slice(&body)
            .with_context(|| format!("GET {path} did not answer a product page"))?;
        if page.items.is_empty() {
            break;
        }
        products.extend(page.items);
        if products.len() >= sample {
            products.truncate(sample);
            break;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if products.is_empty() {
        bail!(
            "the server at {} has no products (GET /api/v1/products is empty): load a catalog first",
            target.url
        );
    }
    Ok(products)
}
