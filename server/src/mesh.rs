//! The store mesh in the server: this unit's `outpost-p2p` node, started from the
//! `[p2p]` settings, and what the API shows of it (`GET /api/v1/peers`).
//!
//! The mesh is off unless `[p2p] enabled = true`. A unit on the mesh needs the store
//! roster HQ signed (`roster_file`, JSON as HQ ships it) and HQ's roster key
//! (`hq_public_key`, 64 hex digits); `outpost p2p id` prints the peer id HQ puts on
//! the roster. The protocol is in `docs/p2p.md`.

use std::path::{Path, PathBuf};

use outpost_p2p::roster::SignedRoster;
use outpost_p2p::{Client, Multiaddr, P2pConfig};
use serde::{Deserialize, Serialize};

/// `[p2p]`: the store mesh.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pSettings {
    /// Join the store mesh. Default off.
    pub enabled: bool,
    /// libp2p listen addresses. Default `["/ip4/0.0.0.0/tcp/4011"]`.
    pub listen: Vec<String>,
    /// Peers to dial on networks that block multicast, e.g.
    /// `"/ip4/10.0.0.12/tcp/4011"`.
    pub static_peers: Vec<String>,
    /// Find the store's other units by mDNS. Default on.
    pub mdns: bool,
    /// The roster HQ signed: which peer ids are this store's units.
    pub roster_file: Option<PathBuf>,
    /// HQ's roster signing key, as 64 hex digits.
    pub hq_public_key: Option<String>,
}

impl Default for P2pSettings {
    fn default() -> Self {
        P2pSettings {
            enabled: false,
            listen: vec!["/ip4/0.0.0.0/tcp/4011".into()],
            static_peers: Vec::new(),
            mdns: true,
            roster_file: None,
            hq_public_key: None,
        }
    }
}

/// A `[p2p]` value that cannot work: the setting and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {field}: {message}")]
pub struct MeshConfigError {
    /// The setting.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> MeshConfigError {
    MeshConfigError {
        field: field.into(),
        message: message.into(),
    }
}

fn addrs(field: &str, list: &[String]) -> Result<Vec<Multiaddr>, MeshConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<Multiaddr>().map_err(|e| {
                bad(
                    &format!("{field}[{i}]"),
                    format!("{a:?} is not a multiaddr: {e}"),
                )
            })
        })
        .collect()
}

fn hq_key(hex: &str) -> Result<outpost_p2p::identity::ed25519::PublicKey, MeshConfigError> {
    let field = "p2p.hq_public_key";
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(field, "must be 64 hex digits (an Ed25519 public key)"));
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or_default())
        .collect();
    outpost_p2p::identity::ed25519::PublicKey::try_from_bytes(&bytes)
        .map_err(|e| bad(field, format!("not an Ed25519 public key: {e}")))
}

impl P2pSettings {
    /// Check what the types cannot; with `enabled`, also read and verify the roster.
    pub fn validate(&self) -> Result<(), MeshConfigError> {
        if !self.enabled {
            return Ok(());
        }
        self.node_config(Path::new("."))?;
        Ok(())
    }

    /// The node's configuration, its content store and identity under `data_dir`.
    pub fn node_config(&self, data_dir: &Path) -> Result<P2pConfig, MeshConfigError> {
        let listen = addrs("p2p.listen", &self.listen)?;
        if listen.is_empty() {
            return Err(bad("p2p.listen", "needs at least one address"));
        }
        let static_peers = addrs("p2p.static_peers", &self.static_peers)?;
        let key = hq_key(
            self.hq_public_key
                .as_deref()
                .ok_or_else(|| bad("p2p.hq_public_key", "is needed when p2p is enabled"))?,
        )?;
        let path = self
            .roster_file
            .as_deref()
            .ok_or_else(|| bad("p2p.roster_file", "is needed when p2p is enabled"))?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(
                "p2p.roster_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let roster = SignedRoster::from_json(&text)
            .map_err(|e| bad("p2p.roster_file", format!("{}: {e}", path.display())))?;
        roster
            .verify(&key)
            .map_err(|e| bad("p2p.roster_file", format!("{}: {e}", path.display())))?;
        let mut cfg = P2pConfig::new(data_dir.to_owned(), roster, key);
        cfg.listen = listen;
        cfg.static_peers = static_peers;
        cfg.mdns = self.mdns;
        Ok(cfg)
    }
}

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
    /// Catalog snapshots HQ offered through the mesh and whether they were applied
    /// (`fetching`, `applying`, `applied`, `failed` with the reason).
    pub catalog_artifacts: Vec<crate::artifacts::ArtifactView>,
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
            catalog_artifacts: Vec::new(),
        });
    };
    Ok(PeersView {
        enabled: true,
        peer_id: Some(c.peer_id().to_base58()),
        listen: c.listen_addrs().iter().map(ToString::to_string).collect(),
        peers: c.peers().await?,
        artifacts: c.artifacts().await?,
        catalog_artifacts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(dir: &Path) -> P2pSettings {
        let kp = outpost_p2p::roster::demo_hq_keypair();
        let roster = SignedRoster::sign(&kp, "store-1", 1, [outpost_p2p::PeerId::random()]);
        let file = dir.join("roster.json");
        std::fs::write(&file, serde_json::to_string(&roster).unwrap()).unwrap();
        let hex: String = kp
            .public()
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        P2pSettings {
            enabled: true,
            roster_file: Some(file),
            hq_public_key: Some(hex),
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            ..P2pSettings::default()
        }
    }

    #[test]
    fn off_by_default_and_a_good_setting_validates() {
        assert!(P2pSettings::default().validate().is_ok());
        let dir = tempfile::tempdir().unwrap();
        assert!(enabled(dir.path()).validate().is_ok());
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let field = |s: P2pSettings| s.validate().unwrap_err().field;
        let mut s = enabled(dir.path());
        s.listen = vec!["tcp:4011".into()];
        assert_eq!(field(s), "p2p.listen[0]");
        let mut s = enabled(dir.path());
        s.static_peers = vec!["/ip4/10.0.0.1/tcp/1".into(), "nonsense".into()];
        assert_eq!(field(s), "p2p.static_peers[1]");
        let mut s = enabled(dir.path());
        s.hq_public_key = Some("abcd".into());
        assert_eq!(field(s), "p2p.hq_public_key");
        let mut s = enabled(dir.path());
        s.hq_public_key = None;
        assert_eq!(field(s), "p2p.hq_public_key");
        let mut s = enabled(dir.path());
        s.roster_file = Some(dir.path().join("missing.json"));
        assert_eq!(field(s), "p2p.roster_file");
        // A roster signed by another key, and one that is not JSON.
        let mut s = enabled(dir.path());
        s.hq_public_key = Some("11".repeat(32));
        let e = s.validate().unwrap_err();
        assert!(
            e.field == "p2p.hq_public_key" || e.field == "p2p.roster_file",
            "{e}"
        );
        let s = enabled(dir.path());
        std::fs::write(s.roster_file.as_ref().unwrap(), "{not json").unwrap();
        assert_eq!(field(s), "p2p.roster_file");
    }
}
