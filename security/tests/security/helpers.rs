//! Fixtures: a test CA, and (feature `tpm`) a software TPM on loopback.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority for tests.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub pem: String,
}

/// A certificate and key in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(10);
        params.not_after = now + Duration::days(365);
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        TestCa { cert, key, pem }
    }

    /// A leaf for `names`, valid from `from` to `until` relative to now.
    pub fn issue_with(&self, names: &[&str], from: Duration, until: Duration) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0]);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now + from;
        params.not_after = now + until;
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A leaf valid from a day ago for a month.
    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_with(names, Duration::days(-1), Duration::days(30))
    }
}

/// Every file under `dir`, recursively, with its bytes.
pub fn read_tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(feature = "tpm")]
pub use swtpm::Swtpm;

#[cfg(feature = "tpm")]
mod swtpm {
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// `swtpm socket --tpm2` on 127.0.0.1 ports P and P+1, state in a temp dir, killed
    /// on drop.
    pub struct Swtpm {
        child: Child,
        pub port: u16,
        _dir: tempfile::TempDir,
    }

    impl Swtpm {
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

        pub fn tcti(&self) -> String {
            format!("swtpm:host=127.0.0.1,port={}", self.port)
        }
    }

    impl Drop for Swtpm {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
