//! [`Mock`]: what every scripted mock is made of, in the shape of embedded-hal-mock's
//! `Generic`: a device core, the [`Expectations`] queue of steps its commands take,
//! and the state of the device it models. Each mock names its type (`MockDrawer` is
//! `Mock<DrawerModel>`), adds its constructors and controls, and implements the
//! device traits on it with the helpers here.

use std::sync::{Arc, Mutex, MutexGuard};

use outpost_peripherals::{
    DeviceCore, DeviceFault, DeviceInfo, DeviceKind, DeviceState, Health, HealthReport, PowerState,
};

use super::Step;
use crate::Expectations;

/// The device a [`Mock`] models.
pub trait Model: std::fmt::Debug + Send + 'static {
    /// What the next command does.
    type Step: Clone + std::fmt::Debug + Send + 'static;
    /// The mock's name, for `Debug`.
    const NAME: &'static str;
}

/// A scripted mock of the device `M`. Clones share it.
pub struct Mock<M: Model> {
    pub(super) core: Arc<DeviceCore>,
    steps: Expectations<M::Step>,
    /// A std mutex: held only for bookkeeping, never across an await.
    state: Arc<Mutex<M>>,
}

impl<M: Model> Clone for Mock<M> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
            steps: self.steps.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<M: Model> std::fmt::Debug for Mock<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(M::NAME)
            .field("core", &self.core)
            .field("steps", &self.steps)
            .field("state", &self.state)
            .finish()
    }
}

impl<M: Model> Mock<M> {
    /// A mock of `model` with id `id`; `ready` opens, claims and enables it. Its
    /// commands take `default` once no step is queued.
    pub(super) fn scripted(
        id: &str,
        kind: DeviceKind,
        ready: bool,
        default: M::Step,
        model: M,
    ) -> Self {
        let core = Arc::new(DeviceCore::new(DeviceInfo::new(
            id, kind, "mock", "virtual",
        )));
        if ready {
            core.mark_opened();
            // A fresh core is unclaimed, so neither call can fail.
            let _ = core.claim();
            let _ = core.enable();
        }
        Self {
            core,
            steps: Expectations::new(Some(default)),
            state: Arc::new(Mutex::new(model)),
        }
    }

    /// Queue what the next commands do, in order.
    pub fn expect(&self, steps: impl IntoIterator<Item = M::Step>) -> &Self {
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

    /// The modelled device.
    pub(super) fn state(&self) -> MutexGuard<'_, M> {
        // A panic while held leaves a state that is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The step for this command: the next queued one, else the default.
    pub(super) fn next_step(&self) -> Option<M::Step> {
        self.steps.next()
    }

    /// Count a command's result (and raise a failure as an error event), and return
    /// it.
    pub(super) fn record<T>(&self, result: Result<T, DeviceFault>) -> Result<T, DeviceFault> {
        self.core.record(&result);
        result
    }

    /// Whether the mock is closed.
    pub(super) fn is_closed(&self) -> bool {
        self.core.state() == DeviceState::Closed
    }

    /// `Device::open` of a mock: a closed one opens; an open one stays as it is.
    pub(super) fn open_device(&self) -> Result<(), DeviceFault> {
        if self.is_closed() {
            self.core.mark_opened();
        }
        Ok(())
    }

    /// `Device::close` of a mock.
    pub(super) fn close_device(&self) {
        self.core.mark_closed(PowerState::Unknown);
    }

    /// Record `report` as the device's health, and return it.
    pub(super) fn report(&self, report: HealthReport) -> HealthReport {
        self.core.set_health(report.clone());
        report
    }

    /// `Device::check_health` of a mock: a closed one fails as `mock {noun} is not
    /// open`; an open one reports what `open` says of its state.
    pub(super) fn checked_health(
        &self,
        noun: &str,
        open: impl FnOnce(&M) -> HealthReport,
    ) -> HealthReport {
        let report = if self.is_closed() {
            HealthReport::now(Health::Failed, format!("mock {noun} is not open"))
        } else {
            open(&self.state())
        };
        self.report(report)
    }
}

impl<M: Model<Step = Step>> Mock<M> {
    /// Begin a command: refused unless the mock is open, claimed and enabled; then a
    /// queued [`Step::Fail`] fails it before it does anything.
    pub(super) fn step(&self) -> Result<(), DeviceFault> {
        self.core.ensure_ready()?;
        match self.next_step() {
            Some(Step::Fail(f)) => Err(f),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::{DeviceError, ErrorKind};

    #[derive(Debug, Default)]
    struct Counter {
        n: u32,
    }

    impl Model for Counter {
        type Step = Step;
        const NAME: &'static str = "Counter";
    }

    fn count(m: &Mock<Counter>) -> Result<u32, DeviceFault> {
        let r = m.step().map(|()| {
            let mut st = m.state();
            st.n += 1;
            st.n
        });
        m.record(r)
    }

    #[test]
    fn queued_steps_run_first_and_a_refused_command_takes_none() {
        let closed = Mock::scripted("c", DeviceKind::Scale, false, Step::Ok, Counter::default());
        closed.expect([Step::Fail(DeviceFault::timeout("slow"))]);
        assert_eq!(count(&closed).unwrap_err().kind(), ErrorKind::Offline);
        assert!(closed.is_closed());
        let m = Mock::scripted("c", DeviceKind::Scale, true, Step::Ok, Counter::default());
        m.expect([Step::Fail(DeviceFault::timeout("slow"))]);
        assert_eq!(count(&m).unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(count(&m).unwrap(), 1);
        assert_eq!(count(&m.clone()).unwrap(), 2, "clones share the state");
        m.done();
        let stats = m.core.statistics();
        assert_eq!((stats.commands_ok, stats.commands_failed), (2, 1));
        assert!(format!("{m:?}").starts_with("Counter {"));
    }

    #[test]
    #[should_panic(expected = "1 expected device call(s) never happened")]
    fn an_unused_step_fails_done() {
        let m = Mock::scripted("c", DeviceKind::Scale, true, Step::Ok, Counter::default());
        m.expect([Step::Ok]);
        m.done();
    }

    #[test]
    fn health_of_a_closed_mock_fails_and_open_and_close_follow_the_lifecycle() {
        let m = Mock::scripted("c", DeviceKind::Scale, false, Step::Ok, Counter::default());
        let ok = |_: &Counter| HealthReport::now(Health::Ok, "counts");
        assert_eq!(
            m.checked_health("counter", ok).detail,
            "mock counter is not open"
        );
        m.open_device().unwrap();
        assert_eq!(m.checked_health("counter", ok).health, Health::Ok);
        assert_eq!(m.core.health().detail, "counts");
        m.close_device();
        assert!(m.is_closed());
    }
}
