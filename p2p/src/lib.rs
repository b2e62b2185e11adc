//! The Outpost store mesh: the units of one store find each other on the LAN, admit
//! only the units on the HQ-signed store roster, let exactly one of them download each
//! artifact from origin, and share it among themselves in verified chunks.
//!
//! Start a unit with [`start`]; the returned [`Client`] is cheap to clone and talks to
//! the one task that owns the libp2p swarm. The protocol is written down in
//! `docs/p2p.md`.
//!
//! # Layout
//! - [`chunks`]: BLAKE3 chunk lists, per-chunk verification, bitfields (pure).
//! - [`store`]: the on-disk content store (chunks at their offsets, persisted bitfields,
//!   reference counts, garbage collection).
//! - [`roster`]: the HQ-signed store roster.
//! - [`offer`]: HQ's offers of artifacts and HQ's signature on them, checked wherever
//!   an offer enters a unit.
//! - [`keyfile`]: an identity key in a plain owner-only file (tests, demos, moving an
//!   old unit's key); a server passes the key pair in [`P2pConfig::keypair`].
//! - [`admission`]: the behaviour that refuses non-members and banned peers.
//! - [`wire`]: the chunk request/response codec and the gossip messages.
//! - `origin`: the HTTP origin download task.
//! - `node`: the task that owns the swarm and every download, and [`Client`], its
//!   handle. Inside it, `node::scheduler` (which chunk to ask of which peer) and
//!   `node::election` (which unit fetches from origin) are pure and unit-tested; the
//!   node's own doc lists the rest.
//! - [`config`]: the configuration, [`P2pConfig`].
//! - `testing` (feature `test-utils`): a loopback HTTP origin for tests and the example.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admission;
pub mod chunks;
pub mod config;
pub mod keyfile;
mod node;
pub mod offer;
mod origin;
pub mod roster;
pub mod store;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod wire;

pub use chunks::Root;
pub use config::P2pConfig;
#[cfg(feature = "test-utils")]
pub use config::ServeFault;
pub use libp2p::{Multiaddr, PeerId, identity};
pub use node::{ArtifactStatus, Client, PeerInfo, PeerState, identity_for, start};
pub use offer::{Offer, OfferError, SignedOffer};
pub use store::GcReport;

/// A mesh error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// A configuration value is unusable.
    #[error("invalid p2p configuration: {0}")]
    Config(String),
    /// The roster did not verify.
    #[error(transparent)]
    Roster(#[from] roster::RosterError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The identity key file is unreadable.
    #[error("identity key {path}: {reason}")]
    Identity {
        /// Key file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// libp2p could not be set up (transport, listen address).
    #[error("libp2p setup failed: {0}")]
    Setup(String),
    /// The node task has stopped.
    #[error("the p2p node has stopped")]
    Stopped,
    /// The offer is invalid, or the artifact was never offered.
    #[error("invalid offer: {0}")]
    Offer(String),
    /// The offer is not one HQ signed for this store now.
    #[error("offer refused: {0}")]
    Refused(#[from] OfferError),
    /// The artifact's download gave up.
    #[error("artifact {0} failed: {1}")]
    Failed(Root, String),
}
