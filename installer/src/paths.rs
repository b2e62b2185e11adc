//! Where Outpost lives on a store machine. The paths are the machine's own (what the
//! units and the config name); [`Root`] maps them under `--root` for the files the
//! installer writes.

use std::path::{Path, PathBuf};

/// The config directory: root-owned, readable by the service's group only.
pub const CONFIG_DIR: &str = "/etc/outpost";
/// The config file the service starts with.
pub const CONFIG_FILE: &str = "/etc/outpost/outpost.toml";
/// The data directory: the service's alone.
pub const DATA_DIR: &str = "/var/lib/outpost";
/// The releases directory (`outpost_updater::layout::Layout`'s root).
pub const RELEASES: &str = "/opt/outpost";
/// Binaries that are not a release (the start guard runs from here, so a release
/// that cannot start is still rolled back).
pub const BIN_DIR: &str = "/opt/outpost/bin";
/// The supervisor binary (`outpost-supervisor guard` before every start).
pub const SUPERVISOR: &str = "/opt/outpost/bin/outpost-supervisor";
/// Where the units go (the administrator's unit directory: not a package's).
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The service unit's name.
pub const SERVICE: &str = "outpost.service";
/// The socket unit's name.
pub const SOCKET: &str = "outpost.socket";
/// The sysusers.d snippet that declares the user.
pub const SYSUSERS: &str = "/etc/sysusers.d/outpost.conf";
/// The user and group the service runs as.
pub const USER: &str = "outpost";

/// The file system the installer works on: `/`, or a staging tree given with `--root`.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    real: bool,
}

impl Root {
    /// The running machine itself.
    pub fn system() -> Root {
        Root {
            dir: PathBuf::from("/"),
            real: true,
        }
    }

    /// A staging tree: nothing is enabled or started, no running systemd is asked.
    pub fn staged(dir: impl Into<PathBuf>) -> Root {
        Root {
            dir: dir.into(),
            real: false,
        }
    }

    /// Whether this is the running machine (units are enabled and started).
    pub fn is_system(&self) -> bool {
        self.real
    }

    /// The tree's top directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the machine's absolute path `abs` is in this tree.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_mapped_under_the_root() {
        assert_eq!(
            Root::staged("/tmp/r").path(CONFIG_FILE),
            Path::new("/tmp/r/etc/outpost/outpost.toml")
        );
        assert_eq!(Root::system().path(DATA_DIR), Path::new(DATA_DIR));
    }
}
