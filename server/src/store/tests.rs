//! Encryption at rest: tampering, the wrong key, lockdown, and the schema-1 migration.

use std::path::Path;
use std::sync::Arc;

use outpost_security::seal::DataKey;
use outpost_security::testing::{all_bytes, contains};
use outpost_security::vault::KeyVault;
use uuid::Uuid;

use super::catalog::ImportMode;
use super::crypt::test_vault;
use super::{Store, StoreError, StoreOptions, keys};
use crate::domain::product::{Product, parse_product_json};

fn product(i: usize, name: &str, category: &str) -> Product {
    let gtin = format!("29{i:010}");
    let check = crate::domain::gtin::check_digit(&gtin).unwrap();
    parse_product_json(
        format!(
            r#"{{"sku":"S{i:05}","barcodes":["{gtin}{check}"],"name":"{name} {i}","category":"{category}","price":100,"currency":"EUR","tax_class":"standard"}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn open(dir: &Path) -> Arc<Store> {
    super::crypt::test_store(dir)
}

fn import(store: &Arc<Store>, n: usize, name: &str) {
    let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
    for i in 0..n {
        imp.add(&product(i, name, "Beverages"), i as u64 + 1)
            .unwrap()
            .unwrap();
    }
    imp.finish("v1").unwrap();
}

async fn put(store: &Store, key: Vec<u8>, value: &[u8]) {
    let value = value.to_vec();
    store
        .write(move |tx| {
            tx.put(key, value);
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn swapped_and_flipped_values_are_errors_not_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    {
        let store = open(dir.path());
        import(&store, 300, "Sparkling Water");
        put(&store, keys::sale(a), br#"{"sale":"a"}"#).await;
        put(&store, keys::sale(b), br#"{"sale":"b"}"#).await;
        assert_eq!(
            store.journal_get(&keys::sale(a)).unwrap().unwrap(),
            br#"{"sale":"a"}"#
        );
    }
    // Swap the two sales' ciphertexts, and flip one bit of a catalog block.
    let generation;
    {
        let db = outpost_security::sled_lock::reopen(&dir.path().join("db"));
        let journal = db.open_tree("journal").unwrap();
        let va = journal.get(keys::sale(a)).unwrap().unwrap();
        let vb = journal.get(keys::sale(b)).unwrap().unwrap();
        journal.insert(keys::sale(a), vb).unwrap();
        journal.insert(keys::sale(b), va).unwrap();
        let name = db
            .tree_names()
            .into_iter()
            .map(|n| String::from_utf8(n.to_vec()).unwrap())
            .find(|n| n.ends_with(".products"))
            .unwrap();
        generation = name.clone();
        let products = db.open_tree(&name).unwrap();
        let (k, v) = products.iter().next().unwrap().unwrap();
        let mut v = v.to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        products.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let store = open(dir.path());
    for id in [a, b] {
        assert!(
            matches!(
                store.journal_get(&keys::sale(id)),
                Err(StoreError::Corrupt(_))
            ),
            "a swapped value must not be served as the other sale"
        );
    }
    assert!(
        matches!(
            store.catalog().product("S00000"),
            Err(StoreError::Corrupt(_))
        ),
        "flipped block of {generation}"
    );
    // Other blocks still serve.
    assert_eq!(
        store.catalog().product("S00299").unwrap().unwrap().name,
        "Sparkling Water 299"
    );
}

#[tokio::test]
async fn a_data_dir_opened_with_another_key_fails_and_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        import(&store, 10, "Oat Milk");
        put(&store, keys::stock("S00001"), &5i64.to_be_bytes()).await;
    }
    let other = KeyVault::new(DataKey::from_bytes([9; 32]));
    let err = Store::open(dir.path(), &StoreOptions::default(), &other).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err}");
    assert!(err.to_string().contains("another data key"), "{err}");
    // Nothing was stamped over it: the right key still opens everything.
    let store = open(dir.path());
    assert_eq!(store.stock("S00001").unwrap(), 5);
    assert_eq!(
        store.catalog().product("S00003").unwrap().unwrap().name,
        "Oat Milk 3"
    );
}

#[tokio::test]
async fn lock_wipes_reads_and_writes_until_unlocked_with_the_right_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    import(&store, 50, "Espresso Beans");
    let sale = Uuid::now_v7();
    put(&store, keys::sale(sale), br#"{"x":1}"#).await;
    put(&store, keys::idem("checkout", "client-key-1"), b"{}").await;

    store.lock();
    assert!(store.is_locked());
    let c = store.catalog();
    assert!(matches!(c.product("S00001"), Err(StoreError::DeviceLocked)));
    assert!(matches!(
        c.sku_by_gtin14("00000000000000"),
        Err(StoreError::DeviceLocked)
    ));
    assert!(matches!(
        c.search(Some("espresso"), None, 10, None, 100),
        Err(StoreError::DeviceLocked)
    ));
    assert!(matches!(
        c.search(None, None, 10, None, 100),
        Err(StoreError::DeviceLocked)
    ));
    assert_eq!(c.overlay_len(), 0);
    assert!(matches!(
        store.journal_get(&keys::sale(sale)),
        Err(StoreError::DeviceLocked)
    ));
    assert!(matches!(
        store.stock("S00001"),
        Err(StoreError::DeviceLocked)
    ));
    assert!(matches!(
        store.meta_get("catalog_version"),
        Err(StoreError::DeviceLocked)
    ));
    assert!(store.promotions().is_empty());
    let w = store
        .write(|tx| {
            tx.put(keys::stock("S00001"), 1i64.to_be_bytes().to_vec());
            Ok::<_, StoreError>(())
        })
        .await;
    assert!(
        matches!(w, Err(StoreError::DeviceLocked)),
        "the group is refused"
    );
    let w = store
        .write(|tx| tx.get(&keys::stock("S00001")).map(|_| ()))
        .await
        .unwrap();
    assert!(matches!(w, Err(StoreError::DeviceLocked)));

    // Another key does not unlock.
    let err = store
        .unlock(&KeyVault::new(DataKey::from_bytes([1; 32])))
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongKey));
    assert!(store.is_locked());

    store.unlock(&test_vault()).unwrap();
    assert!(!store.is_locked());
    assert_eq!(
        store.catalog().product("S00001").unwrap().unwrap().name,
        "Espresso Beans 1"
    );
    assert_eq!(
        store.journal_get(&keys::sale(sale)).unwrap().unwrap(),
        br#"{"x":1}"#
    );
    assert_eq!(
        store
            .journal_get(&keys::idem("checkout", "client-key-1"))
            .unwrap()
            .unwrap(),
        b"{}"
    );
    // The write refused while locked left nothing.
    assert_eq!(store.stock("S00001").unwrap(), 0);
}

#[tokio::test]
async fn client_chosen_keys_and_business_values_never_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        import(&store, 200, "Hibiscus Lemonade");
        put(
            &store,
            keys::idem("checkout", "till7-idem-zebra"),
            br#"{"note":"Hibiscus receipt text"}"#,
        )
        .await;
        store
            .meta_put("promotions_version", b"hq-v-banana")
            .unwrap();
        // A price-only merge: the overlay.
        let mut imp = store.begin_catalog_import(ImportMode::Merge).unwrap();
        let mut p = product(3, "Hibiscus Lemonade", "Beverages");
        p.price = crate::domain::money::Money(777);
        imp.add(&p, 1).unwrap().unwrap();
        assert!(imp.finish("v2").unwrap().overlay);
        // Search still works through the encrypted postings.
        let c = store.catalog();
        let (page, _) = c.search(Some("hibisc"), None, 500, None, 10_000).unwrap();
        assert_eq!(page.len(), 200);
        let (page, _) = c
            .search(None, Some("Beverages"), 500, None, 10_000)
            .unwrap();
        assert_eq!(page.len(), 200);
        assert_eq!(c.product("S00003").unwrap().unwrap().price.0, 777);
    }
    let bytes = all_bytes(dir.path());
    for needle in [
        "Hibiscus",
        "Lemonade",
        "hibiscus",
        "Beverages",
        "beverages",
        "till7-idem-zebra",
        "hq-v-banana",
        "receipt text",
    ] {
        assert!(!contains(&bytes, needle), "{needle:?} is readable on disk");
    }
    // Sanity: the search shows the test would see a plaintext string.
    assert!(contains(&bytes, "S00003"), "SKUs stay in clear as keys");
}

/// A data dir as schema 1 wrote it: every value in clear.
fn write_schema1(dir: &Path) -> (Uuid, Vec<u8>) {
    fn record(block: &mut Vec<u8>, k: &[u8], v: &[u8]) {
        block.extend_from_slice(&(k.len() as u16).to_le_bytes());
        block.extend_from_slice(k);
        block.extend_from_slice(&(v.len() as u32).to_le_bytes());
        block.extend_from_slice(v);
    }
    let db = sled::open(dir.join("db")).unwrap();
    let meta = db.open_tree("meta").unwrap();
    meta.insert("schema_version", &1u64.to_be_bytes()).unwrap();
    meta.insert("catalog_generation", &1u64.to_be_bytes())
        .unwrap();
    meta.insert("catalog_version", "legacy-v1").unwrap();
    meta.insert("catalog_len", &2u64.to_be_bytes()).unwrap();
    meta.insert("promotions_version", &4u64.to_be_bytes())
        .unwrap();
    let (p1, p2) = (
        product(1, "Cold Brew", "Coffee"),
        product(2, "Cold Tea", "Coffee"),
    );
    let (j1, j2) = (super::to_json(&p1), super::to_json(&p2));
    let mut block = Vec::new();
    record(&mut block, b"S00001", &j1);
    record(&mut block, b"S00002", &j2);
    db.open_tree("catalog.1.products")
        .unwrap()
        .insert("S00001", block)
        .unwrap();
    let mut block = Vec::new();
    let (g1, g2) = (p1.barcodes[0].to_gtin14(), p2.barcodes[0].to_gtin14());
    record(&mut block, g1.as_bytes(), b"S00001");
    record(&mut block, g2.as_bytes(), b"S00002");
    db.open_tree("catalog.1.barcodes")
        .unwrap()
        .insert(g1.as_bytes(), block)
        .unwrap();
    let postings = db.open_tree("catalog.1.postings").unwrap();
    postings
        .insert(b"c\0Coffee\0S00001", b"S00001\0S00002".as_slice())
        .unwrap();
    postings
        .insert(b"t\0cold\0S00001", b"S00001\0S00002".as_slice())
        .unwrap();
    postings
        .insert(b"t\0brew\0S00001", b"S00001".as_slice())
        .unwrap();
    postings
        .insert(b"t\0tea\0S00002", b"S00002".as_slice())
        .unwrap();
    let mut p2b = p2.clone();
    p2b.price = crate::domain::money::Money(555);
    db.open_tree("catalog.1.overlay")
        .unwrap()
        .insert("S00002", super::to_json(&p2b))
        .unwrap();
    db.open_tree("promotions")
        .unwrap()
        .insert(
            "coldbrew-deal",
            br#"{"id":"coldbrew-deal","name":"Cold Brew Bonanza","kind":{"type":"percent_off","percent_bp":1000},"target":{"skus":["S00001"]},"starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z"}"#.as_slice(),
        )
        .unwrap();
    let journal = db.open_tree("journal").unwrap();
    let sale = Uuid::now_v7();
    journal
        .insert(
            keys::sale(sale),
            br#"{"receipt":"Thank you for shopping Cold Brew"}"#.as_slice(),
        )
        .unwrap();
    let idem = b"i/checkout\0legacy-idem-walrus".to_vec();
    journal
        .insert(&idem, br#"{"state":"done"}"#.as_slice())
        .unwrap();
    journal
        .insert(keys::stock("S00001"), &7i64.to_be_bytes())
        .unwrap();
    journal
        .insert(keys::OUTBOX_NEXT, &3u64.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    (sale, idem)
}

#[tokio::test]
async fn a_schema_1_data_dir_is_encrypted_in_place_and_its_plaintext_files_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (sale, _) = write_schema1(dir.path());
    assert!(
        contains(&all_bytes(dir.path()), "Cold Brew"),
        "fixture is plaintext"
    );
    {
        let store = open(dir.path());
        let c = store.catalog();
        assert_eq!(c.version, "legacy-v1");
        assert_eq!(c.len, 2);
        assert_eq!(c.product("S00001").unwrap().unwrap().name, "Cold Brew 1");
        assert_eq!(c.product("S00002").unwrap().unwrap().price.0, 555);
        let p1 = c.product("S00001").unwrap().unwrap();
        assert_eq!(
            c.sku_by_gtin14(&p1.barcodes[0].to_gtin14())
                .unwrap()
                .as_deref(),
            Some("S00001")
        );
        let (page, _) = c.search(Some("cold"), None, 10, None, 100).unwrap();
        assert_eq!(page.len(), 2);
        let (page, _) = c.search(None, Some("Coffee"), 10, None, 100).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(store.promotions().len(), 1);
        assert_eq!(
            store.journal_get(&keys::sale(sale)).unwrap().unwrap(),
            br#"{"receipt":"Thank you for shopping Cold Brew"}"#
        );
        assert_eq!(
            store
                .journal_get(&keys::idem("checkout", "legacy-idem-walrus"))
                .unwrap()
                .unwrap(),
            br#"{"state":"done"}"#
        );
        assert_eq!(store.stock("S00001").unwrap(), 7);
        assert_eq!(
            keys::decode_u64(&store.meta_get("promotions_version").unwrap().unwrap()).unwrap(),
            4
        );
        assert_eq!(
            keys::decode_u64(&store.journal_get(keys::OUTBOX_NEXT).unwrap().unwrap()).unwrap(),
            3
        );
    }
    let bytes = all_bytes(dir.path());
    for needle in [
        "Cold Brew",
        "Coffee",
        "Bonanza",
        "coldbrew-deal",
        "legacy-idem-walrus",
        "legacy-v1",
        "Thank you",
    ] {
        assert!(
            !contains(&bytes, needle),
            "{needle:?} is readable after migration"
        );
    }
    assert!(!dir.path().join("db.compact").exists());
    assert!(!dir.path().join("db.schema1").exists());
    // A second open is a plain schema-2 open.
    let store = open(dir.path());
    assert_eq!(
        keys::decode_u64(
            &store
                .db()
                .open_tree("meta")
                .unwrap()
                .get("schema_version")
                .unwrap()
                .unwrap()
        )
        .unwrap(),
        super::SCHEMA_VERSION
    );
    assert_eq!(store.stock("S00001").unwrap(), 7);
}

#[test]
fn a_schema_1_data_dir_opened_with_a_bad_key_check_is_refused() {
    // Regression guard for a half-migrated dir reopened under another key: the key
    // check written first makes it WrongKey, never a second encryption layer.
    let dir = tempfile::tempdir().unwrap();
    write_schema1(dir.path());
    {
        let db = outpost_security::sled_lock::reopen(&dir.path().join("db"));
        let at = super::crypt::AtRest::new(&test_vault()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(super::crypt::KEY_CHECK_KEY, at.key_check_value().unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let other = KeyVault::new(DataKey::from_bytes([3; 32]));
    assert!(matches!(
        Store::open(dir.path(), &StoreOptions::default(), &other),
        Err(StoreError::WrongKey)
    ));
    assert!(
        contains(&all_bytes(dir.path()), "Cold Brew"),
        "left untouched"
    );
}

fn promotion(id: &str) -> crate::domain::promotion::Promotion {
    serde_json::from_str(&format!(
        r#"{{"id":"{id}","name":"Ten off","kind":{{"type":"percent_off","percent_bp":1000}},"target":{{"categories":["even"]}},"starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z"}}"#
    ))
    .unwrap()
}

/// The live promotions' version, and the versions their ids name (`v{N}-{i}`).
fn promotions_state(store: &Store) -> (u64, Vec<u64>) {
    let version = store
        .meta_get(super::PROMOTIONS_VERSION)
        .unwrap()
        .map(|v| keys::decode_u64(&v).unwrap())
        .unwrap_or(0);
    let named = store
        .promotions()
        .all()
        .iter()
        .map(|p| p.id[1..p.id.find('-').unwrap()].parse().unwrap())
        .collect();
    (version, named)
}

#[test]
fn promotions_pushes_racing_each_other_leave_one_version_whole_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Eight pushers, each with versions in an order of its own: every push that is
    // accepted is newer than the live one, and the set and its version never split.
    let accepted = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (store, accepted) = (&store, &accepted);
            s.spawn(move || {
                for i in 0..10u64 {
                    let v = 1 + (i * 8 + t * 3) % 80;
                    let set = (0..3).map(|n| promotion(&format!("v{v}-{n}"))).collect();
                    match store.push_promotions(set, v).unwrap() {
                        Ok(()) => accepted.lock().unwrap().push(v),
                        Err(live) => assert!(live >= v, "refused {v} under live {live}"),
                    }
                    let (version, named) = promotions_state(store);
                    assert!(version >= 1);
                    assert_eq!(named.len(), 3);
                    assert!(named.iter().all(|n| *n == named[0]), "{named:?}");
                }
            });
        }
    });
    let accepted = accepted.into_inner().unwrap();
    let max = *accepted.iter().max().unwrap();
    assert_eq!(promotions_state(&store), (max, vec![max; 3]));
    // A stale push changes nothing and names the live version.
    assert_eq!(
        store.push_promotions(vec![promotion("v1-0")], 1).unwrap(),
        Err(max)
    );
    assert_eq!(promotions_state(&store), (max, vec![max; 3]));
    // On disk too: reopened, the same version and set.
    drop(store);
    let store = open(dir.path());
    assert_eq!(promotions_state(&store), (max, vec![max; 3]));
}
