//! A trait-level bill validator with escrow.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use outpost_peripherals::validator::{
    BillRoute, BillType, BillValidator, EscrowOutcome, EscrowStatus, Stacker, ValidatorEvent,
};
use outpost_peripherals::{
    CommandKey, Device, DeviceCore, DeviceFault, DeviceKind, Health, HealthLevel, HealthReport,
};

use super::{Mock, Model};

/// What the next `escrow` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidatorStep {
    /// Move the note.
    Ok,
    /// Move the note, then lose the answer: the caller sees outcome unknown.
    LoseAnswer,
    /// Lose power before the note moves: outcome unknown, the note stays in escrow,
    /// nothing is recorded under the key.
    PowerLoss,
    /// Refuse with this fault, moving nothing.
    Fail(DeviceFault),
}

/// The validator behind a [`MockValidator`].
#[derive(Debug, Default)]
pub struct ValidatorModel {
    types: Vec<BillType>,
    accepting: bool,
    escrow: Option<u8>,
    stacker: u32,
    capacity: u32,
    events: VecDeque<ValidatorEvent>,
    outcomes: HashMap<CommandKey, EscrowOutcome>,
    stacked_minor: i64,
    returned_minor: i64,
}

/// A bill validator with escrow: bill types, a stacker, notes put in by the test.
/// Each `escrow` takes the next queued [`ValidatorStep`] (default: ok); the status
/// always tells the truth. Clones share it.
pub type MockValidator = Mock<ValidatorModel>;

impl Model for ValidatorModel {
    type Step = ValidatorStep;
    const NAME: &'static str = "MockValidator";
}

impl MockValidator {
    /// A working validator, opened, claimed and enabled, taking notes of `values`
    /// (minor units) into a stacker of `capacity`.
    pub fn new(id: &str, values: &[i64], capacity: u32) -> Self {
        Self::build(id, values, capacity, true)
    }

    /// The same, closed and unclaimed.
    pub fn closed(id: &str, values: &[i64], capacity: u32) -> Self {
        Self::build(id, values, capacity, false)
    }

    fn build(id: &str, values: &[i64], capacity: u32, ready: bool) -> Self {
        let model = ValidatorModel {
            types: values
                .iter()
                .enumerate()
                .map(|(i, v)| BillType {
                    bill_type: i as u8,
                    value_minor: *v,
                })
                .collect(),
            capacity,
            ..ValidatorModel::default()
        };
        Mock::scripted(
            id,
            DeviceKind::CashAcceptor,
            ready,
            ValidatorStep::Ok,
            model,
        )
    }

    /// Put a note of `bill_type` in; where it went.
    pub fn insert_bill(&self, bill_type: u8) -> BillRoute {
        let mut st = self.state();
        let Some(value) = st.types.get(usize::from(bill_type)).map(|t| t.value_minor) else {
            return BillRoute::Rejected;
        };
        let route = if !st.accepting {
            BillRoute::Rejected
        } else if st.escrow.is_some() {
            BillRoute::Returned
        } else {
            st.escrow = Some(bill_type);
            BillRoute::Escrowed
        };
        if route != BillRoute::Escrowed {
            st.returned_minor += value;
        }
        st.events.push_back(ValidatorEvent::Bill {
            bill_type,
            value_minor: value,
            route,
        });
        route
    }

    /// Fill the stacker.
    pub fn fill_stacker(&self) {
        let mut st = self.state();
        st.stacker = st.capacity;
    }

    /// Value in minor units of every note stacked so far.
    pub fn stacked_minor(&self) -> i64 {
        self.state().stacked_minor
    }

    /// Value in minor units of every note given back so far.
    pub fn returned_minor(&self) -> i64 {
        self.state().returned_minor
    }

    fn escrow_now(&self, key: &CommandKey, stack: bool) -> Result<EscrowOutcome, DeviceFault> {
        self.core.ensure_ready()?;
        {
            let st = self.state();
            if st.outcomes.contains_key(key) {
                return Err(DeviceFault::illegal(format!(
                    "escrow key {key} was already used"
                )));
            }
            if st.escrow.is_none() {
                return Err(DeviceFault::illegal("no note in escrow"));
            }
        }
        let step = self.next_step().unwrap_or(ValidatorStep::Ok);
        match &step {
            ValidatorStep::Fail(f) => return Err(f.clone()),
            ValidatorStep::PowerLoss => {
                return Err(DeviceFault::outcome_unknown(
                    "validator lost power before the note moved",
                ));
            }
            ValidatorStep::Ok | ValidatorStep::LoseAnswer => {}
        }
        let mut st = self.state();
        let Some(t) = st.escrow.take() else {
            return Err(DeviceFault::illegal("no note in escrow"));
        };
        let value = st.types[usize::from(t)].value_minor;
        let outcome = if stack && st.stacker < st.capacity {
            st.stacker += 1;
            st.stacked_minor += value;
            EscrowOutcome::Stacked { value_minor: value }
        } else {
            st.returned_minor += value;
            EscrowOutcome::Returned { value_minor: value }
        };
        st.outcomes.insert(key.clone(), outcome);
        drop(st);
        match step {
            ValidatorStep::LoseAnswer => Err(DeviceFault::outcome_unknown(
                "validator answer lost; ask escrow_status",
            )),
            _ => Ok(outcome),
        }
    }
}

#[async_trait]
impl Device for MockValidator {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        self.open_device()
    }

    async fn close(&self) {
        self.state().accepting = false;
        self.close_device();
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        self.checked_health("validator", |_| {
            HealthReport::now(Health::Ok, "mock validator ready")
        })
    }
}

#[async_trait]
impl BillValidator for MockValidator {
    fn bill_types(&self) -> Vec<BillType> {
        if self.is_closed() {
            return Vec::new();
        }
        self.state().types.clone()
    }

    async fn accept_bills(&self, accept: bool) -> Result<(), DeviceFault> {
        let r = self.core.ensure_ready().map(|()| {
            self.state().accepting = accept;
        });
        self.record(r)
    }

    async fn poll(&self) -> Result<Vec<ValidatorEvent>, DeviceFault> {
        let r = self
            .core
            .ensure_ready()
            .map(|()| self.state().events.drain(..).collect());
        self.record(r)
    }

    async fn escrow(&self, key: &CommandKey, stack: bool) -> Result<EscrowOutcome, DeviceFault> {
        let r = self.escrow_now(key, stack);
        self.record(r)
    }

    async fn escrow_status(&self, key: &CommandKey) -> Result<EscrowStatus, DeviceFault> {
        let r = self
            .core
            .ensure_ready()
            .map(|()| match self.state().outcomes.get(key) {
                Some(o) => EscrowStatus::Done(*o),
                None => EscrowStatus::Unknown,
            });
        self.record(r)
    }

    async fn stacker(&self) -> Result<Stacker, DeviceFault> {
        let r = self.core.ensure_ready().map(|()| {
            let st = self.state();
            Stacker {
                bills: st.stacker,
                full: st.stacker >= st.capacity,
                capacity: Some(st.capacity),
            }
        });
        self.record(r)
    }
}
