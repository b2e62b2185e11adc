//! The vend dispenser, cash acceptor and environment sensor mocks: the vend
//! compliance suite, expectation queues, and injected faults.

use outpost_mocks::compliance::vend::vend_dispenser;
use outpost_mocks::mock::Step;
use outpost_mocks::mock::cash::MockCashAcceptor;
use outpost_mocks::mock::sensor::MockSensor;
use outpost_mocks::mock::vend::{MockVend, VendStep};
use outpost_peripherals::cash::CashAcceptor;
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::sensor::{EnvironmentSensor, SensorReading};
use outpost_peripherals::vend::{VendDispenser, VendOutcome};
use outpost_peripherals::{CommandKey, Condition, Device, DeviceError, DeviceFault, ErrorKind};

fn key(k: &str) -> CommandKey {
    CommandKey(k.into())
}

#[tokio::test]
async fn mock_vend_meets_the_vend_contract() {
    let v = MockVend::closed("vend-1", &[("A1", 5), ("B2", 0)]);
    vend_dispenser(&v, &v).await;
    v.done();
    assert_eq!(v.stock("A1"), 3, "two real drops");
}

#[tokio::test]
async fn mock_vend_scripted_failures_leave_no_trace() {
    let v = MockVend::new("vend-1", &[("A1", 1)]);
    v.expect([
        VendStep::Fail(DeviceFault::condition(Condition::Jam, "motor jammed")),
        VendStep::NotDispensed("drop sensor saw nothing".into()),
    ]);
    let f = v.vend(&key("a"), "A1").await.unwrap_err();
    assert_eq!(f.device_condition(), Some(Condition::Jam));
    // A refused vend does not use its key.
    assert!(matches!(
        v.vend(&key("a"), "A1").await,
        Ok(VendOutcome::NotDispensed { .. })
    ));
    assert_eq!(v.stock("A1"), 1);
    assert_eq!(
        v.vend(&key("b"), "Z9").await.unwrap_err().kind(),
        ErrorKind::Illegal
    );
    v.done();
}

#[test]
#[should_panic(expected = "1 expected device call(s) never happened")]
fn an_unused_vend_expectation_fails_the_test() {
    let v = MockVend::new("vend-1", &[]);
    v.expect([VendStep::LoseAnswer]);
    v.done();
}

#[tokio::test]
async fn mock_cash_acceptor_counts_deposits_and_keeps_them_through_a_jam() {
    let c = MockCashAcceptor::new("cash-1", "EUR");
    let mut rx = c.core().events().subscribe();
    assert!(c.insert(200).is_err(), "no deposit, piece returned");
    c.begin_deposit(&key("d1")).await.unwrap();
    assert_eq!(
        c.begin_deposit(&key("d2")).await.unwrap_err().kind(),
        ErrorKind::Busy
    );
    c.insert(200).unwrap();
    c.insert(200).unwrap();
    c.insert(500).unwrap();
    c.set_jammed(true);
    assert_eq!(
        c.insert(100).unwrap_err().device_condition(),
        Some(Condition::Jam)
    );
    let d = c.deposit_status(&key("d1")).await.unwrap();
    assert_eq!(d.total_minor, 900, "what was taken stays counted");
    let end = c.end_deposit(&key("d1")).await.unwrap();
    assert_eq!(
        end,
        c.end_deposit(&key("d1")).await.unwrap(),
        "ending twice is the same"
    );
    assert_eq!(end.counts.len(), 2);
    assert_eq!(
        c.begin_deposit(&key("d3"))
            .await
            .unwrap_err()
            .device_condition(),
        Some(Condition::Jam)
    );
    c.set_jammed(false);
    c.set_full(true);
    assert_eq!(
        c.begin_deposit(&key("d3"))
            .await
            .unwrap_err()
            .device_condition(),
        Some(Condition::Full)
    );
    assert_eq!(
        c.begin_deposit(&key("d1")).await.unwrap_err().kind(),
        ErrorKind::Illegal
    );
    let mut cash = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let EventBody::Data {
            data: DataEvent::Cash { denomination_minor },
        } = e.body
        {
            cash.push(denomination_minor);
        }
    }
    assert_eq!(cash, vec![200, 200, 500], "one data event per piece taken");
    c.expect([Step::Fail(DeviceFault::offline("unplugged"))]);
    c.set_full(false);
    assert_eq!(
        c.begin_deposit(&key("d4")).await.unwrap_err().kind(),
        ErrorKind::Offline
    );
    c.done();
}

#[tokio::test]
async fn mock_sensor_reports_door_tamper_and_temperature() {
    let s = MockSensor::new("env-1", SensorReading::default());
    let mut rx = s.core().events().subscribe();
    s.set_temperature(4_500);
    s.set_door(true);
    s.set_door(true);
    s.set_case(true);
    let r = s.read().await.unwrap();
    assert_eq!(
        r,
        SensorReading {
            milli_celsius: Some(4_500),
            door_open: Some(true),
            case_open: Some(true)
        }
    );
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e.body);
    }
    assert_eq!(
        events.len(),
        3,
        "an unchanged door raises nothing: {events:?}"
    );
    assert_eq!(s.core().statistics().counters["tamper"], 1);
    s.expect([Step::Fail(DeviceFault::timeout("bus timeout"))]);
    assert_eq!(s.read().await.unwrap_err().kind(), ErrorKind::Timeout);
    s.done();
}

mod spiral {
    //! The OSB/1 spiral board driver against its wire simulator.

    use std::sync::Arc;
    use std::time::Duration;

    use outpost_mocks::compliance::vend::vend_dispenser;
    use outpost_mocks::sim::SpiralSim;
    use outpost_mocks::sim::spiral::{SlotTrouble, SpiralFault};
    use outpost_peripherals::spiral::{SpiralBoard, SpiralConfig};
    use outpost_peripherals::vend::{VendDispenser, VendOutcome, VendStatus};
    use outpost_peripherals::{CommandKey, Device, DeviceError, ErrorKind};

    fn board(sim: &SpiralSim) -> SpiralBoard {
        SpiralBoard::with_connector(
            "spirals",
            Arc::new(sim.connector("osb")),
            SpiralConfig {
                connect_timeout: Duration::from_secs(1),
                io_timeout: Duration::from_millis(300),
                vend_timeout: Duration::from_millis(300),
                drain_quiet: Duration::from_millis(20),
            },
        )
    }

    fn key(k: &str) -> CommandKey {
        CommandKey(k.into())
    }

    #[tokio::test]
    async fn the_spiral_board_driver_meets_the_vend_contract_on_the_wire() {
        let sim = SpiralSim::new(6, 8, &[("A1", 5), ("B2", 0)]);
        let d = board(&sim);
        vend_dispenser(&d, &sim).await;
        assert_eq!(sim.stock("A1"), 3, "two real drops");
    }

    #[tokio::test]
    async fn a_jam_and_a_hanging_product_are_not_dispensed_and_say_why() {
        let sim = SpiralSim::new(6, 8, &[("A1", 5)]);
        let d = board(&sim);
        d.open().await.unwrap();
        d.core().claim().unwrap();
        d.core().enable().unwrap();
        sim.trouble("A1", [SlotTrouble::Jam, SlotTrouble::Hang]);
        match d.vend(&key("j"), "A1").await.unwrap() {
            VendOutcome::NotDispensed { reason } => assert!(reason.contains("jammed"), "{reason}"),
            o => panic!("{o:?}"),
        }
        match d.vend(&key("h"), "A1").await.unwrap() {
            VendOutcome::NotDispensed { reason } => {
                assert!(reason.contains("drop sensor"), "{reason}")
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(sim.stock("A1"), 5);
        assert_eq!(d.core().statistics().counters["jams"], 1);
        // A lost reply, then the next command works on the drained link.
        sim.fault_next([SpiralFault::LoseReply]);
        let e = d.vend(&key("l"), "A1").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
        assert_eq!(
            d.vend(&key("n"), "A1").await.unwrap(),
            VendOutcome::Dispensed
        );
        assert_eq!(
            d.vend_status(&key("l")).await.unwrap(),
            VendStatus::Done(VendOutcome::Dispensed)
        );
        assert_eq!(sim.dispensed_total(), 2);
        // Bad keys and slots are refused before the wire.
        let before = sim.commands();
        assert!(d.vend(&key("has space"), "A1").await.is_err());
        assert!(d.vend(&key("ok"), "A0").await.is_err());
        assert_eq!(sim.commands(), before);
    }
}
