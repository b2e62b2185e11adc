//! Vends on the MDB cashless wire simulator and the OSB/1 spiral board simulator,
//! through the real drivers, below the HTTP layer: the happy path, each failure, and a power cut
//! at every step of a vend.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use outpost_mocks::sim::SpiralSim;
use outpost_mocks::sim::mdb::{Charge, Decision, MdbOptions, MdbSim};
use outpost_mocks::sim::spiral::{SlotTrouble, SpiralFault};
use outpost_peripherals::mdb::{MdbCashless, MdbConfig};
use outpost_peripherals::payment::{
    KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest, PaymentTerminal,
};
use outpost_peripherals::spiral::{SpiralBoard, SpiralConfig};
use outpost_peripherals::vend::{VendDispenser, VendOutcome, VendStatus};
use outpost_peripherals::{CommandKey, Device, DeviceCore, DeviceFault, HealthLevel, HealthReport};

use super::slots::{self, SlotMovementKind};
use super::{VendDevices, VendError, VendTimeouts, Vending, finished, open_vends};
use crate::domain::money::{Currency, Money};
use crate::domain::pricing::TaxConfig;
use crate::domain::product::{Sku, parse_product_json};
use crate::domain::sale::TenderMethod;
use crate::domain::vending::{Climate, PayMethod, SlotConfig, SlotId, VendState};
use crate::sales::{Sales, SalesConfig};
use crate::store::Store;
use crate::store::catalog::ImportMode;

pub(super) const OPENING: u32 = 6;
/// Units in the simulated board's spiral for the power-cut runs.
const MOCK_STOCK: u32 = 1_000_000;

pub(super) fn slot(s: &str) -> SlotId {
    SlotId::parse(s).unwrap()
}

fn mdb_config() -> MdbConfig {
    MdbConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(5),
        session_wait: Duration::from_millis(300),
        response_timeout: Some(Duration::from_millis(200)),
        drain_quiet: Duration::from_millis(20),
        ..MdbConfig::default()
    }
}

pub(super) async fn reader(sim: &MdbSim) -> Arc<MdbCashless> {
    let d = MdbCashless::with_connector("reader", Arc::new(sim.connector("mdb")), mdb_config());
    d.open().await.expect("reader opens");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    Arc::new(d)
}

pub(super) async fn board(sim: &SpiralSim) -> Arc<SpiralBoard> {
    let d = SpiralBoard::with_connector(
        "spirals",
        Arc::new(sim.connector("osb")),
        SpiralConfig {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_millis(300),
            vend_timeout: Duration::from_millis(300),
            drain_quiet: Duration::from_millis(20),
        },
    );
    d.open().await.expect("board opens");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    Arc::new(d)
}

pub(super) fn sales(store: Arc<Store>) -> Sales {
    Sales::new(
        store,
        None,
        SalesConfig {
            store_name: "Vending".into(),
            currency: Currency::EUR,
            tax: TaxConfig {
                prices_include_tax: true,
                rates_bp: [("standard".to_owned(), 1900)].into(),
            },
            payment_timeout: Duration::from_secs(2),
            receipt_width: 40,
            receipt_header: Vec::new(),
            variable_measure: Vec::new(),
        },
    )
}

/// A store with two products and slot A1 (cola, 2.50, six units) and A2 (crisps,
/// empty).
pub(super) async fn stocked_store(dir: &Path) -> Arc<Store> {
    let store = crate::store::crypt::test_store(dir);
    let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
    for (i, (sku, name)) in [("COLA", "Cola 0.33"), ("CRISPS", "Crisps")]
        .iter()
        .enumerate()
    {
        let p = parse_product_json(
            format!(
                r#"{{"sku":"{sku}","name":"{name}","category":"snacks","price":200,"currency":"EUR","tax_class":"standard"}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        imp.add(&p, i as u64 + 1).unwrap().unwrap();
    }
    imp.finish("v1").unwrap();
    for (s, sku) in [("A1", "COLA"), ("A2", "CRISPS")] {
        slots::put_one(
            &store,
            SlotConfig {
                slot: slot(s),
                sku: Sku::parse(sku).unwrap(),
                price: Money(250),
                capacity: 10,
                par: 4,
                climate: Climate::Ambient,
            },
        )
        .await
        .unwrap();
    }
    slots::refill(&store, slot("A1"), OPENING).await.unwrap();
    store
}

pub(super) struct Site {
    _dir: tempfile::TempDir,
    pub(super) store: Arc<Store>,
    pub(super) sim: MdbSim,
    pub(super) disp: SpiralSim,
    pub(super) vending: Vending,
}

pub(super) fn timeouts() -> VendTimeouts {
    VendTimeouts {
        authorize: Duration::from_secs(2),
        dispense: Duration::from_secs(1),
        call: Duration::from_millis(500),
    }
}

pub(super) async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let store = stocked_store(dir.path()).await;
    let sim = MdbSim::new(MdbOptions::default());
    let reader = reader(&sim).await;
    let disp = SpiralSim::new(6, 8, &[("A1", OPENING), ("A2", 0)]);
    let vending = Vending::new(
        sales(store.clone()),
        VendDevices {
            cashless: Some(reader.clone()),
            dispenser: Some(board(&disp).await),
            ..Default::default()
        },
        timeouts(),
    );
    Site {
        _dir: dir,
        store,
        sim,
        disp,
        vending,
    }
}

pub(super) fn settled(sim: &MdbSim) -> usize {
    sim.ledger()
        .iter()
        .filter(|e| e.charge == Charge::Settled)
        .count()
}

pub(super) fn held(sim: &MdbSim) -> usize {
    sim.ledger()
        .iter()
        .filter(|e| e.charge == Charge::Held)
        .count()
}

#[tokio::test]
async fn a_paid_vend_drops_one_product_charges_once_and_sells_with_the_slot_on_the_line() {
    let s = site().await;
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Completed, "{r:?}");
    assert_eq!(settled(&s.sim), 1);
    assert_eq!(s.disp.stock("A1"), OPENING - 1);
    assert_eq!(s.disp.dispensed(&r.key), 1);
    let sale = s.store.sale(r.id).unwrap().expect("the sale is journaled");
    assert_eq!(sale.cart.total, Money(250));
    assert_eq!(sale.cart.lines[0].slot.as_deref(), Some("A1"));
    assert_eq!(sale.tenders[0].method, TenderMethod::Card);
    assert_eq!(sale.tenders[0].payment_key.as_deref(), Some(r.key.as_str()));
    let a1 = slots::one(&s.store, slot("A1")).unwrap().unwrap();
    assert_eq!(a1.count, OPENING - 1);
    assert_eq!(s.store.stock("COLA").unwrap(), -1);
    let m = slots::movements(&s.store, Some(slot("A1")), 10).unwrap();
    assert_eq!(m.last().unwrap().kind, SlotMovementKind::Vend);
    assert_eq!(m.last().unwrap().vend, Some(r.id));
    assert!(open_vends(&s.store).unwrap().is_empty());
}

#[tokio::test]
async fn a_declined_card_sells_nothing_and_drops_nothing() {
    let s = site().await;
    s.sim.decide_next([Decision::Deny]);
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Failed);
    assert!(
        r.failure.as_deref().unwrap().starts_with("declined"),
        "{r:?}"
    );
    assert_eq!(s.disp.stock("A1"), OPENING);
    assert_eq!(settled(&s.sim), 0);
    assert!(s.store.sale(r.id).unwrap().is_none());
    assert_eq!(
        slots::one(&s.store, slot("A1")).unwrap().unwrap().count,
        OPENING
    );
}

#[tokio::test]
async fn no_card_presented_in_time_sells_nothing() {
    // The customer walked away (or took the card away) before the reader started a
    // session: the reader never held money.
    let s = site().await;
    s.sim.present_card(None);
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Failed);
    assert!(s.sim.ledger().is_empty());
    assert_eq!(s.disp.stock("A1"), OPENING);
}

#[tokio::test]
async fn a_card_taken_away_during_the_vend_sells_nothing_and_drops_nothing() {
    // The customer pulls the card before the reader approved: the reader cancels the
    // session (SESSION CANCEL REQUEST) and denies the vend.
    let s = site().await;
    s.sim.decide_next([Decision::CardRemoved]);
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Failed);
    assert!(
        r.failure
            .as_deref()
            .unwrap()
            .contains("card was taken away"),
        "{r:?}"
    );
    assert!(s.sim.ledger().is_empty());
    assert_eq!(s.disp.stock("A1"), OPENING);
    assert!(s.store.sale(r.id).unwrap().is_none());
    // The next customer's card sells.
    s.sim.present_card(Some(50_000));
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Completed, "{r:?}");
    assert_eq!(settled(&s.sim), 1);
}

#[tokio::test]
async fn a_drop_not_seen_gives_the_money_back() {
    let s = site().await;
    s.disp.trouble("A1", [SlotTrouble::Hang]);
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Failed);
    assert_eq!(
        r.fault,
        Some(crate::domain::vending::vend::VendFault::NotDispensed)
    );
    let ledger = s.sim.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].charge, Charge::Refunded);
    assert!(s.store.sale(r.id).unwrap().is_none());
    assert_eq!(
        slots::one(&s.store, slot("A1")).unwrap().unwrap().count,
        OPENING
    );
}

#[tokio::test]
async fn a_jammed_motor_or_a_command_lost_before_it_ran_gives_the_money_back() {
    let s = site().await;
    s.disp.trouble("A1", [SlotTrouble::Jam]);
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Failed);
    assert!(r.failure.as_deref().unwrap().contains("jammed"), "{r:?}");
    // The board loses the command before the motor runs: no answer, and asked about
    // the key it says it never saw it.
    s.disp.fault_next([SpiralFault::Swallow]);
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Failed);
    let ledger = s.sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert!(
        ledger.iter().all(|e| e.charge == Charge::Refunded),
        "{ledger:?}"
    );
    assert_eq!(s.disp.stock("A1"), OPENING);
}

#[tokio::test]
async fn a_lost_dispenser_answer_is_asked_about_and_the_drop_is_charged_once() {
    let s = site().await;
    s.disp.fault_next([SpiralFault::LoseReply]);
    let r = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap();
    assert_eq!(r.state(), VendState::Completed);
    assert_eq!(settled(&s.sim), 1);
    assert_eq!(s.disp.stock("A1"), OPENING - 1);
}

#[tokio::test]
async fn an_empty_slot_a_missing_slot_and_a_slot_needing_a_count_are_refused_before_any_device() {
    let s = site().await;
    for (name, want) in [("A2", "empty"), ("B1", "no slot")] {
        let e = s
            .vending
            .vend(slot(name), PayMethod::Cashless)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(want), "{name}: {e}");
    }
    slots::put_one(
        &s.store,
        SlotConfig {
            slot: slot("A1"),
            sku: Sku::parse("CRISPS").unwrap(),
            price: Money(150),
            capacity: 10,
            par: 4,
            climate: Climate::Ambient,
        },
    )
    .await
    .unwrap();
    let e = s
        .vending
        .vend(slot("A1"), PayMethod::Cashless)
        .await
        .unwrap_err();
    assert!(matches!(e, VendError::NotSellable { .. }), "{e}");
    assert!(s.sim.ledger().is_empty());
    // A count clears it, journaling the difference against the store's stock.
    let a1 = slots::count(&s.store, slot("A1"), 5, Some("swapped product".into()))
        .await
        .unwrap();
    assert!(!a1.needs_count);
    assert_eq!(s.store.stock("CRISPS").unwrap(), -1);
}

#[tokio::test]
async fn cash_is_refused_on_a_machine_without_a_changer_or_validator() {
    let s = site().await;
    let e = s
        .vending
        .vend(slot("A1"), PayMethod::Cash)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            VendError::Invalid {
                code: "method_not_supported",
                ..
            }
        ),
        "{e}"
    );
    assert!(open_vends(&s.store).unwrap().is_empty());
}

// ---- Power cuts -------------------------------------------------------------------

/// Where the power goes: at the `at`-th device call of the vend (0-based), before the
/// device sees it or after it acted but before Outpost hears the answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct CutAt {
    pub(super) at: usize,
    pub(super) after: bool,
    /// The whole machine loses its power, the reader too (it comes back reset); else
    /// only the controller restarts (killed, or its own power supply) and the reader
    /// keeps its session.
    pub(super) machine: bool,
}

/// Counts device calls and, at the cut, never returns: the test then aborts the vend
/// as a power cut would stop the process.
#[derive(Default)]
pub(super) struct PowerCut {
    pub(super) calls: AtomicUsize,
    pub(super) cut: std::sync::Mutex<Option<CutAt>>,
    pub(super) hit: tokio::sync::Notify,
}

impl PowerCut {
    /// Run `call` unless this is the cut.
    pub(super) async fn through<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let cut = *self.cut.lock().unwrap();
        match cut {
            Some(c) if c.at == n && !c.after => {
                self.hit.notify_one();
                std::future::pending().await
            }
            Some(c) if c.at == n => {
                let _ = call.await;
                self.hit.notify_one();
                std::future::pending().await
            }
            _ => call.await,
        }
    }
}

struct CutReader {
    inner: Arc<MdbCashless>,
    power: Arc<PowerCut>,
}

#[async_trait]
impl Device for CutReader {
    fn core(&self) -> &DeviceCore {
        self.inner.core()
    }
    async fn open(&self) -> Result<(), DeviceFault> {
        self.inner.open().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
    async fn check_health(&self, level: HealthLevel) -> HealthReport {
        self.inner.check_health(level).await
    }
}

#[async_trait]
impl PaymentTerminal for CutReader {
    async fn authorize(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        self.power.through(self.inner.authorize(req)).await
    }
    async fn complete(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        self.power.through(self.inner.complete(key)).await
    }
    async fn abort(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        self.power.through(self.inner.abort(key)).await
    }
    async fn void(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        self.power.through(self.inner.void(key)).await
    }
    async fn refund(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        self.power.through(self.inner.refund(req)).await
    }
    async fn status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        self.power.through(self.inner.status(key)).await
    }
    async fn resume(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        self.power.through(self.inner.resume(key)).await
    }
}

pub(super) struct CutVend {
    pub(super) inner: Arc<SpiralBoard>,
    pub(super) power: Arc<PowerCut>,
}

#[async_trait]
impl Device for CutVend {
    fn core(&self) -> &DeviceCore {
        self.inner.core()
    }
    async fn open(&self) -> Result<(), DeviceFault> {
        self.inner.open().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
    async fn check_health(&self, level: HealthLevel) -> HealthReport {
        self.inner.check_health(level).await
    }
}

#[async_trait]
impl VendDispenser for CutVend {
    async fn vend(&self, key: &CommandKey, slot: &str) -> Result<VendOutcome, DeviceFault> {
        self.power.through(self.inner.vend(key, slot)).await
    }
    async fn vend_status(&self, key: &CommandKey) -> Result<VendStatus, DeviceFault> {
        self.power.through(self.inner.vend_status(key)).await
    }
}

/// What the machine's world holds after every vend finished.
struct Totals {
    settled: usize,
    completed: usize,
    unpaid: usize,
    in_doubt: usize,
    failed: usize,
}

/// Run `vends` vends on one site, cutting the power at `cut(i)` for vend `i` (none:
/// no cut), restarting (a new reader driver, which resets the reader, and a new
/// service over the store reopened from disk) and recovering after each cut.
/// Checks the invariants after every vend and returns the totals.
async fn vends_with_cuts(vends: usize, mut cut: impl FnMut(usize) -> Option<CutAt>) -> Totals {
    // Every check reads the whole journal: on long runs, every 100th vend and the
    // last (a broken total stays broken, so it is still caught).
    let every = if vends > 1000 { 100 } else { 1 };
    let dir = tempfile::tempdir().unwrap();
    let opening = 200;
    let mut refilled = 0u32;
    let mut store = stocked_store(dir.path()).await;
    slots::put_one(
        &store,
        SlotConfig {
            slot: slot("A1"),
            sku: Sku::parse("COLA").unwrap(),
            price: Money(250),
            capacity: 200,
            par: 4,
            climate: Climate::Chilled,
        },
    )
    .await
    .unwrap();
    slots::refill(&store, slot("A1"), opening - OPENING)
        .await
        .unwrap();
    let sim = MdbSim::new(MdbOptions::default());
    let disp = SpiralSim::new(6, 8, &[("A1", MOCK_STOCK)]);
    let mut board_now = board(&disp).await;
    let mut reader_now = reader(&sim).await;
    for i in 0..vends {
        // The technician's visit: the slot tops up when low (the simulated spiral
        // is deep enough for any run).
        let a1 = slots::one(&store, slot("A1")).unwrap().unwrap();
        if a1.count < 10 {
            slots::refill(&store, slot("A1"), 200 - a1.count)
                .await
                .unwrap();
            refilled += 200 - a1.count;
        }
        let power = Arc::new(PowerCut::default());
        let devices = VendDevices {
            cashless: Some(Arc::new(CutReader {
                inner: reader_now.clone(),
                power: power.clone(),
            })),
            dispenser: Some(Arc::new(CutVend {
                inner: board_now.clone(),
                power: power.clone(),
            })),
            ..Default::default()
        };
        let vending = Vending::new(sales(store.clone()), devices, timeouts());
        let this_cut = cut(i);
        *power.cut.lock().unwrap() = this_cut;
        let task = tokio::spawn({
            let v = vending.clone();
            async move { v.vend(slot("A1"), PayMethod::Cashless).await }
        });
        if this_cut.is_some() {
            tokio::time::timeout(Duration::from_secs(10), power.hit.notified())
                .await
                .expect("the vend reaches its cut");
            task.abort();
            let _ = task.await;
            drop(vending);
            // The restart: the store reopened from disk, a new reader driver (its
            // journal of keys is gone; it finds the reader's session still open, or
            // the reader reset after a whole-machine cut).
            drop(power);
            if this_cut.is_some_and(|c| c.machine) {
                sim.power_cut();
            }
            store = reopen(dir.path(), store).await;
            reader_now = reader(&sim).await;
            board_now = board(&disp).await;
            let vending = Vending::new(
                sales(store.clone()),
                VendDevices {
                    cashless: Some(reader_now.clone()),
                    dispenser: Some(board_now.clone()),
                    ..Default::default()
                },
                timeouts(),
            );
            let rec = vending.recover().await.unwrap();
            assert_eq!(rec.open, 0, "vend {i} cut at {this_cut:?} still open");
        } else {
            let r = task.await.unwrap().unwrap();
            assert!(r.state().is_final());
        }
        if i % every == every - 1 || i + 1 == vends {
            check(&store, &sim, &disp, opening + refilled, i, this_cut);
        }
        if (i + 1) % 1000 == 0 {
            println!("{} vends done", i + 1);
        }
    }
    let done = finished(&store).unwrap();
    let count = |s| done.iter().filter(|r| r.state() == s).count();
    Totals {
        settled: settled(&sim),
        completed: count(VendState::Completed),
        unpaid: count(VendState::Unpaid),
        in_doubt: done.iter().filter(|r| r.capture_in_doubt).count(),
        failed: count(VendState::Failed),
    }
}

pub(super) async fn reopen(dir: &Path, store: Arc<Store>) -> Arc<Store> {
    // Every clone is gone with the service; wait for the writer thread to let go.
    let mut store = store;
    for _ in 0..200 {
        match Arc::try_unwrap(store) {
            Ok(s) => {
                drop(s);
                return crate::store::crypt::test_store(dir);
            }
            Err(s) => {
                store = s;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    panic!("the store is still held after the restart");
}

fn check(
    store: &Store,
    sim: &MdbSim,
    disp: &SpiralSim,
    opening: u32,
    i: usize,
    cut: Option<CutAt>,
) {
    let done = finished(store).unwrap();
    let completed = done
        .iter()
        .filter(|r| r.state() == VendState::Completed)
        .count();
    let unpaid = done
        .iter()
        .filter(|r| r.state() == VendState::Unpaid)
        .count();
    let ctx = format!("after vend {i} cut at {cut:?}");
    assert!(open_vends(store).unwrap().is_empty(), "{ctx}");
    // Every completed vend is charged once; the only charges beyond them are unpaid
    // vends whose VEND SUCCESS reached the reader just before the whole machine lost
    // its power (in doubt to Outpost: the reset reader cannot be asked); nothing is
    // left held by the reader.
    let in_doubt = done
        .iter()
        .filter(|r| r.state() == VendState::Unpaid && r.capture_in_doubt)
        .count();
    assert!(
        settled(sim) >= completed && settled(sim) <= completed + in_doubt,
        "{ctx}: {} charges for {completed} completed and {in_doubt} in doubt",
        settled(sim)
    );
    assert_eq!(held(sim), 0, "{ctx}: a charge is still held");
    // Every product that dropped is a completed or an unpaid vend: one per vend.
    let dropped = disp.dispensed_total() as usize;
    assert_eq!(dropped, completed + unpaid, "{ctx}: products");
    // The slot's count equals its movements (refills, vends), and refills less drops.
    let a1 = slots::one(store, slot("A1")).unwrap().unwrap();
    let moved: i64 = slots::movements(store, Some(slot("A1")), usize::MAX)
        .unwrap()
        .iter()
        .map(|m| m.delta)
        .sum();
    assert_eq!(i64::from(a1.count), moved, "{ctx}: slot count vs movements");
    assert_eq!(
        a1.count,
        opening - dropped as u32,
        "{ctx}: slot count vs drops"
    );
    // One sale per completed vend, each for one unit.
    let sales = store.sales_after(None, 100_000).unwrap();
    assert_eq!(sales.len(), completed, "{ctx}: sales");
}

/// Device calls of a vend with no fault: authorize, vend, complete.
const CALLS: usize = 3;

#[tokio::test]
async fn a_power_cut_before_and_after_every_device_call_never_charges_without_a_product() {
    let mut cuts = vec![None];
    for at in 0..CALLS {
        for after in [false, true] {
            cuts.push(Some(CutAt {
                at,
                after,
                machine: false,
            }));
            cuts.push(None);
        }
    }
    let n = cuts.len();
    let t = vends_with_cuts(n, |i| cuts[i]).await;
    assert_eq!(t.completed + t.unpaid + t.failed, n);
    // The reader keeps its session through the controller's restart: every cut
    // before the drop sold nothing and charged nothing (VEND FAILURE, or nothing
    // held), and the three after the drop are finished with VEND SUCCESS on the
    // kept session (the one after VEND SUCCESS reached the reader is told so by
    // COMMAND OUT OF SEQUENCE): sold, charged once each.
    assert_eq!(t.completed, n - 3);
    assert_eq!(t.failed, 3, "{} failed", t.failed);
    assert_eq!(t.unpaid, 0, "{} unpaid", t.unpaid);
    assert_eq!(t.settled, t.completed);
}

/// The whole machine loses its power after the drop: the reader comes back reset
/// and has released an approval that never got VEND SUCCESS. The vend is unpaid;
/// in doubt from `capturing` on (VEND SUCCESS may have reached the reader), and
/// charged only when it did.
#[tokio::test]
async fn a_whole_machine_power_cut_after_the_drop_leaves_the_vend_unpaid_and_in_doubt_from_capturing()
 {
    let cuts = [
        None,
        Some((1, true)),
        None,
        Some((2, false)),
        None,
        Some((2, true)),
        None,
    ]
    .map(|c| {
        c.map(|(at, after)| CutAt {
            at,
            after,
            machine: true,
        })
    });
    let t = vends_with_cuts(cuts.len(), |i| cuts[i]).await;
    assert_eq!((t.completed, t.unpaid, t.failed), (4, 3, 0));
    assert_eq!(t.in_doubt, 2);
    assert_eq!(t.settled, t.completed + 1);
}

// The random cuts over many vends, cashless and cash mixed: `mixed_crash_tests.rs`.
