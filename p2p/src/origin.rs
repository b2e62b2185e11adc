//! The origin download: HTTP GET of the chunk list, then HTTP Range requests for the
//! runs of chunks that nobody in the store has, each chunk verified and written as it
//! completes. Runs as its own task; reports to the node over a bounded channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::Offer;
use crate::chunks::{Bitfield, CHUNK_SIZE, chunk_count, chunk_len};
use crate::store::Store;

/// What the origin task tells the node.
#[derive(Debug)]
pub(crate) enum OriginEvent {
    /// Bytes received from origin (counted as they arrive, including any discarded).
    Bytes(u64),
    /// The chunk list is in the store.
    ListReady,
    /// A chunk was verified and written.
    Chunk(u32),
    /// Every planned chunk is in; the task ended.
    Done,
    /// Gave up after the configured attempts.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
enum OriginError {
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("origin answered status {0}")]
    Status(u16),
    #[error("origin sent more bytes than asked")]
    TooLong,
    #[error("origin stream ended early")]
    Short,
    #[error("origin stalled for {0:?}")]
    Stalled(Duration),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub(crate) struct OriginJob {
    pub offer: Offer,
    pub store: Arc<Store>,
    /// Chunks some live unit had when the job started: fetched from peers instead.
    pub elsewhere: Bitfield,
    pub events: mpsc::Sender<(crate::chunks::Root, OriginEvent)>,
    pub attempts: u32,
    pub read_timeout: Duration,
}

pub(crate) async fn run(job: OriginJob) {
    let root = job.offer.root;
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = job
                .events
                .send((root, OriginEvent::Failed(e.to_string())))
                .await;
            return;
        }
    };
    let mut last = String::new();
    for attempt in 0..job.attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
        }
        match attempt_once(&job, &client).await {
            Ok(()) => {
                let _ = job.events.send((root, OriginEvent::Done)).await;
                return;
            }
            Err(e) => {
                tracing::warn!(%root, attempt, error = %e, "Origin download attempt failed");
                last = e.to_string();
            }
        }
    }
    let _ = job.events.send((root, OriginEvent::Failed(last))).await;
}

async fn attempt_once(job: &OriginJob, client: &reqwest::Client) -> Result<(), OriginError> {
    let root = job.offer.root;
    let size = job.offer.size;
    let n = chunk_count(size);
    if job.store.chunk_list(&root).is_none() {
        let expected = n as usize * 32;
        let mut resp = client.get(&job.offer.chunks_url).send().await?;
        if !resp.status().is_success() {
            return Err(OriginError::Status(resp.status().as_u16()));
        }
        let mut body = Vec::with_capacity(expected);
        while let Some(b) = next_chunk(&mut resp, job.read_timeout).await? {
            let _ = job
                .events
                .send((root, OriginEvent::Bytes(b.len() as u64)))
                .await;
            if body.len() + b.len() > expected {
                return Err(OriginError::TooLong);
            }
            body.extend_from_slice(&b);
        }
        let store = job.store.clone();
        tokio::task::spawn_blocking(move || store.set_chunk_list(root, &body)).await??;
        let _ = job.events.send((root, OriginEvent::ListReady)).await;
    }
    // Runs of chunks that neither we nor (at start) any live peer has.
    let have = job
        .store
        .bitfield(&root)
        .unwrap_or_else(|| Bitfield::new(n));
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for i in 0..n {
        if have.get(i) || job.elsewhere.get(i) {
            continue;
        }
        match runs.last_mut() {
            Some((_, end)) if *end == i => *end = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    for (start, end) in runs {
        fetch_run(job, client, start, end).await?;
    }
    Ok(())
}

async fn next_chunk(
    resp: &mut reqwest::Response,
    timeout: Duration,
) -> Result<Option<bytes::Bytes>, OriginError> {
    match tokio::time::timeout(timeout, resp.chunk()).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(OriginError::Stalled(timeout)),
    }
}

async fn fetch_run(
    job: &OriginJob,
    client: &reqwest::Client,
    start: u32,
    end: u32,
) -> Result<(), OriginError> {
    let root = job.offer.root;
    let size = job.offer.size;
    let first = start as u64 * CHUNK_SIZE;
    let last = (end as u64 * CHUNK_SIZE).min(size) - 1;
    let mut resp = client
        .get(&job.offer.url)
        .header("Range", format!("bytes={first}-{last}"))
        .send()
        .await?;
    // A server that ignores Range sends the whole body from byte 0: skip to `first`.
    let mut skip = match resp.status().as_u16() {
        206 => 0,
        200 => first,
        s => return Err(OriginError::Status(s)),
    };
    let mut index = start;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE as usize);
    while index < end {
        let Some(b) = next_chunk(&mut resp, job.read_timeout).await? else {
            return Err(OriginError::Short);
        };
        let _ = job
            .events
            .send((root, OriginEvent::Bytes(b.len() as u64)))
            .await;
        let mut b = &b[..];
        if skip > 0 {
            let k = (skip as usize).min(b.len());
            b = &b[k..];
            skip -= k as u64;
        }
        while !b.is_empty() {
            if index >= end {
                return Err(OriginError::TooLong);
            }
            let want = chunk_len(size, index) as usize;
            let k = (want - buf.len()).min(b.len());
            buf.extend_from_slice(&b[..k]);
            b = &b[k..];
            if buf.len() == want {
                let data = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK_SIZE as usize));
                let store = job.store.clone();
                let i = index;
                tokio::task::spawn_blocking(move || store.write_chunk(root, i, &data)).await??;
                let _ = job.events.send((root, OriginEvent::Chunk(i))).await;
                index += 1;
            }
        }
    }
    Ok(())
}
