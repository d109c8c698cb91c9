//! `cargo xtask ci`: what CI checks, runnable by anyone. Must need nothing a
//! fresh machine with the pinned toolchain lacks.

use crate::run;

/// rustfmt, clippy with warnings denied, then every test of the workspace.
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
    run("cargo", &["test", "--workspace"])
}
