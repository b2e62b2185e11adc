//! The `outpost` command line through the real binary: import and export, staff
//! accounts, a running server's logs searched for secrets and card numbers, a storm
//! of parallel logins, and the README's walkthrough run as written.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod card_data;
mod disk_full;
mod doctor;
mod login_storm;
mod logs;
mod notify;
mod readme;
mod slow_clients;
mod vending_demo;

/// A real `outpost serve` at `trace` for every crate, its stdout and stderr captured.
pub(crate) struct Serving {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    logs: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Serving {
    // A failing assertion must not leave the server running (a server that restarted
    // itself in place keeps its pid, so this still reaches it).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serving {
    /// `outpost serve --listen 127.0.0.1:0 --data-dir DATA` plus `extra` arguments;
    /// waits (60 s at most) for it to log the address it serves.
    pub(crate) fn start(data: &std::path::Path, extra: &[&str]) -> Serving {
        let mut command = Command::new(env!("CARGO_BIN_EXE_outpost"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .env("OUTPOST_LOG", "trace")
            .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
            .env_remove("RUST_LOG");
        Serving::spawn(command)
    }

    /// Runs `command` (an `outpost` that serves, logging JSON to stderr) and waits (60 s
    /// at most) for it to log the address it serves.
    pub(crate) fn spawn(mut command: Command) -> Serving {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut readers = Vec::new();
        for (i, pipe) in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ]
        .into_iter()
        .enumerate()
        {
            let (logs, tx) = (logs.clone(), tx.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    // Kept before the address is announced, so a test that reads the
                    // logs once `spawn` returns finds the listening line in them.
                    {
                        let mut l = logs.lock().unwrap();
                        l.push_str(&line);
                        l.push('\n');
                    }
                    if i == 0 && line.contains("Outpost is listening") {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                        let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }));
        }
        drop(tx);
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Serving {
                child,
                base: format!("http://{addr}"),
                logs,
                readers,
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("outpost did not log its address: {}", logs.lock().unwrap());
            }
        }
    }

    /// Everything logged so far.
    pub(crate) fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server and returns everything it logged.
    pub(crate) fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        self.logs.lock().unwrap().clone()
    }
}

pub(crate) fn outpost(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("RUST_BACKTRACE")
        // The data key is needed to import or export: development sealer.
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .output()
        .unwrap()
}

/// The trimmed stdout of a command that must have succeeded.
pub(crate) fn created(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) const GOOD: &str = r#"{"sku":"A","name":"Apple juice","category":"drinks","price":199,"currency":"EUR","tax_class":"standard"}"#;

#[test]
fn a_bad_line_is_reported_by_number_and_nothing_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("c.jsonl");
    std::fs::write(&file, format!("{GOOD}\n")).unwrap();
    let out = outpost(&["import", "catalog", file.to_str().unwrap()], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad_lines = [
        (
            r#"{"sku":"B","name":"x","category":"c","price":-5,"currency":"EUR","tax_class":"standard"}"#,
            "price",
        ),
        (
            r#"{"sku":"B","name":"x","category":"c","price":5,"currency":"EUR","tax_class":"standard","colour":"red"}"#,
            "colour",
        ),
        (
            r#"{"sku":"B","name":"x","category":"c","price":5,"currency":"USD","tax_class":"standard"}"#,
            "currency",
        ),
        (
            r#"{"sku":"B","barcodes":["4006381333932"],"name":"x","category":"c","price":5,"currency":"EUR","tax_class":"standard"}"#,
            "barcodes",
        ),
        (
            r#"{"sku":"Z","name":"Again","category":"c","price":5,"currency":"EUR","tax_class":"standard"}"#,
            "already appears on line 1",
        ),
        (r#"{"sku":"B", "name": "#, "line 2"),
    ];
    for (bad, expect) in bad_lines {
        std::fs::write(
            &file,
            format!("{}\n{bad}\n", GOOD.replace("\"A\"", "\"Z\"")),
        )
        .unwrap();
        let out = outpost(
            &["import", "catalog", file.to_str().unwrap(), "--replace"],
            &data,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains(expect), "{expect} not in {err}");
        assert!(!err.contains("backtrace"), "{err}");
    }
    // The catalog is still exactly the first import.
    let out = outpost(&["export", "catalog", "-"], &data);
    let exported = String::from_utf8_lossy(&out.stdout);
    assert_eq!(exported.lines().count(), 1, "{exported}");
    assert!(exported.contains("\"sku\":\"A\""));
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn staff_accounts_are_added_listed_and_disabled_but_never_the_last_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let password = stdout(&outpost(
        &["users", "add", "root", "--role", "admin"],
        &data,
    ));
    assert_eq!(
        password.trim().len(),
        24,
        "the generated password: {password:?}"
    );
    stdout(&outpost(
        &["users", "add", "sam", "--role", "supervisor,technician"],
        &data,
    ));
    let list = stdout(&outpost(&["users", "list"], &data));
    assert_eq!(
        list,
        "root\tadmin\tenabled\nsam\tsupervisor,technician\tenabled\n"
    );
    assert!(!list.contains(password.trim()));

    // root is the only admin: neither disabling it nor taking its role away is allowed.
    let out = outpost(&["users", "disable", "root"], &data);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("last enabled admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = outpost(&["users", "add", "root", "--role", "technician"], &data);
    assert!(!out.status.success());

    stdout(&outpost(&["users", "add", "ada", "--role", "admin"], &data));
    stdout(&outpost(&["users", "disable", "root"], &data));
    let list = stdout(&outpost(&["users", "list"], &data));
    assert!(list.contains("root\tadmin\tdisabled\n"), "{list}");
    let out = outpost(&["users", "disable", "nobody"], &data);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no staff account"));
}

#[test]
fn the_dex_audit_of_a_data_dir_is_printed_and_its_interval_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dex = stdout(&outpost(&["vending", "dex"], &data));
    assert!(dex.starts_with("DXS*"), "{dex}");
    assert!(dex.contains("\r\nVA1*0*0*0*0\r\n"), "{dex}");
    assert!(dex.ends_with("\r\nDXE*1*1\r\n"), "{dex}");
    let closed = stdout(&outpost(&["vending", "dex", "--reset"], &data));
    assert!(closed.contains("\r\nG85*"), "{closed}");
}
