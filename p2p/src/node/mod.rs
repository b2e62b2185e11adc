//! The node: one task owns the swarm and every artifact's download; [`Client`] sends it
//! bounded commands with `oneshot` replies.
//!
//! # Layout
//! - `client`: [`Client`] and the commands it sends to the node.
//! - `start`: the identity key, building the swarm, [`start()`].
//! - `event_loop`: the owner task's loop: commands, swarm events, gossip, the tick.
//! - `download`: one artifact's download from offer to completion, and what the origin
//!   election's decisions do (start or stop the origin task).
//! - `exchange`: the chunk protocol with peers: serving their requests, asking them per
//!   the scheduler's plan, handling their answers, banning those that serve bad data.
//! - `scheduler` (pure): which chunk to ask of which peer.
//! - `election` (pure): which unit downloads an artifact from origin.
//! - `status`: what the node reports ([`ArtifactStatus`], [`PeerInfo`]).
//!
//! The state types live here so that every part of the task reads them directly; the
//! two pure modules see only values and are unit-tested without a swarm.

mod client;
mod download;
mod election;
mod event_loop;
mod exchange;
mod scheduler;
mod start;
mod status;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::gossipsub::{self, IdentTopic};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::admission::Admission;
use crate::chunks::{Bitfield, ChunkList, Root};
use crate::config::P2pConfig;
use crate::origin::OriginEvent;
use crate::roster::Roster;
use crate::store::{Store, StoreError, Written};
use crate::wire::{ChunkCodec, Response};
use crate::{Offer, P2pError};

pub use client::Client;
use client::Command;
use election::Election;
pub use start::{identity_for, start};
pub use status::{ArtifactStatus, PeerInfo, PeerState};

const COMMAND_QUEUE: usize = 64;
const INTERNAL_QUEUE: usize = 256;
const TICK: Duration = Duration::from_millis(100);
const ANNOUNCE_MIN_GAP: Duration = Duration::from_millis(200);
const MAX_REJECTED_KEPT: usize = 32;

#[derive(NetworkBehaviour)]
struct Behaviour {
    // First: a refused peer never reaches the protocols below.
    admission: Admission,
    gossip: gossipsub::Behaviour,
    chunks: request_response::Behaviour<ChunkCodec>,
    identify: identify::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Results of the blocking store work the node hands to `spawn_blocking`, sent back to
/// the node task on its internal queue.
enum Internal {
    Serve {
        channel: ResponseChannel<Response>,
        response: Response,
        root: Root,
    },
    PeerChunk {
        peer: PeerId,
        root: Root,
        index: u32,
        bytes: u64,
        result: Result<Written, StoreError>,
    },
    PeerList {
        peer: PeerId,
        root: Root,
        result: Result<Arc<ChunkList>, StoreError>,
    },
}

#[derive(Default, Clone)]
struct Metrics {
    origin_bytes: u64,
    peer_bytes: u64,
    served_bytes: u64,
    rejected_chunks: u32,
    time_to_complete: Option<Duration>,
}

struct OriginRun {
    abort: AbortHandle,
}

struct Download {
    offer: Option<Offer>,
    list: Option<Arc<ChunkList>>,
    list_request: Option<(PeerId, Instant)>,
    have: Bitfield,
    pending_writes: HashSet<u32>,
    in_flight: HashMap<u32, Vec<(PeerId, OutboundRequestId, Instant)>>,
    started: Instant,
    origin: Option<OriginRun>,
    /// Who fetches from origin, who was passed over, and since when nothing progressed.
    election: Election<PeerId>,
    dirty: bool,
    last_announce: Instant,
    error: Option<String>,
}

/// A peer that answers "not found" for a chunk it announced, after this many of its
/// announcements, is lying about what it has: it is banned like one serving bad
/// chunks. (One denial counts per announcement, so an artifact the peer really
/// dropped costs one, and it stops announcing it.)
const MAX_DENIED_CHUNKS: u32 = 5;
/// Announcements an author may send in a burst; it earns [`GOSSIP_PER_SEC`] more a
/// second. A unit announces each artifact at most every 200 ms while downloading and
/// once per `announce_interval` otherwise: a store's units stay far below.
const GOSSIP_BURST: f64 = 512.0;
/// Announcements an author earns per second.
const GOSSIP_PER_SEC: f64 = 128.0;
/// Announcements dropped over the allowance before their author is banned for
/// flooding.
const GOSSIP_FLOOD_BAN: u32 = 256;

struct PeerRecord {
    addrs: Vec<Multiaddr>,
    last_seen: Option<Instant>,
    have: HashMap<Root, (Bitfield, bool)>,
    fetching: HashSet<Root>,
    rejected: bool,
    bad_chunks: u32,
    /// Offers it passed on that failed HQ's signature check (see `crate::offer`).
    refused_offers: u32,
    /// Whether an announcement arrived since the connection came up: the election waits
    /// for it so it does not decide on an empty view of a peer.
    heard: bool,
    /// Announcements it made and then denied (answered "not found" for a chunk in it).
    denied_chunks: u32,
    /// Artifacts it denied a chunk of since its last announcement of them.
    denied_since_announce: HashSet<Root>,
    /// Its announcement allowance (a token bucket) and when it was last topped up.
    gossip_tokens: f64,
    gossip_at: Instant,
    /// Announcements dropped because it was over its allowance.
    gossip_dropped: u32,
}

impl PeerRecord {
    /// Takes one announcement from its allowance: `false` when it is over it.
    fn allow_gossip(&mut self, now: Instant) -> bool {
        let earned = now.duration_since(self.gossip_at).as_secs_f64() * GOSSIP_PER_SEC;
        self.gossip_tokens = (self.gossip_tokens + earned).min(GOSSIP_BURST);
        self.gossip_at = now;
        if self.gossip_tokens >= 1.0 {
            self.gossip_tokens -= 1.0;
            true
        } else {
            self.gossip_dropped += 1;
            false
        }
    }

    fn new() -> PeerRecord {
        PeerRecord {
            addrs: Vec::new(),
            last_seen: None,
            have: HashMap::new(),
            fetching: HashSet::new(),
            rejected: false,
            bad_chunks: 0,
            refused_offers: 0,
            heard: false,
            denied_chunks: 0,
            denied_since_announce: HashSet::new(),
            gossip_tokens: GOSSIP_BURST,
            gossip_at: Instant::now(),
            gossip_dropped: 0,
        }
    }
}

enum Pending {
    List(Root),
    Chunk(Root, u32),
}

struct Node {
    swarm: Swarm<Behaviour>,
    cfg: P2pConfig,
    store: Arc<Store>,
    topic: IdentTopic,
    local: PeerId,
    listen_addrs: Vec<Multiaddr>,
    cmd_rx: mpsc::Receiver<Command>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    origin_tx: mpsc::Sender<(Root, OriginEvent)>,
    origin_rx: mpsc::Receiver<(Root, OriginEvent)>,
    downloads: HashMap<Root, Download>,
    peers: HashMap<PeerId, PeerRecord>,
    pending: HashMap<OutboundRequestId, (PeerId, Pending)>,
    metrics: HashMap<Root, Metrics>,
    waiters: HashMap<Root, Vec<oneshot::Sender<Result<PathBuf, P2pError>>>>,
    seq: u64,
    last_full_announce: Instant,
    last_redial: Instant,
}

impl Node {
    fn roster(&self) -> &Roster {
        self.swarm.behaviour().admission.roster()
    }

    fn usable_peer(&self, p: &PeerId) -> bool {
        self.swarm.is_connected(p) && self.swarm.behaviour().admission.check(p).is_ok()
    }
}
