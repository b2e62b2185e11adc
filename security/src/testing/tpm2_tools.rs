//! The `tpm2-tools` proof: what another OS could do with an envelope's TPM share.
//!
//! [`tpm2_tools_unseal_share`] takes the TPM share out of an enrolled `sealed-key`
//! file and unseals it with the real command-line tools, never through this crate's TPM
//! code, reproducing the share's policy step by step:
//!
//! ```text
//! tpm2_createprimary -C o -g sha256 -G ecc256:aes128cfb -a <the anchor's attributes> -c primary.ctx
//! tpm2_load -C primary.ctx -u share.pub -r share.priv -c share.ctx
//! tpm2_startauthsession --policy-session -S session.ctx
//! tpm2_policypcr -S session.ctx -l sha256:<the blob's PCRs>
//! tpm2_policysecret -S session.ctx -c 0x81404f50          (the lock key)
//! tpm2_unseal -c share.ctx -p session:session.ctx -o secret
//! ```
//!
//! On an unlocked unit the tools recover the very `T` the crate unseals, which proves
//! the steps reproduce the policy faithfully; on a locked unit they fail, which proves
//! that a thief with another OS in the same boot state (same PCRs) gets nothing.

use std::path::Path;
use std::process::Command;

use super::Swtpm;
use crate::anchor::Purpose;
use crate::anchor::tpm::{LOCK_KEY_HANDLE, TpmBlob};
use crate::seal::{Envelope, SealerKind};

/// The Debian package that ships the tools.
const PACKAGE: &str = "tpm2-tools";

/// Runs one tool against `tcti` in `dir`; its stdout, or an error naming the command
/// and quoting its stderr.
fn run(tcti: &str, dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let (tool, rest) = args.split_first().ok_or("no command")?;
    let output = Command::new(tool)
        .args(rest)
        .env("TPM2TOOLS_TCTI", tcti)
        .env("TSS2_LOG", "all+none")
        .current_dir(dir)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{tool}` is not installed: install the Debian package {PACKAGE} (apt-get install -y {PACKAGE})")
            } else {
                format!("cannot run `{tool}`: {e}")
            }
        })?;
    if !output.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

/// [`tpm2_tools_unseal_share_at`] against `swtpm`.
pub fn tpm2_tools_unseal_share(swtpm: &Swtpm, envelope_path: &Path) -> Result<Vec<u8>, String> {
    tpm2_tools_unseal_share_at(&swtpm.tcti(), envelope_path)
}

/// Unseals the TPM share of the enrolled sealed key at `envelope_path` with the real
/// `tpm2-tools`, against the TPM at `tcti` (`swtpm:host=127.0.0.1,port=P`), in the
/// TPM's current PCR state.
///
/// # Contract
///
/// - `envelope_path` is a version-2 `sealed-key` made with the TPM anchor; it is only
///   read.
/// - `Ok(secret)` is the 32-byte TPM share `T`: the TPM released it to a program that
///   is not Outpost. `Err(message)` names the step that failed and quotes the tool's
///   stderr: on a locked unit the lock key is gone and `tpm2_policysecret` fails
///   (non-zero exit status), or `tpm2_unseal` does if a lock key made after the lock
///   sits at the handle.
/// - Nothing else may hold the TPM while it runs (swtpm serves one connection at a
///   time): drop TPM contexts first. Each step flushes what it loaded, and the helper
///   leaves no session or transient object behind, whatever happens.
/// - The tools come from the Debian package `tpm2-tools` (version 5); when they are
///   missing the error says so.
pub fn tpm2_tools_unseal_share_at(tcti: &str, envelope_path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(envelope_path)
        .map_err(|e| format!("cannot read {}: {e}", envelope_path.display()))?;
    let envelope = Envelope::from_bytes(&bytes).map_err(|e| e.to_string())?;
    if envelope.kind() != SealerKind::Tpm {
        return Err(format!(
            "{} was made with the {} anchor, not the TPM",
            envelope_path.display(),
            envelope.kind()
        ));
    }
    let blob =
        TpmBlob::parse(envelope.tpm_share_blob(), Purpose::Share).map_err(|e| e.to_string())?;
    let (public, private) = blob.tpm2b_areas();
    let pcrs: Vec<String> = (0..24)
        .filter(|i| blob.bitmap & (1 << i) != 0)
        .map(|i: u32| i.to_string())
        .collect();
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    std::fs::write(dir.path().join("share.pub"), public).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("share.priv"), private).map_err(|e| e.to_string())?;
    let d = dir.path();
    let lock_key = format!("{LOCK_KEY_HANDLE:#x}");
    let pcr_list = format!("sha256:{}", pcrs.join(","));
    let steps = || -> Result<Vec<u8>, String> {
        run(
            tcti,
            d,
            &[
                "tpm2_createprimary",
                "-C",
                "o",
                "-g",
                "sha256",
                "-G",
                "ecc256:aes128cfb",
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt",
                "-c",
                "primary.ctx",
            ],
        )?;
        // swtpm has no resource manager: free the object slot after each step (the
        // saved context stays loadable).
        run(tcti, d, &["tpm2_flushcontext", "-t"])?;
        run(
            tcti,
            d,
            &[
                "tpm2_load",
                "-C",
                "primary.ctx",
                "-u",
                "share.pub",
                "-r",
                "share.priv",
                "-c",
                "share.ctx",
            ],
        )?;
        run(tcti, d, &["tpm2_flushcontext", "-t"])?;
        run(
            tcti,
            d,
            &[
                "tpm2_startauthsession",
                "--policy-session",
                "-S",
                "session.ctx",
            ],
        )?;
        run(
            tcti,
            d,
            &["tpm2_policypcr", "-S", "session.ctx", "-l", &pcr_list],
        )?;
        run(
            tcti,
            d,
            &["tpm2_policysecret", "-S", "session.ctx", "-c", &lock_key],
        )?;
        run(
            tcti,
            d,
            &[
                "tpm2_unseal",
                "-c",
                "share.ctx",
                "-p",
                "session:session.ctx",
                "-o",
                "secret",
            ],
        )?;
        std::fs::read(d.join("secret")).map_err(|e| format!("tpm2_unseal wrote no secret: {e}"))
    };
    let result = steps();
    // Leave nothing loaded, whatever failed.
    let _ = run(tcti, d, &["tpm2_flushcontext", "-t"]);
    let _ = run(tcti, d, &["tpm2_flushcontext", "-s"]);
    if d.join("session.ctx").exists() {
        let _ = run(tcti, d, &["tpm2_flushcontext", "session.ctx"]);
    }
    result
}

impl Swtpm {
    /// Sets the TPM's dictionary-attack parameters with `tpm2_dictionarylockout` (the
    /// lockout authorization of a fresh swtpm is empty) and clears its failure count:
    /// `max_tries` failures lock DA-protected authorizations out, one failure is
    /// forgiven every `recovery_secs`, and `lockout_recovery_secs` after a failed
    /// lockout authorization.
    ///
    /// # Panics
    /// When `tpm2-tools` is missing or the TPM refuses.
    pub fn set_dictionary_attack(
        &self,
        max_tries: u32,
        recovery_secs: u32,
        lockout_recovery_secs: u32,
    ) {
        let dir = std::env::temp_dir();
        let (n, t, l) = (
            max_tries.to_string(),
            recovery_secs.to_string(),
            lockout_recovery_secs.to_string(),
        );
        let result = run(
            &self.tcti(),
            &dir,
            &[
                "tpm2_dictionarylockout",
                "-s",
                "-c",
                "-n",
                &n,
                "-t",
                &t,
                "-l",
                &l,
            ],
        );
        if let Err(e) = result {
            panic!("cannot set the dictionary-attack parameters: {e}");
        }
    }
}
