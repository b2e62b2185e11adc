//! A trait-level customer display.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use outpost_peripherals::display::CustomerDisplay;
use outpost_peripherals::{
    Device, DeviceCore, DeviceFault, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};

use super::{Step, core, keep};
use crate::Expectations;

#[derive(Debug, Default)]
struct State {
    current: Vec<String>,
    history: VecDeque<Vec<String>>,
}

/// A customer display of `lines` x `columns` characters. `show` and `clear` take
/// the next queued [`Step`] (default: ok); what was shown is kept, cut to the
/// geometry like a real display cuts it. Clones share it.
#[derive(Debug, Clone)]
pub struct MockDisplay {
    core: Arc<DeviceCore>,
    steps: Expectations<Step>,
    geometry: (u8, u8),
    state: Arc<Mutex<State>>,
}

impl MockDisplay {
    /// A 2 x 20 display (the common pole display), opened, claimed and enabled.
    pub fn new(id: &str) -> Self {
        Self::with_geometry(id, 2, 20, true)
    }

    /// A display of this size; `ready` opens, claims and enables it.
    pub fn with_geometry(id: &str, lines: u8, columns: u8, ready: bool) -> Self {
        Self {
            core: core(id, DeviceKind::CustomerDisplay, ready),
            steps: Expectations::new(Some(Step::Ok)),
            geometry: (lines, columns),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Held only for bookkeeping, never across an await.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue what the next `show` or `clear` calls do.
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

    /// What the display shows now.
    pub fn current(&self) -> Vec<String> {
        self.lock().current.clone()
    }

    /// Everything shown, oldest first (a clear is an empty entry).
    pub fn history(&self) -> Vec<Vec<String>> {
        self.lock().history.iter().cloned().collect()
    }

    fn put(&self, lines: Vec<String>) -> Result<(), DeviceFault> {
        self.core.ensure_ready()?;
        if let Some(Step::Fail(f)) = self.steps.next() {
            return Err(f);
        }
        let mut st = self.lock();
        st.current = lines.clone();
        keep(&mut st.history, lines);
        Ok(())
    }
}

#[async_trait]
impl Device for MockDisplay {
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
        let report = if self.core.state() == DeviceState::Closed {
            HealthReport::now(Health::Failed, "mock display is not open")
        } else {
            HealthReport::now(Health::Ok, "mock display ready")
        };
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl CustomerDisplay for MockDisplay {
    fn geometry(&self) -> (u8, u8) {
        self.geometry
    }

    async fn show(&self, lines: &[String]) -> Result<(), DeviceFault> {
        let (rows, cols) = self.geometry;
        let cut = lines
            .iter()
            .take(usize::from(rows))
            .map(|l| l.chars().take(usize::from(cols)).collect())
            .collect();
        let result = self.put(cut);
        self.core.record(&result);
        result
    }

    async fn clear(&self) -> Result<(), DeviceFault> {
        let result = self.put(Vec::new());
        self.core.record(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::{DeviceError, ErrorKind};

    #[tokio::test]
    async fn lines_are_cut_to_fit_and_faults_are_queued() {
        let d = MockDisplay::new("d");
        d.expect([Step::Fail(DeviceFault::offline("unplugged"))]);
        let lines = vec![
            "TOTAL            12,50 EUR".to_owned(),
            "a".into(),
            "b".into(),
        ];
        assert_eq!(d.show(&lines).await.unwrap_err().kind(), ErrorKind::Offline);
        d.show(&lines).await.unwrap();
        assert_eq!(
            d.current(),
            vec!["TOTAL            12,".to_owned(), "a".into()]
        );
        d.clear().await.unwrap();
        assert!(d.current().is_empty());
        assert_eq!(d.history().len(), 2);
        d.done();
    }

    #[tokio::test]
    async fn a_closed_display_refuses() {
        let d = MockDisplay::with_geometry("d", 2, 20, false);
        assert_eq!(d.clear().await.unwrap_err().kind(), ErrorKind::Offline);
    }
}
