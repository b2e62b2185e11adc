//! Encryption at rest end to end: software sealer -> data key -> per-tree ciphers -> sled.
//! Nothing readable about the business is left in the data dir; a crypto-erase leaves
//! nothing that opens.

use outpost_security::seal::{KeyOrigin, SealError, SealedKeyFile, Sealer, SoftwareSealer};
use outpost_security::vault::{CryptoError, KeyVault};

use outpost_security::testing::{contains, files as read_tree};

const PRODUCTS: [(&str, &str); 3] = [
    ("sku-0001", "Sourdough loaf 800g|price=459|EUR"),
    ("sku-0002", "Espresso beans 1kg|price=1899|EUR"),
    (
        "sku-0003",
        "Receipt footer: thank you for shopping at Corner Store",
    ),
];

fn write_store(data_dir: &std::path::Path, vault: &KeyVault) {
    let db = sled::open(data_dir.join("db")).unwrap();
    let tree = db.open_tree("products").unwrap();
    let cipher = vault.cipher("tree:products").unwrap();
    for (sku, value) in PRODUCTS {
        tree.insert(
            sku,
            cipher.seal_record("products", sku.as_bytes(), value.as_bytes()),
        )
        .unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn data_dir_holds_no_plaintext_and_reads_back_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = SealedKeyFile::new(dir.path().join("sealed-key"));
    let kek = dir.path().join("software-kek");
    {
        let mut sealer = SoftwareSealer::open(&kek, true).unwrap();
        let (key, origin) = key_file.load_or_create(&mut sealer).unwrap();
        assert_eq!(origin, KeyOrigin::Created);
        write_store(dir.path(), &KeyVault::new(key));
    }
    for (path, bytes) in read_tree(dir.path()) {
        for needle in ["Sourdough", "Espresso", "1899", "Corner Store", "thank you"] {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{needle:?} readable in {}",
                path.display()
            );
        }
    }
    // "Restart": unseal again and read everything back.
    let mut sealer = SoftwareSealer::open(&kek, true).unwrap();
    let vault = KeyVault::new(key_file.unseal(&mut sealer).unwrap());
    let db = outpost_security::sled_lock::reopen(&dir.path().join("db"));
    let tree = db.open_tree("products").unwrap();
    let cipher = vault.cipher("tree:products").unwrap();
    for (sku, value) in PRODUCTS {
        let sealed = tree.get(sku).unwrap().unwrap();
        assert_eq!(
            &cipher
                .open_record("products", sku.as_bytes(), &sealed)
                .unwrap()[..],
            value.as_bytes()
        );
    }
    // Swapping two records on disk is detected, not served as the wrong product.
    let a = tree.get("sku-0001").unwrap().unwrap();
    assert_eq!(
        cipher.open_record("products", b"sku-0002", &a).unwrap_err(),
        CryptoError::Authentication
    );
}

#[test]
fn wipe_leaves_nothing_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = SealedKeyFile::new(dir.path().join("sealed-key"));
    let kek = dir.path().join("software-kek");
    let mut sealer = SoftwareSealer::open(&kek, true).unwrap();
    let (key, _) = key_file.load_or_create(&mut sealer).unwrap();
    let mut vault = KeyVault::new(key);
    write_store(dir.path(), &vault);

    key_file.crypto_erase(&mut sealer).unwrap();
    vault.wipe();
    assert_eq!(
        vault.cipher("tree:products").unwrap_err(),
        CryptoError::Wiped
    );
    assert!(!key_file.exists());
    assert!(!kek.exists());

    // A thief with the disk: the ciphertext is there, the key is not.
    let mut thief = SoftwareSealer::open(&kek, true).unwrap();
    assert!(matches!(
        key_file.unseal(&mut thief),
        Err(SealError::Missing(_))
    ));
    let fresh = KeyVault::new(key_file.load_or_create(&mut thief).unwrap().0);
    let db = outpost_security::sled_lock::reopen(&dir.path().join("db"));
    let tree = db.open_tree("products").unwrap();
    let sealed = tree.get("sku-0001").unwrap().unwrap();
    assert_eq!(
        fresh
            .cipher("tree:products")
            .unwrap()
            .open_record("products", b"sku-0001", &sealed)
            .unwrap_err(),
        CryptoError::Authentication
    );
    let _ = thief.kind();
}

#[test]
fn copied_data_dir_without_the_sealing_key_is_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = SealedKeyFile::new(dir.path().join("sealed-key"));
    let mut sealer = SoftwareSealer::open(&dir.path().join("software-kek"), true).unwrap();
    key_file.load_or_create(&mut sealer).unwrap();
    // The sealed key copied to another machine (with its own sealing key).
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(key_file.path(), other.path().join("sealed-key")).unwrap();
    let mut other_sealer = SoftwareSealer::open(&other.path().join("software-kek"), true).unwrap();
    let copied = SealedKeyFile::new(other.path().join("sealed-key"));
    assert!(matches!(
        copied.load_or_create(&mut other_sealer),
        Err(SealError::WrongKey)
    ));
    assert!(
        copied.exists(),
        "a blob that does not open is never replaced"
    );
}
