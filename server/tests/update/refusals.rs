//! Bad releases: each refused by `outpost update apply` with its reason, recorded in
//! the audit log, and the running release left as it was.

use std::path::Path;

use ed25519_dalek::SigningKey;
use outpost_updater::apply::{MANIFEST_FILE, read_manifest};
use outpost_updater::signed::{MANIFEST_TYPE, SignedDoc};

use crate::{Unit, now, script_release, v};

fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn resign(bundle: &Path, keys: &[&SigningKey], edit: impl FnOnce(&mut serde_json::Value)) {
    let doc = read_manifest(bundle).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&doc.payload_bytes("m").unwrap()).unwrap();
    edit(&mut m);
    let doc = SignedDoc::sign(MANIFEST_TYPE, &serde_json::to_vec(&m).unwrap(), keys);
    std::fs::write(bundle.join(MANIFEST_FILE), doc.to_json()).unwrap();
}

#[test]
fn every_bad_release_is_refused_with_its_reason_and_the_running_release_is_untouched() {
    let unit = Unit::new();
    let dir = unit.dir.path();
    // Small releases: what is refused here is the bundle, whatever the binary does.
    let bin = |version: &str| script_release(version, "exec sleep 120");
    let good = unit.publish("good", "0.1.1", &bin("0.1.1"), false);
    let other = unit.publish("other", "0.1.2", &bin("0.1.2"), false);
    let trusted: Vec<&SigningKey> = unit.keys[..2].iter().collect();
    let stranger = SigningKey::from_bytes(&[9; 32]);

    // The good one verifies: the refusals below are the bundles', not the set-up's.
    let out = unit.outpost(&["update", "check"], &[good.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Release 0.1.1 verified"));

    let artifact = |b: &Path| {
        std::fs::read_dir(b)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .unwrap()
    };
    let mut cases: Vec<(&str, std::path::PathBuf, &str)> = Vec::new();

    let tampered = dir.join("tampered");
    copy_bundle(&good, &tampered);
    let a = artifact(&tampered);
    let mut bytes = std::fs::read(&a).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&a, bytes).unwrap();
    cases.push((
        "tampered file",
        tampered,
        "does not belong to release 0.1.1",
    ));

    let bad_sig = dir.join("bad-signature");
    copy_bundle(&good, &bad_sig);
    resign(&bad_sig, &[trusted[0], &stranger], |_| {});
    cases.push((
        "one trusted signature and a stranger's",
        bad_sig,
        "1 valid signature(s) from trusted release keys; 2 needed",
    ));

    let unsigned = dir.join("unsigned");
    copy_bundle(&good, &unsigned);
    resign(&unsigned, &[], |_| {});
    cases.push(("unsigned", unsigned, "release manifest is not signed"));

    let expired = unit.publish_with("expired", "0.1.1", &bin("0.1.1"), false, |r| {
        r.published = now() - 10 * 86_400;
        r.lifetime_secs = 86_400;
    });
    cases.push(("expired", expired, "release manifest expired at"));

    let downgrade = unit.publish("downgrade", "0.0.9", &bin("0.0.9"), false);
    cases.push(("downgrade", downgrade, "release 0.0.9 is older than 0.1.0"));

    let wrong_target = unit.publish_with("target", "0.1.1", &bin("0.1.1"), false, |r| {
        r.target = "aarch64-unknown-linux-gnu".into();
    });
    cases.push((
        "wrong target",
        wrong_target,
        "is built for aarch64-unknown-linux-gnu",
    ));

    // 0.1.1's manifest with 0.1.2's archive in its place.
    let mixed = dir.join("mixed");
    copy_bundle(&good, &mixed);
    std::fs::copy(artifact(&other), artifact(&mixed)).unwrap();
    cases.push((
        "mix-and-match files",
        mixed,
        "does not belong to release 0.1.1",
    ));

    // A manifest signed for 0.1.3 that lists 0.1.2's files (hashes and all).
    let relabelled = dir.join("relabelled");
    copy_bundle(&other, &relabelled);
    resign(&relabelled, &trusted, |m| m["version"] = "0.1.3".into());
    cases.push((
        "a manifest naming another release's binary",
        relabelled,
        "says it is 0.1.2",
    ));

    for (what, bundle, expect) in &cases {
        let out = unit.apply(bundle);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: applied");
        assert!(err.contains(expect), "{what}: {err}");
        assert_eq!(unit.current(), v("0.1.0"), "{what}");
        assert!(unit.state().pending.is_none(), "{what}");
        assert_eq!(unit.layout.installed().unwrap(), vec![v("0.1.0")], "{what}");
    }

    // Every refusal is in the audit log, with its code.
    let settings = outpost_server::config::Settings::load(
        Some(&unit.config),
        Vec::<(String, String)>::new(),
        &outpost_server::config::Flags::default(),
    )
    .unwrap();
    let (_store, access) = outpost_server::access::open_data_dir(
        &settings,
        &outpost_server::store::StoreOptions::default(),
    )
    .unwrap();
    let refused: Vec<String> = access
        .audit_entries(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "update.refused")
        .map(|e| e.detail)
        .collect();
    assert_eq!(refused.len(), cases.len(), "{refused:#?}");
    for code in [
        "[file_mismatch]",
        "[bad_signature]",
        "[unsigned]",
        "[expired]",
        "[downgrade]",
        "[wrong_target]",
        "[stamp_mismatch]",
    ] {
        assert!(
            refused.iter().any(|d| d.contains(code)),
            "{code}: {refused:#?}"
        );
    }
}
