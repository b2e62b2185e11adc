//! Test fixtures (feature `test-utils`) shared by this crate's tests and the server's.
//!
//! - [`files`], [`all_bytes`], [`contains`]: read a data dir the way a thief would, to
//!   prove nothing readable is in it.
//! - With the `tpm` feature: [`Swtpm`], a software TPM on loopback for the length of one
//!   test, whose PCRs a test can extend to play "the boot state changed".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively, by path relative to `dir`, with its bytes.
/// Panics on an I/O error (a test fixture).
pub fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let listing =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in listing {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
                .path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_owned();
                out.insert(relative, bytes);
            }
        }
    }
    out
}

/// Every file under `dir`, concatenated in path order.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    files(dir).into_values().flatten().collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: impl AsRef<[u8]>) -> bool {
    let needle = needle.as_ref();
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(feature = "tpm")]
pub use swtpm::Swtpm;

#[cfg(feature = "tpm")]
mod swtpm {
    use std::process::{Child, Command, Stdio};
    use std::str::FromStr;
    use std::time::Duration;

    use tss_esapi::handles::PcrHandle;
    use tss_esapi::interface_types::algorithm::HashingAlgorithm;
    use tss_esapi::structures::{Digest, DigestValues};
    use tss_esapi::{Context, TctiNameConf};

    /// `swtpm socket --tpm2` on 127.0.0.1 ports P (commands) and P+1 (control), its
    /// state in a temp dir, killed on drop.
    ///
    /// Every instance has its own endorsement and storage seeds, so two of them are two
    /// different TPMs: a blob sealed on one does not load on the other.
    pub struct Swtpm {
        child: Child,
        /// The command port (the TCTI's `port`); the control port is `port + 1`.
        pub port: u16,
        _dir: tempfile::TempDir,
    }

    impl std::fmt::Debug for Swtpm {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Swtpm").field("port", &self.port).finish()
        }
    }

    impl Swtpm {
        /// Starts a fresh software TPM (`--flags startup-clear`: ready for commands,
        /// PCRs at their reset values).
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
                let mut child = Command::new("swtpm")
                    .args(["socket", "--tpm2", "--flags", "startup-clear"])
                    .arg("--server")
                    .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                    .arg("--ctrl")
                    .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                    .arg("--tpmstate")
                    .arg(format!("dir={}", dir.path().display()))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("swtpm must be installed: apt-get install -y swtpm swtpm-tools");
                // swtpm has no readiness signal but its listening socket: poll it,
                // at most 100 times 20 ms.
                for _ in 0..100 {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Swtpm {
                            child,
                            port,
                            _dir: dir,
                        };
                    }
                    if child.try_wait().unwrap().is_some() {
                        break; // port taken between probe and bind: try another
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!("swtpm did not start on any of 20 ports");
        }

        /// The TCTI string that reaches this TPM.
        pub fn tcti(&self) -> String {
            format!("swtpm:host=127.0.0.1,port={}", self.port)
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
}
