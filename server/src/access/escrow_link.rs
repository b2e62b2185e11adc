//! The HQ link as the access layer needs it: the blinded escrow exchange of an enrolled
//! unit's sealed key. `hq` implements it over gRPC; this layer only sees the trait, so
//! it does not depend on the layer above it.

use std::fmt;

/// Which of HQ's escrow secrets an exchange asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscrowPurpose {
    /// The second share that, with the TPM share, releases the data key at start.
    Share,
    /// The data key of a unit locked in its TPM (HQ decides whether to answer).
    Recovery,
}

impl fmt::Display for EscrowPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EscrowPurpose::Share => "share",
            EscrowPurpose::Recovery => "recovery",
        })
    }
}

/// HQ's answer.
#[derive(Debug, Clone, Default)]
pub struct EscrowAnswer {
    /// The blinded point times HQ's escrow secret.
    pub point: [u8; 32],
    /// With a recovery: a fresh signed lease (empty when HQ sent none).
    pub signed_lease: Vec<u8>,
    /// With a recovery: a signed unlock (empty when HQ sent none).
    pub signed_command: Vec<u8>,
}

/// Why an exchange gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EscrowLinkError {
    /// HQ could not be reached (no HQ URL, network down, HQ down): try again later.
    #[error("HQ is not reachable for the key exchange: {0}")]
    Unreachable(String),
    /// HQ refused (a unit it knows to be stolen, an unknown unit).
    #[error("HQ refused the key exchange: {0}")]
    Refused(String),
}

/// The exchange with HQ.
#[async_trait::async_trait]
pub trait EscrowLink: Send + Sync {
    /// Sends `point` for `purpose` on behalf of `store` / `unit`. Cancel-safe: an exchange
    /// changes nothing on either side.
    async fn exchange(
        &self,
        store: &str,
        unit: &str,
        purpose: EscrowPurpose,
        point: [u8; 32],
    ) -> Result<EscrowAnswer, EscrowLinkError>;
}
