//! Test and demo fixtures (feature `test-utils`): a loopback HTTP origin that serves one
//! artifact file with `Range` support, its chunk list, and counts the bytes it sent, so
//! tests measure origin traffic from the origin's side; and offers signed with the
//! public demo HQ key.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::chunks::ChunkList;
use crate::roster::demo_hq_keypair;
use crate::{Offer, SignedOffer};

/// How long [`demo_signed`] offers stay valid.
pub const DEMO_OFFER_TTL: Duration = Duration::from_secs(3600);

/// `offer` signed for `store_id` with [`demo_hq_keypair`], valid for [`DEMO_OFFER_TTL`].
pub fn demo_signed(offer: Offer, store_id: &str) -> SignedOffer {
    let expires = crate::offer::now_ms() + DEMO_OFFER_TTL.as_millis() as u64;
    SignedOffer::sign(&demo_hq_keypair(), offer, store_id, expires)
}

struct Shared {
    file: PathBuf,
    size: u64,
    list: Vec<u8>,
    bytes_sent: AtomicU64,
    requests: AtomicU64,
    /// Every HTTP request, whatever its path.
    hits: AtomicU64,
    /// Connections being served now.
    open: AtomicU64,
    /// Bytes per second per connection, 0 for unlimited.
    rate: AtomicU64,
    /// Bytes per second shared by all connections (the store's WAN link), 0 for
    /// unlimited.
    link_rate: AtomicU64,
    /// When the shared link is free again.
    link_free_at: Mutex<Option<tokio::time::Instant>>,
}

/// A loopback HTTP/1.1 origin for one artifact.
pub struct OriginServer {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    list: ChunkList,
}

impl OriginServer {
    /// Serves `file` on 127.0.0.1 (port 0) at `/artifact` and its chunk list at
    /// `/artifact.chunks`.
    pub async fn start(file: &Path) -> std::io::Result<OriginServer> {
        let path = file.to_path_buf();
        let list =
            tokio::task::spawn_blocking(move || ChunkList::compute(std::fs::File::open(&path)?))
                .await
                .map_err(std::io::Error::other)??;
        let shared = Arc::new(Shared {
            file: file.to_path_buf(),
            size: list.size(),
            list: list.to_bytes(),
            bytes_sent: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            open: AtomicU64::new(0),
            rate: AtomicU64::new(0),
            link_rate: AtomicU64::new(0),
            link_free_at: Mutex::new(None),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    s.open.fetch_add(1, Ordering::Relaxed);
                    let _ = handle(sock, s.clone()).await;
                    s.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(OriginServer {
            shared,
            addr,
            task,
            list,
        })
    }

    /// The offer HQ would send for this artifact.
    pub fn offer(&self) -> Offer {
        Offer {
            root: self.list.root(),
            size: self.list.size(),
            url: format!("http://{}/artifact", self.addr),
            chunks_url: format!("http://{}/artifact.chunks", self.addr),
        }
    }

    /// Artifact body bytes sent so far (chunk list bytes excluded).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::Relaxed)
    }

    /// Connections being served now. A client that went away still counts until the
    /// origin's next write to it fails; until then the origin may put more bytes into
    /// the socket's buffers, counted as sent.
    pub fn open_connections(&self) -> u64 {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Artifact requests served.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// HTTP requests of any path received (the artifact, its chunk list, anything
    /// else), so a test can prove nobody asked origin for anything.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// Limits the body rate of each connection (bytes per second; 0 = unlimited).
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.shared.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Limits the body rate of all connections together (bytes per second; 0 =
    /// unlimited): a store's WAN link, which every unit downloading at once shares.
    pub fn set_link_rate(&self, bytes_per_sec: u64) {
        self.shared
            .link_rate
            .store(bytes_per_sec, Ordering::Relaxed);
    }
}

impl Drop for OriginServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(mut sock: TcpStream, s: Arc<Shared>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 || head.len() > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    s.hits.fetch_add(1, Ordering::Relaxed);
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    match path.as_str() {
        "/artifact.chunks" => {
            let h = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                s.list.len()
            );
            sock.write_all(h.as_bytes()).await?;
            sock.write_all(&s.list).await?;
        }
        "/artifact" => {
            s.requests.fetch_add(1, Ordering::Relaxed);
            let (start, end, status) = match range.as_deref().and_then(parse_range) {
                Some((a, b)) if a <= b && b < s.size => (a, b, "206 Partial Content"),
                Some(_) => {
                    sock.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await?;
                    return Ok(());
                }
                None => (0, s.size - 1, "200 OK"),
            };
            let len = end - start + 1;
            let h = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nContent-Range: bytes {start}-{end}/{}\r\nConnection: close\r\n\r\n",
                s.size
            );
            sock.write_all(h.as_bytes()).await?;
            let mut f = tokio::fs::File::open(&s.file).await?;
            f.seek(std::io::SeekFrom::Start(start)).await?;
            let mut left = len;
            let mut piece = vec![0u8; 64 * 1024];
            while left > 0 {
                let k = (piece.len() as u64).min(left) as usize;
                f.read_exact(&mut piece[..k]).await?;
                sock.write_all(&piece[..k]).await?;
                s.bytes_sent.fetch_add(k as u64, Ordering::Relaxed);
                left -= k as u64;
                let rate = s.rate.load(Ordering::Relaxed);
                if rate > 0 {
                    tokio::time::sleep(Duration::from_secs_f64(k as f64 / rate as f64)).await;
                }
                let link = s.link_rate.load(Ordering::Relaxed);
                if link > 0 {
                    // Reserve this piece's time on the shared link, then wait for it.
                    let wake = {
                        let mut free = s.link_free_at.lock().unwrap_or_else(|p| p.into_inner());
                        let now = tokio::time::Instant::now();
                        let start = free.map_or(now, |f| f.max(now));
                        let end = start + Duration::from_secs_f64(k as f64 / link as f64);
                        *free = Some(end);
                        end
                    };
                    tokio::time::sleep_until(wake).await;
                }
            }
        }
        _ => {
            sock.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        }
    }
    sock.shutdown().await
}

fn parse_range(v: &str) -> Option<(u64, u64)> {
    let r = v.strip_prefix("bytes=")?;
    let (a, b) = r.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Writes `mb` MiB of random bytes to `path` (for tests and the example).
pub fn random_file(path: &Path, bytes: u64) -> std::io::Result<()> {
    use rand::RngCore;
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut rng = rand::rng();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let k = (buf.len() as u64).min(left) as usize;
        rng.fill_bytes(&mut buf[..k]);
        f.write_all(&buf[..k])?;
        left -= k as u64;
    }
    f.flush()
}
