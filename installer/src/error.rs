//! Why an install or uninstall stopped. Each variant says what to do about it.

use std::path::PathBuf;

/// An install or uninstall step that could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// A file-system call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "write", "chown", ...).
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// An input (binary, config file, flag) is not usable.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which input.
        what: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// What is on the machine differs from what this run would write, and this run
    /// may not overwrite it.
    #[error("{0}")]
    Conflict(String),
    /// An external command (`systemd-sysusers`, `systemctl`) failed or is missing.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and error output, or why it did not start.
        reason: String,
    },
    /// The data key could not be destroyed: the purge stopped before removing
    /// anything, so the run can be repeated once the cause is fixed.
    #[error("crypto-erase: {reason}")]
    Erase {
        /// What failed and what to do.
        reason: String,
    },
    /// The releases directory refused (from `outpost-updater`).
    #[error("releases directory: {0}")]
    Releases(#[from] outpost_updater::UpdateError),
}

impl InstallError {
    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        InstallError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
