//! The coin changer: takes coins (into its tubes or its cash box) and pays change
//! from its tubes, under the caller's key.
//!
//! Change is paid with the fewest coins the tubes allow, exactly or not at all
//! ([`crate::change::make_change`]): a payout the tubes cannot make exactly is
//! refused before a coin moves.

use async_trait::async_trait;

use crate::change::Tube as ChangeTube;
use crate::device::Device;
use crate::fault::DeviceFault;
use crate::key::CommandKey;

/// One coin type the changer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CoinType {
    /// The changer's number for it (MDB: 0 to 15).
    pub coin_type: u8,
    /// Value of one coin, in minor units.
    pub value_minor: i64,
    /// Whether it can be routed to a tube (and so paid out as change).
    pub has_tube: bool,
}

/// One tube as the changer last counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TubeLevel {
    /// The coin type it holds.
    pub coin_type: u8,
    /// Value of one coin, in minor units.
    pub value_minor: i64,
    /// Coins in it.
    pub count: u32,
    /// The tube's full sensor: new coins of this type go to the cash box.
    pub full: bool,
}

/// The tubes as change-making sees them.
pub fn change_tubes(levels: &[TubeLevel]) -> Vec<ChangeTube> {
    levels
        .iter()
        .map(|l| ChangeTube {
            value: l.value_minor,
            count: l.count,
        })
        .collect()
}

/// Where a deposited coin went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoinRoute {
    /// Into the cash box: credit, but not available for change.
    CashBox,
    /// Into its tube: credit, and available for change.
    Tube,
    /// Rejected back to the customer: no credit.
    Returned,
}

/// A condition the changer reports on its own (MDB changer status codes).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangerStatus {
    /// The customer pressed the coin return lever: give the credit back.
    EscrowRequest,
    /// A payout is still running.
    PayoutBusy,
    /// A coin was validated but did not arrive where it was routed.
    NoCredit,
    /// A tube sensor failed.
    DefectiveTubeSensor,
    /// Two coins arrived too close together to be validated.
    DoubleArrival,
    /// The acceptor unit is unplugged.
    AcceptorUnplugged,
    /// A tube jammed while paying out.
    TubeJam,
    /// The changer's firmware failed its checksum.
    RomChecksumError,
    /// A coin went somewhere other than where it was routed.
    RoutingError,
    /// The changer is busy with something else.
    Busy,
    /// The changer was reset (power-up, or a RESET).
    JustReset,
    /// A coin jammed in the acceptor.
    CoinJam,
    /// A credited coin may have been pulled back out (fishing).
    CreditedCoinRemoval,
}

impl ChangerStatus {
    /// Whether it is a fault a technician must see (a jam, a broken part).
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            ChangerStatus::DefectiveTubeSensor
                | ChangerStatus::AcceptorUnplugged
                | ChangerStatus::TubeJam
                | ChangerStatus::RomChecksumError
                | ChangerStatus::RoutingError
                | ChangerStatus::CoinJam
        )
    }
}

/// Something the changer reports between commands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChangerEvent {
    /// A coin came in.
    Deposited {
        /// Its type.
        coin_type: u8,
        /// Its value, minor units.
        value_minor: i64,
        /// Where it went.
        route: CoinRoute,
        /// Coins in its tube now.
        tube_count: u32,
    },
    /// A technician paid coins out by hand (the changer's own buttons).
    ManualDispense {
        /// Their type.
        coin_type: u8,
        /// Value of one, minor units.
        value_minor: i64,
        /// How many.
        count: u32,
        /// Coins in the tube now.
        tube_count: u32,
    },
    /// Coins not recognised (slugs) since the last report.
    Slugs {
        /// How many.
        count: u8,
    },
    /// A condition.
    Status {
        /// Which.
        status: ChangerStatus,
    },
}

/// What a payout under a key paid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payout {
    /// The key it was paid under.
    pub key: CommandKey,
    /// The amount asked for, minor units.
    pub asked_minor: i64,
    /// What left the tubes, minor units: `asked_minor`, unless a jam stopped it.
    pub paid_minor: i64,
    /// Coins paid per value, (value in minor units, count), only values paid.
    pub coins: Vec<(i64, u32)>,
}

/// What the changer knows about a payout key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PayoutStatus {
    /// The payout under the key finished, and paid this.
    Done(Payout),
    /// Nothing was ever paid under the key.
    Unknown,
}

/// A coin changer.
///
/// Deposits are reported by [`poll`](Self::poll) as they come in; the caller adds
/// them to the customer's credit. A payout takes a key: a key already used is
/// refused with [`Illegal`](crate::ErrorKind::Illegal) and pays nothing; an amount the
/// tubes cannot pay exactly is refused with `Illegal` too, before any coin moves; a
/// lost answer is [`OutcomeUnknown`](crate::ErrorKind::OutcomeUnknown), and
/// [`payout_status`](Self::payout_status) says what went out. A jam mid-payout is a
/// [`Jam`](crate::fault::Condition::Jam) fault, and the status says what was paid
/// before it.
#[async_trait]
pub trait CoinChanger: Device {
    /// The coin types, as the changer reported them at open (empty before).
    fn coin_types(&self) -> Vec<CoinType>;

    /// The tubes, counted now.
    async fn tubes(&self) -> Result<Vec<TubeLevel>, DeviceFault>;

    /// Start (`true`) or stop taking coins. Coins put in while stopped are returned.
    async fn accept_coins(&self, accept: bool) -> Result<(), DeviceFault>;

    /// What happened since the last poll, oldest first.
    async fn poll(&self) -> Result<Vec<ChangerEvent>, DeviceFault>;

    /// Pay `amount_minor` from the tubes with the fewest coins, under `key`.
    async fn pay_out(&self, key: &CommandKey, amount_minor: i64) -> Result<Payout, DeviceFault>;

    /// What was paid under `key`.
    async fn payout_status(&self, key: &CommandKey) -> Result<PayoutStatus, DeviceFault>;
}
