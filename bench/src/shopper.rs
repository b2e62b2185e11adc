//! The `shopper` scenario: `--connections` shoppers on their phones at once, each on
//! its own keep-alive connection (from its own loopback address with `--sources`)
//! holding one shopper session (opened with the store token, again if it ends), and
//! filling and paying carts back to back: look up and add 3 to 6 products by barcode
//! with a think time between steps, pay the cart (`POST /api/v1/shopper/checkout`),
//! play the wallet provider's signed notification (the secret from
//! `--qr-secret-file`), and ask until the sale is paid. A session may make
//! `[shopper] requests_per_minute` requests (120): a think time under about 700 ms
//! runs into that limit (429s).
//!
//! Each step's latency is recorded on its own, for steps started inside the recorded
//! window: `session`, `lookup`, `add`, `checkout` (the pay link), `notify`, and
//! `paid`, from the checkout request to the phone seeing the sale paid (the wallet
//! answering at once). Think times are not counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, COOKIE, HOST, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep, timeout};

use crate::cli::Cli;
use crate::http::{Target, auth_header, connect, percent_encode, source_address};
use crate::sample::fetch_sample;
use crate::stats::Stats;

/// Time limit of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a visit may wait for its sale to show as paid.
const PAID_WAIT: Duration = Duration::from_secs(20);
/// The steps, in report order.
const STEPS: [&str; 6] = ["session", "lookup", "add", "checkout", "notify", "paid"];

/// What the shoppers share.
struct Setup {
    target: Target,
    barcodes: Vec<String>,
    store_token: String,
    secret: [u8; 32],
    think: Duration,
    sources: usize,
}

/// One shopper's connection.
struct Phone {
    sender: SendRequest<Full<Bytes>>,
    source: Option<std::net::IpAddr>,
}

fn hex32(text: &str) -> Result<[u8; 32]> {
    let t = text.trim();
    if t.len() != 64 {
        bail!("the QR secret must be 64 hex digits");
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).context("the QR secret is not hex")?;
    }
    Ok(out)
}

/// The value of `key` in the query of `url` (percent-decoding not needed: the unit
/// writes these fields unescaped).
fn query_value<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

impl Phone {
    async fn open(setup: &Setup, source: Option<std::net::IpAddr>) -> Result<Self> {
        Ok(Self {
            sender: connect(&setup.target, source).await?,
            source,
        })
    }

    /// One request; the status, body and the `Set-Cookie` value. Reconnects once when
    /// the connection was closed.
    async fn call(
        &mut self,
        setup: &Setup,
        method: Method,
        path: &str,
        cookie: Option<&HeaderValue>,
        body: Option<(Vec<u8>, Option<HeaderValue>)>,
        staff: bool,
    ) -> Result<(StatusCode, Bytes, Option<String>)> {
        if self.sender.ready().await.is_err() {
            self.sender = connect(&setup.target, self.source).await?;
        }
        let (bytes, signature) = body.unwrap_or_default();
        let has_body = !bytes.is_empty();
        let mut req = Request::new(Full::new(Bytes::from(bytes)));
        *req.method_mut() = method;
        *req.uri_mut() = setup.target.uri(path)?;
        let h = req.headers_mut();
        h.insert(HOST, setup.target.host.clone());
        if has_body {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(c) = cookie {
            h.insert(COOKIE, c.clone());
        }
        if let Some(s) = signature {
            h.insert("x-outpost-signature", s);
        }
        if staff && let Some(a) = auth_header() {
            h.insert(hyper::header::AUTHORIZATION, a.clone());
        }
        let sender = &mut self.sender;
        let exchange = async move {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let set_cookie = resp
                .headers()
                .get(SET_COOKIE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or("").to_owned());
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body, set_cookie))
        };
        timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{path} timed out"))?
            .with_context(|| path.to_owned())
    }
}

/// Steps recorded by one shopper.
struct Recorder {
    steps: BTreeMap<&'static str, Stats>,
    window: (Instant, Instant),
    visits: u64,
    failures: Vec<String>,
}

impl Recorder {
    fn new(window: (Instant, Instant)) -> Result<Self> {
        let mut steps = BTreeMap::new();
        for s in STEPS {
            steps.insert(s, Stats::new()?);
        }
        Ok(Self {
            steps,
            window,
            visits: 0,
            failures: Vec::new(),
        })
    }

    fn recorded(&self, started: Instant) -> bool {
        started >= self.window.0 && started < self.window.1
    }

    fn record(&mut self, step: &'static str, started: Instant, status: StatusCode) {
        if self.recorded(started)
            && let Some(s) = self.steps.get_mut(step)
        {
            s.record(status, started.elapsed());
        }
    }

    fn fail(&mut self, started: Instant, why: String) {
        if self.recorded(started) && self.failures.len() < 3 {
            self.failures.push(why);
        }
    }
}

/// Think for about `setup.think` (uniformly 0.5× to 1.5×).
async fn think(setup: &Setup, rng: &mut SmallRng) {
    let ms = setup.think.as_millis() as u64;
    if ms > 0 {
        sleep(Duration::from_millis(
            rng.random_range(ms / 2..=ms + ms / 2),
        ))
        .await;
    }
}

/// Open a shopper session: its cookie.
async fn open_session(setup: &Setup, phone: &mut Phone, rec: &mut Recorder) -> Result<HeaderValue> {
    let started = Instant::now();
    let body = format!(r#"{{"store_token":"{}"}}"#, setup.store_token);
    let (st, b, cookie) = phone
        .call(
            setup,
            Method::POST,
            "/api/v1/shopper/sessions",
            None,
            Some((body.into_bytes(), None)),
            false,
        )
        .await?;
    rec.record("session", started, st);
    if st != StatusCode::CREATED {
        bail!("session: {st} {}", String::from_utf8_lossy(&b));
    }
    Ok(HeaderValue::from_str(
        &cookie.context("no session cookie")?,
    )?)
}

/// One cart filled and paid. `Err`: the visit failed (said why).
async fn visit(
    setup: &Setup,
    phone: &mut Phone,
    cookie: &HeaderValue,
    rng: &mut SmallRng,
    rec: &mut Recorder,
    n: u64,
) -> Result<()> {
    let started = Instant::now();
    let cookie = cookie.clone();
    let items = rng.random_range(3..=6);
    for _ in 0..items {
        think(setup, rng).await;
        let code = &setup.barcodes[rng.random_range(0..setup.barcodes.len())];
        let t = Instant::now();
        let path = format!("/api/v1/shopper/products?barcode={}", percent_encode(code));
        let (st, b, _) = phone
            .call(setup, Method::GET, &path, Some(&cookie), None, false)
            .await?;
        rec.record("lookup", t, st);
        if !st.is_success() {
            bail!("lookup: {st} {}", String::from_utf8_lossy(&b));
        }
        think(setup, rng).await;
        let t = Instant::now();
        let add = format!(r#"{{"barcode":"{code}"}}"#);
        let (st, b, _) = phone
            .call(
                setup,
                Method::POST,
                "/api/v1/shopper/cart/lines",
                Some(&cookie),
                Some((add.into_bytes(), None)),
                false,
            )
            .await?;
        rec.record("add", t, st);
        if !st.is_success() {
            bail!("add: {st} {}", String::from_utf8_lossy(&b));
        }
    }
    think(setup, rng).await;
    let pay = Instant::now();
    let (st, b, _) = phone
        .call(
            setup,
            Method::POST,
            "/api/v1/shopper/checkout",
            Some(&cookie),
            None,
            false,
        )
        .await?;
    rec.record("checkout", pay, st);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
    let url = v["pay_url"].as_str().unwrap_or_default().to_owned();
    if st != StatusCode::ACCEPTED || url.is_empty() {
        bail!("checkout: {st} {}", String::from_utf8_lossy(&b));
    }
    // The wallet pays at once: the provider's signed notification.
    let field = |k| query_value(&url, k).unwrap_or_default();
    let notification = serde_json::json!({
        "merchant": field("m"), "reference": field("ref"), "status": "paid",
        "amount": field("amount").parse::<i64>().unwrap_or(0), "currency": field("cur"),
        "provider_ref": format!("bench-{}-{n}", std::process::id()), "wallet": "BenchPay",
    })
    .to_string();
    let mut mac = blake3::Hasher::new_keyed(&setup.secret);
    mac.update(b"outpost-qr-notify-v1\n");
    mac.update(notification.as_bytes());
    let sig = HeaderValue::from_str(mac.finalize().to_hex().as_str())?;
    let t = Instant::now();
    let (st, b, _) = phone
        .call(
            setup,
            Method::POST,
            "/api/v1/payments/qr/notifications",
            None,
            Some((notification.into_bytes(), Some(sig))),
            false,
        )
        .await?;
    rec.record("notify", t, st);
    if st != StatusCode::NO_CONTENT {
        bail!("notify: {st} {}", String::from_utf8_lossy(&b));
    }
    let deadline = Instant::now() + PAID_WAIT;
    loop {
        let (st, b, _) = phone
            .call(
                setup,
                Method::GET,
                "/api/v1/shopper/checkout",
                Some(&cookie),
                None,
                false,
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        if v["status"] == "paid" {
            rec.record("paid", pay, st);
            break;
        }
        if v["status"] == "failed" || Instant::now() > deadline {
            bail!("paid: {st} {}", String::from_utf8_lossy(&b));
        }
        sleep(Duration::from_millis(5)).await;
    }
    if rec.recorded(started) {
        rec.visits += 1;
    }
    Ok(())
}

/// One shopper: visits back to back until the window ends.
async fn shopper(setup: Arc<Setup>, id: usize, window: (Instant, Instant)) -> Result<Recorder> {
    let mut rec = Recorder::new(window)?;
    let source = source_address(&setup.target, id, setup.sources)?;
    let mut phone = Phone::open(&setup, source).await?;
    let mut rng = SmallRng::seed_from_u64(id as u64 ^ 0x5eed);
    // Shoppers arrive spread over the first think time, not all at once.
    sleep(Duration::from_millis(
        rng.random_range(0..=setup.think.as_millis() as u64 + 1),
    ))
    .await;
    let mut n = 0u64;
    let mut cookie: Option<HeaderValue> = None;
    while Instant::now() < window.1 {
        n += 1;
        let started = Instant::now();
        let done = match cookie.clone() {
            Some(c) => visit(&setup, &mut phone, &c, &mut rng, &mut rec, n).await,
            None => match open_session(&setup, &mut phone, &mut rec).await {
                Ok(c) => {
                    cookie = Some(c.clone());
                    visit(&setup, &mut phone, &c, &mut rng, &mut rec, n).await
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = done {
            rec.fail(started, format!("{e:#}"));
            // A session that ended (or was never opened) is opened again.
            cookie = None;
            sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(rec)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Runs the scenario and prints its report.
pub(crate) async fn run(cli: &Cli, target: Target) -> Result<()> {
    let secret_file = cli.qr_secret_file.as_ref().context(
        "the shopper scenario needs --qr-secret-file (the unit's [payment.qr] secret_file)",
    )?;
    let secret = hex32(
        &std::fs::read_to_string(secret_file)
            .with_context(|| format!("reading {}", secret_file.display()))?,
    )?;
    let products = fetch_sample(&target, cli.sample).await?;
    // Products a shopper can add and pay on the phone: sold by the piece, active, not
    // age-restricted (those are paid at a staffed till), with a barcode.
    let barcodes: Vec<String> = products
        .iter()
        .filter(|p| p.active && !p.age_restricted && p.sold_by.as_deref() != Some("weight"))
        .filter_map(|p| p.barcodes.first().cloned())
        .collect();
    if barcodes.is_empty() {
        bail!("no sampled product has a barcode");
    }
    let mut staff = Phone {
        sender: connect(&target, None).await?,
        source: None,
    };
    let setup0 = Setup {
        target,
        barcodes,
        store_token: String::new(),
        secret,
        think: Duration::from_millis(cli.think_ms),
        sources: cli.sources,
    };
    let (st, b, _) = staff
        .call(
            &setup0,
            Method::GET,
            "/api/v1/shopper/store-qr",
            None,
            None,
            true,
        )
        .await?;
    if st != StatusCode::OK {
        bail!(
            "GET /api/v1/shopper/store-qr (needs OUTPOST_TOKEN): {st} {}",
            String::from_utf8_lossy(&b)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&b)?;
    let store_token = v["store_token"]
        .as_str()
        .context("no store token")?
        .to_owned();
    let setup = Arc::new(Setup {
        store_token,
        ..setup0
    });
    eprintln!(
        "outpost-load: {} shoppers from {} address(es), think {} ms, {} s warm-up, {} s recorded, {} barcodes",
        cli.connections,
        cli.sources,
        cli.think_ms,
        cli.warmup,
        cli.duration,
        setup.barcodes.len()
    );
    let start = Instant::now() + Duration::from_secs(cli.warmup);
    let window = (start, start + Duration::from_secs(cli.duration));
    let mut handles = Vec::new();
    for id in 0..cli.connections {
        handles.push(tokio::spawn(shopper(Arc::clone(&setup), id, window)));
    }
    let mut total = Recorder::new(window)?;
    let hard = window.1 + PAID_WAIT + REQUEST_TIMEOUT;
    for h in handles {
        match tokio::time::timeout_at(hard, h).await {
            Ok(Ok(Ok(rec))) => {
                for (k, s) in &rec.steps {
                    if let Some(t) = total.steps.get_mut(k) {
                        t.merge(s)?;
                    }
                }
                total.visits += rec.visits;
                for f in rec.failures {
                    if total.failures.len() < 5 {
                        total.failures.push(f);
                    }
                }
            }
            Ok(Ok(Err(e))) => eprintln!("outpost-load: a shopper failed to start: {e:#}"),
            Ok(Err(e)) => eprintln!("outpost-load: a shopper task failed: {e}"),
            Err(_) => eprintln!("outpost-load: a shopper did not finish in time"),
        }
    }
    let mut json = serde_json::Map::new();
    println!(
        "scenario shopper: {} shoppers, {} visits completed in {} s",
        cli.connections, total.visits, cli.duration
    );
    println!(
        "{:<9} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "step", "count", "non-2xx", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for step in STEPS {
        let s = &total.steps[step];
        let count = s.hist.len();
        let non_2xx = count - s.successes();
        let q = |p: f64| ms(s.hist.value_at_quantile(p));
        println!(
            "{step:<9} {count:>8} {non_2xx:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            q(0.5),
            q(0.95),
            q(0.99),
            ms(s.hist.max())
        );
        json.insert(
            step.into(),
            serde_json::json!({
                "count": count, "non_2xx": non_2xx, "p50_ms": q(0.5), "p95_ms": q(0.95),
                "p99_ms": q(0.99), "max_ms": ms(s.hist.max()),
            }),
        );
    }
    for f in &total.failures {
        println!("failed visit: {f}");
    }
    json.insert("scenario".into(), "shopper".into());
    json.insert("shoppers".into(), cli.connections.into());
    json.insert("visits".into(), total.visits.into());
    json.insert("duration_s".into(), cli.duration.into());
    println!("{}", serde_json::Value::Object(json));
    if total.visits == 0 {
        bail!("no visit completed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pay_links_fields() {
        let url = "http://p/pay?m=store-1&ref=01a2-0&amount=629&cur=EUR&exp=1&sig=ab";
        assert_eq!(query_value(url, "m"), Some("store-1"));
        assert_eq!(query_value(url, "ref"), Some("01a2-0"));
        assert_eq!(query_value(url, "amount"), Some("629"));
        assert_eq!(query_value(url, "cur"), Some("EUR"));
        assert_eq!(query_value(url, "nope"), None);
        assert!(hex32(&"0f".repeat(32)).is_ok());
        assert!(hex32("0f").is_err());
    }
}
