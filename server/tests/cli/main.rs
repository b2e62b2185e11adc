//! The `outpost` command line: import and export through the real binary.

use std::process::{Command, Output};

fn outpost(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("RUST_BACKTRACE")
        // The data key is needed to import or export: development sealer.
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .output()
        .unwrap()
}

const GOOD: &str = r#"{"sku":"A","name":"Apple juice","category":"drinks","price":199,"currency":"EUR","tax_class":"standard"}"#;

#[test]
fn a_bad_line_is_reported_by_number_and_nothing_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("c.jsonl");
    std::fs::write(&file, format!("{GOOD}\n")).unwrap();
    let out = outpost(&["import", "catalog", file.to_str().unwrap()], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad_lines = [
        (
            r#"{"sku":"B","name":"x","category":"c","price":-5,"currency":"EUR","tax_class":"standard"}"#,
            "price",
        ),
        (
            r#"{"sku":"B","name":"x","category":"c","price":5,"currency":"EUR","tax_class":"standard","colour":"red"}"#,
            "colour",
        ),
        (
            r#"{"sku":"B","name":"x","category":"c","price":5,"currency":"USD","tax_class":"standard"}"#,
            "currency",
        ),
        (
            r#"{"sku":"B","barcodes":["4006381333932"],"name":"x","category":"c","price":5,"currency":"EUR","tax_class":"standard"}"#,
            "barcodes",
        ),
        (
            r#"{"sku":"Z","name":"Again","category":"c","price":5,"currency":"EUR","tax_class":"standard"}"#,
            "already appears on line 1",
        ),
        (r#"{"sku":"B", "name": "#, "line 2"),
    ];
    for (bad, expect) in bad_lines {
        std::fs::write(
            &file,
            format!("{}\n{bad}\n", GOOD.replace("\"A\"", "\"Z\"")),
        )
        .unwrap();
        let out = outpost(
            &["import", "catalog", file.to_str().unwrap(), "--replace"],
            &data,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains(expect), "{expect} not in {err}");
        assert!(!err.contains("backtrace"), "{err}");
    }
    // The catalog is still exactly the first import.
    let out = outpost(&["export", "catalog", "-"], &data);
    let exported = String::from_utf8_lossy(&out.stdout);
    assert_eq!(exported.lines().count(), 1, "{exported}");
    assert!(exported.contains("\"sku\":\"A\""));
}
