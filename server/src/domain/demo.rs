//! A realistic demo store for `outpost demo`: catalogue, stock, promotions and taxes.
//!
//! Everything is a pure function of `(index, seed)`, so a product or its stock can be
//! generated on its own, in any order, and a million products stream without being held
//! in memory. The first ten SKUs are "featured": their category and selling mode do not
//! depend on the seed, which lets [`demo_promotions`] refer to them for any seed.
//!
//! Barcodes use the GS1 prefix `29` (restricted circulation, for in-store use), so demo
//! codes can never collide with a real product's barcode.

use std::collections::BTreeMap;

use rand::{Rng, RngCore};
use time::{Duration, OffsetDateTime};

use super::gtin::Gtin;
use super::money::{Currency, Money};
use super::pricing::TaxConfig;
use super::product::{Product, Sku, SoldBy};
use super::promotion::{Promotion, PromotionKind, Target};

/// A product family with the word lists and price ranges its products are drawn from.
struct Category {
    name: &'static str,
    /// Share of the catalogue, per mille; the table sums to 1000.
    share: u32,
    /// Items taxed at the reduced (food) rate.
    reduced: &'static [&'static str],
    /// Items taxed at the standard rate (drinks, non-food, alcohol, tobacco).
    standard: &'static [&'static str],
    varieties: &'static [&'static str],
    sizes: &'static [&'static str],
    /// Shelf price range per unit in cents; the low end ends in 9 and prices step by 10.
    price: (i64, i64),
    /// Price range per kilogram for the items sold loose, if any.
    per_kg: Option<(i64, i64)>,
    /// Share of the category sold by weight, per mille.
    weighed: u32,
    age_restricted: bool,
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "dairy",
        share: 90,
        reduced: &[
            "Whole Milk",
            "Semi-Skimmed Milk",
            "Greek Yogurt",
            "Butter",
            "Cheddar",
            "Gouda",
            "Cream Cheese",
            "Sour Cream",
            "Kefir",
            "Mozzarella",
            "Quark",
            "Whipping Cream",
        ],
        standard: &[],
        varieties: &[
            "Organic",
            "Alpine",
            "Farmhouse",
            "Light",
            "Classic",
            "Lactose-Free",
        ],
        sizes: &["1 L", "500 ml", "250 g", "200 g", "400 g", "150 g"],
        price: (49, 699),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "bakery",
        share: 60,
        reduced: &[
            "Sourdough Bread",
            "Rye Bread",
            "Baguette",
            "Croissants",
            "Bagels",
            "Pretzel Rolls",
            "Brioche",
            "Toast Bread",
            "Muffins",
            "Cinnamon Rolls",
        ],
        standard: &[],
        varieties: &[
            "Wholegrain",
            "Rustic",
            "Butter",
            "Multigrain",
            "Classic",
            "Seeded",
        ],
        sizes: &["500 g", "750 g", "4 pcs", "6 pcs", "250 g", "1 kg"],
        price: (79, 499),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "produce",
        share: 70,
        reduced: &[
            "Apples",
            "Bananas",
            "Tomatoes",
            "Carrots",
            "Potatoes",
            "Onions",
            "Pears",
            "Grapes",
            "Cucumbers",
            "Bell Peppers",
            "Lemons",
            "Avocados",
        ],
        standard: &[],
        varieties: &["Organic", "Regional", "Vine", "Fresh", "Sweet", "Red"],
        sizes: &["1 kg", "500 g", "2 kg", "6 pcs", "1 pc", "750 g"],
        price: (49, 499),
        per_kg: Some((99, 899)),
        weighed: 375,
        age_restricted: false,
    },
    Category {
        name: "meat",
        share: 50,
        reduced: &[
            "Chicken Breast",
            "Beef Mince",
            "Pork Chops",
            "Lamb Chops",
            "Turkey Slices",
            "Sausages",
            "Bacon",
            "Sirloin Steak",
            "Chicken Thighs",
            "Meatballs",
        ],
        standard: &[],
        varieties: &["Free-Range", "Organic", "Farm", "Premium", "Lean", "Smoked"],
        sizes: &["400 g", "500 g", "250 g", "1 kg", "300 g", "200 g"],
        price: (199, 1999),
        per_kg: Some((699, 3999)),
        weighed: 375,
        age_restricted: false,
    },
    Category {
        name: "deli",
        share: 40,
        reduced: &[
            "Salami",
            "Cooked Ham",
            "Prosciutto",
            "Olives",
            "Hummus",
            "Pasta Salad",
            "Brie",
            "Smoked Salmon",
            "Antipasti",
            "Pâté",
        ],
        standard: &[],
        varieties: &["Italian", "Spanish", "Country", "Herb", "Classic", "Spicy"],
        sizes: &["100 g", "150 g", "200 g", "250 g"],
        price: (149, 999),
        per_kg: Some((999, 4999)),
        weighed: 375,
        age_restricted: false,
    },
    Category {
        name: "beverages",
        share: 100,
        reduced: &[],
        standard: &[
            "Orange Juice",
            "Apple Juice",
            "Sparkling Water",
            "Still Water",
            "Cola",
            "Lemonade",
            "Iced Tea",
            "Ginger Ale",
            "Tonic Water",
            "Energy Drink",
        ],
        varieties: &["Classic", "Zero", "Organic", "Light", "Natural", "Premium"],
        sizes: &["1 L", "1.5 L", "0.5 L", "0.33 L", "6 x 1.5 L", "750 ml"],
        price: (49, 599),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "beer_wine",
        share: 60,
        reduced: &[],
        standard: &[
            "Pilsner",
            "Lager",
            "Wheat Beer",
            "IPA",
            "Stout",
            "Red Wine",
            "White Wine",
            "Rosé",
            "Prosecco",
            "Riesling",
        ],
        varieties: &["Reserve", "Classic", "Dry", "Craft", "Estate", "Special"],
        sizes: &["0.5 L", "0.33 L", "6 x 0.33 L", "0.75 L", "1 L"],
        price: (79, 1999),
        per_kg: None,
        weighed: 0,
        age_restricted: true,
    },
    Category {
        name: "snacks",
        share: 70,
        reduced: &[
            "Potato Chips",
            "Tortilla Chips",
            "Pretzels",
            "Salted Peanuts",
            "Popcorn",
            "Crackers",
            "Trail Mix",
            "Rice Cakes",
        ],
        standard: &[],
        varieties: &[
            "Sea Salt",
            "Paprika",
            "Sour Cream",
            "Original",
            "BBQ",
            "Cheese",
        ],
        sizes: &["150 g", "175 g", "200 g", "100 g", "300 g"],
        price: (89, 399),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "frozen",
        share: 70,
        reduced: &[
            "Pizza Margherita",
            "Fish Fingers",
            "Vanilla Ice Cream",
            "Garden Peas",
            "French Fries",
            "Leaf Spinach",
            "Mixed Berries",
            "Lasagne",
        ],
        standard: &[],
        varieties: &[
            "Stone-Baked",
            "Family",
            "Classic",
            "Deluxe",
            "Garden",
            "Crispy",
        ],
        sizes: &["400 g", "750 g", "1 kg", "500 ml", "2.5 kg", "350 g"],
        price: (129, 799),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "household",
        share: 80,
        reduced: &[],
        standard: &[
            "Dish Soap",
            "Laundry Detergent",
            "Paper Towels",
            "Toilet Paper",
            "Trash Bags",
            "All-Purpose Cleaner",
            "Sponges",
            "Aluminium Foil",
        ],
        varieties: &["Lemon", "Sensitive", "Eco", "Ultra", "Fresh", "Classic"],
        sizes: &["500 ml", "1 L", "4 rolls", "8 rolls", "20 pcs", "1.5 L"],
        price: (99, 1499),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "personal_care",
        share: 80,
        reduced: &[],
        standard: &[
            "Shampoo",
            "Toothpaste",
            "Shower Gel",
            "Deodorant",
            "Hand Soap",
            "Body Lotion",
            "Razor Blades",
            "Cotton Pads",
        ],
        varieties: &[
            "Sensitive",
            "Fresh",
            "Herbal",
            "Men",
            "Classic",
            "Aloe Vera",
        ],
        sizes: &["250 ml", "75 ml", "300 ml", "150 ml", "4 pcs", "100 pcs"],
        price: (99, 1299),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "pantry",
        share: 120,
        reduced: &[
            "Spaghetti",
            "Basmati Rice",
            "Olive Oil",
            "Chopped Tomatoes",
            "Wheat Flour",
            "Cane Sugar",
            "Red Lentils",
            "Peanut Butter",
            "Honey",
            "Oat Flakes",
            "Ground Coffee",
            "Black Tea",
        ],
        standard: &[],
        varieties: &[
            "Organic",
            "Italian",
            "Classic",
            "Wholegrain",
            "Fine",
            "Premium",
        ],
        sizes: &["500 g", "1 kg", "400 g", "750 ml", "250 g", "20 bags"],
        price: (59, 899),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "confectionery",
        share: 60,
        reduced: &[
            "Milk Chocolate",
            "Dark Chocolate",
            "Gummy Bears",
            "Butter Cookies",
            "Wafers",
            "Pralines",
            "Licorice",
            "Marzipan",
        ],
        standard: &[],
        varieties: &[
            "Hazelnut", "Classic", "Sea Salt", "Fruity", "Almond", "Double",
        ],
        sizes: &["100 g", "200 g", "300 g", "125 g", "250 g"],
        price: (49, 599),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
    Category {
        name: "tobacco",
        share: 20,
        reduced: &[],
        standard: &[
            "Cigarettes",
            "Rolling Tobacco",
            "Cigarillos",
            "Cigars",
            "Rolling Papers",
        ],
        varieties: &["Red", "Blue", "Gold", "Silver", "Original", "Menthol"],
        sizes: &["20 pcs", "30 g", "10 pcs", "5 pcs", "50 g"],
        price: (299, 1499),
        per_kg: None,
        weighed: 0,
        age_restricted: true,
    },
    Category {
        name: "baby",
        share: 30,
        reduced: &[
            "Infant Formula",
            "Baby Food Jar",
            "Baby Cereal",
            "Teething Biscuits",
        ],
        standard: &["Diapers", "Baby Wipes", "Baby Shampoo", "Baby Lotion"],
        varieties: &[
            "Sensitive",
            "Organic",
            "Newborn",
            "Junior",
            "Classic",
            "Gentle",
        ],
        sizes: &["Size 3", "Size 4", "64 pcs", "190 g", "800 g", "250 ml"],
        price: (99, 1999),
        per_kg: None,
        weighed: 0,
        age_restricted: false,
    },
];

const BRANDS: &[&str] = &[
    "Alpenhof",
    "Nordkap",
    "Sonnenfeld",
    "Bergquell",
    "Gutshof",
    "Valdora",
    "Kornblume",
    "Meridian",
    "Lindenau",
    "Rosenthal",
    "Seebach",
    "Brightfield",
    "Oakmere",
    "Casa Verde",
    "Fjordlund",
    "Hollerbusch",
    "Sunvale",
    "Weidenhof",
    "Goldacker",
    "Marisol",
    "Eichwald",
    "Greenhaven",
    "Tannberg",
    "Bellavista",
];

/// Category and price range of the featured SKUs (SKU-000001..SKU-000010), which the
/// demo promotions target; always sold by the unit so pooled promotions apply.
const FEATURED: &[(&str, (i64, i64))] = &[
    ("dairy", (99, 399)),
    ("dairy", (99, 399)),
    ("dairy", (99, 399)),
    ("bakery", (149, 399)),
    ("bakery", (149, 399)),
    ("snacks", (99, 299)),
    ("snacks", (99, 299)),
    ("snacks", (99, 299)),
    ("beverages", (99, 149)),
    ("beverages", (99, 149)),
];

/// Random streams, so layout, details and stock of one product are independent.
const STREAM_LAYOUT: u64 = 1;
const STREAM_DETAILS: u64 = 2;
const STREAM_STOCK: u64 = 3;

/// SplitMix64's finalizer: a cheap, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 keyed by `(seed, index, stream)`. Ours rather than one of `rand`'s
/// generators because those do not promise the same output across releases, and the
/// demo catalogue should stay the same for a given seed.
struct DemoRng(u64);

impl DemoRng {
    fn new(seed: u64, index: usize, stream: u64) -> DemoRng {
        let key = mix(seed.wrapping_add(stream.wrapping_mul(GOLDEN_GAMMA)));
        DemoRng(mix(key ^ (index as u64).wrapping_mul(GOLDEN_GAMMA)))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.random_range(0..items.len())]
    }

    /// A price in `lo..=hi` on the 10-cent grid starting at `lo` (so `x.x9` prices).
    fn price(&mut self, (lo, hi): (i64, i64)) -> Money {
        Money(lo + 10 * self.random_range(0..=(hi - lo) / 10))
    }
}

impl RngCore for DemoRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix(self.0)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn category_named(name: &str) -> &'static Category {
    CATEGORIES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or(&CATEGORIES[0])
}

/// Category and selling mode of product `index`: all that stock needs, so
/// [`demo_stock`] does not build the whole product.
fn layout(index: usize, seed: u64) -> (&'static Category, SoldBy) {
    if let Some((name, _)) = FEATURED.get(index) {
        return (category_named(name), SoldBy::Each);
    }
    let mut rng = DemoRng::new(seed, index, STREAM_LAYOUT);
    let mut roll = rng.random_range(0..1000);
    let mut category = &CATEGORIES[0];
    for c in CATEGORIES {
        if roll < c.share {
            category = c;
            break;
        }
        roll -= c.share;
    }
    let weighed = category.per_kg.is_some() && rng.random_range(0..1000) < category.weighed;
    (
        category,
        if weighed {
            SoldBy::Weight
        } else {
            SoldBy::Each
        },
    )
}

/// The GS1 check digit of a 12-digit body given as a number.
fn ean13_check_digit(mut body: u64) -> u64 {
    let mut sum = 0;
    for position in 0..12 {
        let digit = body % 10;
        // Weight 3 for the rightmost body digit, then alternating.
        sum += if position % 2 == 0 { 3 * digit } else { digit };
        body /= 10;
    }
    (10 - sum % 10) % 10
}

/// Builds product `index` (0-based; its SKU is `SKU-{index + 1:06}`).
fn demo_product(index: usize, seed: u64) -> Product {
    let (category, sold_by) = layout(index, seed);
    let mut rng = DemoRng::new(seed, index, STREAM_DETAILS);
    let number = index as u64 + 1;

    let brand = rng.pick(BRANDS);
    let variety = rng.pick(category.varieties);
    // Weighed items are fresh food; otherwise any item of the category.
    let choices = if sold_by == SoldBy::Weight {
        category.reduced.len()
    } else {
        category.reduced.len() + category.standard.len()
    };
    let choice = rng.random_range(0..choices);
    let (item, tax_class) = match category.reduced.get(choice) {
        Some(item) => (*item, "reduced"),
        None => (
            category.standard[choice - category.reduced.len()],
            "standard",
        ),
    };

    let (name, price) = match (sold_by, category.per_kg) {
        (SoldBy::Weight, Some(per_kg)) => (
            format!("{brand} {variety} {item}, loose"),
            rng.price(per_kg),
        ),
        _ => {
            let size = rng.pick(category.sizes);
            let range = FEATURED.get(index).map_or(category.price, |f| f.1);
            (format!("{brand} {variety} {item} {size}"), rng.price(range))
        }
    };

    // GS1 prefix 29 + the 10-digit product number + check digit: unique for
    // index < 10^10, which no demo comes near.
    let body = 290_000_000_000 + number % 10_000_000_000;
    let gtin = format!("{body}{}", ean13_check_digit(body));

    Product {
        sku: Sku::new_unchecked(format!("SKU-{number:06}")),
        barcodes: vec![Gtin::new_unchecked(gtin)],
        description: format!("{variety} {item} by {brand}."),
        name,
        category: category.name.to_owned(),
        price,
        currency: Currency::EUR,
        tax_class: tax_class.to_owned(),
        sold_by,
        active: true,
        age_restricted: category.age_restricted,
    }
}

/// `n` demo products, deterministic for `seed`, generated lazily one at a time.
///
/// SKUs are `SKU-000001`, `SKU-000002`, ...; each product has one GTIN-13 with the
/// in-store prefix `29`. About 6 % (produce, deli, meat) are sold by weight with a price
/// per kilogram; `beer_wine` and `tobacco` are age-restricted; all are active and in EUR
/// with tax class `reduced` (food) or `standard` (drinks, alcohol, tobacco, non-food).
pub fn demo_products(n: usize, seed: u64) -> impl Iterator<Item = Product> {
    (0..n).map(move |index| demo_product(index, seed))
}

/// Stock level of product `sku_index` (0-based, as in [`demo_products`]) for `seed`:
/// units (0..=200) or grams for weighed items (0..=50,000), about 3 % out of stock.
pub fn demo_stock(sku_index: usize, seed: u64) -> i64 {
    let (_, sold_by) = layout(sku_index, seed);
    let mut rng = DemoRng::new(seed, sku_index, STREAM_STOCK);
    if rng.random_ratio(3, 100) {
        return 0;
    }
    match sold_by {
        SoldBy::Each => rng.random_range(1..=200),
        SoldBy::Weight => rng.random_range(1..=50_000),
    }
}

fn skus(numbers: std::ops::RangeInclusive<u32>) -> Vec<Sku> {
    numbers
        .map(|n| Sku::new_unchecked(format!("SKU-{n:06}")))
        .collect()
}

/// The demo's five promotions, valid from a day before `now` to 30 days after.
///
/// They target the featured SKUs, which [`demo_products`] makes the same way for every
/// seed (given at least ten products): one of each kind, plus a category-wide percentage
/// on `bakery` that overlaps the amount-off so the best-for-customer choice shows.
pub fn demo_promotions(now: OffsetDateTime) -> Vec<Promotion> {
    let starts_at = now.saturating_sub(Duration::days(1));
    let ends_at = now.saturating_add(Duration::days(30));
    let promotion = |id: &str, name: &str, kind, target| Promotion {
        id: id.to_owned(),
        name: name.to_owned(),
        kind,
        target,
        starts_at,
        ends_at,
        priority: 0,
    };
    vec![
        promotion(
            "demo-dairy-15",
            "Dairy 15 % off",
            PromotionKind::PercentOff { percent_bp: 1500 },
            Target {
                skus: skus(1..=3),
                categories: vec![],
            },
        ),
        promotion(
            "demo-bread-50c",
            "Bread 0.50 off",
            PromotionKind::AmountOff { amount: Money(50) },
            Target {
                skus: skus(4..=5),
                categories: vec![],
            },
        ),
        promotion(
            "demo-snacks-b2g1",
            "Snacks: buy 2, get 1 free",
            PromotionKind::BuyXGetY { buy: 2, get: 1 },
            Target {
                skus: skus(6..=8),
                categories: vec![],
            },
        ),
        promotion(
            "demo-drinks-3for249",
            "Drinks: 3 for 2.49",
            PromotionKind::NForPrice {
                n: 3,
                price: Money(249),
            },
            Target {
                skus: skus(9..=10),
                categories: vec![],
            },
        ),
        promotion(
            "demo-bakery-week",
            "Bakery week 20 % off",
            PromotionKind::PercentOff { percent_bp: 2000 },
            Target {
                skus: vec![],
                categories: vec!["bakery".to_owned()],
            },
        ),
    ]
}

/// German-style VAT: prices include tax, 19 % standard, 7 % reduced (food).
pub fn demo_tax_config() -> TaxConfig {
    TaxConfig {
        prices_include_tax: true,
        rates_bp: BTreeMap::from([("reduced".to_owned(), 700), ("standard".to_owned(), 1900)]),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use time::macros::datetime;

    use super::*;
    use crate::domain::gtin::check_digit;
    use crate::domain::pricing::{CartItem, Quantity, price_cart};
    use crate::domain::promotion::PromotionSet;

    const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

    #[test]
    fn category_table_is_consistent() {
        assert_eq!(CATEGORIES.len(), 15);
        assert_eq!(CATEGORIES.iter().map(|c| c.share).sum::<u32>(), 1000);
        let tax = demo_tax_config();
        for c in CATEGORIES {
            assert!(
                !c.reduced.is_empty() || !c.standard.is_empty(),
                "{}",
                c.name
            );
            assert!(!c.varieties.is_empty() && !c.sizes.is_empty(), "{}", c.name);
            assert!(c.price.0 % 10 == 9 && c.price.0 < c.price.1, "{}", c.name);
            if let Some((lo, hi)) = c.per_kg {
                assert!(
                    !c.reduced.is_empty() && lo % 10 == 9 && lo < hi,
                    "{}",
                    c.name
                );
            }
            assert_eq!(c.weighed > 0, c.per_kg.is_some(), "{}", c.name);
        }
        assert!(tax.rates_bp.contains_key("reduced") && tax.rates_bp.contains_key("standard"));
        for (name, _) in FEATURED {
            assert_eq!(category_named(name).name, *name);
        }
    }

    #[test]
    fn check_digits_match_the_gtin_module() {
        for body in [0u64, 400638133393, 290000000001, 299999999999, 123456789012] {
            let expected = check_digit(&format!("{body:012}")).unwrap();
            assert_eq!(ean13_check_digit(body), u64::from(expected), "{body}");
        }
    }

    #[test]
    fn ten_thousand_products_are_unique_valid_and_realistic() {
        let products: Vec<Product> = demo_products(10_000, 42).collect();
        assert_eq!(products.len(), 10_000);
        let mut skus = HashSet::new();
        let mut barcodes = HashSet::new();
        let mut per_category: HashMap<&str, usize> = HashMap::new();
        let mut weighed = 0;
        for (i, p) in products.iter().enumerate() {
            assert_eq!(p.validate(), Ok(()), "{p:?}");
            assert_eq!(p.sku.as_str(), format!("SKU-{:06}", i + 1));
            assert!(skus.insert(p.sku.clone()));
            assert_eq!(p.barcodes.len(), 1);
            let code = p.barcodes[0].as_str();
            assert_eq!(code.len(), 13);
            assert!(code.starts_with("29"));
            assert_eq!(Gtin::parse(code).as_ref(), Ok(&p.barcodes[0]));
            assert!(barcodes.insert(p.barcodes[0].to_gtin14()));
            *per_category.entry(p.category.as_str()).or_default() += 1;
            let category = category_named(&p.category);
            assert_eq!(category.name, p.category);
            assert_eq!(
                p.age_restricted,
                matches!(p.category.as_str(), "beer_wine" | "tobacco")
            );
            assert!(p.active);
            assert_eq!(p.currency, Currency::EUR);
            assert!(p.tax_class == "reduced" || p.tax_class == "standard");
            if matches!(p.category.as_str(), "beer_wine" | "tobacco" | "household") {
                assert_eq!(p.tax_class, "standard", "{}", p.name);
            }
            if matches!(p.category.as_str(), "dairy" | "bakery" | "produce" | "meat") {
                assert_eq!(p.tax_class, "reduced", "{}", p.name);
            }
            let range = match p.sold_by {
                SoldBy::Weight => {
                    weighed += 1;
                    assert!(p.name.ends_with(", loose"));
                    category.per_kg.unwrap()
                }
                SoldBy::Each => FEATURED.get(i).map_or(category.price, |f| f.1),
            };
            assert!((range.0..=range.1).contains(&p.price.minor()), "{p:?}");
            assert_eq!(p.price.minor() % 10, 9);
            assert!(p.name.split(' ').count() >= 4, "{}", p.name);
        }
        assert_eq!(per_category.len(), 15);
        // About 6 % weighed, only in the fresh categories.
        assert!((400..=800).contains(&weighed), "{weighed} weighed");
        assert!(
            products
                .iter()
                .filter(|p| p.sold_by == SoldBy::Weight)
                .all(|p| matches!(p.category.as_str(), "produce" | "meat" | "deli"))
        );
        // Shares follow the table roughly: pantry (12 %) is bigger than tobacco (2 %).
        assert!(per_category["pantry"] > 4 * per_category["tobacco"]);
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        let a: Vec<Product> = demo_products(200, 7).collect();
        let b: Vec<Product> = demo_products(200, 7).collect();
        let c: Vec<Product> = demo_products(200, 8).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Streaming: the 150th product alone equals the 150th of the batch.
        assert_eq!(demo_products(150, 7).last().as_ref(), a.get(149));
        // Names are varied, not one template.
        let names: HashSet<&str> = a.iter().map(|p| p.name.as_str()).collect();
        assert!(names.len() > 190);
    }

    #[test]
    fn stock_levels_fit_the_selling_mode() {
        let seed = 3;
        let products: Vec<Product> = demo_products(5_000, seed).collect();
        let mut zero = 0;
        for (i, p) in products.iter().enumerate() {
            let stock = demo_stock(i, seed);
            assert_eq!(stock, demo_stock(i, seed));
            match p.sold_by {
                SoldBy::Each => assert!((0..=200).contains(&stock)),
                SoldBy::Weight => assert!((0..=50_000).contains(&stock)),
            }
            zero += usize::from(stock == 0);
        }
        // About 3 % of 5000.
        assert!((90..=220).contains(&zero), "{zero} out of stock");
        assert!(
            products
                .iter()
                .enumerate()
                .any(|(i, p)| p.sold_by == SoldBy::Weight && demo_stock(i, seed) > 200)
        );
    }

    #[test]
    fn demo_promotions_are_valid_active_and_fit_the_catalogue() {
        let promotions = demo_promotions(NOW);
        assert_eq!(promotions.len(), 5);
        let mut kinds = HashSet::new();
        for p in &promotions {
            assert_eq!(p.validate(), Ok(()), "{}", p.id);
            assert!(p.is_active_at(NOW));
            assert!(p.is_active_at(NOW + Duration::days(29)));
            assert!(!p.is_active_at(NOW + Duration::days(30)));
            kinds.insert(std::mem::discriminant(&p.kind));
        }
        assert_eq!(kinds.len(), 4);
        let set = PromotionSet::new(promotions.clone());
        assert_eq!(set.active_at(NOW).len(), 5);

        for seed in 0..10 {
            let catalogue: Vec<Product> = demo_products(100, seed).collect();
            for p in &promotions {
                for sku in &p.target.skus {
                    let product = catalogue.iter().find(|c| &c.sku == sku).unwrap();
                    assert_eq!(product.sold_by, SoldBy::Each);
                }
                for category in &p.target.categories {
                    assert!(catalogue.iter().any(|c| &c.category == category));
                }
            }
            // Three of each featured product: every line gets a promotion that saves.
            let items: Vec<CartItem> = catalogue[..10]
                .iter()
                .map(|product| CartItem {
                    product: product.clone(),
                    quantity: Quantity::Units(3),
                })
                .collect();
            let cart = price_cart(&items, &set, &demo_tax_config(), NOW).unwrap();
            assert!(
                cart.lines.iter().all(|l| l.promotion_id.is_some()),
                "{cart:?}"
            );
            let used: HashSet<&str> = cart
                .lines
                .iter()
                .filter_map(|l| l.promotion_id.as_deref())
                .collect();
            assert!(used.len() >= 4, "{used:?}");
            assert!(cart.discount_total.minor() > 0);
            assert_eq!(
                cart.total,
                Money(cart.subtotal.minor() - cart.discount_total.minor())
            );
        }
    }
}
