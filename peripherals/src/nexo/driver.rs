//! [`NexoTerminal`]: the payment terminal driver over TCP.
//!
//! # Keeping money safe
//! - A request that could not be written (no connection, connect refused or timed
//!   out, write failed) is [`PaymentError::Offline`]: the terminal cannot have acted on
//!   it, because it only acts on a whole frame.
//! - Once the whole frame is written, anything short of a matching, well-formed
//!   response (a timeout, a dropped connection, a garbled frame) is
//!   [`PaymentError::OutcomeUnknown`], never `Offline`. The caller resolves it with
//!   [`PaymentTerminal::status`] for the same key.
//! - Responses are matched to requests by ServiceID and category; anything else on the
//!   connection is skipped (a bounded number of times) and never taken for the answer.
//! - A connection that was part of a failed or cancelled exchange is discarded, so a
//!   late answer can never be read as the answer to the next request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::codec::{FrameError, read_message, write_message};
use super::message::*;
use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use crate::fault::DeviceFault;
use crate::payment::{
    Approval, Forwarding, Instrument, KeyStatus, Outcome, PaymentError, PaymentKey,
    PaymentRequest as Charge, PaymentTerminal, WALLET_BRANDS,
};
use crate::{DeviceError, ErrorKind};

/// How many unrelated frames a response may be preceded by before the exchange is
/// given up as garbled.
const MAX_STRAY_FRAMES: usize = 8;

/// Settings of one nexo terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexoConfig {
    /// The device's configured id.
    pub id: String,
    /// `host:port` of the terminal.
    pub address: String,
    /// This Outpost unit's SaleID.
    pub sale_id: String,
    /// The terminal's POIID.
    pub poi_id: String,
    /// How long to wait for a TCP connection. A connection not made in time is
    /// `Offline`.
    pub connect_timeout: Duration,
    /// How long a payment, refund or reversal may take, card holder included, from
    /// the request being written to its response.
    pub request_timeout: Duration,
    /// How long a status, abort or diagnosis exchange may take.
    pub status_timeout: Duration,
}

impl NexoConfig {
    /// Settings with the defaults: 3 s to connect, 120 s for a payment (the customer
    /// is at the terminal), 10 s for a status query.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            sale_id: "outpost".into(),
            poi_id: id.clone(),
            id,
            address: address.into(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(120),
            status_timeout: Duration::from_secs(10),
        }
    }
}

/// Why one exchange failed, in the terms that decide what the caller may do next.
#[derive(Debug)]
enum Exchange {
    /// Another exchange held the connection for the whole timeout; nothing was sent.
    Busy,
    /// Nothing (or not a whole frame) was written.
    NotSent(String),
    /// The request was written; no usable answer came back.
    Sent(String),
}

impl Exchange {
    fn into_payment(self) -> PaymentError {
        match self {
            Exchange::Busy => PaymentError::Busy,
            Exchange::NotSent(m) => PaymentError::Offline(m),
            Exchange::Sent(m) => PaymentError::OutcomeUnknown(m),
        }
    }
}

/// A payment terminal speaking Outpost's nexo subset (`docs/nexo.md`) over TCP.
///
/// Money-moving commands (authorize, refund, void) run one at a time on one
/// connection, guarded by a `tokio::sync::Mutex` held for the whole exchange. A mutex
/// rather than an owner task: the exchange is strictly request then response, the
/// lock is fair (FIFO), and a caller that is cancelled drops its guard and the
/// connection with it, which is exactly what must happen to a connection in an
/// unknown state; an owner task would have to detect the dropped reply channel and
/// would add a task to supervise. Status, abort and diagnosis use a second connection
/// under its own lock, so the caller can ask about or abort a payment while it runs.
/// A caller waiting longer than the timeout for the lock gets `Busy` (nothing sent).
///
/// Cancel safety: cancelling a command discards its connection; whether a cancelled
/// money-moving command took effect is unknown, so ask [`PaymentTerminal::status`].
#[derive(Debug)]
pub struct NexoTerminal {
    core: DeviceCore,
    config: NexoConfig,
    main: Mutex<Option<TcpStream>>,
    side: Mutex<Option<TcpStream>>,
    /// Makes message ServiceIDs unique across this process's life and restarts.
    id_prefix: String,
    next_id: AtomicU64,
}

impl NexoTerminal {
    /// A closed terminal; [`Device::open`] connects.
    pub fn new(config: NexoConfig) -> Self {
        let info = DeviceInfo::new(
            config.id.clone(),
            DeviceKind::PaymentTerminal,
            "nexo",
            format!("tcp://{}", config.address),
        );
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self {
            core: DeviceCore::new(info),
            config,
            main: Mutex::new(None),
            side: Mutex::new(None),
            id_prefix: format!("m{millis:x}"),
            next_id: AtomicU64::new(1),
        }
    }

    /// The settings.
    pub fn config(&self) -> &NexoConfig {
        &self.config
    }

    fn message_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    fn header(&self, category: MessageCategory, service_id: String) -> MessageHeader {
        MessageHeader::new(
            category,
            MessageType::Request,
            service_id,
            self.config.sale_id.clone(),
            self.config.poi_id.clone(),
        )
    }

    fn reference(&self, key: &PaymentKey) -> MessageReference {
        MessageReference {
            message_category: MessageCategory::Payment,
            service_id: key.0.clone(),
            sale_id: self.config.sale_id.clone(),
        }
    }

    async fn connect(&self) -> Result<TcpStream, Exchange> {
        let addr = self.config.address.as_str();
        let result = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                format!(
                    "no connection to {addr} within {:?}",
                    self.config.connect_timeout
                )
            })
            .and_then(|r| r.map_err(|e| format!("cannot connect to {addr}: {e}")));
        match result {
            Ok(stream) => {
                // Small frames, strict request/response: do not wait to coalesce.
                let _ = stream.set_nodelay(true);
                self.core.set_power(PowerState::Online);
                Ok(stream)
            }
            Err(m) => {
                self.core.set_power(PowerState::Offline);
                Err(Exchange::NotSent(m))
            }
        }
    }

    /// Send `request` on the connection in `slot` (reconnecting if it is gone or
    /// dead) and, when `answered`, wait for its response. Holds the slot's lock for
    /// the whole exchange; see the type's docs for cancel safety.
    async fn exchange(
        &self,
        slot: &Mutex<Option<TcpStream>>,
        request: Message,
        answered: bool,
        timeout: Duration,
    ) -> Result<Option<Response>, Exchange> {
        let mut guard = tokio::time::timeout(timeout, slot.lock())
            .await
            .map_err(|_| Exchange::Busy)?;
        // The exchange gets the whole timeout, however long it queued for the lock.
        let start = Instant::now();
        let mut conn = match guard.take() {
            Some(c) if still_open(&c) => c,
            _ => self.connect().await?,
        };
        let left = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, write_message(&mut conn, &request)).await {
            Ok(Ok(())) => {}
            // write_all had not handed the whole frame to the kernel: the terminal
            // cannot have a complete request.
            Ok(Err(e)) => return Err(Exchange::NotSent(format!("request not sent: {e}"))),
            Err(_) => return Err(Exchange::NotSent("request not sent in time".into())),
        }
        if !answered {
            *guard = Some(conn);
            return Ok(None);
        }
        let want = request.header().clone();
        let mut strays = 0;
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let read = tokio::time::timeout(left, read_message(&mut conn)).await;
            let message = match read {
                Err(_) => return Err(Exchange::Sent(format!("no answer within {timeout:?}"))),
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => {
                    return Err(Exchange::Sent("connection closed before the answer".into()));
                }
                Ok(Err(FrameError::Io(e))) => {
                    return Err(Exchange::Sent(format!(
                        "connection lost before the answer: {e}"
                    )));
                }
                Ok(Err(e)) => return Err(Exchange::Sent(format!("garbled answer: {e}"))),
            };
            match message {
                Message::Response(r)
                    if r.header.service_id == want.service_id
                        && r.header.message_category == want.message_category =>
                {
                    *guard = Some(conn);
                    return Ok(Some(r));
                }
                other => {
                    tracing::warn!(
                        device = %self.config.id,
                        expected = %want.service_id,
                        got = %other.header().service_id,
                        "Skipped a terminal message that is not the answer"
                    );
                    strays += 1;
                    if strays > MAX_STRAY_FRAMES {
                        return Err(Exchange::Sent(format!(
                            "{strays} frames without the answer; last was for {:?}",
                            other.header().service_id
                        )));
                    }
                }
            }
        }
    }

    async fn ask(
        &self,
        slot: &Mutex<Option<TcpStream>>,
        request: Message,
        timeout: Duration,
    ) -> Result<ResponseBody, Exchange> {
        match self.exchange(slot, request, true, timeout).await? {
            Some(r) => Ok(r.body),
            None => Err(Exchange::Sent("no answer".into())),
        }
    }

    async fn diagnose(&self) -> Result<DiagnosisResponse, Exchange> {
        let request = Message::Request(Request {
            header: self.header(MessageCategory::Diagnosis, self.message_id()),
            body: RequestBody::DiagnosisRequest(DiagnosisRequest {}),
        });
        match self
            .ask(&self.side, request, self.config.status_timeout)
            .await?
        {
            ResponseBody::DiagnosisResponse(d) => Ok(d),
            other => Err(Exchange::Sent(format!("unexpected answer {other:?}"))),
        }
    }

    /// Run a payment or refund under `req.key`.
    async fn pay(&self, req: &Charge, refund: bool) -> Result<Outcome, PaymentError> {
        self.core.ensure_ready()?;
        check_key(&req.key)?;
        if req.amount_minor <= 0 {
            return Err(PaymentError::Illegal(format!(
                "amount {} is not positive",
                req.amount_minor
            )));
        }
        if !valid_currency(&req.currency) {
            return Err(PaymentError::Illegal(format!(
                "currency {:?} is not an ISO 4217 code",
                req.currency
            )));
        }
        let request = Message::Request(Request {
            header: self.header(MessageCategory::Payment, req.key.0.clone()),
            body: RequestBody::PaymentRequest(PaymentRequest {
                amounts_req: AmountsReq {
                    currency: req.currency.clone(),
                    requested_amount: req.amount_minor,
                },
                payment_data: refund.then_some(PaymentData {
                    payment_type: PaymentType::Refund,
                }),
                transaction_conditions: match req.instrument {
                    Instrument::Any => None,
                    Instrument::Wallet => Some(TransactionConditions {
                        allowed_payment_brand: WALLET_BRANDS.iter().map(|b| (*b).into()).collect(),
                    }),
                },
            }),
        });
        self.core.count("payments", 1);
        let result = match self
            .ask(&self.main, request, self.config.request_timeout)
            .await
        {
            Ok(ResponseBody::PaymentResponse(p)) => payment_outcome(p),
            Ok(other) => Err(PaymentError::OutcomeUnknown(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => Err(e.into_payment()),
        };
        match &result {
            Ok(Outcome::Approved(a)) => {
                self.core.count("approvals", 1);
                if a.offline {
                    self.core.count("offline_approvals", 1);
                }
            }
            Ok(Outcome::Declined { .. }) => self.core.count("declines", 1),
            Err(PaymentError::OutcomeUnknown(why)) => {
                tracing::warn!(device = %self.config.id, key = %req.key, refund, reason = %why,
                    "Payment outcome unknown; ask the terminal its status");
                self.core.count("outcome_unknown", 1);
            }
            Err(_) => {}
        }
        self.record(&result);
        result
    }

    fn record<T>(&self, result: &Result<T, PaymentError>) {
        let as_fault = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| DeviceFault::new(e.kind(), e.to_string()));
        self.core.record(&as_fault);
    }

    async fn query_status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        check_key(key)?;
        let request = Message::Request(Request {
            header: self.header(MessageCategory::TransactionStatus, self.message_id()),
            body: RequestBody::TransactionStatusRequest(TransactionStatusRequest {
                message_reference: self.reference(key),
            }),
        });
        let body = self
            .ask(&self.side, request, self.config.status_timeout)
            .await
            .map_err(|e| match e {
                Exchange::Busy => PaymentError::Busy,
                Exchange::NotSent(m) => PaymentError::Offline(m),
                // A status query changes nothing, so a lost answer is just a failure
                // to ask; the caller asks again.
                Exchange::Sent(m) => PaymentError::Failure(format!("status query: {m}")),
            })?;
        match body {
            ResponseBody::TransactionStatusResponse(s) => key_status(s),
            other => Err(PaymentError::Failure(format!(
                "unexpected answer to a status query: {other:?}"
            ))),
        }
    }
}

/// Whether a pooled connection is still open: the peer has not closed it and has
/// sent nothing unasked. A real non-blocking `MSG_PEEK` (not tokio's cached
/// readiness), so a terminal that hung up while idle is noticed before anything is
/// written to it and the request is `Offline`, not `OutcomeUnknown`. Were a close
/// still missed (it races with the peek), the exchange is `OutcomeUnknown`, the safe
/// side.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(
        socket2::SockRef::from(stream).peek(&mut byte),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    )
}

fn check_key(key: &PaymentKey) -> Result<(), PaymentError> {
    if valid_id(&key.0) {
        Ok(())
    } else {
        Err(PaymentError::Illegal(format!(
            "payment key must be 1 to {MAX_SERVICE_ID} printable ASCII characters"
        )))
    }
}

fn reason(r: &ResponseResult) -> String {
    match (&r.additional_response, r.error_condition) {
        (Some(text), _) if !text.is_empty() => text.clone(),
        (_, Some(c)) => format!("{c:?}"),
        _ => "declined".into(),
    }
}

/// Only the last four digits of a masked card number ever leave this function.
fn last4(masked: &str) -> Option<String> {
    let tail: Vec<char> = masked.chars().rev().take(4).collect();
    (tail.len() == 4 && tail.iter().all(char::is_ascii_digit))
        .then(|| tail.into_iter().rev().collect())
}

fn approval(p: &PaymentResult) -> Approval {
    Approval {
        auth_code: p.approval_code.clone(),
        brand: p.payment_brand.clone(),
        last4: p.masked_pan.as_deref().and_then(last4),
        offline: p.online_flag == Some(false),
        // A token that is not a short printable id is dropped: the payment then
        // counts against the "unknown card" of a per-card limit.
        card_id: p
            .payment_token
            .as_ref()
            .map(|t| t.token_value.clone())
            .filter(|t| valid_id(t)),
    }
}

fn payment_outcome(p: PaymentResponse) -> Result<Outcome, PaymentError> {
    match p.response.result {
        ResultCode::Success => match &p.payment_result {
            Some(result) => Ok(Outcome::Approved(approval(result))),
            None => Err(PaymentError::OutcomeUnknown(
                "approval without a PaymentResult".into(),
            )),
        },
        ResultCode::Failure => match p.response.error_condition {
            // Refused before starting: nothing happened under the key.
            Some(ErrorCondition::Busy) => Err(PaymentError::Busy),
            Some(ErrorCondition::NotAllowed | ErrorCondition::MessageFormat) => {
                Err(PaymentError::Illegal(reason(&p.response)))
            }
            Some(ErrorCondition::UnavailableService) => {
                Err(PaymentError::Failure(reason(&p.response)))
            }
            // Every other failure of a payment means it was not approved.
            _ => Ok(Outcome::Declined {
                reason: reason(&p.response),
            }),
        },
    }
}

fn key_status(s: TransactionStatusResponse) -> Result<KeyStatus, PaymentError> {
    match s.response.result {
        ResultCode::Failure => match s.response.error_condition {
            Some(ErrorCondition::InProgress) => Ok(KeyStatus::InProgress),
            Some(ErrorCondition::NotFound) => Ok(KeyStatus::Unknown),
            Some(ErrorCondition::Busy) => Err(PaymentError::Busy),
            _ => Err(PaymentError::Failure(format!(
                "status query refused: {}",
                reason(&s.response)
            ))),
        },
        ResultCode::Success => match s.repeated_message_response {
            None => Err(PaymentError::Failure(
                "status answer without the repeated response".into(),
            )),
            Some(r) => match r.repeated_response_message_body {
                RepeatedBody::ReversalResponse(rev)
                    if rev.response.result == ResultCode::Success =>
                {
                    Ok(KeyStatus::Reversed)
                }
                RepeatedBody::ReversalResponse(_) => Err(PaymentError::Failure(
                    "status repeats a failed reversal".into(),
                )),
                RepeatedBody::PaymentResponse(p) => match payment_outcome(p) {
                    Ok(outcome) => Ok(KeyStatus::Done(outcome)),
                    Err(e) => Err(PaymentError::Failure(format!(
                        "status repeats a payment that did not finish: {e}"
                    ))),
                },
            },
        },
    }
}

#[async_trait]
impl Device for NexoTerminal {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    /// Connects and asks the terminal's state (nexo Diagnosis).
    async fn open(&self) -> Result<(), DeviceFault> {
        if self.core.state() != DeviceState::Closed {
            return Ok(());
        }
        match self.diagnose().await {
            Ok(_) => {
                self.core.mark_opened();
                Ok(())
            }
            Err(e) => {
                let fault = DeviceFault::new(
                    ErrorKind::Offline,
                    format!(
                        "payment terminal at {} did not answer: {}",
                        self.config.address,
                        e.into_payment()
                    ),
                );
                self.core.raise_error(&fault);
                Err(fault)
            }
        }
    }

    async fn close(&self) {
        // A connection in use by a running exchange is left to it; that exchange
        // finishes or fails by itself and later commands are refused as not open.
        if let Ok(mut g) = self.main.try_lock() {
            g.take();
        }
        if let Ok(mut g) = self.side.try_lock() {
            g.take();
        }
        self.core.mark_closed(PowerState::Unknown);
    }

    /// Both levels ask the terminal's state; a terminal cannot be exercised without
    /// moving money.
    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = match self.diagnose().await.map(|d| {
            let offline = d.host_status.iter().any(|h| !h.is_reachable_flag);
            (d.poi_status.global_status, offline)
        }) {
            Ok((GlobalStatus::Ok, true)) => HealthReport::now(
                Health::Degraded,
                "terminal ready, but it cannot reach its acquirer: approving offline",
            ),
            Ok((GlobalStatus::Ok, false)) => HealthReport::now(Health::Ok, "terminal ready"),
            Ok((GlobalStatus::Busy, _)) => {
                HealthReport::now(Health::Ok, "terminal busy with a payment")
            }
            Ok((GlobalStatus::Maintenance, _)) => {
                HealthReport::now(Health::Failed, "terminal in maintenance")
            }
            Ok((GlobalStatus::Unreachable, _)) => {
                HealthReport::now(Health::Failed, "terminal cannot reach its acquirer")
            }
            Err(e) => HealthReport::now(
                Health::Failed,
                format!("terminal did not answer: {}", e.into_payment()),
            ),
        };
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl PaymentTerminal for NexoTerminal {
    async fn authorize(&self, req: &Charge) -> Result<Outcome, PaymentError> {
        self.pay(req, false).await
    }

    /// Payments are captured immediately, so there is nothing to send: succeeds when
    /// the terminal says the key is approved, refused as illegal otherwise.
    async fn complete(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        self.core.ensure_ready()?;
        match self.query_status(key).await? {
            KeyStatus::Done(Outcome::Approved(_)) => Ok(()),
            other => Err(PaymentError::Illegal(format!(
                "nothing to complete under {key}: {other:?}"
            ))),
        }
    }

    /// Sends Abort (which has no response), then asks the key's status.
    async fn abort(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        check_key(key)?;
        let request = Message::Request(Request {
            header: self.header(MessageCategory::Abort, self.message_id()),
            body: RequestBody::AbortRequest(AbortRequest {
                message_reference: self.reference(key),
                abort_reason: "MerchantAbort".into(),
            }),
        });
        self.exchange(&self.side, request, false, self.config.status_timeout)
            .await
            .map_err(Exchange::into_payment)?;
        self.query_status(key).await
    }

    async fn void(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        self.core.ensure_ready()?;
        check_key(key)?;
        let request = Message::Request(Request {
            header: self.header(MessageCategory::Reversal, self.message_id()),
            body: RequestBody::ReversalRequest(ReversalRequest {
                original: self.reference(key),
                reversal_reason: "MerchantCancel".into(),
            }),
        });
        let result = match self
            .ask(&self.main, request, self.config.request_timeout)
            .await
        {
            Ok(ResponseBody::ReversalResponse(r)) => match r.response.result {
                ResultCode::Success => Ok(()),
                ResultCode::Failure => match r.response.error_condition {
                    Some(ErrorCondition::Busy) => Err(PaymentError::Busy),
                    Some(ErrorCondition::NotFound | ErrorCondition::NotAllowed) => {
                        Err(PaymentError::Illegal(format!(
                            "cannot reverse {key}: {}",
                            reason(&r.response)
                        )))
                    }
                    _ => Err(PaymentError::Failure(format!(
                        "reversal of {key} failed: {}",
                        reason(&r.response)
                    ))),
                },
            },
            Ok(other) => Err(PaymentError::OutcomeUnknown(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => Err(e.into_payment()),
        };
        if matches!(result, Err(PaymentError::OutcomeUnknown(_))) {
            self.core.count("outcome_unknown", 1);
        }
        self.record(&result);
        result
    }

    async fn refund(&self, req: &Charge) -> Result<Outcome, PaymentError> {
        self.pay(req, true).await
    }

    /// Asks on the status connection, opening a fresh one if needed; works before
    /// `open`, so recovery after a restart can ask at once.
    async fn status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        self.query_status(key).await
    }

    /// A Diagnosis: the acquirer is reachable when every `HostStatus` says so (or none
    /// is given); the queue is the `StoredTransactions` extension, and a terminal that
    /// does not send it cannot say what it forwarded (`Failure`).
    async fn forwarding(&self) -> Result<Forwarding, PaymentError> {
        let d = self.diagnose().await.map_err(|e| match e {
            Exchange::Busy => PaymentError::Busy,
            Exchange::NotSent(m) => PaymentError::Offline(m),
            // Asking changes nothing: a lost answer is a failure to ask.
            Exchange::Sent(m) => PaymentError::Failure(format!("diagnosis: {m}")),
        })?;
        let Some(stored) = d.stored_transactions else {
            return Err(PaymentError::Failure(
                "the terminal does not report its store-and-forward queue".into(),
            ));
        };
        Ok(Forwarding {
            host_reachable: d.host_status.iter().all(|h| h.is_reachable_flag),
            queued: stored.into_iter().map(PaymentKey).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexo::codec::{encode_frame, read_message, write_message};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn charge(key: &str) -> Charge {
        Charge {
            key: PaymentKey(key.into()),
            amount_minor: 100,
            currency: "EUR".into(),
            instrument: Instrument::Any,
        }
    }

    fn config(addr: std::net::SocketAddr) -> NexoConfig {
        let mut c = NexoConfig::new("t1", addr.to_string());
        c.connect_timeout = Duration::from_secs(2);
        c.request_timeout = Duration::from_secs(2);
        c.status_timeout = Duration::from_secs(2);
        c
    }

    fn ready(t: &NexoTerminal) {
        t.core.mark_opened();
        t.core.claim().unwrap();
        t.core.enable().unwrap();
    }

    /// A one-shot terminal: answers the first request on the first connection with
    /// whatever `reply` writes.
    async fn one_shot<F, Fut>(reply: F) -> std::net::SocketAddr
    where
        F: FnOnce(TcpStream, Message) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let m = read_message(&mut s).await.unwrap().unwrap();
            reply(s, m).await;
        });
        addr
    }

    #[test]
    fn only_four_digits_are_kept_from_a_masked_pan() {
        assert_eq!(last4("************4242").as_deref(), Some("4242"));
        assert_eq!(last4("4111111111111111").as_deref(), Some("1111"));
        assert_eq!(last4("42"), None);
        assert_eq!(last4("****42x2"), None);
    }

    #[test]
    fn failures_map_to_declines_or_refusals() {
        let fail = |c| PaymentResponse {
            response: ResponseResult::failure(c, ""),
            payment_result: None,
        };
        assert!(matches!(
            payment_outcome(fail(ErrorCondition::Refusal)),
            Ok(Outcome::Declined { reason }) if reason == "Refusal"
        ));
        assert!(matches!(
            payment_outcome(fail(ErrorCondition::Busy)),
            Err(PaymentError::Busy)
        ));
        assert!(matches!(
            payment_outcome(fail(ErrorCondition::NotAllowed)),
            Err(PaymentError::Illegal(_))
        ));
        let approved_without_result = PaymentResponse {
            response: ResponseResult::success(),
            payment_result: None,
        };
        assert!(matches!(
            payment_outcome(approved_without_result),
            Err(PaymentError::OutcomeUnknown(_))
        ));
    }

    #[tokio::test]
    async fn nothing_listening_is_offline() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = NexoTerminal::new(config(addr));
        assert_eq!(t.open().await.unwrap_err().kind(), ErrorKind::Offline);
        ready(&t);
        let err = t.authorize(&charge("k1")).await.unwrap_err();
        assert!(matches!(err, PaymentError::Offline(_)), "{err}");
        assert_eq!(t.core().power(), PowerState::Offline);
        assert!(matches!(
            t.status(&PaymentKey("k1".into())).await,
            Err(PaymentError::Offline(_))
        ));
    }

    #[tokio::test]
    async fn a_garbled_answer_after_sending_is_outcome_unknown() {
        let addr = one_shot(|mut s, _| async move {
            s.write_all(&encode_frame(b"{not json").unwrap())
                .await
                .unwrap();
        })
        .await;
        let t = NexoTerminal::new(config(addr));
        ready(&t);
        let err = t.authorize(&charge("k1")).await.unwrap_err();
        assert!(matches!(err, PaymentError::OutcomeUnknown(_)), "{err}");
        assert_eq!(t.core().statistics().counters["outcome_unknown"], 1);
    }

    #[tokio::test]
    async fn an_oversized_answer_is_outcome_unknown_without_reading_it() {
        let addr = one_shot(|mut s, _| async move {
            s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
            let _ = s.write_all(&[b'x'; 1024]).await;
        })
        .await;
        let t = NexoTerminal::new(config(addr));
        ready(&t);
        let err = t.authorize(&charge("k1")).await.unwrap_err();
        assert!(
            matches!(&err, PaymentError::OutcomeUnknown(m) if m.contains("exceeds")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_answer_for_another_key_is_not_taken_for_ours() {
        let addr = one_shot(|mut s, m| async move {
            let Message::Request(req) = m else { panic!() };
            let mut header = req.header.response();
            header.service_id = "someone-else".into();
            let stray = Message::Response(Response {
                header,
                body: ResponseBody::PaymentResponse(PaymentResponse {
                    response: ResponseResult::success(),
                    payment_result: Some(PaymentResult {
                        payment_brand: None,
                        masked_pan: None,
                        approval_code: "X".into(),
                        authorized_amount: 100,
                        currency: "EUR".into(),
                        online_flag: None,
                        payment_token: None,
                    }),
                }),
            });
            write_message(&mut s, &stray).await.unwrap();
            // Then nothing: the driver must not take the stray for its answer.
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let mut c = config(addr);
        c.request_timeout = Duration::from_millis(300);
        let t = NexoTerminal::new(c);
        ready(&t);
        let err = t.authorize(&charge("k1")).await.unwrap_err();
        assert!(matches!(err, PaymentError::OutcomeUnknown(_)), "{err}");
    }

    /// Answers each request on its own connection, then hangs up, as a terminal
    /// that closes idle connections does.
    fn answer(m: Message) -> Message {
        let Message::Request(req) = m else { panic!() };
        let body = match req.body {
            RequestBody::DiagnosisRequest(_) => {
                ResponseBody::DiagnosisResponse(DiagnosisResponse::status(GlobalStatus::Ok))
            }
            RequestBody::PaymentRequest(p) => ResponseBody::PaymentResponse(PaymentResponse {
                response: ResponseResult::success(),
                payment_result: Some(PaymentResult {
                    payment_brand: Some("MC".into()),
                    masked_pan: Some("5555********4444".into()),
                    approval_code: "OK1".into(),
                    authorized_amount: p.amounts_req.requested_amount,
                    currency: p.amounts_req.currency,
                    online_flag: None,
                    payment_token: None,
                }),
            }),
            other => panic!("unexpected {other:?}"),
        };
        Message::Response(Response {
            header: req.header.response(),
            body,
        })
    }

    // Symptom: a terminal that closed an idle connection made the next payment
    // "outcome unknown" although it never received it.
    #[tokio::test]
    async fn a_connection_the_terminal_closed_while_idle_is_replaced_before_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            // Diagnosis (status connection), then two payments (payment connection).
            for _ in 0..3 {
                let (mut s, _) = listener.accept().await.unwrap();
                let m = read_message(&mut s).await.unwrap().unwrap();
                write_message(&mut s, &answer(m)).await.unwrap();
            }
        });
        let mut c = config(addr);
        c.poi_id = "p1".into();
        let t = NexoTerminal::new(c);
        t.open().await.unwrap();
        t.core.claim().unwrap();
        t.core.enable().unwrap();
        t.authorize(&charge("k1")).await.unwrap();
        // Let the terminal's close of the payment connection reach us.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = t.authorize(&charge("k2")).await.unwrap();
        assert_eq!(
            out,
            Outcome::Approved(Approval {
                auth_code: "OK1".into(),
                brand: Some("MC".into()),
                last4: Some("4444".into()),
                ..Approval::default()
            })
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn commands_are_refused_before_ready_and_bad_input_before_sending() {
        let t = NexoTerminal::new(config("127.0.0.1:9".parse().unwrap()));
        assert!(matches!(
            t.authorize(&charge("k")).await,
            Err(PaymentError::Offline(_))
        ));
        ready(&t);
        let mut bad = charge("has space");
        assert!(matches!(
            t.authorize(&bad).await,
            Err(PaymentError::Illegal(_))
        ));
        bad = charge("k");
        bad.amount_minor = 0;
        assert!(matches!(
            t.authorize(&bad).await,
            Err(PaymentError::Illegal(_))
        ));
        bad = charge("k");
        bad.currency = "euro".into();
        assert!(matches!(
            t.refund(&bad).await,
            Err(PaymentError::Illegal(_))
        ));
        assert!(!t.core().statistics().counters.contains_key("payments"));
    }
}
