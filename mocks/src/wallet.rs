//! A QR payment provider with a wallet, for tests and `outpost demo` (feature
//! `wallet`). It speaks the protocol of docs/qr-payments.md from the provider's
//! side, written from that document: it checks the unit's signed pay link, shows the
//! shopper a "pay" page, and tells the unit by a signed notification posted to its
//! `/api/v1/payments/qr/notifications`.
//!
//! Routes (plain HTTP/1.1 on loopback):
//! - `GET /pay?m&ref&amount&cur&exp[&return]&sig`: the pay page (a refused page for a
//!   link whose signature does not match, or that expired);
//! - `POST /pay/confirm` and `POST /pay/cancel` (the page's buttons): notify the unit,
//!   then send the phone back to the link's `return` address.
//!
//! Tests can also pay a link without a browser ([`WalletProvider::pay`]), tell a
//! notification again ([`WalletProvider::repeat`]), and read every notification sent
//! and the unit's answer ([`WalletProvider::sent`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LINK_CONTEXT: &str = "outpost-qr-link-v1";
const NOTIFY_CONTEXT: &str = "outpost-qr-notify-v1";

/// A notification the provider posted, and what the unit answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The JSON body.
    pub body: String,
    /// The unit's HTTP status (0: no answer).
    pub status: u16,
}

/// Why a link cannot be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// A field is missing or not a number.
    Malformed(String),
    /// The signature does not match the fields.
    BadSignature,
    /// Past its `exp`.
    Expired,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Malformed(m) => write!(f, "malformed payment link: {m}"),
            LinkError::BadSignature => f.write_str("this payment link was not signed by the store"),
            LinkError::Expired => f.write_str("this payment link has expired"),
        }
    }
}

/// A pay link's fields, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Merchant id.
    pub merchant: String,
    /// Reference.
    pub reference: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// Where to send the phone after paying.
    pub return_to: Option<String>,
}

struct Inner {
    secret: [u8; 32],
    /// The unit's notification address, `http://host:port/path`.
    notify_url: String,
    wallet: String,
    sent: Vec<Sent>,
    /// Payments made per reference (provider_ref), to tell again.
    paid: HashMap<String, String>,
    next: u64,
}

/// The provider: its address and what it did.
#[derive(Clone)]
pub struct WalletProvider {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn mac(secret: &[u8; 32], context: &str, parts: &[&[u8]]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(context.as_bytes());
    for p in parts {
        h.update(b"\n");
        h.update(p);
    }
    h.finalize()
}

fn hex_secret(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    if t.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Decode `application/x-www-form-urlencoded` / a query string.
fn form(q: &str) -> HashMap<String, String> {
    let dec = |s: &str| {
        let s = s.replace('+', " ");
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (dec(k), dec(v))
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl WalletProvider {
    /// Start on `127.0.0.1` (an ephemeral port) with the secret (64 hex digits) shared
    /// with the unit, posting notifications to `notify_url`
    /// (`http://127.0.0.1:PORT/api/v1/payments/qr/notifications`).
    pub async fn start(secret_hex: &str, notify_url: &str) -> std::io::Result<Self> {
        Self::start_at("127.0.0.1:0", secret_hex, notify_url).await
    }

    /// [`start`](Self::start) on `listen`.
    pub async fn start_at(
        listen: &str,
        secret_hex: &str,
        notify_url: &str,
    ) -> std::io::Result<Self> {
        let secret = hex_secret(secret_hex).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the secret must be 64 hex digits",
            )
        })?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let p = WalletProvider {
            addr,
            inner: Arc::new(Mutex::new(Inner {
                secret,
                notify_url: notify_url.to_owned(),
                wallet: "DemoPay".into(),
                sent: Vec::new(),
                paid: HashMap::new(),
                next: 0,
            })),
        };
        let server = p.clone();
        tokio::spawn(async move {
            // Each connection is bounded in time; the accept loop ends with the runtime.
            while let Ok((s, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), server.serve(s)).await;
                });
            }
        });
        Ok(p)
    }

    /// Post notifications to `url` from now on (the unit's address is known only once
    /// it listens, after the provider's pay address went into its settings).
    pub fn set_notify_url(&self, url: &str) {
        lock(&self.inner).notify_url = url.to_owned();
    }

    /// The pay address the unit's `[payment.qr] pay_url` names.
    pub fn pay_url(&self) -> String {
        format!("http://{}/pay", self.addr)
    }

    /// Every notification sent so far, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.inner).sent.clone()
    }

    /// Check a pay link as the provider's page does.
    pub fn check(&self, url: &str) -> Result<Link, LinkError> {
        let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        self.check_fields(&form(q))
    }

    fn check_fields(&self, f: &HashMap<String, String>) -> Result<Link, LinkError> {
        let get = |k: &str| {
            f.get(k)
                .cloned()
                .ok_or_else(|| LinkError::Malformed(format!("{k} is missing")))
        };
        let (m, r, amount, cur, exp, sig) = (
            get("m")?,
            get("ref")?,
            get("amount")?,
            get("cur")?,
            get("exp")?,
            get("sig")?,
        );
        let ret = f.get("return").cloned();
        let secret = lock(&self.inner).secret;
        let want = mac(
            &secret,
            LINK_CONTEXT,
            &[
                m.as_bytes(),
                r.as_bytes(),
                amount.as_bytes(),
                cur.as_bytes(),
                exp.as_bytes(),
                ret.as_deref().unwrap_or("").as_bytes(),
            ],
        );
        if blake3::Hash::from_hex(sig.as_bytes()).ok() != Some(want) {
            return Err(LinkError::BadSignature);
        }
        let exp: i64 = exp
            .parse()
            .map_err(|_| LinkError::Malformed("exp".into()))?;
        if exp < now() {
            return Err(LinkError::Expired);
        }
        Ok(Link {
            merchant: m,
            reference: r,
            amount: amount
                .parse()
                .map_err(|_| LinkError::Malformed("amount".into()))?,
            currency: cur,
            return_to: ret,
        })
    }

    /// The customer pays `url` in the wallet: the unit is told (and its answer
    /// returned).
    pub async fn pay(&self, url: &str) -> Result<Sent, LinkError> {
        let link = self.check(url)?;
        Ok(self.paid(&link).await)
    }

    /// The customer cancels `url` in the wallet: the unit is told it failed.
    pub async fn cancel(&self, url: &str) -> Result<Sent, LinkError> {
        let link = self.check(url)?;
        let body = serde_json::json!({
            "merchant": link.merchant, "reference": link.reference, "status": "failed",
            "reason": "cancelled in the wallet",
        });
        Ok(self.post(body.to_string()).await)
    }

    async fn paid(&self, link: &Link) -> Sent {
        let body = {
            let mut i = lock(&self.inner);
            i.next += 1;
            let provider_ref = format!("dp-{}-{}", std::process::id(), i.next);
            i.paid.insert(link.reference.clone(), provider_ref.clone());
            serde_json::json!({
                "merchant": link.merchant, "reference": link.reference, "status": "paid",
                "amount": link.amount, "currency": link.currency,
                "provider_ref": provider_ref, "wallet": i.wallet,
            })
            .to_string()
        };
        self.post(body).await
    }

    /// Tell the last notification again (a provider's redelivery).
    pub async fn repeat(&self) -> Option<Sent> {
        let last = lock(&self.inner).sent.last().cloned()?;
        Some(self.post(last.body).await)
    }

    /// Post a notification, signed, to the unit; a few tries while it does not
    /// answer 2xx, as providers redeliver.
    async fn post(&self, body: String) -> Sent {
        let (secret, url) = {
            let i = lock(&self.inner);
            (i.secret, i.notify_url.clone())
        };
        let sig = mac(&secret, NOTIFY_CONTEXT, &[body.as_bytes()]).to_hex();
        let mut status = 0;
        for attempt in 0..5u32 {
            status = post_json(&url, &body, &sig).await.unwrap_or(0);
            if (200..300).contains(&status) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
        }
        let sent = Sent { body, status };
        lock(&self.inner).sent.push(sent.clone());
        sent
    }

    async fn serve(&self, mut s: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, content_length) = loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 64 * 1024 {
                return respond(
                    &mut s,
                    "413 Payload Too Large",
                    "text/plain",
                    "too large",
                    None,
                )
                .await;
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (i + 4, len.min(64 * 1024));
            }
        };
        while buf.len() < head_end + content_length {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
        let mut first = head.lines().next().unwrap_or("").split(' ');
        let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        match (method, path) {
            ("GET", "/pay") => {
                let f = form(query);
                match self.check_fields(&f) {
                    Ok(link) => {
                        let hidden: String = f
                            .iter()
                            .map(|(k, v)| {
                                format!(
                                    r#"<input type="hidden" name="{}" value="{}">"#,
                                    esc(k),
                                    esc(v)
                                )
                            })
                            .collect();
                        let amount = format!(
                            "{}.{:02} {}",
                            link.amount / 100,
                            link.amount % 100,
                            esc(&link.currency)
                        );
                        let page = format!(
                            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>DemoPay</title><link rel="icon" href="data:,">
<style>body{{font:16px system-ui;margin:0;background:#222;color:#fff}}main{{padding:24px;max-width:420px;margin:auto}}button{{font:inherit;width:100%;min-height:48px;margin-top:12px;border:0;border-radius:10px}}#pay{{background:#3b82f6;color:#fff}}</style></head>
<body><main><h1>DemoPay wallet</h1><p>Pay <strong id="amount">{amount}</strong> to <strong id="merchant">{merchant}</strong></p><p id="reference">Reference {reference}</p>
<form method="post" action="/pay/confirm">{hidden}<button id="pay" type="submit">Pay {amount}</button></form>
<form method="post" action="/pay/cancel">{hidden}<button id="cancel" type="submit">Cancel</button></form></main></body></html>"#,
                            merchant = esc(&link.merchant),
                            reference = esc(&link.reference),
                        );
                        respond(&mut s, "200 OK", "text/html; charset=utf-8", &page, None).await
                    }
                    Err(e) => {
                        respond(
                            &mut s,
                            "400 Bad Request",
                            "text/plain; charset=utf-8",
                            &e.to_string(),
                            None,
                        )
                        .await
                    }
                }
            }
            ("POST", "/pay/confirm") | ("POST", "/pay/cancel") => {
                let f = form(&body);
                let link = match self.check_fields(&f) {
                    Ok(l) => l,
                    Err(e) => {
                        return respond(
                            &mut s,
                            "400 Bad Request",
                            "text/plain; charset=utf-8",
                            &e.to_string(),
                            None,
                        )
                        .await;
                    }
                };
                let sent = if path == "/pay/confirm" {
                    self.paid(&link).await
                } else {
                    let body = serde_json::json!({
                        "merchant": link.merchant, "reference": link.reference,
                        "status": "failed", "reason": "cancelled in the wallet",
                    });
                    self.post(body.to_string()).await
                };
                match &link.return_to {
                    Some(r) => respond(&mut s, "303 See Other", "text/plain", "", Some(r)).await,
                    None => {
                        let text = format!("Done; the store answered {}.", sent.status);
                        respond(&mut s, "200 OK", "text/plain; charset=utf-8", &text, None).await
                    }
                }
            }
            _ => respond(&mut s, "404 Not Found", "text/plain", "not found", None).await,
        }
    }
}

async fn respond(
    s: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &str,
    location: Option<&str>,
) -> std::io::Result<()> {
    let loc = location
        .map(|l| format!("Location: {l}\r\n"))
        .unwrap_or_default();
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{loc}Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes()).await?;
    s.shutdown().await
}

/// POST `body` to `url` (`http://host:port/path`) with the signature header; the
/// answer's status.
async fn post_json(url: &str, body: &str, sig: &str) -> std::io::Result<u16> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "only http:// notification addresses",
        )
    })?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(host))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Outpost-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "answer"))??;
    let line = String::from_utf8_lossy(&out);
    Ok(line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_and_plus() {
        let f = form("a=1+2&return=http%3A%2F%2Fx%2Fshop%2F%3Fpaid%3D1&e=");
        assert_eq!(f["a"], "1 2");
        assert_eq!(f["return"], "http://x/shop/?paid=1");
        assert_eq!(f["e"], "");
        // A stray or short escape, or one before a multi-byte character, stays as is.
        let f = form("x=%zz%4&y=%\u{e9}%41");
        assert_eq!(f["x"], "%zz%4");
        assert_eq!(f["y"], "%\u{e9}A");
    }
}
