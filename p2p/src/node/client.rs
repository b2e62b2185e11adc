//! The cloneable handle on a running node.

use std::path::PathBuf;
use std::sync::Arc;

use libp2p::identity::ed25519;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::{ArtifactStatus, PeerInfo};
use crate::P2pError;
use crate::chunks::Root;
use crate::offer::{OfferError, SignedOffer, now_ms};
use crate::roster::SignedRoster;
use crate::store::GcReport;

/// What a [`Client`] asks the node task; each carries the `oneshot` for the reply.
pub(super) enum Command {
    Offer(SignedOffer, oneshot::Sender<Result<(), P2pError>>),
    /// Publishes an offer without checking it: a peer that forges offers.
    #[cfg(feature = "test-utils")]
    GossipUnchecked(SignedOffer, oneshot::Sender<Result<(), P2pError>>),
    WaitComplete(Root, oneshot::Sender<Result<PathBuf, P2pError>>),
    Status(Root, oneshot::Sender<Option<ArtifactStatus>>),
    Artifacts(oneshot::Sender<Vec<ArtifactStatus>>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Release(Root, oneshot::Sender<Result<u32, P2pError>>),
    Gc(oneshot::Sender<Result<GcReport, P2pError>>),
    SetRoster(SignedRoster, oneshot::Sender<Result<(), P2pError>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), P2pError>>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle on a running node. Cheap to clone; every method is cancel-safe (dropping
/// the future drops the reply, the node carries on).
#[derive(Clone)]
pub struct Client {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) peer_id: PeerId,
    /// HQ's key and this unit's store, to check offers before they are handed over.
    pub(super) hq_key: ed25519::PublicKey,
    pub(super) store_id: Arc<str>,
    pub(super) listen_addrs: Arc<Vec<Multiaddr>>,
    pub(super) data_dir: PathBuf,
}

impl Client {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// This unit's peer id (what HQ puts on the roster).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the node listens on (resolved ports).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.to_vec()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Checks an offer as the node will: HQ's signature for this unit's store, not
    /// expired, its fields usable (see [`crate::offer`]). For a caller that wants to
    /// refuse a bad offer before it records anything; [`Client::offer`] checks again.
    pub fn verify_offer(&self, offer: &SignedOffer) -> Result<(), OfferError> {
        offer
            .verify(&self.hq_key, &self.store_id, now_ms())
            .map(|_| ())
    }

    /// Accepts HQ's offer: checks HQ's signature (refused with [`P2pError::Refused`]:
    /// unsigned, wrongly signed, expired, for another store, oversized), takes a
    /// reference on the artifact, tells the store's other units, and starts
    /// distributing it (origin download by the elected unit, chunks from peers for the
    /// rest).
    pub async fn offer(&self, offer: SignedOffer) -> Result<(), P2pError> {
        self.ask(|tx| Command::Offer(offer, tx)).await?
    }

    /// Publishes `offer` on the store's gossip topic without any check, as a peer that
    /// forges offers would (tests of the other units' checks).
    #[cfg(feature = "test-utils")]
    pub async fn gossip_unchecked(&self, offer: SignedOffer) -> Result<(), P2pError> {
        self.ask(|tx| Command::GossipUnchecked(offer, tx)).await?
    }

    /// Resolves with the data file path once the artifact is complete and verified
    /// here. Wrap it in a timeout.
    pub async fn wait_complete(&self, root: Root) -> Result<PathBuf, P2pError> {
        self.ask(|tx| Command::WaitComplete(root, tx)).await?
    }

    /// Progress and metrics of one artifact.
    pub async fn status(&self, root: Root) -> Result<Option<ArtifactStatus>, P2pError> {
        self.ask(|tx| Command::Status(root, tx)).await
    }

    /// Progress and metrics of every stored artifact.
    pub async fn artifacts(&self) -> Result<Vec<ArtifactStatus>, P2pError> {
        self.ask(Command::Artifacts).await
    }

    /// The store's peers and their state (for `GET /api/v1/peers`).
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, P2pError> {
        self.ask(Command::Peers).await
    }

    /// Drops one reference; returns the references left.
    pub async fn release(&self, root: Root) -> Result<u32, P2pError> {
        self.ask(|tx| Command::Release(root, tx)).await?
    }

    /// Deletes artifacts nobody references.
    pub async fn gc(&self) -> Result<GcReport, P2pError> {
        self.ask(Command::Gc).await?
    }

    /// Installs a newer roster (refused if older, or if the signature fails);
    /// disconnects peers no longer on it.
    pub async fn set_roster(&self, roster: SignedRoster) -> Result<(), P2pError> {
        self.ask(|tx| Command::SetRoster(roster, tx)).await?
    }

    /// Dials an address now (admission still applies).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), P2pError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// Stops the node: aborts origin downloads, persists bitfields, closes connections.
    pub async fn shutdown(&self) -> Result<(), P2pError> {
        self.ask(Command::Shutdown).await
    }
}
