//! The mount as a program sees it: writes pass through to the backing directory only
//! when fsync'd, and a crash leaves exactly the synced state.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use outpost_lazyfs::{LazyFs, skip_on};

fn mount(backing: &Path, at: &Path) -> Option<LazyFs> {
    match LazyFs::mount(backing, at) {
        Ok(fs) => Some(fs),
        Err(e) if skip_on(&e) => None,
        Err(e) => panic!("{e} (set OUTPOST_SKIP_FUSE=1 to skip the FUSE tests on this machine)"),
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn a_crash_keeps_exactly_what_was_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::write(backing.join("old"), b"old contents").unwrap();
    let Some(fs) = mount(&backing, &mnt) else {
        return;
    };

    // Synced, then more written after the sync.
    let mut a = File::create(mnt.join("a")).unwrap();
    a.write_all(b"durable").unwrap();
    a.sync_all().unwrap();
    a.write_all(b" and lost").unwrap();
    // Never synced.
    std::fs::write(mnt.join("b"), vec![42u8; 100_000]).unwrap();
    // Truncated and rewritten, synced with fdatasync through another handle.
    let mut c = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(mnt.join("c"))
        .unwrap();
    c.write_all(&vec![1u8; 10_000]).unwrap();
    File::open(mnt.join("c")).unwrap().sync_data().unwrap();
    c.set_len(10).unwrap();
    // An old file truncated but not synced.
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(mnt.join("old"))
        .unwrap();
    // A directory and a renamed synced file inside it.
    std::fs::create_dir(mnt.join("d")).unwrap();
    let mut t = File::create(mnt.join("d/tmp")).unwrap();
    t.write_all(b"renamed").unwrap();
    t.sync_all().unwrap();
    std::fs::rename(mnt.join("d/tmp"), mnt.join("d/final")).unwrap();

    // The processes see everything.
    assert_eq!(read(&mnt.join("a")), b"durable and lost");
    assert_eq!(read(&mnt.join("b")).len(), 100_000);
    assert_eq!(read(&mnt.join("c")), vec![1u8; 10]);
    assert_eq!(read(&mnt.join("old")), b"");
    assert_eq!(std::fs::metadata(mnt.join("b")).unwrap().len(), 100_000);
    let mut names: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c", "d", "old"]);
    drop((a, c, t));
    assert_eq!(fs.pending().0, 4, "a, b, c and old have unsynced writes");

    let crash = fs.crash().unwrap();
    assert_eq!(crash.files, 4);
    assert!(crash.syncs >= 3, "{crash:?}");

    // The disk holds what was synced, and so does the next mount.
    assert_eq!(read(&backing.join("a")), b"durable");
    assert_eq!(read(&backing.join("b")), b"");
    assert_eq!(read(&backing.join("c")), vec![1u8; 10_000]);
    assert_eq!(read(&backing.join("old")), b"old contents");
    assert_eq!(read(&backing.join("d/final")), b"renamed");
    let fs = mount(&backing, &mnt).unwrap();
    assert_eq!(read(&mnt.join("a")), b"durable");
    assert_eq!(read(&mnt.join("c")).len(), 10_000);
    // Writing in the middle of a synced file after the remount.
    let mut a = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.join("a"))
        .unwrap();
    a.seek(SeekFrom::Start(2)).unwrap();
    a.write_all(b"XX").unwrap();
    let mut s = String::new();
    a.seek(SeekFrom::Start(0)).unwrap();
    a.read_to_string(&mut s).unwrap();
    assert_eq!(s, "duXXble");
    drop(a);
    // A clean unmount makes everything durable.
    fs.unmount().unwrap();
    assert_eq!(read(&backing.join("a")), b"duXXble");
}

#[test]
fn a_file_unlinked_with_unsynced_writes_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    let Some(fs) = mount(&backing, &mnt) else {
        return;
    };
    let mut f = File::create(mnt.join("gone")).unwrap();
    f.write_all(b"pending").unwrap();
    std::fs::remove_file(mnt.join("gone")).unwrap();
    // Still readable through the open handle, as on any filesystem.
    f.write_all(b" more").unwrap();
    drop(f);
    // The kernel sends the release after close(2) returns: wait for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs.pending().0 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "pending writes of an unlinked file stayed after its last close"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A new file that may get the same backing inode starts clean.
    std::fs::write(mnt.join("new"), b"x").unwrap();
    assert_eq!(read(&mnt.join("new")), b"x");
    fs.crash().unwrap();
    assert_eq!(read(&backing.join("new")), b"");
    assert!(!backing.join("gone").exists());
}

#[test]
fn a_mount_that_cannot_be_made_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let err = LazyFs::mount(&dir.path().join("no-backing"), dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("no-backing"),
        "names the backing directory: {err}"
    );
    match LazyFs::mount(dir.path(), &dir.path().join("no-mountpoint")).unwrap_err() {
        // A machine without FUSE says so.
        e @ outpost_lazyfs::LazyFsError::NoFuse => assert!(e.to_string().contains("/dev/fuse")),
        e => {
            let msg = e.to_string();
            assert!(
                msg.contains("no-mountpoint") && msg.contains("fusermount3"),
                "{msg}"
            );
        }
    }
}
