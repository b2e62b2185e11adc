//! The TPM trust anchor and the enrolled envelope against a real software TPM (swtpm),
//! one per test, and the tpm2-tools proof that a locked share does not unseal.

use outpost_security::anchor::{Anchor, Secret, TpmAnchor};
use outpost_security::escrow::EscrowSecret;
use outpost_security::seal::{
    DataKey, Envelope, HqEscrowKeys, SealError, SecondShare, TpmConfig, UnlockPolicy,
};
use outpost_security::testing::tpm2_tools_unseal_share;
use secrecy::SecretString;

use crate::helpers::Swtpm;

fn anchor(tpm: &Swtpm, pcrs: &[u8]) -> TpmAnchor {
    TpmAnchor::new(TpmConfig {
        tcti: tpm.tcti(),
        pcrs: pcrs.to_vec(),
        max_attempts: 3,
    })
    .unwrap()
}

fn provisioned(tpm: &Swtpm) -> TpmAnchor {
    let mut a = anchor(tpm, &[7, 16]);
    a.provision().unwrap();
    a
}

fn pin(p: &str) -> SecretString {
    SecretString::from(p.to_owned())
}

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

    /// HQ's side of the network share, done here with the real escrow secret.
    fn share_for(&self, e: &Envelope) -> Result<SecondShare, SealError> {
        let (request, pending) = e.hq_share_request()?;
        e.finish_hq_share(pending, &self.share.respond(&request).unwrap())
    }

    fn recover(&self, e: &Envelope) -> Result<DataKey, SealError> {
        let (request, pending) = e.recovery_request()?;
        e.finish_recovery(pending, &self.recovery.respond(&request).unwrap())
    }
}

#[test]
fn provisioning_is_idempotent_and_shares_round_trip() {
    let tpm = Swtpm::start();
    let mut a = anchor(&tpm, &[7]);
    assert!(!a.is_provisioned().unwrap());
    assert!(matches!(a.lock_count(), Err(SealError::NotProvisioned)));
    assert!(matches!(
        a.seal_share(&Secret::generate()),
        Err(SealError::NotProvisioned)
    ));
    a.provision().unwrap();
    assert!(a.is_provisioned().unwrap());
    let count = a.lock_count().unwrap();
    let epoch = a.epoch().unwrap();
    a.provision().unwrap();
    assert_eq!(a.lock_count().unwrap(), count, "provision keeps the counts");
    assert_eq!(a.epoch().unwrap(), epoch);
    let secret = Secret::generate();
    let blob = a.seal_share(&secret).unwrap();
    assert!(!blob.windows(32).any(|w| w == secret.expose()));
    assert_eq!(a.unseal_share(&blob).unwrap().expose(), secret.expose());
}

#[test]
fn a_lock_kills_shares_sealed_before_it_for_good() {
    let mut tpm = Swtpm::start();
    let mut a = provisioned(&tpm);
    let secret = Secret::generate();
    let blob = a.seal_share(&secret).unwrap();
    let before = a.lock_count().unwrap();
    assert_eq!(a.lock().unwrap(), before + 1);
    assert_eq!(a.lock_count().unwrap(), before + 1);
    let err = a.unseal_share(&blob).unwrap_err();
    assert!(
        matches!(err, SealError::Locked { sealed_at, now } if sealed_at == before && now == before + 1),
        "{err}"
    );
    // A fresh anchor (fresh TPM contexts) sees the same.
    assert!(matches!(
        provisioned(&tpm).unseal_share(&blob),
        Err(SealError::Locked { .. })
    ));
    // A share sealed after the lock works.
    let after = a.seal_share(&secret).unwrap();
    assert_eq!(a.unseal_share(&after).unwrap().expose(), secret.expose());
    // After a reboot: the old share is still dead, the new one still opens.
    drop(a);
    tpm.restart();
    let mut a = anchor(&tpm, &[7, 16]);
    assert!(a.is_provisioned().unwrap());
    assert_eq!(a.lock_count().unwrap(), before + 1);
    assert!(matches!(
        a.unseal_share(&blob),
        Err(SealError::Locked { .. })
    ));
    assert_eq!(a.unseal_share(&after).unwrap().expose(), secret.expose());
}

/// `outpost-install uninstall --purge`: the erase kills every share sealed so far
/// (a copy of the blob kept elsewhere included), leaves the TPM unprovisioned so a
/// fresh install starts afresh, and a new enrolment does not revive the old shares.
#[test]
fn erase_kills_every_share_and_unprovisions_the_tpm() {
    let mut tpm = Swtpm::start();
    let mut a = provisioned(&tpm);
    let secret = Secret::generate();
    let blob = a.seal_share(&secret).unwrap();
    let pin_blob = a.seal_pin(&secret, &pin("2468")).unwrap();
    assert!(a.erase().unwrap());
    assert!(!a.is_provisioned().unwrap());
    assert!(
        !outpost_security::anchor::open_tpm(&tpm.tcti())
            .unwrap()
            .erase()
            .unwrap(),
        "a second erase finds nothing"
    );
    assert!(a.unseal_share(&blob).is_err());
    // Provisioned again (a new install): the old shares stay dead, even after a reboot.
    a.provision().unwrap();
    assert!(matches!(
        a.unseal_share(&blob),
        Err(SealError::Locked { .. })
    ));
    assert!(a.unseal_pin(&pin_blob, &pin("2468")).is_err());
    let fresh = a.seal_share(&secret).unwrap();
    drop(a);
    tpm.restart();
    let mut a = anchor(&tpm, &[7, 16]);
    assert!(a.unseal_share(&blob).is_err());
    assert_eq!(a.unseal_share(&fresh).unwrap().expose(), secret.expose());
}

#[test]
fn a_changed_boot_state_is_a_policy_mismatch_not_a_lock() {
    let tpm = Swtpm::start();
    let mut a = provisioned(&tpm);
    let blob = a.seal_share(&Secret::generate()).unwrap();
    tpm.extend_pcr(16);
    assert!(matches!(
        a.unseal_share(&blob),
        Err(SealError::PolicyMismatch)
    ));
}

#[test]
fn a_share_from_another_tpm_does_not_open() {
    let a_tpm = Swtpm::start();
    let b_tpm = Swtpm::start();
    let blob = provisioned(&a_tpm).seal_share(&Secret::generate()).unwrap();
    let err = provisioned(&b_tpm).unseal_share(&blob).unwrap_err();
    // Not reported as a lock (B's lock key is not the one the blob names either): the
    // blob fails B's integrity check.
    assert!(matches!(err, SealError::WrongKey), "{err}");
}

#[test]
fn the_epoch_only_goes_forward_across_a_reboot() {
    let mut tpm = Swtpm::start();
    let mut a = provisioned(&tpm);
    let e = a.epoch().unwrap();
    a.advance_epoch(e).unwrap();
    a.advance_epoch(e + 2).unwrap();
    assert_eq!(a.epoch().unwrap(), e + 2);
    assert!(matches!(
        a.advance_epoch(e + 1),
        Err(SealError::EpochBackwards { current, requested }) if current == e + 2 && requested == e + 1
    ));
    drop(a);
    tpm.restart();
    let mut a = anchor(&tpm, &[7]);
    assert_eq!(a.epoch().unwrap(), e + 2);
    assert!(matches!(
        a.advance_epoch(e),
        Err(SealError::EpochBackwards { .. })
    ));
}

#[test]
fn the_clock_never_goes_back() {
    let mut tpm = Swtpm::start();
    let mut a = provisioned(&tpm);
    let t1 = a.clock_ms().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t2 = a.clock_ms().unwrap();
    assert!(t2 > t1, "{t1} then {t2}");
    drop(a);
    tpm.restart();
    let t3 = anchor(&tpm, &[7]).clock_ms().unwrap();
    assert!(t3 >= t2, "{t2} then, after a reboot, {t3}");
}

#[test]
fn the_pin_opens_wrong_ones_count_and_the_tpm_locks_them_out() {
    let tpm = Swtpm::start();
    // Two failures lock out; one is forgiven per 10 minutes (longer than the test).
    tpm.set_dictionary_attack(2, 600, 600);
    let mut a = provisioned(&tpm);
    let secret = Secret::generate();
    let blob = a.seal_pin(&secret, &pin("4711")).unwrap();
    assert_eq!(
        a.unseal_pin(&blob, &pin("4711")).unwrap().expose(),
        secret.expose()
    );
    let lockout = a.pin_lockout().unwrap();
    assert_eq!(
        (lockout.failed, lockout.max_tries, lockout.recovery_secs),
        (0, 2, 600)
    );
    assert!(matches!(
        a.unseal_pin(&blob, &pin("0000")),
        Err(SealError::WrongPin)
    ));
    assert_eq!(a.pin_lockout().unwrap().failed, 1);
    assert!(matches!(
        a.unseal_pin(&blob, &pin("1111")),
        Err(SealError::WrongPin)
    ));
    assert!(a.pin_lockout().unwrap().is_locked_out());
    // Locked out: even the right PIN is refused, and the error says for how long.
    assert!(matches!(
        a.unseal_pin(&blob, &pin("4711")),
        Err(SealError::PinLockedOut {
            retry_after_secs: Some(600)
        })
    ));
    // Shares without a PIN are noDA, and so is the anchor's primary key: the lockout
    // does not stop the unit from loading and opening its TPM share (with a
    // DA-protected primary, TPM2_Load itself answered TPM_RC_LOCKOUT here).
    let share = a.seal_share(&secret).unwrap();
    assert_eq!(a.unseal_share(&share).unwrap().expose(), secret.expose());
}

#[test]
fn a_pin_share_dies_with_the_lock() {
    let tpm = Swtpm::start();
    let mut a = provisioned(&tpm);
    let blob = a.seal_pin(&Secret::generate(), &pin("2468")).unwrap();
    a.lock().unwrap();
    assert!(matches!(
        a.unseal_pin(&blob, &pin("2468")),
        Err(SealError::Locked { .. })
    ));
}

#[test]
fn identity_is_unaffected_by_the_lock_but_bound_to_the_boot_state() {
    let tpm = Swtpm::start();
    let mut a = provisioned(&tpm);
    let secret = Secret::generate();
    let blob = a.seal_identity(&secret).unwrap();
    a.lock().unwrap();
    assert_eq!(a.unseal_identity(&blob).unwrap().expose(), secret.expose());
    assert_eq!(
        provisioned(&tpm).unseal_identity(&blob).unwrap().expose(),
        secret.expose()
    );
    tpm.extend_pcr(16);
    assert!(matches!(
        a.unseal_identity(&blob),
        Err(SealError::PolicyMismatch)
    ));
}

#[test]
fn a_full_envelope_on_the_tpm_hq_pin_lock_recovery_reseal() {
    let tpm = Swtpm::start();
    let hq = Hq::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealed-key");
    let key = DataKey::generate();
    let both = UnlockPolicy {
        hq: true,
        pin: true,
    };
    let mut a = provisioned(&tpm);
    Envelope::create(&mut a, &key, both, Some(&hq.keys()), Some(&pin("13579")))
        .unwrap()
        .write(&path)
        .unwrap();
    let e = Envelope::read(&path).unwrap();
    let t = e.open_share(&mut a).unwrap();
    let by_hq = hq.share_for(&e).unwrap();
    assert_eq!(e.unwrap(&t, &by_hq).unwrap().expose(), key.expose());
    let by_pin = e.pin_share(&mut a, &pin("13579")).unwrap();
    assert_eq!(e.unwrap(&t, &by_pin).unwrap().expose(), key.expose());
    // Lock: the TPM share and the PIN share are dead; HQ's recovery still opens.
    a.lock().unwrap();
    assert!(matches!(
        e.open_share(&mut a),
        Err(SealError::Locked { .. })
    ));
    assert!(matches!(
        e.pin_share(&mut a, &pin("13579")),
        Err(SealError::Locked { .. })
    ));
    let recovered = hq.recover(&e).unwrap();
    assert_eq!(recovered.expose(), key.expose());
    // Reseal under the current lock, then the unit opens normally again.
    let fresh = e.reseal(&mut a, &recovered, Some(&pin("13579"))).unwrap();
    fresh.write(&path).unwrap();
    let fresh = Envelope::read(&path).unwrap();
    let t = fresh.open_share(&mut provisioned(&tpm)).unwrap();
    let n = hq.share_for(&fresh).unwrap();
    assert_eq!(fresh.unwrap(&t, &n).unwrap().expose(), key.expose());
    let n = fresh.pin_share(&mut a, &pin("13579")).unwrap();
    assert_eq!(fresh.unwrap(&t, &n).unwrap().expose(), key.expose());
}

/// Issue 14, done-when (d): on a locked unit, unsealing `sealed-key` directly with
/// tpm2-tools in the same PCR state fails.
#[test]
fn tpm2_tools_unseal_the_share_before_a_lock_and_not_after() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealed-key");
    let mut a = provisioned(&tpm);
    let e = Envelope::create(
        &mut a,
        &DataKey::generate(),
        UnlockPolicy::TPM_ONLY,
        None,
        None,
    )
    .unwrap();
    e.write(&path).unwrap();
    let t = e.open_share(&mut a).unwrap();
    // The tools reproduce the policy: they recover the very T the crate unseals.
    let by_tools = tpm2_tools_unseal_share(&tpm, &path).unwrap();
    assert_eq!(by_tools, t.expose().to_vec());
    a.lock().unwrap();
    let err = tpm2_tools_unseal_share(&tpm, &path).unwrap_err();
    assert!(err.contains("tpm2_policysecret"), "{err}");
    // A new lock key (made by a share sealed after the lock) does not revive it either.
    let after = Envelope::create(
        &mut a,
        &DataKey::generate(),
        UnlockPolicy::TPM_ONLY,
        None,
        None,
    )
    .unwrap();
    let err = tpm2_tools_unseal_share(&tpm, &path).unwrap_err();
    assert!(err.contains("tpm2_unseal"), "{err}");
    // ...while the share sealed after the lock does unseal with the tools.
    let after_path = dir.path().join("sealed-key-after");
    after.write(&after_path).unwrap();
    assert_eq!(
        tpm2_tools_unseal_share(&tpm, &after_path).unwrap(),
        after.open_share(&mut a).unwrap().expose().to_vec()
    );
}
