//! The architecture test: modules of this crate import one way (docs/architecture.md).
//!
//! It reads every `crate::…` and `super::…` path in the non-test code of `server/src`
//! and fails when a top-level module uses one ranked above it in [`LAYERS`], or when
//! two modules import each other through any chain (a module and its own children may).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, bottom first. A module may use only those before it.
const LAYERS: &[&str] = &[
    // Pure: no I/O, imports nothing of the crate but itself.
    "domain",
    // Logging set-up and the recent-lines buffer.
    "telemetry",
    // Settings types and their checks.
    "config",
    // sled: trees, the writer, catalog generations, the outbox.
    "store",
    // Customers, points and vouchers HQ pushed, and this unit's totals against them.
    "loyalty",
    // Services, in the order they build on each other.
    "import",
    "seed",
    "devices",
    "sales",
    // The vending site: slots, vends over the cashless reader and the dispenser.
    "vending",
    "access",
    // Self-checkout: store tokens (sealed by access's vault), shopper sessions, carts.
    "shopper",
    "mesh",
    "hq",
    // systemd's notify protocol: ready, the watchdog from a health loop.
    "sdnotify",
    // Self-update: the health gate, probation, a release applied live.
    "update",
    // Adapters.
    "http",
    // The technician console: pages over the services, reusing the API's mapping.
    "console",
    // The shopper page under /shop/: the console's languages, the API's routes.
    "shop",
    // Wiring.
    "startup",
];

/// A module path: `[]` is the crate root, `["store", "outbox"]` is `crate::store::outbox`.
type Module = Vec<String>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file of the library with its module path (the binaries excluded).
fn module_files() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                if prefix.is_empty() && name == "bin" {
                    continue;
                }
                let mut m = prefix.clone();
                m.push(name);
                walk(&path, &m, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut m = prefix.clone();
                match stem {
                    "mod" => {}
                    "lib" if prefix.is_empty() => {}
                    "main" if prefix.is_empty() => continue,
                    _ => m.push(stem.to_owned()),
                }
                out.insert(m, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src_dir(), &Vec::new(), &mut out);
    out
}

/// The code of a file that counts: up to its first `#[cfg(test)]`, without comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        let line = match line.find("//") {
            // A `//` inside a string (a URL) keeps the line whole; a path after it would
            // be in the string too.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Modules declared `#[cfg(test)] mod name;` in `text`: test code, not checked.
fn test_children(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "#[cfg(test)]")
        .filter_map(|w| {
            let rest = w[1]
                .strip_prefix("mod ")
                .or(w[1].strip_prefix("pub mod "))?;
            Some(rest.strip_suffix(';')?.to_owned())
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path in `code` that starts with `crate::` or `super::`, resolved from `here`
/// (the module the code is in) to the module it names: its longest prefix that is a
/// module of `known`.
fn used_modules(code: &str, here: &Module, known: &BTreeSet<Module>) -> BTreeSet<Module> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    for (start, _) in code.match_indices("::") {
        // The path begins at the identifier before the first `::` of a run.
        let mut b = start;
        while b > 0 && is_ident(bytes[b - 1] as char) {
            b -= 1;
        }
        if b > 0 && (bytes[b - 1] == b':' || is_ident(bytes[b - 1] as char)) {
            continue;
        }
        let first = &code[b..start];
        if first != "crate" && first != "super" {
            continue;
        }
        // Read the whole path: identifiers joined by `::`.
        let mut end = b;
        let mut segs: Vec<&str> = Vec::new();
        loop {
            let s = end;
            while end < bytes.len() && is_ident(bytes[end] as char) {
                end += 1;
            }
            if s == end {
                break;
            }
            segs.push(&code[s..end]);
            if code[end..].starts_with("::") {
                end += 2;
            } else {
                break;
            }
        }
        let mut path: Module = Vec::new();
        let mut rest = &segs[..];
        if rest.first() == Some(&"crate") {
            rest = &rest[1..];
        } else {
            path = here.clone();
            while rest.first() == Some(&"super") {
                path.pop();
                rest = &rest[1..];
            }
        }
        for seg in rest {
            let mut next = path.clone();
            next.push((*seg).to_owned());
            if !known.contains(&next) {
                break;
            }
            path = next;
        }
        out.insert(path);
    }
    out
}

/// One module is the other or contains it.
fn related(a: &Module, b: &Module) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Every import between two modules neither of which contains the other.
fn edges() -> BTreeMap<Module, BTreeSet<Module>> {
    let files = module_files();
    let known: BTreeSet<Module> = files.keys().cloned().collect();
    let mut skip: BTreeSet<Module> = BTreeSet::new();
    let texts: BTreeMap<&Module, String> = files
        .iter()
        .map(|(m, p)| (m, std::fs::read_to_string(p).unwrap()))
        .collect();
    for (m, text) in &texts {
        for child in test_children(text) {
            let mut c = (*m).clone();
            c.push(child);
            skip.insert(c);
        }
    }
    let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, text) in texts {
        if m.is_empty() || skip.iter().any(|s| m.starts_with(s)) {
            continue;
        }
        let uses = used_modules(&code(&text), m, &known);
        let targets = out.entry(m.clone()).or_default();
        for u in uses {
            if !u.is_empty() && !related(m, &u) {
                targets.insert(u);
            }
        }
    }
    out
}

fn show(m: &Module) -> String {
    format!("crate::{}", m.join("::"))
}

#[test]
fn every_top_level_module_has_a_layer() {
    let tops: BTreeSet<String> = module_files()
        .keys()
        .filter_map(|m| m.first().cloned())
        .collect();
    let missing: Vec<_> = tops
        .iter()
        .filter(|t| !LAYERS.contains(&t.as_str()) && t.as_str() != "layers")
        .collect();
    assert!(
        missing.is_empty(),
        "add {missing:?} to LAYERS in layers.rs and docs/architecture.md"
    );
}

#[test]
fn modules_import_only_layers_below_them() {
    let rank = |m: &Module| LAYERS.iter().position(|l| *l == m[0]);
    let mut wrong = Vec::new();
    for (from, tos) in edges() {
        for to in tos {
            if from[0] == to[0] {
                continue;
            }
            if let (Some(f), Some(t)) = (rank(&from), rank(&to))
                && t > f
            {
                wrong.push(format!("{} uses {}", show(&from), show(&to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up (see LAYERS):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other() {
    let edges = edges();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit<'a>(
        m: &'a Module,
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<&'a Module>,
        done: &mut BTreeSet<&'a Module>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = stack.iter().position(|s| *s == m) {
            let mut c: Vec<String> = stack[i..].iter().map(|s| show(s)).collect();
            c.push(show(m));
            cycles.push(c.join(" -> "));
            return;
        }
        stack.push(m);
        for to in edges.get(m).into_iter().flatten() {
            visit(to, edges, stack, done, cycles);
        }
        stack.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_resolves_paths_and_skips_tests_and_comments() {
    let known: BTreeSet<Module> = [
        vec![],
        vec!["store".to_owned()],
        vec!["store".to_owned(), "outbox".to_owned()],
        vec!["sales".to_owned()],
        vec!["sales".to_owned(), "journal".to_owned()],
    ]
    .into_iter()
    .collect();
    let here = vec!["sales".to_owned(), "journal".to_owned()];
    let text = "use crate::store::outbox::OutboxKind;\n\
                // use crate::http::Thing;\n\
                let x = super::super::store::Tx::new(); // crate::startup\n\
                fn f() { mycrate::store::x(); }\n\
                #[cfg(test)]\n\
                use crate::sales::journal;\n";
    let used = used_modules(&code(text), &here, &known);
    let want: BTreeSet<Module> = [
        vec!["store".to_owned(), "outbox".to_owned()],
        vec!["store".to_owned()],
    ]
    .into_iter()
    .collect();
    assert_eq!(used, want);
    assert_eq!(
        test_children("#[cfg(test)]\nmod tests;\nmod real;\n"),
        vec!["tests"]
    );
}
