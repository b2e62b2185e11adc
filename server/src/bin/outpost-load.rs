//! `outpost-load`: an HTTP/1.1 load generator for the Outpost store server.
//!
//! It samples real products from the catalog, then drives `--connections` keep-alive
//! connections, one request in flight on each, for a warm-up and then a recorded window,
//! and prints a readable summary followed by one JSON line with the same figures:
//!
//! ```text
//! outpost-load --url http://127.0.0.1:8080 --scenario checkout --connections 64 --duration 10 --warmup 2
//! ```
//!
//! Scenarios:
//! - `sku`: `GET /api/v1/products/{sku}` for random sampled SKUs;
//! - `barcode`: `GET /api/v1/products?barcode=…` for random sampled barcodes;
//! - `checkout`: `POST /api/v1/checkout` with three distinct random products sold by the
//!   piece, a fresh `Idempotency-Key` each; the storage counters of `/metrics` are read
//!   before and after the recorded window to report fsyncs per checkout.
//!
//! Between the warm-up and the recorded window every connection finishes its request in
//! flight and waits, so that the `/metrics` reading before the window sees no warm-up
//! checkout still being written. Latency is measured from sending a request to the end of
//! its response body, in microseconds, for every response whatever its status; a non-2xx
//! status and a transport error (connect, send, read or timeout) each count as an error.
//! The run always ends by itself: each phase's requests are cut off a few seconds after the
//! phase ends.
//!
//! The server needs credentials: set `OUTPOST_TOKEN` to a terminal token (`outpost
//! terminals add NAME`); it is sent as `Authorization: Bearer` with every request. A
//! terminal may not read `/metrics` (technician / admin), so the fsyncs-per-checkout
//! figure of the checkout scenario is not available with a terminal token yet.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

/// How long requests still in flight may take after a phase ends before they are cut off.
const GRACE: Duration = Duration::from_secs(2);
/// Time limit of each request made outside the load itself (sampling, `/metrics`).
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection gives up after this many transport errors in a row.
const MAX_CONSECUTIVE_ERRORS: u32 = 100;
/// Pause after a transport error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(5);
/// How many non-2xx bodies and transport error messages to keep for diagnosis.
const DIAGNOSTIC_SAMPLES: usize = 3;
/// How many bytes of a non-2xx body to keep.
const BODY_CAPTURE_LIMIT: usize = 2048;
/// Page size used while sampling the catalog (the server's maximum).
const PAGE_LIMIT: usize = 200;
/// Highest latency the histograms hold, in microseconds (larger values are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;
/// Products per checkout cart.
const CART_LINES: usize = 3;
/// The fixed tail of every cash checkout body.
const CHECKOUT_TAIL: &str =
    "],\"payment\":{\"method\":\"cash\",\"tendered\":100000000},\"age_verified\":true}";
/// The fixed tail of every card checkout body (the server's payment terminal pays it).
const CARD_CHECKOUT_TAIL: &str = "],\"payment\":{\"method\":\"card\"},\"age_verified\":true}";
/// The Prometheus counter of group commits flushed to disk (one fsync each).
const FLUSHES_METRIC: &str = "outpost_storage_flushes_total";
/// The Prometheus counter of writer jobs whose writes were kept.
const COMMITTED_JOBS_METRIC: &str = "outpost_storage_committed_jobs_total";

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "outpost-load",
    version,
    about = "HTTP load generator for the Outpost store server"
)]
struct Cli {
    /// Base URL of the server (plain http).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// What to load.
    #[arg(long, value_enum, default_value_t = Scenario::Sku)]
    scenario: Scenario,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    connections: usize,
    /// Seconds recorded.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// Seconds of load before recording starts (not recorded).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    warmup: u64,
    /// How many products to sample from the catalog for SKUs and barcodes.
    #[arg(long, default_value_t = 2000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    sample: usize,
    /// Tokio worker threads for the client (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    threads: usize,
}

/// The kind of request sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `GET /api/v1/products/{sku}`.
    Sku,
    /// `GET /api/v1/products?barcode=…`.
    Barcode,
    /// `POST /api/v1/checkout`, paid in cash.
    Checkout,
    /// `POST /api/v1/checkout`, paid by card through the server's payment terminal.
    CardCheckout,
}

impl Scenario {
    /// The name used on the command line and in the report.
    fn name(self) -> &'static str {
        match self {
            Scenario::Sku => "sku",
            Scenario::Barcode => "barcode",
            Scenario::Checkout => "checkout",
            Scenario::CardCheckout => "card-checkout",
        }
    }
}

/// Where requests go.
#[derive(Debug)]
struct Target {
    /// The URL as given.
    url: String,
    /// The resolved address connections are opened to.
    addr: SocketAddr,
    /// The `Host` header of every request.
    host: HeaderValue,
    /// Path prefix of the URL without a trailing slash (usually empty).
    base: String,
}

impl Target {
    /// Parses `--url` and resolves its host once.
    async fn resolve(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("--url {url:?}: only http:// is supported, not {other}://"),
            None => bail!("--url {url:?} needs a scheme, e.g. http://127.0.0.1:8080"),
        }
        if uri.query().is_some() {
            bail!("--url {url:?} must not have a query string");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--url {url:?} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}:{port}"))?
            .next()
            .with_context(|| format!("{host}:{port} resolves to no address"))?;
        let host_header = HeaderValue::from_str(authority.as_str())
            .context("the URL's host is not a valid Host header")?;
        Ok(Self {
            url: url.to_owned(),
            addr,
            host: host_header,
            base: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The request target for `path` (which starts with `/`) under the base path.
    fn uri(&self, path: &str) -> Result<Uri> {
        let full = format!("{}{path}", self.base);
        Uri::try_from(full.as_str())
            .with_context(|| format!("{full:?} is not a valid request path"))
    }
}

/// Opens one HTTP/1.1 connection with `TCP_NODELAY` and drives it on its own task.
async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    // Errors of the connection surface through the sender; nothing to do with them here.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `Authorization: Bearer $OUTPOST_TOKEN` (a terminal token from `outpost terminals
/// add`), sent with every request when the variable is set: the server needs
/// credentials on every route but `/healthz`.
fn auth_header() -> Option<&'static HeaderValue> {
    static AUTH: std::sync::OnceLock<Option<HeaderValue>> = std::sync::OnceLock::new();
    AUTH.get_or_init(|| {
        std::env::var("OUTPOST_TOKEN")
            .ok()
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {}", t.trim())).ok())
    })
    .as_ref()
}

/// A plain GET request for `uri` with the `Host` (and, when set, `Authorization`) header.
fn get_request(uri: Uri, host: &HeaderValue) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri;
    req.headers_mut().insert(HOST, host.clone());
    if let Some(a) = auth_header() {
        req.headers_mut()
            .insert(hyper::header::AUTHORIZATION, a.clone());
    }
    req
}

/// A connection for the few requests made outside the load (sampling, `/metrics`).
struct SimpleClient<'a> {
    /// Where requests go.
    target: &'a Target,
    /// The open connection.
    sender: SendRequest<Full<Bytes>>,
}

impl<'a> SimpleClient<'a> {
    /// Opens a connection to `target`.
    async fn connect(target: &'a Target) -> Result<Self> {
        let sender = timeout(SETUP_TIMEOUT, connect(target))
            .await
            .with_context(|| format!("connecting to {} timed out", target.url))?
            .with_context(|| format!("cannot reach the server at {}", target.url))?;
        Ok(Self { target, sender })
    }

    /// `GET path`, returning the status and the whole body.
    async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes)> {
        let req = get_request(self.target.uri(path)?, &self.target.host);
        let sender = &mut self.sender;
        let exchange = async move {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        timeout(SETUP_TIMEOUT, exchange)
            .await
            .with_context(|| format!("GET {path} timed out"))?
            .with_context(|| format!("GET {path} on {}", self.target.url))
    }
}

/// The fields of a catalog product this tool uses.
#[derive(Debug, Clone, Deserialize)]
struct Product {
    /// The product's SKU.
    sku: String,
    /// Its barcodes.
    #[serde(default)]
    barcodes: Vec<String>,
    /// `each` or `weight`.
    #[serde(default)]
    sold_by: Option<String>,
    /// Whether it can be sold.
    #[serde(default = "default_active")]
    active: bool,
}

/// Products without an `active` field are taken as active.
fn default_active() -> bool {
    true
}

/// A page of `GET /api/v1/products`.
#[derive(Debug, Deserialize)]
struct ProductPage {
    /// The products of this page.
    items: Vec<Product>,
    /// Cursor of the next page; `None` at the end.
    next_cursor: Option<String>,
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Fetches up to `sample` products, following `next_cursor`.
async fn fetch_sample(target: &Target, sample: usize) -> Result<Vec<Product>> {
    let mut client = SimpleClient::connect(target).await?;
    let mut products: Vec<Product> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/products?limit={PAGE_LIMIT}");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(&percent_encode(c));
        }
        let (status, body) = client.get(&path).await?;
        if !status.is_success() {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
        }
        let page: ProductPage = serde_json::from_slice(&body)
            .with_context(|| format!("GET {path} did not answer a product page"))?;
        if page.items.is_empty() {
            break;
        }
        products.extend(page.items);
        if products.len() >= sample {
            products.truncate(sample);
            break;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if products.is_empty() {
        bail!(
            "the server at {} has no products (GET /api/v1/products is empty): load a catalog first",
            target.url
        );
    }
    Ok(products)
}

/// What each request is made of, prepared once from the sample.
#[derive(Debug)]
enum Work {
    /// GET one of these request targets.
    Get(Vec<Uri>),
    /// POST a checkout of products among these SKUs, each already a JSON string
    /// literal, with this tail (the tender).
    Checkout(Vec<String>, &'static str),
}

impl Work {
    /// Prepares the requests of `scenario` from the sampled products.
    fn prepare(scenario: Scenario, products: &[Product], target: &Target) -> Result<Self> {
        match scenario {
            Scenario::Sku => {
                let uris = products
                    .iter()
                    .map(|p| target.uri(&format!("/api/v1/products/{}", percent_encode(&p.sku))))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Work::Get(uris))
            }
            Scenario::Barcode => {
                let uris = products
                    .iter()
                    .flat_map(|p| p.barcodes.iter())
                    .map(|b| target.uri(&format!("/api/v1/products?barcode={}", percent_encode(b))))
                    .collect::<Result<Vec<_>>>()?;
                if uris.is_empty() {
                    bail!(
                        "none of the {} sampled products has a barcode",
                        products.len()
                    );
                }
                Ok(Work::Get(uris))
            }
            Scenario::Checkout | Scenario::CardCheckout => {
                let skus = products
                    .iter()
                    .filter(|p| p.active && p.sold_by.as_deref() == Some("each"))
                    .map(|p| serde_json::to_string(&p.sku))
                    .collect::<Result<Vec<_>, _>>()
                    .context("encoding a SKU as JSON")?;
                if skus.is_empty() {
                    bail!(
                        "none of the {} sampled products is active and sold by the piece (sold_by \"each\")",
                        products.len()
                    );
                }
                let tail = if scenario == Scenario::CardCheckout {
                    CARD_CHECKOUT_TAIL
                } else {
                    CHECKOUT_TAIL
                };
                Ok(Work::Checkout(skus, tail))
            }
        }
    }

    /// How many distinct request targets or products there are.
    fn len(&self) -> usize {
        match self {
            Work::Get(uris) => uris.len(),
            Work::Checkout(skus, _) => skus.len(),
        }
    }
}

/// Picks `min(out.len(), n)` distinct indexes below `n` into `out`; returns how many.
fn pick_distinct(rng: &mut impl Rng, n: usize, out: &mut [usize]) -> usize {
    let k = n.min(out.len());
    for i in 0..k {
        loop {
            let candidate = rng.random_range(0..n);
            if !out[..i].contains(&candidate) {
                out[i] = candidate;
                break;
            }
        }
    }
    k
}

/// Writes a checkout body for `(JSON-quoted SKU, quantity 1..=9)` lines and the tender
/// `tail` into `buf`.
fn write_checkout_body<'a>(
    buf: &mut String,
    lines: impl IntoIterator<Item = (&'a str, u8)>,
    tail: &str,
) {
    buf.clear();
    buf.push_str("{\"lines\":[");
    for (i, (sku, quantity)) in lines.into_iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str("{\"sku\":");
        buf.push_str(sku);
        buf.push_str(",\"quantity\":");
        buf.push(char::from(b'0' + quantity.clamp(1, 9)));
        buf.push('}');
    }
    buf.push_str(tail);
}

/// State shared by the connection tasks and the coordinator.
struct Shared {
    /// Where requests go.
    target: Target,
    /// The prepared requests.
    work: Work,
    /// Connections done with the warm-up (or given up).
    parked: AtomicUsize,
    /// Signalled whenever `parked` grows.
    parked_notify: Notify,
    /// Non-2xx bodies still wanted for diagnosis.
    bodies_wanted: AtomicUsize,
    /// The first non-2xx bodies: status and (truncated) body.
    bodies: Mutex<Vec<(u16, String)>>,
    /// The first transport errors.
    transport_samples: Mutex<Vec<String>>,
}

impl Shared {
    /// Whether another non-2xx body is wanted.
    fn wants_body(&self) -> bool {
        self.bodies_wanted.load(Ordering::Relaxed) > 0
    }

    /// Keeps a non-2xx body if fewer than [`DIAGNOSTIC_SAMPLES`] are kept.
    fn keep_body(&self, status: StatusCode, body: &[u8]) {
        if let Ok(mut bodies) = self.bodies.lock() {
            if bodies.len() < DIAGNOSTIC_SAMPLES {
                bodies.push((status.as_u16(), String::from_utf8_lossy(body).into_owned()));
            }
            self.bodies_wanted.store(
                DIAGNOSTIC_SAMPLES.saturating_sub(bodies.len()),
                Ordering::Relaxed,
            );
        }
    }

    /// Keeps a transport error message if fewer than [`DIAGNOSTIC_SAMPLES`] are kept.
    fn keep_transport_error(&self, err: &anyhow::Error) {
        if let Ok(mut samples) = self.transport_samples.lock()
            && samples.len() < DIAGNOSTIC_SAMPLES
        {
            samples.push(format!("{err:#}"));
        }
    }

    /// Marks one connection as done with the warm-up.
    fn park(&self) {
        self.parked.fetch_add(1, Ordering::AcqRel);
        self.parked_notify.notify_one();
    }

    /// Waits until `n` connections are parked or `deadline` passes; whether all were.
    async fn wait_parked(&self, n: usize, deadline: Instant) -> bool {
        loop {
            if self.parked.load(Ordering::Acquire) >= n {
                return true;
            }
            if timeout_at(deadline, self.parked_notify.notified())
                .await
                .is_err()
            {
                return self.parked.load(Ordering::Acquire) >= n;
            }
        }
    }
}

/// What one connection saw during the recorded window.
#[derive(Debug)]
struct Stats {
    /// Latency of every response, in microseconds.
    hist: Histogram<u64>,
    /// Responses by status code.
    statuses: BTreeMap<u16, u64>,
    /// Connect, send, read and timeout errors.
    transport_errors: u64,
}

impl Stats {
    /// Empty statistics.
    fn new() -> Result<Self> {
        Ok(Self {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .context("creating a latency histogram")?,
            statuses: BTreeMap::new(),
            transport_errors: 0,
        })
    }

    /// Adds `other` to these statistics.
    fn merge(&mut self, other: &Stats) -> Result<()> {
        self.hist
            .add(&other.hist)
            .context("merging latency histograms")?;
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_insert(0) += count;
        }
        self.transport_errors += other.transport_errors;
        Ok(())
    }

    /// Records one response.
    fn record(&mut self, status: StatusCode, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.hist.saturating_record(us);
        *self.statuses.entry(status.as_u16()).or_insert(0) += 1;
    }

    /// Responses with a 2xx status.
    fn successes(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, c)| c)
            .sum()
    }
}

/// One connection's driver: one request in flight, back to back.
struct Worker {
    /// Shared state.
    shared: Arc<Shared>,
    /// Index of this connection.
    id: usize,
    /// The open connection, if any.
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Picks products.
    rng: SmallRng,
    /// Reused checkout body buffer.
    body: String,
    /// `X-Terminal-Id` of this connection.
    terminal: HeaderValue,
    /// Transport errors in a row.
    consecutive_errors: u32,
    /// Set after [`MAX_CONSECUTIVE_ERRORS`] transport errors in a row.
    dead: bool,
    /// What was recorded.
    stats: Stats,
}

impl Worker {
    /// A worker for connection `id`.
    fn new(shared: Arc<Shared>, id: usize) -> Result<Self> {
        let terminal =
            HeaderValue::from_str(&format!("load-{id}")).context("building X-Terminal-Id")?;
        Ok(Self {
            shared,
            id,
            sender: None,
            rng: SmallRng::seed_from_u64(rand::random::<u64>() ^ (id as u64)),
            body: String::with_capacity(256),
            terminal,
            consecutive_errors: 0,
            dead: false,
            stats: Stats::new()?,
        })
    }

    /// Runs the warm-up, waits for the recorded window, runs it, and returns what it recorded.
    async fn run(
        mut self,
        warmup_end: Instant,
        mut window: watch::Receiver<Option<Instant>>,
    ) -> Stats {
        if Instant::now() < warmup_end {
            self.run_phase(warmup_end, false).await;
        }
        self.shared.park();
        let end = match window.wait_for(Option::is_some).await {
            Ok(end) => *end,
            Err(_) => None,
        };
        if let Some(end) = end {
            self.run_phase(end, true).await;
        }
        self.stats
    }

    /// Sends requests back to back until `end`, recording them if `recording`.
    async fn run_phase(&mut self, end: Instant, recording: bool) {
        let hard = end + GRACE;
        while !self.dead && Instant::now() < end {
            match self.exchange(hard, recording).await {
                Ok((status, latency)) => {
                    self.consecutive_errors = 0;
                    if recording {
                        self.stats.record(status, latency);
                    }
                }
                Err(err) => {
                    self.sender = None;
                    if recording {
                        self.stats.transport_errors += 1;
                        self.shared.keep_transport_error(&err);
                    }
                    self.consecutive_errors += 1;
                    if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                        eprintln!(
                            "outpost-load: connection {} gives up after {MAX_CONSECUTIVE_ERRORS} errors in a row: {err:#}",
                            self.id
                        );
                        self.dead = true;
                    } else {
                        sleep_until((Instant::now() + ERROR_BACKOFF).min(end)).await;
                    }
                }
            }
        }
    }

    /// Builds the next request.
    fn next_request(&mut self) -> Result<Request<Full<Bytes>>> {
        match &self.shared.work {
            Work::Get(uris) => {
                let uri = uris[self.rng.random_range(0..uris.len())].clone();
                Ok(get_request(uri, &self.shared.target.host))
            }
            Work::Checkout(skus, tail) => {
                let mut picks = [0usize; CART_LINES];
                let k = pick_distinct(&mut self.rng, skus.len(), &mut picks);
                let mut quantities = [1u8; CART_LINES];
                for q in &mut quantities[..k] {
                    *q = self.rng.random_range(1..=3);
                }
                write_checkout_body(
                    &mut self.body,
                    picks[..k]
                        .iter()
                        .zip(quantities)
                        .map(|(&i, q)| (skus[i].as_str(), q)),
                    tail,
                );
                let mut key = uuid::Uuid::encode_buffer();
                let key = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut key);
                let mut req = Request::new(Full::new(Bytes::copy_from_slice(self.body.as_bytes())));
                *req.method_mut() = Method::POST;
                *req.uri_mut() = checkout_uri(&self.shared.target)?;
                let headers = req.headers_mut();
                headers.insert(HOST, self.shared.target.host.clone());
                if let Some(a) = auth_header() {
                    headers.insert(hyper::header::AUTHORIZATION, a.clone());
                }
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(
                    HeaderName::from_static("idempotency-key"),
                    HeaderValue::from_str(key).context("building Idempotency-Key")?,
                );
                headers.insert(
                    HeaderName::from_static("x-terminal-id"),
                    self.terminal.clone(),
                );
                Ok(req)
            }
        }
    }

    /// Sends one request and reads its response; the status and latency, or a transport error.
    async fn exchange(&mut self, hard: Instant, recording: bool) -> Result<(StatusCode, Duration)> {
        let req = self.next_request()?;
        if self.sender.as_ref().is_some_and(SendRequest::is_closed) {
            self.sender = None;
        }
        if self.sender.is_none() {
            let sender = timeout_at(hard, connect(&self.shared.target))
                .await
                .map_err(|_| anyhow!("connect timed out"))??;
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        timeout_at(hard, sender.ready())
            .await
            .map_err(|_| anyhow!("timed out waiting for the connection"))?
            .context("connection closed")?;
        let started = Instant::now();
        let resp = timeout_at(hard, sender.send_request(req))
            .await
            .map_err(|_| anyhow!("timed out waiting for the response"))?
            .context("sending the request")?;
        let status = resp.status();
        let capture = recording && !status.is_success() && self.shared.wants_body();
        let mut kept = Vec::new();
        timeout_at(hard, drain(resp.into_body(), capture.then_some(&mut kept)))
            .await
            .map_err(|_| anyhow!("timed out reading the response body"))?
            .context("reading the response body")?;
        let latency = started.elapsed();
        if capture {
            self.shared.keep_body(status, &kept);
        }
        Ok((status, latency))
    }
}

/// The request target of a checkout.
fn checkout_uri(target: &Target) -> Result<Uri> {
    if target.base.is_empty() {
        Ok(Uri::from_static("/api/v1/checkout"))
    } else {
        target.uri("/api/v1/checkout")
    }
}

/// Reads a response body to its end, keeping up to [`BODY_CAPTURE_LIMIT`] bytes in `keep`.
async fn drain(mut body: Incoming, mut keep: Option<&mut Vec<u8>>) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let (Some(buf), Some(data)) = (keep.as_deref_mut(), frame.data_ref()) {
            let room = BODY_CAPTURE_LIMIT.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(())
}

/// The sum of the samples of metric `name` (any labels) in Prometheus text, if it is there.
fn parse_metric(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = if let Some(labelled) = rest.strip_prefix('{') {
            match labelled.find('}') {
                Some(close) => &labelled[close + 1..],
                None => continue,
            }
        } else if rest.starts_with(char::is_whitespace) {
            rest
        } else {
            continue;
        };
        if let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// The storage counters of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StorageCounters {
    /// `outpost_storage_flushes_total`.
    flushes: f64,
    /// `outpost_storage_committed_jobs_total`, if reported.
    committed_jobs: Option<f64>,
}

impl StorageCounters {
    /// Parses the counters out of Prometheus text.
    fn parse(text: &str) -> Result<Self> {
        let flushes = parse_metric(text, FLUSHES_METRIC)
            .with_context(|| format!("/metrics has no {FLUSHES_METRIC}"))?;
        Ok(Self {
            flushes,
            committed_jobs: parse_metric(text, COMMITTED_JOBS_METRIC),
        })
    }

    /// Reads the counters from the server.
    async fn read(target: &Target) -> Result<Self> {
        let mut client = SimpleClient::connect(target).await?;
        let (status, body) = client.get("/metrics").await?;
        if !status.is_success() {
            bail!("GET /metrics answered {status}");
        }
        Self::parse(&String::from_utf8_lossy(&body))
    }

    /// How much the counters grew from `before` to `self`.
    fn since(self, before: Self) -> Self {
        Self {
            flushes: self.flushes - before.flushes,
            committed_jobs: self
                .committed_jobs
                .zip(before.committed_jobs)
                .map(|(a, b)| a - b),
        }
    }
}

/// `(fsyncs per checkout, checkouts per fsync)`, each `None` when its divisor is zero.
fn fsync_ratios(flushes: f64, checkouts: u64) -> (Option<f64>, Option<f64>) {
    let checkouts = checkouts as f64;
    let per_checkout = (checkouts > 0.0).then(|| flushes / checkouts);
    let per_fsync = (flushes > 0.0).then(|| checkouts / flushes);
    (per_checkout, per_fsync)
}

/// Rounds to `decimals` decimal places.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Microseconds to milliseconds, rounded to the microsecond.
fn us_to_ms(us: u64) -> f64 {
    round(us as f64 / 1000.0, 3)
}

/// The figures of a run; serialized as the last output line.
#[derive(Debug, Serialize)]
struct Summary {
    /// The scenario run.
    scenario: &'static str,
    /// Connections used.
    connections: usize,
    /// Length of the recorded window, in seconds.
    duration_s: f64,
    /// Responses received in the recorded window, whatever their status.
    requests: u64,
    /// `requests / duration_s`.
    rps: f64,
    /// Median latency.
    p50_ms: f64,
    /// 90th percentile latency.
    p90_ms: f64,
    /// 99th percentile latency.
    p99_ms: f64,
    /// 99.9th percentile latency.
    p999_ms: f64,
    /// Highest latency.
    max_ms: f64,
    /// Non-2xx responses plus transport errors.
    errors: u64,
    /// Responses by status code.
    status_counts: BTreeMap<String, u64>,
    /// Storage flushes (fsyncs) per successful checkout; only for `checkout`.
    fsyncs_per_checkout: Option<f64>,
    /// Successful checkouts per storage flush; only for `checkout`.
    checkouts_per_fsync: Option<f64>,
    /// Responses whose status was not 2xx.
    non_2xx: u64,
    /// Connect, send, read and timeout errors.
    transport_errors: u64,
    /// Warm-up seconds run before recording.
    warmup_s: u64,
    /// Client runtime threads.
    threads: usize,
    /// Growth of the storage counters over the window (checkout only).
    #[serde(skip)]
    storage: Option<StorageCounters>,
}

impl Summary {
    /// Computes the figures from what the connections recorded.
    fn new(cli: &Cli, window: Duration, stats: &Stats, storage: Option<StorageCounters>) -> Self {
        let requests: u64 = stats.statuses.values().sum();
        let successes = stats.successes();
        let non_2xx = requests - successes;
        let secs = window.as_secs_f64();
        let (fsyncs_per_checkout, checkouts_per_fsync) = match storage {
            Some(delta) if matches!(cli.scenario, Scenario::Checkout | Scenario::CardCheckout) => {
                fsync_ratios(delta.flushes, successes)
            }
            _ => (None, None),
        };
        let quantile = |q: f64| {
            if requests == 0 {
                0.0
            } else {
                us_to_ms(stats.hist.value_at_quantile(q))
            }
        };
        Self {
            scenario: cli.scenario.name(),
            connections: cli.connections,
            duration_s: round(secs, 3),
            requests,
            rps: if secs > 0.0 {
                round(requests as f64 / secs, 1)
            } else {
                0.0
            },
            p50_ms: quantile(0.5),
            p90_ms: quantile(0.9),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            max_ms: if requests == 0 {
                0.0
            } else {
                us_to_ms(stats.hist.max())
            },
            errors: non_2xx + stats.transport_errors,
            status_counts: stats
                .statuses
                .iter()
                .map(|(s, c)| (s.to_string(), *c))
                .collect(),
            fsyncs_per_checkout: fsyncs_per_checkout.map(|v| round(v, 4)),
            checkouts_per_fsync: checkouts_per_fsync.map(|v| round(v, 3)),
            non_2xx,
            transport_errors: stats.transport_errors,
            warmup_s: cli.warmup,
            threads: cli.threads,
            storage,
        }
    }

    /// The readable report (without the JSON line).
    fn render(&self) -> String {
        let statuses = if self.status_counts.is_empty() {
            "none".to_owned()
        } else {
            self.status_counts
                .iter()
                .map(|(s, c)| format!("{s}: {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!(
            "scenario     {}\nconnections  {} (client threads: {})\nduration     {} s recorded (after {} s warm-up)\nrequests     {} ({} req/s)\nlatency ms   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\nstatus       {statuses}\nerrors       {} (non-2xx: {}, transport: {})\n",
            self.scenario,
            self.connections,
            self.threads,
            self.duration_s,
            self.warmup_s,
            self.requests,
            self.rps,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.errors,
            self.non_2xx,
            self.transport_errors,
        );
        if let Some(delta) = self.storage {
            let jobs = delta
                .committed_jobs
                .map_or_else(|| "n/a".to_owned(), |j| j.to_string());
            let fmt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
            out.push_str(&format!(
                "storage      flushes +{}, committed jobs +{jobs}: {} fsyncs/checkout, {} checkouts/fsync\n",
                delta.flushes,
                fmt(self.fsyncs_per_checkout),
                fmt(self.checkouts_per_fsync),
            ));
        }
        out
    }
}

/// Runs the whole load test and prints its report.
async fn run(cli: Cli) -> Result<()> {
    let target = Target::resolve(&cli.url).await?;
    let products = fetch_sample(&target, cli.sample).await?;
    let work = Work::prepare(cli.scenario, &products, &target)?;
    eprintln!(
        "outpost-load: sampled {} products from {}; {} usable for {}",
        products.len(),
        target.url,
        work.len(),
        cli.scenario.name()
    );
    if work.len() < CART_LINES
        && matches!(cli.scenario, Scenario::Checkout | Scenario::CardCheckout)
    {
        eprintln!(
            "outpost-load: only {} products can go in a cart; carts will be smaller than {CART_LINES}",
            work.len()
        );
    }
    drop(products);
    let shared = Arc::new(Shared {
        target,
        work,
        parked: AtomicUsize::new(0),
        parked_notify: Notify::new(),
        bodies_wanted: AtomicUsize::new(DIAGNOSTIC_SAMPLES),
        bodies: Mutex::new(Vec::new()),
        transport_samples: Mutex::new(Vec::new()),
    });

    let warmup = Duration::from_secs(cli.warmup);
    let duration = Duration::from_secs(cli.duration);
    eprintln!(
        "outpost-load: {} connections, {} s warm-up, {} s recorded",
        cli.connections, cli.warmup, cli.duration
    );
    let warmup_end = Instant::now() + warmup;
    let (window_tx, window_rx) = watch::channel(None);
    let mut handles = Vec::with_capacity(cli.connections);
    for id in 0..cli.connections {
        let worker = Worker::new(Arc::clone(&shared), id)?;
        handles.push(tokio::spawn(worker.run(warmup_end, window_rx.clone())));
    }
    drop(window_rx);

    if !shared
        .wait_parked(cli.connections, warmup_end + GRACE)
        .await
    {
        eprintln!("outpost-load: some warm-up requests did not finish; recording anyway");
    }
    let before = if matches!(cli.scenario, Scenario::Checkout | Scenario::CardCheckout) {
        match StorageCounters::read(&shared.target).await {
            Ok(counters) => Some(counters),
            Err(err) => {
                eprintln!("outpost-load: cannot read /metrics before the window: {err:#}");
                None
            }
        }
    } else {
        None
    };
    let window_start = Instant::now();
    let window_end = window_start + duration;
    // Every worker holds a receiver until it gets here, so this only fails if all are gone.
    let _ = window_tx.send(Some(window_end));

    let mut total = Stats::new()?;
    let hard = window_end + GRACE + Duration::from_secs(1);
    let mut lost = 0usize;
    for handle in handles {
        let abort = handle.abort_handle();
        match timeout_at(hard, handle).await {
            Ok(Ok(stats)) => total.merge(&stats)?,
            Ok(Err(err)) => {
                eprintln!("outpost-load: a connection task failed: {err}");
                lost += 1;
            }
            Err(_) => {
                abort.abort();
                lost += 1;
            }
        }
    }
    if lost > 0 {
        eprintln!("outpost-load: {lost} connection(s) did not report and are left out");
    }

    let storage = match before {
        Some(before) => match StorageCounters::read(&shared.target).await {
            Ok(after) => Some(after.since(before)),
            Err(err) => {
                eprintln!("outpost-load: cannot read /metrics after the window: {err:#}");
                None
            }
        },
        None => None,
    };

    let summary = Summary::new(&cli, duration, &total, storage);
    let mut report = summary.render();
    let bodies = shared.bodies.lock().map(|b| b.clone()).unwrap_or_default();
    if !bodies.is_empty() {
        report.push_str("first non-2xx responses:\n");
        for (status, body) in &bodies {
            report.push_str(&format!("  {status}: {}\n", body.trim()));
        }
    }
    let samples = shared
        .transport_samples
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    if !samples.is_empty() {
        report.push_str("first transport errors:\n");
        for sample in &samples {
            report.push_str(&format!("  {sample}\n"));
        }
    }
    print!("{report}");
    println!(
        "{}",
        serde_json::to_string(&summary).context("serializing the summary")?
    );
    if summary.requests - summary.non_2xx == 0 {
        bail!("no request succeeded");
    }
    Ok(())
}

/// Parses the options, starts the runtime (current-thread unless `--threads` > 1) and runs.
fn try_main() -> Result<()> {
    let cli = Cli::parse();
    let mut builder = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if cli.threads > 1 {
        builder.worker_threads(cli.threads);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run(cli))
}

/// Runs and reports a failure as one line with its causes, exiting with status 1.
fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("outpost-load: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# HELP outpost_storage_flushes_total Group commits flushed to disk (one fsync each).\n\
        # TYPE outpost_storage_flushes_total counter\n\
        outpost_storage_flushes_total 1234\n\
        # HELP outpost_storage_jobs_total Writer jobs run.\n\
        # TYPE outpost_storage_jobs_total counter\n\
        outpost_storage_jobs_total 9999\n\
        outpost_storage_committed_jobs_total 5678\n\
        outpost_uptime_seconds 12\n";

    fn cli(scenario: Scenario) -> Cli {
        Cli {
            url: "http://127.0.0.1:8080".into(),
            scenario,
            connections: 8,
            duration: 10,
            warmup: 2,
            sample: 100,
            threads: 1,
        }
    }

    #[test]
    fn parses_exact_metric_names() {
        assert_eq!(
            parse_metric(METRICS, "outpost_storage_flushes_total"),
            Some(1234.0)
        );
        assert_eq!(
            parse_metric(METRICS, "outpost_storage_committed_jobs_total"),
            Some(5678.0)
        );
        assert_eq!(
            parse_metric(METRICS, "outpost_storage_jobs_total"),
            Some(9999.0)
        );
        assert_eq!(parse_metric(METRICS, "outpost_storage"), None);
        assert_eq!(parse_metric(METRICS, "missing_total"), None);
    }

    #[test]
    fn sums_labelled_samples_and_ignores_junk() {
        let text = "x_total{a=\"1\"} 2\nx_total{a=\"2\"} 3.5 1700000000\nx_total_other 100\nx_total garbage\n  # x_total 7\n";
        assert_eq!(parse_metric(text, "x_total"), Some(5.5));
    }

    #[test]
    fn storage_counters_and_delta() -> Result<()> {
        let before = StorageCounters::parse(METRICS)?;
        assert_eq!(
            before,
            StorageCounters {
                flushes: 1234.0,
                committed_jobs: Some(5678.0)
            }
        );
        let after = StorageCounters::parse(
            "outpost_storage_flushes_total 1334\noutpost_storage_committed_jobs_total 6678\n",
        )?;
        assert_eq!(
            after.since(before),
            StorageCounters {
                flushes: 100.0,
                committed_jobs: Some(1000.0)
            }
        );
        assert!(StorageCounters::parse("outpost_storage_committed_jobs_total 1\n").is_err());
        Ok(())
    }

    #[test]
    fn fsync_ratio_math() {
        assert_eq!(fsync_ratios(100.0, 1000), (Some(0.1), Some(10.0)));
        assert_eq!(fsync_ratios(0.0, 50), (Some(0.0), None));
        assert_eq!(fsync_ratios(10.0, 0), (None, Some(0.0)));
        assert_eq!(fsync_ratios(0.0, 0), (None, None));
    }

    #[test]
    fn summary_math() -> Result<()> {
        let mut stats = Stats::new()?;
        // 1..=1000 ms once each above ten 10 µs answers: p50 = 495 ms, p99 = 990 ms.
        for ms in 1..=1000u64 {
            stats.record(StatusCode::CREATED, Duration::from_millis(ms));
        }
        for _ in 0..10 {
            stats.record(StatusCode::INTERNAL_SERVER_ERROR, Duration::from_micros(10));
        }
        stats.transport_errors = 5;
        let storage = Some(StorageCounters {
            flushes: 250.0,
            committed_jobs: Some(1000.0),
        });
        let s = Summary::new(
            &cli(Scenario::Checkout),
            Duration::from_secs(10),
            &stats,
            storage,
        );
        assert_eq!(s.requests, 1010);
        assert_eq!(s.rps, 101.0);
        assert_eq!(s.non_2xx, 10);
        assert_eq!(s.errors, 15);
        assert_eq!(s.status_counts.get("201"), Some(&1000));
        assert_eq!(s.status_counts.get("500"), Some(&10));
        assert_eq!(s.fsyncs_per_checkout, Some(0.25));
        assert_eq!(s.checkouts_per_fsync, Some(4.0));
        // HdrHistogram with 3 significant digits: within 0.1 %.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(s.p50_ms, 495.0), "p50 {}", s.p50_ms);
        assert!(close(s.p99_ms, 990.0), "p99 {}", s.p99_ms);
        assert!(close(s.max_ms, 1000.0), "max {}", s.max_ms);
        assert!(s.p90_ms <= s.p99_ms && s.p99_ms <= s.p999_ms && s.p999_ms <= s.max_ms);

        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&s)?)?;
        for key in [
            "scenario",
            "connections",
            "duration_s",
            "requests",
            "rps",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "errors",
            "status_counts",
            "fsyncs_per_checkout",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["scenario"], "checkout");
        assert_eq!(json["status_counts"]["201"], 1000);
        assert!(s.render().contains("fsyncs/checkout"));
        Ok(())
    }

    #[test]
    fn empty_and_non_checkout_summaries() -> Result<()> {
        let stats = Stats::new()?;
        let s = Summary::new(&cli(Scenario::Sku), Duration::from_secs(10), &stats, None);
        assert_eq!(
            (s.requests, s.rps, s.p50_ms, s.max_ms, s.errors),
            (0, 0.0, 0.0, 0.0, 0)
        );
        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&s)?)?;
        assert!(json["fsyncs_per_checkout"].is_null());
        Ok(())
    }

    #[test]
    fn merges_connection_stats() -> Result<()> {
        let mut a = Stats::new()?;
        let mut b = Stats::new()?;
        a.record(StatusCode::OK, Duration::from_millis(1));
        b.record(StatusCode::OK, Duration::from_millis(3));
        b.record(StatusCode::NOT_FOUND, Duration::from_millis(2));
        b.transport_errors = 2;
        a.merge(&b)?;
        assert_eq!(a.hist.len(), 3);
        assert_eq!(a.statuses, BTreeMap::from([(200, 2), (404, 1)]));
        assert_eq!(a.successes(), 2);
        assert_eq!(a.transport_errors, 2);
        Ok(())
    }

    #[test]
    fn checkout_body_is_valid_json() -> Result<()> {
        let skus = [
            serde_json::to_string("SKU-1")?,
            serde_json::to_string("SKU-\"2\"")?,
        ];
        let mut buf = String::new();
        write_checkout_body(
            &mut buf,
            [(skus[0].as_str(), 1), (skus[1].as_str(), 3)],
            CHECKOUT_TAIL,
        );
        let v: serde_json::Value = serde_json::from_str(&buf)?;
        assert_eq!(v["lines"][1]["sku"], "SKU-\"2\"");
        assert_eq!(v["lines"][1]["quantity"], 3);
        assert_eq!(v["payment"]["tendered"], 100_000_000);
        assert_eq!(v["age_verified"], true);
        write_checkout_body(&mut buf, [(skus[0].as_str(), 2)], CARD_CHECKOUT_TAIL);
        let v: serde_json::Value = serde_json::from_str(&buf)?;
        assert_eq!(v["payment"], serde_json::json!({"method": "card"}));
        assert_eq!(v["lines"][0]["quantity"], 2);
        Ok(())
    }

    #[test]
    fn picks_distinct_indexes() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut out = [0usize; 3];
        for _ in 0..1000 {
            assert_eq!(pick_distinct(&mut rng, 5, &mut out), 3);
            assert!(out[0] != out[1] && out[1] != out[2] && out[0] != out[2]);
            assert!(out.iter().all(|&i| i < 5));
        }
        assert_eq!(pick_distinct(&mut rng, 2, &mut out), 2);
        assert_ne!(out[0], out[1]);
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(percent_encode("SKU-000001"), "SKU-000001");
        assert_eq!(percent_encode("a b/c+d=é"), "a%20b%2Fc%2Bd%3D%C3%A9");
    }

    #[test]
    fn prepares_work_from_products() -> Result<()> {
        let products: Vec<Product> = serde_json::from_str(
            r#"[{"sku":"A","barcodes":["111"],"sold_by":"each","active":true,"price":1},
                {"sku":"B","barcodes":[],"sold_by":"weight","active":true},
                {"sku":"C","barcodes":["222","333"],"sold_by":"each","active":false}]"#,
        )?;
        let target = Target {
            url: "http://x".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            host: HeaderValue::from_static("x"),
            base: String::new(),
        };
        assert_eq!(Work::prepare(Scenario::Sku, &products, &target)?.len(), 3);
        assert_eq!(
            Work::prepare(Scenario::Barcode, &products, &target)?.len(),
            3
        );
        match Work::prepare(Scenario::Checkout, &products, &target)? {
            Work::Checkout(skus, tail) => {
                assert_eq!(skus, vec!["\"A\"".to_owned()]);
                assert_eq!(tail, CHECKOUT_TAIL);
            }
            Work::Get(_) => bail!("checkout prepared GETs"),
        }
        match Work::prepare(Scenario::CardCheckout, &products, &target)? {
            Work::Checkout(_, tail) => assert_eq!(tail, CARD_CHECKOUT_TAIL),
            Work::Get(_) => bail!("card checkout prepared GETs"),
        }
        assert!(Work::prepare(Scenario::Checkout, &products[1..2], &target).is_err());
        assert!(Work::prepare(Scenario::Barcode, &products[1..2], &target).is_err());
        Ok(())
    }
}
