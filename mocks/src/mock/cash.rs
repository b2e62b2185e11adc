//! A trait-level coin and note acceptor.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use outpost_peripherals::cash::{CashAcceptor, DenominationCount, Deposit};
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::{
    CommandKey, Condition, Device, DeviceCore, DeviceFault, DeviceKind, DeviceState, ErrorKind,
    Health, HealthLevel, HealthReport, PowerState,
};

use super::{Step, core};
use crate::Expectations;

#[derive(Debug, Default)]
struct State {
    deposits: HashMap<CommandKey, (BTreeMap<i64, u32>, bool)>,
    active: Option<CommandKey>,
    jammed: bool,
    full: bool,
}

/// A cash acceptor the test feeds coins and notes with [`insert`](Self::insert).
/// `begin_deposit` takes the next queued [`Step`] (default: ok); a jam or a full
/// cash box refuses new money with the [`Jam`](Condition::Jam) or
/// [`Full`](Condition::Full) condition, and what was taken stays counted. Clones
/// share it. Counter: `pieces_accepted`.
#[derive(Debug, Clone)]
pub struct MockCashAcceptor {
    core: Arc<DeviceCore>,
    steps: Expectations<Step>,
    currency: String,
    state: Arc<Mutex<State>>,
}

impl MockCashAcceptor {
    /// A working acceptor for `currency`, already opened, claimed and enabled.
    pub fn new(id: &str, currency: &str) -> Self {
        Self {
            core: core(id, DeviceKind::CashAcceptor, true),
            steps: Expectations::new(Some(Step::Ok)),
            currency: currency.to_owned(),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Held only for bookkeeping, never across an await.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue what the next `begin_deposit` calls do.
    pub fn expect(&self, steps: impl IntoIterator<Item = Step>) -> &Self {
        self.steps.expect(steps);
        self
    }

    /// Fail the test if a queued step was never used.
    ///
    /// # Panics
    /// When steps are left.
    #[track_caller]
    pub fn done(&self) {
        self.steps.done();
    }

    /// Jam the acceptor, or clear the jam.
    pub fn set_jammed(&self, jammed: bool) {
        self.lock().jammed = jammed;
    }

    /// Fill the cash box, or empty it.
    pub fn set_full(&self, full: bool) {
        self.lock().full = full;
    }

    /// A customer inserts a piece worth `denomination_minor`. Taken only during a
    /// deposit and while neither jammed nor full.
    pub fn insert(&self, denomination_minor: i64) -> Result<(), DeviceFault> {
        {
            let mut st = self.lock();
            if let Some(f) = refusal(&st) {
                return Err(f);
            }
            let Some(key) = st.active.clone() else {
                return Err(DeviceFault::illegal(
                    "no deposit in progress: piece returned",
                ));
            };
            if let Some((counts, _)) = st.deposits.get_mut(&key) {
                *counts.entry(denomination_minor).or_default() += 1;
            }
        }
        self.core.count("pieces_accepted", 1);
        self.core.events().publish(EventBody::Data {
            data: DataEvent::Cash { denomination_minor },
        });
        Ok(())
    }

    fn deposit(&self, key: &CommandKey, counts: &BTreeMap<i64, u32>) -> Deposit {
        Deposit {
            key: key.clone(),
            currency: self.currency.clone(),
            total_minor: counts.iter().map(|(d, c)| d * i64::from(*c)).sum(),
            counts: counts
                .iter()
                .map(|(d, c)| DenominationCount {
                    denomination_minor: *d,
                    count: *c,
                })
                .collect(),
        }
    }
}

fn refusal(st: &State) -> Option<DeviceFault> {
    if st.jammed {
        Some(DeviceFault::condition(Condition::Jam, "acceptor jammed"))
    } else if st.full {
        Some(DeviceFault::condition(Condition::Full, "cash box full"))
    } else {
        None
    }
}

#[async_trait]
impl Device for MockCashAcceptor {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        if self.core.state() == DeviceState::Closed {
            self.core.mark_opened();
        }
        Ok(())
    }

    async fn close(&self) {
        self.core.mark_closed(PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let st = self.lock();
        let report = match refusal(&st) {
            Some(f) => HealthReport::now(Health::Failed, f.to_string()),
            None => HealthReport::now(Health::Ok, "mock acceptor ready"),
        };
        drop(st);
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl CashAcceptor for MockCashAcceptor {
    async fn begin_deposit(&self, key: &CommandKey) -> Result<(), DeviceFault> {
        let result = self.core.ensure_ready().and_then(|()| {
            if let Some(Step::Fail(f)) = self.steps.next() {
                return Err(f);
            }
            let mut st = self.lock();
            if st.deposits.contains_key(key) {
                return Err(DeviceFault::illegal(format!("key {key} was already used")));
            }
            if st.active.is_some() {
                return Err(DeviceFault::new(
                    ErrorKind::Busy,
                    "another deposit is running",
                ));
            }
            if let Some(f) = refusal(&st) {
                return Err(f);
            }
            st.deposits.insert(key.clone(), (BTreeMap::new(), false));
            st.active = Some(key.clone());
            Ok(())
        });
        self.core.record(&result);
        result
    }

    async fn deposit_status(&self, key: &CommandKey) -> Result<Deposit, DeviceFault> {
        let result = self.core.ensure_ready().and_then(|()| {
            let st = self.lock();
            match st.deposits.get(key) {
                Some((counts, _)) => Ok(self.deposit(key, counts)),
                None => Err(DeviceFault::illegal(format!("no deposit under key {key}"))),
            }
        });
        self.core.record(&result);
        result
    }

    async fn end_deposit(&self, key: &CommandKey) -> Result<Deposit, DeviceFault> {
        let result = self.core.ensure_ready().and_then(|()| {
            let mut st = self.lock();
            if st.active.as_ref() == Some(key) {
                st.active = None;
            }
            match st.deposits.get_mut(key) {
                Some((counts, ended)) => {
                    *ended = true;
                    let counts = counts.clone();
                    drop(st);
                    Ok(self.deposit(key, &counts))
                }
                None => Err(DeviceFault::illegal(format!("no deposit under key {key}"))),
            }
        });
        self.core.record(&result);
        result
    }
}
