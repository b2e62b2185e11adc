//! One connection's driver (warm-up, park, recorded window) and the state the connections
//! share with the coordinator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::http::{Target, auth_header, checkout_uri, connect, drain, get_request, source_address};
use crate::stats::Stats;
use crate::work::{CART_LINES, Work, pick_distinct, write_checkout_body, write_login_body};

/// How long requests still in flight may take after a phase ends before they are cut off.
pub(crate) const GRACE: Duration = Duration::from_secs(2);
/// A connection gives up after this many transport errors in a row.
const MAX_CONSECUTIVE_ERRORS: u32 = 100;
/// Pause after a transport error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(5);
/// How many non-2xx bodies and transport error messages to keep for diagnosis.
const DIAGNOSTIC_SAMPLES: usize = 3;

/// State shared by the connection tasks and the coordinator.
pub(crate) struct Shared {
    /// Where requests go.
    pub(crate) target: Target,
    /// The prepared requests.
    work: Work,
    /// Loopback source addresses the connections are spread over (`--sources`).
    sources: usize,
    /// Connections done with the warm-up (or given up).
    parked: AtomicUsize,
    /// Signalled whenever `parked` grows.
    parked_notify: Notify,
    /// Non-2xx bodies still wanted for diagnosis.
    bodies_wanted: AtomicUsize,
    /// The first non-2xx bodies: status and (truncated) body.
    pub(crate) bodies: Mutex<Vec<(u16, String)>>,
    /// The first transport errors.
    pub(crate) transport_samples: Mutex<Vec<String>>,
}

impl Shared {
    /// The state of a run that sends `work` to `target` from `sources` addresses.
    pub(crate) fn new(target: Target, work: Work, sources: usize) -> Self {
        Self {
            target,
            work,
            sources,
            parked: AtomicUsize::new(0),
            parked_notify: Notify::new(),
            bodies_wanted: AtomicUsize::new(DIAGNOSTIC_SAMPLES),
            bodies: Mutex::new(Vec::new()),
            transport_samples: Mutex::new(Vec::new()),
        }
    }

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
    pub(crate) async fn wait_parked(&self, n: usize, deadline: Instant) -> bool {
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

/// One connection's driver: one request in flight, back to back.
pub(crate) struct Worker {
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
    /// The address this connection connects from (`--sources`), or the system's pick.
    source: Option<std::net::IpAddr>,
    /// Requests built so far (numbers the login storm's usernames).
    sent: u64,
    /// Transport errors in a row.
    consecutive_errors: u32,
    /// Set after [`MAX_CONSECUTIVE_ERRORS`] transport errors in a row.
    dead: bool,
    /// What was recorded.
    stats: Stats,
}

impl Worker {
    /// A worker for connection `id`.
    pub(crate) fn new(shared: Arc<Shared>, id: usize) -> Result<Self> {
        let terminal =
            HeaderValue::from_str(&format!("load-{id}")).context("building X-Terminal-Id")?;
        let source = source_address(&shared.target, id, shared.sources)?;
        Ok(Self {
            shared,
            id,
            source,
            sent: 0,
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
    pub(crate) async fn run(
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
        self.sent += 1;
        match &self.shared.work {
            Work::Login(uri, user) => {
                match user {
                    Some(user) => write_login_body(&mut self.body, user)?,
                    None => write_login_body(
                        &mut self.body,
                        &format!("storm-{}-{}", self.id, self.sent),
                    )?,
                }
                let mut req = Request::new(Full::new(Bytes::copy_from_slice(self.body.as_bytes())));
                *req.method_mut() = Method::POST;
                *req.uri_mut() = uri.clone();
                let headers = req.headers_mut();
                headers.insert(HOST, self.shared.target.host.clone());
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok(req)
            }
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
            let sender = timeout_at(hard, connect(&self.shared.target, self.source))
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
