//! Test helpers that make real files and directories unwritable, for the
//! store's failure tests (no mocks: SQLite must meet the real error).
//!
//! `chmod a-w` stops a new open for writing, but not root, and not a file
//! already open; `chattr +i` (immutable) stops both, even for root, on file
//! systems that have it (ext4, xfs, btrfs). Each helper says `None` when it
//! cannot make its target unwritable here, and the test then says it
//! skipped that check. The guard undoes the change when dropped, so the
//! temporary directory can be removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Undoes [`immutable`] or [`unwritable_dir`] when dropped.
#[derive(Debug)]
pub struct Unwritable {
    immutable: Vec<PathBuf>,
    chmodded: Vec<(PathBuf, fs::Permissions)>,
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if !self.immutable.is_empty() {
            let _ = Command::new("chattr")
                .arg("-i")
                .args(&self.immutable)
                .status();
        }
        for (path, permissions) in self.chmodded.drain(..) {
            let _ = fs::set_permissions(path, permissions);
        }
    }
}

/// Makes files immutable (writes through descriptors already open fail
/// too), if this process may; `None` if not (not root, no `chattr`, a file
/// system without the flag).
pub fn immutable(paths: &[&Path]) -> Option<Unwritable> {
    let guard = Unwritable {
        immutable: paths.iter().map(|p| p.to_path_buf()).collect(),
        chmodded: Vec::new(),
    };
    let status = Command::new("chattr").arg("+i").args(paths).status();
    if !status.is_ok_and(|s| s.success()) {
        return None;
    }
    paths
        .iter()
        .all(|path| fs::OpenOptions::new().append(true).open(path).is_err())
        .then_some(guard)
}

/// Makes a directory refuse new entries: `chmod 0500`, or if that is not
/// enough (root), `chattr +i`; `None` if neither works here.
pub fn unwritable_dir(dir: &Path) -> Option<Unwritable> {
    let original = fs::metadata(dir).ok()?.permissions();
    let mut read_only = original.clone();
    read_only.set_readonly(true);
    fs::set_permissions(dir, read_only).ok()?;
    let chmodded = Unwritable {
        immutable: Vec::new(),
        chmodded: vec![(dir.to_owned(), original)],
    };
    if !can_create_in(dir) {
        return Some(chmodded);
    }
    drop(chmodded);
    let guard = Unwritable {
        immutable: vec![dir.to_owned()],
        chmodded: Vec::new(),
    };
    let status = Command::new("chattr").arg("+i").arg(dir).status();
    (status.is_ok_and(|s| s.success()) && !can_create_in(dir)).then_some(guard)
}

fn can_create_in(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    match fs::File::create(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(probe);
            true
        }
        Err(e) => {
            debug_assert_ne!(e.kind(), io::ErrorKind::NotFound);
            false
        }
    }
}

/// Says on standard error that a test skipped a check it cannot set up.
pub fn skipped(what: &str) {
    eprintln!("skipped: cannot make {what} unwritable here (needs chattr +i, or not root)");
}
