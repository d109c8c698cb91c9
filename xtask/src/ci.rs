//! `cargo xtask ci`: what CI checks, runnable by anyone. Must need nothing a
//! fresh machine with the pinned toolchain lacks.

use crate::{run, run_with_env};

/// rustfmt, clippy with warnings denied, the API docs with warnings denied
/// (no broken intra-doc link), then every test of the workspace (the tidy
/// checks of `tidy.rs` among them).
pub fn ci() -> Result<(), String> {
    run("cargo", &["fmt", "--all", "--check"])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run_with_env(
        "cargo",
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    run("cargo", &["test", "--workspace"])
}
