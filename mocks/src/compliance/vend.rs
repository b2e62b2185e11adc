//! What every [`VendDispenser`] must do.

use outpost_peripherals::vend::{VendDispenser, VendOutcome, VendStatus};
use outpost_peripherals::{CommandKey, DeviceError, ErrorKind};

use crate::mock::vend::{MockVend, VendStep};

/// How the suite acts on a dispenser's world.
pub trait VendHarness: Send + Sync {
    /// The next vend drops its product and loses the answer.
    fn lose_next_answer(&self);
    /// The next vend loses power before the motor turns.
    fn lose_power_next(&self);
    /// Products that really dropped under `key`.
    fn dispensed(&self, key: &CommandKey) -> u32;
    /// A stocked slot and an empty slot.
    fn slots(&self) -> (String, String);
}

impl VendHarness for MockVend {
    fn lose_next_answer(&self) {
        self.expect([VendStep::LoseAnswer]);
    }
    fn lose_power_next(&self) {
        self.expect([VendStep::PowerLoss]);
    }
    fn dispensed(&self, key: &CommandKey) -> u32 {
        MockVend::dispensed(self, key)
    }
    fn slots(&self) -> (String, String) {
        ("A1".into(), "B2".into())
    }
}

impl VendHarness for crate::sim::SpiralSim {
    fn lose_next_answer(&self) {
        self.fault_next([crate::sim::spiral::SpiralFault::LoseReply]);
    }
    fn lose_power_next(&self) {
        self.fault_next([crate::sim::spiral::SpiralFault::Swallow]);
    }
    fn dispensed(&self, key: &CommandKey) -> u32 {
        crate::sim::SpiralSim::dispensed(self, &key.0)
    }
    fn slots(&self) -> (String, String) {
        ("A1".into(), "B2".into())
    }
}

fn key(name: &str) -> CommandKey {
    CommandKey(format!("vend-compliance-{name}"))
}

/// Check the vend dispenser contract. `d` must be closed and unclaimed; for the
/// mock, [`MockVend::closed`] with `A1` stocked and `B2` empty.
///
/// The rules: a vend is refused before open and drops nothing; a vend drops one
/// product and its status says dispensed; a used key is refused and drops nothing
/// more; a lost answer is `OutcomeUnknown` and the status tells the truth (one drop);
/// a power loss before the motor turns is `OutcomeUnknown` and the status says the
/// key is unknown (nothing dropped); an empty slot is not dispensed; a key never used
/// is unknown.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn vend_dispenser<D: VendDispenser>(d: &D, h: &dyn VendHarness) {
    let (stocked, empty) = h.slots();
    let k = key("unready");
    assert!(d.vend(&k, &stocked).await.is_err(), "vend before open");
    assert_eq!(h.dispensed(&k), 0, "a refused vend dropped something");
    d.open().await.expect("open");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");

    let k = key("ok");
    assert_eq!(d.vend(&k, &stocked).await, Ok(VendOutcome::Dispensed));
    assert_eq!(
        d.vend_status(&k).await,
        Ok(VendStatus::Done(VendOutcome::Dispensed))
    );
    match d.vend(&k, &stocked).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::Illegal, "reused key: {f:?}"),
        Ok(o) => panic!("a reused key vended again: {o:?}"),
    }
    assert_eq!(h.dispensed(&k), 1, "one drop under one key");

    let k = key("lost");
    h.lose_next_answer();
    match d.vend(&k, &stocked).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::OutcomeUnknown, "{f:?}"),
        Ok(o) => panic!("a lost answer must be outcome unknown, not {o:?}"),
    }
    assert_eq!(
        d.vend_status(&k).await,
        Ok(VendStatus::Done(VendOutcome::Dispensed))
    );
    assert_eq!(h.dispensed(&k), 1, "a lost answer dropped once");

    let k = key("power");
    h.lose_power_next();
    match d.vend(&k, &stocked).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::OutcomeUnknown, "{f:?}"),
        Ok(o) => panic!("a power loss must be outcome unknown, not {o:?}"),
    }
    assert_eq!(d.vend_status(&k).await, Ok(VendStatus::Unknown));
    assert_eq!(h.dispensed(&k), 0);

    let k = key("empty");
    assert!(
        matches!(
            d.vend(&k, &empty).await,
            Ok(VendOutcome::NotDispensed { .. })
        ),
        "an empty slot is not dispensed"
    );
    assert_eq!(h.dispensed(&k), 0);
    assert_eq!(d.vend_status(&key("never")).await, Ok(VendStatus::Unknown));
    d.close().await;
    assert!(
        d.vend(&key("closed"), &stocked).await.is_err(),
        "vend after close"
    );
}
