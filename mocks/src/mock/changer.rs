//! A trait-level coin changer.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use outpost_peripherals::change::make_change;
use outpost_peripherals::changer::{
    ChangerEvent, ChangerStatus, CoinChanger, CoinRoute, CoinType, Payout, PayoutStatus, TubeLevel,
    change_tubes,
};
use outpost_peripherals::{
    CommandKey, Condition, Device, DeviceCore, DeviceFault, DeviceKind, Health, HealthLevel,
    HealthReport,
};

use super::{Mock, Model};

/// What the next `pay_out` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangerStep {
    /// Pay it.
    Ok,
    /// Pay it, then lose the answer: the caller sees outcome unknown.
    LoseAnswer,
    /// Lose power before a coin moves: outcome unknown, nothing paid.
    PowerLoss,
    /// Pay this many coins, then the tube jams.
    JamAfter(u32),
    /// Refuse with this fault, paying nothing and not recording the key.
    Fail(DeviceFault),
}

/// The changer behind a [`MockChanger`]: coin types, tubes, cash box, reports, and
/// what was paid under each key.
#[derive(Debug, Default)]
pub struct ChangerModel {
    types: Vec<CoinType>,
    tubes: Vec<u32>,
    capacity: u32,
    cash_box: Vec<u32>,
    accepting: bool,
    events: VecDeque<ChangerEvent>,
    payouts: HashMap<CommandKey, Payout>,
    /// Coins paid out, by coin type.
    paid: Vec<u32>,
}

/// A coin changer: coin types with tubes, a cash box, and payouts under keys. Each
/// `pay_out` takes the next queued [`ChangerStep`] (default: ok) and pays the fewest
/// coins its tubes allow; [`payout_status`](CoinChanger::payout_status) always tells
/// the truth. Clones share it. Counter: `payouts`.
pub type MockChanger = Mock<ChangerModel>;

impl Model for ChangerModel {
    type Step = ChangerStep;
    const NAME: &'static str = "MockChanger";
}

impl MockChanger {
    /// A working changer, opened, claimed and enabled: coin `values` (minor units,
    /// every one with a tube of `capacity`) holding `counts`.
    pub fn new(id: &str, values: &[i64], counts: &[u32], capacity: u32) -> Self {
        Self::build(id, values, counts, capacity, true)
    }

    /// The same, closed and unclaimed.
    pub fn closed(id: &str, values: &[i64], counts: &[u32], capacity: u32) -> Self {
        Self::build(id, values, counts, capacity, false)
    }

    fn build(id: &str, values: &[i64], counts: &[u32], capacity: u32, ready: bool) -> Self {
        let types = values
            .iter()
            .enumerate()
            .map(|(i, v)| CoinType {
                coin_type: i as u8,
                value_minor: *v,
                has_tube: true,
            })
            .collect();
        let mut tubes = counts.to_vec();
        tubes.resize(values.len(), 0);
        let model = ChangerModel {
            types,
            tubes,
            capacity,
            cash_box: vec![0; values.len()],
            paid: vec![0; values.len()],
            ..ChangerModel::default()
        };
        Mock::scripted(id, DeviceKind::CashAcceptor, ready, ChangerStep::Ok, model)
    }

    /// Put a coin of `coin_type` in; where it went.
    pub fn insert_coin(&self, coin_type: u8) -> CoinRoute {
        let mut st = self.state();
        let i = usize::from(coin_type);
        let Some(value) = st.types.get(i).map(|t| t.value_minor) else {
            return CoinRoute::Returned;
        };
        let route = if !st.accepting {
            CoinRoute::Returned
        } else if st.tubes[i] < st.capacity {
            st.tubes[i] += 1;
            CoinRoute::Tube
        } else {
            st.cash_box[i] += 1;
            CoinRoute::CashBox
        };
        let tube_count = st.tubes[i];
        st.events.push_back(ChangerEvent::Deposited {
            coin_type,
            value_minor: value,
            route,
            tube_count,
        });
        route
    }

    /// The customer presses the coin return lever.
    pub fn press_return(&self) {
        self.state().events.push_back(ChangerEvent::Status {
            status: ChangerStatus::EscrowRequest,
        });
    }

    /// Coins in each tube, by coin type.
    pub fn tube_counts(&self) -> Vec<u32> {
        self.state().tubes.clone()
    }

    /// Value in minor units of every coin paid out so far.
    pub fn paid_out_minor(&self) -> i64 {
        let st = self.state();
        st.paid
            .iter()
            .zip(&st.types)
            .map(|(n, t)| i64::from(*n) * t.value_minor)
            .sum()
    }

    fn levels(st: &ChangerModel) -> Vec<TubeLevel> {
        st.types
            .iter()
            .zip(&st.tubes)
            .map(|(t, n)| TubeLevel {
                coin_type: t.coin_type,
                value_minor: t.value_minor,
                count: *n,
                full: *n >= st.capacity,
            })
            .collect()
    }

    fn pay_now(&self, key: &CommandKey, amount: i64) -> Result<Payout, DeviceFault> {
        self.core.ensure_ready()?;
        let plan = {
            let st = self.state();
            if st.payouts.contains_key(key) {
                return Err(DeviceFault::illegal(format!(
                    "payout key {key} was already used"
                )));
            }
            make_change(amount, &change_tubes(&Self::levels(&st)))
                .map_err(|e| DeviceFault::illegal(e.to_string()))?
                .ok_or_else(|| {
                    DeviceFault::illegal(format!("the tubes cannot pay {amount} exactly"))
                })?
        };
        let step = self.next_step().unwrap_or(ChangerStep::Ok);
        let mut limit = match &step {
            ChangerStep::Fail(f) => return Err(f.clone()),
            ChangerStep::PowerLoss => Some(0),
            ChangerStep::JamAfter(n) => Some(*n),
            ChangerStep::Ok | ChangerStep::LoseAnswer => None,
        };
        let mut st = self.state();
        let mut coins = Vec::new();
        let mut total = 0;
        for (i, (value, n)) in plan.into_iter().enumerate() {
            let n = limit.map_or(n, |l| n.min(l));
            if let Some(l) = limit.as_mut() {
                *l -= n;
            }
            if n > 0 {
                st.tubes[i] -= n;
                st.paid[i] += n;
                coins.push((value, n));
                total += value * i64::from(n);
            }
        }
        let p = Payout {
            key: key.clone(),
            asked_minor: amount,
            paid_minor: total,
            coins,
        };
        st.payouts.insert(key.clone(), p.clone());
        drop(st);
        self.core.count("payouts", 1);
        match step {
            ChangerStep::LoseAnswer | ChangerStep::PowerLoss => Err(DeviceFault::outcome_unknown(
                "changer answer lost; ask payout_status",
            )),
            ChangerStep::JamAfter(_) if total != amount => Err(DeviceFault::condition(
                Condition::Jam,
                format!("tube jam: paid {total} of {amount}"),
            )),
            _ => Ok(p),
        }
    }
}

#[async_trait]
impl Device for MockChanger {
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
        self.checked_health("changer", |_| {
            HealthReport::now(Health::Ok, "mock changer ready")
        })
    }
}

#[async_trait]
impl CoinChanger for MockChanger {
    fn coin_types(&self) -> Vec<CoinType> {
        if self.is_closed() {
            return Vec::new();
        }
        self.state().types.clone()
    }

    async fn tubes(&self) -> Result<Vec<TubeLevel>, DeviceFault> {
        let r = self
            .core
            .ensure_ready()
            .map(|()| Self::levels(&self.state()));
        self.record(r)
    }

    async fn accept_coins(&self, accept: bool) -> Result<(), DeviceFault> {
        let r = self.core.ensure_ready().map(|()| {
            self.state().accepting = accept;
        });
        self.record(r)
    }

    async fn poll(&self) -> Result<Vec<ChangerEvent>, DeviceFault> {
        let r = self
            .core
            .ensure_ready()
            .map(|()| self.state().events.drain(..).collect());
        self.record(r)
    }

    async fn pay_out(&self, key: &CommandKey, amount_minor: i64) -> Result<Payout, DeviceFault> {
        let r = self.pay_now(key, amount_minor);
        self.record(r)
    }

    async fn payout_status(&self, key: &CommandKey) -> Result<PayoutStatus, DeviceFault> {
        let r = self
            .core
            .ensure_ready()
            .map(|()| match self.state().payouts.get(key) {
                Some(p) => PayoutStatus::Done(p.clone()),
                None => PayoutStatus::Unknown,
            });
        self.record(r)
    }
}
