//! A trait-level coin and note acceptor.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use outpost_peripherals::cash::{CashAcceptor, DenominationCount, Deposit};
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::{
    CommandKey, Condition, Device, DeviceCore, DeviceFault, DeviceKind, ErrorKind, Health,
    HealthLevel, HealthReport,
};

use super::{Mock, Model, Step};

/// The acceptor behind a [`MockCashAcceptor`]: its deposits and its cash box.
#[derive(Debug)]
pub struct CashModel {
    currency: String,
    deposits: HashMap<CommandKey, (BTreeMap<i64, u32>, bool)>,
    active: Option<CommandKey>,
    jammed: bool,
    full: bool,
}

impl Model for CashModel {
    type Step = Step;
    const NAME: &'static str = "MockCashAcceptor";
}

/// A cash acceptor the test feeds coins and notes with [`insert`](Self::insert).
/// `begin_deposit` takes the next queued [`Step`] (default: ok); a jam or a full
/// cash box refuses new money with the [`Jam`](Condition::Jam) or
/// [`Full`](Condition::Full) condition, and what was taken stays counted. Clones
/// share it. Counter: `pieces_accepted`.
pub type MockCashAcceptor = Mock<CashModel>;

impl MockCashAcceptor {
    /// A working acceptor for `currency`, already opened, claimed and enabled.
    pub fn new(id: &str, currency: &str) -> Self {
        let model = CashModel {
            currency: currency.to_owned(),
            deposits: HashMap::new(),
            active: None,
            jammed: false,
            full: false,
        };
        Mock::scripted(id, DeviceKind::CashAcceptor, true, Step::Ok, model)
    }

    /// Jam the acceptor, or clear the jam.
    pub fn set_jammed(&self, jammed: bool) {
        self.state().jammed = jammed;
    }

    /// Fill the cash box, or empty it.
    pub fn set_full(&self, full: bool) {
        self.state().full = full;
    }

    /// A customer inserts a piece worth `denomination_minor`. Taken only during a
    /// deposit and while neither jammed nor full.
    pub fn insert(&self, denomination_minor: i64) -> Result<(), DeviceFault> {
        {
            let mut st = self.state();
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
}

impl CashModel {
    /// The deposit under `key`, if there is one.
    fn deposit(&self, key: &CommandKey) -> Option<Deposit> {
        let (counts, _) = self.deposits.get(key)?;
        Some(Deposit {
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
        })
    }
}

fn refusal(st: &CashModel) -> Option<DeviceFault> {
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
        self.open_device()
    }

    async fn close(&self) {
        self.close_device();
    }

    /// Whether the acceptor takes money, open or not.
    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = match refusal(&self.state()) {
            Some(f) => HealthReport::now(Health::Failed, f.to_string()),
            None => HealthReport::now(Health::Ok, "mock acceptor ready"),
        };
        self.report(report)
    }
}

#[async_trait]
impl CashAcceptor for MockCashAcceptor {
    async fn begin_deposit(&self, key: &CommandKey) -> Result<(), DeviceFault> {
        let result = self.step().and_then(|()| {
            let mut st = self.state();
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
        self.record(result)
    }

    async fn deposit_status(&self, key: &CommandKey) -> Result<Deposit, DeviceFault> {
        let result = self.core.ensure_ready().and_then(|()| {
            let deposit = self.state().deposit(key);
            deposit.ok_or_else(|| DeviceFault::illegal(format!("no deposit under key {key}")))
        });
        self.record(result)
    }

    async fn end_deposit(&self, key: &CommandKey) -> Result<Deposit, DeviceFault> {
        let result = self.core.ensure_ready().and_then(|()| {
            let mut st = self.state();
            if st.active.as_ref() == Some(key) {
                st.active = None;
            }
            match st.deposits.get_mut(key) {
                Some((_, ended)) => *ended = true,
                None => return Err(DeviceFault::illegal(format!("no deposit under key {key}"))),
            }
            let deposit = st.deposit(key);
            deposit.ok_or_else(|| DeviceFault::illegal(format!("no deposit under key {key}")))
        });
        self.record(result)
    }
}
