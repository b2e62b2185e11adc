//! `outpost-install uninstall --purge` on an enrolled unit (issue 16): the TPM's lock
//! key is evicted and its counters undefined before the data dir goes, so a copy of
//! the disk made before the purge never opens again, on this TPM or any other.

use outpost_installer::paths::Root;
use outpost_installer::uninstall;
use outpost_security::enroll::SecondFactors;
use outpost_security::testing::{Swtpm, all_bytes, tpm2_tools_unseal_share};
use outpost_server::access::AccessError;
use outpost_server::store::StoreOptions;

use super::copy_dir;
use super::theft::{enrolled, leased, mock_hq};

#[tokio::test]
async fn purge_evicts_the_anchor_so_a_copy_of_the_disk_never_opens() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let root = tmp.path().join("root");
    let dir = root.join("var/lib/outpost");
    std::fs::create_dir_all(root.join("etc/outpost")).unwrap();
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    let s = enrolled(&dir, &tpm, &hq, SecondFactors::default(), 3600);
    let app = leased(&dir, &s, hq.escrow().keys(), 3600).await;
    app.stop().await;
    std::fs::write(
        root.join("etc/outpost/outpost.toml"),
        format!(
            "data_dir = \"/var/lib/outpost\"\n[security]\nsealer = \"tpm\"\ntcti = \"{}\"\n",
            tpm.tcti()
        ),
    )
    .unwrap();
    // The thief's copy, made before the purge: its TPM share opens with tpm2-tools.
    let copy = tmp.path().join("copy");
    copy_dir(&dir, &copy);
    tpm2_tools_unseal_share(&tpm, &copy.join("sealed-key"))
        .expect("the copy's share opens before the purge");

    let steps = uninstall::uninstall(
        &Root::staged(&root),
        uninstall::Removal {
            purge: true,
            keep_config: false,
        },
        true,
        &mut |_| {},
    )
    .unwrap();
    let erase = steps.iter().find(|s| s.name == "erase").unwrap();
    assert!(erase.changed, "{}", erase.detail);
    assert!(
        erase.detail.contains("lock key evicted")
            && erase.detail.contains("sealed-key")
            && erase.detail.contains("identity-key"),
        "{}",
        erase.detail
    );
    assert!(!dir.exists(), "the data dir was not removed");
    let mut anchor = outpost_security::anchor::open_tpm(&tpm.tcti()).unwrap();
    assert!(
        !anchor.is_provisioned().unwrap(),
        "the TPM still holds the enrolment"
    );

    // The copy: the share is dead for tpm2-tools, the server refuses it, and its bytes
    // hold nothing readable.
    tpm2_tools_unseal_share(&tpm, &copy.join("sealed-key"))
        .expect_err("the copy's share opened after the purge");
    let mut cs = s.clone();
    cs.data_dir = copy.clone();
    cs.security.enrollment = None;
    match outpost_server::access::open_data_dir(&cs, &StoreOptions::default()) {
        Err(AccessError::AnchorNotProvisioned(_)) => {}
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("the copy opened after the purge"),
    }
    // Not even once the TPM is provisioned again (a new install enrolled on it).
    anchor.provision().unwrap();
    assert!(
        outpost_server::access::open_data_dir(&cs, &StoreOptions::default()).is_err(),
        "the copy opened on the re-provisioned TPM"
    );
    tpm2_tools_unseal_share(&tpm, &copy.join("sealed-key"))
        .expect_err("the copy's share opened on the re-provisioned TPM");
    let bytes = all_bytes(&copy);
    for needle in ["Whole Milk", "TPM Test Store", "dairy"] {
        assert!(
            !outpost_security::testing::contains(&bytes, needle),
            "{needle} readable in the copy"
        );
    }
    // A second purge finds nothing left to do.
    let again = uninstall::uninstall(
        &Root::staged(&root),
        uninstall::Removal {
            purge: true,
            keep_config: false,
        },
        true,
        &mut |_| {},
    )
    .unwrap();
    assert!(again.iter().all(|s| !s.changed), "{again:?}");
}
