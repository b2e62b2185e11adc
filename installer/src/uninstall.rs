//! `outpost-install uninstall`: removes what `install` put on the machine, in the
//! reverse order, each step idempotent like the install's. The data dir stays (the
//! store's sales, keys and journal) unless `purge`; a kept data dir keeps its numeric
//! owner, and a later install gives the new `outpost` user those same ids back
//! ([`crate::users::snippet_ids`]). `purge` crypto-erases the data key first
//! ([`crate::erase`]).

use std::process::Command;

use crate::error::InstallError;
use crate::install::{Step, run_command};
use crate::paths::{
    CONFIG_DIR, CONFIG_FILE, DATA_DIR, RELEASES, Root, SERVICE, SOCKET, SYSUSERS, UNIT_DIR,
};
use crate::users;
use crate::{erase, fsio};

/// The uninstall steps, in the order they run.
pub const STEPS: [&str; 8] = [
    "stop", "erase", "units", "config", "releases", "data", "sysusers", "user",
];

/// What an uninstall keeps and what it destroys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removal {
    /// Also crypto-erase the data key and remove the data dir and the config dir.
    pub purge: bool,
    /// Keep the config dir as it is (a package removal: Debian keeps a removed
    /// package's configuration until it is purged).
    pub keep_config: bool,
}

/// Uninstalls (or, with `apply` false, plans), calling `progress` after each step.
pub fn uninstall(
    root: &Root,
    removal: Removal,
    apply: bool,
    progress: &mut dyn FnMut(&Step),
) -> Result<Vec<Step>, InstallError> {
    let Removal { purge, keep_config } = removal;
    let mut done = Vec::new();
    let mut step = |name: &'static str, changed: bool, detail: String| {
        let s = Step {
            name,
            changed,
            detail,
        };
        progress(&s);
        done.push(s);
        if apply {
            crate::fail_after(name);
        }
    };
    let service = root.path(UNIT_DIR).join(SERVICE);
    let socket = root.path(UNIT_DIR).join(SOCKET);

    if root.is_system() && (service.exists() || socket.exists()) {
        if apply {
            run_command(Command::new("systemctl").args(["disable", "--now", SERVICE, SOCKET]))?;
        }
        step(
            "stop",
            true,
            format!("systemctl disable --now {SERVICE} {SOCKET}"),
        );
    } else {
        step("stop", false, "nothing to stop".into());
    }

    // The data key goes before anything else (the config still names the TPM), so
    // a purge cut short leaves ciphertext that no copy of the disk opens.
    if purge {
        let (c, detail) = erase::crypto_erase(root, apply)?;
        step("erase", c, detail);
    } else {
        step("erase", false, "data key kept (--purge destroys it)".into());
    }

    let mut c = fsio::remove_file(&service, apply)?;
    c |= fsio::remove_file(&socket, apply)?;
    if c && apply && root.is_system() {
        run_command(Command::new("systemctl").arg("daemon-reload"))?;
    }
    step("units", c, format!("{UNIT_DIR}/{SERVICE}, {SOCKET}"));

    let (c, detail) = if purge {
        (
            fsio::remove_tree(&root.path(CONFIG_DIR), apply)?,
            format!("{CONFIG_DIR} and all in it"),
        )
    } else if keep_config {
        (
            false,
            format!("{CONFIG_DIR} kept for a later install (a purge removes it)"),
        )
    } else {
        let mut c = fsio::remove_file(&root.path(CONFIG_FILE), apply)?;
        let dir = root.path(CONFIG_DIR);
        let others: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| apply || *n != "outpost.toml")
                .collect(),
            Err(_) => Vec::new(),
        };
        if dir.exists() && others.is_empty() {
            c |= fsio::remove_tree(&dir, apply)?;
            (c, format!("{CONFIG_FILE} and {CONFIG_DIR}"))
        } else if dir.exists() {
            (
                c,
                format!(
                    "{CONFIG_FILE}; {CONFIG_DIR} kept: it holds files the installer did not write ({}); --purge removes them",
                    others.join(", ")
                ),
            )
        } else {
            (c, CONFIG_FILE.to_owned())
        }
    };
    step("config", c, detail);

    let c = fsio::remove_tree(&root.path(RELEASES), apply)?;
    step(
        "releases",
        c,
        format!("{RELEASES} (releases, the supervisor, the update journal)"),
    );

    if purge {
        let c = fsio::remove_tree(&root.path(DATA_DIR), apply)?;
        step("data", c, format!("{DATA_DIR} and all in it"));
    } else {
        step(
            "data",
            false,
            format!("{DATA_DIR} kept (--purge removes it)"),
        );
    }

    let c = fsio::remove_file(&root.path(SYSUSERS), apply)?;
    step("sysusers", c, SYSUSERS.into());

    let c = users::remove(root, apply)?;
    step("user", c, "user and group outpost".into());
    Ok(done)
}
