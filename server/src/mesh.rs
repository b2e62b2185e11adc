//! The store mesh in the server: this unit's `outpost-p2p` node, started from the
//! `[p2p]` settings, and what the API shows of it (`GET /api/v1/peers`).
//!
//! The settings are [`crate::config::P2pSettings`]; `outpost p2p id` prints the peer id
//! HQ puts on the roster. The protocol is in `docs/p2p.md`.

use std::path::{Path, PathBuf};

use outpost_p2p::Client;
use serde::Serialize;

use crate::config::P2pSettings;

/// Where a unit keeps its mesh identity and content.
pub fn mesh_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("p2p")
}

/// This unit's peer id (created once and kept in the data dir), for HQ's roster.
pub fn peer_id(data_dir: &Path) -> anyhow::Result<String> {
    let dir = mesh_dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    let key = outpost_p2p::identity_for(&dir)?;
    Ok(key.public().to_peer_id().to_base58())
}

/// Start this unit's node, when the mesh is enabled.
pub async fn start(settings: &P2pSettings, data_dir: &Path) -> anyhow::Result<Option<Client>> {
    if !settings.enabled {
        return Ok(None);
    }
    let dir = mesh_dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    let cfg = settings.node_config(&dir)?;
    let client = outpost_p2p::start(cfg).await?;
    tracing::info!(peer_id = %client.peer_id(), listen = ?client.listen_addrs(), "Joined the store mesh");
    Ok(Some(client))
}

/// What `GET /api/v1/peers` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeersView {
    /// Whether this unit is on the store mesh (`[p2p] enabled`).
    pub enabled: bool,
    /// This unit's peer id.
    pub peer_id: Option<String>,
    /// Where this unit listens.
    pub listen: Vec<String>,
    /// The store's other units this one knows of, with their state (`connected`,
    /// `disconnected`, `banned`, `rejected`).
    #[schema(value_type = Vec<Object>)]
    pub peers: Vec<outpost_p2p::PeerInfo>,
    /// Artifacts in this unit's content store, with bytes from origin, from peers
    /// and served to peers.
    #[schema(value_type = Vec<Object>)]
    pub artifacts: Vec<outpost_p2p::ArtifactStatus>,
}

/// The view of the mesh for the API.
pub async fn view(client: Option<&Client>) -> Result<PeersView, outpost_p2p::P2pError> {
    let Some(c) = client else {
        return Ok(PeersView {
            enabled: false,
            peer_id: None,
            listen: Vec::new(),
            peers: Vec::new(),
            artifacts: Vec::new(),
        });
    };
    Ok(PeersView {
        enabled: true,
        peer_id: Some(c.peer_id().to_base58()),
        listen: c.listen_addrs().iter().map(ToString::to_string).collect(),
        peers: c.peers().await?,
        artifacts: c.artifacts().await?,
    })
}
