//! A trait-level vend dispenser.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::vend::{VendDispenser, VendOutcome, VendStatus};
use outpost_peripherals::{
    CommandKey, Device, DeviceCore, DeviceFault, DeviceKind, Health, HealthLevel, HealthReport,
};

use super::{Mock, Model};

/// What the next `vend` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendStep {
    /// Drop the product if the slot has one.
    Ok,
    /// The motor turns but the drop sensor sees nothing.
    NotDispensed(String),
    /// Drop the product, then lose the answer: the caller sees outcome unknown.
    LoseAnswer,
    /// Lose power before the motor turns: outcome unknown, nothing dropped.
    PowerLoss,
    /// Refuse with this fault, doing nothing and not recording the key.
    Fail(DeviceFault),
}

/// The dispenser behind a [`MockVend`]: its slots, and what happened under each key.
#[derive(Debug, Default)]
pub struct VendModel {
    stock: BTreeMap<String, u32>,
    outcomes: HashMap<CommandKey, VendOutcome>,
    /// Keys whose vend was lost to a power loss before it started.
    never_started: Vec<CommandKey>,
    dropped: HashMap<CommandKey, u32>,
}

/// A vend dispenser with stocked slots. Each `vend` takes the next queued
/// [`VendStep`] (default: ok) and remembers its outcome under the key, so
/// `vend_status` always tells the truth and [`dispensed`](Self::dispensed) counts
/// real drops. Clones share it. Counter: `vends`.
pub type MockVend = Mock<VendModel>;

impl Model for VendModel {
    type Step = VendStep;
    const NAME: &'static str = "MockVend";
}

impl MockVend {
    /// A working dispenser, opened, claimed and enabled, with `slots` stocked.
    pub fn new(id: &str, slots: &[(&str, u32)]) -> Self {
        Self::build(id, slots, true)
    }

    /// A closed, unclaimed dispenser.
    pub fn closed(id: &str, slots: &[(&str, u32)]) -> Self {
        Self::build(id, slots, false)
    }

    fn build(id: &str, slots: &[(&str, u32)], ready: bool) -> Self {
        let model = VendModel {
            stock: slots.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect(),
            ..VendModel::default()
        };
        Mock::scripted(id, DeviceKind::VendDispenser, ready, VendStep::Ok, model)
    }

    /// Products that really dropped under `key`.
    pub fn dispensed(&self, key: &CommandKey) -> u32 {
        self.state().dropped.get(key).copied().unwrap_or(0)
    }

    /// Products left in `slot`.
    pub fn stock(&self, slot: &str) -> u32 {
        self.state().stock.get(slot).copied().unwrap_or(0)
    }

    fn vend_now(&self, key: &CommandKey, slot: &str) -> Result<VendOutcome, DeviceFault> {
        self.core.ensure_ready()?;
        {
            let st = self.state();
            if st.outcomes.contains_key(key) || st.never_started.contains(key) {
                return Err(DeviceFault::illegal(format!("key {key} was already used")));
            }
            if !st.stock.contains_key(slot) {
                return Err(DeviceFault::illegal(format!("no slot {slot:?}")));
            }
        }
        let step = self.next_step().unwrap_or(VendStep::Ok);
        let mut st = self.state();
        let drop_one = |st: &mut VendModel| -> VendOutcome {
            let left = st.stock.get_mut(slot);
            match left {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    *st.dropped.entry(key.clone()).or_default() += 1;
                    VendOutcome::Dispensed
                }
                _ => VendOutcome::NotDispensed {
                    reason: format!("slot {slot} is empty"),
                },
            }
        };
        let (outcome, answer) = match step {
            VendStep::Fail(f) => return Err(f),
            VendStep::Ok => {
                let o = drop_one(&mut st);
                (o.clone(), Ok(o))
            }
            VendStep::NotDispensed(reason) => {
                let o = VendOutcome::NotDispensed { reason };
                (o.clone(), Ok(o))
            }
            VendStep::LoseAnswer => (
                drop_one(&mut st),
                Err(DeviceFault::outcome_unknown("dispenser answer lost")),
            ),
            VendStep::PowerLoss => {
                st.never_started.push(key.clone());
                return Err(DeviceFault::outcome_unknown(
                    "dispenser lost power during the vend",
                ));
            }
        };
        let dropped = outcome == VendOutcome::Dispensed;
        st.outcomes.insert(key.clone(), outcome);
        drop(st);
        if dropped {
            self.core.count("vends", 1);
            self.core.events().publish(EventBody::Data {
                data: DataEvent::Drop {
                    slot: slot.to_owned(),
                },
            });
        }
        answer
    }
}

#[async_trait]
impl Device for MockVend {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        self.open_device()
    }

    async fn close(&self) {
        self.close_device();
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        self.checked_health("dispenser", |m| {
            let empty = m.stock.values().filter(|n| **n == 0).count();
            if empty > 0 {
                HealthReport::now(Health::Degraded, format!("{empty} slot(s) empty"))
            } else {
                HealthReport::now(Health::Ok, "mock dispenser ready")
            }
        })
    }
}

#[async_trait]
impl VendDispenser for MockVend {
    async fn vend(&self, key: &CommandKey, slot: &str) -> Result<VendOutcome, DeviceFault> {
        let result = self.vend_now(key, slot);
        self.record(result)
    }

    async fn vend_status(&self, key: &CommandKey) -> Result<VendStatus, DeviceFault> {
        let result = self.core.ensure_ready().map(|()| {
            let st = self.state();
            match st.outcomes.get(key) {
                Some(o) => VendStatus::Done(o.clone()),
                // Power lost before the motor turned: the dispenser never ran it.
                None => VendStatus::Unknown,
            }
        });
        self.record(result)
    }
}
