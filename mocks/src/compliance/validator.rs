//! What every [`BillValidator`] must do.

use outpost_peripherals::validator::{
    BillRoute, BillValidator, EscrowOutcome, EscrowStatus, ValidatorEvent,
};
use outpost_peripherals::{CommandKey, DeviceError, ErrorKind};

use crate::mock::validator::{MockValidator, ValidatorStep};
use crate::sim::mdb::MdbFault;
use crate::sim::validator::ValidatorSim;

/// How the suite acts on a validator's world. The validator under test takes notes
/// of 500, 1000, 2000 and 5000 (types 0 to 3), holds each in escrow, and its
/// stacker has room.
pub trait ValidatorHarness: Send + Sync {
    /// Put a note of `bill_type` in.
    fn insert_bill(&self, bill_type: u8) -> BillRoute;
    /// The next escrow moves the note, and its answer is lost.
    fn lose_next_answer(&self);
    /// The next escrow never reaches the validator.
    fn lose_power_next(&self);
    /// The stacker is full from now on.
    fn fill_stacker(&self);
    /// Value in minor units of every note stacked so far.
    fn stacked_minor(&self) -> i64;
    /// Value in minor units of every note given back so far.
    fn returned_minor(&self) -> i64;
}

impl ValidatorHarness for MockValidator {
    fn insert_bill(&self, bill_type: u8) -> BillRoute {
        MockValidator::insert_bill(self, bill_type)
    }
    fn lose_next_answer(&self) {
        self.expect([ValidatorStep::LoseAnswer]);
    }
    fn lose_power_next(&self) {
        self.expect([ValidatorStep::PowerLoss]);
    }
    fn fill_stacker(&self) {
        MockValidator::fill_stacker(self);
    }
    fn stacked_minor(&self) -> i64 {
        MockValidator::stacked_minor(self)
    }
    fn returned_minor(&self) -> i64 {
        MockValidator::returned_minor(self)
    }
}

impl ValidatorHarness for ValidatorSim {
    fn insert_bill(&self, bill_type: u8) -> BillRoute {
        ValidatorSim::insert_bill(self, bill_type)
    }
    fn lose_next_answer(&self) {
        self.fault_next_escrow([MdbFault::LoseReply]);
    }
    fn lose_power_next(&self) {
        self.fault_next_escrow([MdbFault::Swallow]);
    }
    fn fill_stacker(&self) {
        self.set_stacker(500);
    }
    fn stacked_minor(&self) -> i64 {
        ValidatorSim::stacked_minor(self)
    }
    fn returned_minor(&self) -> i64 {
        ValidatorSim::returned_minor(self)
    }
}

fn key(name: &str) -> CommandKey {
    CommandKey(format!("escrow-compliance-{name}"))
}

/// Put a note in and poll until the validator reports it in escrow.
async fn escrowed<D: BillValidator>(d: &D, h: &dyn ValidatorHarness, bill_type: u8, value: i64) {
    assert_eq!(h.insert_bill(bill_type), BillRoute::Escrowed, "held");
    for _ in 0..5 {
        let evs = d.poll().await.expect("poll");
        if evs.contains(&ValidatorEvent::Bill {
            bill_type,
            value_minor: value,
            route: BillRoute::Escrowed,
        }) {
            return;
        }
    }
    panic!("the note in escrow was never reported");
}

/// Check the bill validator contract. `d` must be closed and unclaimed, set up as
/// [`ValidatorHarness`] says (the mock: [`MockValidator::closed`] with values
/// `[500, 1000, 2000, 5000]`; the simulator: `ValidatorOptions::euro()`).
///
/// The rules: nothing moves before open; a note is rejected while not accepting;
/// a note taken is held in escrow and reported with its value; stacking keeps it
/// and says so, under a key that cannot be used again; returning gives it back;
/// escrow with no note is refused; a lost answer is resolved or outcome unknown,
/// and the status tells where the note went; an escrow that never reached the
/// validator leaves the note in escrow and nothing under the key; a full stacker
/// returns a note asked to be stacked, and says so; nothing moves after close.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn bill_validator<D: BillValidator>(d: &D, h: &dyn ValidatorHarness) {
    assert!(
        d.escrow(&key("unready"), true).await.is_err(),
        "before open"
    );
    d.open().await.expect("open");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    let values: Vec<i64> = d.bill_types().iter().map(|b| b.value_minor).collect();
    assert_eq!(values, [500, 1000, 2000, 5000], "bill types");
    let stacker0 = d.stacker().await.expect("stacker").bills;

    assert_eq!(h.insert_bill(1), BillRoute::Rejected, "not accepting yet");
    d.accept_bills(true).await.expect("accept");
    escrowed(d, h, 1, 1000).await;
    let (s0, r0) = (h.stacked_minor(), h.returned_minor());
    assert_eq!(
        d.escrow(&key("stack"), true).await,
        Ok(EscrowOutcome::Stacked { value_minor: 1000 })
    );
    assert_eq!(h.stacked_minor() - s0, 1000, "the note is in the cash box");
    assert_eq!(
        d.escrow_status(&key("stack")).await,
        Ok(EscrowStatus::Done(EscrowOutcome::Stacked {
            value_minor: 1000
        }))
    );
    match d.escrow(&key("stack"), true).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::Illegal, "reused key: {f:?}"),
        Ok(o) => panic!("a reused key moved a note: {o:?}"),
    }
    match d.escrow(&key("empty"), true).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::Illegal, "{f:?}"),
        Ok(o) => panic!("escrow with no note: {o:?}"),
    }
    assert_eq!(
        d.escrow_status(&key("empty")).await,
        Ok(EscrowStatus::Unknown)
    );

    escrowed(d, h, 2, 2000).await;
    assert_eq!(
        d.escrow(&key("return"), false).await,
        Ok(EscrowOutcome::Returned { value_minor: 2000 })
    );
    assert_eq!(h.returned_minor() - r0, 2000, "given back");

    escrowed(d, h, 0, 500).await;
    let s1 = h.stacked_minor();
    h.lose_next_answer();
    match d.escrow(&key("lost"), true).await {
        Ok(o) => assert_eq!(o, EscrowOutcome::Stacked { value_minor: 500 }),
        Err(f) => assert_eq!(f.kind(), ErrorKind::OutcomeUnknown, "{f:?}"),
    }
    assert_eq!(
        d.escrow_status(&key("lost")).await,
        Ok(EscrowStatus::Done(EscrowOutcome::Stacked {
            value_minor: 500
        }))
    );
    assert_eq!(h.stacked_minor() - s1, 500, "stacked once");

    escrowed(d, h, 3, 5000).await;
    let (s2, r2) = (h.stacked_minor(), h.returned_minor());
    h.lose_power_next();
    match d.escrow(&key("power"), true).await {
        Err(f) => assert!(
            matches!(f.kind(), ErrorKind::OutcomeUnknown | ErrorKind::Timeout),
            "{f:?}"
        ),
        Ok(o) => panic!("an escrow that never arrived: {o:?}"),
    }
    assert_eq!(
        d.escrow_status(&key("power")).await,
        Ok(EscrowStatus::Unknown),
        "nothing under the key"
    );
    assert_eq!(
        (h.stacked_minor(), h.returned_minor()),
        (s2, r2),
        "the note is still in escrow"
    );
    assert_eq!(
        d.escrow(&key("power-again"), false).await,
        Ok(EscrowOutcome::Returned { value_minor: 5000 }),
        "the same note, under a new key"
    );
    let s = d.stacker().await.expect("stacker");
    assert_eq!(s.bills - stacker0, 2, "two notes stacked");
    assert!(!s.full);

    h.fill_stacker();
    escrowed(d, h, 1, 1000).await;
    assert_eq!(
        d.escrow(&key("full"), true).await,
        Ok(EscrowOutcome::Returned { value_minor: 1000 }),
        "a full stacker gives the note back"
    );
    assert!(d.stacker().await.expect("stacker").full, "stacker full");
    d.close().await;
    assert!(d.escrow(&key("closed"), true).await.is_err(), "after close");
}
