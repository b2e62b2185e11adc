//! Secrets never reach the logs: run every flow that handles one with a capturing
//! subscriber and search the output.

use std::io::Write;
use std::sync::{Arc, Mutex};

use outpost_security::auth::password::{PasswordParams, UserDirectory, generate_password};
use outpost_security::auth::roles::Role;
use outpost_security::auth::token::TerminalTokens;
use outpost_security::lease::{Action, Command, GuardConfig, HqSigner, LeaseGuard, ManualClock};
use outpost_security::seal::{SealedKeyFile, SoftwareSealer};
use outpost_security::tls::DeviceIdentity;
use secrecy::ExposeSecret;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn no_secret_appears_in_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let mut secrets: Vec<String> = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let mut sealer = SoftwareSealer::open(&dir.path().join("kek"), true).unwrap();
        let file = SealedKeyFile::new(dir.path().join("sealed-key"));
        let (key, _) = file.load_or_create(&mut sealer).unwrap();
        secrets.push(hex(key.expose()));
        tracing::info!(?key, "Unsealed the data key");

        let mut tokens = TerminalTokens::new();
        let (_, token) = tokens.issue("till-1", 0).unwrap();
        secrets.push(token.expose_secret().to_owned());
        tracing::info!(?token, "Issued a terminal token");

        let password = generate_password();
        secrets.push(password.expose_secret().to_owned());
        let mut users = UserDirectory::new(PasswordParams::FAST);
        users
            .set_user("tech", &password, vec![Role::Technician])
            .unwrap();
        users.login("tech", &password).unwrap();
        tracing::info!(?password, "Checked a login");

        let generated = DeviceIdentity::generate(&["outpost.local".into()]).unwrap();
        let key_body: String = generated
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        secrets.push(key_body);
        tracing::info!(identity = ?generated, "Generated identity");

        let hq = HqSigner::generate();
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let mut guard = LeaseGuard::new(GuardConfig::new("s", "u"), hq.verifying_key(), clock);
        let cmd = hq
            .sign_command(&Command {
                action: Action::Lock,
                store: "s".into(),
                unit: "u".into(),
                counter: 1,
                issued_at: time::OffsetDateTime::now_utc(),
            })
            .unwrap();
        guard.apply_command(&cmd).unwrap();
        guard.tamper("case opened");
        tracing::info!(?guard, ?hq, "Guard state");

        file.crypto_erase(&mut sealer).unwrap();
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The capture works: the software-sealer warning and the tamper error are there.
    assert!(logs.contains("SOFTWARE sealer"), "{logs}");
    assert!(logs.contains("Tamper signal"), "{logs}");
    assert!(logs.contains("DataKey(..)"));
    for secret in &secrets {
        assert!(secret.len() >= 16);
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
    }
}
