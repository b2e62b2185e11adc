//! [`Swtpm`]: a software TPM on loopback for one test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use tss_esapi::constants::StartupType;
use tss_esapi::handles::PcrHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{Digest, DigestValues};
use tss_esapi::{Context, TctiNameConf};

/// `swtpm socket --tpm2` on 127.0.0.1 ports P (commands) and P+1 (control), its state
/// in a temp dir, killed on drop.
///
/// Every instance has its own endorsement and storage seeds, so two of them are two
/// different TPMs: a blob sealed on one does not load on the other. swtpm serves one
/// connection at a time: a test keeps no TPM context open while another one (or a
/// `tpm2-tools` command) uses the same instance.
pub struct Swtpm {
    child: Child,
    /// The command port (the TCTI's `port`); the control port is `port + 1`.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Swtpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swtpm").field("port", &self.port).finish()
    }
}

/// Starts swtpm on `port` with its state in `dir` and waits until it listens; `None`
/// when it exited (port taken) or never listened.
#[allow(clippy::unwrap_used)] // a fixture: failing loudly is the point
fn spawn(port: u16, dir: &Path) -> Option<Child> {
    let mut child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--flags", "startup-clear"])
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm must be installed: apt-get install -y swtpm swtpm-tools");
    // swtpm has no readiness signal but its listening socket: poll it, at most 100
    // times 20 ms.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        if child.try_wait().unwrap().is_some() {
            return None; // the port is taken
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Swtpm {
    /// Starts a fresh software TPM (`--flags startup-clear`: ready for commands, PCRs
    /// at their reset values).
    ///
    /// # Panics
    /// When swtpm is not installed or does not come up on any of 20 ports.
    #[allow(clippy::unwrap_used)] // a fixture: failing loudly is the point
    pub fn start() -> Swtpm {
        for _ in 0..20 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            if port == u16::MAX {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            if let Some(child) = spawn(port, dir.path()) {
                return Swtpm { child, port, dir };
            }
        }
        panic!("swtpm did not start on any of 20 ports");
    }

    /// The TCTI string that reaches this TPM.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// A reboot: an orderly `TPM2_Shutdown(CLEAR)` (as an OS does at power-off), the
    /// process stopped, and a new one started on the same ports with the same state
    /// directory. NV indexes, persistent objects, the seeds, the clock and the
    /// dictionary-attack state survive; PCRs and everything transient are reset.
    ///
    /// # Panics
    /// When the new process does not come up on the same port within a few seconds.
    #[allow(clippy::unwrap_used)]
    pub fn restart(&mut self) {
        if let Ok(mut ctx) = Context::new(TctiNameConf::from_str(&self.tcti()).unwrap()) {
            let _ = ctx.shutdown(StartupType::Clear);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The old connections' ports may linger for a moment.
        for _ in 0..50 {
            if let Some(child) = spawn(self.port, self.dir.path()) {
                self.child = child;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("swtpm did not restart on port {}", self.port);
    }

    /// Extends PCR `pcr` (SHA-256 bank) with a fixed digest, as a changed boot
    /// component would.
    ///
    /// # Panics
    /// When `pcr` is not 0..=23 or the TPM refuses.
    #[allow(clippy::unwrap_used)]
    pub fn extend_pcr(&self, pcr: u8) {
        let handle = PcrHandle::try_from(u32::from(pcr)).unwrap();
        let mut ctx = Context::new(TctiNameConf::from_str(&self.tcti()).unwrap()).unwrap();
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(vec![0x5a; 32]).unwrap(),
        );
        ctx.execute_with_nullauth_session(|ctx| ctx.pcr_extend(handle, values))
            .unwrap();
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
