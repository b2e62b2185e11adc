//! Every envelope path and every refusal, with the software anchor.

use std::path::Path;

use super::*;
use crate::anchor::{PinKdf, SoftwareAnchor};
use crate::escrow::EscrowSecret;
use crate::seal::{KeyOrigin, SealedKeyFile, SoftwareSealer};

fn anchor(dir: &Path) -> SoftwareAnchor {
    let mut a = SoftwareAnchor::open(&dir.join("software-anchor"), true)
        .unwrap()
        .with_pin_kdf(PinKdf::FAST);
    a.provision().unwrap();
    a
}

fn pin(p: &str) -> SecretString {
    SecretString::from(p.to_owned())
}

/// HQ's two escrow secrets.
struct Hq {
    share: EscrowSecret,
    recovery: EscrowSecret,
}

impl Hq {
    fn new() -> Hq {
        Hq {
            share: EscrowSecret::generate(),
            recovery: EscrowSecret::generate(),
        }
    }

    fn keys(&self) -> HqEscrowKeys {
        HqEscrowKeys {
            share: self.share.public(),
            recovery: self.recovery.public(),
        }
    }
}

const BOTH: UnlockPolicy = UnlockPolicy {
    hq: true,
    pin: true,
};
const HQ_ONLY: UnlockPolicy = UnlockPolicy {
    hq: true,
    pin: false,
};
const PIN_ONLY: UnlockPolicy = UnlockPolicy {
    hq: false,
    pin: true,
};

fn hq_share(e: &Envelope, hq: &EscrowSecret) -> Result<SecondShare, SealError> {
    let (request, pending) = e.hq_share_request()?;
    let reply = hq.respond(&request).unwrap();
    e.finish_hq_share(pending, &reply)
}

fn recover(e: &Envelope, hq: &EscrowSecret) -> Result<DataKey, SealError> {
    let (request, pending) = e.recovery_request()?;
    let reply = hq.respond(&request).unwrap();
    e.finish_recovery(pending, &reply)
}

#[test]
fn tpm_only_opens_with_the_tpm_share_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, UnlockPolicy::TPM_ONLY, None, None).unwrap();
    assert!(e.needs().is_tpm_only());
    assert!(!e.has_recovery());
    let t = e.open_share(&mut a).unwrap();
    let n = e.tpm_only_share().unwrap();
    assert_eq!(e.unwrap(&t, &n).unwrap().expose(), key.expose());
    // No factor is enrolled, so none is offered.
    assert!(matches!(
        e.hq_share_request(),
        Err(SealError::FactorNotEnrolled(_))
    ));
    assert!(matches!(
        e.pin_share(&mut a, &pin("1234")),
        Err(SealError::FactorNotEnrolled(_))
    ));
    assert!(matches!(
        e.recovery_request(),
        Err(SealError::FactorNotEnrolled(_))
    ));
}

#[test]
fn hq_share_opens_and_another_hq_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, HQ_ONLY, Some(&hq.keys()), None).unwrap();
    assert!(!e.needs().is_tpm_only());
    let t = e.open_share(&mut a).unwrap();
    let n = hq_share(&e, &hq.share).unwrap();
    assert_eq!(e.unwrap(&t, &n).unwrap().expose(), key.expose());
    // Another HQ, and HQ's recovery key answering the share request, give nothing.
    assert!(matches!(
        hq_share(&e, &EscrowSecret::generate()),
        Err(SealError::WrongKey)
    ));
    assert!(matches!(
        hq_share(&e, &hq.recovery),
        Err(SealError::WrongKey)
    ));
    // The TPM-only path is refused: the policy names a factor.
    assert!(matches!(
        e.tpm_only_share(),
        Err(SealError::FactorNotEnrolled(_))
    ));
    assert!(matches!(
        e.pin_share(&mut a, &pin("1234")),
        Err(SealError::FactorNotEnrolled(_))
    ));
}

#[test]
fn the_pin_opens_and_a_wrong_one_is_wrong_pin() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, PIN_ONLY, None, Some(&pin("482916"))).unwrap();
    let t = e.open_share(&mut a).unwrap();
    assert!(matches!(
        e.pin_share(&mut a, &pin("000000")),
        Err(SealError::WrongPin)
    ));
    let n = e.pin_share(&mut a, &pin("482916")).unwrap();
    assert_eq!(e.unwrap(&t, &n).unwrap().expose(), key.expose());
    assert!(matches!(
        e.hq_share_request(),
        Err(SealError::FactorNotEnrolled(_))
    ));
}

#[test]
fn either_factor_suffices_when_both_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, BOTH, Some(&hq.keys()), Some(&pin("7391"))).unwrap();
    let t = e.open_share(&mut a).unwrap();
    let by_hq = hq_share(&e, &hq.share).unwrap();
    let by_pin = e.pin_share(&mut a, &pin("7391")).unwrap();
    assert_eq!(e.unwrap(&t, &by_hq).unwrap().expose(), key.expose());
    assert_eq!(e.unwrap(&t, &by_pin).unwrap().expose(), key.expose());
}

#[test]
fn wrong_shares_are_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let e1 = Envelope::create(
        &mut a,
        &DataKey::generate(),
        HQ_ONLY,
        Some(&hq.keys()),
        None,
    )
    .unwrap();
    let e2 = Envelope::create(
        &mut a,
        &DataKey::generate(),
        HQ_ONLY,
        Some(&hq.keys()),
        None,
    )
    .unwrap();
    let t1 = e1.open_share(&mut a).unwrap();
    let t2 = e2.open_share(&mut a).unwrap();
    let n1 = hq_share(&e1, &hq.share).unwrap();
    assert!(matches!(e1.unwrap(&t2, &n1), Err(SealError::WrongKey)));
    assert!(matches!(
        e1.unwrap(&t1, &SecondShare(Secret::from_bytes([0; 32]))),
        Err(SealError::WrongKey)
    ));
    // A pending request belongs to its box.
    let (_, pending) = e1.recovery_request().unwrap();
    let (request, _) = e1.hq_share_request().unwrap();
    let reply = hq.share.respond(&request).unwrap();
    assert!(matches!(
        e1.finish_hq_share(pending, &reply),
        Err(SealError::Config(_))
    ));
}

#[test]
fn inconsistent_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let key = DataKey::generate();
    let hq = Hq::new();
    let cases: Vec<(
        UnlockPolicy,
        Option<HqEscrowKeys>,
        Option<SecretString>,
        &str,
    )> = vec![
        (HQ_ONLY, None, None, "hq without keys"),
        (PIN_ONLY, None, None, "pin without a PIN"),
        (
            UnlockPolicy::TPM_ONLY,
            None,
            Some(pin("1234")),
            "a PIN the policy does not take",
        ),
        (PIN_ONLY, None, Some(pin("123")), "a PIN too short"),
        (PIN_ONLY, None, Some(pin(&"9".repeat(65))), "a PIN too long"),
        (BOTH, Some(hq.keys()), None, "both without a PIN"),
    ];
    for (policy, keys, p, what) in cases {
        assert!(
            matches!(
                Envelope::create(&mut a, &key, policy, keys.as_ref(), p.as_ref()),
                Err(SealError::Config(_))
            ),
            "{what} must be refused"
        );
    }
    // An unprovisioned anchor seals nothing.
    let other = tempfile::tempdir().unwrap();
    let mut raw = SoftwareAnchor::open(&other.path().join("software-anchor"), true).unwrap();
    assert!(matches!(
        Envelope::create(&mut raw, &key, UnlockPolicy::TPM_ONLY, None, None),
        Err(SealError::NotProvisioned)
    ));
}

#[test]
fn escrow_keys_without_the_hq_factor_give_recovery_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, PIN_ONLY, Some(&hq.keys()), Some(&pin("5555"))).unwrap();
    assert!(e.has_recovery());
    assert!(matches!(
        e.hq_share_request(),
        Err(SealError::FactorNotEnrolled(_))
    ));
    assert_eq!(recover(&e, &hq.recovery).unwrap().expose(), key.expose());
}

#[test]
fn after_a_lock_only_recovery_opens_and_a_reseal_brings_the_unit_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, BOTH, Some(&hq.keys()), Some(&pin("2580"))).unwrap();
    a.lock().unwrap();
    assert!(matches!(
        e.open_share(&mut a),
        Err(SealError::Locked { .. })
    ));
    assert!(matches!(
        e.pin_share(&mut a, &pin("2580")),
        Err(SealError::Locked { .. })
    ));
    // The share key cannot recover; the recovery key can.
    assert!(matches!(recover(&e, &hq.share), Err(SealError::WrongKey)));
    let recovered = recover(&e, &hq.recovery).unwrap();
    assert_eq!(recovered.expose(), key.expose());
    // Reseal without the PIN (HQ's recovery came while nobody was at the till): the
    // PIN share is unset until the manager enters it again; HQ's share works meanwhile,
    // and the unset state survives the file.
    let pinless = e.reseal(&mut a, &recovered, None).unwrap();
    assert_eq!(pinless.needs(), BOTH);
    assert!(!pinless.pin_ready());
    let pinless = Envelope::from_bytes(&pinless.to_bytes().unwrap()).unwrap();
    assert!(!pinless.pin_ready());
    assert!(matches!(
        pinless.pin_share(&mut a, &pin("2580")),
        Err(SealError::FactorNotEnrolled(_))
    ));
    let t = pinless.open_share(&mut a).unwrap();
    let n = hq_share(&pinless, &hq.share).unwrap();
    assert_eq!(pinless.unwrap(&t, &n).unwrap().expose(), key.expose());
    // The PIN entered again (a new one changes it).
    let fresh = pinless
        .reseal(&mut a, &recovered, Some(&pin("0852")))
        .unwrap();
    assert!(fresh.pin_ready());
    assert_eq!(fresh.needs(), BOTH);
    let t = fresh.open_share(&mut a).unwrap();
    assert!(matches!(
        fresh.pin_share(&mut a, &pin("2580")),
        Err(SealError::WrongPin)
    ));
    let n = fresh.pin_share(&mut a, &pin("0852")).unwrap();
    assert_eq!(fresh.unwrap(&t, &n).unwrap().expose(), key.expose());
    let n = hq_share(&fresh, &hq.share).unwrap();
    assert_eq!(fresh.unwrap(&t, &n).unwrap().expose(), key.expose());
    assert_eq!(
        recover(&fresh, &hq.recovery).unwrap().expose(),
        key.expose()
    );
    // The old envelope stays dead.
    assert!(matches!(
        e.open_share(&mut a),
        Err(SealError::Locked { .. })
    ));
}

#[test]
fn reseal_refuses_a_key_that_is_not_the_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let e = Envelope::create(
        &mut a,
        &DataKey::generate(),
        UnlockPolicy::TPM_ONLY,
        None,
        None,
    )
    .unwrap();
    assert!(matches!(
        e.reseal(&mut a, &DataKey::generate(), None),
        Err(SealError::WrongKey)
    ));
}

#[test]
fn a_header_pointing_at_another_hq_is_caught_by_the_key_mac() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let thief = Hq::new();
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, HQ_ONLY, Some(&hq.keys()), None).unwrap();
    // Swap in the thief's recovery key: every box refuses, and so does a reseal.
    let mut forged = e.clone();
    forged.recovery.as_mut().unwrap().public = thief.recovery.public();
    let t = forged.open_share(&mut a).unwrap();
    assert!(matches!(
        hq_share(&forged, &hq.share),
        Err(SealError::WrongKey)
    ));
    let n = hq_share(&e, &hq.share).unwrap();
    assert!(matches!(forged.unwrap(&t, &n), Err(SealError::WrongKey)));
    assert!(matches!(
        forged.reseal(&mut a, &key, None),
        Err(SealError::WrongKey)
    ));
}

#[test]
fn bytes_round_trip_through_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, BOTH, Some(&hq.keys()), Some(&pin("9999"))).unwrap();
    let path = dir.path().join("sealed-key");
    e.write(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let back = Envelope::read(&path).unwrap();
    assert_eq!(back.to_bytes().unwrap(), e.to_bytes().unwrap());
    assert_eq!(back.kind(), SealerKind::Software);
    let t = back.open_share(&mut a).unwrap();
    let n = back.pin_share(&mut a, &pin("9999")).unwrap();
    assert_eq!(back.unwrap(&t, &n).unwrap().expose(), key.expose());
    let file = SealedKeyFile::new(&path);
    assert_eq!(file.format_version().unwrap(), Some(ENVELOPE_VERSION));
    assert_eq!(file.sealed_kind().unwrap(), Some(SealerKind::Software));
    // The v1 reader names the envelope instead of calling it garbage.
    let mut sealer = SoftwareSealer::open(&dir.path().join("software-kek"), true).unwrap();
    assert!(matches!(
        file.unseal(&mut sealer),
        Err(SealError::Malformed(m)) if m.contains("enrolled envelope")
    ));
    assert!(matches!(
        Envelope::read(&dir.path().join("none")),
        Err(SealError::Missing(_))
    ));
}

#[test]
fn malformed_files_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let good = Envelope::create(
        &mut a,
        &DataKey::generate(),
        BOTH,
        Some(&hq.keys()),
        Some(&pin("1111")),
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    let with = |at: usize, value: u8| {
        let mut b = good.clone();
        b[at] = value;
        b
    };
    let mut cases: Vec<(Vec<u8>, String)> = vec![
        (vec![], "empty".into()),
        (with(0, b'X'), "bad magic".into()),
        (with(6, 1), "version 1".into()),
        (with(6, 9), "future version".into()),
        (with(7, 7), "unknown anchor kind".into()),
        (with(8, 0b111), "unknown policy bits".into()),
        (with(8, 0b10), "HQ box without the HQ factor".into()),
        (with(9, 0b111), "unknown escrow bits".into()),
        (with(10, 0xff), "invalid escrow point".into()),
        (
            {
                let mut b = good.clone();
                b.push(0);
                b
            },
            "trailing byte".into(),
        ),
        (vec![0; MAX_BLOB_LEN + 1], "oversized".into()),
    ];
    for len in 0..good.len() {
        cases.push((good[..len].to_vec(), format!("truncated to {len}")));
    }
    for (bytes, what) in cases {
        assert!(
            matches!(Envelope::from_bytes(&bytes), Err(SealError::Malformed(_))),
            "{what} must be malformed"
        );
    }
    assert!(matches!(
        Envelope::from_bytes(&with(6, 1)),
        Err(SealError::Malformed(m)) if m.contains("not enrolled")
    ));
}

#[test]
fn tampered_bytes_do_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let key = DataKey::generate();
    let e = Envelope::create(&mut a, &key, UnlockPolicy::TPM_ONLY, None, None).unwrap();
    let bytes = e.to_bytes().unwrap();
    // The key MAC (right after the 10-byte header), then the wrapped key's last byte.
    for at in [10, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[at] ^= 1;
        let forged = Envelope::from_bytes(&b).unwrap();
        let t = forged.open_share(&mut a).unwrap();
        let n = forged.tpm_only_share().unwrap();
        assert!(
            matches!(forged.unwrap(&t, &n), Err(SealError::WrongKey)),
            "byte {at}"
        );
    }
    // An envelope claiming the TPM anchor is refused by the software one.
    let mut b = bytes.clone();
    b[7] = 2;
    assert!(matches!(
        Envelope::from_bytes(&b).unwrap().open_share(&mut a),
        Err(SealError::WrongSealer { .. })
    ));
}

#[test]
fn enrolment_converts_a_v1_file_keeping_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = SealedKeyFile::new(dir.path().join("sealed-key"));
    let mut sealer = SoftwareSealer::open(&dir.path().join("software-kek"), true).unwrap();
    let (key, origin) = file.load_or_create(&mut sealer).unwrap();
    assert_eq!(origin, KeyOrigin::Created);
    assert_eq!(file.format_version().unwrap(), Some(1));
    assert!(matches!(
        Envelope::read(file.path()),
        Err(SealError::Malformed(m)) if m.contains("not enrolled")
    ));
    // Enrol: unseal v1, provision, create, write over the same path.
    let k = file.unseal(&mut sealer).unwrap();
    let mut a = anchor(dir.path());
    Envelope::create(&mut a, &k, UnlockPolicy::TPM_ONLY, None, None)
        .unwrap()
        .write(file.path())
        .unwrap();
    assert_eq!(file.format_version().unwrap(), Some(ENVELOPE_VERSION));
    let e = Envelope::read(file.path()).unwrap();
    let t = e.open_share(&mut a).unwrap();
    let n = e.tpm_only_share().unwrap();
    assert_eq!(e.unwrap(&t, &n).unwrap().expose(), key.expose());
}

#[test]
fn nothing_secret_in_debug_or_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = anchor(dir.path());
    let hq = Hq::new();
    let key = DataKey::from_bytes([0x5a; 32]);
    let e = Envelope::create(&mut a, &key, HQ_ONLY, Some(&hq.keys()), None).unwrap();
    let t = e.open_share(&mut a).unwrap();
    let n = hq_share(&e, &hq.share).unwrap();
    let (_, pending) = e.hq_share_request().unwrap();
    let shown = format!("{e:?} {t:?} {n:?} {pending:?}");
    assert!(!shown.contains("5a5a"), "{shown}");
    assert_eq!(format!("{t:?}"), "TpmShare(..)");
    assert_eq!(format!("{n:?}"), "SecondShare(..)");
    let bytes = e.to_bytes().unwrap();
    assert!(!bytes.windows(32).any(|w| w == key.expose()));
    assert!(!bytes.windows(32).any(|w| w == t.expose()));
}
