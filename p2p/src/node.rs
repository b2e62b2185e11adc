//! The node: one task owns the swarm, the fetch scheduler and the origin election;
//! [`Client`] sends it bounded commands with `oneshot` replies.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns, noise, tcp, yamux};
use rand::seq::{IndexedRandom, SliceRandom};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::admission::{Admission, Rejected};
use crate::chunks::{Bitfield, ChunkList, Root, chunk_count};
use crate::config::P2pConfig;
use crate::origin::{self, OriginEvent, OriginJob};
use crate::roster::{Roster, SignedRoster};
use crate::store::{GcReport, Store, StoreError, Written};
use crate::wire::{self, ChunkCodec, Gossip, Request, Response};
use crate::{Offer, P2pError};

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

/// A peer's state as `peers()` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Connected and admitted.
    Connected,
    /// On the roster, not connected now.
    Disconnected,
    /// Banned for serving bad data.
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

enum Command {
    Offer(Offer, oneshot::Sender<Result<(), P2pError>>),
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

/// A handle on a running node. Cheap to clone; every method is cancel-safe (dropping
/// the future drops the reply, the node carries on).
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    listen_addrs: Arc<Vec<Multiaddr>>,
    data_dir: PathBuf,
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

    /// Accepts HQ's offer: takes a reference on the artifact, tells the store's other
    /// units, and starts distributing it (origin download by the elected unit, chunks
    /// from peers for the rest).
    pub async fn offer(&self, offer: Offer) -> Result<(), P2pError> {
        self.ask(|tx| Command::Offer(offer, tx)).await?
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
    excluded: HashSet<PeerId>,
    leader: Option<PeerId>,
    last_progress: Instant,
    last_union: u32,
    dirty: bool,
    last_announce: Instant,
    error: Option<String>,
}

struct PeerRecord {
    addrs: Vec<Multiaddr>,
    last_seen: Option<Instant>,
    have: HashMap<Root, (Bitfield, bool)>,
    fetching: HashSet<Root>,
    rejected: bool,
    bad_chunks: u32,
    /// Whether an announcement arrived since the connection came up: the election waits
    /// for it so it does not decide on an empty view of a peer.
    heard: bool,
}

impl PeerRecord {
    fn new() -> PeerRecord {
        PeerRecord {
            addrs: Vec::new(),
            last_seen: None,
            have: HashMap::new(),
            fetching: HashSet::new(),
            rejected: false,
            bad_chunks: 0,
            heard: false,
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

fn load_identity(cfg: &P2pConfig) -> Result<Keypair, P2pError> {
    if let Some(k) = &cfg.keypair {
        return Ok(k.clone());
    }
    let path = cfg.data_dir.join("identity.key");
    let err = |reason: String| P2pError::Identity {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(mut bytes) => {
            let kp = libp2p::identity::ed25519::Keypair::try_from_bytes(&mut bytes)
                .map_err(|e| err(format!("not a 64-byte ed25519 key pair: {e}")))?;
            Ok(Keypair::from(kp))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = libp2p::identity::ed25519::Keypair::generate();
            std::fs::create_dir_all(&cfg.data_dir).map_err(|e| err(e.to_string()))?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, kp.to_bytes()).map_err(|e| err(e.to_string()))?;
            std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
            Ok(Keypair::from(kp))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Loads (or creates) the identity a unit with this data dir will have, so HQ (or a
/// test) can put its peer id on the roster before starting it.
pub fn identity_for(data_dir: &std::path::Path) -> Result<Keypair, P2pError> {
    let cfg = P2pConfig::new(
        data_dir,
        SignedRoster {
            store_id: String::new(),
            version: 0,
            peers: vec![],
            signature: String::new(),
        },
        crate::roster::demo_hq_keypair().public(),
    );
    load_identity(&cfg)
}

/// Starts a unit: verifies the roster, opens the store, binds the listeners, dials the
/// static peers, resumes unfinished downloads, and spawns the swarm task.
pub async fn start(cfg: P2pConfig) -> Result<Client, P2pError> {
    cfg.validate()?;
    let roster: Roster = cfg.roster.verify(&cfg.hq_key)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| P2pError::Config(format!("data dir {}: {e}", cfg.data_dir.display())))?;
    let keypair = load_identity(&cfg)?;
    let local = keypair.public().to_peer_id();
    let store = Arc::new(Store::open(&cfg.data_dir)?);
    let topic = IdentTopic::new(format!("outpost/p2p/1/{}", roster.store_id));

    let setup = |e: &dyn std::fmt::Display| P2pError::Setup(e.to_string());
    let mdns_on = cfg.mdns;
    let request_timeout = cfg.request_timeout;
    let roster_for_admission = roster.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup(&e))?
        .with_behaviour(|key| {
            let gossip_cfg = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .max_transmit_size(wire::MAX_GOSSIP)
                .validation_mode(gossipsub::ValidationMode::Strict)
                .build()
                .map_err(|e| Box::<dyn std::error::Error + Send + Sync>::from(e.to_string()))?;
            let gossip =
                gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_cfg)
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)?;
            let chunks = request_response::Behaviour::with_codec(
                ChunkCodec,
                [(wire::PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(request_timeout)
                    .with_max_concurrent_streams(64),
            );
            let identify =
                identify::Behaviour::new(identify::Config::new("/outpost/1".into(), key.public()));
            let mdns = if mdns_on {
                Some(
                    mdns::tokio::Behaviour::new(mdns::Config::default(), key.public().to_peer_id())
                        .map_err(Box::<dyn std::error::Error + Send + Sync>::from)?,
                )
            } else {
                None
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                admission: Admission::new(key.public().to_peer_id(), roster_for_admission),
                gossip,
                chunks,
                identify,
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    swarm
        .behaviour_mut()
        .gossip
        .subscribe(&topic)
        .map_err(|e| setup(&e))?;
    for addr in &cfg.listen {
        swarm.listen_on(addr.clone()).map_err(|e| setup(&e))?;
    }
    // Wait for the listeners to report their bound addresses (bounded).
    let mut listen_addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while listen_addrs.len() < cfg.listen.len() {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => listen_addrs.push(address),
            Ok(_) => {}
            Err(_) => return Err(P2pError::Setup("listeners did not come up in 5 s".into())),
        }
    }
    tracing::info!(peer = %local, addrs = ?listen_addrs, store = %roster.store_id, "P2p node listening");

    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (internal_tx, internal_rx) = mpsc::channel(INTERNAL_QUEUE);
    let (origin_tx, origin_rx) = mpsc::channel(INTERNAL_QUEUE);
    let now = Instant::now();
    let mut node = Node {
        swarm,
        store: store.clone(),
        topic,
        local,
        listen_addrs: listen_addrs.clone(),
        cmd_rx,
        internal_tx,
        internal_rx,
        origin_tx,
        origin_rx,
        downloads: HashMap::new(),
        peers: HashMap::new(),
        pending: HashMap::new(),
        metrics: HashMap::new(),
        waiters: HashMap::new(),
        seq: 0,
        last_full_announce: now,
        last_redial: now,
        cfg: cfg.clone(),
    };
    for p in roster.peers.iter().filter(|p| **p != local) {
        node.peers.insert(*p, PeerRecord::new());
    }
    // Resume what was unfinished before a restart.
    for info in store.list() {
        if !info.have.is_full() && info.offer.is_some() && info.refs > 0 {
            tracing::info!(root = %info.root, present = info.have.count(), "Resuming download");
            node.begin_download(info.root, info.size, info.offer.clone());
        }
    }
    node.redial();
    let client = Client {
        tx: cmd_tx,
        peer_id: local,
        listen_addrs: Arc::new(listen_addrs),
        data_dir: cfg.data_dir.clone(),
    };
    tokio::spawn(node.run());
    Ok(client)
}

impl Node {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown(done)) => {
                        self.stop();
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.stop();
                        return;
                    }
                },
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(i) = self.internal_rx.recv() => self.on_internal(i),
                Some((root, ev)) = self.origin_rx.recv() => self.on_origin(root, ev),
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn stop(&mut self) {
        for d in self.downloads.values_mut() {
            if let Some(o) = d.origin.take() {
                o.abort.abort();
            }
        }
        if let Err(e) = self.store.persist_all() {
            tracing::warn!(error = %e, "Failed to persist bitfields at shutdown");
        }
        tracing::info!(peer = %self.local, "P2p node stopped");
    }

    fn roster(&self) -> &Roster {
        self.swarm.behaviour().admission.roster()
    }

    fn begin_download(&mut self, root: Root, size: u64, offer: Option<Offer>) {
        if self.downloads.contains_key(&root) {
            return;
        }
        let have = self
            .store
            .bitfield(&root)
            .unwrap_or_else(|| Bitfield::new(chunk_count(size)));
        let now = Instant::now();
        self.metrics.entry(root).or_default();
        self.downloads.insert(
            root,
            Download {
                offer,
                list: self.store.chunk_list(&root),
                list_request: None,
                last_union: have.count(),
                have,
                pending_writes: HashSet::new(),
                in_flight: HashMap::new(),
                started: now,
                origin: None,
                excluded: HashSet::new(),
                leader: None,
                last_progress: now,
                dirty: true,
                last_announce: now - ANNOUNCE_MIN_GAP,
                error: None,
            },
        );
    }

    fn accept_offer(&mut self, offer: Offer, from_hq: bool) -> Result<(), P2pError> {
        crate::chunks::check_size(offer.size).map_err(|e| P2pError::Offer(e.to_string()))?;
        for u in [&offer.url, &offer.chunks_url] {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(P2pError::Offer(format!("{u:?} is not an http(s) URL")));
            }
        }
        let root = offer.root;
        let known = self.store.info(&root).is_some();
        // HQ's offer takes a reference each time; a gossiped one only creates the entry.
        self.store
            .ensure(root, offer.size, Some(offer.clone()), from_hq || !known)?;
        if from_hq {
            self.publish(&Gossip::Offer {
                offer: offer.clone(),
            });
        }
        if self.store.is_complete(&root) {
            self.finish(root);
        } else {
            self.begin_download(root, offer.size, Some(offer));
        }
        Ok(())
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Offer(offer, reply) => {
                let _ = reply.send(self.accept_offer(offer, true));
            }
            Command::WaitComplete(root, reply) => {
                if self.is_done(&root) {
                    let _ = reply.send(Ok(self.store.data_path(&root)));
                } else if let Some(err) = self.downloads.get(&root).and_then(|d| d.error.clone()) {
                    let _ = reply.send(Err(P2pError::Failed(root, err)));
                } else if self.store.info(&root).is_none() {
                    let _ = reply.send(Err(P2pError::Offer(format!(
                        "artifact {root} is not offered"
                    ))));
                } else {
                    self.waiters.entry(root).or_default().push(reply);
                }
            }
            Command::Status(root, reply) => {
                let _ = reply.send(self.status(&root));
            }
            Command::Artifacts(reply) => {
                let all = self
                    .store
                    .list()
                    .into_iter()
                    .filter_map(|i| self.status(&i.root))
                    .collect();
                let _ = reply.send(all);
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_list());
            }
            Command::Release(root, reply) => {
                let _ = reply.send(self.store.release(&root).map_err(P2pError::from));
            }
            Command::Gc(reply) => {
                let r = self.store.gc().map_err(P2pError::from);
                if let Ok(rep) = &r {
                    for root in &rep.removed {
                        if let Some(mut d) = self.downloads.remove(root)
                            && let Some(o) = d.origin.take()
                        {
                            o.abort.abort();
                        }
                    }
                }
                let _ = reply.send(r);
            }
            Command::SetRoster(signed, reply) => {
                let _ = reply.send(self.set_roster(signed));
            }
            Command::Dial(addr, reply) => {
                let r = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| P2pError::Setup(e.to_string()));
                let _ = reply.send(r);
            }
            Command::Shutdown(_) => {}
        }
    }

    fn set_roster(&mut self, signed: SignedRoster) -> Result<(), P2pError> {
        let roster = signed.verify(&self.cfg.hq_key)?;
        let current = self.roster();
        if roster.store_id != current.store_id {
            return Err(P2pError::Config(format!(
                "roster is for store {:?}, this unit is in {:?}",
                roster.store_id, current.store_id
            )));
        }
        if roster.version < current.version {
            return Err(P2pError::Config(format!(
                "roster version {} is older than {}",
                roster.version, current.version
            )));
        }
        let out: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| !roster.contains(p))
            .copied()
            .collect();
        for p in roster.peers.iter().filter(|p| **p != self.local) {
            self.peers.entry(*p).or_insert_with(PeerRecord::new);
        }
        self.swarm.behaviour_mut().admission.set_roster(roster);
        for p in out {
            tracing::warn!(peer = %p, "Disconnecting a peer no longer on the roster");
            let _ = self.swarm.disconnect_peer_id(p);
        }
        Ok(())
    }

    /// Whether `root` is whole on disk *and* its download is finished: chunks written
    /// by the blocking writers are in the store a moment before the node handles their
    /// completion (counting their bytes, persisting the artifact), so "complete" waits
    /// for that, and the metrics it reports are final.
    fn is_done(&self, root: &Root) -> bool {
        self.store.is_complete(root) && !self.downloads.contains_key(root)
    }

    fn status(&self, root: &Root) -> Option<ArtifactStatus> {
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
            origin_fetcher: d.and_then(|d| d.leader).map(|p| p.to_base58()),
            error: d.and_then(|d| d.error.clone()),
        })
    }

    fn peer_list(&self) -> Vec<PeerInfo> {
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
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    fn publish(&mut self, g: &Gossip) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(self.topic.clone(), g.encode())
        {
            // InsufficientPeers is normal while alone.
            tracing::debug!(error = %e, "Gossip publish failed");
        }
    }

    fn announce(&mut self, root: Root) {
        let Some(info) = self.store.info(&root) else {
            return;
        };
        self.seq += 1;
        let g = Gossip::Have {
            root,
            size: info.size,
            bitfield: Gossip::bits(&info.have),
            has_list: info.has_list,
            fetching_origin: self
                .downloads
                .get(&root)
                .is_some_and(|d| d.origin.is_some()),
            addrs: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            seq: self.seq,
        };
        self.publish(&g);
    }

    fn redial(&mut self) {
        self.last_redial = Instant::now();
        for addr in self.cfg.static_peers.clone() {
            let peer = addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            if peer.is_some_and(|p| self.swarm.is_connected(&p) || p == self.local) {
                continue;
            }
            if peer.is_none() && self.listen_addrs.contains(&addr) {
                continue;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "Dial failed");
            }
        }
        // Roster members whose addresses we learned from their announcements.
        let dial: Vec<(PeerId, Vec<Multiaddr>)> = self
            .peers
            .iter()
            .filter(|(p, r)| !r.addrs.is_empty() && !self.swarm.is_connected(p))
            .filter(|(p, _)| self.swarm.behaviour().admission.check(p).is_ok())
            .map(|(p, r)| (*p, r.addrs.clone()))
            .collect();
        for (p, addrs) in dial {
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(p)
                .addresses(addrs)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "Peer connected");
                let r = self.peers.entry(peer_id).or_insert_with(PeerRecord::new);
                r.last_seen = Some(Instant::now());
                if num_established.get() == 1 {
                    r.heard = false;
                }
                let addr = endpoint.get_remote_address().clone();
                if endpoint.is_dialer() && !r.addrs.contains(&addr) && r.addrs.len() < 8 {
                    r.addrs.push(addr);
                }
                // Tell the newcomer what we have.
                self.last_full_announce = Instant::now() - self.cfg.announce_interval;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::info!(peer = %peer_id, "Peer disconnected");
                if let Some(r) = self.peers.get_mut(&peer_id) {
                    r.fetching.clear();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Admission(Rejected { peer, addr, reason })) => {
                tracing::warn!(%peer, %addr, %reason, "Refused a connection");
                if !self.roster().contains(&peer) {
                    if !self.peers.contains_key(&peer) && self.peers.len() > 256 + MAX_REJECTED_KEPT
                    {
                        return;
                    }
                    let r = self.peers.entry(peer).or_insert_with(PeerRecord::new);
                    r.rejected = true;
                    r.last_seen = Some(Instant::now());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                message,
                ..
            })) => {
                let Some(source) = message.source else { return };
                self.on_gossip(source, &message.data);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Chunks(ev)) => self.on_chunks(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                for (peer, addr) in list {
                    if self.swarm.behaviour().admission.check(&peer).is_ok()
                        && !self.swarm.is_connected(&peer)
                    {
                        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                            .addresses(vec![addr])
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version, "Identified peer");
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen_addrs.contains(&address) => {
                self.listen_addrs.push(address);
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, data: &[u8]) {
        if !self.roster().contains(&source) {
            return;
        }
        let g = match Gossip::decode(data) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(peer = %source, error = %e, "Dropping a malformed announcement");
                return;
            }
        };
        match g {
            Gossip::Offer { offer } => {
                if self.store.info(&offer.root).is_none()
                    && let Err(e) = self.accept_offer(offer, false)
                {
                    tracing::warn!(peer = %source, error = %e, "Ignoring a gossiped offer");
                }
            }
            ref have @ Gossip::Have {
                root,
                has_list,
                fetching_origin,
                ref addrs,
                ..
            } => {
                let Some(bits) = have.have_bits() else { return };
                let r = self.peers.entry(source).or_insert_with(PeerRecord::new);
                r.last_seen = Some(Instant::now());
                r.heard = true;
                for a in addrs.iter().take(8) {
                    if let Ok(a) = a.parse::<Multiaddr>()
                        && !r.addrs.contains(&a)
                        && r.addrs.len() < 8
                    {
                        r.addrs.push(a);
                    }
                }
                if r.have.len() < 1024 || r.have.contains_key(&root) {
                    r.have.insert(root, (bits, has_list));
                }
                if fetching_origin {
                    r.fetching.insert(root);
                } else {
                    r.fetching.remove(&root);
                }
                if !self.swarm.is_connected(&source) {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(source)
                        .addresses(r.addrs.clone())
                        .build();
                    let _ = self.swarm.dial(opts);
                }
                self.schedule(root);
            }
        }
    }

    fn on_chunks(&mut self, ev: request_response::Event<Request, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_response(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "Chunk request failed");
                self.clear_pending(request_id);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "Inbound chunk request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        tracing::trace!(%peer, ?request, "Serving a request");
        if self.swarm.behaviour().admission.check(&peer).is_err() {
            let _ = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_response(channel, Response::NotFound);
            return;
        }
        let store = self.store.clone();
        let tx = self.internal_tx.clone();
        #[cfg(feature = "test-utils")]
        let fault = self.cfg.fault;
        tokio::task::spawn_blocking(move || {
            let (root, response) = match request {
                Request::ChunkList(root) => (
                    root,
                    match (store.info(&root), store.chunk_list(&root)) {
                        (Some(i), Some(l)) => Response::ChunkList {
                            size: i.size,
                            bytes: l.to_bytes(),
                        },
                        _ => Response::NotFound,
                    },
                ),
                Request::Chunk(root, index) => (
                    root,
                    match store.read_chunk(&root, index) {
                        #[allow(unused_mut)]
                        Ok(mut data) => {
                            #[cfg(feature = "test-utils")]
                            match fault {
                                Some(crate::config::ServeFault::CorruptChunks) => data[0] ^= 0xff,
                                Some(crate::config::ServeFault::TruncateChunks) => {
                                    data.pop();
                                }
                                None => {}
                            }
                            Response::Chunk { index, data }
                        }
                        Err(_) => Response::NotFound,
                    },
                ),
            };
            let _ = tx.blocking_send(Internal::Serve {
                channel,
                response,
                root,
            });
        });
    }

    fn clear_pending(&mut self, id: OutboundRequestId) -> Option<(PeerId, Pending)> {
        let (peer, what) = self.pending.remove(&id)?;
        match &what {
            Pending::List(root) => {
                if let Some(d) = self.downloads.get_mut(root) {
                    d.list_request = None;
                }
            }
            Pending::Chunk(root, index) => {
                if let Some(d) = self.downloads.get_mut(root)
                    && let Some(v) = d.in_flight.get_mut(index)
                {
                    v.retain(|(_, rid, _)| *rid != id);
                    if v.is_empty() {
                        d.in_flight.remove(index);
                    }
                }
            }
        }
        Some((peer, what))
    }

    fn on_response(&mut self, peer: PeerId, id: OutboundRequestId, response: Response) {
        let Some((_, what)) = self.clear_pending(id) else {
            return;
        };
        let store = self.store.clone();
        let tx = self.internal_tx.clone();
        match (what, response) {
            (Pending::List(root), Response::ChunkList { size, bytes }) => {
                tokio::task::spawn_blocking(move || {
                    let result = match store.info(&root) {
                        Some(i) if i.size != size => {
                            Err(StoreError::Chunk(crate::chunks::ChunkError::BadSize(size)))
                        }
                        _ => store.set_chunk_list(root, &bytes),
                    };
                    let _ = tx.blocking_send(Internal::PeerList { peer, root, result });
                });
            }
            (Pending::Chunk(root, index), Response::Chunk { index: got, data }) => {
                let Some(d) = self.downloads.get_mut(&root) else {
                    return;
                };
                if got != index {
                    self.punish(
                        peer,
                        root,
                        &format!("answered chunk {got} for chunk {index}"),
                    );
                    return;
                }
                if d.have.get(index) || !d.pending_writes.insert(index) {
                    return; // endgame duplicate
                }
                let bytes = data.len() as u64;
                tokio::task::spawn_blocking(move || {
                    let result = store.write_chunk(root, index, &data);
                    let _ = tx.blocking_send(Internal::PeerChunk {
                        peer,
                        root,
                        index,
                        bytes,
                        result,
                    });
                });
            }
            (Pending::Chunk(root, index), Response::NotFound) => {
                // Stale announcement: forget that the peer has it.
                if let Some(r) = self.peers.get_mut(&peer)
                    && let Some((bits, _)) = r.have.get_mut(&root)
                {
                    let mut fresh = Bitfield::new(bits.len());
                    for i in (0..bits.len()).filter(|i| bits.get(*i) && *i != index) {
                        fresh.set(i);
                    }
                    *bits = fresh;
                }
                self.schedule(root);
            }
            (Pending::List(root), Response::NotFound) => {
                if let Some(r) = self.peers.get_mut(&peer)
                    && let Some(h) = r.have.get_mut(&root)
                {
                    h.1 = false;
                }
            }
            (Pending::List(root) | Pending::Chunk(root, _), _) => {
                self.punish(peer, root, "answered with the wrong response kind");
            }
        }
    }

    fn punish(&mut self, peer: PeerId, root: Root, why: &str) {
        tracing::warn!(%peer, %root, why, "Banning a peer that served bad data");
        let until = Instant::now() + self.cfg.ban_duration;
        self.swarm.behaviour_mut().admission.ban(peer, until);
        let _ = self.swarm.disconnect_peer_id(peer);
        let r = self.peers.entry(peer).or_insert_with(PeerRecord::new);
        r.bad_chunks += 1;
        r.have.clear();
        r.fetching.clear();
        self.metrics.entry(root).or_default().rejected_chunks += 1;
        // Requests in flight to it are lost with the connection; free them now.
        let ids: Vec<OutboundRequestId> = self
            .pending
            .iter()
            .filter(|(_, (p, _))| *p == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.clear_pending(id);
        }
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Serve {
                channel,
                response,
                root,
            } => {
                if let Response::Chunk { data, .. } = &response {
                    self.metrics.entry(root).or_default().served_bytes += data.len() as u64;
                }
                tracing::trace!(%root, "Sending a response");
                if self
                    .swarm
                    .behaviour_mut()
                    .chunks
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!(%root, "The requester went away before the response");
                }
            }
            Internal::PeerChunk {
                peer,
                root,
                index,
                bytes,
                result,
            } => {
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.pending_writes.remove(&index);
                }
                match result {
                    Ok(w) => {
                        if w == Written::New {
                            self.metrics.entry(root).or_default().peer_bytes += bytes;
                        }
                        self.chunk_arrived(root, index);
                    }
                    Err(StoreError::Chunk(e)) => self.punish(peer, root, &e.to_string()),
                    Err(e) => tracing::error!(%root, index, error = %e, "Failed to store a chunk"),
                }
                self.schedule(root);
            }
            Internal::PeerList { peer, root, result } => {
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.list_request = None;
                }
                match result {
                    Ok(list) => {
                        if let Some(d) = self.downloads.get_mut(&root) {
                            d.list = Some(list);
                            d.dirty = true;
                        }
                        self.schedule(root);
                    }
                    Err(StoreError::Chunk(e)) => self.punish(peer, root, &e.to_string()),
                    Err(e) => tracing::error!(%root, error = %e, "Failed to store a chunk list"),
                }
            }
        }
    }

    fn on_origin(&mut self, root: Root, ev: OriginEvent) {
        match ev {
            OriginEvent::Bytes(n) => self.metrics.entry(root).or_default().origin_bytes += n,
            OriginEvent::ListReady => {
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.list = self.store.chunk_list(&root);
                    d.dirty = true;
                }
            }
            OriginEvent::Chunk(index) => self.chunk_arrived(root, index),
            OriginEvent::Done => {
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.origin = None;
                    d.dirty = true;
                }
                self.schedule(root);
            }
            OriginEvent::Failed(e) => {
                tracing::error!(%root, error = %e, "Origin download gave up");
                let live: Vec<PeerId> = self
                    .peers
                    .keys()
                    .filter(|p| self.usable_peer(p))
                    .copied()
                    .collect();
                let local = self.local;
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.origin = None;
                    d.dirty = true;
                    // Pass our turn: the next live unit tries (we stay a peer fetcher).
                    d.excluded.insert(local);
                    if live.iter().all(|p| d.excluded.contains(p)) {
                        // Every live unit tried: the offer is bad or origin is down.
                        d.error = Some(e.clone());
                    }
                }
                if let Some(ws) = self.waiters.remove(&root) {
                    let fail = self.downloads.get(&root).is_some_and(|d| d.error.is_some());
                    for w in ws {
                        if fail {
                            let _ = w.send(Err(P2pError::Failed(root, e.clone())));
                        } else {
                            self.waiters.entry(root).or_default().push(w);
                        }
                    }
                }
            }
        }
    }

    fn chunk_arrived(&mut self, root: Root, index: u32) {
        let Some(d) = self.downloads.get_mut(&root) else {
            return;
        };
        d.have.set(index);
        d.dirty = true;
        d.last_progress = Instant::now();
        if d.have.is_full() {
            self.finish(root);
        }
    }

    fn finish(&mut self, root: Root) {
        if let Some(mut d) = self.downloads.remove(&root) {
            if let Some(o) = d.origin.take() {
                o.abort.abort();
            }
            let m = self.metrics.entry(root).or_default();
            m.time_to_complete = Some(d.started.elapsed());
            tracing::info!(%root, ms = d.started.elapsed().as_millis() as u64, origin_bytes = m.origin_bytes, peer_bytes = m.peer_bytes, "Artifact complete");
            if let Err(e) = self.store.persist(&root) {
                tracing::error!(%root, error = %e, "Failed to persist a completed artifact");
            }
            self.announce(root);
        }
        if let Some(ws) = self.waiters.remove(&root) {
            for w in ws {
                let _ = w.send(Ok(self.store.data_path(&root)));
            }
        }
    }

    fn usable_peer(&self, p: &PeerId) -> bool {
        self.swarm.is_connected(p) && self.swarm.behaviour().admission.check(p).is_ok()
    }

    /// Fetch scheduling for one artifact: rarest first over up to `max_peers` peers,
    /// `requests_per_peer` each; endgame duplicates once every missing chunk is asked.
    fn schedule(&mut self, root: Root) {
        let Some(d) = self.downloads.get(&root) else {
            return;
        };
        let now = Instant::now();
        let holders: Vec<(PeerId, Bitfield, bool)> = self
            .peers
            .iter()
            .filter(|(p, _)| self.usable_peer(p))
            .filter_map(|(p, r)| r.have.get(&root).map(|(b, l)| (*p, b.clone(), *l)))
            .collect();
        if d.list.is_none() {
            let busy = d
                .list_request
                .is_some_and(|(_, t)| now.duration_since(t) < self.cfg.request_timeout);
            if busy || d.origin.is_some() {
                return;
            }
            let mut with_list: Vec<PeerId> = holders.iter().filter(|h| h.2).map(|h| h.0).collect();
            with_list.shuffle(&mut rand::rng());
            if let Some(p) = with_list.first().copied() {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .chunks
                    .send_request(&p, Request::ChunkList(root));
                self.pending.insert(id, (p, Pending::List(root)));
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.list_request = Some((p, now));
                }
            }
            return;
        }
        let n = d.have.len();
        let mut rarity = vec![0u32; n as usize];
        for (_, b, _) in &holders {
            for i in 0..n {
                if b.get(i) {
                    rarity[i as usize] += 1;
                }
            }
        }
        let missing: Vec<u32> = (0..n)
            .filter(|i| !d.have.get(*i) && !d.pending_writes.contains(i) && rarity[*i as usize] > 0)
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        for v in d.in_flight.values() {
            for (p, _, _) in v {
                *load.entry(*p).or_default() += 1;
            }
        }
        let mut order: Vec<(PeerId, Bitfield)> =
            holders.into_iter().map(|(p, b, _)| (p, b)).collect();
        order.shuffle(&mut rand::rng());
        order.sort_by_key(|(p, _)| load.get(p).copied().unwrap_or(0));
        let mut active: HashSet<PeerId> = load.keys().copied().collect();
        let mut asked: HashMap<u32, usize> =
            d.in_flight.iter().map(|(i, v)| (*i, v.len())).collect();
        let mut sends: Vec<(PeerId, u32)> = Vec::new();
        let mut rng = rand::rng();
        for (p, bits) in order {
            if !active.contains(&p) && active.len() >= self.cfg.max_peers {
                continue;
            }
            let mut l = load.get(&p).copied().unwrap_or(0);
            while l < self.cfg.requests_per_peer {
                let unasked: Vec<u32> = missing
                    .iter()
                    .copied()
                    .filter(|i| bits.get(*i) && !asked.contains_key(i))
                    .collect();
                let pick = if !unasked.is_empty() {
                    let best = unasked
                        .iter()
                        .map(|i| rarity[*i as usize])
                        .min()
                        .unwrap_or(0);
                    let rarest: Vec<u32> = unasked
                        .into_iter()
                        .filter(|i| rarity[*i as usize] == best)
                        .collect();
                    rarest.choose(&mut rng).copied()
                } else {
                    // Endgame: every missing chunk is asked; ask a second peer for the
                    // least-asked chunk it has and is not already asked for.
                    let all_asked = missing.iter().all(|i| asked.contains_key(i));
                    if !all_asked {
                        None
                    } else {
                        let d = &self.downloads[&root];
                        missing
                            .iter()
                            .copied()
                            .filter(|i| bits.get(*i) && asked.get(i).copied().unwrap_or(0) < 2)
                            .filter(|i| {
                                !d.in_flight
                                    .get(i)
                                    .is_some_and(|v| v.iter().any(|(q, _, _)| *q == p))
                            })
                            .filter(|i| !sends.contains(&(p, *i)))
                            .min_by_key(|i| asked.get(i).copied().unwrap_or(0))
                    }
                };
                let Some(i) = pick else { break };
                *asked.entry(i).or_default() += 1;
                sends.push((p, i));
                l += 1;
                active.insert(p);
            }
        }
        for (p, i) in sends {
            let id = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_request(&p, Request::Chunk(root, i));
            self.pending.insert(id, (p, Pending::Chunk(root, i)));
            if let Some(d) = self.downloads.get_mut(&root) {
                d.in_flight.entry(i).or_default().push((p, id, now));
            }
        }
    }

    /// The origin election for one artifact (see docs/p2p.md): the lowest peer id among
    /// this unit and its connected roster peers, minus those passed over for stalling,
    /// fetches from origin; a fetcher that sees a lower live fetcher stops.
    fn elect(&mut self, root: Root) {
        let now = Instant::now();
        let local = self.local;
        let Some(d) = self.downloads.get(&root) else {
            return;
        };
        let Some(offer) = d.offer.clone() else { return };
        if d.error.is_some() || now.duration_since(d.started) < self.cfg.election_delay {
            return;
        }
        let live: Vec<PeerId> = self
            .peers
            .keys()
            .filter(|p| self.usable_peer(p))
            .copied()
            .collect();
        let mut union = d.have.clone();
        for p in &live {
            if let Some((b, _)) = self.peers[p].have.get(&root) {
                for i in 0..b.len() {
                    if b.get(i) {
                        union.set(i);
                    }
                }
            }
        }
        // Decide only on a full view: every live peer has announced since it connected
        // (bounded: after 4 election delays, decide anyway).
        let unheard = live.iter().any(|p| !self.peers[p].heard);
        if unheard && now.duration_since(d.started) < 4 * self.cfg.election_delay {
            return;
        }
        let excluded = d.excluded.clone();
        let lower_fetcher = live
            .iter()
            .any(|p| *p < local && !excluded.contains(p) && self.peers[p].fetching.contains(&root));
        let leader = std::iter::once(local)
            .chain(live.iter().copied())
            .filter(|p| !excluded.contains(p))
            .min();
        let d = self.downloads.get_mut(&root).expect("checked above");
        if d.origin.is_some() {
            if lower_fetcher {
                tracing::info!(%root, "A lower live unit fetches from origin; stopping ours");
                if let Some(o) = d.origin.take() {
                    o.abort.abort();
                }
                d.dirty = true;
            }
            return;
        }
        if union.is_full() {
            d.leader = None;
            return;
        }
        if leader != d.leader {
            d.leader = leader;
            d.last_progress = now;
        }
        if union.count() > d.last_union {
            d.last_union = union.count();
            d.last_progress = now;
        }
        match leader {
            Some(l) if l == local => {
                tracing::info!(%root, "This unit fetches from origin");
                let job = OriginJob {
                    offer,
                    store: self.store.clone(),
                    elsewhere: union,
                    events: self.origin_tx.clone(),
                    attempts: self.cfg.origin_attempts,
                    read_timeout: self.cfg.stall_timeout.max(Duration::from_secs(5)),
                };
                let h = tokio::spawn(origin::run(job));
                d.origin = Some(OriginRun {
                    abort: h.abort_handle(),
                });
                d.dirty = true;
                d.last_progress = now;
            }
            Some(l) => {
                if now.duration_since(d.last_progress) > self.cfg.stall_timeout {
                    tracing::warn!(%root, fetcher = %l, "Origin fetcher stalled; passing it over");
                    d.excluded.insert(l);
                    d.last_progress = now;
                }
            }
            None => {
                // Everyone, us included, was passed over: start a new round.
                d.excluded.clear();
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for (root, d) in &self.downloads {
            tracing::trace!(
                %root,
                have = d.have.count(),
                in_flight = d.in_flight.len(),
                writes = d.pending_writes.len(),
                list = d.list.is_some(),
                holders = self.peers.values().filter(|r| r.have.contains_key(root)).count(),
                "Download state"
            );
        }
        let roots: Vec<Root> = self.downloads.keys().copied().collect();
        for root in roots {
            // Requests older than the timeout are dropped by request-response itself
            // (OutboundFailure::Timeout), which frees their slot.
            self.elect(root);
            self.schedule(root);
            if let Some(d) = self.downloads.get_mut(&root)
                && d.dirty
                && now.duration_since(d.last_announce) >= ANNOUNCE_MIN_GAP
            {
                d.dirty = false;
                d.last_announce = now;
                self.announce(root);
            }
        }
        if now.duration_since(self.last_full_announce) >= self.cfg.announce_interval {
            self.last_full_announce = now;
            for info in self.store.list() {
                if info.has_list {
                    self.announce(info.root);
                }
            }
        }
        if now.duration_since(self.last_redial) >= Duration::from_secs(2) {
            self.redial();
        }
    }
}
