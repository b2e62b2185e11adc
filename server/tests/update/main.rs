//! Self-update end to end, with real builds: the `outpost` binary of this build,
//! copies of it stamped as other releases, and releases that crash or hang at start;
//! bundles published as HQ's release tool does, applied with `outpost update`, started
//! by `outpost-supervisor`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use outpost_updater::layout::Layout;
use outpost_updater::publish::{Release, publish};
use outpost_updater::root::Root;
use outpost_updater::semver::Version;
use outpost_updater::state::{self, UpdateState};

mod crash;
mod distribute;
mod live;
mod refusals;
mod rollback;

/// A unit: a releases directory with this build installed as 0.1.0, a config, a
/// data dir with a small catalog, and HQ's three release keys (2 of 3 sign).
pub(crate) struct Unit {
    pub dir: tempfile::TempDir,
    pub layout: Layout,
    pub config: PathBuf,
    pub keys: Vec<SigningKey>,
    pub base: Vec<u8>,
}

pub(crate) fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

pub(crate) fn now() -> i64 {
    outpost_updater::unix_now()
}

impl Unit {
    pub fn new() -> Unit {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<SigningKey> = (1..=3u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let k: Vec<&SigningKey> = keys.iter().collect();
        let root = Root::new(1, now() + 365 * 86_400, 2, &k);
        let root_path = dir.path().join("release-root.json");
        std::fs::write(&root_path, root.sign(&k).to_json()).unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("outpost.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[security]\nallow_software = true\n\
                 [updates]\nrelease_root = {root_path:?}\ngate_timeout_secs = 10\n"
            ),
        )
        .unwrap();
        let base = std::fs::read(env!("CARGO_BIN_EXE_outpost")).unwrap();
        let layout = Layout::new(dir.path().join("opt"));
        layout.install_first(&v("0.1.0"), &base).unwrap();
        let unit = Unit {
            dir,
            layout,
            config,
            keys,
            base,
        };
        let products = unit.dir.path().join("products.jsonl");
        std::fs::write(
            &products,
            "{\"sku\":\"MILK\",\"name\":\"Whole Milk 1 L\",\"category\":\"dairy\",\"price\":129,\"currency\":\"EUR\",\"tax_class\":\"reduced\"}\n\
             {\"sku\":\"BREAD\",\"name\":\"Rye Bread\",\"category\":\"bakery\",\"price\":250,\"currency\":\"EUR\",\"tax_class\":\"reduced\"}\n",
        )
        .unwrap();
        let out = unit.outpost(&["import", "catalog"], &[products.as_os_str()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        unit
    }

    /// `current/outpost ARGS... EXTRA... --config C` (and `--releases R` for `update`).
    pub fn outpost(&self, args: &[&str], extra: &[&std::ffi::OsStr]) -> Output {
        self.outpost_env(args, extra, &[])
    }

    /// [`Unit::outpost`] with environment variables.
    pub fn outpost_env(
        &self,
        args: &[&str],
        extra: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> Output {
        let mut c = Command::new(self.layout.root().join("current/outpost"));
        c.envs(env.iter().copied());
        c.args(args).args(extra).arg("--config").arg(&self.config);
        if args.first() == Some(&"update") {
            c.arg("--releases").arg(self.layout.root());
        }
        c.env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
            .env_remove("RUST_LOG")
            .env_remove("OUTPOST_RELEASES")
            .output()
            .unwrap()
    }

    /// `outpost update apply BUNDLE`.
    pub fn apply(&self, bundle: &Path) -> Output {
        self.outpost(&["update", "apply"], &[bundle.as_os_str()])
    }

    /// Publishes `binary` as `version` (deltas from this build's 0.1.0 when `delta`).
    pub fn publish(&self, name: &str, version: &str, binary: &[u8], delta: bool) -> PathBuf {
        self.publish_with(name, version, binary, delta, |_| {})
    }

    /// [`Unit::publish`], with `edit` applied to the release first.
    pub fn publish_with(
        &self,
        name: &str,
        version: &str,
        binary: &[u8],
        delta: bool,
        edit: impl FnOnce(&mut Release<'_>),
    ) -> PathBuf {
        let out = self.dir.path().join(name);
        let k: Vec<&SigningKey> = self.keys[..2].iter().collect();
        let mut release = Release {
            version: v(version),
            target: outpost_updater::target().into(),
            binary: binary.to_vec(),
            delta_from: if delta {
                vec![(v("0.1.0"), self.base.as_slice())]
            } else {
                vec![]
            },
            min_from: None,
            schema: None,
            published: now(),
            lifetime_secs: 7 * 86_400,
            delta_level: 3,
        };
        edit(&mut release);
        publish(release, &k, &out).unwrap();
        out
    }

    pub fn state(&self) -> UpdateState {
        UpdateState::load(&self.layout.state_path()).unwrap()
    }

    pub fn current(&self) -> Version {
        self.layout.current().unwrap().unwrap()
    }
}

/// A release binary that is a shell script carrying a version slot: `self-test`
/// passes, and a start runs `body`.
pub(crate) fn script_release(version: &str, body: &str) -> Vec<u8> {
    let mut s = format!("#!/bin/sh\ncase \"$1\" in self-test) exit 0;; esac\n{body}\nexit 101\n# ")
        .into_bytes();
    s.extend_from_slice(&outpost_updater::stamp::slot_for(&v(version)));
    s.push(b'\n');
    s
}

/// `outpost-supervisor run` in its own process group, its stderr collected.
pub(crate) struct Supervised {
    child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Supervised {
    pub fn start(unit: &Unit) -> Supervised {
        Supervised::start_with(unit, &[])
    }

    /// With more `outpost-supervisor run` flags (`--listen ADDR`).
    pub fn start_with(unit: &Unit, flags: &[&str]) -> Supervised {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost-supervisor"))
            .args(["run", "--releases"])
            .arg(unit.layout.root())
            .args(flags)
            .args(["--gate-timeout-secs", "10", "--", "serve", "--config"])
            .arg(&unit.config)
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
                eprintln!("supervised: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Supervised { child, lines }
    }

    /// The address of the `n`-th server start that logged one (0-based), waiting.
    pub fn address(&self, n: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
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
                return a.clone();
            }
            assert!(Instant::now() < deadline, "no server start number {n}");
            std::thread::sleep(Duration::from_millis(50));
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

/// GET `url`, its status and body.
pub(crate) fn get(url: &str) -> Option<(u16, serde_json::Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or_default()))
    })
}

/// Waits (bounded) until `f` holds.
pub(crate) fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn last_result(unit: &Unit) -> Option<state::Result> {
    unit.state().last.map(|l| l.result)
}
