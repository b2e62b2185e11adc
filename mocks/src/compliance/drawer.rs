//! What every [`CashDrawer`] must do.

use std::time::Duration;

use outpost_peripherals::drawer::CashDrawer;
use outpost_peripherals::{Condition, DeviceError, ErrorKind};

use crate::mock::drawer::MockDrawer;
use crate::sim::escpos::SimHandle;

/// How the suite acts on a drawer's world.
pub trait DrawerHarness: Send + Sync {
    /// The cashier pushes the drawer shut.
    fn close_drawer(&self);
}

impl DrawerHarness for SimHandle {
    fn close_drawer(&self) {
        SimHandle::close_drawer(self);
    }
}

impl DrawerHarness for MockDrawer {
    fn close_drawer(&self) {
        MockDrawer::close_drawer(self);
    }
}

/// Check the cash drawer contract. `d` must be closed and unclaimed; its drawer
/// shut.
///
/// The rules: commands are refused before open; an open drawer reports closed; the
/// kick opens it and `is_open` says so, counted in `kicks`; waiting for it to close
/// times out with `DrawerOpen` while it stays open, and returns once it is pushed
/// shut; a closed device refuses again.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn cash_drawer<D: CashDrawer>(d: &D, h: &dyn DrawerHarness) {
    match d.open_drawer().await {
        Err(f) => assert_eq!(f.kind(), ErrorKind::Offline, "kick before open: {f:?}"),
        Ok(()) => panic!("kick before open succeeded"),
    }
    d.open().await.expect("open a working drawer");
    d.core().claim().expect("claim");
    d.core().enable().expect("enable");
    h.close_drawer();
    assert!(
        !d.is_open().await.expect("read the sensor"),
        "shut drawer reads closed"
    );
    d.wait_closed(Duration::from_millis(500))
        .await
        .expect("waiting for a shut drawer returns at once");

    d.open_drawer().await.expect("kick");
    assert!(
        d.is_open().await.expect("read the sensor"),
        "kicked drawer reads open"
    );
    let kicks = d.core().statistics().counters.get("kicks").copied();
    assert_eq!(kicks, Some(1), "kicks counted");

    match d.wait_closed(Duration::from_millis(150)).await {
        Err(f) => {
            assert_eq!(f.kind(), ErrorKind::Timeout, "{f:?}");
            assert_eq!(f.device_condition(), Some(Condition::DrawerOpen), "{f:?}");
        }
        Ok(()) => panic!("wait_closed returned while the drawer is open"),
    }
    let (waited, ()) = tokio::join!(d.wait_closed(Duration::from_secs(5)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.close_drawer();
    });
    waited.expect("wait_closed returns once the drawer is shut");

    d.close().await;
    assert!(
        d.open_drawer().await.is_err(),
        "kick after close is refused"
    );
}
