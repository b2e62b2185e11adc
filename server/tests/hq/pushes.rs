//! Catalog, promotion and stock pushes: applied whole, or not at all.

use outpost_proto::hq;
use outpost_proto::hq::CatalogPushKind::{Delta, Snapshot};
use tonic::Code;

use crate::helpers::*;

async fn price_of(app: &HqTestApp, sku: &str) -> Option<i64> {
    let (status, body) = app.get_json(&format!("/api/v1/products/{sku}")).await;
    (status == 200).then(|| body["price"].as_i64().unwrap())
}

#[tokio::test]
async fn a_snapshot_applies_and_status_reports_its_version() {
    let app = spawn(None).await;
    snapshot(&app, 5, 50).await;
    assert_eq!(price_of(&app, "P0000049").await, Some(149));
    let (_, body) = app
        .get_json(&format!(
            "/api/v1/products?barcode={}",
            gtin13(290_000_000_000 + 3)
        ))
        .await;
    assert_eq!(body["items"][0]["sku"], "P0000003");
    let status = app
        .client()
        .await
        .get_status(hq::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((status.catalog_version, status.catalog_products), (5, 50));
    assert_eq!(status.unit_id, "unit-1");
    // An older or equal snapshot version is refused and changes nothing.
    let mut c = app.client().await;
    let err = push(
        &mut c,
        chunks(
            header("old", Snapshot, 5, 0, 1, 0),
            vec![product(1, 1)],
            1,
            vec![],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(price_of(&app, "P0000001").await, Some(101));
    app.stop().await;
}

#[tokio::test]
async fn a_delta_changes_prices_and_removes_products() {
    let app = spawn(None).await;
    snapshot(&app, 1, 20).await;
    let mut c = app.client().await;
    let reply = push(
        &mut c,
        chunks(
            header("d2", Delta, 2, 1, 2, 1),
            vec![product(3, 999), product(100, 5)],
            1,
            vec!["P0000004".into()],
        ),
    )
    .await
    .unwrap();
    assert_eq!((reply.version, reply.products), (2, 20));
    assert_eq!(price_of(&app, "P0000003").await, Some(999));
    assert_eq!(price_of(&app, "P0000100").await, Some(5));
    assert_eq!(price_of(&app, "P0000004").await, None);
    assert_eq!(price_of(&app, "P0000005").await, Some(105));
    app.stop().await;
}

#[tokio::test]
async fn a_delta_on_the_wrong_base_is_refused_and_changes_nothing() {
    let app = spawn(None).await;
    snapshot(&app, 3, 10).await;
    let mut c = app.client().await;
    let err = push(
        &mut c,
        chunks(
            header("d", Delta, 5, 2, 1, 0),
            vec![product(1, 1)],
            1,
            vec![],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("live version is 3"),
        "{}",
        err.message()
    );
    assert_eq!(price_of(&app, "P0000001").await, Some(101));
    app.stop().await;
}

#[tokio::test]
async fn a_truncated_snapshot_changes_nothing_and_resumes() {
    let app = spawn(None).await;
    snapshot(&app, 1, 10).await;
    let products: Vec<_> = (0..30).map(|i| product(i, 7)).collect();
    let all = chunks(header("big", Snapshot, 2, 0, 30, 0), products, 10, vec![]);
    let mut c = app.client().await;
    // Only the first two of three chunks: the stream ends without `last`.
    let err = push(&mut c, all[..2].to_vec()).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(price_of(&app, "P0000001").await, Some(101));
    let state = c
        .get_push_state(hq::GetPushStateRequest {
            push_id: "big".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.received, 20);
    // A chunk at the wrong offset is refused and the push can still resume.
    let mut wrong = all[2].clone();
    wrong.header = all[0].header.clone();
    wrong.offset = 10;
    let err = push(&mut c, vec![wrong]).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let mut resume = all[2].clone();
    resume.header = all[0].header.clone();
    let reply = push(&mut c, vec![resume]).await.unwrap();
    assert_eq!((reply.version, reply.products), (2, 30));
    assert_eq!(price_of(&app, "P0000001").await, Some(7));
    app.stop().await;
}

#[tokio::test]
async fn malformed_pushes_change_nothing() {
    let app = spawn(None).await;
    snapshot(&app, 1, 5).await;
    let mut c = app.client().await;
    let mut bad = product(2, 1);
    bad.barcodes = vec!["4006381333932".into()];
    let cases: Vec<(Vec<hq::CatalogChunk>, Code, &str)> = vec![
        (
            chunks(
                header("a", Snapshot, 2, 0, 2, 0),
                vec![product(1, 1), bad],
                1,
                vec![],
            ),
            Code::InvalidArgument,
            "barcodes[0]",
        ),
        (
            chunks(
                header("b", Snapshot, 2, 0, 2, 0),
                vec![product(1, 1), product(1, 2)],
                1,
                vec![],
            ),
            Code::InvalidArgument,
            "already appears",
        ),
        (
            chunks(
                header("c", Snapshot, 2, 0, 3, 0),
                vec![product(1, 1)],
                1,
                vec![],
            ),
            Code::InvalidArgument,
            "announced 3",
        ),
        (
            vec![hq::CatalogChunk {
                header: None,
                offset: 0,
                products: vec![],
                removed_skus: vec![],
                last: true,
            }],
            Code::InvalidArgument,
            "header",
        ),
        (
            chunks(
                header("", Snapshot, 2, 0, 1, 0),
                vec![product(1, 1)],
                1,
                vec![],
            ),
            Code::InvalidArgument,
            "push_id",
        ),
        (
            chunks(
                header("e", Snapshot, 2, 0, 99_000_000, 0),
                vec![product(1, 1)],
                1,
                vec![],
            ),
            Code::ResourceExhausted,
            "limit",
        ),
        (
            chunks(
                hq::CatalogPushHeader {
                    kind: 7,
                    ..header("f", Snapshot, 2, 0, 1, 0)
                },
                vec![product(1, 1)],
                1,
                vec![],
            ),
            Code::InvalidArgument,
            "kind",
        ),
    ];
    for (chunks, code, needle) in cases {
        let err = push(&mut c, chunks).await.unwrap_err();
        assert_eq!(err.code(), code, "{needle}: {err:?}");
        assert!(
            err.message().contains(needle),
            "{needle}: {}",
            err.message()
        );
    }
    assert_eq!(price_of(&app, "P0000001").await, Some(101));
    let status = c
        .get_status(hq::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((status.catalog_version, status.catalog_products), (1, 5));
    app.stop().await;
}

/// A message whose bytes are not a CatalogChunk at all.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    /// Field 1 of CatalogChunk is the header message; these bytes are not one.
    #[prost(bytes = "vec", tag = "1")]
    junk: Vec<u8>,
}

#[tokio::test]
async fn a_garbage_message_is_refused_and_changes_nothing() {
    let app = spawn(None).await;
    snapshot(&app, 1, 5).await;
    let channel = tonic::transport::Channel::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/outpost.hq.v1.StoreService/PushCatalog");
    let msg = Garbage {
        junk: vec![0xff; 64],
    };
    let err = grpc
        .client_streaming::<_, Garbage, hq::PushCatalogReply, _>(
            app.authorize(tonic::Request::new(tokio_stream::iter(vec![msg]))),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::Internal | Code::InvalidArgument),
        "{err:?}"
    );
    assert_eq!(price_of(&app, "P0000001").await, Some(101));
    app.stop().await;
}

#[tokio::test]
async fn promotions_apply_by_version() {
    let app = spawn(None).await;
    let mut c = app.client().await;
    let promo = r#"{"id":"p1","name":"Ten off","kind":{"type":"percent_off","percent_bp":1000},"target":{"categories":["even"]},"starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z"}"#;
    let reply = c
        .push_promotions(hq::PromotionsPush {
            version: 4,
            promotions: vec![hq::Promotion { json: promo.into() }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.version, 4);
    let (_, body) = app.get_json("/api/v1/promotions").await;
    assert_eq!(body["items"][0]["id"], "p1");
    let err = c
        .push_promotions(hq::PromotionsPush {
            version: 4,
            promotions: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = c
        .push_promotions(hq::PromotionsPush {
            version: 5,
            promotions: vec![hq::Promotion { json: "{".into() }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("promotions[0]"),
        "{}",
        err.message()
    );
    let (_, body) = app.get_json("/api/v1/promotions").await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn stock_counts_reapply_later_store_movements() {
    let app = spawn(None).await;
    snapshot(&app, 1, 5).await;
    let as_of = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Sell 2 after HQ's count was taken.
    let r = app
        .http
        .post(format!("{}/api/v1/checkout", app.base))
        .header("Idempotency-Key", "sale-after-count")
        .json(&serde_json::json!({"lines":[{"sku":"P0000001","quantity":2}],"payment":{"method":"cash","tendered":10000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let mut c = app.client().await;
    c.push_stock_counts(hq::StockCountsPush {
        version: 1,
        as_of_unix_ms: as_of,
        counts: vec![hq::StockCount {
            sku: "P0000001".into(),
            quantity: 50,
        }],
    })
    .await
    .unwrap();
    let (_, body) = app.get_json("/api/v1/inventory/P0000001").await;
    assert_eq!(body["stock"], 48, "{body}");
    let err = c
        .push_stock_counts(hq::StockCountsPush {
            version: 2,
            as_of_unix_ms: 0,
            counts: vec![hq::StockCount {
                sku: "".into(),
                quantity: 1,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    app.stop().await;
}

#[tokio::test]
async fn commands_are_answered_once_per_id_and_health_is_served() {
    let app = spawn(None).await;
    let mut c = app.client().await;
    let cmd = hq::Command {
        command_id: "c1".into(),
        kind: Some(hq::command::Kind::Resync(hq::ResyncCommand {})),
    };
    let a = c.send_command(cmd.clone()).await.unwrap().into_inner();
    let b = c.send_command(cmd).await.unwrap().into_inner();
    assert_eq!(a, b);
    let err = c
        .send_command(hq::Command {
            command_id: "c2".into(),
            kind: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .send_command(hq::Command {
            command_id: "c3".into(),
            kind: Some(hq::command::Kind::SetLogLevel(hq::SetLogLevelCommand {
                filter: "[[[".into(),
            })),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let channel = tonic::transport::Channel::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "outpost.hq.v1.StoreService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // The port's calls are in /metrics, by method and status.
    let metrics = authed(&app.base)
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "outpost_requests_total{protocol=\"grpc\",route=\"/grpc.health.v1.Health/Check\",method=\"POST\",status=\"OK\"}",
        "outpost_requests_total{protocol=\"grpc\",route=\"/outpost.hq.v1.StoreService/SendCommand\",method=\"POST\",status=\"INVALID_ARGUMENT\"}",
        "outpost_request_duration_seconds_count{protocol=\"grpc\",route=\"/grpc.health.v1.Health/Check\",method=\"POST\",status=\"OK\"}",
    ] {
        assert!(metrics.contains(want), "{want} not in {metrics}");
    }
    app.stop().await;
}
