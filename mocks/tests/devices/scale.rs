//! The MT-SICS scale driver against the scale simulator, and the scale mock, through
//! the compliance suite; then unstable weight and bad replies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outpost_mocks::compliance::scale::{MockScaleHarness, scale};
use outpost_mocks::mock::scale::MockScale;
use outpost_mocks::sim::scale::{ScaleFault, ScaleOptions, ScaleSim};
use outpost_peripherals::scale::Scale;
use outpost_peripherals::sics::{SicsConfig, SicsScale};
use outpost_peripherals::{Condition, Device, DeviceError, DeviceState, ErrorKind};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn config() -> SicsConfig {
    SicsConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(20),
        drain_quiet: Duration::from_millis(30),
    }
}

async fn ready(sim: &ScaleSim) -> SicsScale {
    let s = SicsScale::with_connector("scale-1", Arc::new(sim.connector("scale-1")), config());
    s.open().await.expect("open");
    s.core().claim().expect("claim");
    s.core().enable().expect("enable");
    s
}

#[tokio::test]
async fn sics_driver_against_the_simulator_meets_the_scale_contract() {
    let sim = ScaleSim::new(ScaleOptions::default());
    let s = SicsScale::with_connector("scale-1", Arc::new(sim.connector("scale-1")), config());
    timeout(LIMIT, scale(&s, &sim))
        .await
        .expect("suite in time");
    let info = s.core().info();
    assert_eq!(info.serial.as_deref(), Some("SIM0000001"));
    assert_eq!(info.model.as_deref(), Some("Outpost SICS simulator 6000 g"));
}

#[tokio::test]
async fn mock_scale_meets_the_scale_contract() {
    let m = MockScale::closed("scale-mock", 6000);
    timeout(LIMIT, scale(&m, &MockScaleHarness(m.clone(), 6000)))
        .await
        .expect("suite in time");
    m.done();
}

/// The proof the issue asks for: while the weight moves no stable weight is given
/// (so no weighted line can be sold), and once it settles the right one is.
#[tokio::test]
async fn scale_unstable_gives_no_stable_weight_until_it_settles() {
    let sim = ScaleSim::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ScaleOptions::default(),
    )
    .await
    .expect("start");
    let s = SicsScale::tcp(
        "scale-tcp",
        &sim.local_addr().unwrap().to_string(),
        config(),
    );
    s.open().await.unwrap();
    s.core().claim().unwrap();
    s.core().enable().unwrap();
    sim.place(750, 10_000);
    for _ in 0..3 {
        let f = s
            .stable_weight(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(f.kind(), ErrorKind::DeviceSpecific);
        assert_eq!(f.device_condition(), Some(Condition::Unstable));
    }
    assert!(!s.live_weight().await.unwrap().stable);
    sim.set_unstable(5);
    let w = timeout(LIMIT, s.stable_weight(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(w, Ok(750));
    assert_eq!(s.core().statistics().counters["unstable_refusals"], 3);
}

#[tokio::test]
async fn malformed_replies_are_rejected_and_the_next_command_works() {
    let sim = ScaleSim::new(ScaleOptions::default());
    let s = ready(&sim).await;
    sim.place(200, 0);
    for garbage in [
        b"S S 12,5 g\r\n".to_vec(),
        b"\xff\xfe\r\n".to_vec(),
        b"S S 1.0 lb\r\n".to_vec(),
        b"HELLO\r\n".to_vec(),
    ] {
        sim.fault_next([ScaleFault::Garbage(garbage.clone())]);
        let f = s.live_weight().await.unwrap_err();
        assert_eq!(f.kind(), ErrorKind::Failure, "{garbage:?}: {f:?}");
        assert_eq!(
            s.live_weight().await.unwrap().grams,
            200,
            "after {garbage:?}"
        );
    }
    assert_eq!(s.core().state(), DeviceState::Idle);
}

#[tokio::test]
async fn a_lost_reply_times_out_and_a_late_one_is_not_taken_for_the_next() {
    let sim = ScaleSim::new(ScaleOptions::default());
    let s = ready(&sim).await;
    sim.place(300, 0);
    sim.fault_next([ScaleFault::LoseReply]);
    let f = s.live_weight().await.unwrap_err();
    assert_eq!(f.kind(), ErrorKind::Timeout);
    // A reply that arrives after its command timed out: two lines for one command.
    sim.fault_next([ScaleFault::Garbage(
        b"S S 999.00 g\r\nS S 999.00 g\r\n".to_vec(),
    )]);
    assert!(s.live_weight().await.is_ok());
    sim.place(301, 0);
    assert_eq!(
        s.live_weight().await.unwrap().grams,
        301,
        "the stale line was dropped"
    );
}

#[tokio::test]
async fn zero_and_the_limits_map_to_conditions() {
    let sim = ScaleSim::new(ScaleOptions::default());
    let s = ready(&sim).await;
    sim.place(50, 0);
    s.zero().await.unwrap();
    assert_eq!(s.live_weight().await.unwrap().grams, 0);
    sim.place(1000, 0);
    let f = s.zero().await.unwrap_err();
    assert_eq!(
        (f.kind(), f.device_condition()),
        (ErrorKind::Illegal, Some(Condition::OverWeight))
    );
    sim.place(-1000, 0);
    let f = s.live_weight().await.unwrap_err();
    assert_eq!(f.device_condition(), Some(Condition::UnderWeight));
}

#[tokio::test]
async fn a_silent_scale_does_not_open_and_a_dropped_link_closes_the_device() {
    let sim = ScaleSim::new(ScaleOptions::default());
    sim.set_silent(true);
    let s = SicsScale::with_connector("scale-1", Arc::new(sim.connector("s")), config());
    assert_eq!(s.open().await.unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(s.core().state(), DeviceState::Closed);
    sim.set_silent(false);
    s.open().await.unwrap();
    s.core().claim().unwrap();
    s.core().enable().unwrap();
    sim.fault_next([ScaleFault::Drop]);
    assert_eq!(
        s.live_weight().await.unwrap_err().kind(),
        ErrorKind::Offline
    );
    assert_eq!(s.core().state(), DeviceState::Closed);
}
