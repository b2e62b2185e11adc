//! The updates page's rollback button in a real headless Chromium, on a unit started
//! by `outpost-supervisor` as in the field: the button asks for the rollback, the
//! server restarts, the guard switches back to the previous release before it starts,
//! and the page of the restarted server shows the rollback done.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_updater::layout::Layout;
use outpost_updater::semver::Version;
use outpost_updater::state::{Result as Ended, UpdateState};

use crate::browser::{assert_no_errors, screenshots};
use crate::client::{field, no_redirects};
use crate::webdriver::{Browser, available};

/// `outpost-supervisor run` over a releases directory, its stderr collected; the
/// supervisor and its server are killed (their process group) when dropped.
struct Supervised {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Supervised {
    fn start(releases: &Path, config: &Path) -> Supervised {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost-supervisor"))
            .args(["run", "--releases"])
            .arg(releases)
            .args(["--gate-timeout-secs", "10", "--", "serve", "--config"])
            .arg(config)
            .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
            .env("OUTPOST_LOG", "info")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Supervised { child, lines }
    }

    /// The address the `n`-th server start (0-based) listens on, waiting up to 90 s.
    async fn address(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let found: Vec<String> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("Outpost is listening"))
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["addr"].as_str().map(str::to_owned))
                .collect();
            if let Some(a) = found.get(n) {
                return format!("http://{a}");
            }
            assert!(
                Instant::now() < deadline,
                "no server start number {n}: {}",
                self.lines.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // The supervisor leads its own process group: the server goes with it.
        if let Some(pgid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// `outpost users add NAME --role ROLE` on the unit's config: the password.
fn add_user(config: &Path, name: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["users", "add", name, "--role", role, "--config"])
        .arg(config)
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .env_remove("RUST_LOG")
        .env_remove("OUTPOST_RELEASES")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Logs in through the console's form at `base`; on the dashboard after.
async fn log_in(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/console/login")).await;
    b.type_into(&b.find("#username").await, user).await;
    b.type_into(&b.find("#password").await, password).await;
    b.click(
        &b.find("form[action='/console/login'] button[type=submit]")
            .await,
    )
    .await;
    assert!(
        b.wait_for("location.pathname === '/console/'", 15).await,
        "not on the dashboard after logging in: {}",
        b.url().await
    );
}

async fn main_text(b: &Browser) -> String {
    b.script("return document.querySelector('main').innerText;")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_rollback_button_rolls_the_unit_back_under_its_supervisor() {
    if !available("the_rollback_button_rolls_the_unit_back_under_its_supervisor") {
        return;
    }
    // A unit whose releases directory holds 0.1.0 (previous) and 0.1.1 (current),
    // both this build's `outpost`.
    let dir = tempfile::tempdir().unwrap();
    let binary = std::fs::read(env!("CARGO_BIN_EXE_outpost")).unwrap();
    let layout = Layout::new(dir.path().join("opt"));
    layout.install_first(&v("0.1.0"), &binary).unwrap();
    layout.install_first(&v("0.1.1"), &binary).unwrap();
    layout.switch_to(&v("0.1.0")).unwrap();
    layout.switch_to(&v("0.1.1")).unwrap();
    assert_eq!(layout.previous().unwrap(), Some(v("0.1.0")));
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[security]\nallow_software = true\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let admin = add_user(&config, "boss", "admin");
    let supervisor = add_user(&config, "sup", "supervisor");
    let sup = Supervised::start(layout.root(), &config);
    let first = sup.address(0).await;

    // A supervisor (no `configure`) gets neither the page nor the action.
    let http = no_redirects();
    let r = http
        .post(format!("{first}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "sup", "password": supervisor}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let get = |path: &str| {
        http.get(format!("{first}{path}"))
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(get("/console/updates").await.unwrap().status(), 403);
    let dashboard = get("/console/").await.unwrap().text().await.unwrap();
    let csrf = field(&dashboard, "csrf").unwrap();
    let r = http
        .post(format!("{first}/console/updates/rollback"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let state = UpdateState::load(&layout.state_path()).unwrap();
    assert!(state.rollback_requested.is_none());

    // An admin presses the button in Chromium.
    let shots = screenshots();
    let b = Browser::start("en-US").await;
    log_in(&b, &first, "boss", &admin).await;
    b.goto(&format!("{first}/console/updates")).await;
    assert!(b.wait_for("document.readyState === 'complete'", 10).await);
    assert_no_errors(&b, "updates").await;
    let form = "form[action='/console/updates/rollback']";
    assert_eq!(b.count(form).await, 1, "{}", main_text(&b).await);
    assert!(b.text(form).await.contains("0.1.0"));
    b.screenshot(&shots.join("en-updates-rollback.png")).await;
    b.click(&b.find(&format!("{form} button")).await).await;
    // The answer says where it goes; the server restarts right after it.
    assert!(
        b.wait_for("location.search.includes('done=rolling_back')", 10)
            .await,
        "{}",
        b.url().await
    );
    assert!(
        b.wait_for("document.querySelector('p.notice.ok') !== null", 5)
            .await,
        "the page after the button did not load before the restart"
    );
    assert!(
        b.text("p.notice.ok")
            .await
            .contains("Rolling back; the server restarts into 0.1.0")
    );
    b.screenshot(&shots.join("en-updates-rolling-back.png"))
        .await;

    // The supervisor starts the server again, the guard having switched back first.
    let second = sup.address(1).await;
    assert_eq!(layout.current().unwrap(), Some(v("0.1.0")));
    let last = UpdateState::load(&layout.state_path())
        .unwrap()
        .last
        .expect("the rollback is in the update journal");
    assert_eq!(last.result, Ended::RolledBackByHand);
    assert!(last.reason.contains("by boss"), "{}", last.reason);
    // The restarted server's page shows it.
    log_in(&b, &second, "boss", &admin).await;
    b.goto(&format!("{second}/console/updates")).await;
    assert!(b.wait_for("document.readyState === 'complete'", 10).await);
    assert_no_errors(&b, "updates after the rollback").await;
    let text = main_text(&b).await;
    assert!(text.contains("Rolled back by hand"), "{text}");
    assert!(
        text.contains("rolled back by hand by boss from 0.1.1 to 0.1.0"),
        "{text}"
    );
    assert_eq!(b.count(form).await, 0, "nothing left to roll back to");
    b.screenshot(&shots.join("en-updates-rolled-back.png"))
        .await;
    // And the audit log the request, under the admin's name.
    b.goto(&format!("{second}/console/security")).await;
    assert!(b.wait_for("document.readyState === 'complete'", 10).await);
    let text = main_text(&b).await;
    assert!(text.contains("update.rollback_requested"), "{text}");
}
