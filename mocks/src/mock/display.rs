//! A trait-level customer display.

use std::collections::VecDeque;

use async_trait::async_trait;
use outpost_peripherals::display::CustomerDisplay;
use outpost_peripherals::{
    Device, DeviceCore, DeviceFault, DeviceKind, Health, HealthLevel, HealthReport,
};

use super::{Mock, Model, Step, keep};

/// The display behind a [`MockDisplay`]: its size, and what it shows and showed.
#[derive(Debug)]
pub struct DisplayModel {
    geometry: (u8, u8),
    current: Vec<String>,
    history: VecDeque<Vec<String>>,
}

impl Model for DisplayModel {
    type Step = Step;
    const NAME: &'static str = "MockDisplay";
}

/// A customer display of `lines` x `columns` characters. `show` and `clear` take
/// the next queued [`Step`] (default: ok); what was shown is kept, cut to the
/// geometry like a real display cuts it. Clones share it.
pub type MockDisplay = Mock<DisplayModel>;

impl MockDisplay {
    /// A 2 x 20 display (the common pole display), opened, claimed and enabled.
    pub fn new(id: &str) -> Self {
        Self::with_geometry(id, 2, 20, true)
    }

    /// A display of this size; `ready` opens, claims and enables it.
    pub fn with_geometry(id: &str, lines: u8, columns: u8, ready: bool) -> Self {
        let model = DisplayModel {
            geometry: (lines, columns),
            current: Vec::new(),
            history: VecDeque::new(),
        };
        Mock::scripted(id, DeviceKind::CustomerDisplay, ready, Step::Ok, model)
    }

    /// What the display shows now.
    pub fn current(&self) -> Vec<String> {
        self.state().current.clone()
    }

    /// Everything shown, oldest first (a clear is an empty entry).
    pub fn history(&self) -> Vec<Vec<String>> {
        self.state().history.iter().cloned().collect()
    }

    fn put(&self, lines: Vec<String>) -> Result<(), DeviceFault> {
        self.step()?;
        let mut st = self.state();
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
        self.open_device()
    }

    async fn close(&self) {
        self.close_device();
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        self.checked_health("display", |_| {
            HealthReport::now(Health::Ok, "mock display ready")
        })
    }
}

#[async_trait]
impl CustomerDisplay for MockDisplay {
    fn geometry(&self) -> (u8, u8) {
        self.state().geometry
    }

    async fn show(&self, lines: &[String]) -> Result<(), DeviceFault> {
        let (rows, cols) = self.state().geometry;
        let cut = lines
            .iter()
            .take(usize::from(rows))
            .map(|l| l.chars().take(usize::from(cols)).collect())
            .collect();
        self.record(self.put(cut))
    }

    async fn clear(&self) -> Result<(), DeviceFault> {
        self.record(self.put(Vec::new()))
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
