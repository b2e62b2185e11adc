//! [`MdbChanger`]: an MDB coin changer (level 2 or 3) through the serial MDB bridge,
//! as a [`CoinChanger`].
//!
//! # The mapping
//!
//! - `open`: RESET, POLL until JUST RESET, SETUP (coin credits, scaling, routing),
//!   EXPANSION IDENTIFICATION on level 3, then COIN TYPE with no coin accepted (the
//!   changer takes coins only when the caller says, `accept_coins`).
//! - `poll`: POLL; deposits, manual payouts, slugs and status codes become
//!   [`ChangerEvent`]s. Events the driver read while waiting for something else
//!   (a payout, a health check) are kept, bounded, for the next `poll`, so no coin is
//!   lost from the customer's credit.
//! - `pay_out`: TUBE STATUS, the fewest coins the tubes allow
//!   ([`make_change`]), the key journaled in doubt with the tube counts before, then
//!   one DISPENSE per coin type (15 coins at most each), POLL until the payout is no
//!   longer busy, TUBE STATUS again: what left the tubes (before less after, plus
//!   coins that came into a tube meanwhile, less coins paid by hand) is what was
//!   paid. A lost answer to a DISPENSE is checked against the tube counts: the
//!   payout goes on once they show the coins left, and otherwise stops with the key
//!   in doubt (outcome unknown); `payout_status` finishes that count later, so no
//!   DISPENSE is ever repeated blindly.
//!
//! The journal of keys lives in memory; a caller that must survive its own restart
//! keeps the tube counts before a payout itself and compares them after
//! ([`paid_between`]).
//!
//! # Concurrency
//!
//! The bus (a tokio mutex) is held for one command and its reply line; the driver's
//! state sits behind a std mutex, held only to read or update, never across an
//! await. One payout runs at a time (a tokio mutex around the payout sequence).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::bus::{Bus, BusError, BusTiming};
use super::coin::{
    Activity, ChangerCommand, ChangerSetup, MAX_DISPENSE, parse_activities, parse_identification,
    parse_setup, parse_tube_status,
};
use super::protocol::BridgeReply;
use crate::change::make_change;
use crate::changer::{
    ChangerEvent, ChangerStatus, CoinChanger, CoinRoute, CoinType, Payout, PayoutStatus, TubeLevel,
    change_tubes,
};
use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use crate::fault::{Condition, DeviceFault};
use crate::key::CommandKey;
use crate::transport::{Connector, SerialConnector, TcpConnector};

/// Payout keys the journal remembers; the oldest finished ones go first.
pub const JOURNAL_KEYS: usize = 10_000;
/// Events kept between polls; past this the oldest status codes go first (coin
/// events are never dropped: a full queue refuses to poll the changer for more).
pub const MAX_PENDING: usize = 256;

/// Settings of one changer.
#[derive(Debug, Clone)]
pub struct ChangerConfig {
    /// Bound on opening the transport.
    pub connect_timeout: Duration,
    /// Bound on one bridge command and its reply line.
    pub io_timeout: Duration,
    /// How often the changer is polled while a payout runs.
    pub poll_interval: Duration,
    /// Longest a payout may stay busy.
    pub payout_timeout: Duration,
    /// Decimal places of the currency; the changer's setup must agree.
    pub decimal_places: u8,
    /// Quiet time that ends draining a late reply after a timed-out exchange.
    pub drain_quiet: Duration,
}

impl Default for ChangerConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            payout_timeout: Duration::from_secs(30),
            decimal_places: 2,
            drain_quiet: Duration::from_millis(50),
        }
    }
}

/// What the coins that left the tubes between two counts paid, per coin type:
/// `before` less `after`, plus `came_in` (coins routed into the tube meanwhile),
/// less `by_hand` (coins a technician paid out meanwhile). Each list is per coin
/// type, in the same order; a missing entry counts 0.
pub fn paid_between(before: &[u32], after: &[u32], came_in: &[u32], by_hand: &[u32]) -> Vec<u32> {
    let at = |v: &[u32], i: usize| i64::from(v.get(i).copied().unwrap_or(0));
    (0..before.len().max(after.len()))
        .map(|i| {
            let out = at(before, i) - at(after, i) + at(came_in, i) - at(by_hand, i);
            u32::try_from(out.max(0)).unwrap_or(0)
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Entry {
    Done(Payout),
    /// DISPENSE may have been sent: what the tubes held before, and what moved in
    /// or out of them by other means since.
    InDoubt {
        asked: i64,
        before: Vec<u32>,
        came_in: Vec<u32>,
        by_hand: Vec<u32>,
    },
}

#[derive(Debug, Default)]
struct State {
    setup: Option<ChangerSetup>,
    types: Vec<CoinType>,
    entries: HashMap<CommandKey, Entry>,
    order: VecDeque<CommandKey>,
    pending: VecDeque<ChangerEvent>,
}

impl State {
    fn value_of(&self, coin_type: u8) -> i64 {
        self.types
            .iter()
            .find(|t| t.coin_type == coin_type)
            .map_or(0, |t| t.value_minor)
    }

    fn insert(&mut self, key: &CommandKey, e: Entry) {
        if !self.entries.contains_key(key) {
            self.order.push_back(key.clone());
        }
        self.entries.insert(key.clone(), e);
        while self.order.len() > JOURNAL_KEYS {
            let Some(pos) = self
                .order
                .iter()
                .position(|k| matches!(self.entries.get(k), Some(Entry::Done(_))))
            else {
                break;
            };
            if let Some(k) = self.order.remove(pos) {
                self.entries.remove(&k);
            }
        }
    }

    /// Coins that moved in or out of a tube by other means while payouts are in
    /// doubt.
    fn note(&mut self, ev: &ChangerEvent) {
        for e in self.entries.values_mut() {
            if let Entry::InDoubt {
                came_in, by_hand, ..
            } = e
            {
                match *ev {
                    ChangerEvent::Deposited {
                        coin_type,
                        route: CoinRoute::Tube,
                        ..
                    } => bump(came_in, coin_type, 1),
                    ChangerEvent::ManualDispense {
                        coin_type, count, ..
                    } => bump(by_hand, coin_type, count),
                    _ => {}
                }
            }
        }
    }
}

fn bump(v: &mut Vec<u32>, coin_type: u8, by: u32) {
    let i = usize::from(coin_type);
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] = v[i].saturating_add(by);
}

#[derive(Debug)]
struct Shared {
    config: ChangerConfig,
    core: DeviceCore,
    bus: Bus,
    state: StdMutex<State>,
    /// One payout (or payout check) at a time: its before and after counts must not
    /// interleave with another's.
    payout: Mutex<()>,
}

/// An MDB coin changer through a serial MDB bridge.
///
/// Clones share the changer. Counters: `coins_in`, `coins_paid`, `payouts`,
/// `slugs`, `unknown_activity`, `bytes_drained`.
#[derive(Debug, Clone)]
pub struct MdbChanger {
    shared: Arc<Shared>,
}

fn status_of(code: u8) -> Option<ChangerStatus> {
    use ChangerStatus as S;
    Some(match code {
        1 => S::EscrowRequest,
        2 => S::PayoutBusy,
        3 => S::NoCredit,
        4 => S::DefectiveTubeSensor,
        5 => S::DoubleArrival,
        6 => S::AcceptorUnplugged,
        7 => S::TubeJam,
        8 => S::RomChecksumError,
        9 => S::RoutingError,
        10 => S::Busy,
        11 => S::JustReset,
        12 => S::CoinJam,
        13 => S::CreditedCoinRemoval,
        _ => return None,
    })
}

impl MdbChanger {
    /// A bridge on serial port `path` at `baud`.
    pub fn serial(id: &str, path: &str, baud: u32, config: ChangerConfig) -> Self {
        Self::with_connector(id, Arc::new(SerialConnector::new(path, baud)), config)
    }

    /// A bridge behind a serial-to-IP converter at `address` (`host` means port
    /// [`super::driver::DEFAULT_PORT`]).
    pub fn tcp(id: &str, address: &str, config: ChangerConfig) -> Self {
        Self::with_connector(
            id,
            Arc::new(TcpConnector::new(address, super::driver::DEFAULT_PORT)),
            config,
        )
    }

    /// A bridge over any transport.
    pub fn with_connector(id: &str, connector: Arc<dyn Connector>, config: ChangerConfig) -> Self {
        let info = DeviceInfo::new(
            id,
            DeviceKind::CashAcceptor,
            "mdb-changer",
            connector.describe(),
        );
        let timing = BusTiming {
            io_timeout: config.io_timeout,
            drain_quiet: config.drain_quiet,
        };
        Self {
            shared: Arc::new(Shared {
                bus: Bus::new(connector, config.connect_timeout, timing),
                config,
                core: DeviceCore::new(info),
                state: StdMutex::new(State::default()),
                payout: Mutex::new(()),
            }),
        }
    }

    /// What the changer said about itself at open.
    pub fn setup(&self) -> Option<ChangerSetup> {
        self.shared.st().setup.clone()
    }
}

impl Shared {
    fn st(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent; a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, cmd: ChangerCommand) -> Result<BridgeReply, BusError> {
        self.bus.exchange(&self.core, &cmd.bytes()).await
    }

    /// Send a command that must be ACKed (or answered with data).
    async fn command(&self, cmd: ChangerCommand) -> Result<Option<Vec<u8>>, DeviceFault> {
        self.bus
            .command(&self.core, "changer", &cmd, &cmd.bytes())
            .await
    }

    async fn data(&self, cmd: ChangerCommand) -> Result<Vec<u8>, DeviceFault> {
        self.bus
            .data(&self.core, "changer", &cmd, &cmd.bytes())
            .await
    }

    /// One POLL, its activities as events, noted against payouts in doubt.
    async fn poll_once(&self) -> Result<Vec<ChangerEvent>, DeviceFault> {
        let Some(d) = self.command(ChangerCommand::Poll).await? else {
            return Ok(Vec::new());
        };
        let acts = parse_activities(&d).map_err(|e| {
            DeviceFault::failure(format!("changer answered POLL with bad data: {e}"))
        })?;
        let mut st = self.st();
        let mut out = Vec::new();
        for a in acts {
            let ev = match a {
                Activity::Deposited {
                    coin_type,
                    routing,
                    tube,
                } => {
                    let route = match routing {
                        0 => CoinRoute::CashBox,
                        1 => CoinRoute::Tube,
                        _ => CoinRoute::Returned,
                    };
                    if route != CoinRoute::Returned {
                        self.core.count("coins_in", 1);
                    }
                    ChangerEvent::Deposited {
                        coin_type,
                        value_minor: st.value_of(coin_type),
                        route,
                        tube_count: u32::from(tube),
                    }
                }
                Activity::ManualDispense {
                    coin_type,
                    count,
                    tube,
                } => ChangerEvent::ManualDispense {
                    coin_type,
                    value_minor: st.value_of(coin_type),
                    count: u32::from(count),
                    tube_count: u32::from(tube),
                },
                Activity::Slugs(n) => {
                    self.core.count("slugs", u64::from(n));
                    ChangerEvent::Slugs { count: n }
                }
                Activity::Status(code) => match status_of(code) {
                    Some(status) => {
                        if status.is_fault() {
                            self.core.raise_error(&DeviceFault::condition(
                                Condition::Jam,
                                format!("changer reports {status:?}"),
                            ));
                        }
                        ChangerEvent::Status { status }
                    }
                    None => {
                        self.core.count("unknown_activity", 1);
                        continue;
                    }
                },
            };
            st.note(&ev);
            out.push(ev);
        }
        Ok(out)
    }

    /// Poll while waiting for something else: events are kept for the caller's
    /// next `poll`. Returns the statuses seen.
    async fn poll_keep(&self) -> Result<Vec<ChangerStatus>, DeviceFault> {
        if self.st().pending.len() >= MAX_PENDING {
            return Err(DeviceFault::new(
                crate::ErrorKind::Busy,
                "changer events are not being read (poll)",
            ));
        }
        let evs = self.poll_once().await?;
        let mut seen = Vec::new();
        let mut st = self.st();
        for ev in evs {
            if let ChangerEvent::Status { status } = ev {
                seen.push(status);
                if matches!(
                    status,
                    ChangerStatus::PayoutBusy | ChangerStatus::Busy | ChangerStatus::JustReset
                ) {
                    continue;
                }
            }
            st.pending.push_back(ev);
        }
        Ok(seen)
    }

    async fn tube_levels(&self) -> Result<Vec<TubeLevel>, DeviceFault> {
        let d = self.data(ChangerCommand::TubeStatus).await?;
        let t = parse_tube_status(&d).map_err(|e| {
            DeviceFault::failure(format!("changer answered TUBE STATUS with bad data: {e}"))
        })?;
        let st = self.st();
        Ok(st
            .types
            .iter()
            .filter(|c| c.has_tube)
            .map(|c| TubeLevel {
                coin_type: c.coin_type,
                value_minor: c.value_minor,
                count: u32::from(t.counts.get(usize::from(c.coin_type)).copied().unwrap_or(0)),
                full: t.full & (1 << c.coin_type) != 0,
            })
            .collect())
    }

    fn counts(levels: &[TubeLevel]) -> Vec<u32> {
        let mut v = vec![0u32; 16];
        for l in levels {
            v[usize::from(l.coin_type & 0x0F)] = l.count;
        }
        v
    }

    /// Poll until the changer is no longer paying out; whether a tube jammed.
    async fn wait_payout(&self) -> Result<bool, DeviceFault> {
        let until = Instant::now() + self.config.payout_timeout;
        let mut jammed = false;
        loop {
            let seen = self.poll_keep().await?;
            jammed |= seen.contains(&ChangerStatus::TubeJam);
            if !seen.contains(&ChangerStatus::PayoutBusy) && !seen.contains(&ChangerStatus::Busy) {
                return Ok(jammed);
            }
            if Instant::now() >= until {
                return Err(DeviceFault::timeout(format!(
                    "changer still paying out after {:?}",
                    self.config.payout_timeout
                )));
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Finish a payout in doubt: wait for the changer, count the tubes, record.
    async fn settle(&self, key: &CommandKey) -> Result<Payout, DeviceFault> {
        let jammed = self.wait_payout().await?;
        let after = Self::counts(&self.tube_levels().await?);
        let mut st = self.st();
        let Some(Entry::InDoubt {
            asked,
            before,
            came_in,
            by_hand,
        }) = st.entries.get(key).cloned()
        else {
            return Err(DeviceFault::illegal(format!(
                "payout {key} is not in doubt"
            )));
        };
        let paid = paid_between(&before, &after, &came_in, &by_hand);
        let mut coins = Vec::new();
        let mut total = 0i64;
        for (t, n) in paid.iter().enumerate() {
            if *n > 0 {
                let v = st.value_of(t as u8);
                total += v * i64::from(*n);
                coins.push((v, *n));
            }
        }
        let p = Payout {
            key: key.clone(),
            asked_minor: asked,
            paid_minor: total,
            coins,
        };
        st.insert(key, Entry::Done(p.clone()));
        drop(st);
        let n: u32 = paid.iter().sum();
        self.core.count("coins_paid", u64::from(n));
        if jammed && total != asked {
            return Err(DeviceFault::condition(
                Condition::Jam,
                format!("tube jam: paid {total} of {asked}"),
            ));
        }
        Ok(p)
    }

    async fn pay_out(&self, key: &CommandKey, amount: i64) -> Result<Payout, DeviceFault> {
        self.core.ensure_ready()?;
        let _one = self.payout.lock().await;
        if self.st().entries.contains_key(key) {
            return Err(DeviceFault::illegal(format!(
                "payout key {key} was already used"
            )));
        }
        let levels = self.tube_levels().await?;
        let plan = make_change(amount, &change_tubes(&levels))
            .map_err(|e| DeviceFault::illegal(e.to_string()))?
            .ok_or_else(|| {
                DeviceFault::illegal(format!("the tubes cannot pay {amount} exactly"))
            })?;
        self.st().insert(
            key,
            Entry::InDoubt {
                asked: amount,
                before: Self::counts(&levels),
                came_in: Vec::new(),
                by_hand: Vec::new(),
            },
        );
        self.core.count("payouts", 1);
        for (level, (_, n)) in levels.iter().zip(plan) {
            let mut sent = 0u32;
            while sent < n {
                let count = (n - sent).min(u32::from(MAX_DISPENSE)) as u8;
                let cmd = ChangerCommand::Dispense {
                    coin_type: level.coin_type,
                    count,
                };
                let lost = match self.send(cmd).await {
                    Ok(BridgeReply::Ack | BridgeReply::Data(_)) => None,
                    Ok(BridgeReply::Nak) => {
                        // Refused: nothing of this command went out; count what did.
                        let p = self.settle(key).await?;
                        return Err(DeviceFault::failure(format!(
                            "changer refused DISPENSE after paying {} of {amount}",
                            p.paid_minor
                        )));
                    }
                    Ok(BridgeReply::NoResponse) => Some(DeviceFault::outcome_unknown(
                        "changer did not answer DISPENSE; ask payout_status",
                    )),
                    Err(BusError::NotConnected) => {
                        return Err(BusError::NotConnected.after_send());
                    }
                    Err(e) => Some(e.after_send()),
                };
                sent += u32::from(count);
                // A lost answer: go on only once the tube shows these coins left.
                if let Some(f) = lost
                    && !self.went_out(key, level.coin_type, sent).await
                {
                    return Err(f);
                }
            }
        }
        self.settle(key).await
    }

    /// Whether `coins` of `coin_type` have left the tubes under the payout in
    /// doubt `key`, by the tube counts now. Any failure to tell is `false`.
    async fn went_out(&self, key: &CommandKey, coin_type: u8, coins: u32) -> bool {
        if self.wait_payout().await.is_err() {
            return false;
        }
        let Ok(levels) = self.tube_levels().await else {
            return false;
        };
        let after = Self::counts(&levels);
        let st = self.st();
        let Some(Entry::InDoubt {
            before,
            came_in,
            by_hand,
            ..
        }) = st.entries.get(key)
        else {
            return false;
        };
        let paid = paid_between(before, &after, came_in, by_hand);
        paid.get(usize::from(coin_type)).copied().unwrap_or(0) >= coins
    }

    async fn setup_changer(&self) -> Result<(), DeviceFault> {
        {
            let mut st = self.st();
            st.setup = None;
            st.types.clear();
            st.pending.clear();
        }
        self.command(ChangerCommand::Reset).await?;
        let mut reset_seen = false;
        for _ in 0..10 {
            let evs = self.poll_once().await?;
            if evs.contains(&ChangerEvent::Status {
                status: ChangerStatus::JustReset,
            }) {
                reset_seen = true;
                break;
            }
        }
        if !reset_seen {
            return Err(DeviceFault::failure("changer never reported JUST RESET"));
        }
        let d = self.data(ChangerCommand::Setup).await?;
        let setup = parse_setup(&d).map_err(|e| {
            DeviceFault::failure(format!("changer answered SETUP with bad data: {e}"))
        })?;
        if setup.decimal_places != self.config.decimal_places || setup.scaling == 0 {
            return Err(DeviceFault::illegal(format!(
                "changer is set up for {} decimal places and scaling {}; Outpost expects {} \
                 decimal places",
                setup.decimal_places, setup.scaling, self.config.decimal_places
            )));
        }
        let types: Vec<CoinType> = setup
            .credits
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0 && **c != 0xFF)
            .map(|(i, c)| CoinType {
                coin_type: i as u8,
                value_minor: i64::from(*c) * i64::from(setup.scaling),
                has_tube: setup.routing & (1 << i) != 0,
            })
            .collect();
        let mut model = format!("MDB coin changer, level {}", setup.level);
        let mut ident = None;
        if setup.level >= 3 {
            let d = self.data(ChangerCommand::Identification).await?;
            let id = parse_identification(&d).map_err(|e| {
                DeviceFault::failure(format!("changer answered IDENTIFICATION badly: {e}"))
            })?;
            model = format!("{} (level {})", id.model, setup.level);
            ident = Some(id);
        }
        let manual = setup.routing;
        {
            let mut st = self.st();
            st.types = types;
            st.setup = Some(setup);
        }
        self.command(ChangerCommand::CoinType { enable: 0, manual })
            .await?;
        self.core.set_identity(
            ident.as_ref().map(|i| i.manufacturer.clone()),
            Some(model),
            ident.as_ref().map(|i| format!("{:04X}", i.version)),
            ident.as_ref().map(|i| i.serial.clone()),
        );
        Ok(())
    }
}

#[async_trait]
impl Device for MdbChanger {
    fn core(&self) -> &DeviceCore {
        &self.shared.core
    }

    /// Connects, then RESET, SETUP, IDENTIFICATION (level 3) and COIN TYPE (none
    /// accepted). An open changer is not reset again. Cancel-safe, though a
    /// cancelled open leaves the device closed.
    async fn open(&self) -> Result<(), DeviceFault> {
        let s = &self.shared;
        if s.bus.is_connected().await && s.core.state() != DeviceState::Closed {
            return Ok(());
        }
        s.bus.connect().await?;
        if let Err(f) = s.setup_changer().await {
            s.bus.disconnect().await;
            return Err(f);
        }
        s.core.mark_opened();
        Ok(())
    }

    async fn close(&self) {
        // Best effort: a changer left accepting would take coins nobody credits.
        let _ = self
            .shared
            .send(ChangerCommand::CoinType {
                enable: 0,
                manual: 0,
            })
            .await;
        self.shared.bus.disconnect().await;
        self.shared.core.mark_closed(PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = match self.shared.poll_keep().await {
            Ok(seen) => match seen.iter().find(|s| s.is_fault()) {
                Some(s) => HealthReport::now(Health::Failed, format!("changer reports {s:?}")),
                None => HealthReport::now(Health::Ok, "changer answers POLL"),
            },
            Err(f) => HealthReport::now(Health::Failed, f.to_string()),
        };
        self.shared.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl CoinChanger for MdbChanger {
    fn coin_types(&self) -> Vec<CoinType> {
        self.shared.st().types.clone()
    }

    async fn tubes(&self) -> Result<Vec<TubeLevel>, DeviceFault> {
        let r = async {
            self.shared.core.ensure_ready()?;
            self.shared.tube_levels().await
        }
        .await;
        self.shared.core.record(&r);
        r
    }

    async fn accept_coins(&self, accept: bool) -> Result<(), DeviceFault> {
        let r = async {
            self.shared.core.ensure_ready()?;
            let (enable, manual) = {
                let st = self.shared.st();
                let all = st.types.iter().fold(0u16, |m, t| m | (1 << t.coin_type));
                let manual = st.setup.as_ref().map_or(0, |s| s.routing);
                (if accept { all } else { 0 }, manual)
            };
            self.shared
                .command(ChangerCommand::CoinType { enable, manual })
                .await
                .map(|_| ())
        }
        .await;
        self.shared.core.record(&r);
        r
    }

    /// Cancel-safe: events are handed over only when the call returns.
    async fn poll(&self) -> Result<Vec<ChangerEvent>, DeviceFault> {
        let r = async {
            self.shared.core.ensure_ready()?;
            let fresh = self.shared.poll_once().await;
            let mut st = self.shared.st();
            let mut out: Vec<ChangerEvent> = st.pending.drain(..).collect();
            drop(st);
            out.extend(fresh?);
            Ok(out)
        }
        .await;
        self.shared.core.record(&r);
        r
    }

    /// Not cancel-safe once a DISPENSE is sent: ask `payout_status` after a
    /// cancelled call.
    async fn pay_out(&self, key: &CommandKey, amount_minor: i64) -> Result<Payout, DeviceFault> {
        let r = self.shared.pay_out(key, amount_minor).await;
        self.shared.core.record(&r);
        r
    }

    async fn payout_status(&self, key: &CommandKey) -> Result<PayoutStatus, DeviceFault> {
        let r = async {
            self.shared.core.ensure_ready()?;
            let _one = self.shared.payout.lock().await;
            let entry = self.shared.st().entries.get(key).cloned();
            match entry {
                None => Ok(PayoutStatus::Unknown),
                Some(Entry::Done(p)) => Ok(PayoutStatus::Done(p)),
                Some(Entry::InDoubt { .. }) => match self.shared.settle(key).await {
                    Ok(p) => Ok(PayoutStatus::Done(p)),
                    Err(f) if f.device_condition() == Some(Condition::Jam) => {
                        match self.shared.st().entries.get(key) {
                            Some(Entry::Done(p)) => Ok(PayoutStatus::Done(p.clone())),
                            _ => Err(f),
                        }
                    }
                    Err(f) => Err(f),
                },
            }
        }
        .await;
        self.shared.core.record(&r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_between_counts_what_left_the_tubes_by_payout_only() {
        // 3 left tube 0, one coin came into tube 0 meanwhile, 1 paid by hand
        // from tube 1.
        assert_eq!(
            paid_between(&[10, 5, 7], &[8, 4, 7], &[1], &[0, 1]),
            [3, 0, 0]
        );
        // More coins than before (deposits not noted): never negative.
        assert_eq!(paid_between(&[1], &[4], &[], &[]), [0]);
    }
}
