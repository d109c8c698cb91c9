//! Tidy checks over the project's own sources, run as ordinary tests by
//! `cargo test --workspace` (so CI runs them): every Rust file opens with a
//! comment saying what it is for, and none holds a `todo!` or a `dbg!`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::project_root;

/// Every `.rs` file of the project (crates, xtask, fuzz), skipping build
/// output.
fn rust_files() -> Vec<PathBuf> {
    let root = project_root();
    let mut files = Vec::new();
    for top in ["crates", "xtask", "fuzz"] {
        collect(&root.join(top), &mut files);
    }
    assert!(files.len() > 20, "found only {} Rust files", files.len());
    files
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    let root = project_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_file_says_what_it_is_for() {
    let mut missing = Vec::new();
    for path in rust_files() {
        let text = fs::read_to_string(&path).unwrap_or_default();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let first = first.trim_start();
        // `//!` for modules and crates; `//` for files included as a part
        // of another (a test's `common/mod.rs` may use either).
        if !(first.starts_with("//!") || first.starts_with("// ")) {
            missing.push(relative(&path));
        }
    }
    assert!(
        missing.is_empty(),
        "these files do not open with a comment saying what they are for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_todo_and_no_dbg() {
    // Spelled in two pieces so that this file does not flag itself.
    let banned = [concat!("todo", "!("), concat!("dbg", "!(")];
    let mut found = Vec::new();
    for path in rust_files() {
        let text = fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if banned.iter().any(|b| line.contains(b)) {
                found.push(format!("{}:{}: {}", relative(&path), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "found:\n{}", found.join("\n"));
}
