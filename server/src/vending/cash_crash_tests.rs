//! Many cash vends on one machine with power cuts at random cash steps: random coins
//! and notes in, sometimes the coin return lever, a cut (before or after ESCROW, the
//! motor or DISPENSE) on about two vends in three, a restart with new drivers and
//! recovery after each cut. After every vend the money and the stock add up.

use std::sync::Arc;
use std::time::Duration;

use outpost_mocks::sim::changer::ChangerOptions;
use outpost_mocks::sim::validator::ValidatorOptions;
use outpost_mocks::sim::{ChangerSim, SpiralSim, ValidatorSim};
use outpost_peripherals::changer::CoinRoute;

use super::cash_tests::{
    Cut, CutChanger, CutMotor, CutValidator, Step, assert_cash_books, changer, validator, wait,
};
use super::slots;
use super::tests::{board, reopen, sales, slot, stocked_store, timeouts};
use super::{VendDevices, Vending, finished};
use crate::domain::money::Money;
use crate::domain::product::Sku;
use crate::domain::vending::{Climate, PayMethod, SlotConfig, VendState};
use crate::store::Store;

/// Units in the simulated spiral: deeper than any run.
const SPIRAL: u32 = 1_000_000;

struct World {
    coins: ChangerSim,
    notes: ValidatorSim,
    disp: SpiralSim,
    /// Value of every coin the changer took (to a tube or the cash box).
    coins_taken: i64,
    /// Units put into slot A1 by the harness.
    refilled: u32,
}

async fn service(store: &Arc<Store>, w: &World, cut: Option<Arc<Cut>>) -> Vending {
    let (c, v, d) = (
        changer(&w.coins).await,
        validator(&w.notes).await,
        board(&w.disp).await,
    );
    let devices = match cut {
        Some(cut) => VendDevices {
            dispenser: Some(Arc::new(CutMotor(d, cut.clone()))),
            changer: Some(Arc::new(CutChanger(c, cut.clone()))),
            validator: Some(Arc::new(CutValidator(v, cut))),
            ..Default::default()
        },
        None => VendDevices {
            dispenser: Some(d),
            changer: Some(c),
            validator: Some(v),
            ..Default::default()
        },
    };
    Vending::new(sales(store.clone()), devices, timeouts())
}

/// Every invariant, after vend `i`.
fn check(store: &Store, w: &World, i: usize) {
    assert!(
        super::open_vends(store).unwrap().is_empty(),
        "vend {i}: open"
    );
    let done = finished(store).unwrap();
    let completed: Vec<_> = done
        .iter()
        .filter(|r| r.state() == VendState::Completed)
        .collect();
    let sold: i64 = completed.iter().map(|r| r.price.minor()).sum();
    assert_cash_books(
        store,
        &w.coins,
        &w.notes,
        w.coins_taken,
        sold,
        &format!("vend {i}"),
    );
    // One product per sale, none free (a cash vend is never unpaid).
    let dropped = SPIRAL - w.disp.stock("A1");
    assert_eq!(dropped as usize, completed.len(), "vend {i}: drops");
    assert!(done.iter().all(|r| r.state() != VendState::Unpaid));
    let a1 = slots::one(store, slot("A1")).unwrap().unwrap();
    assert_eq!(
        a1.count + dropped,
        super::tests::OPENING + w.refilled,
        "vend {i}: the slot's count"
    );
    for r in &completed {
        let sale = store
            .sale(r.id)
            .unwrap()
            .expect("a sale per completed vend");
        assert_eq!(sale.cart.total, r.price);
    }
}

async fn random_cash_cuts(vends: usize, seed: u64) -> (usize, usize) {
    let mut x = seed;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = stocked_store(dir.path()).await;
    slots::put_one(
        &store,
        SlotConfig {
            slot: slot("A1"),
            sku: Sku::parse("COLA").unwrap(),
            price: Money(250),
            capacity: 200,
            par: 4,
            climate: Climate::Ambient,
        },
    )
    .await
    .unwrap();
    let mut w = World {
        coins: ChangerSim::new(ChangerOptions::euro()),
        notes: ValidatorSim::new(ValidatorOptions::euro()),
        disp: SpiralSim::new(6, 8, &[("A1", SPIRAL)]),
        coins_taken: 0,
        refilled: 0,
    };
    let steps = [Step::Escrow, Step::Motor, Step::Payout];
    let (mut cuts_hit, mut sold) = (0, 0);
    for i in 0..vends {
        let a1 = slots::one(&store, slot("A1")).unwrap().unwrap();
        if a1.count < 10 {
            slots::refill(&store, slot("A1"), 200 - a1.count)
                .await
                .unwrap();
            w.refilled += 200 - a1.count;
        }
        // The route driver tops the tubes up now and then.
        if i % 7 == 0 {
            for t in 1..6 {
                w.coins.set_tube(t, 30);
            }
        }
        let cut = Arc::new(Cut::default());
        let vending = service(&store, &w, Some(cut.clone())).await;
        vending.accept_cash(true).await.unwrap();
        for _ in 0..next(4) {
            let t = next(6) as u8;
            if w.coins.insert_coin(t) != CoinRoute::Returned {
                w.coins_taken += [5, 10, 20, 50, 100, 200][usize::from(t)];
            }
        }
        if next(3) == 0 {
            // Returned at once if a note is still in escrow: no credit either way.
            let _ = w.notes.insert_bill(next(2) as u8);
        }
        if next(10) == 0 {
            w.coins.press_return();
        }
        vending.poll_cash().await.unwrap();
        let at = (next(3) != 0).then(|| (steps[next(3) as usize], next(2) == 0));
        *cut.at.lock().unwrap() = at;
        let task = tokio::spawn({
            let v = vending.clone();
            async move { v.vend(slot("A1"), PayMethod::Cash).await }
        });
        let hit = tokio::select! {
            _ = cut.hit.notified() => true,
            _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("vend {i} hangs"),
            () = wait(&task) => false,
        };
        if hit {
            cuts_hit += 1;
            task.abort();
            let _ = task.await;
            drop(vending);
            drop(cut);
            store = reopen(dir.path(), store).await;
            let vending = service(&store, &w, None).await;
            vending.cash_restarted().await.unwrap();
            let rec = vending.recover().await.unwrap();
            assert_eq!(rec.open, 0, "vend {i} cut at {at:?}: still open");
        } else {
            // Not cut (or the vend never reached its cut: no note, short credit).
            let r = task.await.unwrap();
            if let Ok(r) = r
                && r.state() == VendState::Completed
            {
                sold += 1;
            }
            drop(vending);
        }
        check(&store, &w, i);
    }
    (cuts_hit, sold)
}

/// The bounded run, in the default test run.
#[tokio::test]
async fn random_power_cuts_over_many_cash_vends_keep_the_money_exact() {
    let (cuts, sold) = random_cash_cuts(40, 0x1234_5678_9ABC_DEF1).await;
    println!("40 cash vends: {cuts} cut, {sold} sold uncut");
    assert!(cuts > 5 && sold > 0, "{cuts} cuts, {sold} sold uncut");
}

/// The long run: `OUTPOST_CASH_CRASH_VENDS` cash vends (default 2,000).
/// `cargo test -p outpost-server --lib cash_crash -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "long: cash vends with power cuts; run with --ignored"]
async fn many_cash_vends_with_random_power_cuts() {
    let vends = std::env::var("OUTPOST_CASH_CRASH_VENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let (cuts, sold) = random_cash_cuts(vends, 0x0BAD_CAFE_F00D_D00D).await;
    println!("{vends} cash vends: {cuts} cut, {sold} sold uncut");
    assert!(cuts > 0 && sold > 0);
}
