//! `outpost-install install`: the steps that put Outpost on a machine, in order.
//! Every input is read and checked before the first step, so a bad binary or config
//! changes nothing. Each step looks before it acts and changes only what differs, so a
//! second run reports that nothing changed, and a run cut short after any step (or
//! within one: files are written whole) is finished by the next. A dry run reports,
//! step by step, what a real run would change.

use std::path::PathBuf;
use std::process::Command;

use outpost_updater::layout::Layout;
use outpost_updater::semver::Version;

use crate::config::{Facts, Template};
use crate::error::InstallError;
use crate::fsio::{self, Owner};
use crate::paths::{
    BIN_DIR, CONFIG_DIR, CONFIG_FILE, DATA_DIR, RELEASES, Root, SERVICE, SOCKET, SUPERVISOR,
    SYSUSERS, UNIT_DIR,
};
use crate::{unit, users};

/// The install steps, in the order they run.
pub const STEPS: [&str; 8] = [
    "sysusers",
    "user",
    "directories",
    "release",
    "supervisor",
    "config",
    "units",
    "enable",
];

/// Where `outpost.toml` comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// The template, filled from flags.
    Template(Template),
    /// A file the technician prepared; it must parse.
    File(PathBuf),
    /// The config already installed (a re-run without config flags).
    Installed,
}

/// What to install.
#[derive(Debug, Clone)]
pub struct Options {
    /// The machine, or a staging tree.
    pub root: Root,
    /// The `outpost` binary: its version slot names the release.
    pub binary: PathBuf,
    /// The `outpost-supervisor` binary.
    pub supervisor: PathBuf,
    /// Where the config comes from.
    pub config: ConfigSource,
    /// Overwrite an installed config that differs (otherwise such a run is refused).
    pub replace_config: bool,
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its name (one of [`STEPS`]).
    pub name: &'static str,
    /// Whether it changed something (in a dry run: whether it would).
    pub changed: bool,
    /// What it did or would do, or why nothing was needed.
    pub detail: String,
}

/// The inputs, read and checked before any step runs.
struct Inputs {
    binary: Vec<u8>,
    version: Version,
    supervisor: Vec<u8>,
    config: String,
    facts: Facts,
}

fn read_input(what: &str, path: &PathBuf) -> Result<Vec<u8>, InstallError> {
    let bytes = std::fs::read(path).map_err(|e| InstallError::io("read", path, e))?;
    if bytes.is_empty() {
        return Err(InstallError::Invalid {
            what: format!("{what} {}", path.display()),
            reason: "is empty".into(),
        });
    }
    Ok(bytes)
}

fn inputs(o: &Options) -> Result<Inputs, InstallError> {
    let binary = read_input("--binary", &o.binary)?;
    let version = outpost_updater::stamp::read(&binary).map_err(|e| InstallError::Invalid {
        what: format!("--binary {}", o.binary.display()),
        reason: format!("not an Outpost release binary ({e})"),
    })?;
    let supervisor = read_input("--supervisor", &o.supervisor)?;
    let installed_path = o.root.path(CONFIG_FILE);
    let installed = match std::fs::read_to_string(&installed_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(InstallError::io("read", installed_path, e)),
    };
    let config = match &o.config {
        ConfigSource::Template(t) => t.render()?,
        ConfigSource::File(p) => std::fs::read_to_string(p).map_err(|e| InstallError::io("read", p, e))?,
        ConfigSource::Installed => installed.clone().ok_or_else(|| InstallError::Invalid {
            what: "config".into(),
            reason: format!(
                "{CONFIG_FILE} is not installed yet: give --store-id (and the other settings) or --config-from FILE"
            ),
        })?,
    };
    let facts = Facts::read(&config)?;
    if let Some(old) = &installed
        && *old != config
        && !o.replace_config
    {
        return Err(InstallError::Conflict(format!(
            "{CONFIG_FILE} is installed and differs from the config this run would write: pass --replace-config to overwrite it, or run without config flags to keep it"
        )));
    }
    let layout = Layout::new(o.root.path(RELEASES));
    match layout.current()? {
        Some(cur) if cur != version => {
            return Err(InstallError::Conflict(format!(
                "release {cur} is installed and current; the installer puts the first release only: take {version} with `outpost update apply`"
            )));
        }
        Some(cur) => {
            let path = layout.binary(&cur);
            let on_disk = std::fs::read(&path).map_err(|e| InstallError::io("read", &path, e))?;
            if on_disk != binary {
                return Err(InstallError::Conflict(format!(
                    "release {cur} is installed with other bytes than --binary {}: a release is never rewritten in place",
                    o.binary.display()
                )));
            }
        }
        None => {}
    }
    Ok(Inputs {
        binary,
        version,
        supervisor,
        config,
        facts,
    })
}

/// Runs `cmd`; an error carries its status and error output.
pub(crate) fn run_command(cmd: &mut Command) -> Result<(), InstallError> {
    let line = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| InstallError::Command {
        command: line.clone(),
        reason: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(InstallError::Command {
            command: line,
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Whether `systemctl ARGS` succeeds (`is-enabled`, `is-active`).
fn systemctl_ok(args: &[&str]) -> bool {
    Command::new("systemctl")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs (or, with `apply` false, plans), calling `progress` after each step.
pub fn install(
    o: &Options,
    apply: bool,
    progress: &mut dyn FnMut(&Step),
) -> Result<Vec<Step>, InstallError> {
    let inp = inputs(o)?;
    let root = &o.root;
    let mut done: Vec<Step> = Vec::new();
    // Records a step, reports it, and (in a real run) stops dead after it when the
    // tests ask for it.
    macro_rules! step {
        ($name:expr, $changed:expr, $detail:expr $(,)?) => {{
            let s = Step {
                name: $name,
                changed: $changed,
                detail: $detail,
            };
            progress(&s);
            done.push(s);
            if apply {
                crate::fail_after($name);
            }
        }};
    }

    // sysusers: the declaration. Once the user exists it is left as it is (its id
    // field was only for creating it).
    let snippet_path = root.path(SYSUSERS);
    let text = match (users::lookup(root)?, std::fs::read(&snippet_path)) {
        (Some(_), Ok(existing)) => existing,
        _ => users::snippet(users::snippet_ids(root)?).into_bytes(),
    };
    let c = fsio::ensure_file(&snippet_path, &text, 0o644, Some(Owner::ROOT), apply)?;
    step!(
        "sysusers",
        c,
        format!("{SYSUSERS} declares the outpost user")
    );

    // user
    let c = users::lookup(root)?.is_none();
    if c && apply {
        users::apply(root)?;
    }
    let ids = users::lookup(root)?;
    if apply && ids.is_none() {
        return Err(InstallError::Command {
            command: "systemd-sysusers".into(),
            reason: "it ran, but /etc/passwd has no outpost user".into(),
        });
    }
    let detail = match ids {
        Some(i) => format!("user and group outpost ({}:{})", i.uid, i.gid),
        None => "create the system user and group outpost".into(),
    };
    step!("user", c, detail);
    let outpost = ids;
    let config_owner = ids.map(|i| Owner { uid: 0, gid: i.gid });

    // directories
    let mut c = false;
    c |= fsio::ensure_dir(&root.path(CONFIG_DIR), 0o750, config_owner, apply)?;
    c |= fsio::ensure_tree_owner(&root.path(DATA_DIR), outpost, apply)?;
    c |= fsio::ensure_dir(&root.path(DATA_DIR), 0o700, outpost, apply)?;
    c |= fsio::ensure_dir(&root.path(RELEASES), 0o755, outpost, apply)?;
    c |= fsio::ensure_dir(&root.path(BIN_DIR), 0o755, Some(Owner::ROOT), apply)?;
    step!(
        "directories",
        c,
        format!(
            "{CONFIG_DIR} 0750 root:outpost, {DATA_DIR} 0700 outpost, {RELEASES} 0755 outpost, {BIN_DIR} 0755 root"
        ),
    );

    // release: the first release, current; the updater (as outpost) owns it all.
    let layout = Layout::new(root.path(RELEASES));
    let v = &inp.version;
    let mut c = layout.current()?.is_none();
    if c && apply {
        layout.install_first(v, &inp.binary)?;
    }
    c |= fsio::ensure_dir(&root.path(RELEASES).join("releases"), 0o755, outpost, apply)?;
    c |= fsio::ensure_dir(&layout.release_dir(v), 0o755, outpost, apply)?;
    c |= fsio::ensure_file(&layout.binary(v), &inp.binary, 0o755, outpost, apply)?;
    c |= fsio::ensure_owner(&root.path(RELEASES).join("current"), outpost, apply)?;
    step!(
        "release",
        c,
        format!("{RELEASES}/releases/{v}/outpost, current -> releases/{v}"),
    );

    let c = fsio::ensure_file(
        &root.path(SUPERVISOR),
        &inp.supervisor,
        0o755,
        Some(Owner::ROOT),
        apply,
    )?;
    step!("supervisor", c, SUPERVISOR.into());

    let config_changed = fsio::ensure_file(
        &root.path(CONFIG_FILE),
        inp.config.as_bytes(),
        0o640,
        config_owner,
        apply,
    )?;
    step!(
        "config",
        config_changed,
        format!("{CONFIG_FILE} 0640 root:outpost")
    );

    // units, from the config being installed
    let mut groups = Vec::new();
    for g in ["tss", "dialout"] {
        let needed = g == "tss" || inp.facts.devices.iter().any(|d| !d.starts_with("/dev/tpm"));
        if needed && users::group_exists(root, g)? {
            groups.push(g.to_owned());
        }
    }
    let units = unit::units(&inp.facts, &groups);
    let dir = root.path(UNIT_DIR);
    let mut units_changed = false;
    units_changed |= fsio::ensure_file(
        &dir.join(SERVICE),
        units.service.as_bytes(),
        0o644,
        Some(Owner::ROOT),
        apply,
    )?;
    units_changed |= fsio::ensure_file(
        &dir.join(SOCKET),
        units.socket.as_bytes(),
        0o644,
        Some(Owner::ROOT),
        apply,
    )?;
    step!(
        "units",
        units_changed,
        format!("{UNIT_DIR}/{SERVICE}, {SOCKET}")
    );

    // enable: only the running machine's systemd; a staging tree is left for its boot.
    if !root.is_system() {
        step!(
            "enable",
            false,
            "skipped under --root: the units are installed, not enabled".into()
        );
    } else {
        let running = systemctl_ok(&["is-enabled", "--quiet", SOCKET, SERVICE])
            && systemctl_ok(&["is-active", "--quiet", SOCKET, SERVICE]);
        let changed_any = done.iter().any(|s| s.changed);
        let (c, detail) = if !running {
            if apply {
                run_command(Command::new("systemctl").arg("daemon-reload"))?;
                run_command(Command::new("systemctl").args(["enable", "--now", SOCKET, SERVICE]))?;
            }
            (true, format!("systemctl enable --now {SOCKET} {SERVICE}"))
        } else if changed_any {
            if apply {
                run_command(Command::new("systemctl").arg("daemon-reload"))?;
                run_command(Command::new("systemctl").args(["restart", SERVICE]))?;
            }
            (
                true,
                format!("systemctl restart {SERVICE} (its files changed)"),
            )
        } else {
            (false, format!("{SOCKET} and {SERVICE} enabled and running"))
        };
        step!("enable", c, detail);
    }
    Ok(done)
}
