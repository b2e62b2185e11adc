//! The gRPC port without mutual TLS (loopback, no `sync.hq_ca`): what changes the store
//! needs HQ's push token or an admin session; reads stay open.

use std::time::Duration;

use base64::Engine as _;

use outpost_mocks::hq::{CatalogSource, Credentials, HqKey, PushKind, PushOptions, push};
use outpost_proto::hq;
use outpost_proto::hq::store_service_client::StoreServiceClient;
use outpost_security::auth::roles::Role;
use outpost_security::lease::Lease;
use outpost_security::push_token::{PUSH_TOKEN_METADATA, PushToken, PushTokenSigner};
use secrecy::SecretString;
use time::OffsetDateTime;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::*;

const HQ_SECRET: [u8; 32] = [11; 32];
/// A device set that points the payment terminal at another host would be the attack;
/// any valid set shows the same thing, and this one applies in these tests' config.
const DEVICES: &str = "[[devices]]\nid = \"display-x\"\nkind = \"display\"\ndriver = \"mock\"\n";

async fn bare_client(app: &HqTestApp) -> StoreServiceClient<Channel> {
    StoreServiceClient::connect(app.grpc.clone()).await.unwrap()
}

async fn status(app: &HqTestApp) -> hq::StoreStatus {
    bare_client(app)
        .await
        .get_status(hq::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn tax(version: u64, bp: i32) -> hq::TaxRatesPush {
    hq::TaxRatesPush {
        version,
        rates: vec![hq::TaxRate {
            tax_class: "standard".into(),
            rate_bp: bp,
        }],
        mode: hq::TaxMode::Unspecified as i32,
    }
}

fn devices(version: u64) -> hq::DeviceConfigPush {
    hq::DeviceConfigPush {
        version,
        devices_toml: DEVICES.into(),
    }
}

/// `message` with `metadata` set (`None`: nothing added).
fn with<T>(message: T, metadata: Option<(&'static str, String)>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some((k, v)) = metadata {
        r.metadata_mut().insert(k, v.parse().unwrap());
    }
    r
}

/// Audit entries of `action`, as "actor: detail".
fn audited(app: &HqTestApp, action: &str) -> Vec<String> {
    app.security
        .audit_entries(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| format!("{}: {}", e.actor, e.detail))
        .collect()
}

/// Every version the store reports, and its catalog's size.
fn versions(s: &hq::StoreStatus) -> [u64; 8] {
    [
        s.catalog_version,
        s.catalog_products,
        s.promotions_version,
        s.tax_rates_version,
        s.planogram_version,
        s.store_config_version,
        s.device_config_version,
        s.stock_counts_version,
    ]
}

async fn price_of(app: &HqTestApp, sku: &str) -> Option<i64> {
    let (status, body) = app.get_json(&format!("/api/v1/products/{sku}")).await;
    (status == 200).then(|| body["price"].as_i64().unwrap())
}

/// Issue 14 (g): any local process could push prices, tax rates and device sets to
/// the plaintext loopback port.
#[tokio::test]
async fn every_change_without_credentials_is_refused_and_changes_nothing() {
    let app = spawn(None).await;
    snapshot(&app, 1, 3).await;
    let before = versions(&status(&app).await);
    let (_, stock_before) = app.get_json("/api/v1/inventory/P0000001").await;
    let mut c = bare_client(&app).await;

    let h = header("evil", hq::CatalogPushKind::Snapshot, 2, 0, 1, 0);
    let refusals: Vec<(&str, tonic::Status)> = vec![
        (
            "PushCatalog",
            c.push_catalog(tokio_stream::iter(chunks(
                h,
                vec![product(1, 1)],
                1,
                vec![],
            )))
            .await
            .unwrap_err(),
        ),
        (
            "PushPromotions",
            c.push_promotions(hq::PromotionsPush {
                version: 1,
                promotions: vec![],
            })
            .await
            .unwrap_err(),
        ),
        (
            "PushTaxRates",
            c.push_tax_rates(tax(1, 9_900)).await.unwrap_err(),
        ),
        (
            "PushPlanogram",
            c.push_planogram(hq::PlanogramPush {
                slots: vec![],
                version: 1,
                locations: vec![],
            })
            .await
            .unwrap_err(),
        ),
        (
            "PushStoreConfig",
            c.push_store_config(hq::StoreConfigPush {
                version: 1,
                store_name: "Not Your Store".into(),
                receipt_header: vec![],
                offline_exposure: None,
            })
            .await
            .unwrap_err(),
        ),
        (
            "PushDeviceConfig",
            c.push_device_config(devices(1)).await.unwrap_err(),
        ),
        (
            "PushStockCounts",
            c.push_stock_counts(hq::StockCountsPush {
                version: 1,
                as_of_unix_ms: 1_700_000_000_000,
                counts: vec![hq::StockCount {
                    sku: "P0000001".into(),
                    quantity: 500,
                }],
            })
            .await
            .unwrap_err(),
        ),
        (
            "SendCommand",
            c.send_command(hq::Command {
                command_id: "x1".into(),
                kind: Some(hq::command::Kind::Resync(hq::ResyncCommand {})),
            })
            .await
            .unwrap_err(),
        ),
        (
            "OfferArtifact",
            c.offer_artifact(hq::ArtifactOffer::default())
                .await
                .unwrap_err(),
        ),
    ];
    for (method, e) in &refusals {
        assert_eq!(e.code(), Code::Unauthenticated, "{method}: {e:?}");
        assert!(e.message().starts_with(method), "{method}: {}", e.message());
        assert!(e.message().contains(PUSH_TOKEN_METADATA), "{}", e.message());
        assert!(
            e.message().contains("nothing was applied"),
            "{}",
            e.message()
        );
    }

    // A catalog stream is refused before its first chunk is read: this one never
    // sends any.
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        c.push_catalog(futures::stream::pending::<hq::CatalogChunk>()),
    )
    .await
    .expect("refused without waiting for a chunk")
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Nothing changed.
    assert_eq!(versions(&status(&app).await), before);
    assert_eq!(price_of(&app, "P0000001").await, Some(101));
    let (_, stock) = app.get_json("/api/v1/inventory/P0000001").await;
    assert_eq!(stock["stock"], stock_before["stock"], "{stock}");
    // The refused command was not remembered: the id is still free.
    let e = app
        .client()
        .await
        .send_command(hq::Command {
            command_id: "x1".into(),
            kind: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Each refusal is audited, with the method and the caller's address.
    let refused = audited(&app, "hq.push.refused");
    assert_eq!(refused.len(), refusals.len() + 1, "{refused:#?}");
    assert!(
        refused
            .iter()
            .any(|r| r.starts_with("-: PushTaxRates from 127.0.0.1:")),
        "{refused:#?}"
    );

    // The same pushes with an admin session apply: they were refused for their
    // missing credential alone.
    let mut admin = app.client().await;
    admin.push_tax_rates(tax(1, 9_900)).await.unwrap();
    admin.push_device_config(devices(1)).await.unwrap();
    let after = status(&app).await;
    assert_eq!(
        (after.tax_rates_version, after.device_config_version),
        (1, 1)
    );
    app.stop().await;
}

#[tokio::test]
async fn reads_stay_open_without_credentials() {
    let app = spawn(None).await;
    let mut c = bare_client(&app).await;
    let s = c
        .get_status(hq::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (s.store_id.as_str(), s.unit_id.as_str()),
        ("store-1", "unit-1")
    );
    let p = c
        .get_push_state(hq::GetPushStateRequest {
            push_id: "p".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.received, 0);
    // The mesh is off here: the answer says so, not that a credential is missing.
    let e = c
        .get_artifact_state(hq::GetArtifactStateRequest {
            root_hex: "00".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    let channel = Channel::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let h = tonic_health::pb::health_client::HealthClient::new(channel.clone())
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
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![
            tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"outpost.hq.v1.StoreService".to_owned()),
        "{names:?}"
    );
    assert!(audited(&app, "hq.push.refused").is_empty());
    app.stop().await;
}

/// A unit enrolled with HQ's key (locked, applying nothing, until a lease signed with
/// it arrives), and its data dir.
async fn spawn_trusting(key: &HqKey) -> (HqTestApp, tempfile::TempDir) {
    use outpost_security::enroll::{Enrollment, LeasePolicy, SecondFactors};
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(tmp.path(), None);
    let bundle = Enrollment {
        store_id: s.store.id.clone(),
        unit_id: s.sync.unit_id.clone(),
        hq_public_key: key.public_hex(),
        escrow_share_key: None,
        escrow_recovery_key: Some(
            outpost_security::escrow::EscrowSecret::generate()
                .public()
                .to_hex(),
        ),
        lease: LeasePolicy::default(),
        unlock: SecondFactors::default(),
        issued_at: OffsetDateTime::now_utc().unix_timestamp(),
    }
    .sign(&key.leases)
    .unwrap();
    let path = tmp.path().join("hq-bundle.json");
    std::fs::write(&path, bundle).unwrap();
    s.security.enrollment = Some(path);
    (spawn_with(s).await, tmp)
}

fn lease(key: &HqKey) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    key.leases
        .sign_lease(&Lease {
            store: "store-1".into(),
            unit: "unit-1".into(),
            issued_at: now - time::Duration::seconds(1),
            expires_at: now + time::Duration::hours(1),
            nonce: rand::random(),
        })
        .unwrap()
}

fn token(signer: &PushTokenSigner, unit: &str, issued: OffsetDateTime, minutes: i64) -> String {
    signer
        .sign_text(&PushToken::new(
            "store-1",
            unit,
            issued,
            time::Duration::minutes(minutes),
        ))
        .unwrap()
}

#[tokio::test]
async fn hq_s_push_token_opens_the_port_only_for_this_unit_while_fresh() {
    let key = std::sync::Arc::new(HqKey::from_bytes(HQ_SECRET));
    let (app, _dir) = spawn_trusting(&key).await;
    // HQ, through the mock HQ's client: a fresh token with each call.
    let hq_creds = Credentials::HqKey(key.clone());
    let mut hq_client = push::connect(&app.grpc, None, &hq_creds).await.unwrap();
    let r = hq_client
        .send_command(hq::Command {
            command_id: "l1".into(),
            kind: Some(hq::command::Kind::SignedLease(lease(&key))),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.result.contains("active"), "{}", r.result);
    hq_client.push_tax_rates(tax(1, 1_900)).await.unwrap();
    let mut opts = PushOptions::new(PushKind::Snapshot);
    opts.credentials = hq_creds;
    let lines = r#"{"sku":"A1","name":"A","category":"c","price":250,"currency":"EUR","tax_class":"standard"}"#;
    push::push_catalog(
        &app.grpc,
        CatalogSource::JsonLines(format!("{lines}\n").into_bytes().into()),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(price_of(&app, "A1").await, Some(250));
    assert!(audited(&app, "hq.push.refused").is_empty());

    let now = OffsetDateTime::now_utc();
    let hq = &key.tokens;
    let cases = [
        (token(hq, "unit-2", now, 5), "unit \"unit-2\""),
        (
            token(hq, "unit-1", now - time::Duration::minutes(30), 5),
            "expired",
        ),
        (
            token(hq, "unit-1", now + time::Duration::minutes(30), 5),
            "future",
        ),
        (
            token(&PushTokenSigner::from_bytes([12; 32]), "unit-1", now, 5),
            "not signed by the HQ key",
        ),
        // HQ's lease, signed by the same key, is not a push token.
        (
            base64::engine::general_purpose::STANDARD.encode(lease(&key)),
            "wrong magic",
        ),
        ("!!!".to_owned(), "base64"),
    ];
    let mut c = bare_client(&app).await;
    for (t, why) in &cases {
        for e in [
            c.push_tax_rates(with(tax(2, 9_900), Some((PUSH_TOKEN_METADATA, t.clone()))))
                .await
                .unwrap_err(),
            c.push_device_config(with(devices(1), Some((PUSH_TOKEN_METADATA, t.clone()))))
                .await
                .unwrap_err(),
        ] {
            assert_eq!(e.code(), Code::PermissionDenied, "{why}: {e:?}");
            assert!(e.message().contains(why), "{why}: {}", e.message());
        }
    }
    let s = status(&app).await;
    assert_eq!((s.tax_rates_version, s.device_config_version), (1, 0));
    assert_eq!(audited(&app, "hq.push.refused").len(), 2 * cases.len());
    app.stop().await;
}

#[tokio::test]
async fn a_push_token_means_nothing_to_a_unit_that_trusts_no_hq_key() {
    let app = spawn(None).await;
    let t = token(
        &PushTokenSigner::from_bytes(HQ_SECRET),
        "unit-1",
        OffsetDateTime::now_utc(),
        5,
    );
    let e = bare_client(&app)
        .await
        .push_tax_rates(with(tax(1, 9_900), Some((PUSH_TOKEN_METADATA, t))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("hq_public_key"), "{}", e.message());
    assert_eq!(status(&app).await.tax_rates_version, 0);
    app.stop().await;
}

/// Logs `username` in through the REST API; returns the session id (the cookie).
async fn rest_login(app: &HqTestApp, username: &str, roles: Vec<Role>) -> String {
    let password = "a long enough test password";
    app.security
        .set_user(
            "test",
            username,
            &SecretString::from(password.to_owned()),
            roles,
        )
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let pair = cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

#[tokio::test]
async fn an_admin_session_may_push_and_a_supervisor_session_may_not() {
    let app = spawn(None).await;
    let boss = rest_login(&app, "boss", vec![Role::Admin]).await;
    let sup = rest_login(&app, "sup", vec![Role::Supervisor, Role::Technician]).await;
    let bearer = |id: &str| Some(("authorization", format!("Bearer {id}")));

    let mut admin = push::connect(&app.grpc, None, &Credentials::AdminSession(boss.clone()))
        .await
        .unwrap();
    admin.push_tax_rates(tax(1, 1_900)).await.unwrap();
    assert_eq!(status(&app).await.tax_rates_version, 1);

    let mut c = bare_client(&app).await;
    let e = c
        .push_tax_rates(with(tax(2, 9_900), bearer(&sup)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("admin role"), "{}", e.message());
    for not_a_session in ["nonsense", "Basic Ym9zczp4"] {
        let e = c
            .push_tax_rates(with(
                tax(2, 9_900),
                Some(("authorization", not_a_session.to_owned())),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{not_a_session}: {e:?}");
    }
    // Logged out: the session no longer opens the port.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/logout", app.base))
        .header(
            "cookie",
            format!("{}={boss}", outpost_server::access::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let e = c
        .push_tax_rates(with(tax(2, 9_900), bearer(&boss)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("not live"), "{}", e.message());
    assert_eq!(status(&app).await.tax_rates_version, 1);

    assert_eq!(
        audited(&app, "hq.push.admin"),
        vec!["boss: PushTaxRates".to_owned()]
    );
    let refused = audited(&app, "hq.push.refused");
    assert_eq!(refused.len(), 4, "{refused:#?}");
    assert!(refused[0].starts_with("sup: PushTaxRates"), "{refused:#?}");
    app.stop().await;
}
