//! The MDB bill validator: the compliance suite against the driver on the wire
//! simulator and against the trait-level mock, then what only the wire shows (a
//! silent bridge mid-escrow, a reset with a note in escrow, cash box and jam
//! reports).

use std::sync::Arc;
use std::time::Duration;

use outpost_mocks::compliance::validator::bill_validator;
use outpost_mocks::mock::validator::MockValidator;
use outpost_mocks::sim::ValidatorSim;
use outpost_mocks::sim::mdb::MdbFault;
use outpost_mocks::sim::validator::ValidatorOptions;
use outpost_peripherals::mdb::{MdbValidator, ValidatorConfig};
use outpost_peripherals::validator::{
    BillRoute, BillValidator, EscrowOutcome, EscrowStatus, ValidatorEvent, ValidatorStatus,
};
use outpost_peripherals::{CommandKey, Device, DeviceError, ErrorKind};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn config() -> ValidatorConfig {
    ValidatorConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(5),
        escrow_timeout: Duration::from_millis(500),
        drain_quiet: Duration::from_millis(20),
        ..ValidatorConfig::default()
    }
}

fn driver(sim: &ValidatorSim) -> MdbValidator {
    MdbValidator::with_connector(
        "validator-1",
        Arc::new(sim.connector("validator")),
        config(),
    )
}

async fn ready(sim: &ValidatorSim) -> MdbValidator {
    let d = driver(sim);
    d.open().await.expect("open");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    d.accept_bills(true).await.expect("accept");
    d
}

fn key(s: &str) -> CommandKey {
    CommandKey(s.into())
}

async fn escrowed(d: &MdbValidator, sim: &ValidatorSim, t: u8) {
    assert_eq!(sim.insert_bill(t), BillRoute::Escrowed);
    let evs = d.poll().await.unwrap();
    assert!(
        evs.iter().any(|e| matches!(
            e,
            ValidatorEvent::Bill {
                route: BillRoute::Escrowed,
                ..
            }
        )),
        "{evs:?}"
    );
}

#[tokio::test]
async fn mdb_validator_on_the_simulator_meets_the_validator_checks() {
    let sim = ValidatorSim::new(ValidatorOptions::euro());
    let d = driver(&sim);
    timeout(LIMIT, bill_validator(&d, &sim))
        .await
        .expect("checks in time");
    let info = d.core().info();
    assert_eq!(info.serial.as_deref(), Some("SIM-VALID-01"), "{info:?}");
}

#[tokio::test]
async fn mock_validator_meets_the_validator_checks() {
    let m = MockValidator::closed("validator-mock", &[500, 1000, 2000, 5000], 500);
    bill_validator(&m, &m).await;
    m.done();
}

#[tokio::test]
async fn a_silent_bridge_leaves_the_escrow_in_doubt_until_the_stacker_is_counted() {
    let sim = ValidatorSim::new(ValidatorOptions::euro());
    let d = timeout(LIMIT, ready(&sim)).await.expect("open");
    escrowed(&d, &sim, 1).await;
    // The ESCROW is carried out, and every answer after it lost.
    sim.silent_after_next_escrow();
    match d.escrow(&key("silent"), true).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::OutcomeUnknown, "{f:?}"),
        Ok(o) => panic!("nothing heard, yet {o:?}"),
    }
    match d.escrow_status(&key("silent")).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::OutcomeUnknown, "{f:?}"),
        Ok(s) => panic!("nothing heard, yet {s:?}"),
    }
    sim.set_silent(false);
    let status = Some(d.escrow_status(&key("silent")).await.expect("status"));
    assert_eq!(
        status,
        Some(EscrowStatus::Done(EscrowOutcome::Stacked {
            value_minor: 1000
        }))
    );
    assert_eq!(sim.stacked_minor(), 1000, "stacked once");
}

#[tokio::test]
async fn a_reset_with_a_note_in_escrow_gives_it_back_and_reopening_says_so() {
    let sim = ValidatorSim::new(ValidatorOptions::euro());
    let d = timeout(LIMIT, ready(&sim)).await.expect("open");
    escrowed(&d, &sim, 3).await;
    // The ESCROW never reaches the validator, and the controller restarts.
    sim.fault_next_escrow([MdbFault::Swallow]);
    let r = d.escrow(&key("cut"), true).await;
    assert!(r.is_err(), "{r:?}");
    d.close().await;
    let d = timeout(LIMIT, ready(&sim)).await.expect("reopen");
    assert_eq!(sim.in_escrow(), None, "the reset gave the note back");
    assert_eq!(sim.returned_minor(), 5000);
    assert_eq!(sim.stacked_minor(), 0);
    assert_eq!(d.stacker().await.unwrap().bills, 0);
}

#[tokio::test]
async fn cash_box_removal_and_jams_are_reported_and_notes_are_returned_meanwhile() {
    let sim = ValidatorSim::new(ValidatorOptions::euro());
    let d = timeout(LIMIT, ready(&sim)).await.expect("open");
    sim.remove_cash_box();
    assert_eq!(sim.insert_bill(0), BillRoute::Returned);
    let evs = d.poll().await.unwrap();
    assert!(
        evs.contains(&ValidatorEvent::Status {
            status: ValidatorStatus::CashBoxOut
        }),
        "{evs:?}"
    );
    sim.replace_cash_box();
    sim.jam();
    let evs = d.poll().await.unwrap();
    assert!(evs.contains(&ValidatorEvent::Status {
        status: ValidatorStatus::Jammed
    }));
    sim.clear_jam();
    // A note stacked at once (escrow off) is a poll event, credit without escrow.
    d.accept_bills(true).await.unwrap();
    escrowed(&d, &sim, 0).await;
    assert_eq!(
        d.escrow(&key("ok"), true).await,
        Ok(EscrowOutcome::Stacked { value_minor: 500 })
    );
    let evs = d.poll().await.unwrap();
    assert!(
        !evs.iter().any(|e| matches!(
            e,
            ValidatorEvent::Bill {
                route: BillRoute::Stacked,
                ..
            }
        )),
        "the escrow's own routing is not a second event: {evs:?}"
    );
}
