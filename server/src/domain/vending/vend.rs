//! The vend state machine: one selection, from payment to the product in the tray.
//!
//! A vend's state is private and changes only through [`VendRecord::transition`],
//! which refuses every move not in [`EDGES`]. The service writes the record to disk
//! *before* each device call, so after a power cut the state says which device to ask
//! about the vend's key (`docs/vending.md` has the table and the recovery of each
//! state; a test keeps the two equal).
//!
//! The two promises: **never a charge without a product** (the charge is captured only
//! from `dispensed`, which only the drop sensor's confirmation reaches) and **never two
//! products for one charge** (the dispenser is called once per key, from `dispensing`,
//! and recovery asks it about the key instead of calling it again).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::slot::SlotId;
use crate::domain::money::Money;
use crate::domain::pricing::PricedCart;
use crate::domain::product::Sku;
use crate::domain::sale::CardSummary;

/// Where a vend stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VendState {
    /// The slot is chosen and can sell; no device has been called.
    Selected,
    /// Asking the payment side to hold the price under the key (MDB VEND REQUEST).
    Authorizing,
    /// The price is held: the reader approved, or the cash credit was reserved.
    Authorized,
    /// The motor is being run under the key.
    Dispensing,
    /// The drop sensor saw the product fall.
    Dispensed,
    /// Asking the payment side to take the held price (MDB VEND SUCCESS).
    Capturing,
    /// Asking the payment side to give the held price back (MDB VEND FAILURE), or
    /// returning the reserved cash to the credit.
    Voiding,
    /// Sold: the sale is in the journal. Final.
    Completed,
    /// Nothing sold, nothing charged. Final.
    Failed,
    /// The product left the machine and no charge could be recorded for it: the
    /// reader released the held price (it lost its power with the whole machine
    /// between the drop and VEND SUCCESS), or such a cut in `capturing` leaves it in
    /// doubt (`capture_in_doubt`). Counted as a free vend. Final.
    Unpaid,
}

impl VendState {
    /// Every state, for tables and tests.
    pub const ALL: [VendState; 10] = [
        VendState::Selected,
        VendState::Authorizing,
        VendState::Authorized,
        VendState::Dispensing,
        VendState::Dispensed,
        VendState::Capturing,
        VendState::Voiding,
        VendState::Completed,
        VendState::Failed,
        VendState::Unpaid,
    ];

    /// The state as stored and documented.
    pub fn name(self) -> &'static str {
        match self {
            VendState::Selected => "selected",
            VendState::Authorizing => "authorizing",
            VendState::Authorized => "authorized",
            VendState::Dispensing => "dispensing",
            VendState::Dispensed => "dispensed",
            VendState::Capturing => "capturing",
            VendState::Voiding => "voiding",
            VendState::Completed => "completed",
            VendState::Failed => "failed",
            VendState::Unpaid => "unpaid",
        }
    }

    /// Whether nothing more will happen to the vend.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            VendState::Completed | VendState::Failed | VendState::Unpaid
        )
    }
}

/// Every move a vend may make, `(from, to)`.
pub const EDGES: &[(VendState, VendState)] = &[
    (VendState::Selected, VendState::Authorizing),
    (VendState::Selected, VendState::Authorized),
    (VendState::Selected, VendState::Failed),
    (VendState::Authorizing, VendState::Authorized),
    (VendState::Authorizing, VendState::Failed),
    (VendState::Authorized, VendState::Dispensing),
    (VendState::Authorized, VendState::Voiding),
    (VendState::Dispensing, VendState::Dispensed),
    (VendState::Dispensing, VendState::Voiding),
    (VendState::Dispensed, VendState::Capturing),
    (VendState::Capturing, VendState::Completed),
    (VendState::Capturing, VendState::Unpaid),
    (VendState::Voiding, VendState::Failed),
];

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayMethod {
    /// The MDB cashless reader (card, phone).
    Cashless,
    /// Coins and notes already inserted: the machine's credit.
    Cash,
}

/// A move [`EDGES`] does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vend {id}: {from} -> {to} is not allowed")]
pub struct IllegalVendMove {
    /// The vend.
    pub id: Uuid,
    /// Its state.
    pub from: &'static str,
    /// The refused state.
    pub to: &'static str,
}

/// One vend, as persisted before each device call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VendRecord {
    /// Time-ordered id (UUIDv7); also the sale's id once sold.
    pub id: Uuid,
    /// The key every device call of this vend is made under (payment and dispenser).
    pub key: String,
    /// The slot.
    #[schema(value_type = String)]
    pub slot: SlotId,
    /// Its product at the time of selection.
    #[schema(value_type = String)]
    pub sku: Sku,
    /// Its price at the time of selection, in minor units.
    pub price: Money,
    /// The line as it will be sold: the product at the slot's price, taxed, with the
    /// slot on the line. Priced at selection, so the sale is what the customer saw.
    pub cart: PricedCart,
    /// How it is paid.
    pub method: PayMethod,
    /// Where it stands.
    state: VendState,
    /// What the reader approved (never a card number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardSummary>,
    /// Why it failed, for the technician and the customer's display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Which device misbehaved on this vend (for alerts).
    #[serde(default)]
    pub fault: Option<VendFault>,
    /// For an unpaid vend: VEND SUCCESS may have reached the reader before the whole
    /// machine's power cut stopped the capture, and a level 1 reader cannot be asked
    /// after its reset.
    /// Reconciled against the cashless provider's settlement report.
    #[serde(default)]
    pub capture_in_doubt: bool,
    /// For a cash vend: the credit when its price was taken from it (the price plus
    /// the change due), in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cash_tendered: Option<Money>,
    /// When it was selected.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed state.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What went wrong with a device during a vend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VendFault {
    /// The motor ran but the drop sensor saw nothing (empty spiral, stuck product).
    NotDispensed,
    /// The dispenser refused or failed (jam, motor fault, offline).
    Dispenser,
    /// The payment device failed or could not be reached.
    Payment,
}

impl VendRecord {
    /// A vend just selected.
    pub fn new(
        slot: SlotId,
        sku: Sku,
        cart: PricedCart,
        method: PayMethod,
        at: OffsetDateTime,
    ) -> Self {
        let id = crate::domain::ids::next();
        VendRecord {
            key: format!("vend-{id}"),
            id,
            slot,
            sku,
            price: cart.total,
            cart,
            method,
            state: VendState::Selected,
            card: None,
            failure: None,
            fault: None,
            capture_in_doubt: false,
            cash_tendered: None,
            created_at: at,
            updated_at: at,
        }
    }

    /// Where it stands.
    pub fn state(&self) -> VendState {
        self.state
    }

    /// Move to `to` if [`EDGES`] allows it.
    pub fn transition(&mut self, to: VendState, at: OffsetDateTime) -> Result<(), IllegalVendMove> {
        if !EDGES.contains(&(self.state, to)) {
            return Err(IllegalVendMove {
                id: self.id,
                from: self.state.name(),
                to: to.name(),
            });
        }
        self.state = to;
        self.updated_at = at;
        Ok(())
    }

    /// Note why the vend fails (and the device at fault); the first reason stands.
    pub fn fail(&mut self, reason: impl Into<String>, fault: Option<VendFault>) {
        self.failure.get_or_insert(reason.into());
        if self.fault.is_none() {
            self.fault = fault;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> VendRecord {
        let cart = PricedCart {
            currency: crate::domain::money::Currency::EUR,
            lines: vec![],
            subtotal: Money(250),
            discount_total: Money(0),
            taxes: vec![],
            tax_total: Money(0),
            total: Money(250),
            prices_include_tax: true,
            age_restricted: false,
        };
        VendRecord::new(
            SlotId::parse("A1").unwrap(),
            Sku::parse("COLA").unwrap(),
            cart,
            PayMethod::Cashless,
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn the_happy_path_is_allowed_and_final_states_go_nowhere() {
        let mut r = rec();
        for s in [
            VendState::Authorizing,
            VendState::Authorized,
            VendState::Dispensing,
            VendState::Dispensed,
            VendState::Capturing,
            VendState::Completed,
        ] {
            r.transition(s, OffsetDateTime::UNIX_EPOCH).unwrap();
        }
        for to in VendState::ALL {
            assert!(
                r.clone()
                    .transition(to, OffsetDateTime::UNIX_EPOCH)
                    .is_err()
            );
        }
        for s in VendState::ALL {
            let out = EDGES.iter().filter(|(f, _)| *f == s).count();
            assert_eq!(out == 0, s.is_final(), "{}", s.name());
        }
    }

    #[test]
    fn a_charge_is_only_captured_after_the_drop_and_never_voided_after_it() {
        // Capturing is reached only from dispensed, and dispensed only from
        // dispensing: the drop sensor's confirmation is the only way to a charge.
        let into = |to| EDGES.iter().filter(move |(_, t)| *t == to).map(|(f, _)| *f);
        assert_eq!(
            into(VendState::Capturing).collect::<Vec<_>>(),
            [VendState::Dispensed]
        );
        assert_eq!(
            into(VendState::Dispensed).collect::<Vec<_>>(),
            [VendState::Dispensing]
        );
        // Once the product dropped the vend cannot be voided (the product is out).
        assert!(!EDGES.contains(&(VendState::Dispensed, VendState::Voiding)));
        assert!(!EDGES.contains(&(VendState::Capturing, VendState::Voiding)));
        // The motor runs once per key: nothing leads back into dispensing.
        assert_eq!(
            into(VendState::Dispensing).collect::<Vec<_>>(),
            [VendState::Authorized]
        );
    }

    #[test]
    fn an_illegal_move_is_refused_and_changes_nothing() {
        let mut r = rec();
        let e = r
            .transition(VendState::Dispensing, OffsetDateTime::UNIX_EPOCH)
            .unwrap_err();
        assert_eq!((e.from, e.to), ("selected", "dispensing"));
        assert_eq!(r.state(), VendState::Selected);
    }

    #[test]
    fn the_table_in_docs_vending_md_is_the_table_in_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vending.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let section = doc
            .split("\n### ")
            .find(|s| s.starts_with("The state machine"))
            .expect("docs/vending.md has a section \"The state machine\"");
        let unquote = |c: &str| c.trim().trim_matches('`').to_owned();
        let documented: Vec<(String, String)> = section
            .lines()
            .skip_while(|l| !l.starts_with("| from | to |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                (unquote(cells[1]), unquote(cells[2]))
            })
            .collect();
        let code: Vec<(String, String)> = EDGES
            .iter()
            .map(|(f, t)| (f.name().to_owned(), t.name().to_owned()))
            .collect();
        assert_eq!(
            documented, code,
            "regenerate the table in docs/vending.md from EDGES"
        );
        for st in VendState::ALL {
            assert_eq!(
                serde_json::to_value(st).unwrap(),
                serde_json::json!(st.name())
            );
        }
    }
}
