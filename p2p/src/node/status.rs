//! What the node reports: one artifact's progress and metrics, and the store's peers.

use std::time::Instant;

use serde::Serialize;

use super::Node;
use crate::chunks::Root;

/// A peer's state as `peers()` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Connected and admitted.
    Connected,
    /// On the roster, not connected now.
    Disconnected,
    /// Banned for serving bad data or passing on a forged offer.
    Banned,
    /// Tried to connect but is not on the roster.
    Rejected,
}

/// One peer, for `GET /api/v1/peers`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    /// Base58 peer id.
    pub peer_id: String,
    /// State.
    pub state: PeerState,
    /// Whether the roster lists it.
    pub on_roster: bool,
    /// Addresses seen.
    pub addrs: Vec<String>,
    /// Milliseconds since it was last heard from, if ever.
    pub last_seen_ms_ago: Option<u64>,
    /// Artifacts it announced.
    pub artifacts: usize,
    /// Bad chunks or chunk lists it served.
    pub bad_chunks: u32,
    /// Offers it passed on that were refused: unsigned, wrongly signed, expired, for
    /// another store or unusable.
    pub refused_offers: u32,
}

/// One artifact's progress and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactStatus {
    /// Artifact id.
    pub root: Root,
    /// Size in bytes.
    pub size: u64,
    /// Chunks in the artifact.
    pub chunks_total: u32,
    /// Chunks present here.
    pub chunks_present: u32,
    /// Whether it is complete here: every chunk verified on disk, counted in the
    /// metrics, and the artifact persisted.
    pub complete: bool,
    /// References held.
    pub refs: u32,
    /// Bytes received from origin by this unit (since this process started).
    pub origin_bytes: u64,
    /// Verified chunk bytes received from peers.
    pub peer_bytes: u64,
    /// Chunk bytes served to peers.
    pub served_bytes: u64,
    /// Chunks refused for failing verification.
    pub rejected_chunks: u32,
    /// Milliseconds from the offer (or restart) to completion, if completed in this run.
    pub time_to_complete_ms: Option<u64>,
    /// Whether this unit is downloading from origin now.
    pub fetching_origin: bool,
    /// The unit this one believes fetches from origin.
    pub origin_fetcher: Option<String>,
    /// Why the download stopped, if it failed.
    pub error: Option<String>,
}

impl Node {
    pub(super) fn status(&self, root: &Root) -> Option<ArtifactStatus> {
        let info = self.store.info(root)?;
        let m = self.metrics.get(root).cloned().unwrap_or_default();
        let d = self.downloads.get(root);
        Some(ArtifactStatus {
            root: *root,
            size: info.size,
            chunks_total: info.have.len(),
            chunks_present: info.have.count(),
            complete: info.have.is_full() && d.is_none(),
            refs: info.refs,
            origin_bytes: m.origin_bytes,
            peer_bytes: m.peer_bytes,
            served_bytes: m.served_bytes,
            rejected_chunks: m.rejected_chunks,
            time_to_complete_ms: m.time_to_complete.map(|t| t.as_millis() as u64),
            fetching_origin: d.is_some_and(|d| d.origin.is_some()),
            origin_fetcher: d.and_then(|d| d.election.leader()).map(|p| p.to_base58()),
            error: d.and_then(|d| d.error.clone()),
        })
    }

    pub(super) fn peer_list(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let adm = &self.swarm.behaviour().admission;
        let mut out: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(p, r)| {
                let on_roster = adm.roster().contains(p);
                let state = if adm.is_banned(p) {
                    PeerState::Banned
                } else if !on_roster && r.rejected {
                    PeerState::Rejected
                } else if self.swarm.is_connected(p) {
                    PeerState::Connected
                } else {
                    PeerState::Disconnected
                };
                PeerInfo {
                    peer_id: p.to_base58(),
                    state,
                    on_roster,
                    addrs: r.addrs.iter().map(|a| a.to_string()).collect(),
                    last_seen_ms_ago: r
                        .last_seen
                        .map(|t| now.duration_since(t).as_millis() as u64),
                    artifacts: r.have.len(),
                    bad_chunks: r.bad_chunks,
                    refused_offers: r.refused_offers,
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }
}
