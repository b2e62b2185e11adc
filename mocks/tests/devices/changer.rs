//! The MDB coin changer: the compliance suite against the driver on the wire
//! simulator and against the trait-level mock, then what only the wire shows
//! (silence mid-payout, payouts over 15 coins, a reset changer), and the change
//! property: what a payout pays is what was asked, or it refuses and pays nothing.

use std::sync::Arc;
use std::time::Duration;

use outpost_mocks::compliance::changer::coin_changer;
use outpost_mocks::mock::changer::MockChanger;
use outpost_mocks::sim::ChangerSim;
use outpost_mocks::sim::changer::ChangerOptions;
use outpost_peripherals::changer::{
    ChangerEvent, ChangerStatus, CoinChanger, CoinRoute, PayoutStatus,
};
use outpost_peripherals::mdb::{ChangerConfig, MdbChanger};
use outpost_peripherals::{CommandKey, Device, DeviceError, ErrorKind};
use proptest::prelude::*;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn config() -> ChangerConfig {
    ChangerConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(5),
        payout_timeout: Duration::from_secs(2),
        drain_quiet: Duration::from_millis(20),
        ..ChangerConfig::default()
    }
}

fn driver(sim: &ChangerSim) -> MdbChanger {
    MdbChanger::with_connector("changer-1", Arc::new(sim.connector("changer")), config())
}

async fn ready(sim: &ChangerSim) -> MdbChanger {
    let d = driver(sim);
    d.open().await.expect("open");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    d
}

fn key(s: &str) -> CommandKey {
    CommandKey(s.into())
}

#[tokio::test]
async fn mdb_changer_on_the_simulator_meets_the_changer_checks() {
    let sim = ChangerSim::new(ChangerOptions::with_coins(&[25, 10], &[10, 10]));
    let d = driver(&sim);
    timeout(LIMIT, coin_changer(&d, &sim))
        .await
        .expect("checks in time");
}

#[tokio::test]
async fn mock_changer_meets_the_changer_checks() {
    let m = MockChanger::closed("changer-mock", &[25, 10], &[10, 10], 100);
    coin_changer(&m, &m).await;
    m.done();
}

#[tokio::test]
async fn euro_changer_reports_routes_identity_and_pays_more_than_fifteen_coins() {
    let sim = ChangerSim::new(ChangerOptions::euro());
    let d = timeout(LIMIT, ready(&sim)).await.expect("open in time");
    let info = d.core().info();
    assert_eq!(info.serial.as_deref(), Some("SIM-CHANGER"), "{info:?}");
    let values: Vec<i64> = d.coin_types().iter().map(|c| c.value_minor).collect();
    assert_eq!(values, [5, 10, 20, 50, 100, 200]);
    assert!(!d.coin_types()[0].has_tube, "5c goes to the cash box");
    d.accept_coins(true).await.unwrap();
    assert_eq!(sim.insert_coin(0), CoinRoute::CashBox);
    assert_eq!(sim.insert_coin(5), CoinRoute::Tube);
    let evs = d.poll().await.unwrap();
    let credit: i64 = evs
        .iter()
        .filter_map(|e| match e {
            ChangerEvent::Deposited {
                value_minor, route, ..
            } if *route != CoinRoute::Returned => Some(*value_minor),
            _ => None,
        })
        .sum();
    assert_eq!(credit, 205);
    // 3.40 from 10c only: 34 coins, three DISPENSEs (15, 15, 4).
    for t in 2..=5 {
        sim.set_tube(t, 0);
    }
    sim.set_tube(1, 40);
    let p = d.pay_out(&key("many"), 340).await.expect("pay");
    assert_eq!((p.paid_minor, p.coins.clone()), (340, vec![(10, 34)]));
    assert_eq!(sim.tubes()[1], 6);
    // A coin jam is a fault the changer reports, and coins are returned meanwhile.
    sim.coin_jam();
    assert_eq!(sim.insert_coin(1), CoinRoute::Returned);
    let evs = d.poll().await.unwrap();
    assert!(evs.contains(&ChangerEvent::Status {
        status: ChangerStatus::CoinJam
    }));
}

#[tokio::test]
async fn a_silent_changer_leaves_the_payout_in_doubt_until_it_answers() {
    let sim = ChangerSim::new(ChangerOptions::with_coins(&[25, 10], &[10, 10]));
    let d = timeout(LIMIT, ready(&sim)).await.expect("open");
    // The DISPENSE is carried out, then the bridge goes silent.
    sim.silent_after_next_dispense();
    match d.pay_out(&key("silent"), 20).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::OutcomeUnknown, "{f:?}"),
        Ok(p) => panic!("no answer, yet paid: {p:?}"),
    }
    assert!(
        d.payout_status(&key("silent")).await.is_err(),
        "no count while silent"
    );
    sim.set_silent(false);
    let s = d.payout_status(&key("silent")).await.expect("status");
    let PayoutStatus::Done(p) = s else {
        panic!("{s:?}")
    };
    assert_eq!(p.paid_minor, sim.paid_out_minor());
    assert_eq!(p.paid_minor, 20, "the DISPENSE went out once");
    // Asking again does not count again.
    assert_eq!(
        d.payout_status(&key("silent")).await,
        Ok(PayoutStatus::Done(p))
    );
}

#[tokio::test]
async fn a_reset_changer_keeps_its_tubes_and_coins_taken_meanwhile_are_not_lost() {
    let sim = ChangerSim::new(ChangerOptions::with_coins(&[25, 10], &[10, 10]));
    let d = timeout(LIMIT, ready(&sim)).await.expect("open");
    d.accept_coins(true).await.unwrap();
    sim.insert_coin(1);
    // A health check polls: the deposit is kept for the next poll.
    d.check_health(outpost_peripherals::HealthLevel::Internal)
        .await;
    let evs = d.poll().await.unwrap();
    assert!(
        evs.iter().any(|e| matches!(
            e,
            ChangerEvent::Deposited {
                value_minor: 10,
                ..
            }
        )),
        "{evs:?}"
    );
    d.close().await;
    let d = timeout(LIMIT, ready(&sim)).await.expect("reopen");
    let tubes = d.tubes().await.unwrap();
    assert_eq!(tubes[1].count, 11, "the coin is still in its tube");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// The change property on the trait-level mock: a payout pays exactly what was
    /// asked, or refuses and nothing leaves the tubes.
    #[test]
    fn a_payout_pays_what_was_asked_or_nothing(
        counts in proptest::collection::vec(0u32..6, 3),
        amounts in proptest::collection::vec(0i64..200, 1..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let m = MockChanger::new("p", &[50, 20, 5], &counts, 100);
            for (i, amount) in amounts.iter().enumerate() {
                let before = m.paid_out_minor();
                let tubes = m.tube_counts();
                match m.pay_out(&CommandKey(format!("k{i}")), *amount).await {
                    Ok(p) => {
                        prop_assert_eq!(p.paid_minor, *amount);
                        prop_assert_eq!(m.paid_out_minor() - before, *amount);
                    }
                    Err(f) => {
                        prop_assert_eq!(f.kind(), ErrorKind::Illegal);
                        prop_assert_eq!(m.paid_out_minor(), before);
                        prop_assert_eq!(m.tube_counts(), tubes);
                    }
                }
            }
            Ok(())
        })?;
    }
}

/// The same property through the driver and the wire, on bounded random tubes and
/// amounts (a fixed seed: the same cases every run).
#[tokio::test]
async fn through_the_wire_a_payout_pays_what_was_asked_or_nothing() {
    let mut x: u64 = 0x0DDB_1A5E_5BAD_5EED;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    timeout(LIMIT, async {
        for round in 0..6 {
            let counts: Vec<u8> = (0..3).map(|_| next(5) as u8).collect();
            let sim = ChangerSim::new(ChangerOptions::with_coins(&[50, 20, 5], &counts));
            let d = ready(&sim).await;
            for i in 0..6 {
                let amount = next(160) as i64;
                let before = sim.paid_out_minor();
                let tubes = sim.tubes();
                match d.pay_out(&key(&format!("r{round}-{i}")), amount).await {
                    Ok(p) => {
                        assert_eq!(p.paid_minor, amount);
                        assert_eq!(sim.paid_out_minor() - before, amount);
                    }
                    Err(f) => {
                        assert_eq!(f.kind(), ErrorKind::Illegal, "{f:?}");
                        assert_eq!(sim.paid_out_minor(), before, "refused, yet paid");
                        assert_eq!(sim.tubes(), tubes);
                    }
                }
            }
        }
    })
    .await
    .expect("in time");
}
