//! `outpost doctor` on the real binary: a machine that fits its settings gets no
//! error; each common fault gets an error line that names it and says what to do, and
//! exit code 1.

use std::net::TcpListener;
use std::process::Command;

fn doctor(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["doctor", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("OUTPOST_ALLOW_SOFTWARE_SEALER")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A port nothing listens on.
/// A loopback port free now (for the server to bind).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback port nothing answers on, kept that way while the socket lives: bound
/// but not listening, so no other test can start listening on it meanwhile.
fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

#[test]
fn a_fitting_machine_has_no_error_and_each_fault_is_named_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hq = TcpListener::bind("127.0.0.1:0").unwrap();
    let printer = TcpListener::bind("127.0.0.1:0").unwrap();
    let rest = free_port();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:{rest}\"\ndata_dir = {data:?}\n\
             [security]\nallow_software = true\n\
             [sync]\nhq_url = \"http://{}\"\n\
             [[devices]]\nid = \"printer-1\"\nkind = \"printer\"\ndriver = \"escpos-tcp\"\naddress = \"{}\"\n",
            hq.local_addr().unwrap(),
            printer.local_addr().unwrap()
        ),
    )
    .unwrap();
    let (passed, out) = doctor(&good);
    assert!(passed, "{out}");
    for line in [
        "ok       config",
        &format!("ok       rest       127.0.0.1:{rest} is free"),
        "ok       hq ",
        "ok       device     printer-1 (printer)",
        "warning  sealer     the software sealer",
        "warning  data ",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }

    // The faults: the REST port taken by another program, HQ and the printer not
    // answering, a serial scanner unplugged.
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_hq_socket, hq_port) = closed_port();
    let (_printer_socket, printer_port) = closed_port();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "listen = \"{}\"\ndata_dir = {data:?}\n\
             [security]\nallow_software = true\n\
             [sync]\nhq_url = \"http://127.0.0.1:{}\"\n\
             [[devices]]\nid = \"printer-1\"\nkind = \"printer\"\ndriver = \"escpos-tcp\"\naddress = \"127.0.0.1:{}\"\n\
             [[devices]]\nid = \"scanner-1\"\nkind = \"scanner\"\ndriver = \"scanner-serial\"\nport = \"/dev/ttyOUTPOSTNONE0\"\n",
            squatter.local_addr().unwrap(),
            hq_port,
            printer_port
        ),
    )
    .unwrap();
    let (passed, out) = doctor(&bad);
    assert!(!passed, "{out}");
    for (line, fix) in [
        ("error    rest", "ss -ltnp"),
        ("error    hq", "check the WAN link"),
        (
            "error    device     printer-1 (printer)",
            "check its power, cable and IP",
        ),
        (
            "error    device     scanner-1 (scanner): /dev/ttyOUTPOSTNONE0 does not exist",
            "plug the device in",
        ),
    ] {
        let l = out
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line}: {out}"));
        assert!(l.contains(fix), "{l}");
    }

    // A config the server would refuse is the first error, named.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "listen = \"not an address\"\n").unwrap();
    let (passed, out) = doctor(&broken);
    assert!(!passed);
    assert!(out.starts_with("error    config"), "{out}");
    assert!(out.contains("listen"), "{out}");
}

/// A unit installed from the template but not enrolled yet: its HQ link (mutual TLS)
/// waits for the enrolment, and doctor says how to enrol, without an error (the unit
/// sells meanwhile).
#[test]
fn a_unit_waiting_for_enrolment_is_told_how_to_enrol() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\ndata_dir = {data:?}\n\
             [security]\nallow_software = true\n\
             [sync]\nhq_url = \"https://hq.example.com:443\"\n",
            free_port()
        ),
    )
    .unwrap();
    let (passed, out) = doctor(&config);
    assert!(passed, "{out}");
    assert!(
        out.contains(
            "warning  hq         the HQ link (https://hq.example.com:443) waits for enrolment"
        ),
        "{out}"
    );
    assert!(out.contains("outpost enroll --hq https://"), "{out}");
}
