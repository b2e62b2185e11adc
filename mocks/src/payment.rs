//! A scripted payment terminal.
//!
//! Each call to `authorize` or `refund` takes the next [`Script`] step from a queue
//! (or the default step when the queue is empty). The terminal answers `status`
//! truthfully from what it actually did, whatever it told the caller, which is what
//! lets tests prove that an in-doubt payment is resolved without a second charge.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use outpost_peripherals::payment::{
    Approval, Forwarding, Instrument, KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest,
    PaymentTerminal,
};
use outpost_peripherals::{
    Device, DeviceCore, DeviceFault, DeviceInfo, DeviceKind, Health, HealthLevel, HealthReport,
};

/// One scripted behaviour for the next money-moving call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Charge and answer approved.
    Approve,
    /// Do not charge; answer declined with this reason.
    Decline(String),
    /// Do not charge; answer that the outcome is unknown (the request timed out before
    /// the terminal acted on it).
    Timeout,
    /// Charge, then lose the response: the caller hears "outcome unknown".
    LostResponse,
    /// Refuse as offline without charging.
    Offline,
    /// Wait, then run the inner step.
    Delay(Duration, Box<Script>),
    /// Charge, then never answer (a crash of the caller while waiting).
    ChargeAndHang,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Charged { amount: i64, approval: Approval },
    Completed { amount: i64, approval: Approval },
    Declined(String),
    Reversed { amount: i64 },
    Refunded { amount: i64, approval: Approval },
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<Script>,
    default: Option<Script>,
    records: HashMap<PaymentKey, Record>,
    /// How many times money actually moved under each key; more than one is a bug.
    charge_counts: HashMap<PaymentKey, u32>,
    status_offline: bool,
    next_auth: u32,
    /// What each money-moving call was allowed to take.
    instruments: HashMap<PaymentKey, Instrument>,
    /// The wallet brand a wallet-only payment is made with (`ApplePay` when unset).
    wallet: Option<String>,
    /// The token of the card customers present (`card-1` when unset).
    card: Option<String>,
    /// The acquirer cannot be reached: approvals are offline and queued in `stored`.
    host_down: bool,
    /// Offline approvals not yet forwarded, oldest first.
    stored: Vec<PaymentKey>,
}

/// A scripted payment terminal. Clones share state.
#[derive(Debug, Clone)]
pub struct MockTerminal {
    state: Arc<Mutex<State>>,
    core: Arc<DeviceCore>,
}

impl Default for MockTerminal {
    fn default() -> Self {
        Self::new()
    }
}

impl MockTerminal {
    /// A terminal that approves every request unless scripted otherwise, already
    /// opened, claimed and enabled.
    pub fn new() -> Self {
        let t = Self::closed("payment-mock");
        t.core.mark_opened();
        // A fresh core is unclaimed, so neither call can fail.
        let _ = t.core.claim();
        let _ = t.core.enable();
        t
    }

    /// A closed, unclaimed terminal with this id, for lifecycle tests.
    pub fn closed(id: &str) -> Self {
        Self {
            state: Arc::default(),
            core: Arc::new(DeviceCore::new(DeviceInfo::new(
                id,
                DeviceKind::PaymentTerminal,
                "mock",
                "virtual",
            ))),
        }
    }

    /// A closed, unclaimed terminal with this id that shares this one's script and
    /// journal: the same terminal seen through a second, unready connection.
    pub fn twin(&self, id: &str) -> Self {
        Self {
            state: Arc::clone(&self.state),
            core: Self::closed(id).core,
        }
    }

    /// Fail the test if a scripted step was never used.
    ///
    /// # Panics
    /// When steps are left.
    #[track_caller]
    pub fn done(&self) {
        let left = self.pending_steps();
        assert!(left == 0, "{left} scripted payment step(s) never used");
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a test bug; the state is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queue steps for the next money-moving calls, in order.
    pub fn script(&self, steps: impl IntoIterator<Item = Script>) -> &Self {
        self.lock().script.extend(steps);
        self
    }

    /// The step used when the queue is empty (default: approve).
    pub fn set_default(&self, step: Script) -> &Self {
        self.lock().default = Some(step);
        self
    }

    /// Make status queries fail as offline (the terminal is unreachable).
    pub fn set_status_offline(&self, offline: bool) {
        self.lock().status_offline = offline;
    }

    /// The payment brand wallet-only payments are made with from now on (default
    /// `ApplePay`).
    pub fn set_wallet(&self, brand: &str) -> &Self {
        self.lock().wallet = Some(brand.to_owned());
        self
    }

    /// The token of the card (or wallet) customers present from now on (default
    /// `card-1`).
    pub fn set_card(&self, token: &str) -> &Self {
        self.lock().card = Some(token.to_owned());
        self
    }

    /// Cut the terminal off its acquirer (`false`): it approves offline and queues
    /// what it approved; or bring the acquirer back (`true`): the queue is forwarded.
    /// Returns how many were forwarded.
    pub fn set_host_reachable(&self, reachable: bool) -> usize {
        let mut st = self.lock();
        st.host_down = !reachable;
        if reachable {
            std::mem::take(&mut st.stored).len()
        } else {
            0
        }
    }

    /// The keys approved offline and not yet forwarded, oldest first.
    pub fn stored(&self) -> Vec<String> {
        self.lock().stored.iter().map(|k| k.0.clone()).collect()
    }

    /// What the money-moving call under `key` was allowed to take; `None` when there
    /// was no such call.
    pub fn instrument(&self, key: &str) -> Option<Instrument> {
        self.lock()
            .instruments
            .get(&PaymentKey(key.to_owned()))
            .copied()
    }

    /// Scripted steps not yet used. A test that scripted a step it expected to be
    /// used asserts this is zero, so an unmet expectation fails the test.
    pub fn pending_steps(&self) -> usize {
        self.lock().script.len()
    }

    /// Number of times money actually moved under `key` (charges and refunds).
    pub fn charge_count(&self, key: &str) -> u32 {
        self.lock()
            .charge_counts
            .get(&PaymentKey(key.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Number of keys charged more than once: always zero unless Outpost has a bug.
    pub fn double_charges(&self) -> usize {
        self.lock()
            .charge_counts
            .values()
            .filter(|n| **n > 1)
            .count()
    }

    /// Net amount charged and not reversed or refunded, in minor units.
    pub fn net_charged(&self) -> i64 {
        self.lock()
            .records
            .values()
            .map(|r| match r {
                Record::Charged { amount, .. } | Record::Completed { amount, .. } => *amount,
                Record::Refunded { amount, .. } => -*amount,
                Record::Declined(_) | Record::Reversed { .. } => 0,
            })
            .sum()
    }

    /// Number of approved charges still standing (not reversed).
    pub fn standing_charges(&self) -> usize {
        self.lock()
            .records
            .values()
            .filter(|r| matches!(r, Record::Charged { .. } | Record::Completed { .. }))
            .count()
    }

    fn next_step(&self) -> Script {
        let mut st = self.lock();
        st.script
            .pop_front()
            .or_else(|| st.default.clone())
            .unwrap_or(Script::Approve)
    }

    async fn run(&self, req: &PaymentRequest, refund: bool) -> Result<Outcome, PaymentError> {
        self.core.ensure_ready()?;
        let mut step = self.next_step();
        while let Script::Delay(d, inner) = step {
            tokio::time::sleep(d).await;
            step = *inner;
        }
        // The lock is a std mutex held only for bookkeeping, never across an await.
        let (result, hang) = self.act(req, refund, step);
        if hang {
            std::future::pending::<()>().await;
        }
        result
    }

    fn act(
        &self,
        req: &PaymentRequest,
        refund: bool,
        step: Script,
    ) -> (Result<Outcome, PaymentError>, bool) {
        let mut st = self.lock();
        if let Some(existing) = st.records.get(&req.key) {
            // A terminal refuses a second operation under a key it already used.
            let err = PaymentError::Illegal(format!("key {} already used ({existing:?})", req.key));
            return (Err(err), false);
        }
        st.instruments.insert(req.key.clone(), req.instrument);
        let charge = |st: &mut State| {
            st.next_auth += 1;
            let brand = match req.instrument {
                Instrument::Any => "VISA".to_owned(),
                Instrument::Wallet => st.wallet.clone().unwrap_or_else(|| "ApplePay".into()),
            };
            let approval = Approval {
                auth_code: format!("A{:05}", st.next_auth),
                brand: Some(brand),
                last4: Some("4242".into()),
                offline: st.host_down,
                card_id: Some(st.card.clone().unwrap_or_else(|| "card-1".into())),
            };
            if st.host_down {
                st.stored.push(req.key.clone());
            }
            let record = if refund {
                Record::Refunded {
                    amount: req.amount_minor,
                    approval: approval.clone(),
                }
            } else {
                Record::Charged {
                    amount: req.amount_minor,
                    approval: approval.clone(),
                }
            };
            st.records.insert(req.key.clone(), record);
            *st.charge_counts.entry(req.key.clone()).or_default() += 1;
            approval
        };
        match step {
            Script::Approve => (Ok(Outcome::Approved(charge(&mut st))), false),
            Script::Decline(reason) => {
                st.records
                    .insert(req.key.clone(), Record::Declined(reason.clone()));
                (Ok(Outcome::Declined { reason }), false)
            }
            Script::Timeout => (Err(PaymentError::OutcomeUnknown("timed out".into())), false),
            Script::LostResponse => {
                charge(&mut st);
                (
                    Err(PaymentError::OutcomeUnknown("response lost".into())),
                    false,
                )
            }
            Script::Offline => (
                Err(PaymentError::Offline("terminal unreachable".into())),
                false,
            ),
            Script::ChargeAndHang => {
                charge(&mut st);
                (Err(PaymentError::OutcomeUnknown("no answer".into())), true)
            }
            Script::Delay(..) => (
                Err(PaymentError::Failure("nested delay in script".into())),
                false,
            ),
        }
    }
}

#[async_trait]
impl Device for MockTerminal {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        self.core.mark_opened();
        Ok(())
    }

    async fn close(&self) {
        self.core
            .mark_closed(outpost_peripherals::PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = if self.lock().status_offline {
            HealthReport::now(Health::Failed, "mock terminal set unreachable")
        } else {
            HealthReport::now(Health::Ok, "mock terminal answers")
        };
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl PaymentTerminal for MockTerminal {
    async fn authorize(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        self.run(req, false).await
    }

    async fn complete(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        self.core.ensure_ready()?;
        let mut st = self.lock();
        match st.records.get(key).cloned() {
            Some(Record::Charged { amount, approval }) => {
                st.records
                    .insert(key.clone(), Record::Completed { amount, approval });
                Ok(())
            }
            Some(Record::Completed { .. }) => Ok(()),
            other => Err(PaymentError::Illegal(format!(
                "nothing to complete under {key}: {other:?}"
            ))),
        }
    }

    async fn abort(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        // The mock answers at once, so there is never a card wait to cancel: abort
        // only reports what happened under the key.
        self.status(key).await
    }

    async fn void(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        self.core.ensure_ready()?;
        let mut st = self.lock();
        match st.records.get(key).cloned() {
            Some(Record::Charged { amount, .. } | Record::Completed { amount, .. }) => {
                st.records.insert(key.clone(), Record::Reversed { amount });
                // A reversed offline approval is never forwarded.
                st.stored.retain(|k| k != key);
                Ok(())
            }
            Some(Record::Reversed { .. }) => Ok(()),
            other => Err(PaymentError::Illegal(format!(
                "nothing to reverse under {key}: {other:?}"
            ))),
        }
    }

    async fn refund(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        self.run(req, true).await
    }

    async fn forwarding(&self) -> Result<Forwarding, PaymentError> {
        let st = self.lock();
        if st.status_offline {
            return Err(PaymentError::Offline("terminal unreachable".into()));
        }
        Ok(Forwarding {
            host_reachable: !st.host_down,
            queued: st.stored.clone(),
        })
    }

    async fn status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        let st = self.lock();
        if st.status_offline {
            return Err(PaymentError::Offline("terminal unreachable".into()));
        }
        Ok(match st.records.get(key) {
            None => KeyStatus::Unknown,
            Some(
                Record::Charged { approval, .. }
                | Record::Completed { approval, .. }
                | Record::Refunded { approval, .. },
            ) => KeyStatus::Done(Outcome::Approved(approval.clone())),
            Some(Record::Declined(reason)) => KeyStatus::Done(Outcome::Declined {
                reason: reason.clone(),
            }),
            Some(Record::Reversed { .. }) => KeyStatus::Reversed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str) -> PaymentRequest {
        PaymentRequest {
            key: PaymentKey(key.into()),
            amount_minor: 500,
            currency: "EUR".into(),
            instrument: Instrument::Any,
        }
    }

    #[tokio::test]
    async fn lost_response_charges_once_and_status_tells_the_truth() {
        let t = MockTerminal::new();
        t.script([Script::LostResponse]);
        let err = t.authorize(&req("k1")).await.unwrap_err();
        assert!(matches!(err, PaymentError::OutcomeUnknown(_)));
        assert_eq!(t.charge_count("k1"), 1);
        let st = t.status(&PaymentKey("k1".into())).await.unwrap();
        assert!(matches!(st, KeyStatus::Done(Outcome::Approved(_))));
        assert_eq!(t.pending_steps(), 0);
    }

    #[tokio::test]
    async fn a_reused_key_is_refused_not_charged_again() {
        let t = MockTerminal::new();
        t.authorize(&req("k1")).await.unwrap();
        assert!(t.authorize(&req("k1")).await.is_err());
        assert_eq!(t.charge_count("k1"), 1);
        assert_eq!(t.double_charges(), 0);
    }

    #[tokio::test]
    async fn timeout_does_not_charge_and_void_reverses() {
        let t = MockTerminal::new();
        t.script([
            Script::Timeout,
            Script::Decline("insufficient funds".into()),
        ]);
        assert!(t.authorize(&req("a")).await.is_err());
        assert_eq!(
            t.status(&PaymentKey("a".into())).await.unwrap(),
            KeyStatus::Unknown
        );
        let out = t.authorize(&req("b")).await.unwrap();
        assert!(matches!(out, Outcome::Declined { .. }));
        t.authorize(&req("c")).await.unwrap();
        assert_eq!(t.net_charged(), 500);
        t.void(&PaymentKey("c".into())).await.unwrap();
        assert_eq!(t.net_charged(), 0);
        assert_eq!(
            t.status(&PaymentKey("c".into())).await.unwrap(),
            KeyStatus::Reversed
        );
    }
}
