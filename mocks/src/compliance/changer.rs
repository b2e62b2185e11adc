//! What every [`CoinChanger`] must do.

use outpost_peripherals::changer::{
    ChangerEvent, ChangerStatus, CoinChanger, CoinRoute, PayoutStatus,
};
use outpost_peripherals::{CommandKey, Condition, DeviceError, ErrorKind};

use crate::mock::changer::{ChangerStep, MockChanger};
use crate::sim::ChangerSim;
use crate::sim::mdb::MdbFault;

/// How the suite acts on a changer's world. The changer under test has two coin
/// types with tubes: type 0 worth 25 and type 1 worth 10, each tube holding 10
/// coins, with room for more.
pub trait ChangerHarness: Send + Sync {
    /// Put a coin of `coin_type` in.
    fn insert_coin(&self, coin_type: u8) -> CoinRoute;
    /// The customer presses the coin return lever.
    fn press_return(&self);
    /// The next payout pays, and its answer is lost.
    fn lose_next_answer(&self);
    /// The next payout never reaches the changer (power lost on the way).
    fn lose_power_next(&self);
    /// The next payout jams after `coins` coins.
    fn jam_next_payout(&self, coins: u32);
    /// Value in minor units of every coin that really left the tubes so far.
    fn paid_out_minor(&self) -> i64;
}

impl ChangerHarness for MockChanger {
    fn insert_coin(&self, coin_type: u8) -> CoinRoute {
        MockChanger::insert_coin(self, coin_type)
    }
    fn press_return(&self) {
        MockChanger::press_return(self);
    }
    fn lose_next_answer(&self) {
        self.expect([ChangerStep::LoseAnswer]);
    }
    fn lose_power_next(&self) {
        self.expect([ChangerStep::PowerLoss]);
    }
    fn jam_next_payout(&self, coins: u32) {
        self.expect([ChangerStep::JamAfter(coins)]);
    }
    fn paid_out_minor(&self) -> i64 {
        MockChanger::paid_out_minor(self)
    }
}

impl ChangerHarness for ChangerSim {
    fn insert_coin(&self, coin_type: u8) -> CoinRoute {
        ChangerSim::insert_coin(self, coin_type)
    }
    fn press_return(&self) {
        ChangerSim::press_return(self);
    }
    fn lose_next_answer(&self) {
        self.fault_next_dispense([MdbFault::LoseReply]);
    }
    fn lose_power_next(&self) {
        self.fault_next_dispense([MdbFault::Swallow]);
    }
    fn jam_next_payout(&self, coins: u32) {
        ChangerSim::jam_next_payout(self, coins);
    }
    fn paid_out_minor(&self) -> i64 {
        ChangerSim::paid_out_minor(self)
    }
}

fn key(name: &str) -> CommandKey {
    CommandKey(format!("change-compliance-{name}"))
}

fn paid_under(s: &Result<PayoutStatus, outpost_peripherals::DeviceFault>) -> i64 {
    match s {
        Ok(PayoutStatus::Done(p)) => p.paid_minor,
        Ok(PayoutStatus::Unknown) => 0,
        Err(f) => panic!("payout status failed: {f}"),
    }
}

/// Check the coin changer contract. `d` must be closed and unclaimed, set up as
/// [`ChangerHarness`] says (for the mock, [`MockChanger::closed`] with values
/// `[25, 10]`, counts `[10, 10]`; for the simulator,
/// `ChangerOptions::with_coins(&[25, 10], &[10, 10])`).
///
/// The rules: nothing is paid before open; coins taken while accepting are
/// reported with their value and route, and returned while not; change is the
/// fewest coins the tubes allow (30 from 25s and 10s is three 10s, not greedy's
/// 25 and a stuck 5); an amount the tubes cannot pay exactly is refused and pays
/// nothing; a used key is refused and pays nothing more; a lost answer is resolved
/// (paid in full) or outcome unknown, and the status tells what really left; a
/// payout that never reached the changer leaves nothing paid; a tube jam is a
/// `Jam` fault and the status tells what left before it; the coin return lever is
/// reported; nothing is paid after close.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn coin_changer<D: CoinChanger>(d: &D, h: &dyn ChangerHarness) {
    assert!(
        d.pay_out(&key("unready"), 10).await.is_err(),
        "payout before open"
    );
    assert_eq!(h.paid_out_minor(), 0, "a refused payout paid");
    d.open().await.expect("open");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    let mut values: Vec<i64> = d.coin_types().iter().map(|c| c.value_minor).collect();
    values.sort_unstable();
    assert_eq!(values, [10, 25], "coin types");

    d.accept_coins(true).await.expect("accept");
    assert_eq!(h.insert_coin(0), CoinRoute::Tube, "a coin goes to its tube");
    let evs = d.poll().await.expect("poll");
    assert!(
        evs.iter().any(|e| matches!(
            e,
            ChangerEvent::Deposited {
                value_minor: 25,
                route: CoinRoute::Tube,
                ..
            }
        )),
        "deposit reported with its value and route: {evs:?}"
    );
    d.accept_coins(false).await.expect("stop accepting");
    assert_eq!(h.insert_coin(1), CoinRoute::Returned, "returned while off");
    let evs = d.poll().await.expect("poll");
    assert!(
        evs.iter().all(|e| !matches!(
            e,
            ChangerEvent::Deposited {
                route: CoinRoute::Tube | CoinRoute::CashBox,
                ..
            }
        )),
        "no credit while not accepting: {evs:?}"
    );
    let tubes = d.tubes().await.expect("tubes");
    let count_of = |v: i64| tubes.iter().find(|t| t.value_minor == v).map(|t| t.count);
    assert_eq!((count_of(25), count_of(10)), (Some(11), Some(10)), "tubes");

    let before = h.paid_out_minor();
    let p = d.pay_out(&key("thirty"), 30).await.expect("pay 30");
    assert_eq!(p.paid_minor, 30);
    assert_eq!(p.coins, [(10, 3)], "three 10s, the fewest coins");
    assert_eq!(h.paid_out_minor() - before, 30, "30 really left");
    assert_eq!(
        d.payout_status(&key("thirty")).await,
        Ok(PayoutStatus::Done(p))
    );
    match d.pay_out(&key("thirty"), 30).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::Illegal, "reused key: {f:?}"),
        Ok(p) => panic!("a reused key paid again: {p:?}"),
    }
    assert_eq!(
        h.paid_out_minor() - before,
        30,
        "nothing more under a used key"
    );

    match d.pay_out(&key("five"), 5).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::Illegal, "{f:?}"),
        Ok(p) => panic!("5 cannot be paid from 25s and 10s: {p:?}"),
    }
    assert_eq!(h.paid_out_minor() - before, 30, "a refused payout paid");
    assert_eq!(
        d.payout_status(&key("five")).await,
        Ok(PayoutStatus::Unknown)
    );

    let before = h.paid_out_minor();
    h.lose_next_answer();
    match d.pay_out(&key("lost"), 35).await {
        Ok(p) => assert_eq!(p.paid_minor, 35, "resolved in full"),
        Err(f) => assert_eq!(f.kind(), ErrorKind::OutcomeUnknown, "{f:?}"),
    }
    let s = d.payout_status(&key("lost")).await;
    assert_eq!(paid_under(&s), h.paid_out_minor() - before, "status tells");
    assert_eq!(h.paid_out_minor() - before, 35, "a lost answer paid once");

    let before = h.paid_out_minor();
    h.lose_power_next();
    match d.pay_out(&key("power"), 20).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::OutcomeUnknown, "{f:?}"),
        Ok(p) => panic!("a payout that never reached the changer: {p:?}"),
    }
    assert_eq!(h.paid_out_minor(), before, "nothing left");
    assert_eq!(paid_under(&d.payout_status(&key("power")).await), 0);

    let before = h.paid_out_minor();
    h.jam_next_payout(1);
    match d.pay_out(&key("jam"), 50).await {
        Err(f) => assert_eq!(f.device_condition(), Some(Condition::Jam), "{f:?}"),
        Ok(p) => panic!("a jammed payout paid in full: {p:?}"),
    }
    assert_eq!(h.paid_out_minor() - before, 25, "one coin before the jam");
    assert_eq!(paid_under(&d.payout_status(&key("jam")).await), 25);

    h.press_return();
    let mut seen = false;
    for _ in 0..5 {
        let evs = d.poll().await.expect("poll");
        seen |= evs.contains(&ChangerEvent::Status {
            status: ChangerStatus::EscrowRequest,
        });
        if seen {
            break;
        }
    }
    assert!(seen, "the coin return lever is reported");
    assert_eq!(
        d.payout_status(&key("never")).await,
        Ok(PayoutStatus::Unknown)
    );
    d.close().await;
    let before = h.paid_out_minor();
    assert!(d.pay_out(&key("closed"), 10).await.is_err(), "after close");
    assert_eq!(h.paid_out_minor(), before);
}
