//! `push_catalog` against a small recording `StoreService`, and the CLI's refusal of
//! bad lines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use outpost_mocks::hq::{
    CatalogSource, Credentials, HqKey, PushError, PushKind, PushOptions, push_catalog,
};
use outpost_proto::hq::store_service_server::{StoreService, StoreServiceServer};
use outpost_proto::hq::*;
use outpost_security::push_token::{PUSH_TOKEN_METADATA, PushToken};
use tonic::{Request, Response, Status, Streaming};

/// What the recording store saw and holds.
#[derive(Default)]
struct State {
    /// Every chunk received, in order, across calls.
    chunks: Vec<CatalogChunk>,
    /// Per push id: the header and the products received so far.
    pushes: HashMap<String, (CatalogPushHeader, Vec<Product>)>,
    live_version: u64,
    catalog: Vec<Product>,
    removed: Vec<String>,
    /// Answer GetPushState with UNIMPLEMENTED.
    no_push_state: bool,
    /// Fail PushCatalog once a push holds this many products.
    fail_at: Option<usize>,
    /// The push token and the authorization of each PushCatalog call.
    credentials: Vec<(Option<String>, Option<String>)>,
}

#[derive(Clone, Default)]
struct RecordingStore {
    state: Arc<Mutex<State>>,
}

impl RecordingStore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the recording store"))
}

#[tonic::async_trait]
impl StoreService for RecordingStore {
    async fn push_catalog(
        &self,
        request: Request<Streaming<CatalogChunk>>,
    ) -> Result<Response<PushCatalogReply>, Status> {
        let meta = |k: &str| {
            request
                .metadata()
                .get(k)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let credentials = (meta(PUSH_TOKEN_METADATA), meta("authorization"));
        self.state().credentials.push(credentials);
        let mut stream = request.into_inner();
        let mut push_id: Option<String> = None;
        while let Some(chunk) = stream.message().await? {
            let mut st = self.state();
            st.chunks.push(chunk.clone());
            let id = match (&push_id, &chunk.header) {
                (None, Some(h)) => {
                    let entry = st
                        .pushes
                        .entry(h.push_id.clone())
                        .or_insert_with(|| (h.clone(), Vec::new()));
                    if entry.0 != *h {
                        return Err(Status::invalid_argument("header differs"));
                    }
                    push_id = Some(h.push_id.clone());
                    h.push_id.clone()
                }
                (None, None) => return Err(Status::invalid_argument("missing header")),
                (Some(_), Some(_)) => return Err(Status::invalid_argument("second header")),
                (Some(id), None) => id.clone(),
            };
            let fail_at = st.fail_at;
            let (header, held) = st.pushes.get_mut(&id).unwrap();
            let header = header.clone();
            if chunk.offset != held.len() as u64 {
                return Err(Status::out_of_range(format!(
                    "offset {} != {}",
                    chunk.offset,
                    held.len()
                )));
            }
            held.extend(chunk.products.iter().cloned());
            if fail_at.is_some_and(|n| held.len() >= n) {
                return Err(Status::unavailable("store interrupted"));
            }
            if chunk.last {
                let products = held.clone();
                if products.len() as u64 != header.total_products {
                    return Err(Status::invalid_argument("short push"));
                }
                st.pushes.remove(&id);
                if header.kind == CatalogPushKind::Delta as i32
                    && header.base_version != st.live_version
                {
                    return Err(Status::failed_precondition("wrong base"));
                }
                st.live_version = header.version;
                st.catalog = products;
                st.removed = chunk.removed_skus.clone();
                return Ok(Response::new(PushCatalogReply {
                    version: header.version,
                    products: header.total_products,
                    apply_ms: 0,
                }));
            }
        }
        Err(Status::invalid_argument(
            "stream ended before the last chunk",
        ))
    }

    async fn get_push_state(
        &self,
        request: Request<GetPushStateRequest>,
    ) -> Result<Response<PushState>, Status> {
        let st = self.state();
        if st.no_push_state {
            return unimplemented();
        }
        let id = request.into_inner().push_id;
        Ok(Response::new(match st.pushes.get(&id) {
            Some((h, held)) => PushState {
                push_id: id,
                received: held.len() as u64,
                header: Some(h.clone()),
            },
            None => PushState {
                push_id: id,
                received: 0,
                header: None,
            },
        }))
    }

    async fn push_promotions(
        &self,
        _: Request<PromotionsPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn push_tax_rates(
        &self,
        _: Request<TaxRatesPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn push_loyalty_rules(
        &self,
        _: Request<outpost_proto::hq::LoyaltyRulesPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn push_loyalty_accounts(
        &self,
        _: Request<outpost_proto::hq::LoyaltyAccountsPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn push_roster(
        &self,
        _: Request<outpost_proto::hq::RosterPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn push_planogram(
        &self,
        _: Request<PlanogramPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn push_store_config(
        &self,
        _: Request<StoreConfigPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn push_device_config(
        &self,
        _: Request<DeviceConfigPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn push_stock_counts(
        &self,
        _: Request<StockCountsPush>,
    ) -> Result<Response<PushReply>, Status> {
        unimplemented()
    }
    async fn send_command(&self, _: Request<Command>) -> Result<Response<CommandReply>, Status> {
        unimplemented()
    }
    async fn offer_artifact(
        &self,
        _: Request<ArtifactOffer>,
    ) -> Result<Response<ArtifactState>, Status> {
        unimplemented()
    }
    async fn get_artifact_state(
        &self,
        _: Request<GetArtifactStateRequest>,
    ) -> Result<Response<ArtifactState>, Status> {
        unimplemented()
    }
    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<StoreStatus>, Status> {
        let st = self.state();
        Ok(Response::new(StoreStatus {
            unit_id: "unit-1".into(),
            store_id: "store-1".into(),
            catalog_version: st.live_version,
            catalog_products: st.catalog.len() as u64,
            health: "ok".into(),
            ..StoreStatus::default()
        }))
    }
}

async fn start_store() -> (RecordingStore, String) {
    let store = RecordingStore::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let svc = StoreServiceServer::new(store.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (store, format!("http://{addr}"))
}

fn line(i: usize) -> String {
    format!(
        r#"{{"sku":"SKU-{i}","name":"Product {i}","category":"c","price":{},"currency":"EUR","tax_class":"standard"}}"#,
        100 + i
    )
}

fn lines(n: usize) -> CatalogSource {
    let text: String = (0..n).map(|i| line(i) + "\n").collect();
    CatalogSource::JsonLines(text.into_bytes().into())
}

fn opts(kind: PushKind, chunk: usize) -> PushOptions {
    let mut o = PushOptions::new(kind);
    o.chunk = chunk;
    o
}

fn skus(products: &[Product]) -> Vec<String> {
    products.iter().map(|p| p.sku.clone()).collect()
}

fn expected_skus(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("SKU-{i}")).collect()
}

#[tokio::test]
async fn snapshot_is_streamed_in_chunks_with_header_offsets_and_last() {
    let (store, url) = start_store().await;
    store.state().live_version = 7;
    let reply = push_catalog(&url, lines(25), &opts(PushKind::Snapshot, 10))
        .await
        .unwrap();
    assert_eq!((reply.version, reply.products), (8, 25));
    let st = store.state();
    let offsets: Vec<u64> = st.chunks.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, vec![0, 10, 20]);
    let headers: Vec<bool> = st.chunks.iter().map(|c| c.header.is_some()).collect();
    assert_eq!(headers, vec![true, false, false]);
    let lasts: Vec<bool> = st.chunks.iter().map(|c| c.last).collect();
    assert_eq!(lasts, vec![false, false, true]);
    let h = st.chunks[0].header.clone().unwrap();
    assert_eq!(h.kind, CatalogPushKind::Snapshot as i32);
    assert_eq!((h.version, h.base_version, h.total_products), (8, 0, 25));
    assert!(h.push_id.starts_with("push-"));
    assert_eq!(skus(&st.catalog), expected_skus(0..25));
    assert_eq!(st.catalog[3].price_minor, 103);
    assert_eq!(st.live_version, 8);
}

#[tokio::test]
async fn exact_multiple_of_the_chunk_size_ends_on_a_full_last_chunk() {
    let (store, url) = start_store().await;
    let mut o = opts(PushKind::Snapshot, 10);
    o.version = Some(3);
    push_catalog(&url, lines(20), &o).await.unwrap();
    let st = store.state();
    let shape: Vec<(u64, usize, bool)> = st
        .chunks
        .iter()
        .map(|c| (c.offset, c.products.len(), c.last))
        .collect();
    assert_eq!(shape, vec![(0, 10, false), (10, 10, true)]);
    assert_eq!(st.live_version, 3);
}

#[tokio::test]
async fn an_interrupted_push_resumes_where_the_store_stopped() {
    let (store, url) = start_store().await;
    store.state().fail_at = Some(10);
    let o = opts(PushKind::Snapshot, 5);
    let err = push_catalog(&url, lines(23), &o).await.unwrap_err();
    assert!(
        matches!(&err, PushError::Rpc { call: "PushCatalog", status } if status.code() == tonic::Code::Unavailable),
        "{err}"
    );
    assert_eq!(store.state().live_version, 0);
    let first_id = store.state().chunks[0].header.clone().unwrap().push_id;
    {
        let mut st = store.state();
        st.fail_at = None;
        st.chunks.clear();
    }
    // The same command again: same derived push id, resumed at 10.
    let reply = push_catalog(&url, lines(23), &o).await.unwrap();
    assert_eq!(reply.products, 23);
    let st = store.state();
    let offsets: Vec<u64> = st.chunks.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, vec![10, 15, 20]);
    assert_eq!(st.chunks[0].header.as_ref().unwrap().push_id, first_id);
    assert_eq!(skus(&st.catalog), expected_skus(0..23));
}

#[tokio::test]
async fn a_push_the_store_holds_whole_sends_only_the_last_chunk() {
    let (store, url) = start_store().await;
    // The store fails right after the last product arrives, before `last` is handled.
    store.state().fail_at = Some(10);
    let mut o = opts(PushKind::Snapshot, 4);
    o.push_id = Some("p-1".into());
    push_catalog(&url, lines(10), &o).await.unwrap_err();
    {
        let mut st = store.state();
        st.fail_at = None;
        st.chunks.clear();
    }
    push_catalog(&url, lines(10), &o).await.unwrap();
    let st = store.state();
    assert_eq!(st.chunks.len(), 1);
    assert_eq!(st.chunks[0].offset, 10);
    assert!(st.chunks[0].products.is_empty());
    assert!(st.chunks[0].last);
    assert_eq!(st.chunks[0].header.as_ref().unwrap().push_id, "p-1");
    assert_eq!(skus(&st.catalog), expected_skus(0..10));
}

#[tokio::test]
async fn unimplemented_get_push_state_starts_at_zero() {
    let (store, url) = start_store().await;
    store.state().no_push_state = true;
    push_catalog(&url, lines(7), &opts(PushKind::Snapshot, 3))
        .await
        .unwrap();
    let st = store.state();
    let offsets: Vec<u64> = st.chunks.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, vec![0, 3, 6]);
    assert_eq!(st.catalog.len(), 7);
}

#[tokio::test]
async fn a_push_id_known_with_another_header_is_refused() {
    let (store, url) = start_store().await;
    store.state().fail_at = Some(2);
    let mut o = opts(PushKind::Snapshot, 2);
    o.push_id = Some("same".into());
    push_catalog(&url, lines(5), &o).await.unwrap_err();
    store.state().fail_at = None;
    let err = push_catalog(&url, lines(6), &o).await.unwrap_err();
    assert!(matches!(err, PushError::PushIdConflict { .. }), "{err}");
}

#[tokio::test]
async fn delta_carries_its_base_and_the_removals_on_the_last_chunk() {
    let (store, url) = start_store().await;
    store.state().live_version = 41;
    let mut o = opts(PushKind::Delta, 2);
    o.removals = vec!["OLD-1".into(), "OLD-2".into()];
    let reply = push_catalog(&url, lines(3), &o).await.unwrap();
    assert_eq!(reply.version, 42);
    {
        let st = store.state();
        let h = st.chunks[0].header.clone().unwrap();
        assert_eq!(h.kind, CatalogPushKind::Delta as i32);
        assert_eq!((h.version, h.base_version, h.total_removals), (42, 41, 2));
        assert!(st.chunks[0].removed_skus.is_empty());
        assert_eq!(
            st.chunks.last().unwrap().removed_skus,
            vec!["OLD-1", "OLD-2"]
        );
        assert_eq!(st.removed, vec!["OLD-1", "OLD-2"]);
    }
    // A wrong explicit base is the store's FAILED_PRECONDITION, passed through.
    let mut o = opts(PushKind::Delta, 2);
    o.base_version = Some(1);
    let err = push_catalog(&url, lines(1), &o).await.unwrap_err();
    assert!(
        matches!(&err, PushError::Rpc { status, .. } if status.code() == tonic::Code::FailedPrecondition),
        "{err}"
    );
    // An empty delta of removals only.
    let mut o = opts(PushKind::Delta, 2);
    o.removals = vec!["SKU-0".into()];
    push_catalog(&url, lines(0), &o).await.unwrap();
    assert_eq!(store.state().removed, vec!["SKU-0"]);
}

#[tokio::test]
async fn bad_lines_are_reported_with_numbers_and_nothing_is_pushed() {
    let (store, url) = start_store().await;
    let text = format!(
        "{}\n{}\n{}\n\n{{\"sku\":\n{}\n",
        line(0),
        line(1).replace("\"EUR\"", "\"eur\""),
        line(2),
        line(5)
    );
    let err = push_catalog(
        &url,
        CatalogSource::JsonLines(text.into_bytes().into()),
        &opts(PushKind::Snapshot, 10),
    )
    .await
    .unwrap_err();
    let PushError::BadLines { errors, bad_lines } = &err else {
        panic!("{err}");
    };
    assert_eq!(*bad_lines, 2);
    let numbers: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(numbers, vec![2, 5]);
    assert_eq!(errors[0].field.as_deref(), Some("currency"));
    assert!(err.to_string().contains("line 5"), "{err}");
    assert!(store.state().chunks.is_empty());
}

#[tokio::test]
async fn contradictory_options_are_refused_before_connecting() {
    let url = "http://127.0.0.1:1";
    let mut o = opts(PushKind::Snapshot, 10);
    o.removals = vec!["A".into()];
    assert!(matches!(
        push_catalog(url, lines(1), &o).await,
        Err(PushError::Options(_))
    ));
    let o = opts(PushKind::Snapshot, 0);
    assert!(matches!(
        push_catalog(url, lines(1), &o).await,
        Err(PushError::Options(_))
    ));
    let mut o = opts(PushKind::Delta, 10);
    o.removals = vec!["bad sku".into()];
    assert!(matches!(
        push_catalog(url, lines(1), &o).await,
        Err(PushError::Options(_))
    ));
    // A good push to nowhere is a connection error.
    let err = push_catalog(url, lines(1), &opts(PushKind::Snapshot, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, PushError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn the_cli_pushes_a_file_and_refuses_bad_lines() {
    let (store, url) = start_store().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, (0..5).map(|i| line(i) + "\n").collect::<String>()).unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{}\nnot json\n", line(0))).unwrap();
    let bin = env!("CARGO_BIN_EXE_outpost-hq");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin).args(args).output().unwrap()
        })
    };
    let out = run(vec![
        "push-catalog".into(),
        "--store".into(),
        url.clone(),
        "--snapshot".into(),
        bad.display().to_string(),
    ])
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(store.state().chunks.is_empty());

    let out = run(vec![
        "push-catalog".into(),
        "--store".into(),
        url.clone(),
        "--snapshot".into(),
        good.display().to_string(),
        "--version".into(),
        "5".into(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["version"], 5);
    assert_eq!(reply["products"], 5);

    let out = run(vec!["status".into(), "--store".into(), url])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["catalog_version"], 5);
    assert_eq!(status["catalog_products"], 5);
}

#[tokio::test]
async fn a_push_carries_hq_s_token_for_the_store_s_unit_or_the_admin_session() {
    let (store, url) = start_store().await;
    let key = std::sync::Arc::new(HqKey::from_bytes([8; 32]));
    let mut o = opts(PushKind::Snapshot, 10);
    o.credentials = Credentials::HqKey(key.clone());
    push_catalog(&url, lines(3), &o).await.unwrap();
    o.credentials = Credentials::AdminSession("s3ss10n".into());
    push_catalog(&url, lines(4), &o).await.unwrap();
    push_catalog(&url, lines(5), &opts(PushKind::Snapshot, 10))
        .await
        .unwrap();
    let st = store.state();
    assert_eq!(st.credentials.len(), 3);
    let (token, bearer) = &st.credentials[0];
    assert_eq!(bearer, &None);
    let token =
        PushToken::verify_text(token.as_deref().unwrap(), &key.tokens.verifying_key()).unwrap();
    // The ids the store reported in GetStatus.
    assert_eq!(
        (token.store.as_str(), token.unit.as_str()),
        ("store-1", "unit-1")
    );
    assert_eq!(st.credentials[1], (None, Some("Bearer s3ss10n".into())));
    assert_eq!(st.credentials[2], (None, None));
}

#[tokio::test]
async fn the_cli_makes_hq_s_key_once_and_signs_pushes_with_it() {
    let (store, url) = start_store().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hq.key");
    let file = dir.path().join("c.jsonl");
    std::fs::write(&file, (0..2).map(|i| line(i) + "\n").collect::<String>()).unwrap();
    let bin = env!("CARGO_BIN_EXE_outpost-hq");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .args(args)
                .env_remove("OUTPOST_ADMIN_SESSION")
                .output()
                .unwrap()
        })
    };
    let keygen = vec![
        "keygen".to_owned(),
        "--out".into(),
        key_file.display().to_string(),
    ];
    let out = run(keygen.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let public = made["hq_public_key"].as_str().unwrap().to_owned();
    let key = outpost_mocks::hq::load_hq_key(&key_file).unwrap();
    assert_eq!(public, key.public_hex());
    // Never over a key units may trust.
    let out = run(keygen).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert_eq!(
        outpost_mocks::hq::load_hq_key(&key_file)
            .unwrap()
            .public_hex(),
        public
    );

    let out = run(vec![
        "push-catalog".into(),
        "--store".into(),
        url,
        "--snapshot".into(),
        file.display().to_string(),
        "--hq-key".into(),
        key_file.display().to_string(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = store.state();
    let token = st.credentials[0].0.as_deref().expect("a push token");
    PushToken::verify_text(token, &key.tokens.verifying_key()).unwrap();
}
