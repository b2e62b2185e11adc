//! The Debian package (`[package.metadata.deb]` in installer/Cargo.toml, scripts in
//! installer/debian/): built once with cargo-deb from the debug binaries this test run
//! already has, its control data and contents checked against what the maintainer
//! scripts hand the installer, then installed, removed and purged with dpkg in a
//! throwaway root (`--force-script-chrootless`: the scripts run here with
//! `DPKG_ROOT`, and the installer works under `--root`).
//!
//! Needs cargo-deb (`CARGO_DEB`, `/var/tmp/outpost-tools/bin/cargo-deb` or on PATH),
//! dpkg, and the server's debug binaries beside `outpost-install` (`cargo test
//! --workspace` builds them); without them it is skipped, saying why, unless
//! `OUTPOST_REQUIRE_DEB_TEST` is set (as `.ci/run` does), where it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use outpost_security::seal::{SealedKeyFile, SoftwareSealer};

use crate::helpers::{Machine, listing};

const CARGO_DEB_DEFAULT: &str = "/var/tmp/outpost-tools/bin/cargo-deb";

/// What the package must carry: the paths the postinst gives the installer, the
/// installer itself, the docs.
const CONTENTS: [&str; 5] = [
    "./usr/bin/outpost-install",
    "./usr/lib/outpost/outpost",
    "./usr/lib/outpost/outpost-supervisor",
    "./usr/share/doc/outpost/install.md",
    "./usr/share/doc/outpost/README.md",
];

fn skip(why: String) {
    if std::env::var_os("OUTPOST_REQUIRE_DEB_TEST").is_some() {
        panic!("the package test cannot run: {why}");
    }
    eprintln!("SKIPPED: the Debian package test: {why}");
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

fn cargo_deb() -> Option<PathBuf> {
    std::env::var_os("CARGO_DEB")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(CARGO_DEB_DEFAULT)).filter(|p| p.is_file()))
        .or_else(|| on_path("cargo-deb"))
}

fn ok(what: &str, o: Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn dpkg(root: &Path, args: &[&str]) -> String {
    let o = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-not-root",
            "--force-script-chrootless",
            // The throwaway root has no libc6 package to satisfy Depends.
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args)
        .output()
        .unwrap();
    ok(&format!("dpkg {args:?}"), o)
}

#[test]
fn the_deb_builds_lists_what_the_installer_expects_and_installs_and_purges_cleanly() {
    let Some(cargo_deb) = cargo_deb() else {
        return skip(
            "cargo-deb is not installed (cargo install cargo-deb --version 3.8.0 --locked --root /var/tmp/outpost-tools)".into(),
        );
    };
    if on_path("dpkg").is_none() || on_path("dpkg-deb").is_none() {
        return skip("dpkg is not installed".into());
    }
    let installer = PathBuf::from(env!("CARGO_BIN_EXE_outpost-install"));
    let bin_dir = installer.parent().unwrap();
    for name in ["outpost", "outpost-supervisor"] {
        if !bin_dir.join(name).is_file() {
            return skip(format!(
                "{} is not built (cargo build -p outpost-server --bins, or cargo test --workspace)",
                bin_dir.join(name).display()
            ));
        }
    }
    let target_dir = bin_dir.parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    let deb = out.path().join("outpost.deb");
    // One build of the package, from the debug binaries (a release is built the same
    // way without --profile/--no-build: docs/install.md).
    ok(
        "cargo-deb",
        Command::new(&cargo_deb)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target_dir)
            .args(["-p", "outpost-installer", "--profile", "dev", "--no-build"])
            .args(["--fast", "--quiet", "-o"])
            .arg(&deb)
            .output()
            .unwrap(),
    );

    let info = ok(
        "dpkg-deb --info",
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .output()
            .unwrap(),
    );
    for want in [
        "Package: outpost",
        "Version: 0.1.0-1",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(info.contains(want), "{want} missing:\n{info}");
    }
    let depends = info
        .lines()
        .find(|l| l.trim_start().starts_with("Depends:"))
        .unwrap_or_else(|| panic!("no Depends:\n{info}"));
    assert!(depends.contains("libc6"), "{depends}");
    // libtss2 exactly when the packaged server links it (a `--features tpm` build).
    let server = std::fs::read(bin_dir.join("outpost")).unwrap();
    let links_tss2 = server.windows(15).any(|w| w == b"libtss2-esys.so");
    assert_eq!(depends.contains("libtss2"), links_tss2, "{depends}");

    let contents = ok(
        "dpkg-deb --contents",
        Command::new("dpkg-deb")
            .arg("--contents")
            .arg(&deb)
            .output()
            .unwrap(),
    );
    for path in CONTENTS {
        let line = contents
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing:\n{contents}"));
        if path.contains("/bin/") || path.contains("/lib/outpost/") {
            assert!(line.starts_with("-rwxr-xr-x 0/0 "), "{line}");
        }
    }
    // The postinst hands the installer exactly the packaged paths.
    let control = out.path().join("control");
    ok(
        "dpkg-deb -e",
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(&control)
            .output()
            .unwrap(),
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    for (path, used) in [
        ("./usr/lib/outpost/", "lib=\"$DPKG_ROOT/usr/lib/outpost\""),
        (
            "./usr/bin/outpost-install",
            "\"$DPKG_ROOT/usr/bin/outpost-install\" \"$@\"",
        ),
        ("./usr/lib/outpost/outpost", "--binary \"$lib/outpost\""),
        (
            "./usr/lib/outpost/outpost-supervisor",
            "--supervisor \"$lib/outpost-supervisor\"",
        ),
    ] {
        assert!(
            contents.contains(path) && postinst.contains(used),
            "{used}:\n{postinst}"
        );
    }

    // Install into a throwaway root whose config the technician put there first.
    let m = Machine::new();
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(m.root.path().join(d)).unwrap();
    }
    std::fs::write(m.root.path().join("var/lib/dpkg/status"), "").unwrap();
    let skeleton = m.listing(false);
    std::fs::create_dir_all(m.path("/etc/outpost")).unwrap();
    std::fs::write(
        m.path("/etc/outpost/outpost.toml"),
        "listen = \"10.0.0.2:8443\"\ndata_dir = \"/var/lib/outpost\"\n[store]\nid = \"store-0042\"\n[security]\nsealer = \"software\"\nallow_software = true\n",
    )
    .unwrap();
    let said = dpkg(m.root.path(), &["-i", deb.to_str().unwrap()]);
    assert!(said.contains("Done: the install"), "{said}");
    assert!(m.id("/etc/passwd", "outpost").is_some());
    assert_eq!(
        std::fs::read(m.path("/opt/outpost/releases/0.1.0/outpost")).unwrap(),
        std::fs::read(m.path("/usr/lib/outpost/outpost")).unwrap(),
        "the first release is the packaged binary"
    );
    for unit in ["outpost.service", "outpost.socket"] {
        assert!(m.path(&format!("/etc/systemd/system/{unit}")).is_file());
    }
    let status = dpkg(m.root.path(), &["-s", "outpost"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    // The package again over itself (dpkg's upgrade path): the release is left to the
    // updater, and the tree does not change.
    let installed = listing(m.root.path(), true);
    let said = dpkg(m.root.path(), &["-i", deb.to_str().unwrap()]);
    assert!(said.contains("outpost update apply"), "{said}");
    let again = listing(m.root.path(), true);
    for (path, what) in &installed {
        if !path.starts_with("var/lib/dpkg") && !path.starts_with("usr/") && path != "usr" {
            assert_eq!(again.get(path), Some(what), "the upgrade changed {path}");
        }
    }

    // The server's first start: a sealed data key.
    let data = m.path("/var/lib/outpost");
    let mut sealer = SoftwareSealer::open(&data.join("software-kek"), true).unwrap();
    SealedKeyFile::new(data.join("sealed-key"))
        .load_or_create(&mut sealer)
        .unwrap();

    // Remove: everything but the data, the technician's config (Debian keeps a
    // removed package's configuration) and the installer copy the purge needs.
    let config = std::fs::read(m.path("/etc/outpost/outpost.toml")).unwrap();
    let said = dpkg(m.root.path(), &["-r", "outpost"]);
    assert!(said.contains("Done: the uninstall"), "{said}");
    assert!(data.join("sealed-key").exists() && data.join("software-kek").exists());
    assert_eq!(
        std::fs::read(m.path("/etc/outpost/outpost.toml")).unwrap(),
        config,
        "the removal kept the config as it was"
    );
    assert!(!m.path("/opt/outpost").exists());
    assert!(!m.path("/etc/systemd/system/outpost.service").exists());
    assert!(m.id("/etc/passwd", "outpost").is_none());
    assert!(
        m.path("/var/lib/outpost-installer/outpost-install")
            .is_file()
    );

    // Purge: the key is destroyed, the data dir and the installer copy go.
    let said = dpkg(m.root.path(), &["-P", "outpost"]);
    assert!(said.contains("Done: the uninstall"), "{said}");
    let after = listing(m.root.path(), false);
    for path in after.keys() {
        assert!(
            skeleton.contains_key(path) || path.starts_with("var/lib/dpkg"),
            "left after the purge: {path}"
        );
    }
    for (path, what) in &skeleton {
        if what.contains(" file ") && !path.starts_with("var/lib/dpkg") {
            assert!(after.contains_key(path), "the purge removed {path}");
        }
    }
    let status = Command::new("dpkg")
        .arg(format!("--root={}", m.root.path().display()))
        .args(["-s", "outpost"])
        .output()
        .unwrap();
    assert!(!status.status.success(), "dpkg still knows the package");
}
