//! The MDB cashless driver against the MDB bridge simulator: the payment compliance
//! checks that MDB level 1 can meet, then lost replies, silence and resets mid-vend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use outpost_mocks::compliance::payment::{self, Fault, PaymentHarness};
use outpost_mocks::sim::mdb::{Charge, Decision, MdbFault, MdbOptions, MdbSim};
use outpost_peripherals::mdb::{MdbCashless, MdbConfig};
use outpost_peripherals::payment::{
    Approval, KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest, PaymentTerminal,
};
use outpost_peripherals::{Device, DeviceError, ErrorKind};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn config() -> MdbConfig {
    MdbConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(10),
        session_wait: Duration::from_secs(2),
        response_timeout: Some(Duration::from_millis(400)),
        drain_quiet: Duration::from_millis(30),
        ..MdbConfig::default()
    }
}

fn driver(sim: &MdbSim, cfg: MdbConfig) -> MdbCashless {
    MdbCashless::with_connector("reader-1", Arc::new(sim.connector("mdb")), cfg)
}

async fn ready(sim: &MdbSim) -> MdbCashless {
    let d = driver(sim, config());
    d.open().await.expect("open");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    d
}

fn req(key: &str, amount_minor: i64) -> PaymentRequest {
    PaymentRequest {
        key: PaymentKey(key.into()),
        amount_minor,
        currency: "EUR".into(),
        instrument: outpost_peripherals::payment::Instrument::Any,
    }
}

fn charges(sim: &MdbSim, d: &MdbCashless, key: &str) -> u32 {
    d.item_of(&PaymentKey(key.into()))
        .map_or(0, |item| sim.charge_count(item))
}

struct Harness {
    sim: MdbSim,
    d: MdbCashless,
}

#[async_trait]
impl PaymentHarness for Harness {
    fn terminal(&self) -> &dyn PaymentTerminal {
        &self.d
    }
    async fn unready(&self) -> Box<dyn PaymentTerminal> {
        Box::new(driver(&self.sim, config()))
    }
    fn next(&self, fault: Fault) {
        match fault {
            Fault::Approve => self.sim.decide_next([Decision::Approve]),
            Fault::Decline => self.sim.decide_next([Decision::Deny]),
            Fault::LoseResponse => {
                self.sim.decide_next([Decision::Approve]);
                self.sim.fault_next_vend([MdbFault::LoseReply]);
            }
        }
    }
    fn charge_count(&self, key: &str) -> u32 {
        charges(&self.sim, &self.d, key)
    }
    fn key_prefix(&self) -> String {
        "mdb".into()
    }
}

/// Every payment check MDB level 1 can meet. It has no refund, and one vend at a
/// time: an approval must be completed or voided before the next, so the test
/// completes what a check leaves approved.
#[tokio::test]
async fn mdb_driver_against_the_simulator_meets_the_payment_checks_level_1_can() {
    let sim = MdbSim::new(MdbOptions::default());
    let h = Harness {
        d: ready(&sim).await,
        sim: sim.clone(),
    };
    let done = |name: &str| PaymentKey(format!("mdb-{name}"));
    timeout(LIMIT, async {
        payment::refuses_before_ready(&h).await;
        payment::unknown_key(&h).await;
        payment::approve(&h).await;
        payment::decline(&h).await;
        payment::lost_response_is_resolved_by_status(&h).await;
        h.d.complete(&done("lost"))
            .await
            .expect("complete the resolved vend");
        payment::reused_key_is_refused(&h).await;
        h.d.complete(&done("reused")).await.expect("complete");
        payment::void_then_status_reversed(&h).await;
        payment::abort(&h).await;
    })
    .await
    .expect("checks in time");
    let r = h.d.refund(&req("mdb-refund", 100)).await;
    assert!(matches!(r, Err(PaymentError::Illegal(_))), "{r:?}");
    let settled = sim
        .ledger()
        .iter()
        .filter(|e| e.charge == Charge::Settled)
        .count();
    assert_eq!(
        settled, 3,
        "approve, lost and reused settled; void refunded"
    );
}

/// The proof the issue asks for: the bridge goes silent mid-vend; the caller gets
/// outcome unknown, status keeps saying unknown while it is silent, and resolves to
/// the truth (approved, charged once) when it answers again.
#[tokio::test]
async fn mdb_lost_reply_is_outcome_unknown_then_status_resolves() {
    let sim = MdbSim::new(MdbOptions::default());
    let d = ready(&sim).await;
    sim.fault_next_vend([MdbFault::LoseReply]);
    let out = d.authorize(&req("k1", 250)).await;
    assert!(
        matches!(out, Err(PaymentError::OutcomeUnknown(_))),
        "{out:?}"
    );
    sim.set_silent(true);
    let st = d.status(&PaymentKey("k1".into())).await;
    assert!(matches!(st, Err(PaymentError::OutcomeUnknown(_))), "{st:?}");
    sim.set_silent(false);
    let st = d.status(&PaymentKey("k1".into())).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
        "{st:?}"
    );
    assert_eq!(charges(&sim, &d, "k1"), 1);
    d.complete(&PaymentKey("k1".into())).await.unwrap();
    assert_eq!(sim.ledger()[0].charge, Charge::Settled);
    assert_eq!(sim.ledger().len(), 1, "one approval, never a second");
}

#[tokio::test]
async fn a_vend_request_that_never_reached_the_reader_resolves_to_unknown_with_nothing_charged() {
    let sim = MdbSim::new(MdbOptions::default());
    let d = ready(&sim).await;
    sim.fault_next_vend([MdbFault::Swallow]);
    let out = d.authorize(&req("k2", 100)).await;
    assert!(
        matches!(out, Err(PaymentError::OutcomeUnknown(_))),
        "{out:?}"
    );
    let key = PaymentKey("k2".into());
    // Within the reader's response time it may still be deciding.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let st = loop {
        let st = d.status(&key).await.expect("bridge answers");
        if st != KeyStatus::InProgress || tokio::time::Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(st, KeyStatus::Unknown);
    assert!(sim.ledger().is_empty(), "nothing was approved");
    // The reader is usable again: the next vend goes through.
    assert!(matches!(
        d.authorize(&req("k3", 100)).await,
        Ok(Outcome::Approved(_))
    ));
    d.complete(&PaymentKey("k3".into())).await.unwrap();
}

#[tokio::test]
async fn garbage_and_no_answer_mid_vend_are_outcome_unknown_and_resolve() {
    for fault in [
        MdbFault::Garbage(b"D 05ZZ\r\n".to_vec()),
        MdbFault::NoResponse,
    ] {
        let sim = MdbSim::new(MdbOptions::default());
        let d = ready(&sim).await;
        sim.fault_next_vend([fault.clone()]);
        let out = d.authorize(&req("g1", 120)).await;
        assert!(
            matches!(out, Err(PaymentError::OutcomeUnknown(_))),
            "{fault:?}: {out:?}"
        );
        let st = d.status(&PaymentKey("g1".into())).await;
        assert!(
            matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
            "{fault:?}: {st:?}"
        );
        assert_eq!(charges(&sim, &d, "g1"), 1);
    }
}

#[tokio::test]
async fn a_reset_at_reopen_releases_an_approval_never_completed() {
    // The machine lost its power, the reader too: it comes back reporting JUST
    // RESET, the driver resets it, and the approval is gone.
    let sim = MdbSim::new(MdbOptions::default());
    let d = ready(&sim).await;
    assert!(matches!(
        d.authorize(&req("r1", 300)).await,
        Ok(Outcome::Approved(_))
    ));
    assert_eq!(charges(&sim, &d, "r1"), 1);
    d.close().await;
    sim.power_cut();
    d.open().await.unwrap();
    assert_eq!(
        d.status(&PaymentKey("r1".into())).await,
        Ok(KeyStatus::Reversed)
    );
    assert_eq!(
        sim.ledger()[0].charge,
        Charge::Released,
        "the held money went back"
    );
    assert_eq!(charges(&sim, &d, "r1"), 1, "one approval, never repeated");
}

/// A second driver on the same reader, as after a restart of the controller: the
/// reader kept its power and its session.
async fn restarted(sim: &MdbSim) -> MdbCashless {
    ready(sim).await
}

#[tokio::test]
async fn a_session_kept_through_a_controller_restart_is_finished_under_the_resumed_key() {
    let key = PaymentKey("k1".into());
    // Approved, then the controller restarts before VEND SUCCESS.
    let sim = MdbSim::new(MdbOptions::default());
    let first = ready(&sim).await;
    assert!(matches!(
        first.authorize(&req("k1", 300)).await,
        Ok(Outcome::Approved(_))
    ));
    drop(first);
    let d = restarted(&sim).await;
    assert_eq!(sim.ledger()[0].charge, Charge::Held, "open did not reset");
    assert_eq!(d.resume(&key).await, Ok(KeyStatus::InProgress));
    d.complete(&key).await.unwrap();
    assert_eq!(sim.ledger()[0].charge, Charge::Settled);
    assert_eq!(
        d.status(&key).await,
        Ok(KeyStatus::Done(Outcome::Approved(Approval {
            auth_code: "MDB65535".into(),
            ..Approval::default()
        })))
    );
    // The reader was reset after the session ended, and sells again.
    assert!(matches!(
        d.authorize(&req("k2", 100)).await,
        Ok(Outcome::Approved(_))
    ));
    d.complete(&PaymentKey("k2".into())).await.unwrap();
    assert_eq!(sim.ledger().len(), 2);
    assert!(sim.ledger().iter().all(|e| e.charge == Charge::Settled));

    // VEND SUCCESS reached the reader, the controller restarted before hearing
    // the rest: VEND SUCCESS again is out of sequence, the charge already taken.
    let sim = MdbSim::new(MdbOptions::default());
    let first = ready(&sim).await;
    first.authorize(&req("k1", 300)).await.unwrap();
    first.complete(&key).await.unwrap();
    drop(first);
    let d = restarted(&sim).await;
    d.resume(&key).await.unwrap();
    d.complete(&key).await.unwrap();
    assert_eq!(sim.ledger().len(), 1);
    assert_eq!(sim.ledger()[0].charge, Charge::Settled, "charged once");

    // Nothing dropped: VEND FAILURE on the kept session gives the money back.
    let sim = MdbSim::new(MdbOptions::default());
    let first = ready(&sim).await;
    first.authorize(&req("k1", 300)).await.unwrap();
    drop(first);
    let d = restarted(&sim).await;
    d.resume(&key).await.unwrap();
    d.void(&key).await.unwrap();
    assert_eq!(sim.ledger()[0].charge, Charge::Refunded);
    assert_eq!(d.status(&key).await, Ok(KeyStatus::Reversed));

    // Cut while waiting for the card (no VEND REQUEST sent, or its approval not
    // heard): abort withdraws it; nothing is held either way.
    for approved in [false, true] {
        let sim = MdbSim::new(MdbOptions::default());
        let first = ready(&sim).await;
        if approved {
            first.authorize(&req("k1", 300)).await.unwrap();
        }
        drop(first);
        let d = restarted(&sim).await;
        assert_eq!(d.resume(&key).await, Ok(KeyStatus::InProgress));
        let st = d.abort(&key).await.unwrap();
        let want = if approved {
            KeyStatus::Reversed
        } else {
            KeyStatus::Unknown
        };
        assert_eq!(st, want, "approved: {approved}");
        assert!(sim.ledger().iter().all(|e| e.charge != Charge::Held));
    }

    // The whole machine lost its power: the reader reports JUST RESET, the
    // approval is released, and the key is unknown to the new driver.
    let sim = MdbSim::new(MdbOptions::default());
    let first = ready(&sim).await;
    first.authorize(&req("k1", 300)).await.unwrap();
    drop(first);
    sim.power_cut();
    let d = restarted(&sim).await;
    assert_eq!(d.resume(&key).await, Ok(KeyStatus::Unknown));
    assert_eq!(sim.ledger()[0].charge, Charge::Released);
    assert!(matches!(
        d.complete(&key).await,
        Err(PaymentError::Illegal(_))
    ));
}

#[tokio::test]
async fn a_kept_session_nobody_resumes_is_reset_before_the_next_vend() {
    let sim = MdbSim::new(MdbOptions::default());
    let first = ready(&sim).await;
    first.authorize(&req("k1", 300)).await.unwrap();
    drop(first);
    let d = restarted(&sim).await;
    assert!(matches!(
        d.authorize(&req("k2", 100)).await,
        Ok(Outcome::Approved(_))
    ));
    let ledger = sim.ledger();
    assert_eq!(ledger[0].charge, Charge::Released);
    assert_eq!(ledger[1].charge, Charge::Held);
    // Too late to bind a key: the reader was reset.
    assert_eq!(
        d.resume(&PaymentKey("k1".into())).await,
        Ok(KeyStatus::Unknown)
    );
}

#[tokio::test]
async fn a_card_taken_away_before_the_approval_declines_with_nothing_held() {
    let sim = MdbSim::new(MdbOptions::default());
    let d = ready(&sim).await;
    sim.decide_next([Decision::CardRemoved]);
    let out = d.authorize(&req("c1", 300)).await.unwrap();
    let Outcome::Declined { reason } = out else {
        panic!("{out:?}")
    };
    assert!(reason.contains("card was taken away"), "{reason}");
    assert!(sim.ledger().is_empty());
    // The denial that came with the cancel request is no reader fault.
    assert_eq!(d.core().state(), outpost_peripherals::DeviceState::Idle);
}

#[tokio::test]
async fn no_card_declines_and_an_abort_while_waiting_declines() {
    let sim = MdbSim::new(MdbOptions {
        card_funds: None,
        ..MdbOptions::default()
    });
    let d = driver(
        &sim,
        MdbConfig {
            session_wait: Duration::from_millis(200),
            ..config()
        },
    );
    d.open().await.unwrap();
    d.core().claim().unwrap();
    d.core().enable().unwrap();
    let out = d.authorize(&req("n1", 100)).await;
    assert!(matches!(out, Ok(Outcome::Declined { .. })), "{out:?}");

    let d2 = MdbCashless::with_connector(
        "reader-2",
        Arc::new(sim.connector("mdb2")),
        MdbConfig {
            session_wait: Duration::from_secs(10),
            ..config()
        },
    );
    d2.open().await.unwrap();
    d2.core().claim().unwrap();
    d2.core().enable().unwrap();
    let waiting = {
        let d2 = d2.clone();
        tokio::spawn(async move { d2.authorize(&req("n2", 100)).await })
    };
    // Until the payment is waiting for a card (bounded).
    for _ in 0..500 {
        if d2.status(&PaymentKey("n2".into())).await == Ok(KeyStatus::InProgress) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = d2.abort(&PaymentKey("n2".into())).await.unwrap();
    assert!(
        matches!(st, KeyStatus::Done(Outcome::Declined { .. })),
        "{st:?}"
    );
    let out = timeout(LIMIT, waiting).await.unwrap().unwrap();
    assert!(matches!(out, Ok(Outcome::Declined { .. })), "{out:?}");
    assert!(sim.ledger().is_empty());
}

#[tokio::test]
async fn bad_amounts_and_a_mismatched_reader_are_refused() {
    let sim = MdbSim::new(MdbOptions::default());
    let d = ready(&sim).await;
    for (amount, currency) in [(0, "EUR"), (-5, "EUR"), (70_000, "EUR"), (100, "USD")] {
        let r = d
            .authorize(&PaymentRequest {
                key: PaymentKey(format!("bad-{amount}-{currency}")),
                amount_minor: amount,
                currency: currency.into(),
                instrument: outpost_peripherals::payment::Instrument::Any,
            })
            .await;
        assert!(
            matches!(r, Err(PaymentError::Illegal(_))),
            "{amount} {currency}: {r:?}"
        );
    }
    // MDB cannot tell a reader to take only wallets: refused, nothing vended.
    let r = d
        .authorize(&PaymentRequest {
            key: PaymentKey("wallet-only".into()),
            amount_minor: 100,
            currency: "EUR".into(),
            instrument: outpost_peripherals::payment::Instrument::Wallet,
        })
        .await;
    assert!(matches!(r, Err(PaymentError::Illegal(_))), "{r:?}");
    assert!(sim.ledger().is_empty());
    let mut opts = MdbOptions::default();
    opts.config.decimal_places = 3;
    let other = MdbSim::new(opts);
    let f = driver(&other, config()).open().await.unwrap_err();
    assert_eq!(f.kind(), ErrorKind::Illegal, "{f}");
    let silent = MdbSim::new(MdbOptions::default());
    silent.set_silent(true);
    let f = driver(&silent, config()).open().await.unwrap_err();
    assert_eq!(f.kind(), ErrorKind::Timeout, "{f}");
}
