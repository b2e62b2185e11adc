//! Cash vends on the MDB coin changer and bill validator wire simulators and the
//! OSB/1 board simulator, through the real drivers: coins and notes as credit, the
//! change in the fewest coins, a note stacked only when the vend can be paid and
//! changed, each refusal, the coin return lever, the alerts, and a power cut at
//! every cash step.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use outpost_mocks::sim::changer::ChangerOptions;
use outpost_mocks::sim::spiral::SlotTrouble;
use outpost_mocks::sim::validator::ValidatorOptions;
use outpost_mocks::sim::{ChangerSim, SpiralSim, ValidatorSim};
use outpost_peripherals::changer::{
    ChangerEvent, CoinChanger, CoinType, Payout, PayoutStatus, TubeLevel,
};
use outpost_peripherals::mdb::{ChangerConfig, MdbChanger, MdbValidator, ValidatorConfig};
use outpost_peripherals::spiral::SpiralBoard;
use outpost_peripherals::validator::{
    BillType, BillValidator, EscrowOutcome, EscrowStatus, Stacker, ValidatorEvent,
};
use outpost_peripherals::vend::{VendDispenser, VendOutcome, VendStatus};
use outpost_peripherals::{CommandKey, Device, DeviceCore, DeviceFault, HealthLevel, HealthReport};

use super::cash::{CashMove, movements};
use super::tests::{OPENING, board, reopen, sales, slot, stocked_store, timeouts};
use super::{VendDevices, VendError, Vending, alerts, open_vends};
use crate::domain::money::Money;
use crate::domain::sale::TenderMethod;
use crate::domain::vending::{PayMethod, VendState};
use crate::store::Store;

fn changer_config() -> ChangerConfig {
    ChangerConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(5),
        payout_timeout: Duration::from_secs(2),
        drain_quiet: Duration::from_millis(20),
        ..ChangerConfig::default()
    }
}

fn validator_config() -> ValidatorConfig {
    ValidatorConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(5),
        escrow_timeout: Duration::from_millis(400),
        drain_quiet: Duration::from_millis(20),
        ..ValidatorConfig::default()
    }
}

pub(super) async fn changer(sim: &ChangerSim) -> Arc<MdbChanger> {
    let d = MdbChanger::with_connector("changer", Arc::new(sim.connector("c")), changer_config());
    d.open().await.expect("changer opens");
    d.core().claim().unwrap();
    d.core().enable().unwrap();
    Arc::new(d)
}

pub(super) async fn validator(sim: &ValidatorSim) -> Arc<MdbValidator> {
    let d = MdbValidator::with_connector(
        "validator",
        Arc::new(sim.connector("v")),
        validator_config(),
    );
    d.open().await.expect("validator opens");
    d.core().claim().unwrap();
    d.core().enable().unwrap();
    Arc::new(d)
}

struct CashSite {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    coins: ChangerSim,
    notes: ValidatorSim,
    disp: SpiralSim,
    vending: Vending,
}

/// A1 (cola, 2.50, six units); a euro changer (tubes of 10c to 2€), a euro
/// validator with escrow, taking cash.
async fn cash_site() -> CashSite {
    let dir = tempfile::tempdir().unwrap();
    let store = stocked_store(dir.path()).await;
    let coins = ChangerSim::new(ChangerOptions::euro());
    let notes = ValidatorSim::new(ValidatorOptions::euro());
    let disp = SpiralSim::new(6, 8, &[("A1", OPENING), ("A2", 0)]);
    let vending = Vending::new(
        sales(store.clone()),
        VendDevices {
            dispenser: Some(board(&disp).await),
            changer: Some(changer(&coins).await),
            validator: Some(validator(&notes).await),
            ..Default::default()
        },
        timeouts(),
    );
    vending.accept_cash(true).await.unwrap();
    CashSite {
        _dir: dir,
        store,
        coins,
        notes,
        disp,
        vending,
    }
}

/// Coin types of the euro changer.
const C50: u8 = 3;
const E1: u8 = 4;
const E2: u8 = 5;
/// Bill types of the euro validator.
const N5: u8 = 0;

fn credit(v: &Vending) -> i64 {
    v.cash().unwrap().credit
}

/// The cash books after the vends settled, as the crash harnesses check them after
/// each vend: nothing in flight; every coin the changer took (`coins_taken`) and
/// every note it stacked is credit in the journal; the journal's payouts are the
/// coins the changer paid; cash in equals cash out plus `cash_sold` plus the credit,
/// which is never negative.
pub(super) fn assert_cash_books(
    store: &Store,
    coins: &ChangerSim,
    notes: &ValidatorSim,
    coins_taken: i64,
    cash_sold: i64,
    ctx: &str,
) -> super::cash::CashState {
    let st = super::cash::state(store).unwrap();
    assert!(
        st.reserved.is_none()
            && st.stacking.is_none()
            && st.payout.is_none()
            && st.pay_due.is_none(),
        "{ctx}: cash left in flight: {st:?}"
    );
    let coins_in = moved(store, CashMove::CoinToTube) + moved(store, CashMove::CoinToCashBox);
    let notes_in = moved(store, CashMove::NoteStacked);
    let paid = moved(store, CashMove::PaidOut);
    assert_eq!(coins_in, coins_taken, "{ctx}: every coin taken is credit");
    assert_eq!(notes_in, notes.stacked_minor(), "{ctx}: notes stacked");
    assert_eq!(paid, coins.paid_out_minor(), "{ctx}: coins paid out");
    assert!(st.credit >= 0, "{ctx}: credit {}", st.credit);
    assert_eq!(
        coins_in + notes_in,
        paid + cash_sold + st.credit,
        "{ctx}: cash in = cash out + cash sales + credit"
    );
    st
}

/// Wait for a task to finish without taking it.
pub(super) async fn wait<T>(task: &tokio::task::JoinHandle<T>) {
    while !task.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

pub(super) fn moved(store: &Store, kind: CashMove) -> i64 {
    movements(store)
        .unwrap()
        .iter()
        .filter(|m| m.kind == kind)
        .map(|m| m.value)
        .sum()
}

#[tokio::test]
async fn coins_pay_a_vend_and_the_change_comes_back_in_the_fewest_coins() {
    let s = cash_site().await;
    s.coins.insert_coin(E2);
    s.coins.insert_coin(E1);
    assert_eq!(s.vending.poll_cash().await.unwrap(), 300);
    let tubes_before = s.coins.tubes();
    let r = s.vending.vend(slot("A1"), PayMethod::Cash).await.unwrap();
    assert_eq!(r.state(), VendState::Completed, "{r:?}");
    assert_eq!(s.disp.stock("A1"), OPENING - 1);
    assert_eq!(s.coins.paid_out_minor(), 50, "the change");
    let tubes_after = s.coins.tubes();
    assert_eq!(
        tubes_before[usize::from(C50)] - tubes_after[usize::from(C50)],
        1,
        "one 50c coin, the fewest"
    );
    assert_eq!(credit(&s.vending), 0);
    let sale = s.store.sale(r.id).unwrap().expect("the sale");
    assert_eq!(sale.tenders[0].method, TenderMethod::Cash);
    assert_eq!(sale.tenders[0].tendered, Some(Money(300)));
    assert_eq!(sale.change, Money(50));
    assert_eq!(sale.cart.lines[0].slot.as_deref(), Some("A1"));
    assert_eq!(moved(&s.store, CashMove::CoinToTube), 300);
    assert_eq!(moved(&s.store, CashMove::PaidOut), 50);
    let st = s.vending.cash().unwrap();
    assert_eq!(
        (st.reserved, st.payout, st.pay_due),
        (None, None, None),
        "nothing left in flight"
    );
}

#[tokio::test]
async fn a_note_is_stacked_only_when_the_vend_can_be_paid_and_changed() {
    let s = cash_site().await;
    assert_eq!(
        s.notes.insert_bill(N5),
        outpost_peripherals::validator::BillRoute::Escrowed
    );
    assert_eq!(
        s.vending.poll_cash().await.unwrap(),
        0,
        "escrow is no credit"
    );
    assert_eq!(s.vending.cash().unwrap().escrow.map(|n| n.value), Some(500));
    let r = s.vending.vend(slot("A1"), PayMethod::Cash).await.unwrap();
    assert_eq!(r.state(), VendState::Completed);
    assert_eq!(s.notes.stacked_minor(), 500);
    assert_eq!(s.coins.paid_out_minor(), 250, "2.50 change");
    assert_eq!(credit(&s.vending), 0);
    assert_eq!(moved(&s.store, CashMove::NoteStacked), 500);

    // No coins to change a note: it goes back, and nothing is sold.
    for t in 0..6 {
        s.coins.set_tube(t, 0);
    }
    s.notes.insert_bill(N5);
    s.vending.poll_cash().await.unwrap();
    let e = s
        .vending
        .vend(slot("A1"), PayMethod::Cash)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            VendError::Invalid {
                code: "no_change",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(s.notes.returned_minor(), 500, "the note went back");
    assert_eq!(s.notes.stacked_minor(), 500, "not stacked");
    assert_eq!(s.vending.cash().unwrap().escrow, None);
    assert_eq!(s.disp.stock("A1"), OPENING - 1);
    assert!(open_vends(&s.store).unwrap().is_empty());
}

#[tokio::test]
async fn cash_short_and_no_change_are_refused_and_nothing_moves() {
    let s = cash_site().await;
    s.coins.insert_coin(E1);
    s.vending.poll_cash().await.unwrap();
    let e = s
        .vending
        .vend(slot("A1"), PayMethod::Cash)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            VendError::Invalid {
                code: "insufficient_credit",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(credit(&s.vending), 100, "the credit stays");
    // 3.00 in, and the tubes hold no 50c, 10c or 20c: 0.50 cannot be paid.
    for t in [1, 2, 3] {
        s.coins.set_tube(t, 0);
    }
    s.coins.insert_coin(E2);
    s.vending.poll_cash().await.unwrap();
    let e = s
        .vending
        .vend(slot("A1"), PayMethod::Cash)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            VendError::Invalid {
                code: "no_change",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(credit(&s.vending), 300);
    assert_eq!(s.disp.stock("A1"), OPENING);
    assert!(super::finished(&s.store).unwrap().is_empty(), "no vend");
    assert_eq!(s.coins.paid_out_minor(), 0);
}

#[tokio::test]
async fn a_product_that_does_not_drop_keeps_the_credit_and_the_lever_returns_it() {
    let s = cash_site().await;
    s.coins.insert_coin(E2);
    s.coins.insert_coin(C50);
    s.vending.poll_cash().await.unwrap();
    s.disp.trouble("A1", [SlotTrouble::Hang]);
    let r = s.vending.vend(slot("A1"), PayMethod::Cash).await.unwrap();
    assert_eq!(r.state(), VendState::Failed);
    assert!(s.store.sale(r.id).unwrap().is_none());
    assert_eq!(credit(&s.vending), 250, "kept for another selection");
    assert_eq!(s.coins.paid_out_minor(), 0);
    // The customer gives up: the coin return lever.
    s.coins.press_return();
    s.vending.poll_cash().await.unwrap();
    assert_eq!(credit(&s.vending), 0);
    assert_eq!(s.coins.paid_out_minor(), 250);
    assert_eq!(moved(&s.store, CashMove::PaidOut), 250);
}

#[tokio::test]
async fn the_lever_pays_back_what_the_tubes_can_and_keeps_the_rest_as_credit() {
    let s = cash_site().await;
    // A 5c coin has no tube (it goes to the cash box): no coin can pay it back.
    assert_eq!(
        s.coins.insert_coin(0),
        outpost_peripherals::changer::CoinRoute::CashBox
    );
    s.coins.insert_coin(E1);
    s.vending.poll_cash().await.unwrap();
    assert_eq!(credit(&s.vending), 105);
    assert_eq!(s.vending.return_credit().await.unwrap(), 5);
    assert_eq!(s.coins.paid_out_minor(), 100);
    assert_eq!(moved(&s.store, CashMove::CoinToCashBox), 5);
    assert_eq!(moved(&s.store, CashMove::PaidOut), 100);
    assert_eq!(s.vending.cash().unwrap().pay_due, None);
}

#[tokio::test]
async fn exact_change_cash_box_and_fault_alerts_are_raised_and_cleared() {
    let s = cash_site().await;
    let raised = |a: &str| {
        alerts::active(&s.store)
            .unwrap()
            .iter()
            .any(|x| x.alert == a)
    };
    // Full tubes change even a 50 euro note for the 2.50 cola.
    let fill = || {
        for t in 1..6 {
            s.coins.set_tube(t, 50);
        }
    };
    fill();
    s.vending.check_cash_levels().await.unwrap();
    assert!(!raised("exact_change"));
    assert!(!raised("cash_box"));
    for t in 0..6 {
        s.coins.set_tube(t, 0);
    }
    s.notes.set_stacker(480);
    s.vending.check_cash_levels().await.unwrap();
    assert!(raised("exact_change"), "empty tubes: exact change only");
    assert!(raised("cash_box"), "480 of 500 notes");
    fill();
    s.notes.set_stacker(10);
    s.vending.check_cash_levels().await.unwrap();
    assert!(!raised("exact_change"));
    assert!(!raised("cash_box"));
    s.notes.remove_cash_box();
    s.coins.coin_jam();
    s.vending.poll_cash().await.unwrap();
    assert!(raised("cash_box"), "cash box out");
    assert!(raised("changer_fault"));
    s.coins.clear_coin_jam();
    s.coins.insert_coin(E1);
    s.notes.replace_cash_box();
    s.vending.poll_cash().await.unwrap();
    s.vending.check_cash_levels().await.unwrap();
    assert!(!raised("changer_fault"), "a coin taken clears it");
    assert!(!raised("cash_box"), "the emptied box is back");
}

// ---- Power cuts at every cash step ---------------------------------------------

/// A device call where the power goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// ESCROW (stack the note).
    Escrow,
    /// The motor.
    Motor,
    /// DISPENSE (the change).
    Payout,
    /// The reader's VEND REQUEST (`authorize`).
    Authorize,
    /// The reader's VEND SUCCESS (`complete`).
    Capture,
    /// The reader's VEND FAILURE (`void`).
    Void,
}

/// The cut: at `step`, before the device sees it or after it acted.
#[derive(Default)]
pub(super) struct Cut {
    pub(super) at: std::sync::Mutex<Option<(Step, bool)>>,
    pub(super) hit: tokio::sync::Notify,
}

impl Cut {
    pub(super) async fn through<T>(
        &self,
        step: Step,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let at = *self.at.lock().unwrap();
        match at {
            Some((s, false)) if s == step => {
                self.hit.notify_one();
                std::future::pending().await
            }
            Some((s, true)) if s == step => {
                let _ = call.await;
                self.hit.notify_one();
                std::future::pending().await
            }
            _ => call.await,
        }
    }
}

pub(super) struct CutChanger(pub(super) Arc<MdbChanger>, pub(super) Arc<Cut>);
pub(super) struct CutValidator(pub(super) Arc<MdbValidator>, pub(super) Arc<Cut>);
pub(super) struct CutMotor(pub(super) Arc<SpiralBoard>, pub(super) Arc<Cut>);

macro_rules! device_via_inner {
    ($t:ty) => {
        #[async_trait]
        impl Device for $t {
            fn core(&self) -> &DeviceCore {
                self.0.core()
            }
            async fn open(&self) -> Result<(), DeviceFault> {
                self.0.open().await
            }
            async fn close(&self) {
                self.0.close().await
            }
            async fn check_health(&self, level: HealthLevel) -> HealthReport {
                self.0.check_health(level).await
            }
        }
    };
}
device_via_inner!(CutChanger);
device_via_inner!(CutValidator);
device_via_inner!(CutMotor);

#[async_trait]
impl CoinChanger for CutChanger {
    fn coin_types(&self) -> Vec<CoinType> {
        self.0.coin_types()
    }
    async fn tubes(&self) -> Result<Vec<TubeLevel>, DeviceFault> {
        self.0.tubes().await
    }
    async fn accept_coins(&self, accept: bool) -> Result<(), DeviceFault> {
        self.0.accept_coins(accept).await
    }
    async fn poll(&self) -> Result<Vec<ChangerEvent>, DeviceFault> {
        self.0.poll().await
    }
    async fn pay_out(&self, key: &CommandKey, amount: i64) -> Result<Payout, DeviceFault> {
        self.1
            .through(Step::Payout, self.0.pay_out(key, amount))
            .await
    }
    async fn payout_status(&self, key: &CommandKey) -> Result<PayoutStatus, DeviceFault> {
        self.0.payout_status(key).await
    }
}

#[async_trait]
impl BillValidator for CutValidator {
    fn bill_types(&self) -> Vec<BillType> {
        self.0.bill_types()
    }
    async fn accept_bills(&self, accept: bool) -> Result<(), DeviceFault> {
        self.0.accept_bills(accept).await
    }
    async fn poll(&self) -> Result<Vec<ValidatorEvent>, DeviceFault> {
        self.0.poll().await
    }
    async fn escrow(&self, key: &CommandKey, stack: bool) -> Result<EscrowOutcome, DeviceFault> {
        self.1
            .through(Step::Escrow, self.0.escrow(key, stack))
            .await
    }
    async fn escrow_status(&self, key: &CommandKey) -> Result<EscrowStatus, DeviceFault> {
        self.0.escrow_status(key).await
    }
    async fn stacker(&self) -> Result<Stacker, DeviceFault> {
        self.0.stacker().await
    }
}

#[async_trait]
impl VendDispenser for CutMotor {
    async fn vend(&self, key: &CommandKey, slot: &str) -> Result<VendOutcome, DeviceFault> {
        self.1.through(Step::Motor, self.0.vend(key, slot)).await
    }
    async fn vend_status(&self, key: &CommandKey) -> Result<VendStatus, DeviceFault> {
        self.0.vend_status(key).await
    }
}

/// One cash vend paid with a 5€ note and a 50c coin (change 3.00), cut at `at`,
/// then the restart (store reopened, new drivers: the validator's RESET gives
/// back a note left in escrow) and recovery. Checks that money adds up: what came
/// in (coins, stacked notes) equals what the vend sold, what was paid out and the
/// credit left; that the change was never paid twice; and that one product
/// dropped at most, sold exactly when it dropped.
async fn cash_vend_cut_at(at: Option<(Step, bool)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = stocked_store(dir.path()).await;
    let coins = ChangerSim::new(ChangerOptions::euro());
    let notes = ValidatorSim::new(ValidatorOptions::euro());
    let disp = SpiralSim::new(6, 8, &[("A1", OPENING)]);
    let cut = Arc::new(Cut::default());
    let devices = VendDevices {
        dispenser: Some(Arc::new(CutMotor(board(&disp).await, cut.clone()))),
        changer: Some(Arc::new(CutChanger(changer(&coins).await, cut.clone()))),
        validator: Some(Arc::new(CutValidator(validator(&notes).await, cut.clone()))),
        ..Default::default()
    };
    let vending = Vending::new(sales(store.clone()), devices, timeouts());
    vending.accept_cash(true).await.unwrap();
    coins.insert_coin(C50);
    notes.insert_bill(N5);
    vending.poll_cash().await.unwrap();
    *cut.at.lock().unwrap() = at;
    let task = tokio::spawn({
        let v = vending.clone();
        async move { v.vend(slot("A1"), PayMethod::Cash).await }
    });
    if at.is_some() {
        tokio::time::timeout(Duration::from_secs(10), cut.hit.notified())
            .await
            .expect("the vend reaches its cut");
        task.abort();
        let _ = task.await;
        drop(vending);
        drop(cut);
        store = reopen(dir.path(), store).await;
        let vending = Vending::new(
            sales(store.clone()),
            VendDevices {
                dispenser: Some(board(&disp).await),
                changer: Some(changer(&coins).await),
                validator: Some(validator(&notes).await),
                ..Default::default()
            },
            timeouts(),
        );
        vending.cash_restarted().await.unwrap();
        let rec = vending.recover().await.unwrap();
        assert_eq!(rec.open, 0, "cut at {at:?}: still open");
        check_cash(&store, &coins, &notes, &disp, at);
    } else {
        let r = task.await.unwrap().unwrap();
        assert_eq!(r.state(), VendState::Completed);
        check_cash(&store, &coins, &notes, &disp, at);
    }
}

fn check_cash(
    store: &Store,
    coins: &ChangerSim,
    notes: &ValidatorSim,
    disp: &SpiralSim,
    at: Option<(Step, bool)>,
) {
    let st = super::cash::state(store).unwrap();
    assert_eq!(
        (
            st.reserved,
            st.stacking.is_some(),
            st.payout.is_some(),
            st.pay_due
        ),
        (None, false, false, None),
        "{at:?}: nothing left in flight: {st:?}"
    );
    let done = super::finished(store).unwrap();
    assert!(done.len() <= 1, "{at:?}: one vend at most");
    let sold: i64 = done
        .iter()
        .filter(|r| r.state() == VendState::Completed)
        .map(|r| r.price.minor())
        .sum();
    let dropped = OPENING - disp.stock("A1");
    let completed = done
        .iter()
        .filter(|r| r.state() == VendState::Completed)
        .count() as u32;
    assert_eq!(
        dropped, completed,
        "{at:?}: one product per sale, none free"
    );
    assert!(dropped <= 1);
    let came_in = 50 + notes.stacked_minor();
    assert_eq!(
        moved(store, CashMove::NoteStacked),
        notes.stacked_minor(),
        "{at:?}: a note is credit exactly when stacked"
    );
    assert_eq!(
        moved(store, CashMove::PaidOut),
        coins.paid_out_minor(),
        "{at:?}: the journal counts every coin paid"
    );
    assert_eq!(
        came_in,
        sold + coins.paid_out_minor() + st.credit,
        "{at:?}: cash in = sold + paid out + credit"
    );
    assert!(
        coins.paid_out_minor() <= came_in - sold,
        "{at:?}: change paid twice"
    );
    if notes.stacked_minor() == 0 {
        assert_eq!(notes.returned_minor(), 500, "{at:?}: the note went back");
    }
}

#[tokio::test]
async fn a_cash_vend_without_a_cut_adds_up() {
    cash_vend_cut_at(None).await;
}

#[tokio::test]
async fn a_power_cut_at_every_cash_step_loses_no_credit_and_pays_no_change_twice() {
    for step in [Step::Escrow, Step::Motor, Step::Payout] {
        for after in [false, true] {
            cash_vend_cut_at(Some((step, after))).await;
        }
    }
}

#[tokio::test]
async fn the_dex_audit_counts_cash_in_and_out_as_the_journal_does() {
    let s = cash_site().await;
    s.vending.record_fitted().await.unwrap();
    s.coins.insert_coin(E2);
    s.coins.insert_coin(E1);
    s.notes.insert_bill(N5);
    s.vending.poll_cash().await.unwrap();
    // 3.00 in coins and the note: the note is stacked for the cola, 5.50 back.
    let r = s.vending.vend(slot("A1"), PayMethod::Cash).await.unwrap();
    assert_eq!(r.state(), VendState::Completed);
    s.coins.insert_coin(C50);
    s.vending.poll_cash().await.unwrap();
    let who = super::dex::DexIdentity {
        unit: "unit-1".into(),
        location: "Lobby".into(),
    };
    let file = super::dex::export(&s.store, &who).unwrap();
    let seg = |tag: &str| -> Vec<i64> {
        let line = file
            .split("\r\n")
            .find(|l| l.starts_with(&format!("{tag}*")))
            .unwrap_or_else(|| panic!("no {tag} in {file}"));
        line.split('*')
            .skip(1)
            .map(|e| e.parse().unwrap_or(-1))
            .collect()
    };
    assert!(file.contains("\r\nCA1*SIM-CHANGER*"), "{file}");
    assert!(file.contains("\r\nBA1*SIM-VALID-01*"), "{file}");
    let ca3 = seg("CA3");
    // Since reset = since initialisation here: 8.50 in, 3.50 coins to the tubes,
    // 5.00 in notes.
    assert_eq!(ca3, [850, 0, 350, 500, 850, 0, 350, 500]);
    let ca4 = seg("CA4");
    assert_eq!(ca4, [550, 0, 550, 0]);
    let ca2 = seg("CA2");
    // Cash in less cash out is the cash sales and the credit still held.
    assert_eq!(ca3[4] - ca4[2], ca2[0] + credit(&s.vending), "{file}");
    assert_eq!(credit(&s.vending), 50);
    assert_eq!(moved(&s.store, CashMove::PaidOut), s.coins.paid_out_minor());
}
