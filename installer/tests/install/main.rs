//! `outpost-install` against staging roots: the tree it makes, re-runs, runs cut
//! short at every step, uninstall, refusals, and the units through
//! `systemd-analyze verify`.

mod deb;
mod helpers;
mod purge;

use std::os::unix::fs::MetadataExt as _;

use helpers::{Machine, assert_ok, stdout};
use outpost_installer::{install, uninstall};

/// What the install adds to the skeleton: path, mode, owner ("root", "outpost",
/// "root:outpost"), and kind.
const EXPECTED: [(&str, u32, &str, &str); 14] = [
    ("etc/sysusers.d/outpost.conf", 0o644, "root", "file"),
    ("etc/outpost", 0o750, "root:outpost", "dir"),
    ("etc/outpost/outpost.toml", 0o640, "root:outpost", "file"),
    ("var/lib/outpost", 0o700, "outpost", "dir"),
    ("opt/outpost", 0o755, "outpost", "dir"),
    ("opt/outpost/releases", 0o755, "outpost", "dir"),
    ("opt/outpost/releases/0.1.0", 0o755, "outpost", "dir"),
    (
        "opt/outpost/releases/0.1.0/outpost",
        0o755,
        "outpost",
        "file",
    ),
    ("opt/outpost/current", 0o777, "outpost", "link"),
    ("opt/outpost/bin", 0o755, "root", "dir"),
    ("opt/outpost/bin/outpost-supervisor", 0o755, "root", "file"),
    ("etc/systemd/system/outpost.service", 0o644, "root", "file"),
    ("etc/systemd/system/outpost.socket", 0o644, "root", "file"),
    // Account files the skeleton had, rewritten by systemd-sysusers.
    ("etc/passwd", 0o644, "root", "file"),
];

#[test]
fn install_makes_every_file_with_its_owner_and_mode() {
    let m = Machine::new();
    let before = m.listing(false);
    assert_ok(&m.install(&[]));
    let uid = m.id("/etc/passwd", "outpost").expect("the outpost user");
    let gid = m.id("/etc/group", "outpost").expect("the outpost group");
    assert!((1..1000).contains(&uid), "a system uid, got {uid}");
    let after = m.listing(false);
    for (path, mode, owner, kind) in EXPECTED {
        let meta = std::fs::symlink_metadata(m.root.path().join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let (want_uid, want_gid) = match owner {
            "root" => (0, 0),
            "outpost" => (uid, gid),
            _ => (0, gid),
        };
        assert_eq!(
            (meta.uid(), meta.gid()),
            (want_uid, want_gid),
            "owner of {path}"
        );
        assert_eq!(meta.mode() & 0o7777, mode, "mode of {path}");
        let is = if meta.is_symlink() {
            "link"
        } else if meta.is_dir() {
            "dir"
        } else {
            "file"
        };
        assert_eq!(is, kind, "{path}");
    }
    // Nothing else was added: the skeleton's entries, the expected ones, and the
    // account files systemd-sysusers writes.
    let accounts = ["etc/group", "etc/shadow", "etc/gshadow"];
    for path in after.keys() {
        assert!(
            before.contains_key(path)
                || EXPECTED.iter().any(|e| e.0 == path)
                || accounts.contains(&path.as_str()),
            "unexpected {path}"
        );
    }
    // Contents.
    let current = std::fs::read_link(m.path("/opt/outpost/current")).unwrap();
    assert_eq!(current.to_str(), Some("releases/0.1.0"));
    assert_eq!(
        std::fs::read(m.path("/opt/outpost/current/outpost")).unwrap(),
        std::fs::read(m.input("outpost")).unwrap()
    );
    assert_eq!(
        std::fs::read(m.path("/opt/outpost/bin/outpost-supervisor")).unwrap(),
        std::fs::read(m.input("outpost-supervisor")).unwrap()
    );
    let layout = outpost_updater::layout::Layout::new(m.path("/opt/outpost"));
    assert_eq!(layout.current().unwrap().unwrap().to_string(), "0.1.0");
    let config: toml::Table = std::fs::read_to_string(m.path("/etc/outpost/outpost.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(config["store"]["id"].as_str(), Some("store-0042"));
    assert_eq!(config["data_dir"].as_str(), Some("/var/lib/outpost"));
    assert_eq!(
        config["sync"]["hq_url"].as_str(),
        Some("https://hq.example.com:443")
    );
    let service = std::fs::read_to_string(m.path("/etc/systemd/system/outpost.service")).unwrap();
    assert!(
        service.lines().any(|l| l == "SupplementaryGroups=tss"),
        "{service}"
    );
    let socket = std::fs::read_to_string(m.path("/etc/systemd/system/outpost.socket")).unwrap();
    assert!(
        socket.lines().any(|l| l == "ListenStream=0.0.0.0:8443"),
        "{socket}"
    );
    let passwd = std::fs::read_to_string(m.path("/etc/passwd")).unwrap();
    assert!(
        passwd.starts_with("root:x:0:0:"),
        "the other accounts stay: {passwd}"
    );
}

#[test]
fn a_second_run_changes_nothing_and_says_so() {
    let m = Machine::new();
    assert_ok(&m.install(&[]));
    let first = m.listing(true);
    let again = m.install(&[]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("Nothing changed"),
        "{}",
        stdout(&again)
    );
    assert_eq!(m.listing(true), first, "the second run touched the tree");
    // Without config flags, the installed config is kept.
    let args = m.install_args();
    let args: Vec<&str> = args[..5].iter().map(String::as_str).collect();
    let keep = m.run(&args, &[]);
    assert_ok(&keep);
    assert!(
        stdout(&keep).contains("Nothing changed"),
        "{}",
        stdout(&keep)
    );
    assert_eq!(m.listing(true), first);
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let m = Machine::new();
    let before = m.listing(true);
    let mut args = m.install_args();
    args.push("--dry-run".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plan = m.run(&args, &[]);
    assert_ok(&plan);
    let out = stdout(&plan);
    for s in install::STEPS {
        assert!(out.contains(s), "{s} missing from the plan: {out}");
    }
    assert!(out.contains("would change"), "{out}");
    assert_eq!(m.listing(true), before, "a dry run changed the tree");
    assert_ok(&m.install(&[]));
    let installed = m.listing(true);
    let plan = m.run(&args, &[]);
    assert!(
        stdout(&plan).contains("nothing would change"),
        "{}",
        stdout(&plan)
    );
    let un = m.run(&["uninstall", "--dry-run", "--purge"], &[]);
    assert_ok(&un);
    assert!(stdout(&un).contains("would change"), "{}", stdout(&un));
    assert_eq!(m.listing(true), installed);
}

#[test]
fn a_run_cut_short_after_each_step_is_finished_by_the_next() {
    let reference = Machine::new();
    assert_ok(&reference.install(&[]));
    let want = reference.listing(false);
    for step in install::STEPS {
        let m = Machine::new();
        let cut = m.install(&[(outpost_installer::FAIL_AFTER_ENV, step)]);
        assert!(!cut.status.success(), "the run cut after {step} finished");
        let again = m.install(&[]);
        assert_ok(&again);
        assert_eq!(m.listing(false), want, "after a run cut short after {step}");
        let third = m.install(&[]);
        assert!(
            stdout(&third).contains("Nothing changed"),
            "after {step}: {}",
            stdout(&third)
        );
    }
    // The same for uninstall.
    let bare = Machine::new();
    let empty = bare.listing(false);
    for step in uninstall::STEPS {
        let m = Machine::new();
        assert_ok(&m.install(&[]));
        let cut = m.run(
            &["uninstall", "--purge"],
            &[(outpost_installer::FAIL_AFTER_ENV, step)],
        );
        assert!(
            !cut.status.success(),
            "the uninstall cut after {step} finished"
        );
        assert_ok(&m.run(&["uninstall", "--purge"], &[]));
        assert_eq!(
            m.listing(false),
            empty,
            "after an uninstall cut short after {step}"
        );
    }
}

#[test]
fn uninstall_leaves_only_the_data_dir_and_purge_leaves_nothing() {
    let m = Machine::new();
    let skeleton = m.listing(false);
    assert_ok(&m.install(&[]));
    let uid = m.id("/etc/passwd", "outpost").unwrap();
    std::fs::write(m.path("/var/lib/outpost/sales"), b"sold").unwrap();
    std::os::unix::fs::chown(m.path("/var/lib/outpost/sales"), Some(uid), Some(uid)).unwrap();
    assert_ok(&m.run(&["uninstall"], &[]));
    let mut left = m.listing(false);
    assert!(
        left.remove("var/lib/outpost").is_some(),
        "the data dir was removed"
    );
    assert!(left.remove("var/lib/outpost/sales").is_some());
    assert_eq!(left, skeleton, "uninstall left more than the data dir");
    // Uninstalling again changes nothing.
    let again = m.run(&["uninstall"], &[]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("Nothing changed"),
        "{}",
        stdout(&again)
    );

    // A reinstall owns its old data again: the kept data dir's ids come back.
    std::os::unix::fs::chown(m.path("/var/lib/outpost"), Some(990), Some(990)).unwrap();
    std::os::unix::fs::chown(m.path("/var/lib/outpost/sales"), Some(990), Some(990)).unwrap();
    assert_ok(&m.install(&[]));
    assert_eq!(m.id("/etc/passwd", "outpost"), Some(990));
    assert_eq!(m.id("/etc/group", "outpost"), Some(990));
    assert_eq!(
        std::fs::read(m.path("/var/lib/outpost/sales")).unwrap(),
        b"sold"
    );

    assert_ok(&m.run(&["uninstall", "--purge"], &[]));
    assert_eq!(m.listing(false), skeleton, "--purge left something");
}

#[test]
fn a_kept_data_dir_whose_ids_were_taken_is_given_to_the_new_user() {
    let m = Machine::new();
    assert_ok(&m.install(&[]));
    let old = m.id("/etc/passwd", "outpost").unwrap();
    std::fs::write(m.path("/var/lib/outpost/sales"), b"sold").unwrap();
    std::os::unix::fs::chown(m.path("/var/lib/outpost/sales"), Some(old), Some(old)).unwrap();
    assert_ok(&m.run(&["uninstall"], &[]));
    // Another package took the old ids meanwhile.
    let add = |f: &str, line: String| {
        let mut t = std::fs::read_to_string(m.path(f)).unwrap();
        t += &line;
        std::fs::write(m.path(f), t).unwrap();
    };
    add(
        "/etc/passwd",
        format!("other:x:{old}:{old}::/:/usr/sbin/nologin\n"),
    );
    add("/etc/group", format!("other:x:{old}:\n"));
    assert_ok(&m.install(&[]));
    let new = m.id("/etc/passwd", "outpost").unwrap();
    assert_ne!(new, old);
    let sales = std::fs::metadata(m.path("/var/lib/outpost/sales")).unwrap();
    assert_eq!(sales.uid(), new, "the old data stayed the other account's");
}

#[test]
fn bad_inputs_are_refused_before_anything_changes() {
    let m = Machine::new();
    let before = m.listing(true);
    std::fs::write(m.input("bad.toml"), "listen = \n").unwrap();
    std::fs::write(m.input("unstamped"), b"#!/bin/sh\nexit 0\n").unwrap();
    let sup = m.input("outpost-supervisor");
    let bin = m.input("outpost");
    let bad_toml = m.input("bad.toml");
    let unstamped = m.input("unstamped");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "install",
                "--binary",
                bin.to_str().unwrap(),
                "--supervisor",
                sup.to_str().unwrap(),
                "--config-from",
                bad_toml.to_str().unwrap(),
            ],
            "not valid TOML",
        ),
        (
            vec![
                "install",
                "--binary",
                unstamped.to_str().unwrap(),
                "--supervisor",
                sup.to_str().unwrap(),
                "--store-id",
                "s",
                "--listen",
                "10.0.0.2:8443",
            ],
            "not an Outpost release binary",
        ),
        (
            vec![
                "install",
                "--binary",
                bin.to_str().unwrap(),
                "--supervisor",
                sup.to_str().unwrap(),
            ],
            "--store-id",
        ),
        (
            vec![
                "install",
                "--binary",
                bin.to_str().unwrap(),
                "--supervisor",
                sup.to_str().unwrap(),
                "--store-id",
                "s",
            ],
            "--tls-name",
        ),
    ];
    for (args, why) in cases {
        let o = m.run(&args, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(err.contains(why), "{args:?}: {err}");
        assert_eq!(m.listing(true), before, "{args:?} changed the tree");
    }
    // An installed config that differs is not overwritten without --replace-config.
    assert_ok(&m.install(&[]));
    let installed = m.listing(true);
    let mut args = m.install_args();
    args[6] = "store-0043".into();
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = m.run(&args_ref, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--replace-config"));
    assert_eq!(m.listing(true), installed);
    let mut replace = args_ref.clone();
    replace.push("--replace-config");
    assert_ok(&m.run(&replace, &[]));
    let text = std::fs::read_to_string(m.path("/etc/outpost/outpost.toml")).unwrap();
    assert!(text.contains("store-0043"));
    // A release already current is never replaced by the installer.
    std::fs::write(m.input("outpost"), helpers::release_script("0.2.0")).unwrap();
    let o = m.run(&replace, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("outpost update apply"));
}

#[test]
fn systemd_analyze_verify_passes_on_the_generated_units() {
    let tool = std::path::Path::new("/usr/bin/systemd-analyze");
    if !tool.exists() {
        eprintln!("SKIPPED: /usr/bin/systemd-analyze is not installed here");
        return;
    }
    let m = Machine::new();
    // A config with what changes the unit: a serial port, a gRPC port under 1024.
    let config = m.input("outpost.toml");
    std::fs::write(
        &config,
        r#"listen = "10.0.0.2:8443"
data_dir = "/var/lib/outpost"
[store]
id = "store-0042"
[sync]
grpc_listen = "0.0.0.0:443"
[[devices]]
id = "printer"
kind = "printer"
driver = "escpos-serial"
port = "/dev/ttyUSB0"
"#,
    )
    .unwrap();
    let (bin, sup) = (m.input("outpost"), m.input("outpost-supervisor"));
    assert_ok(&m.run(
        &[
            "install",
            "--binary",
            bin.to_str().unwrap(),
            "--supervisor",
            sup.to_str().unwrap(),
            "--config-from",
            config.to_str().unwrap(),
        ],
        &[],
    ));
    let service = std::fs::read_to_string(m.path("/etc/systemd/system/outpost.service")).unwrap();
    for line in [
        "DeviceAllow=/dev/ttyUSB0 rw",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "SupplementaryGroups=tss dialout",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "{line} missing:\n{service}"
        );
    }
    // verify resolves the units' dependencies (sysinit.target, ...) in the root:
    // give it the host's.
    std::fs::create_dir_all(m.path("/usr/lib/systemd")).unwrap();
    let copy = std::process::Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(m.path("/usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(copy.success());
    let out = std::process::Command::new(tool)
        .arg("verify")
        .arg(format!("--root={}", m.root.path().display()))
        .args([
            "/etc/systemd/system/outpost.service",
            "/etc/systemd/system/outpost.socket",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on lines it ignores ("Unknown key", "Failed to parse"): any
    // message is a failure.
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
    // The check can fail: a broken line is reported.
    let broken = service.replace("Type=notify", "Type=notfy");
    std::fs::write(m.path("/etc/systemd/system/outpost.service"), broken).unwrap();
    let out = std::process::Command::new(tool)
        .arg("verify")
        .arg(format!("--root={}", m.root.path().display()))
        .arg("/etc/systemd/system/outpost.service")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("notfy"));
}
