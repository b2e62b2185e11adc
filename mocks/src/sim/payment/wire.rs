//! The terminal on the wire: the task that owns the listener and every connection
//! (and cuts the power), and the answer to each request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use outpost_peripherals::nexo::codec::{encode_frame, read_message, write_message};
use outpost_peripherals::nexo::message::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

use super::Mode;
use super::terminal::{Entry, PowerOff, Shared, begin, finish};

/// The owner of the listener and of every connection task.
pub(super) async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut power_rx: mpsc::Receiver<PowerOff>,
) {
    let mut listener = listener;
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if conns.len() >= shared.options.max_connections {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                conns.spawn(connection(stream, Arc::clone(&shared)));
            }
            Some(cmd) = power_rx.recv() => {
                // Off: stop listening first, so nothing can connect, then drop every
                // connection (the one that lost power included).
                drop(listener);
                shared.powered.store(false, Ordering::SeqCst);
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                {
                    // Whatever was running did not finish: it never charged.
                    let mut st = shared.lock();
                    st.journal.retain(|_, e| !matches!(e, Entry::InProgress));
                    st.aborts.clear();
                }
                let _ = cmd.done.send(());
                tokio::time::sleep(cmd.off_for).await;
                match rebind(addr).await {
                    Some(l) => listener = l,
                    None => return,
                }
                shared.powered.store(true, Ordering::SeqCst);
            }
        }
    }
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    // Bounded: the port was ours a moment ago; give up after about two seconds.
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// What to do with the connection after a request.
enum After {
    Answer(Box<Response>),
    Nothing,
    Close,
    Garbage,
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let message = match read_message(&mut stream).await {
            Ok(Some(m)) => m,
            // End of stream, or bytes that are not a message: a real terminal hangs up.
            Ok(None) | Err(_) => return,
        };
        let Message::Request(request) = message else {
            return;
        };
        let after = handle(&shared, request).await;
        match after {
            After::Answer(r) => {
                if write_message(&mut stream, &Message::Response(*r))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            After::Nothing => {}
            After::Close => return,
            After::Garbage => {
                if let Ok(frame) = encode_frame(b"\x00\x13garbage{{") {
                    let _ = stream.write_all(&frame).await;
                }
                return;
            }
        }
    }
}

fn respond(header: &MessageHeader, body: ResponseBody) -> After {
    After::Answer(Box::new(Response {
        header: header.response(),
        body,
    }))
}

fn payment_response(entry: &Entry) -> Option<PaymentResponse> {
    match entry {
        Entry::Charged { result } | Entry::Refunded { result } => Some(PaymentResponse {
            response: ResponseResult::success(),
            payment_result: Some(result.clone()),
        }),
        Entry::Declined { condition, reason } => Some(PaymentResponse {
            response: ResponseResult::failure(*condition, reason.clone()),
            payment_result: None,
        }),
        Entry::InProgress | Entry::Reversed => None,
    }
}

async fn handle(shared: &Arc<Shared>, request: Request) -> After {
    let header = request.header;
    match request.body {
        RequestBody::PaymentRequest(p) => payment(shared, &header, p).await,
        RequestBody::ReversalRequest(r) => {
            let key = r.original.service_id;
            let mut st = shared.lock();
            let result = match st.journal.get(&key) {
                Some(Entry::Charged { .. }) => {
                    // A reversed offline approval is never forwarded.
                    st.stored.retain(|k| *k != key);
                    st.journal.insert(key, Entry::Reversed);
                    ResponseResult::success()
                }
                Some(Entry::Reversed) => ResponseResult::success(),
                Some(Entry::InProgress) => {
                    ResponseResult::failure(ErrorCondition::NotAllowed, "payment in progress")
                }
                Some(Entry::Refunded { .. }) => {
                    ResponseResult::failure(ErrorCondition::NotAllowed, "a refund is not reversed")
                }
                Some(Entry::Declined { .. }) => {
                    ResponseResult::failure(ErrorCondition::NotAllowed, "payment was not approved")
                }
                None => ResponseResult::failure(ErrorCondition::NotFound, "no such payment"),
            };
            respond(
                &header,
                ResponseBody::ReversalResponse(ReversalResponse { response: result }),
            )
        }
        RequestBody::TransactionStatusRequest(s) => {
            let key = s.message_reference.service_id;
            let st = shared.lock();
            let (response, repeated) = match st.journal.get(&key) {
                None => (
                    ResponseResult::failure(ErrorCondition::NotFound, "no such payment"),
                    None,
                ),
                Some(Entry::InProgress) => (
                    ResponseResult::failure(ErrorCondition::InProgress, "payment in progress"),
                    None,
                ),
                Some(entry) => {
                    let (category, body) = match payment_response(entry) {
                        Some(p) => (MessageCategory::Payment, RepeatedBody::PaymentResponse(p)),
                        None => (
                            MessageCategory::Reversal,
                            RepeatedBody::ReversalResponse(ReversalResponse {
                                response: ResponseResult::success(),
                            }),
                        ),
                    };
                    let repeated = RepeatedMessageResponse {
                        message_header: MessageHeader::new(
                            category,
                            MessageType::Response,
                            key.clone(),
                            s.message_reference.sale_id.clone(),
                            shared.options.poi_id.clone(),
                        ),
                        repeated_response_message_body: body,
                    };
                    (ResponseResult::success(), Some(repeated))
                }
            };
            respond(
                &header,
                ResponseBody::TransactionStatusResponse(TransactionStatusResponse {
                    response,
                    repeated_message_response: repeated,
                }),
            )
        }
        RequestBody::AbortRequest(a) => {
            let key = a.message_reference.service_id;
            let mut st = shared.lock();
            let aborted = Entry::Declined {
                condition: ErrorCondition::Aborted,
                reason: "aborted".into(),
            };
            match st.journal.get(&key) {
                Some(Entry::InProgress) => {
                    st.journal.insert(key.clone(), aborted);
                    if let Some(n) = st.aborts.remove(&key) {
                        n.notify_one();
                    }
                }
                // Never seen: remember the abort, so a payment arriving late under
                // this key is refused instead of charged.
                None => {
                    st.journal.insert(key, aborted);
                }
                Some(_) => {}
            }
            After::Nothing
        }
        RequestBody::DiagnosisRequest(_) => {
            let st = shared.lock();
            let busy = st.journal.values().any(|e| matches!(e, Entry::InProgress));
            let mut d = DiagnosisResponse::status(if busy {
                GlobalStatus::Busy
            } else {
                GlobalStatus::Ok
            });
            d.host_status = vec![HostStatus {
                acquirer_id: "sim-acquirer".into(),
                is_reachable_flag: st.host_reachable,
            }];
            d.stored_transactions = Some(st.stored.iter().cloned().collect());
            drop(st);
            respond(&header, ResponseBody::DiagnosisResponse(d))
        }
        // A request kind this simulator does not know: refuse it in form.
        _ => After::Close,
    }
}

async fn payment(shared: &Arc<Shared>, header: &MessageHeader, p: PaymentRequest) -> After {
    let key = header.service_id.as_str();
    let answer = |entry: &Entry| match payment_response(entry) {
        Some(r) => respond(header, ResponseBody::PaymentResponse(r)),
        None => After::Close,
    };
    let mode = match begin(shared, key) {
        Ok(m) => m,
        Err(refusal) => {
            return respond(
                header,
                ResponseBody::PaymentResponse(PaymentResponse {
                    response: refusal,
                    payment_result: None,
                }),
            );
        }
    };
    match mode {
        Mode::Approve => answer(&finish(shared, key, &p, None)),
        Mode::Decline(reason) => answer(&finish(shared, key, &p, Some(reason))),
        Mode::Late(delay) => {
            let notify = Arc::new(Notify::new());
            shared
                .lock()
                .aborts
                .insert(key.to_owned(), Arc::clone(&notify));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = notify.notified() => {}
            }
            answer(&finish(shared, key, &p, None))
        }
        Mode::LoseResponse => {
            finish(shared, key, &p, None);
            After::Close
        }
        Mode::Garbage => {
            finish(shared, key, &p, None);
            After::Garbage
        }
        Mode::PowerLoss { charged, off_for } => {
            if charged {
                finish(shared, key, &p, None);
            }
            // Not charged: the entry stays in progress and the power loss drops it.
            let (done, off) = oneshot::channel();
            if shared
                .power_tx
                .send(PowerOff { off_for, done })
                .await
                .is_ok()
            {
                // The power-off aborts this task (and drops its connection) before
                // answering; waiting here only covers a simulator shutting down.
                let _ = off.await;
            }
            After::Close
        }
    }
}
