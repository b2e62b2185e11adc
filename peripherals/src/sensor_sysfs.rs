//! Environment sensors the Linux kernel already drives, read from sysfs: the
//! temperature of a 1-Wire DS18B20 probe (`/sys/bus/w1/devices/28-…/w1_slave`, the
//! `w1_therm` driver) or of any hwmon sensor (`/sys/class/hwmon/hwmon*/temp*_input`,
//! millidegrees), and a door switch on a GPIO whose value file reads `0` or `1`
//! (`/sys/class/gpio/gpioN/value`). These are what a vending retrofit board wires up:
//! a probe in the chilled compartment and the door's reed switch.
//!
//! A `w1_slave` file is two lines; the first ends with the CRC check (`YES` or `NO`),
//! the second with `t=` and the temperature in millidegrees:
//!
//! ```text
//! 72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//! 72 01 4b 46 7f ff 0e 10 57 t=23125
//! ```
//!
//! A failed CRC, the DS18B20's power-on value (85 °C, read before a conversion ran),
//! a missing file or anything unreadable is a fault naming the file: the vending
//! upkeep keeps its last state and the device shows failing, never a made-up reading.
//! Reading a probe takes the kernel up to 750 ms (a conversion), so files are read on
//! a blocking thread.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, Health, HealthLevel, HealthReport, PowerState,
};
use crate::event::{DataEvent, EventBody};
use crate::fault::DeviceFault;
use crate::sensor::{EnvironmentSensor, SensorReading};

/// Largest sensor file read (a `w1_slave` file is about 75 bytes).
const MAX_FILE: u64 = 4096;
/// What a DS18B20 reads before its first conversion.
const POWER_ON_MILLI_C: i32 = 85_000;
/// The range a DS18B20 and any sane compartment sensor can report.
const RANGE_MILLI_C: std::ops::RangeInclusive<i32> = -55_000..=125_000;

/// Where the sensor's readings are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsSensorConfig {
    /// The temperature file: a `w1_slave` file or an hwmon `temp*_input` file.
    pub temperature: Option<PathBuf>,
    /// The door switch's GPIO value file.
    pub door: Option<PathBuf>,
    /// The value the door file reads when the door is open (`1` for a switch that
    /// closes when the door shuts and pulls the line up, the common wiring; `0` else).
    pub door_open_value: u8,
}

/// Why a sensor file does not give a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ReadError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

fn bad(path: &Path, reason: impl Into<String>) -> ReadError {
    ReadError {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Parses a temperature file's text: the `w1_slave` format, or one integer in
/// millidegrees (hwmon).
pub fn parse_temperature(path: &Path, text: &str) -> Result<i32, ReadError> {
    let text = text.trim();
    let milli = if text.contains("t=") || text.contains("crc=") {
        let mut lines = text.lines();
        let check = lines.next().unwrap_or_default().trim();
        if !check.contains("crc=") {
            return Err(bad(path, "not a w1_slave file (no crc= on the first line)"));
        }
        if !check.ends_with("YES") {
            return Err(bad(
                path,
                "the probe's CRC check failed (a loose wire or interference): no reading",
            ));
        }
        let value = lines
            .next()
            .and_then(|l| l.rsplit_once("t="))
            .map(|(_, v)| v.trim())
            .ok_or_else(|| bad(path, "no t= value on the second line"))?;
        let milli: i32 = value
            .parse()
            .map_err(|_| bad(path, format!("t={value} is not a number")))?;
        if milli == POWER_ON_MILLI_C {
            return Err(bad(
                path,
                "85 °C is the probe's power-on value: it has not converted (check its power)",
            ));
        }
        milli
    } else {
        text.parse().map_err(|_| {
            bad(
                path,
                format!("{text:?} is not a temperature in millidegrees"),
            )
        })?
    };
    if !RANGE_MILLI_C.contains(&milli) {
        return Err(bad(
            path,
            format!("{milli} m°C is outside what a sensor reads (-55 to 125 °C)"),
        ));
    }
    Ok(milli)
}

/// Parses a GPIO value file: `0` or `1`.
pub fn parse_level(path: &Path, text: &str) -> Result<u8, ReadError> {
    match text.trim() {
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err(bad(path, format!("{other:?} is not a GPIO value (0 or 1)"))),
    }
}

fn read_small(path: &Path) -> Result<String, ReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| bad(path, e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| bad(path, e.to_string()))?;
    Ok(text)
}

fn read_all(cfg: &SysfsSensorConfig) -> Result<SensorReading, ReadError> {
    let milli_celsius = cfg
        .temperature
        .as_deref()
        .map(|p| read_small(p).and_then(|t| parse_temperature(p, &t)))
        .transpose()?;
    let door_open = cfg
        .door
        .as_deref()
        .map(|p| read_small(p).and_then(|t| parse_level(p, &t)))
        .transpose()?
        .map(|level| level == cfg.door_open_value);
    Ok(SensorReading {
        milli_celsius,
        door_open,
        case_open: None,
    })
}

/// A sensor read from sysfs files.
#[derive(Debug)]
pub struct SysfsSensor {
    core: DeviceCore,
    config: SysfsSensorConfig,
    last_door: std::sync::Mutex<Option<bool>>,
}

impl SysfsSensor {
    /// A sensor named `id` reading the files of `config` (at least one).
    pub fn new(id: &str, config: SysfsSensorConfig) -> Self {
        let files: Vec<String> = [&config.temperature, &config.door]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        let info = DeviceInfo::new(
            id,
            DeviceKind::EnvironmentSensor,
            "sysfs",
            format!("file://{}", files.join(",")),
        );
        Self {
            core: DeviceCore::new(info),
            config,
            last_door: std::sync::Mutex::new(None),
        }
    }

    async fn read_now(&self) -> Result<SensorReading, DeviceFault> {
        let cfg = self.config.clone();
        let read = tokio::task::spawn_blocking(move || read_all(&cfg))
            .await
            .map_err(|e| DeviceFault::failure(format!("the sensor read task failed: {e}")))?;
        let reading = read.map_err(|e| DeviceFault::failure(format!("sensor {e}")))?;
        if let Some(open) = reading.door_open {
            let mut last = self.last_door.lock().unwrap_or_else(|p| p.into_inner());
            if last.replace(open) != Some(open) {
                self.core.events().publish(EventBody::Data {
                    data: DataEvent::Door { open },
                });
            }
        }
        Ok(reading)
    }
}

#[async_trait]
impl Device for SysfsSensor {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    /// Reads every file once: a sensor whose files are missing or unreadable does not
    /// open (the supervisor retries it).
    async fn open(&self) -> Result<(), DeviceFault> {
        self.read_now().await?;
        self.core.mark_opened();
        Ok(())
    }

    async fn close(&self) {
        self.core.mark_closed(PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = match self.read_now().await {
            Ok(r) => HealthReport::now(
                Health::Ok,
                match (r.milli_celsius, r.door_open) {
                    (Some(t), Some(d)) => format!(
                        "{:.1} °C, door {}",
                        f64::from(t) / 1000.0,
                        if d { "open" } else { "shut" }
                    ),
                    (Some(t), None) => format!("{:.1} °C", f64::from(t) / 1000.0),
                    (None, Some(d)) => format!("door {}", if d { "open" } else { "shut" }),
                    (None, None) => "no sensor files configured".into(),
                },
            ),
            Err(f) => HealthReport::now(Health::Failed, f.to_string()),
        };
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl EnvironmentSensor for SysfsSensor {
    async fn read(&self) -> Result<SensorReading, DeviceFault> {
        let r = self.read_now().await;
        self.core.record(&r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W1_OK: &str =
        "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n";

    #[test]
    fn w1_and_hwmon_files_parse_and_every_bad_one_names_its_fault() {
        let p = Path::new("/sys/x");
        assert_eq!(parse_temperature(p, W1_OK).unwrap(), 23_125);
        assert_eq!(
            parse_temperature(p, "aa : crc=aa YES\naa t=-1250\n").unwrap(),
            -1_250
        );
        assert_eq!(parse_temperature(p, "7812\n").unwrap(), 7_812);
        for (text, says) in [
            (W1_OK.replace("YES", "NO"), "CRC"),
            (W1_OK.replace("23125", "85000"), "power-on"),
            (W1_OK.replace("t=23125", "t=warm"), "not a number"),
            ("aa : crc=aa YES\n".to_owned(), "no t="),
            ("warm".to_owned(), "not a temperature"),
            ("200000".to_owned(), "outside"),
            (String::new(), "not a temperature"),
        ] {
            let e = parse_temperature(p, &text).unwrap_err();
            assert!(e.reason.contains(says), "{text:?}: {e}");
            assert_eq!(e.path, "/sys/x");
        }
        assert_eq!(parse_level(p, "1\n").unwrap(), 1);
        assert_eq!(parse_level(p, "0").unwrap(), 0);
        assert!(parse_level(p, "high").is_err());
    }

    #[tokio::test]
    async fn the_sensor_reads_its_files_reports_door_changes_and_fails_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let (t, d) = (dir.path().join("w1_slave"), dir.path().join("value"));
        std::fs::write(&t, W1_OK).unwrap();
        std::fs::write(&d, "0\n").unwrap();
        let s = SysfsSensor::new(
            "fridge",
            SysfsSensorConfig {
                temperature: Some(t.clone()),
                door: Some(d.clone()),
                door_open_value: 1,
            },
        );
        let mut events = s.core().events().subscribe();
        s.open().await.unwrap();
        assert_eq!(
            s.read().await.unwrap(),
            SensorReading {
                milli_celsius: Some(23_125),
                door_open: Some(false),
                case_open: None
            }
        );
        std::fs::write(&d, "1\n").unwrap();
        assert_eq!(s.read().await.unwrap().door_open, Some(true));
        let mut doors = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if let EventBody::Data {
                data: DataEvent::Door { open },
            } = ev.body
            {
                doors.push(open);
            }
        }
        assert_eq!(doors, [false, true], "one event per change");
        assert_eq!(
            s.check_health(HealthLevel::Internal).await.health,
            Health::Ok
        );
        // A probe unplugged: a fault naming its file, and a failing health.
        std::fs::remove_file(&t).unwrap();
        let e = s.read().await.unwrap_err();
        assert!(e.to_string().contains("w1_slave"), "{e}");
        assert_eq!(
            s.check_health(HealthLevel::Internal).await.health,
            Health::Failed
        );
    }
}
