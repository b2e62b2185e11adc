//! The health gate: what a release must show, once started, before it is trusted.
//! The store is open and its key unsealed (the server would not be running
//! otherwise), the REST port answers `/healthz`, the gRPC port accepts connections, a
//! price lookup and a dry-run checkout of a catalog product succeed, and every
//! configured device has been opened or has reported why not (a device fault is the
//! store's, not the release's: it is reported, not failed). Run by the release on
//! probation, and by `outpost self-test` on a copy of the data dir.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::devices::Registry;
use crate::sales::Sales;
use crate::sales::checkout::LineRequest;

/// What the gate looks at.
#[derive(Clone)]
pub struct GateTargets {
    /// The REST port.
    pub rest: SocketAddr,
    /// Whether it serves TLS (then only a TCP connection is checked).
    pub rest_tls: bool,
    /// The gRPC port, when configured.
    pub grpc: Option<SocketAddr>,
    /// The selling service.
    pub sales: Sales,
    /// The devices.
    pub devices: Arc<Registry>,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// The whole gate.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// Every check passed.
    pub passed: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl GateReport {
    /// The failed checks in one line.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs the gate, retrying the network checks until `within` has passed (the server
/// may still be starting).
pub async fn run(t: &GateTargets, within: Duration) -> GateReport {
    let deadline = Instant::now() + within;
    let mut checks = Vec::new();
    checks.push(retry(deadline, || rest_check(t.rest, t.rest_tls)).await);
    if let Some(g) = t.grpc {
        checks.push(
            retry(deadline, || async move {
                tcp(g).await.map(|()| format!("{g} accepts connections"))
            })
            .await
            .named("grpc"),
        );
    }
    checks.push(price_check(&t.sales));
    checks.push(devices_check(&t.devices));
    GateReport {
        passed: checks.iter().all(|c| c.ok),
        checks,
    }
}

trait Named {
    fn named(self, name: &'static str) -> Check;
}

impl Named for Check {
    fn named(mut self, name: &'static str) -> Check {
        self.name = name;
        self
    }
}

async fn retry<F, Fut>(deadline: Instant, mut f: F) -> Check
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    loop {
        match f().await {
            Ok(detail) => {
                return Check {
                    name: "rest",
                    ok: true,
                    detail,
                };
            }
            Err(e) if Instant::now() >= deadline => {
                return Check {
                    name: "rest",
                    ok: false,
                    detail: e,
                };
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn tcp(addr: SocketAddr) -> Result<(), String> {
    let connect = tokio::net::TcpStream::connect(loopback(addr));
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no connection within 2 s")),
    }
}

/// An unspecified listen address is reached on loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

async fn rest_check(addr: SocketAddr, tls: bool) -> Result<String, String> {
    if tls {
        tcp(addr).await?;
        return Ok(format!("{addr} accepts connections (TLS)"));
    }
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(loopback(addr)).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        (&mut s).take(4096).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = match tokio::time::timeout(Duration::from_secs(3), ask).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(format!("{addr}: {e}")),
        Err(_) => return Err(format!("{addr}: no answer within 3 s")),
    };
    let head = String::from_utf8_lossy(&buf);
    let status = head.lines().next().unwrap_or("").to_owned();
    if status.starts_with("HTTP/1.1 200") {
        Ok(format!("/healthz: {status}"))
    } else {
        Err(format!("/healthz answered {status:?}"))
    }
}

fn price_check(sales: &Sales) -> Check {
    let catalog = sales.store().catalog();
    let first = catalog
        .products_json()
        .next()
        .map(|r| r.map_err(|e| e.to_string()));
    let fail = |detail: String| Check {
        name: "price",
        ok: false,
        detail,
    };
    let sku = match first {
        None => {
            return Check {
                name: "price",
                ok: true,
                detail: "empty catalog: nothing to price".into(),
            };
        }
        Some(Err(e)) => return fail(format!("cannot read the catalog: {e}")),
        Some(Ok(json)) => match serde_json::from_slice::<serde_json::Value>(&json) {
            Ok(v) => v["sku"].as_str().unwrap_or_default().to_owned(),
            Err(e) => return fail(format!("a catalog product is unreadable: {e}")),
        },
    };
    match catalog.product(&sku) {
        Ok(Some(p)) => {
            let by_weight = p.sold_by == crate::domain::product::SoldBy::Weight;
            let line = LineRequest {
                sku: Some(sku.clone()),
                barcode: None,
                quantity: (!by_weight).then_some(1),
                weight_grams: by_weight.then_some(1000),
                scale: None,
            };
            match sales.price(&[line]) {
                Ok(cart) => Check {
                    name: "price",
                    ok: true,
                    detail: format!(
                        "{sku} looked up and priced (dry-run total {} minor units)",
                        cart.total.0
                    ),
                },
                Err(e) => fail(format!("dry-run checkout of {sku}: {e}")),
            }
        }
        Ok(None) => fail(format!("{sku} is listed but cannot be looked up")),
        Err(e) => fail(format!("lookup of {sku}: {e}")),
    }
}

fn devices_check(devices: &Registry) -> Check {
    let views = devices.views();
    let opened = views.iter().filter(|v| v.usable).count();
    let faults: Vec<String> = views
        .iter()
        .filter(|v| !v.usable)
        .map(|v| {
            format!(
                "{} ({})",
                v.id,
                v.last_error.as_deref().unwrap_or("not usable")
            )
        })
        .collect();
    Check {
        name: "devices",
        ok: true,
        detail: if faults.is_empty() {
            format!("{opened} of {} opened", views.len())
        } else {
            format!(
                "{opened} of {} opened; reported: {}",
                views.len(),
                faults.join(", ")
            )
        },
    }
}
