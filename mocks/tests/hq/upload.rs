//! `HqService.Upload`: hello, acks, dedup, errors, faults, restarts.

use std::time::{Duration, Instant};

use outpost_mocks::hq::{Faults, MockHq};
use outpost_proto::hq::UploadMessage;
use tonic::Code;

use crate::helpers::{Conversation, batch, env, envs, hello, seqs, start_hq};

#[tokio::test]
async fn hello_then_batches_are_acked_with_the_highest_contiguous_seq() {
    let (hq, _dir) = start_hq(Faults::none()).await;
    let (mut c, acked) = Conversation::hello(&hq.url(), "unit-a").await;
    assert_eq!(acked, 0);
    assert_eq!(c.ack_of(batch(envs(1..=3))).await, 3);
    assert_eq!(c.ack_of(batch(envs(4..=5))).await, 5);
    // An empty batch is acked with what is held.
    assert_eq!(c.ack_of(batch(vec![])).await, 5);
    drop(c.tx);
    assert_eq!(c.acks.message().await.unwrap(), None);
    assert_eq!(seqs(&hq.received("unit-a")), vec![1, 2, 3, 4, 5]);
    assert_eq!(hq.received("unit-a")[2], env(3, "x"));
    assert_eq!(hq.acked("unit-a"), 5);
    assert_eq!(hq.acked("unit-b"), 0);
    let stats = hq.stats();
    assert_eq!(stats.envelopes_stored, 5);
    assert_eq!(stats.connections, 1);
    // A second unit has its own sequence.
    let (mut c, acked) = Conversation::hello(&hq.url(), "unit-b").await;
    assert_eq!(acked, 0);
    assert_eq!(c.ack_of(batch(envs(1..=2))).await, 2);
    assert_eq!(hq.units(), vec!["unit-a".to_owned(), "unit-b".to_owned()]);
    hq.shutdown().await.unwrap();
}

#[tokio::test]
async fn identical_resend_is_ignored_and_reacked() {
    let (hq, _dir) = start_hq(Faults::none()).await;
    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(c.ack_of(batch(envs(1..=3))).await, 3);
    drop(c);
    // The store lost the ack and resends from 2: nothing is stored twice.
    let (mut c, acked) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(acked, 3);
    assert_eq!(c.ack_of(batch(envs(2..=4))).await, 4);
    assert_eq!(c.ack_of(batch(envs(1..=1))).await, 4);
    assert_eq!(seqs(&hq.received("u")), vec![1, 2, 3, 4]);
    let stats = hq.stats();
    assert_eq!(stats.envelopes_stored, 4);
    assert_eq!(stats.duplicates_ignored, 3);
}

#[tokio::test]
async fn same_seq_with_other_content_is_data_loss() {
    let (hq, _dir) = start_hq(Faults::none()).await;
    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(c.ack_of(batch(envs(1..=2))).await, 2);
    c.send(batch(vec![env(2, "changed"), env(3, "x")])).await;
    assert_eq!(c.next().await.unwrap(), Some(2));
    let status = c.next().await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("seq 2"), "{status:?}");
    assert_eq!(seqs(&hq.received("u")), vec![1, 2]);
    assert_eq!(hq.received("u")[1], env(2, "x"));
    assert_eq!(hq.stats().errors, 1);
}

#[tokio::test]
async fn gap_is_failed_precondition_naming_the_expected_seq() {
    let (hq, _dir) = start_hq(Faults::none()).await;
    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    c.send(batch(vec![env(1, "x"), env(3, "x"), env(4, "x")]))
        .await;
    assert_eq!(c.next().await.unwrap(), Some(1));
    let status = c.next().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("expected seq 2"), "{status:?}");
    assert_eq!(seqs(&hq.received("u")), vec![1]);
    // A fresh stream starting with a gap stores nothing.
    let (mut c, acked) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(acked, 1);
    c.send(batch(envs(5..=6))).await;
    assert_eq!(c.next().await.unwrap(), Some(1));
    assert_eq!(c.next().await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(hq.acked("u"), 1);
}

#[tokio::test]
async fn anything_but_hello_first_is_invalid_argument() {
    let (hq, _dir) = start_hq(Faults::none()).await;
    let mut c = Conversation::open(&hq.url()).await.unwrap();
    c.send(batch(envs(1..=1))).await;
    let status = c.next().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("Hello"), "{status:?}");

    let mut c = Conversation::open(&hq.url()).await.unwrap();
    c.send(UploadMessage { body: None }).await;
    assert_eq!(c.next().await.unwrap_err().code(), Code::InvalidArgument);

    let mut c = Conversation::open(&hq.url()).await.unwrap();
    c.send(hello("")).await;
    assert_eq!(c.next().await.unwrap_err().code(), Code::InvalidArgument);

    let mut c = Conversation::open(&hq.url()).await.unwrap();
    c.send(hello(&"u".repeat(129))).await;
    assert_eq!(c.next().await.unwrap_err().code(), Code::InvalidArgument);

    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    c.send(hello("u")).await;
    assert_eq!(c.next().await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(hq.acked("u"), 0);
    assert_eq!(hq.received("u"), vec![]);
}

#[tokio::test]
async fn a_bad_envelope_fails_its_whole_batch() {
    let (hq, _dir) = start_hq(Faults::none()).await;
    let mut unspecified = env(2, "x");
    unspecified.kind = 0;
    let mut no_id = env(2, "x");
    no_id.id.clear();
    let mut no_json = env(2, "x");
    no_json.json.clear();
    let mut no_time = env(2, "x");
    no_time.at_unix_ms = 0;
    let mut seq_zero = env(2, "x");
    seq_zero.seq = 0;
    for (i, bad) in [unspecified, no_id, no_json, no_time, seq_zero]
        .into_iter()
        .enumerate()
    {
        let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
        c.send(batch(vec![env(1, "x"), bad])).await;
        let status = c.next().await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "case {i}: {status:?}");
        assert!(status.message().contains("envelope 1"), "{status:?}");
        assert_eq!(hq.acked("u"), 0, "case {i}");
    }
    assert_eq!(hq.stats().errors, 5);
}

/// Sends `total` envelopes for `unit` in batches of `per_batch`, reconnecting after
/// every error and resuming right after the acked seq, as the store's uplink does.
/// Returns the number of connections used.
async fn upload_all(url: &str, unit: &str, total: u64, per_batch: u64) -> u64 {
    let mut connections = 0;
    for _ in 0..10 * total {
        connections += 1;
        let Ok(mut c) = Conversation::open(url).await else {
            continue;
        };
        c.send(hello(unit)).await;
        let Ok(Some(mut acked)) = c.next().await else {
            continue;
        };
        while acked < total {
            let to = (acked + per_batch).min(total);
            c.send(batch(envs(acked + 1..=to))).await;
            match c.next().await {
                Ok(Some(a)) => acked = a,
                _ => break,
            }
        }
        if acked == total {
            return connections;
        }
    }
    panic!("upload of {total} envelopes did not finish");
}

#[tokio::test]
async fn cut_every_cuts_streams_and_a_reconnect_resumes_from_the_acked_seq() {
    let (hq, _dir) = start_hq(Faults::none().with_cut_every(Some(3))).await;
    let (mut c, acked) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(acked, 0);
    assert_eq!(c.ack_of(batch(envs(1..=2))).await, 2);
    // The third message is stored, but the ack never comes: the stream is cut.
    c.send(batch(envs(3..=4))).await;
    let status = c.next().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(hq.stats().cuts, 1);
    // The reconnect learns that 3 and 4 are stored.
    let (mut c, acked) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(acked, 4);
    assert_eq!(c.ack_of(batch(envs(5..=5))).await, 5);
    drop(c);

    // An uplink-like loop under cuts: everything arrives once, in order.
    let connections = upload_all(&hq.url(), "v", 200, 7).await;
    assert!(connections > 1);
    assert_eq!(seqs(&hq.received("v")), (1..=200).collect::<Vec<_>>());
    assert!(hq.stats().cuts >= 10);
}

#[tokio::test]
async fn data_survives_an_hq_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let hq = MockHq::start("127.0.0.1:0".parse().unwrap(), dir.path(), Faults::none())
        .await
        .unwrap();
    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(c.ack_of(batch(envs(1..=5))).await, 5);
    drop(c);
    let before = hq.received("u");
    hq.shutdown().await.unwrap();

    let hq = MockHq::start("127.0.0.1:0".parse().unwrap(), dir.path(), Faults::none())
        .await
        .unwrap();
    assert_eq!(hq.acked("u"), 5);
    assert_eq!(hq.received("u"), before);
    let (mut c, acked) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(acked, 5);
    // Dedup still holds across the restart.
    c.send(batch(vec![env(5, "other")])).await;
    assert_eq!(c.next().await.unwrap(), Some(5));
    assert_eq!(c.next().await.unwrap_err().code(), Code::DataLoss);
    hq.shutdown().await.unwrap();
}

#[tokio::test]
async fn fail_refuses_uploads_until_cleared() {
    let (hq, _dir) = start_hq(Faults::none().with_fail(true)).await;
    let err = match Conversation::open(&hq.url()).await {
        Err(status) => status,
        Ok(mut c) => {
            c.send(hello("u")).await;
            c.next().await.unwrap_err()
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(hq.stats().refused, 1);
    hq.set_faults(Faults::none()).unwrap();
    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(c.ack_of(batch(envs(1..=1))).await, 1);
    // Set while a stream is open: its next message is refused.
    hq.set_faults(Faults::none().with_fail(true)).unwrap();
    c.send(batch(envs(2..=2))).await;
    assert_eq!(c.next().await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(hq.acked("u"), 1);
    assert!(
        hq.set_faults(Faults::none().with_cut_every(Some(1)))
            .is_err()
    );
}

#[tokio::test]
async fn ack_delay_holds_each_ack_back() {
    let delay = Duration::from_millis(150);
    let (hq, _dir) = start_hq(Faults::none().with_ack_delay(delay)).await;
    let started = Instant::now();
    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(c.ack_of(batch(envs(1..=1))).await, 1);
    // Two acks, each at least `delay` late: a lower bound, never flaky.
    assert!(started.elapsed() >= delay * 2);
    assert_eq!(hq.faults().ack_delay, delay);
}

#[tokio::test]
async fn stop_refuses_connections_and_start_serves_the_same_port_again() {
    let (hq, _dir) = start_hq(Faults::none()).await;
    let addr = hq.addr();
    let (mut open, _) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(open.ack_of(batch(envs(1..=2))).await, 2);
    hq.stop().await;
    // The open stream ends, and new connections are refused.
    let ended = loop {
        match open.next().await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert!(!matches!(ended, Ok(Some(_))));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    hq.start().await.unwrap();
    assert_eq!(hq.addr(), addr);
    let (mut c, acked) = Conversation::hello(&hq.url(), "u").await;
    assert_eq!(acked, 2);
    assert_eq!(c.ack_of(batch(envs(3..=3))).await, 3);
    assert!(hq.start().await.is_err(), "start while serving");
    hq.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_upload_messages_are_refused() {
    // A batch over the envelope limit and an oversized message.
    let (hq, _dir) = start_hq(Faults::none()).await;
    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    c.send(batch(envs(1..=10_001))).await;
    assert_eq!(c.next().await.unwrap_err().code(), Code::InvalidArgument);
    let (mut c, _) = Conversation::hello(&hq.url(), "u").await;
    let mut big = env(1, "x");
    big.json = vec![b'x'; 5 * 1024 * 1024];
    c.send(batch(vec![big])).await;
    let status = c.next().await.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(hq.acked("u"), 0);
}
