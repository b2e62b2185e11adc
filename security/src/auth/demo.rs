//! The demo credentials file.
//!
//! `outpost demo` creates a terminal token and a technician login, prints them, and
//! writes them to `<data-dir>/demo-credentials.json` (mode 0600) as
//! `{"terminal_token":…,"technician":{"username":…,"password":…}}` so scripts and the
//! console's first-run page can pick them up.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::fsutil::{self, FsError};

/// File name inside the data dir.
pub const DEMO_CREDENTIALS_FILE: &str = "demo-credentials.json";

/// Writes the demo credentials file atomically, owner-only; returns its path.
pub fn write_demo_credentials(
    data_dir: &Path,
    terminal_token: &SecretString,
    technician_username: &str,
    technician_password: &SecretString,
) -> Result<PathBuf, FsError> {
    let json = Zeroizing::new(
        serde_json::json!({
            "terminal_token": terminal_token.expose_secret(),
            "technician": {
                "username": technician_username,
                "password": technician_password.expose_secret(),
            }
        })
        .to_string(),
    );
    let path = data_dir.join(DEMO_CREDENTIALS_FILE);
    fsutil::write_private(&path, json.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_the_documented_shape_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_demo_credentials(
            dir.path(),
            &SecretString::from("opt_x_y"),
            "tech",
            &SecretString::from("pw\"with quote"),
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["terminal_token"], "opt_x_y");
        assert_eq!(v["technician"]["username"], "tech");
        assert_eq!(v["technician"]["password"], "pw\"with quote");
    }
}
