//! The TPM sealer against a real software TPM (swtpm), one per test.

use outpost_security::seal::{
    DataKey, KeyOrigin, SealError, SealedKeyFile, Sealer, TpmConfig, TpmSealer,
};

use crate::helpers::Swtpm;

fn sealer(tpm: &Swtpm, pcrs: &[u8]) -> TpmSealer {
    TpmSealer::new(TpmConfig {
        tcti: tpm.tcti(),
        pcrs: pcrs.to_vec(),
        max_attempts: 3,
    })
    .unwrap()
}

#[test]
fn seal_and_unseal_through_the_sealed_key_file() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let file = SealedKeyFile::new(dir.path().join("sealed-key"));
    let (created, origin) = file.load_or_create(&mut sealer(&tpm, &[7, 16])).unwrap();
    assert_eq!(origin, KeyOrigin::Created);
    let (unsealed, origin) = file.load_or_create(&mut sealer(&tpm, &[7, 16])).unwrap();
    assert_eq!(origin, KeyOrigin::Unsealed);
    assert_eq!(created.expose(), unsealed.expose());
    assert_eq!(file.sealed_pcrs().unwrap(), Some(vec![7, 16]));
    let blob = std::fs::read(file.path()).unwrap();
    assert!(
        !blob.windows(32).any(|w| w == created.expose()),
        "the key is not in the blob"
    );
}

#[test]
fn extending_a_sealed_pcr_makes_unseal_fail() {
    let tpm = Swtpm::start();
    let mut s = sealer(&tpm, &[16]);
    let key = DataKey::generate();
    let blob = s.seal(&key).unwrap();
    assert_eq!(s.unseal(&blob).unwrap().expose(), key.expose());
    tpm.extend_pcr(16);
    assert!(matches!(s.unseal(&blob), Err(SealError::PolicyMismatch)));
}

#[test]
fn extending_a_pcr_outside_the_policy_does_not_matter() {
    let tpm = Swtpm::start();
    let mut s = sealer(&tpm, &[16]);
    let key = DataKey::generate();
    let blob = s.seal(&key).unwrap();
    tpm.extend_pcr(10);
    assert_eq!(s.unseal(&blob).unwrap().expose(), key.expose());
}

#[test]
fn a_blob_sealed_on_one_tpm_fails_on_another() {
    let a = Swtpm::start();
    let b = Swtpm::start();
    let blob = sealer(&a, &[7]).seal(&DataKey::generate()).unwrap();
    let err = sealer(&b, &[7]).unseal(&blob).unwrap_err();
    assert!(
        matches!(err, SealError::WrongKey | SealError::Tpm { .. }),
        "{err}"
    );
}

#[test]
fn a_data_dir_copied_to_another_tpm_cannot_be_read() {
    let a = Swtpm::start();
    let b = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let file = SealedKeyFile::new(dir.path().join("sealed-key"));
    file.load_or_create(&mut sealer(&a, &[7])).unwrap();
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(file.path(), copy.path().join("sealed-key")).unwrap();
    let copied = SealedKeyFile::new(copy.path().join("sealed-key"));
    assert!(copied.load_or_create(&mut sealer(&b, &[7])).is_err());
    assert!(
        copied.exists(),
        "a blob that does not open is never replaced"
    );
}

#[test]
fn bad_tpm_blobs_are_refused() {
    let tpm = Swtpm::start();
    let mut s = sealer(&tpm, &[7]);
    let good = s.seal(&DataKey::generate()).unwrap();
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    assert!(matches!(s.unseal(&truncated), Err(SealError::Malformed(_))));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(s.unseal(&trailing), Err(SealError::Malformed(_))));
    // A flipped byte in the private area fails the TPM's integrity check.
    let mut flipped = good.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0xff;
    assert!(s.unseal(&flipped).is_err());
    // A software blob is not a TPM blob.
    let mut software = good.clone();
    software[7] = 1;
    assert!(matches!(
        s.unseal(&software),
        Err(SealError::WrongSealer { .. })
    ));
}

#[test]
fn unreachable_tpm_is_a_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = TpmSealer::new(TpmConfig {
        tcti: format!("swtpm:host=127.0.0.1,port={port}"),
        ..TpmConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, SealError::Tpm { op: "connect", .. }), "{err}");
    let err = TpmSealer::new(TpmConfig {
        tcti: "nonsense".into(),
        ..TpmConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, SealError::Config(_)), "{err}");
}

/// Start-up unseal time (goal < 1 s). Run:
/// `cargo test -p outpost-security --features tpm --release --test security -- --ignored --nocapture unseal_time`
#[test]
#[ignore]
fn unseal_time_on_swtpm() {
    let tpm = Swtpm::start();
    let mut s = sealer(&tpm, &[7]);
    let blob = s.seal(&DataKey::generate()).unwrap();
    let mut times = Vec::new();
    for _ in 0..21 {
        let start = std::time::Instant::now();
        s.unseal(&blob).unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "unseal on swtpm: median {:?}, min {:?}, max {:?} (21 runs, fresh TPM context each)",
        times[10], times[0], times[20]
    );
}
