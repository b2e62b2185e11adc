//! The README's walkthrough, run as written: its demo command starts a demo store, and
//! its shell example (token, product search, promotions, a checkout) runs against it
//! with only the tools a fresh Debian machine with the Rust toolchain has, so the
//! README cannot ask for a tool a new user lacks (it once needed `uuidgen`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Serving;

const README: &str = include_str!("../../../README.md");
/// Where the README's examples send their requests; the test's demo listens elsewhere.
const README_BASE: &str = "http://127.0.0.1:8080";
/// The README's command that starts the demo store.
const DEMO_COMMAND: &str = "cargo run --release --bin outpost -- demo";
/// Commands a fresh Debian machine has: its essential packages (coreutils, dash, bash,
/// sed, grep, findutils, …) and curl, which the Rust toolchain's installer needs.
const FRESH_DEBIAN: &[&str] = &[
    "sh", "bash", "cat", "sed", "grep", "head", "tail", "tr", "cut", "printf", "echo", "env",
    "date", "sleep", "test", "[", "true", "false", "mktemp", "rm", "ls", "find", "xargs", "curl",
];
/// Most time the example may take.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The README's ```sh blocks, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A directory of links to the [`FRESH_DEBIAN`] commands of this machine, to serve as
/// the example's whole `PATH`.
fn fresh_path(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in FRESH_DEBIAN {
        let found = std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file());
        if let Some(found) = found {
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
    }
    assert!(
        bin.join("curl").exists(),
        "the README's example needs curl on this machine"
    );
    bin
}

#[test]
fn the_readme_walkthrough_runs_as_written_against_a_demo_store() {
    let blocks = sh_blocks(README);
    assert!(
        blocks.iter().any(|b| b.trim() == DEMO_COMMAND),
        "the README no longer starts the demo with `{DEMO_COMMAND}`: update this test"
    );
    let examples: Vec<&String> = blocks.iter().filter(|b| b.contains(README_BASE)).collect();
    assert!(
        !examples.is_empty(),
        "no shell example in the README talks to the demo at {README_BASE}"
    );

    // `outpost demo` as the README runs it, from a fresh directory (its data dir is
    // `./outpost-data`), on a free port instead of 8080.
    let tmp = tempfile::tempdir().unwrap();
    let args: Vec<&str> = DEMO_COMMAND
        .split(" -- ")
        .nth(1)
        .unwrap()
        .split(' ')
        .collect();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_outpost"));
    demo.args(&args)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(tmp.path())
        .env_remove("RUST_LOG")
        .env_remove("OUTPOST_DATA_DIR")
        .env_remove("OUTPOST_LISTEN")
        .env_remove("OUTPOST_ALLOW_SOFTWARE_SEALER");
    let server = Serving::spawn(demo);
    let bin = fresh_path(tmp.path());

    for example in examples {
        let script = example.replace(README_BASE, &server.base);
        // Any answer but a 2xx fails the example (`curl -s` alone would print it and
        // go on).
        let script = format!(
            "set -eu\ncurl() {{ command curl --fail-with-body --max-time 20 \"$@\"; }}\n{script}"
        );
        let mut child = Command::new(bin.join("sh"))
            .arg("-c")
            .arg(&script)
            .current_dir(tmp.path())
            .env_clear()
            .env("PATH", &bin)
            .env("HOME", tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + EXAMPLE_TIMEOUT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the README's example failed ({}):\n{example}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        if example.contains("/api/v1/checkout") {
            assert!(stdout.contains("\"sale_id\""), "no sale: {stdout}");
        }
        if example.contains("/api/v1/products") {
            assert!(stdout.contains("\"items\""), "no products: {stdout}");
        }
    }
    server.stop();
}
