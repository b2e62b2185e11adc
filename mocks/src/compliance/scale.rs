//! What every [`Scale`] must do.

use std::time::Duration;

use outpost_peripherals::scale::Scale;
use outpost_peripherals::{Condition, DeviceError, ErrorKind};

use crate::mock::scale::MockScale;
use crate::sim::scale::ScaleSim;

/// How the suite acts on a scale's world.
pub trait ScaleHarness: Send + Sync {
    /// Put `grams` on the pan, moving for `settle_readings` readings.
    fn place(&self, grams: i64, settle_readings: u32);
    /// The scale's capacity in grams.
    fn capacity_g(&self) -> i64;
}

impl ScaleHarness for ScaleSim {
    fn place(&self, grams: i64, settle_readings: u32) {
        ScaleSim::place(self, grams, settle_readings);
    }
    fn capacity_g(&self) -> i64 {
        6_000
    }
}

/// The mock's harness: the mock and its capacity.
#[derive(Debug, Clone)]
pub struct MockScaleHarness(pub MockScale, pub i64);

impl ScaleHarness for MockScaleHarness {
    fn place(&self, grams: i64, settle_readings: u32) {
        self.0.place(grams, settle_readings);
    }
    fn capacity_g(&self) -> i64 {
        self.1
    }
}

fn condition<T: std::fmt::Debug>(
    r: Result<T, outpost_peripherals::DeviceFault>,
) -> Option<Condition> {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(f) => {
            assert_eq!(f.kind(), ErrorKind::DeviceSpecific, "{f:?}");
            f.device_condition()
        }
    }
}

/// Check the scale contract. `d` must be closed and unclaimed, its pan empty.
///
/// The rules: commands are refused before open; a settled load is sold by its
/// stable weight and reads stable live; a load that keeps moving is refused as
/// `Unstable` (and reads not stable live) until it settles, then weighs right;
/// above capacity both reads refuse as `OverWeight`; an empty pan refuses a stable
/// weight as `UnderWeight`; zero works on an empty settled pan; a closed scale
/// refuses again.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn scale<D: Scale>(d: &D, h: &dyn ScaleHarness) {
    match d.stable_weight(Duration::from_millis(100)).await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::Offline, "weigh before open: {f:?}"),
        Ok(w) => panic!("weigh before open returned {w}"),
    }
    d.open().await.expect("open a working scale");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    h.place(0, 0);
    d.zero().await.expect("zero an empty settled pan");

    h.place(1234, 0);
    assert_eq!(
        d.stable_weight(Duration::from_secs(2))
            .await
            .expect("settled load"),
        1234
    );
    let live = d.live_weight().await.expect("live reading");
    assert!(
        live.stable && live.grams == 1234,
        "live reading of a settled load: {live:?}"
    );

    h.place(500, 1_000_000);
    assert_eq!(
        condition(d.stable_weight(Duration::from_millis(300)).await),
        Some(Condition::Unstable),
        "a moving load is not sold"
    );
    let live = d.live_weight().await.expect("live reading while moving");
    assert!(!live.stable, "a moving load reads unstable live: {live:?}");
    assert_eq!(
        condition(d.zero().await),
        Some(Condition::Unstable),
        "no zeroing while moving"
    );
    h.place(500, 3);
    assert_eq!(
        d.stable_weight(Duration::from_secs(5))
            .await
            .expect("the load settles"),
        500,
        "weight once settled"
    );
    let refusals = d
        .core()
        .statistics()
        .counters
        .get("unstable_refusals")
        .copied();
    assert_eq!(refusals, Some(1), "unstable refusals counted");

    h.place(h.capacity_g() + 1, 0);
    assert_eq!(
        condition(d.stable_weight(Duration::from_millis(300)).await),
        Some(Condition::OverWeight)
    );
    assert_eq!(
        condition(d.live_weight().await),
        Some(Condition::OverWeight)
    );

    h.place(0, 0);
    assert_eq!(
        condition(d.stable_weight(Duration::from_millis(300)).await),
        Some(Condition::UnderWeight),
        "nothing on the pan is nothing to sell"
    );

    d.close().await;
    assert!(
        d.live_weight().await.is_err(),
        "reading after close is refused"
    );
}
