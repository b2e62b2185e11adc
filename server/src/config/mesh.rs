//! `[p2p]`: the store mesh, and the node configuration it makes.
//!
//! The mesh is off unless `[p2p] enabled = true`. A unit on the mesh needs the store
//! roster HQ signed (`roster_file`, JSON as HQ ships it) and HQ's roster key
//! (`hq_public_key`, 64 hex digits), which also signs every artifact offer.

use std::path::{Path, PathBuf};

use outpost_p2p::roster::SignedRoster;
use outpost_p2p::{Multiaddr, P2pConfig};
use serde::Deserialize;

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
    /// HQ's roster signing key, as 64 hex digits. It also signs every artifact offer:
    /// the mesh fetches nothing else.
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

/// What the unit itself holds for the mesh, besides its settings: the HQ key it is
/// enrolled with and the newest roster HQ gave it (at enrolment or by `PushRoster`,
/// kept in the data dir: [`crate::mesh`]).
#[derive(Debug, Clone, Default)]
pub struct MeshTrust {
    /// The HQ key of the unit's enrolment.
    pub enrolled_key: Option<outpost_p2p::identity::ed25519::PublicKey>,
    /// The roster kept in the data dir.
    pub kept_roster: Option<SignedRoster>,
}

impl P2pSettings {
    /// Check what the types cannot; with `enabled`, also read the roster file and, when
    /// the HQ key is configured, verify it.
    pub fn validate(&self) -> Result<(), MeshConfigError> {
        if !self.enabled {
            return Ok(());
        }
        self.parsed()?;
        if let (Some(hex), Some(path)) = (&self.hq_public_key, &self.roster_file) {
            verified_file(path, &hq_key(hex)?)?;
        }
        Ok(())
    }

    /// The node's configuration: its content store under `data_dir`, its identity
    /// `keypair` (the caller keeps it; the server seals it, `crate::mesh`), the HQ key
    /// (configured, else the enrolled one) and the newest of the configured roster file
    /// and the roster kept in the data dir.
    pub fn node_config(
        &self,
        data_dir: &Path,
        keypair: outpost_p2p::identity::Keypair,
        trust: MeshTrust,
    ) -> Result<P2pConfig, MeshConfigError> {
        let (listen, static_peers) = self.parsed()?;
        let key = match (&self.hq_public_key, trust.enrolled_key) {
            (Some(hex), _) => hq_key(hex)?,
            (None, Some(k)) => k,
            (None, None) => {
                return Err(bad(
                    "p2p.hq_public_key",
                    "is needed when p2p is enabled on a unit not enrolled with HQ (an enrolled unit uses the HQ key of its enrolment)",
                ));
            }
        };
        let from_file = self
            .roster_file
            .as_deref()
            .map(|path| verified_file(path, &key))
            .transpose()?;
        let kept = trust
            .kept_roster
            .map(|r| {
                r.verify(&key).map(|_| r).map_err(|e| {
                    bad(
                        "p2p",
                        format!(
                            "the roster HQ gave this unit (in the data dir) does not verify under the HQ key: {e}"
                        ),
                    )
                })
            })
            .transpose()?;
        let roster = match (from_file, kept) {
            (Some(a), Some(b)) => {
                if b.version > a.version {
                    b
                } else {
                    a
                }
            }
            (Some(r), None) | (None, Some(r)) => r,
            (None, None) => {
                return Err(bad(
                    "p2p.roster_file",
                    "is needed: HQ has given this unit no roster yet (enrol it with `outpost enroll --hq URL --token T`, or have HQ push the store's roster), and none is configured",
                ));
            }
        };
        let mut cfg = P2pConfig::new(data_dir.to_owned(), keypair, roster, key);
        cfg.listen = listen;
        cfg.static_peers = static_peers;
        cfg.mdns = self.mdns;
        Ok(cfg)
    }

    /// The addresses parsed and the HQ key's form checked.
    fn parsed(&self) -> Result<(Vec<Multiaddr>, Vec<Multiaddr>), MeshConfigError> {
        let listen = addrs("p2p.listen", &self.listen)?;
        if listen.is_empty() {
            return Err(bad("p2p.listen", "needs at least one address"));
        }
        let static_peers = addrs("p2p.static_peers", &self.static_peers)?;
        if let Some(hex) = &self.hq_public_key {
            hq_key(hex)?;
        }
        Ok((listen, static_peers))
    }
}

/// The roster file read and verified under `key`.
fn verified_file(
    path: &Path,
    key: &outpost_p2p::identity::ed25519::PublicKey,
) -> Result<SignedRoster, MeshConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            "p2p.roster_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let roster = SignedRoster::from_json(&text)
        .map_err(|e| bad("p2p.roster_file", format!("{}: {e}", path.display())))?;
    roster
        .verify(key)
        .map_err(|e| bad("p2p.roster_file", format!("{}: {e}", path.display())))?;
    Ok(roster)
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
        // Without a key, a unit not enrolled cannot start its node; with the enrolled
        // key it can.
        let mut s = enabled(dir.path());
        s.hq_public_key = None;
        assert!(
            s.validate().is_ok(),
            "an enrolled unit needs no configured key"
        );
        let node = |s: &P2pSettings, trust: MeshTrust| {
            s.node_config(
                dir.path(),
                outpost_p2p::identity::Keypair::generate_ed25519(),
                trust,
            )
        };
        assert_eq!(
            node(&s, MeshTrust::default()).err().unwrap().field,
            "p2p.hq_public_key"
        );
        let demo = outpost_p2p::roster::demo_hq_keypair().public();
        let trust = MeshTrust {
            enrolled_key: Some(demo.clone()),
            kept_roster: None,
        };
        assert!(node(&s, trust).is_ok());
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

    #[test]
    fn the_newest_of_the_file_and_the_kept_roster_wins_and_a_forged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = enabled(dir.path());
        let kp = outpost_p2p::roster::demo_hq_keypair();
        let peer = outpost_p2p::PeerId::random();
        let node = |s: &P2pSettings, kept: Option<SignedRoster>| {
            s.node_config(
                dir.path(),
                outpost_p2p::identity::Keypair::generate_ed25519(),
                MeshTrust {
                    enrolled_key: None,
                    kept_roster: kept,
                },
            )
        };
        let newer = SignedRoster::sign(&kp, "store-1", 2, [peer]);
        let cfg = node(&s, Some(newer)).unwrap();
        assert_eq!(
            cfg.roster.version, 2,
            "the kept version 2 beats the file's 1"
        );
        let older = SignedRoster::sign(&kp, "store-1", 0, [peer]);
        assert_eq!(node(&s, Some(older)).unwrap().roster.version, 1);
        // Without a file, the kept roster alone.
        let mut only_kept = s.clone();
        only_kept.roster_file = None;
        let kept = SignedRoster::sign(&kp, "store-1", 1, [peer]);
        assert_eq!(
            node(&only_kept, Some(kept)).unwrap().roster.peers,
            [peer.to_base58()]
        );
        assert_eq!(
            node(&only_kept, None).err().unwrap().field,
            "p2p.roster_file"
        );
        let forged = SignedRoster::sign(
            &outpost_p2p::roster::HqKeypair::generate(),
            "store-1",
            9,
            [peer],
        );
        assert!(
            node(&s, Some(forged))
                .err()
                .unwrap()
                .to_string()
                .contains("does not verify")
        );
    }
}
