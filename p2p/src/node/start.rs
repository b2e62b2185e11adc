//! Starting a unit: its identity key, the swarm and its behaviours, the node task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{identify, mdns, noise, tcp, yamux};
use tokio::sync::mpsc;

use super::{Behaviour, COMMAND_QUEUE, Client, INTERNAL_QUEUE, Node, PeerRecord};
use crate::P2pError;
use crate::admission::Admission;
use crate::config::P2pConfig;
use crate::roster::Roster;
use crate::store::Store;
use crate::wire::{self, ChunkCodec};

/// Loads (or creates, mode 0600) `data_dir/identity.key`, the identity a unit of tests,
/// demos and the example keeps in a plain file (see [`crate::keyfile`]), so HQ (or a
/// test) can put its peer id on the roster before starting it.
pub fn identity_for(data_dir: &std::path::Path) -> Result<Keypair, P2pError> {
    crate::keyfile::load_or_create(&data_dir.join("identity.key"))
}

/// Starts a unit: verifies the roster, opens the store, binds the listeners, dials the
/// static peers, resumes unfinished downloads, and spawns the swarm task.
pub async fn start(cfg: P2pConfig) -> Result<Client, P2pError> {
    cfg.validate()?;
    let roster: Roster = cfg.roster.verify(&cfg.hq_key)?;
    if roster.store_id.len() > crate::offer::MAX_STORE_ID_LEN {
        return Err(P2pError::Config(format!(
            "the roster's store id is over {} bytes: no offer could name it",
            crate::offer::MAX_STORE_ID_LEN
        )));
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| P2pError::Config(format!("data dir {}: {e}", cfg.data_dir.display())))?;
    let keypair = cfg.keypair.clone();
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
    // Resume what was unfinished before a restart, if HQ signed it for this store (the
    // offer was checked when it came; this checks the copy on disk was not changed).
    // Its expiry bounds when a unit may take an offer, not how long a taken one runs.
    for info in store.list() {
        let Some(signed) = info.offer.as_ref() else {
            continue;
        };
        if info.have.is_full() || info.refs == 0 {
            continue;
        }
        match signed.verify_signature(&cfg.hq_key, &roster.store_id) {
            Ok(offer) => {
                tracing::info!(root = %info.root, present = info.have.count(), "Resuming download");
                node.begin_download(info.root, info.size, Some(offer.clone()));
            }
            Err(e) => {
                tracing::warn!(root = %info.root, error = %e, "Not resuming a download whose stored offer HQ did not sign; HQ must offer it again");
            }
        }
    }
    node.redial();
    let client = Client {
        tx: cmd_tx,
        peer_id: local,
        hq_key: cfg.hq_key.clone(),
        store_id: roster.store_id.clone().into(),
        listen_addrs: Arc::new(listen_addrs),
        data_dir: cfg.data_dir.clone(),
    };
    tokio::spawn(node.run());
    Ok(client)
}
