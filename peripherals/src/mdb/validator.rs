//! [`MdbValidator`]: an MDB bill validator (level 1) through the serial MDB bridge,
//! as a [`BillValidator`].
//!
//! # The mapping
//!
//! - `open`: RESET, POLL until JUST RESET, SETUP (bill credits, scaling, escrow),
//!   SECURITY (standard for every type), EXPANSION IDENTIFICATION, BILL TYPE
//!   accepting nothing, STACKER.
//! - `poll`: POLL; notes (escrowed, stacked, returned, rejected), attempts while
//!   disabled and status codes become [`ValidatorEvent`]s. Events read while waiting
//!   for something else are kept, bounded, for the next `poll`. The `Stacked` or
//!   `Returned` that answers an `escrow` is that call's result, not a `poll` event,
//!   so no note is counted twice.
//! - `escrow`: STACKER (the count before), the key journaled in doubt, ESCROW, then
//!   POLL until the note's routing (stacked or returned) comes. A lost answer is
//!   resolved by that POLL; with nothing heard by `escrow_timeout` the stacker count
//!   decides (one more: stacked; none and the note no longer in escrow: returned;
//!   none and the note still there: the validator never acted, `Timeout`, and the
//!   key is forgotten); a validator that cannot be asked leaves the key in doubt,
//!   outcome unknown. A RESET (the next open) returns a note left in escrow, and the
//!   stacker count then says where an in-doubt key's note went.
//!
//! # Concurrency
//!
//! As the changer's: the bus is held for one command and its reply line, the state
//! behind a std mutex never held across an await, one escrow at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::bill::{
    BillActivity, ValidatorCommand, ValidatorSetup, parse_bill_activities, parse_stacker,
    parse_validator_setup,
};
use super::bus::{Bus, BusError, BusTiming};
use super::coin::parse_identification;
use super::protocol::BridgeReply;
use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use crate::fault::{Condition, DeviceFault};
use crate::key::CommandKey;
use crate::transport::{Connector, SerialConnector, TcpConnector};
use crate::validator::{
    BillRoute, BillType, BillValidator, EscrowOutcome, EscrowStatus, Stacker, ValidatorEvent,
    ValidatorStatus,
};

/// Escrow keys the journal remembers; the oldest finished ones go first.
pub const JOURNAL_KEYS: usize = 10_000;
/// Events kept between polls (past it the driver stops polling rather than drop a
/// note).
pub const MAX_PENDING: usize = 256;

/// Settings of one validator.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// Bound on opening the transport.
    pub connect_timeout: Duration,
    /// Bound on one bridge command and its reply line.
    pub io_timeout: Duration,
    /// How often the validator is polled while a note moves.
    pub poll_interval: Duration,
    /// Longest a note may take to be stacked or returned.
    pub escrow_timeout: Duration,
    /// Decimal places of the currency; the validator's setup must agree.
    pub decimal_places: u8,
    /// Quiet time that ends draining a late reply after a timed-out exchange.
    pub drain_quiet: Duration,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            escrow_timeout: Duration::from_secs(10),
            decimal_places: 2,
            drain_quiet: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Done(EscrowOutcome),
    /// ESCROW may have been sent.
    InDoubt {
        value: i64,
        stacker_before: u32,
    },
}

#[derive(Debug, Default)]
struct State {
    setup: Option<ValidatorSetup>,
    types: Vec<BillType>,
    /// The note in escrow, as last reported: (type, value).
    escrowed: Option<(u8, i64)>,
    entries: HashMap<CommandKey, Entry>,
    order: VecDeque<CommandKey>,
    /// The key whose note is moving.
    current: Option<CommandKey>,
    pending: VecDeque<ValidatorEvent>,
}

impl State {
    fn value_of(&self, bill_type: u8) -> i64 {
        self.types
            .iter()
            .find(|t| t.bill_type == bill_type)
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

    /// Finish the current key with `outcome`.
    fn finish(&mut self, outcome: EscrowOutcome) {
        if let Some(k) = self.current.take() {
            self.insert(&k, Entry::Done(outcome));
        }
    }
}

fn status_of(code: u8) -> Option<ValidatorStatus> {
    use ValidatorStatus as S;
    Some(match code {
        1 => S::DefectiveMotor,
        2 => S::SensorProblem,
        3 => S::Busy,
        4 => S::RomChecksumError,
        5 => S::Jammed,
        6 => S::JustReset,
        7 => S::BillRemoved,
        8 => S::CashBoxOut,
        9 => S::Disabled,
        10 => S::InvalidEscrowRequest,
        11 => S::BillRejected,
        12 => S::CreditedBillRemoval,
        _ => return None,
    })
}

#[derive(Debug)]
struct Shared {
    config: ValidatorConfig,
    core: DeviceCore,
    bus: Bus,
    state: StdMutex<State>,
    /// One escrow (or escrow check) at a time.
    escrow: Mutex<()>,
}

/// An MDB bill validator through a serial MDB bridge.
///
/// Clones share the validator. Counters: `bills_stacked`, `bills_returned`,
/// `unknown_activity`, `bytes_drained`.
#[derive(Debug, Clone)]
pub struct MdbValidator {
    shared: Arc<Shared>,
}

impl MdbValidator {
    /// A bridge on serial port `path` at `baud`.
    pub fn serial(id: &str, path: &str, baud: u32, config: ValidatorConfig) -> Self {
        Self::with_connector(id, Arc::new(SerialConnector::new(path, baud)), config)
    }

    /// A bridge behind a serial-to-IP converter at `address` (`host` means port
    /// [`super::driver::DEFAULT_PORT`]).
    pub fn tcp(id: &str, address: &str, config: ValidatorConfig) -> Self {
        Self::with_connector(
            id,
            Arc::new(TcpConnector::new(address, super::driver::DEFAULT_PORT)),
            config,
        )
    }

    /// A bridge over any transport.
    pub fn with_connector(
        id: &str,
        connector: Arc<dyn Connector>,
        config: ValidatorConfig,
    ) -> Self {
        let info = DeviceInfo::new(
            id,
            DeviceKind::CashAcceptor,
            "mdb-validator",
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
                escrow: Mutex::new(()),
            }),
        }
    }

    /// What the validator said about itself at open.
    pub fn setup(&self) -> Option<ValidatorSetup> {
        self.shared.st().setup.clone()
    }
}

impl Shared {
    fn st(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent; a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, cmd: ValidatorCommand) -> Result<BridgeReply, BusError> {
        self.bus.exchange(&self.core, &cmd.bytes()).await
    }

    /// Send a command that must be ACKed (or answered with data).
    async fn command(&self, cmd: ValidatorCommand) -> Result<Option<Vec<u8>>, DeviceFault> {
        self.bus
            .command(&self.core, "validator", &cmd, &cmd.bytes())
            .await
    }

    async fn data(&self, cmd: ValidatorCommand) -> Result<Vec<u8>, DeviceFault> {
        self.bus
            .data(&self.core, "validator", &cmd, &cmd.bytes())
            .await
    }

    /// One POLL, its activities as events; a note's routing that answers the
    /// current escrow finishes its key instead of being an event.
    async fn poll_once(&self) -> Result<Vec<ValidatorEvent>, DeviceFault> {
        let Some(d) = self.command(ValidatorCommand::Poll).await? else {
            return Ok(Vec::new());
        };
        let acts = parse_bill_activities(&d).map_err(|e| {
            DeviceFault::failure(format!("validator answered POLL with bad data: {e}"))
        })?;
        let mut st = self.st();
        let mut out = Vec::new();
        for a in acts {
            let ev = match a {
                BillActivity::Bill { bill_type, routing } => {
                    let route = match routing {
                        0 | 3 => BillRoute::Stacked,
                        1 => BillRoute::Escrowed,
                        2 => BillRoute::Returned,
                        4 => BillRoute::Rejected,
                        _ => {
                            self.core.count("unknown_activity", 1);
                            continue;
                        }
                    };
                    let value = st.value_of(bill_type);
                    match route {
                        BillRoute::Stacked => self.core.count("bills_stacked", 1),
                        BillRoute::Returned => self.core.count("bills_returned", 1),
                        _ => {}
                    }
                    let from_escrow = st.escrowed.is_some_and(|(t, _)| t == bill_type);
                    match route {
                        BillRoute::Escrowed => st.escrowed = Some((bill_type, value)),
                        BillRoute::Stacked | BillRoute::Returned if from_escrow => {
                            st.escrowed = None;
                            if st.current.is_some() {
                                st.finish(if route == BillRoute::Stacked {
                                    EscrowOutcome::Stacked { value_minor: value }
                                } else {
                                    EscrowOutcome::Returned { value_minor: value }
                                });
                                continue;
                            }
                        }
                        _ => {}
                    }
                    ValidatorEvent::Bill {
                        bill_type,
                        value_minor: value,
                        route,
                    }
                }
                BillActivity::DisabledAttempts(n) => ValidatorEvent::DisabledAttempts { count: n },
                BillActivity::Status(code) => match status_of(code) {
                    Some(status) => {
                        if status.is_fault() {
                            let c = if status == ValidatorStatus::CashBoxOut {
                                Condition::Full
                            } else {
                                Condition::Jam
                            };
                            self.core.raise_error(&DeviceFault::condition(
                                c,
                                format!("validator reports {status:?}"),
                            ));
                        }
                        if status == ValidatorStatus::JustReset {
                            // A reset gives back the note in escrow.
                            if let Some((_, v)) = st.escrowed.take()
                                && st.current.is_some()
                            {
                                st.finish(EscrowOutcome::Returned { value_minor: v });
                            }
                        }
                        ValidatorEvent::Status { status }
                    }
                    None => {
                        self.core.count("unknown_activity", 1);
                        continue;
                    }
                },
            };
            out.push(ev);
        }
        Ok(out)
    }

    /// Poll while waiting for something else: events are kept for the caller's
    /// next `poll`. Returns the statuses seen.
    async fn poll_keep(&self) -> Result<Vec<ValidatorStatus>, DeviceFault> {
        if self.st().pending.len() >= MAX_PENDING {
            return Err(DeviceFault::new(
                crate::ErrorKind::Busy,
                "validator events are not being read (poll)",
            ));
        }
        let evs = self.poll_once().await?;
        let mut seen = Vec::new();
        let mut st = self.st();
        for ev in evs {
            if let ValidatorEvent::Status { status } = ev {
                seen.push(status);
                if matches!(status, ValidatorStatus::Busy | ValidatorStatus::JustReset) {
                    continue;
                }
            }
            st.pending.push_back(ev);
        }
        Ok(seen)
    }

    async fn stacker_now(&self) -> Result<Stacker, DeviceFault> {
        let d = self.data(ValidatorCommand::Stacker).await?;
        let s = parse_stacker(&d).map_err(|e| {
            DeviceFault::failure(format!("validator answered STACKER with bad data: {e}"))
        })?;
        let capacity = self
            .st()
            .setup
            .as_ref()
            .map(|s| u32::from(s.stacker_capacity));
        Ok(Stacker {
            bills: u32::from(s.bills),
            full: s.full,
            capacity,
        })
    }

    fn done(&self, key: &CommandKey) -> Option<EscrowOutcome> {
        match self.st().entries.get(key) {
            Some(Entry::Done(o)) => Some(*o),
            _ => None,
        }
    }

    /// Wait for the in-doubt `key`'s note to be routed; then, with nothing heard,
    /// let the stacker count decide whether it was stacked.
    async fn resolve(&self, key: &CommandKey) -> Result<EscrowOutcome, DeviceFault> {
        let until = Instant::now() + self.config.escrow_timeout;
        loop {
            if let Some(o) = self.done(key) {
                return Ok(o);
            }
            if Instant::now() >= until {
                break;
            }
            match self.poll_keep().await {
                Ok(seen) => {
                    if seen.contains(&ValidatorStatus::InvalidEscrowRequest) {
                        break;
                    }
                }
                // A timeout or a bad line: keep polling until the deadline.
                Err(f) if keeps_polling(&f) => {}
                Err(f) => {
                    return Err(DeviceFault::outcome_unknown(format!(
                        "note not accounted for: {f}"
                    )));
                }
            }
            if let Some(o) = self.done(key) {
                return Ok(o);
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
        let Some(Entry::InDoubt {
            value,
            stacker_before,
            ..
        }) = self.st().entries.get(key).copied()
        else {
            return Err(DeviceFault::illegal(format!(
                "escrow {key} is not in doubt"
            )));
        };
        let s = self
            .stacker_now()
            .await
            .map_err(|f| DeviceFault::outcome_unknown(format!("note not accounted for: {f}")))?;
        let escrowed = self.st().escrowed.is_some();
        let outcome = if s.bills > stacker_before {
            EscrowOutcome::Stacked { value_minor: value }
        } else if !escrowed {
            EscrowOutcome::Returned { value_minor: value }
        } else {
            // The validator answers, reported no routing and stacked nothing: it
            // never acted on the ESCROW, and the note is still in escrow. The key is
            // forgotten: nothing was done under it.
            let mut st = self.st();
            st.entries.remove(key);
            st.order.retain(|k| k != key);
            if st.current.as_ref() == Some(key) {
                st.current = None;
            }
            return Err(DeviceFault::timeout(
                "validator did not act on ESCROW; the note is still in escrow",
            ));
        };
        let mut st = self.st();
        if st.current.as_ref() == Some(key) {
            st.escrowed = None;
            st.finish(outcome);
        } else {
            st.insert(key, Entry::Done(outcome));
        }
        Ok(outcome)
    }

    async fn escrow(&self, key: &CommandKey, stack: bool) -> Result<EscrowOutcome, DeviceFault> {
        self.core.ensure_ready()?;
        let _one = self.escrow.lock().await;
        if self.st().entries.contains_key(key) {
            return Err(DeviceFault::illegal(format!(
                "escrow key {key} was already used"
            )));
        }
        if self.st().escrowed.is_none() {
            // The note's report may still be on the wire.
            self.poll_keep().await?;
        }
        let Some((_, value)) = self.st().escrowed else {
            return Err(DeviceFault::illegal("no note in escrow"));
        };
        let before = self.stacker_now().await?;
        {
            let mut st = self.st();
            st.insert(
                key,
                Entry::InDoubt {
                    value,
                    stacker_before: before.bills,
                },
            );
            st.current = Some(key.clone());
        }
        match self.send(ValidatorCommand::Escrow(stack)).await {
            Ok(BridgeReply::Nak) => {
                let mut st = self.st();
                st.entries.remove(key);
                st.order.retain(|k| k != key);
                st.current = None;
                return Err(DeviceFault::failure("validator refused ESCROW"));
            }
            Err(BusError::NotConnected) => {
                let mut st = self.st();
                st.entries.remove(key);
                st.order.retain(|k| k != key);
                st.current = None;
                return Err(BusError::NotConnected.after_send());
            }
            _ => {}
        }
        self.resolve(key).await
    }

    async fn setup_validator(&self) -> Result<(), DeviceFault> {
        {
            let mut st = self.st();
            st.setup = None;
            st.types.clear();
            st.pending.clear();
            st.escrowed = None;
        }
        self.command(ValidatorCommand::Reset).await?;
        let mut reset_seen = false;
        for _ in 0..10 {
            let evs = self.poll_once().await?;
            if evs.contains(&ValidatorEvent::Status {
                status: ValidatorStatus::JustReset,
            }) {
                reset_seen = true;
                break;
            }
        }
        if !reset_seen {
            return Err(DeviceFault::failure("validator never reported JUST RESET"));
        }
        let d = self.data(ValidatorCommand::Setup).await?;
        let setup = parse_validator_setup(&d).map_err(|e| {
            DeviceFault::failure(format!("validator answered SETUP with bad data: {e}"))
        })?;
        if setup.decimal_places != self.config.decimal_places || setup.scaling == 0 {
            return Err(DeviceFault::illegal(format!(
                "validator is set up for {} decimal places and scaling {}; Outpost expects {} \
                 decimal places",
                setup.decimal_places, setup.scaling, self.config.decimal_places
            )));
        }
        let types: Vec<BillType> = setup
            .credits
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0 && **c != 0xFF)
            .map(|(i, c)| BillType {
                bill_type: i as u8,
                value_minor: i64::from(*c) * i64::from(setup.scaling),
            })
            .collect();
        self.command(ValidatorCommand::Security(0)).await?;
        let d = self.data(ValidatorCommand::Identification).await?;
        let id = parse_identification(&d).map_err(|e| {
            DeviceFault::failure(format!("validator answered IDENTIFICATION badly: {e}"))
        })?;
        {
            let mut st = self.st();
            st.types = types;
            st.setup = Some(setup);
        }
        self.command(ValidatorCommand::BillType {
            enable: 0,
            escrow: 0,
        })
        .await?;
        // The RESET gave back a note left in escrow: the stacker says where an
        // in-doubt key's note went.
        let s = self.stacker_now().await?;
        let mut st = self.st();
        st.current = None;
        let doubtful: Vec<(CommandKey, i64, u32)> = st
            .entries
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::InDoubt {
                    value,
                    stacker_before,
                    ..
                } => Some((k.clone(), *value, *stacker_before)),
                Entry::Done(_) => None,
            })
            .collect();
        for (k, value, before) in doubtful {
            let o = if s.bills > before {
                EscrowOutcome::Stacked { value_minor: value }
            } else {
                EscrowOutcome::Returned { value_minor: value }
            };
            st.insert(&k, Entry::Done(o));
        }
        drop(st);
        self.core.set_identity(
            Some(id.manufacturer),
            Some(format!("{} (MDB bill validator, level 1)", id.model)),
            Some(format!("{:04X}", id.version)),
            Some(id.serial),
        );
        Ok(())
    }
}

fn keeps_polling(f: &DeviceFault) -> bool {
    matches!(
        crate::DeviceError::kind(f),
        crate::ErrorKind::Timeout | crate::ErrorKind::Failure
    )
}

#[async_trait]
impl Device for MdbValidator {
    fn core(&self) -> &DeviceCore {
        &self.shared.core
    }

    /// Connects, then RESET, SETUP, SECURITY, IDENTIFICATION, BILL TYPE (none
    /// accepted) and STACKER. An open validator is not reset again.
    async fn open(&self) -> Result<(), DeviceFault> {
        let s = &self.shared;
        if s.bus.is_connected().await && s.core.state() != DeviceState::Closed {
            return Ok(());
        }
        s.bus.connect().await?;
        if let Err(f) = s.setup_validator().await {
            s.bus.disconnect().await;
            return Err(f);
        }
        s.core.mark_opened();
        Ok(())
    }

    async fn close(&self) {
        // Best effort: a validator left accepting would take notes nobody credits.
        let _ = self
            .shared
            .send(ValidatorCommand::BillType {
                enable: 0,
                escrow: 0,
            })
            .await;
        self.shared.bus.disconnect().await;
        self.shared.core.mark_closed(PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = match self.shared.poll_keep().await {
            Ok(seen) => match seen.iter().find(|s| s.is_fault()) {
                Some(s) => HealthReport::now(Health::Failed, format!("validator reports {s:?}")),
                None => HealthReport::now(Health::Ok, "validator answers POLL"),
            },
            Err(f) => HealthReport::now(Health::Failed, f.to_string()),
        };
        self.shared.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl BillValidator for MdbValidator {
    fn bill_types(&self) -> Vec<BillType> {
        self.shared.st().types.clone()
    }

    async fn accept_bills(&self, accept: bool) -> Result<(), DeviceFault> {
        let r = async {
            self.shared.core.ensure_ready()?;
            let (enable, escrow) = {
                let st = self.shared.st();
                let all = st.types.iter().fold(0u16, |m, t| m | (1 << t.bill_type));
                let can = st.setup.as_ref().is_some_and(|s| s.escrow);
                let enable = if accept { all } else { 0 };
                (enable, if can { enable } else { 0 })
            };
            self.shared
                .command(ValidatorCommand::BillType { enable, escrow })
                .await
                .map(|_| ())
        }
        .await;
        self.shared.core.record(&r);
        r
    }

    /// Cancel-safe: events are handed over only when the call returns.
    async fn poll(&self) -> Result<Vec<ValidatorEvent>, DeviceFault> {
        let r = async {
            self.shared.core.ensure_ready()?;
            let fresh = self.shared.poll_once().await;
            let mut out: Vec<ValidatorEvent> = self.shared.st().pending.drain(..).collect();
            out.extend(fresh?);
            Ok(out)
        }
        .await;
        self.shared.core.record(&r);
        r
    }

    /// Not cancel-safe once ESCROW is sent: ask `escrow_status` after a cancelled
    /// call.
    async fn escrow(&self, key: &CommandKey, stack: bool) -> Result<EscrowOutcome, DeviceFault> {
        let r = self.shared.escrow(key, stack).await;
        self.shared.core.record(&r);
        r
    }

    async fn escrow_status(&self, key: &CommandKey) -> Result<EscrowStatus, DeviceFault> {
        let r = async {
            self.shared.core.ensure_ready()?;
            let _one = self.shared.escrow.lock().await;
            let entry = self.shared.st().entries.get(key).copied();
            match entry {
                None => Ok(EscrowStatus::Unknown),
                Some(Entry::Done(o)) => Ok(EscrowStatus::Done(o)),
                Some(Entry::InDoubt { .. }) => {
                    self.shared.st().current = Some(key.clone());
                    match self.shared.resolve(key).await {
                        Ok(o) => Ok(EscrowStatus::Done(o)),
                        Err(f) if crate::DeviceError::kind(&f) == crate::ErrorKind::Timeout => {
                            Ok(EscrowStatus::Unknown)
                        }
                        Err(f) => Err(f),
                    }
                }
            }
        }
        .await;
        self.shared.core.record(&r);
        r
    }

    async fn stacker(&self) -> Result<Stacker, DeviceFault> {
        let r = async {
            self.shared.core.ensure_ready()?;
            self.shared.stacker_now().await
        }
        .await;
        self.shared.core.record(&r);
        r
    }
}
