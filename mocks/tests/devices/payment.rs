//! The payment terminal: the compliance suite on the nexo driver against the
//! simulator and on the scripted mock, then the driver against every simulator fault.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use outpost_mocks::compliance::payment::{self as compliance, Fault, PaymentHarness};
use outpost_mocks::sim::payment::{
    Mode, PaymentSim, Recorded, SimOptions, control_command, serve_control,
};
use outpost_mocks::{MockTerminal, Script};
use outpost_peripherals::nexo::{NexoConfig, NexoTerminal};
use outpost_peripherals::payment::{
    Instrument, KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest, PaymentTerminal,
};
use outpost_peripherals::{Device, Health, HealthLevel};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Every wait in these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(10);

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

fn config(addr: SocketAddr) -> NexoConfig {
    let mut c = NexoConfig::new("pay-1", addr.to_string());
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(3);
    c.status_timeout = Duration::from_secs(2);
    c
}

async fn ready_terminal(config: NexoConfig) -> NexoTerminal {
    let t = NexoTerminal::new(config);
    t.open().await.expect("open against the simulator");
    t.core().claim().unwrap();
    t.core().enable().unwrap();
    t
}

async fn sim() -> PaymentSim {
    PaymentSim::start("127.0.0.1:0".parse().unwrap(), SimOptions::default())
        .await
        .unwrap()
}

fn req(key: &str) -> PaymentRequest {
    PaymentRequest {
        key: PaymentKey(key.into()),
        amount_minor: 1999,
        currency: "EUR".into(),
        instrument: outpost_peripherals::payment::Instrument::Any,
    }
}

fn pk(key: &str) -> PaymentKey {
    PaymentKey(key.into())
}

/// Ask `status` until `done` accepts the answer; bounded in count and time.
async fn status_until(
    t: &NexoTerminal,
    key: &str,
    done: impl Fn(&Result<KeyStatus, PaymentError>) -> bool,
) -> Result<KeyStatus, PaymentError> {
    let deadline = Instant::now() + BOUND;
    let mut last;
    for _ in 0..400 {
        last = t.status(&pk(key)).await;
        if done(&last) || Instant::now() > deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    t.status(&pk(key)).await
}

struct NexoHarness {
    sim: PaymentSim,
    terminal: NexoTerminal,
    prefix: String,
}

#[async_trait]
impl PaymentHarness for NexoHarness {
    fn terminal(&self) -> &dyn PaymentTerminal {
        &self.terminal
    }
    async fn unready(&self) -> Box<dyn PaymentTerminal> {
        Box::new(NexoTerminal::new(config(self.sim.local_addr())))
    }
    fn next(&self, fault: Fault) {
        self.sim.next([match fault {
            Fault::Approve => Mode::Approve,
            Fault::Decline => Mode::Decline("insufficient funds".into()),
            Fault::LoseResponse => Mode::LoseResponse,
        }]);
    }
    fn charge_count(&self, key: &str) -> u32 {
        self.sim.charge_count(key)
    }
    fn key_prefix(&self) -> String {
        self.prefix.clone()
    }
}

struct MockHarness {
    terminal: MockTerminal,
}

#[async_trait]
impl PaymentHarness for MockHarness {
    fn terminal(&self) -> &dyn PaymentTerminal {
        &self.terminal
    }
    async fn unready(&self) -> Box<dyn PaymentTerminal> {
        Box::new(self.terminal.twin("payment-unready"))
    }
    fn next(&self, fault: Fault) {
        self.terminal.script([match fault {
            Fault::Approve => Script::Approve,
            Fault::Decline => Script::Decline("insufficient funds".into()),
            Fault::LoseResponse => Script::LostResponse,
        }]);
    }
    fn charge_count(&self, key: &str) -> u32 {
        self.terminal.charge_count(key)
    }
    fn key_prefix(&self) -> String {
        "mock".into()
    }
}

#[tokio::test]
async fn nexo_driver_against_the_simulator_passes_the_compliance_suite() {
    let sim = sim().await;
    let terminal = ready_terminal(config(sim.local_addr())).await;
    let h = NexoHarness {
        sim,
        terminal,
        prefix: unique("nexo"),
    };
    tokio::time::timeout(BOUND * 3, compliance::run_all(&h))
        .await
        .expect("the suite finishes");
    assert_eq!(h.sim.pending_modes(), 0, "a scripted fault was never used");
    assert_eq!(h.sim.double_charges(), 0);
}

#[tokio::test]
async fn mock_terminal_passes_the_compliance_suite() {
    let h = MockHarness {
        terminal: MockTerminal::new(),
    };
    tokio::time::timeout(BOUND, compliance::run_all(&h))
        .await
        .expect("the suite finishes");
    h.terminal.done();
    assert_eq!(h.terminal.double_charges(), 0);
}

#[tokio::test]
async fn lost_response_after_charging_is_resolved_by_status_with_one_charge() {
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    sim.next([Mode::LoseResponse]);
    let err = t.authorize(&req("lost-1")).await.unwrap_err();
    assert!(matches!(err, PaymentError::OutcomeUnknown(_)), "{err}");
    let st = t.status(&pk("lost-1")).await.unwrap();
    assert!(
        matches!(st, KeyStatus::Done(Outcome::Approved(_))),
        "{st:?}"
    );
    assert_eq!(sim.charge_count("lost-1"), 1);
    // The connection was dropped by the terminal; the next payment reconnects.
    assert!(matches!(
        t.authorize(&req("lost-2")).await,
        Ok(Outcome::Approved(_))
    ));
    let stats = t.core().statistics();
    assert_eq!(stats.counters["payments"], 2);
    assert_eq!(stats.counters["approvals"], 1);
    assert_eq!(stats.counters["outcome_unknown"], 1);
    assert_eq!(sim.total_charges(), 2);
}

#[tokio::test]
async fn a_late_answer_beyond_the_timeout_is_outcome_unknown_and_status_tells_the_truth_later() {
    let sim = sim().await;
    let mut c = config(sim.local_addr());
    c.request_timeout = Duration::from_millis(300);
    let t = ready_terminal(c).await;
    sim.next([Mode::Late(Duration::from_millis(1200))]);
    let err = t.authorize(&req("late-1")).await.unwrap_err();
    assert!(matches!(err, PaymentError::OutcomeUnknown(_)), "{err}");
    // Still waiting for the card.
    assert_eq!(t.status(&pk("late-1")).await, Ok(KeyStatus::InProgress));
    assert_eq!(sim.charge_count("late-1"), 0);
    let st = status_until(&t, "late-1", |s| !matches!(s, Ok(KeyStatus::InProgress))).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
        "{st:?}"
    );
    assert_eq!(sim.charge_count("late-1"), 1);
    // The late answer went to a discarded connection: it is not read as the answer
    // to the next payment.
    let next = t.authorize(&req("late-2")).await.unwrap();
    let Outcome::Approved(a) = next else {
        panic!("{next:?}")
    };
    let Ok(KeyStatus::Done(Outcome::Approved(b))) = t.status(&pk("late-2")).await else {
        panic!()
    };
    assert_eq!(a.auth_code, b.auth_code);
}

#[tokio::test]
async fn power_loss_after_charging_is_outcome_unknown_then_offline_then_approved() {
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    sim.next([Mode::PowerLoss {
        charged: true,
        off_for: Duration::from_millis(600),
    }]);
    let err = t.authorize(&req("power-1")).await.unwrap_err();
    assert!(matches!(err, PaymentError::OutcomeUnknown(_)), "{err}");
    assert!(!sim.powered());
    let st = t.status(&pk("power-1")).await;
    assert!(matches!(st, Err(PaymentError::Offline(_))), "{st:?}");
    let health = t.check_health(HealthLevel::Internal).await;
    assert_eq!(health.health, Health::Failed);
    let st = status_until(&t, "power-1", |s| s.is_ok()).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
        "{st:?}"
    );
    assert_eq!(sim.charge_count("power-1"), 1);
    assert_eq!(
        t.check_health(HealthLevel::Internal).await.health,
        Health::Ok
    );
}

#[tokio::test]
async fn power_loss_before_charging_leaves_the_key_unknown() {
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    sim.next([Mode::PowerLoss {
        charged: false,
        off_for: Duration::from_millis(300),
    }]);
    let err = t.authorize(&req("power-2")).await.unwrap_err();
    assert!(matches!(err, PaymentError::OutcomeUnknown(_)), "{err}");
    let st = status_until(&t, "power-2", |s| s.is_ok()).await;
    assert_eq!(st, Ok(KeyStatus::Unknown));
    assert_eq!(sim.charge_count("power-2"), 0);
    assert_eq!(sim.recorded("power-2"), None);
}

#[tokio::test]
async fn a_refused_connection_is_offline_before_sending() {
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    // The terminal is off before the payment: the pooled connection is dead and a
    // new one is refused, so nothing was sent.
    sim.power_off(Duration::from_millis(500)).await;
    let err = t.authorize(&req("refused-1")).await.unwrap_err();
    assert!(matches!(err, PaymentError::Offline(_)), "{err}");
    assert_eq!(t.core().power(), outpost_peripherals::PowerState::Offline);
    let st = status_until(&t, "refused-1", |s| s.is_ok()).await;
    assert_eq!(st, Ok(KeyStatus::Unknown));
    assert_eq!(sim.charge_count("refused-1"), 0);
    // Back on: the same key can be used, because it never reached the terminal.
    assert!(matches!(
        t.authorize(&req("refused-1")).await,
        Ok(Outcome::Approved(_))
    ));
    assert_eq!(sim.charge_count("refused-1"), 1);
    assert!(
        !t.core()
            .statistics()
            .counters
            .contains_key("outcome_unknown")
    );
}

#[tokio::test]
async fn a_garbage_reply_is_outcome_unknown_and_status_resolves_it() {
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    sim.next([Mode::Garbage]);
    let err = t.authorize(&req("garbage-1")).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::OutcomeUnknown(m) if m.contains("garbled")),
        "{err}"
    );
    let st = t.status(&pk("garbage-1")).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
        "{st:?}"
    );
    assert_eq!(sim.charge_count("garbage-1"), 1);
}

#[tokio::test]
async fn abort_cancels_a_payment_waiting_for_the_card() {
    let sim = sim().await;
    let t = Arc::new(ready_terminal(config(sim.local_addr())).await);
    sim.next([Mode::Late(Duration::from_secs(8))]);
    let pay = {
        let t = Arc::clone(&t);
        tokio::spawn(async move { t.authorize(&req("abort-1")).await })
    };
    let st = status_until(&t, "abort-1", |s| matches!(s, Ok(KeyStatus::InProgress))).await;
    assert_eq!(st, Ok(KeyStatus::InProgress));
    let aborted = t.abort(&pk("abort-1")).await.unwrap();
    assert!(
        matches!(aborted, KeyStatus::Done(Outcome::Declined { .. })),
        "{aborted:?}"
    );
    let out = tokio::time::timeout(BOUND, pay).await.unwrap().unwrap();
    assert!(matches!(out, Ok(Outcome::Declined { .. })), "{out:?}");
    assert_eq!(sim.charge_count("abort-1"), 0);
    assert_eq!(sim.recorded("abort-1"), Some(Recorded::Declined));
}

// Symptom to guard against: a caller that gave up on a payment left its connection
// in the pool, and the late answer was read by the next payment.
#[tokio::test]
async fn a_cancelled_payment_discards_its_connection() {
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    sim.next([Mode::Late(Duration::from_millis(400))]);
    let cancelled =
        tokio::time::timeout(Duration::from_millis(100), t.authorize(&req("cancel-1"))).await;
    assert!(cancelled.is_err(), "the caller gave up first");
    let out = t.authorize(&req("cancel-2")).await.unwrap();
    let Outcome::Approved(a) = out else {
        panic!("{out:?}")
    };
    let st = status_until(&t, "cancel-1", |s| !matches!(s, Ok(KeyStatus::InProgress))).await;
    let Ok(KeyStatus::Done(Outcome::Approved(first))) = st else {
        panic!("{st:?}")
    };
    assert_ne!(a.auth_code, first.auth_code);
    assert_eq!(sim.charge_count("cancel-1"), 1);
    assert_eq!(sim.charge_count("cancel-2"), 1);
}

#[tokio::test]
async fn concurrent_payments_are_serialized_and_each_charged_once() {
    let sim = sim().await;
    let t = Arc::new(ready_terminal(config(sim.local_addr())).await);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let t = Arc::clone(&t);
        tasks.push(tokio::spawn(async move {
            t.authorize(&req(&format!("conc-{i}"))).await
        }));
    }
    for task in tasks {
        let out = tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
        assert!(matches!(out, Ok(Outcome::Approved(_))), "{out:?}");
    }
    assert_eq!(sim.total_charges(), 16);
    assert_eq!(sim.double_charges(), 0);
}

#[tokio::test]
async fn every_n_rules_decline_and_lose_responses() {
    let options = SimOptions {
        decline_every: Some(2),
        lose_response_every: Some(3),
        ..SimOptions::default()
    };
    let sim = PaymentSim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let t = ready_terminal(config(sim.local_addr())).await;
    let mut seen = Vec::new();
    for i in 1..=6 {
        seen.push(match t.authorize(&req(&format!("rule-{i}"))).await {
            Ok(Outcome::Approved(_)) => "approved",
            Ok(Outcome::Declined { .. }) => "declined",
            Err(PaymentError::OutcomeUnknown(_)) => "unknown",
            Err(e) => panic!("{e}"),
        });
    }
    // 6 is both; a lost response wins over a decline.
    assert_eq!(
        seen,
        [
            "approved", "declined", "unknown", "declined", "approved", "unknown"
        ]
    );
    assert_eq!(sim.total_charges(), 4);
}

#[tokio::test]
async fn a_full_journal_refuses_new_payments_without_charging() {
    let options = SimOptions {
        journal_capacity: 2,
        ..SimOptions::default()
    };
    let sim = PaymentSim::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let t = ready_terminal(config(sim.local_addr())).await;
    t.authorize(&req("full-1")).await.unwrap();
    t.authorize(&req("full-2")).await.unwrap();
    let err = t.authorize(&req("full-3")).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::Failure(m) if m.contains("journal full")),
        "{err}"
    );
    assert_eq!(t.status(&pk("full-3")).await, Ok(KeyStatus::Unknown));
    assert_eq!(sim.total_charges(), 2);
}

#[tokio::test]
async fn the_simulator_hangs_up_on_garbage_and_keeps_serving() {
    let sim = sim().await;
    for garbage in [
        &b"\x00\x00\x00\x05hello"[..],
        b"\xff\xff\xff\xff",
        b"\x00\x00\x00\x00",
        b"\x00\x00\x00\x10{\"SaleToPOIRe",
    ] {
        let mut s = TcpStream::connect(sim.local_addr()).await.unwrap();
        s.write_all(garbage).await.unwrap();
        let _ = s.shutdown().await;
        let mut buf = Vec::new();
        let n = tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "no answer to garbage {garbage:?}");
    }
    let t = ready_terminal(config(sim.local_addr())).await;
    assert!(matches!(
        t.authorize(&req("after-garbage")).await,
        Ok(Outcome::Approved(_))
    ));
}

#[tokio::test]
async fn the_control_channel_scripts_and_reports() {
    let sim = sim().await;
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_addr = control.local_addr().unwrap();
    let server = tokio::spawn(serve_control(control, sim.clone()));
    let stream = TcpStream::connect(control_addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut ask = async |cmd: &str| -> String {
        write
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        tokio::time::timeout(BOUND, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert_eq!(ask("next decline do not honour").await, "ok");
    assert!(ask("next fly").await.starts_with("err"));
    assert!(ask(&"x".repeat(300)).await.starts_with("err"));
    let t = ready_terminal(config(sim.local_addr())).await;
    let out = t.authorize(&req("ctl-1")).await.unwrap();
    assert_eq!(
        out,
        Outcome::Declined {
            reason: "do not honour".into()
        }
    );
    t.authorize(&req("ctl-2")).await.unwrap();
    assert_eq!(ask("charges ctl-1").await, "ok 0");
    assert_eq!(ask("charges ctl-2").await, "ok 1");
    assert_eq!(ask("state ctl-1").await, "ok declined");
    assert_eq!(ask("state nope").await, "ok unknown");
    assert_eq!(ask("doubles").await, "ok 0");
    assert_eq!(ask("total").await, "ok 1");
    server.abort();
}

/// Card authorizations per second through `NexoTerminal` to the simulator on
/// loopback, one at a time as a terminal does them. Run with:
/// `cargo test -p outpost-mocks --release --test devices -- --ignored --nocapture bench_`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_authorizations_per_second() {
    const N: usize = 20_000;
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    let mut rates = Vec::new();
    for run in 0..3 {
        let start = Instant::now();
        for i in 0..N {
            let out = t.authorize(&req(&format!("bench-{run}-{i}"))).await;
            assert!(matches!(out, Ok(Outcome::Approved(_))));
        }
        let rate = N as f64 / start.elapsed().as_secs_f64();
        println!("run {run}: {rate:.0} authorizations/s");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median of 3: {:.0} authorizations/s", rates[1]);
    assert_eq!(sim.total_charges(), 3 * N as u64);
}

#[tokio::test]
async fn a_wallet_payment_allows_only_wallet_brands_on_the_wire() {
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    let wallet = |key: &str| PaymentRequest {
        instrument: Instrument::Wallet,
        ..req(key)
    };
    let brand = |o: Result<Outcome, PaymentError>| match o {
        Ok(Outcome::Approved(a)) => a.brand,
        other => panic!("not approved: {other:?}"),
    };
    // A card payment is taken with whatever the customer taps: the simulator's card.
    assert_eq!(
        brand(t.authorize(&req("w-card")).await).as_deref(),
        Some("VISA")
    );
    // A wallet payment names the wallet the customer held to the terminal.
    assert_eq!(
        brand(t.authorize(&wallet("w-apple")).await).as_deref(),
        Some("ApplePay")
    );
    assert_eq!(
        control_command(&sim, "wallet GooglePay").await,
        "ok",
        "the bench switches the customer's wallet"
    );
    assert_eq!(
        brand(t.authorize(&wallet("w-google")).await).as_deref(),
        Some("GooglePay")
    );
    assert_eq!(sim.brand("w-google").as_deref(), Some("GooglePay"));
    // A wallet the driver did not allow is refused by the terminal, nothing charged.
    sim.set_wallet("PayPal");
    let out = t.authorize(&wallet("w-paypal")).await;
    assert!(
        matches!(&out, Ok(Outcome::Declined { reason }) if reason.contains("PayPal")),
        "{out:?}"
    );
    assert_eq!(sim.charge_count("w-paypal"), 0);
    // The refund of a wallet payment goes back to the wallet.
    sim.set_wallet("GooglePay");
    assert_eq!(
        brand(t.refund(&wallet("w-google-r")).await).as_deref(),
        Some("GooglePay")
    );
    assert_eq!(sim.double_charges(), 0);
}

/// Store-and-forward as both backends must show it: offline approvals say so, carry
/// the card's token and are queued; a reversed one leaves the queue; the queue is
/// forwarded when the acquirer is back, and approvals are online again.
async fn store_and_forward(
    t: &dyn PaymentTerminal,
    prefix: &str,
    host: impl Fn(bool) -> usize,
    card: impl Fn(&str),
) {
    let k = |n: &str| pk(&format!("{prefix}-{n}"));
    let approved = |o: Result<Outcome, PaymentError>| match o {
        Ok(Outcome::Approved(a)) => a,
        other => panic!("not approved: {other:?}"),
    };
    let f = t.forwarding().await.unwrap();
    assert!(f.host_reachable && f.queued.is_empty(), "{f:?}");
    assert!(!approved(t.authorize(&req(&k("online").0)).await).offline);

    host(false);
    card("tok-a");
    let a = approved(t.authorize(&req(&k("off-1").0)).await);
    assert!(a.offline, "{a:?}");
    assert_eq!(a.card_id.as_deref(), Some("tok-a"));
    let st = t.status(&k("off-1")).await.unwrap();
    assert!(
        matches!(&st, KeyStatus::Done(Outcome::Approved(b)) if b.offline),
        "status repeats the offline approval: {st:?}"
    );
    card("tok-b");
    let b = approved(t.authorize(&req(&k("off-2").0)).await);
    assert_eq!((b.offline, b.card_id.as_deref()), (true, Some("tok-b")));
    let f = t.forwarding().await.unwrap();
    assert!(!f.host_reachable);
    assert_eq!(f.queued, [k("off-1"), k("off-2")]);
    t.void(&k("off-2")).await.unwrap();
    assert_eq!(t.forwarding().await.unwrap().queued, [k("off-1")]);

    assert_eq!(host(true), 1, "the one queued approval is forwarded");
    let f = t.forwarding().await.unwrap();
    assert!(f.host_reachable && f.queued.is_empty(), "{f:?}");
    assert!(!approved(t.authorize(&req(&k("back").0)).await).offline);
}

#[tokio::test]
async fn the_simulator_approves_offline_and_forwards_when_the_acquirer_is_back() {
    let sim = sim().await;
    let t = ready_terminal(config(sim.local_addr())).await;
    let s = sim.clone();
    let c = sim.clone();
    store_and_forward(
        &t,
        "saf",
        move |up| s.set_host_reachable(up),
        move |tok| {
            c.set_card(tok);
        },
    )
    .await;
    assert_eq!(control_command(&sim, "host down").await, "ok");
    t.authorize(&req("saf-ctl")).await.unwrap();
    assert_eq!(control_command(&sim, "stored").await, "ok 1");
    assert_eq!(control_command(&sim, "host up").await, "ok 1");
    assert_eq!(
        control_command(&sim, "host sideways").await,
        "err host up or host down"
    );
    // Offline approvals: off-1, off-2 and the one made through the control channel.
    assert_eq!(t.core().statistics().counters["offline_approvals"], 3);
    // The health check says the terminal works but is approving offline.
    sim.set_host_reachable(false);
    let h = t.check_health(HealthLevel::Internal).await;
    assert_eq!(h.health, Health::Degraded, "{h:?}");
}

#[tokio::test]
async fn the_scripted_mock_approves_offline_and_forwards_when_the_acquirer_is_back() {
    let m = MockTerminal::new();
    let (h, c) = (m.clone(), m.clone());
    store_and_forward(
        &m,
        "saf",
        move |up| h.set_host_reachable(up),
        move |tok| {
            c.set_card(tok);
        },
    )
    .await;
    m.set_status_offline(true);
    assert!(matches!(
        m.forwarding().await,
        Err(PaymentError::Offline(_))
    ));
}

#[tokio::test]
async fn a_terminal_that_does_not_report_its_queue_is_a_failure_not_an_empty_queue() {
    use outpost_peripherals::nexo::codec::{read_message, write_message};
    use outpost_peripherals::nexo::message::*;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            while let Ok(Some(Message::Request(r))) = read_message(&mut s).await {
                let answer = Message::Response(Response {
                    header: r.header.response(),
                    body: ResponseBody::DiagnosisResponse(DiagnosisResponse::status(
                        GlobalStatus::Ok,
                    )),
                });
                if write_message(&mut s, &answer).await.is_err() {
                    break;
                }
            }
        }
    });
    let t = ready_terminal(config(addr)).await;
    let err = t.forwarding().await.unwrap_err();
    assert!(matches!(err, PaymentError::Failure(_)), "{err}");
}
