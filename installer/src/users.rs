//! The `outpost` system user and group, declared the systemd way: a sysusers.d snippet
//! (`/etc/sysusers.d/outpost.conf`) applied by `systemd-sysusers` (with `--root DIR`
//! under a staging tree). The tool picks a free system id, writes `/etc/passwd`,
//! `/etc/group`, `/etc/shadow` and `/etc/gshadow` whole and under the account lock,
//! and changes nothing when the user exists; the snippet stays, so the user is
//! declared like every other service's.
//!
//! Removal has no systemd tool (sysusers never removes), and `userdel --root` leaves
//! the group and backup files behind, so the installer removes the `outpost` lines
//! from those four files itself, each rewritten whole with its owner and mode, under
//! the same lock (`/etc/.pwd.lock`, the fcntl lock of lckpwdf(3)).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use crate::error::InstallError;
use crate::fsio::{self, Owner};
use crate::paths::{DATA_DIR, Root, SYSUSERS, USER};

/// The account files that hold the user or its group, one name per line, first field.
const ACCOUNT_FILES: [&str; 4] = ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"];

/// The sysusers.d lines for the user: any free system id, or `ids` (then the group
/// is declared first: sysusers creates a `uid:gid` user only into an existing group).
pub fn snippet(ids: Option<Owner>) -> String {
    let mut s = String::from(
        "# The user Outpost's service runs as (outpost-install; see docs/install.md).\n",
    );
    let id = match ids {
        Some(o) => {
            s += &format!("g {USER} {}\n", o.gid);
            format!("{}:{}", o.uid, o.gid)
        }
        None => "-".into(),
    };
    s += &format!("u {USER} {id} \"Outpost store server\" {DATA_DIR} -\n");
    s
}

fn entries(root: &Root, file: &str) -> Result<Vec<Vec<String>>, InstallError> {
    let path = root.path(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(|l| l.split(':').map(str::to_owned).collect())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(InstallError::io("read", path, e)),
    }
}

fn id_at(fields: &[String], i: usize) -> Option<u32> {
    fields.get(i).and_then(|f| f.parse().ok())
}

/// The `outpost` user's uid and primary gid, when the root's `/etc/passwd` has it.
pub fn lookup(root: &Root) -> Result<Option<Owner>, InstallError> {
    let passwd = entries(root, "/etc/passwd")?;
    Ok(passwd.iter().find(|f| f[0] == USER).and_then(|f| {
        Some(Owner {
            uid: id_at(f, 2)?,
            gid: id_at(f, 3)?,
        })
    }))
}

/// Whether the root's `/etc/group` has group `name`.
pub fn group_exists(root: &Root, name: &str) -> Result<bool, InstallError> {
    Ok(entries(root, "/etc/group")?.iter().any(|f| f[0] == name))
}

/// The ids the snippet declares. The user that exists keeps its ids; a data dir kept
/// by an uninstall gives back the ids that own it (when no one else took them), so a
/// reinstall owns its old data again; otherwise (`None`) any free system id.
pub fn snippet_ids(root: &Root) -> Result<Option<Owner>, InstallError> {
    if let Some(o) = lookup(root)? {
        return Ok(Some(o));
    }
    let data = root.path(DATA_DIR);
    if let Ok(m) = std::fs::metadata(&data)
        && m.uid() != 0
    {
        let uid_taken = entries(root, "/etc/passwd")?
            .iter()
            .any(|f| id_at(f, 2) == Some(m.uid()));
        let gid_taken = entries(root, "/etc/group")?
            .iter()
            .any(|f| id_at(f, 2) == Some(m.gid()));
        if !uid_taken && !gid_taken {
            return Ok(Some(Owner {
                uid: m.uid(),
                gid: m.gid(),
            }));
        }
    }
    Ok(None)
}

/// Creates the user and group the snippet declares, with `systemd-sysusers`.
pub fn apply(root: &Root) -> Result<(), InstallError> {
    let name = Path::new(SYSUSERS)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("outpost.conf");
    let mut cmd = Command::new("systemd-sysusers");
    if !root.is_system() {
        cmd.arg(format!("--root={}", root.dir().display()));
    }
    cmd.arg(name);
    crate::install::run_command(&mut cmd)
}

/// Removes the user and its group from the root's account files.
pub fn remove(root: &Root, apply: bool) -> Result<bool, InstallError> {
    let mut changed = false;
    let _lock = if apply { Some(lock(root)?) } else { None };
    for file in ACCOUNT_FILES {
        let path = root.path(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| l.split(':').next() != Some(USER))
            .collect();
        if kept.len() == text.lines().count() {
            continue;
        }
        changed = true;
        if apply {
            let m = std::fs::metadata(&path).map_err(|e| InstallError::io("stat", &path, e))?;
            let mut out = kept.join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            let owner = Owner {
                uid: m.uid(),
                gid: m.gid(),
            };
            fsio::write_atomic(&path, out.as_bytes(), m.mode() & 0o7777, owner)?;
        }
    }
    Ok(changed)
}

/// The account lock (lckpwdf's): an exclusive fcntl lock on `/etc/.pwd.lock`, held
/// while the returned file is open.
fn lock(root: &Root) -> Result<std::fs::File, InstallError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = root.path("/etc/.pwd.lock");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| InstallError::io("open", &path, e))?;
    rustix::fs::fcntl_lock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| InstallError::io("lock", &path, e.into()))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_found_and_removed_with_its_group_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::staged(dir.path());
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let w = |f: &str, s: &str| std::fs::write(root.path(f), s).unwrap();
        w(
            "/etc/passwd",
            "root:x:0:0::/root:/bin/sh\noutpost:x:998:997::/var/lib/outpost:/usr/sbin/nologin\n",
        );
        w("/etc/group", "root:x:0:\noutpost:x:997:\noutposts:x:5:\n");
        assert_eq!(lookup(&root).unwrap(), Some(Owner { uid: 998, gid: 997 }));
        assert_eq!(
            snippet_ids(&root).unwrap(),
            Some(Owner { uid: 998, gid: 997 })
        );
        assert!(remove(&root, false).unwrap());
        assert!(
            lookup(&root).unwrap().is_some(),
            "a dry run removes nothing"
        );
        assert!(remove(&root, true).unwrap());
        assert_eq!(lookup(&root).unwrap(), None);
        let group = std::fs::read_to_string(root.path("/etc/group")).unwrap();
        assert_eq!(group, "root:x:0:\noutposts:x:5:\n");
        assert!(!remove(&root, true).unwrap());
    }

    #[test]
    fn a_kept_data_dir_gives_its_ids_back_unless_taken() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::staged(dir.path());
        std::fs::create_dir_all(root.path("/etc")).unwrap();
        std::fs::create_dir_all(root.path(DATA_DIR)).unwrap();
        std::os::unix::fs::chown(root.path(DATA_DIR), Some(990), Some(991)).unwrap();
        std::fs::write(root.path("/etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(root.path("/etc/group"), "root:x:0:\n").unwrap();
        assert_eq!(
            snippet_ids(&root).unwrap(),
            Some(Owner { uid: 990, gid: 991 })
        );
        assert!(snippet(snippet_ids(&root).unwrap()).contains("g outpost 991\nu outpost 990:991 "));
        std::fs::write(root.path("/etc/group"), "root:x:0:\nother:x:991:\n").unwrap();
        assert_eq!(snippet_ids(&root).unwrap(), None);
    }
}
