//! Vending slots: the spirals (or lanes) of a vending machine, each holding one product
//! at one price.
//!
//! A slot is named by its tray (a letter, `A` at the top) and its column on the tray
//! (from 1), as printed on the machine's keypad labels: `A1`, `C12`. It holds up to
//! `capacity` units of one SKU; `par` is the level a technician refills to and below
//! which the slot counts as low. The current `count` is the machine's truth as the
//! slot's movements (vends, refills, counts) leave it; HQ's pushes and a technician's
//! edits change the configuration, never the count.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::money::Money;
use crate::domain::product::Sku;

/// Most trays (`A` to `Z`).
pub const MAX_TRAYS: u8 = 26;
/// Most columns on one tray.
pub const MAX_COLUMNS: u8 = 99;
/// Most units one slot holds (a long spiral of thin bars).
pub const MAX_SLOT_CAPACITY: u32 = 200;
/// Highest price of one vend, in minor units (MDB prices are 16-bit).
pub const MAX_VEND_PRICE: i64 = 65_000;

/// A slot's name: tray letter and column, e.g. `B7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId {
    /// 1-based tray (`A` = 1).
    tray: u8,
    /// 1-based column.
    column: u8,
}

/// Why a slot name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("slot {0:?} must be a tray letter A to Z and a column 1 to 99, e.g. B7")]
pub struct BadSlotId(pub String);

impl SlotId {
    /// A slot from its tray and column, both from 1.
    pub fn new(tray: u8, column: u8) -> Result<SlotId, BadSlotId> {
        if (1..=MAX_TRAYS).contains(&tray) && (1..=MAX_COLUMNS).contains(&column) {
            Ok(SlotId { tray, column })
        } else {
            Err(BadSlotId(format!("tray {tray} column {column}")))
        }
    }

    /// Parse `B7` (upper case letter, then a column without leading zero).
    pub fn parse(s: &str) -> Result<SlotId, BadSlotId> {
        let bad = || BadSlotId(s.chars().take(16).collect());
        let mut chars = s.chars();
        let letter = chars.next().ok_or_else(bad)?;
        if !letter.is_ascii_uppercase() {
            return Err(bad());
        }
        let digits = chars.as_str();
        if digits.is_empty()
            || digits.len() > 2
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let column: u8 = digits.parse().map_err(|_| bad())?;
        SlotId::new(letter as u8 - b'A' + 1, column).map_err(|_| bad())
    }

    /// 1-based tray.
    pub fn tray(self) -> u8 {
        self.tray
    }

    /// 1-based column.
    pub fn column(self) -> u8 {
        self.column
    }

    /// The item number MDB and DEX carry for this slot: tray * 100 + column (`B7` is 207).
    pub fn item_number(self) -> u16 {
        u16::from(self.tray) * 100 + u16::from(self.column)
    }
}

impl std::fmt::Display for SlotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", char::from(b'A' + self.tray - 1), self.column)
    }
}

impl Serialize for SlotId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SlotId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SlotId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How the slot's goods are kept: a chilled slot stops selling while the machine is
/// too warm (see the temperature alert in `docs/vending.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Climate {
    /// Room temperature (crisps, chocolate).
    #[default]
    Ambient,
    /// Must stay cold (drinks, sandwiches).
    Chilled,
}

/// What configures a slot (from HQ or a technician); the count is not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SlotConfig {
    /// The slot, e.g. `B7`.
    #[schema(value_type = String, pattern = "^[A-Z][1-9][0-9]?$", example = "B7")]
    pub slot: SlotId,
    /// The product it holds.
    #[schema(value_type = String)]
    pub sku: Sku,
    /// Price of one vend in minor units, 1 to 65,000.
    #[schema(value_type = i64, minimum = 1, maximum = 65000)]
    pub price: Money,
    /// Most units the slot holds, 1 to 200.
    #[schema(minimum = 1, maximum = 200)]
    pub capacity: u32,
    /// The level a refill brings it to, and below which it is low: 0 to `capacity`.
    #[schema(minimum = 0, maximum = 200)]
    pub par: u32,
    /// Ambient or chilled.
    #[serde(default)]
    pub climate: Climate,
}

/// A slot as stored: its configuration and its count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Slot {
    /// The configuration.
    #[serde(flatten)]
    pub config: SlotConfig,
    /// Units in the slot now, as its movements leave it.
    pub count: u32,
    /// Set when the slot's product changed while units of the old one were in it: it
    /// does not sell until a technician counts it.
    #[serde(default)]
    pub needs_count: bool,
}

impl Slot {
    /// Whether the count is below par (and the slot worth a refill visit).
    pub fn is_low(&self) -> bool {
        self.count < self.config.par
    }
}

/// A slot's configuration as HQ or a technician sent it, before checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSlot {
    /// Slot name text.
    pub slot: String,
    /// SKU text.
    pub sku: String,
    /// Minor units.
    pub price: i64,
    /// Capacity.
    pub capacity: u32,
    /// Par level.
    pub par: u32,
    /// Chilled or not.
    pub chilled: bool,
}

/// Why a slot configuration is refused; the field names where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SlotError {
    /// The field at fault, e.g. `slots[3].price`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Most slots in one machine.
pub const MAX_SLOTS: usize = MAX_TRAYS as usize * MAX_COLUMNS as usize;

/// Check one slot configuration; `at` prefixes the field names (`slots[3]`, or empty).
pub fn parse_slot(raw: RawSlot, at: &str) -> Result<SlotConfig, SlotError> {
    let field = |f: &str| {
        if at.is_empty() {
            f.to_owned()
        } else {
            format!("{at}.{f}")
        }
    };
    let err = |f: &str, message: String| SlotError {
        field: field(f),
        message,
    };
    let slot = SlotId::parse(&raw.slot).map_err(|e| err("slot", e.to_string()))?;
    let sku = Sku::parse(&raw.sku).map_err(|e| err("sku", format!("sku: {e}")))?;
    if !(1..=MAX_VEND_PRICE).contains(&raw.price) {
        return Err(err(
            "price",
            format!(
                "price {} must be between 1 and {MAX_VEND_PRICE} minor units",
                raw.price
            ),
        ));
    }
    if !(1..=MAX_SLOT_CAPACITY).contains(&raw.capacity) {
        return Err(err(
            "capacity",
            format!(
                "capacity {} must be between 1 and {MAX_SLOT_CAPACITY}",
                raw.capacity
            ),
        ));
    }
    if raw.par > raw.capacity {
        return Err(err(
            "par",
            format!("par {} must not exceed capacity {}", raw.par, raw.capacity),
        ));
    }
    Ok(SlotConfig {
        slot,
        sku,
        price: Money(raw.price),
        capacity: raw.capacity,
        par: raw.par,
        climate: if raw.chilled {
            Climate::Chilled
        } else {
            Climate::Ambient
        },
    })
}

/// Check a whole machine's slots (an HQ push): every slot valid, none twice. Nothing
/// is applied when one is wrong. Sorted by slot.
pub fn parse_slots(raw: Vec<RawSlot>) -> Result<Vec<SlotConfig>, SlotError> {
    if raw.len() > MAX_SLOTS {
        return Err(SlotError {
            field: "slots".into(),
            message: format!("{} slots is over the limit of {MAX_SLOTS}", raw.len()),
        });
    }
    let mut out: Vec<SlotConfig> = Vec::with_capacity(raw.len());
    let mut seen = std::collections::HashSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("slots[{i}]");
        let c = parse_slot(r, &at)?;
        if !seen.insert(c.slot) {
            return Err(SlotError {
                field: format!("{at}.slot"),
                message: format!("slot {} is given twice", c.slot),
            });
        }
        out.push(c);
    }
    out.sort_by_key(|c| c.slot);
    Ok(out)
}

/// The slot a configuration change leaves: the count stays (it is what is physically
/// in the spiral), and a product change with units of the old product inside needs a
/// count before the slot sells again.
pub fn reconfigure(old: Option<&Slot>, config: SlotConfig) -> Slot {
    match old {
        None => Slot {
            config,
            count: 0,
            needs_count: false,
        },
        Some(old) => {
            let product_changed = old.config.sku != config.sku;
            Slot {
                needs_count: old.needs_count || (product_changed && old.count > 0),
                count: old.count,
                config,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(slot: &str) -> RawSlot {
        RawSlot {
            slot: slot.into(),
            sku: "COLA-33".into(),
            price: 250,
            capacity: 10,
            par: 8,
            chilled: true,
        }
    }

    #[test]
    fn slot_names_round_trip_and_number_like_a_keypad() {
        for s in ["A1", "B7", "Z99", "F8"] {
            assert_eq!(SlotId::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(SlotId::parse("B7").unwrap().item_number(), 207);
        for bad in ["", "a1", "A0", "A01", "A100", "1A", "AA1", "A", "Ä1", "A-1"] {
            assert!(SlotId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        type Break = fn(&mut RawSlot);
        let cases: Vec<(Break, &str)> = vec![
            (|r| r.slot = "A0".into(), "slot"),
            (|r| r.sku = "no spaces".into(), "sku"),
            (|r| r.price = 0, "price"),
            (|r| r.price = MAX_VEND_PRICE + 1, "price"),
            (|r| r.capacity = 0, "capacity"),
            (|r| r.capacity = MAX_SLOT_CAPACITY + 1, "capacity"),
            (|r| r.par = 11, "par"),
        ];
        for (break_it, field) in cases {
            let mut r = raw("A2");
            break_it(&mut r);
            let e = parse_slots(vec![raw("A1"), r]).unwrap_err();
            assert_eq!(e.field, format!("slots[1].{field}"), "{e}");
        }
    }

    #[test]
    fn a_slot_given_twice_is_refused_and_good_ones_come_sorted() {
        let e = parse_slots(vec![raw("A1"), raw("A1")]).unwrap_err();
        assert_eq!(e.field, "slots[1].slot");
        let ok = parse_slots(vec![raw("B1"), raw("A2"), raw("A10")]).unwrap();
        let names: Vec<String> = ok.iter().map(|c| c.slot.to_string()).collect();
        assert_eq!(names, ["A2", "A10", "B1"]);
    }

    #[test]
    fn a_new_product_over_old_units_needs_a_count_and_the_count_stays() {
        let c = parse_slot(raw("A1"), "").unwrap();
        let fresh = reconfigure(None, c.clone());
        assert_eq!((fresh.count, fresh.needs_count), (0, false));
        let stocked = Slot {
            count: 6,
            ..fresh.clone()
        };
        let repriced = reconfigure(
            Some(&stocked),
            SlotConfig {
                price: Money(300),
                ..c.clone()
            },
        );
        assert_eq!((repriced.count, repriced.needs_count), (6, false));
        let other = reconfigure(
            Some(&stocked),
            SlotConfig {
                sku: Sku::parse("WATER").unwrap(),
                ..c.clone()
            },
        );
        assert_eq!((other.count, other.needs_count), (6, true));
        let empty_other = reconfigure(
            Some(&fresh),
            SlotConfig {
                sku: Sku::parse("WATER").unwrap(),
                ..c
            },
        );
        assert!(!empty_other.needs_count);
    }
}
