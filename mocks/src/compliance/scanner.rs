//! What every [`BarcodeScanner`] must do.

use std::time::Duration;

use async_trait::async_trait;
use outpost_peripherals::event::{DataEvent, DeviceEvent, EventBody};
use outpost_peripherals::scanner::{BarcodeScanner, Symbology};
use outpost_peripherals::{DeviceError, ErrorKind};
use tokio::sync::broadcast;

use crate::mock::scanner::MockScanner;
use crate::sim::scanner::ScannerSim;

/// How the suite acts on a scanner's world.
#[async_trait]
pub trait ScannerHarness: Send + Sync {
    /// One frame arrives as the scanner would send it, without its terminator.
    async fn frame(&self, bytes: &[u8]);
}

#[async_trait]
impl ScannerHarness for ScannerSim {
    async fn frame(&self, bytes: &[u8]) {
        let mut b = bytes.to_vec();
        b.extend(b"\r\n");
        self.send_raw(&b);
    }
}

#[async_trait]
impl ScannerHarness for MockScanner {
    async fn frame(&self, bytes: &[u8]) {
        self.feed_frame(bytes);
    }
}

const WAIT: Duration = Duration::from_secs(5);

/// The next event of interest, within [`WAIT`].
async fn next_event(rx: &mut broadcast::Receiver<DeviceEvent>, error: bool) -> EventBody {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(e) => match &e.body {
                    EventBody::Error { .. } if error => return e.body,
                    EventBody::Data { .. } if !error => return e.body,
                    _ => {}
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await;
    found.expect("the expected event within 5 s")
}

/// Check the barcode scanner contract. `d` must be closed and unclaimed, and
/// connected to `h`'s scanner once opened.
///
/// The rules: `next_scan` is refused before open; a scan with an AIM identifier
/// arrives with its symbology and raises a data event; garbage, a bad check digit,
/// a control byte and non-UTF-8 bytes are each rejected with an error event and
/// counted in `scans_rejected`, and the next good scan still arrives; a closed
/// scanner refuses again.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn barcode_scanner<D: BarcodeScanner>(d: &D, h: &dyn ScannerHarness) {
    match d.next_scan().await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::Offline, "scan before open: {f:?}"),
        Ok(s) => panic!("scan before open returned {s:?}"),
    }
    d.open().await.expect("open a working scanner");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    let mut rx = d.core().events().subscribe();

    h.frame(b"]E04006381333931").await;
    let scan = tokio::time::timeout(WAIT, d.next_scan())
        .await
        .expect("a scan within 5 s")
        .expect("a good scan");
    assert_eq!(scan.data, "4006381333931");
    assert_eq!(scan.symbology, Symbology::Ean13);
    match next_event(&mut rx, false).await {
        EventBody::Data {
            data: DataEvent::Scan(s),
        } => assert_eq!(s, scan, "data event carries the scan"),
        other => panic!("expected a scan event, got {other:?}"),
    }

    let garbage: [&[u8]; 4] = [
        b"]E04006381333932",
        b"\x00\x01\x02garbage",
        b"]C0\xff\xfe\xfd",
        b"]",
    ];
    for g in garbage {
        h.frame(g).await;
        match next_event(&mut rx, true).await {
            EventBody::Error { kind, .. } => {
                assert_eq!(kind, ErrorKind::Failure, "rejection of {g:?}");
            }
            other => panic!("expected an error event for {g:?}, got {other:?}"),
        }
    }
    let rejected = d
        .core()
        .statistics()
        .counters
        .get("scans_rejected")
        .copied();
    assert_eq!(rejected, Some(4), "every rejection counted");

    h.frame(b"]C1ABC-123").await;
    let scan = tokio::time::timeout(WAIT, d.next_scan())
        .await
        .expect("a scan after garbage within 5 s")
        .expect("the scanner keeps going after garbage");
    assert_eq!(
        (scan.data.as_str(), scan.symbology),
        ("ABC-123", Symbology::Code128)
    );

    d.close().await;
    assert!(d.next_scan().await.is_err(), "scan after close is refused");
}
