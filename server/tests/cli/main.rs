//! The `outpost` command line through the real binary: import and export, staff
//! accounts, and a running server's logs searched for secrets.

use std::process::{Command, Output};

mod logs;

pub(crate) fn outpost(args: &[&str], dir: &std::path::Path) -> Output {
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

pub(crate) const GOOD: &str = r#"{"sku":"A","name":"Apple juice","category":"drinks","price":199,"currency":"EUR","tax_class":"standard"}"#;

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

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn staff_accounts_are_added_listed_and_disabled_but_never_the_last_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let password = stdout(&outpost(
        &["users", "add", "root", "--role", "admin"],
        &data,
    ));
    assert_eq!(
        password.trim().len(),
        24,
        "the generated password: {password:?}"
    );
    stdout(&outpost(
        &["users", "add", "sam", "--role", "supervisor,technician"],
        &data,
    ));
    let list = stdout(&outpost(&["users", "list"], &data));
    assert_eq!(
        list,
        "root\tadmin\tenabled\nsam\tsupervisor,technician\tenabled\n"
    );
    assert!(!list.contains(password.trim()));

    // root is the only admin: neither disabling it nor taking its role away is allowed.
    let out = outpost(&["users", "disable", "root"], &data);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("last enabled admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = outpost(&["users", "add", "root", "--role", "technician"], &data);
    assert!(!out.status.success());

    stdout(&outpost(&["users", "add", "ada", "--role", "admin"], &data));
    stdout(&outpost(&["users", "disable", "root"], &data));
    let list = stdout(&outpost(&["users", "list"], &data));
    assert!(list.contains("root\tadmin\tdisabled\n"), "{list}");
    let out = outpost(&["users", "disable", "nobody"], &data);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no staff account"));
}
