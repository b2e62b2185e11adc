//! Configuration of one unit's mesh node.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::{Keypair, ed25519};

use crate::roster::SignedRoster;

/// Fault injection for tests: makes a unit serve bad chunks.
#[cfg(feature = "test-utils")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeFault {
    /// Flip one byte in every chunk served.
    CorruptChunks,
    /// Serve every chunk one byte short.
    TruncateChunks,
    /// Announce every chunk but answer every chunk request "not found" (a liar).
    DenyChunks,
    /// Announce a hundred times per tick (a flood).
    FloodAnnouncements,
}

/// Configuration of one unit. Build with [`P2pConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct P2pConfig {
    /// Where the content store lives.
    pub data_dir: PathBuf,
    /// The unit's libp2p identity: its peer id is what HQ puts on the roster, so the
    /// caller keeps it across restarts (the server keeps it encrypted under its data
    /// key; tests and demos may use [`crate::keyfile`]). The node never reads or writes
    /// a key file itself.
    pub keypair: Keypair,
    /// Listen addresses (default `/ip4/0.0.0.0/tcp/0`).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial for networks that block multicast (redialled while disconnected).
    pub static_peers: Vec<Multiaddr>,
    /// mDNS discovery on the LAN.
    pub mdns: bool,
    /// The HQ-signed store roster.
    pub roster: SignedRoster,
    /// HQ's signing key: of the roster, and of every offer (`crate::offer`).
    pub hq_key: ed25519::PublicKey,
    /// Peers fetched from at once per artifact.
    pub max_peers: usize,
    /// Outstanding chunk requests per peer.
    pub requests_per_peer: usize,
    /// How long a unit waits after learning of an offer before electing the origin
    /// fetcher, so connections and announcements settle.
    pub election_delay: Duration,
    /// No new chunk in the store for this long while the origin fetcher is someone else:
    /// that fetcher is passed over and the next unit takes over.
    pub stall_timeout: Duration,
    /// A chunk request not answered in this time is retried elsewhere.
    pub request_timeout: Duration,
    /// How long a peer that served a bad chunk stays banned.
    pub ban_duration: Duration,
    /// Full re-announcement period (announcements of new chunks are also sent as they
    /// arrive, at most every 200 ms per artifact).
    pub announce_interval: Duration,
    /// Origin attempts before the unit gives up its turn.
    pub origin_attempts: u32,
    /// Test fault injection.
    #[cfg(feature = "test-utils")]
    pub fault: Option<ServeFault>,
}

impl P2pConfig {
    /// Defaults for a store LAN.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        keypair: Keypair,
        roster: SignedRoster,
        hq_key: ed25519::PublicKey,
    ) -> Self {
        P2pConfig {
            data_dir: data_dir.into(),
            keypair,
            listen: vec!["/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr")],
            static_peers: Vec::new(),
            mdns: true,
            roster,
            hq_key,
            max_peers: 4,
            requests_per_peer: 4,
            election_delay: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            ban_duration: Duration::from_secs(3600),
            announce_interval: Duration::from_secs(2),
            origin_attempts: 3,
            #[cfg(feature = "test-utils")]
            fault: None,
        }
    }

    /// Loopback-only settings for tests and the example: no mDNS, listen on
    /// 127.0.0.1, short timers.
    pub fn loopback(
        data_dir: impl Into<PathBuf>,
        keypair: Keypair,
        roster: SignedRoster,
        hq_key: ed25519::PublicKey,
    ) -> Self {
        P2pConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            mdns: false,
            election_delay: Duration::from_millis(300),
            stall_timeout: Duration::from_millis(1500),
            request_timeout: Duration::from_secs(3),
            announce_interval: Duration::from_millis(500),
            ..P2pConfig::new(data_dir, keypair, roster, hq_key)
        }
    }

    /// Checks values a node cannot run with.
    pub fn validate(&self) -> Result<(), crate::P2pError> {
        let bad = |m: &str| Err(crate::P2pError::Config(m.to_string()));
        if self.max_peers == 0 || self.max_peers > 64 {
            return bad("max_peers must be 1..=64");
        }
        if self.requests_per_peer == 0 || self.requests_per_peer > 64 {
            return bad("requests_per_peer must be 1..=64");
        }
        if self.listen.is_empty() {
            return bad("at least one listen address is needed");
        }
        if self.stall_timeout < Duration::from_millis(100)
            || self.request_timeout < Duration::from_millis(100)
            || self.announce_interval < Duration::from_millis(50)
        {
            return bad("timers must be at least 100 ms (announce_interval 50 ms)");
        }
        if self.origin_attempts == 0 {
            return bad("origin_attempts must be at least 1");
        }
        Ok(())
    }
}
