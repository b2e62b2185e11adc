//! A staging root shaped like a fresh Debian machine, the installer run as a
//! process (so a failpoint can stop it dead), and a full listing of a tree.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use outpost_updater::semver::Version;

/// The directories and account files a Debian root has before the install.
const SKELETON_DIRS: [&str; 7] = [
    "etc",
    "etc/systemd/system",
    "etc/sysusers.d",
    "opt",
    "var/lib",
    "usr/lib",
    "usr/sbin",
];

/// An Outpost "binary" for the tests: a shell script that carries a version slot
/// after its `exit 0`, like the release tool stamps a real build.
pub fn release_script(version: &str) -> Vec<u8> {
    let mut s = b"#!/bin/sh\nexit 0\n# ".to_vec();
    s.extend_from_slice(&outpost_updater::stamp::slot_for(
        &Version::parse(version).unwrap(),
    ));
    s.push(b'\n');
    s
}

/// A staging root and the files an install is given.
pub struct Machine {
    pub root: tempfile::TempDir,
    pub inputs: tempfile::TempDir,
}

impl Machine {
    pub fn new() -> Machine {
        let root = tempfile::tempdir().unwrap();
        for d in SKELETON_DIRS {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let etc = root.path().join("etc");
        let w = |name: &str, text: &str, mode: u32| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::write(etc.join(name), text).unwrap();
            std::fs::set_permissions(etc.join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        };
        w("passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644);
        w("group", "root:x:0:\ntss:x:110:\ndialout:x:20:\n", 0o644);
        w("shadow", "root:*:19000:0:99999:7:::\n", 0o640);
        w("gshadow", "root:*::\ntss:!::\ndialout:*::\n", 0o640);
        w(".pwd.lock", "", 0o600);
        // The backups shadow's tools and systemd-sysusers keep of each file.
        for f in ["passwd", "group", "shadow", "gshadow"] {
            let text = std::fs::read_to_string(etc.join(f)).unwrap();
            let mode = if f.contains("shadow") { 0o640 } else { 0o644 };
            w(&format!("{f}-"), &text, mode);
        }
        let inputs = tempfile::tempdir().unwrap();
        std::fs::write(inputs.path().join("outpost"), release_script("0.1.0")).unwrap();
        std::fs::write(
            inputs.path().join("outpost-supervisor"),
            b"#!/bin/sh\nexit 0\n",
        )
        .unwrap();
        Machine { root, inputs }
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.path().join(abs.trim_start_matches('/'))
    }

    pub fn input(&self, name: &str) -> PathBuf {
        self.inputs.path().join(name)
    }

    /// `outpost-install ARGS --root ROOT`, with `env`.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost-install"));
        cmd.args(args).arg("--root").arg(self.root.path());
        cmd.env_remove(outpost_installer::FAIL_AFTER_ENV);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// The install every test makes: the template with a LAN address.
    pub fn install_args(&self) -> Vec<String> {
        [
            "install",
            "--binary",
            self.input("outpost").to_str().unwrap(),
            "--supervisor",
            self.input("outpost-supervisor").to_str().unwrap(),
            "--store-id",
            "store-0042",
            "--listen",
            "0.0.0.0:8443",
            "--tls-name",
            "till-1.store-0042.lan",
            "--hq-url",
            "https://hq.example.com:443",
        ]
        .map(String::from)
        .to_vec()
    }

    pub fn install(&self, env: &[(&str, &str)]) -> Output {
        let args = self.install_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args, env)
    }

    /// The id `name` has in the root's `file` (passwd: uid, group: gid).
    pub fn id(&self, file: &str, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.path(file))
            .unwrap()
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f[0] == name)
            .map(|f| f[2].parse().unwrap())
    }

    pub fn listing(&self, with_times: bool) -> Listing {
        listing(self.root.path(), with_times)
    }
}

/// Every entry of a tree: kind, mode, owner, content or link target, and (when
/// asked) the modification time.
pub type Listing = BTreeMap<String, String>;

pub fn listing(root: &Path, with_times: bool) -> Listing {
    let mut out = BTreeMap::new();
    walk(root, root, with_times, &mut out);
    out
}

fn walk(root: &Path, p: &Path, with_times: bool, out: &mut Listing) {
    let m = std::fs::symlink_metadata(p).unwrap();
    let what = if m.is_symlink() {
        format!("link -> {}", std::fs::read_link(p).unwrap().display())
    } else if m.is_dir() {
        "dir".to_owned()
    } else {
        format!(
            "file {:?}",
            String::from_utf8_lossy(&std::fs::read(p).unwrap())
        )
    };
    let mut line = format!("{:o} {}:{} {what}", m.mode() & 0o7777, m.uid(), m.gid());
    if with_times {
        // A directory's mtime changes when an entry is added or removed in it.
        line += &format!(" mtime {}.{}", m.mtime(), m.mtime_nsec());
    }
    let rel = p.strip_prefix(root).unwrap().display().to_string();
    out.insert(if rel.is_empty() { "/".into() } else { rel }, line);
    if m.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            walk(root, &e.unwrap().path(), with_times, out);
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "outpost-install failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}
