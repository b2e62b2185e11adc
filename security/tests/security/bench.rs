//! Measurements for BENCHMARKS.md, `#[ignore]`d so the default run stays short. Run:
//! `cargo test -p outpost-security --release --test security -- --ignored --nocapture bench_`

use std::time::Instant;

use outpost_security::auth::password::{PasswordParams, hash_password, verify_password};
use outpost_security::seal::DataKey;
use outpost_security::vault::KeyVault;
use secrecy::SecretString;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// XChaCha20-Poly1305 seal and open throughput on 4 KiB and 256-byte records.
#[test]
#[ignore]
fn bench_aead_throughput() {
    let cipher = KeyVault::new(DataKey::generate())
        .cipher("tree:bench")
        .unwrap();
    for size in [256usize, 4096] {
        let value = vec![0x42u8; size];
        let n = (64 << 20) / size; // 64 MiB per run
        let (mut seal_mbs, mut open_mbs) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let start = Instant::now();
            let mut sealed = Vec::with_capacity(n);
            for i in 0..n {
                sealed.push(cipher.seal_record("bench", &(i as u64).to_be_bytes(), &value));
            }
            seal_mbs.push((n * size) as f64 / start.elapsed().as_secs_f64() / 1e6);
            let start = Instant::now();
            for (i, s) in sealed.iter().enumerate() {
                let pt = cipher
                    .open_record("bench", &(i as u64).to_be_bytes(), s)
                    .unwrap();
                assert_eq!(pt.len(), size);
            }
            open_mbs.push((n * size) as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
        println!(
            "AEAD {size} B records: seal {:.0} MB/s, open {:.0} MB/s (median of 5 x 64 MiB)",
            median(seal_mbs),
            median(open_mbs)
        );
    }
}

/// argon2id verify time with the production parameters.
#[test]
#[ignore]
fn bench_argon2_verify() {
    let pw = SecretString::from("correct horse battery staple");
    let phc = hash_password(&pw, PasswordParams::PRODUCTION).unwrap();
    let mut ms = Vec::new();
    for _ in 0..11 {
        let start = Instant::now();
        assert!(verify_password(&phc, &pw).unwrap());
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "argon2id verify (m=19 MiB, t=2, p=1): median {:.1} ms (11 runs)",
        median(ms)
    );
}
