//! [`BenchError`]: why a benchmark run could not be carried out at all.
//!
//! A run that completes but finds lost or reordered messages is not an error:
//! it is a result, reported with its counts.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A failure that stops the run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The async runtime could not start.
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(#[source] io::Error),
    /// Not every client got registered (and, for IRC, joined) in time.
    #[error(
        "only {registered} of {wanted} clients registered within {timeout:?} \
         ({failed} failed{first})"
    )]
    Registration {
        /// Clients that registered.
        registered: usize,
        /// Clients asked for.
        wanted: usize,
        /// Clients whose connection or registration failed.
        failed: usize,
        /// The first failure, as `: <reason>`, or empty.
        first: String,
        /// How long the run waited.
        timeout: Duration,
    },
    /// A `/proc` file could not be read (wrong `--server-pid`?).
    #[error("cannot read {}: {source}", path.display())]
    Proc {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A `/proc` file did not look as expected.
    #[error("unexpected content in {}", path.display())]
    ProcFormat {
        /// The file.
        path: PathBuf,
    },
    /// The open-files limit is too low for the number of clients.
    #[error(
        "{needed} open files needed but the limit is {limit} and cannot be raised; \
         try `ulimit -n {needed}` or fewer clients"
    )]
    NoFile {
        /// Descriptors wanted.
        needed: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The completeness table would not fit in memory.
    #[error(
        "{clients} clients x {messages} messages needs a {bits}-bit completeness table; \
         use fewer clients or messages"
    )]
    TooLarge {
        /// Clients asked for.
        clients: usize,
        /// Messages per client asked for.
        messages: usize,
        /// Bits needed.
        bits: u128,
    },
}
