//! `uninstall --purge` crypto-erases the data key before the data dir goes: with the
//! software sealer under a staging root here; the TPM anchor's eviction is tested on
//! swtpm in the server's `tpm` target (`purge.rs` there).

use outpost_security::fsutil;
use outpost_security::seal::{SealError, SealedKeyFile, SoftwareSealer};
use outpost_security::vault::KeyVault;

use crate::helpers::{Machine, assert_ok, stdout};

/// What the server's first start makes in the data dir with the software sealer: the
/// key-encryption key, the sealed data key, and one record encrypted under it.
fn first_start(m: &Machine) -> Vec<u8> {
    let data = m.path("/var/lib/outpost");
    let mut sealer = SoftwareSealer::open(&data.join("software-kek"), true).unwrap();
    let (key, _) = SealedKeyFile::new(data.join("sealed-key"))
        .load_or_create(&mut sealer)
        .unwrap();
    let sealed = KeyVault::new(key)
        .cipher("sales")
        .unwrap()
        .seal(b"sales", b"2 x Whole Milk 1 L");
    std::fs::write(data.join("sales.db"), &sealed).unwrap();
    sealed
}

fn software_install(m: &Machine) {
    let mut args = m.install_args();
    args.extend(["--sealer".into(), "software".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_ok(&m.run(&args, &[]));
}

#[test]
fn purge_destroys_the_data_key_before_it_removes_the_data_dir() {
    let m = Machine::new();
    let skeleton = m.listing(false);
    software_install(&m);
    let ciphertext = first_start(&m);
    let data = m.path("/var/lib/outpost");

    // The plan names the key; a dry run destroys nothing.
    let plan = m.run(&["uninstall", "--purge", "--dry-run"], &[]);
    assert_ok(&plan);
    let out = stdout(&plan);
    assert!(
        out.contains("erase") && out.contains("sealed-key") && out.contains("software-kek"),
        "{out}"
    );
    assert!(data.join("sealed-key").exists() && data.join("software-kek").exists());

    // Cut short right after the erase: the config and the data dir are still there,
    // the ciphertext is not readable any more, and no new key opens it.
    let cut = m.run(
        &["uninstall", "--purge"],
        &[(outpost_installer::FAIL_AFTER_ENV, "erase")],
    );
    assert!(!cut.status.success());
    assert!(m.path("/etc/outpost/outpost.toml").exists());
    assert_eq!(std::fs::read(data.join("sales.db")).unwrap(), ciphertext);
    assert!(!data.join("sealed-key").exists());
    assert!(!data.join("software-kek").exists());
    let mut sealer = SoftwareSealer::open(&data.join("software-kek"), true).unwrap();
    assert!(matches!(
        SealedKeyFile::new(data.join("sealed-key")).unseal(&mut sealer),
        Err(SealError::Missing(_))
    ));
    std::fs::remove_file(data.join("software-kek")).unwrap();

    // The next run finishes: nothing is left.
    let rest = m.run(&["uninstall", "--purge"], &[]);
    assert_ok(&rest);
    assert_eq!(m.listing(false), skeleton, "--purge left something");
}

#[test]
fn without_purge_the_data_key_stays_with_the_data() {
    let m = Machine::new();
    software_install(&m);
    first_start(&m);
    let out = m.run(&["uninstall"], &[]);
    assert_ok(&out);
    let data = m.path("/var/lib/outpost");
    for kept in ["sealed-key", "software-kek", "sales.db"] {
        assert!(data.join(kept).exists(), "{kept} was removed");
    }
    // And it still opens.
    let mut sealer = SoftwareSealer::open(&data.join("software-kek"), true).unwrap();
    SealedKeyFile::new(data.join("sealed-key"))
        .unseal(&mut sealer)
        .unwrap();
}

/// An enrolled TPM unit whose TPM cannot be reached (or a build without TPM support)
/// is not purged at all: removing the data without evicting the lock key would leave
/// the key recoverable from a copy of the disk.
#[test]
fn a_purge_that_cannot_reach_the_tpm_removes_nothing() {
    let m = Machine::new();
    let config = m.input("tpm.toml");
    std::fs::write(
        &config,
        "listen = \"10.0.0.2:8443\"\ndata_dir = \"/var/lib/outpost\"\n[store]\nid = \"s\"\n[security]\nsealer = \"tpm\"\ntcti = \"swtpm:host=127.0.0.1,port=1\"\n",
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
    // An enrolled envelope's header: format 2, TPM anchor.
    let data = m.path("/var/lib/outpost");
    let mut envelope = b"OPSEAL\x02\x02".to_vec();
    envelope.extend_from_slice(&[0u8; 64]);
    fsutil::write_private(&data.join("sealed-key"), &envelope).unwrap();
    let installed = m.listing(true);
    let out = m.run(&["uninstall", "--purge"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("port=1") && err.contains("lock key") && err.contains("Nothing was removed"),
        "{err}"
    );
    assert_eq!(
        m.listing(true),
        installed,
        "a refused purge changed the tree"
    );
}
