//! Opening what a server needs before it listens: the store (with the id
//! alphabet and the counts it keeps, and the sessions a previous server
//! saved) and the store thread. Every failure here is a [`StartError`]: one
//! line for the operator, and the binary exits 1.

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use crate::config::Config;
use crate::identity::{IdentityError, IdentityMaker, shuffled_alphabet};
use crate::store::{
    self, SavedSessions, Store, StoreError, StoreHandle, StoreSpec, StoreWorker, WorkerLimits,
};
use crate::tls::TlsError;

/// The store's key for the alphabet ids are written with.
const ALPHABET_KEY: &str = "sqids_alphabet";

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store cannot be opened (or read at start).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The store thread cannot be started.
    #[error("cannot start the store thread: {0}")]
    StoreThread(io::Error),
    /// Ids cannot be made (no randomness).
    #[error("{0}")]
    Identity(#[from] IdentityError),
    /// The TLS certificate or key cannot be used.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The cluster's Redis cannot be joined.
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// The store, running on its thread, and what was read from it at start.
#[derive(Debug)]
pub(crate) struct OpenStore {
    pub handle: StoreHandle,
    pub thread: JoinHandle<()>,
    pub ids: IdentityMaker,
    pub saved: Option<SavedSessions>,
    /// In a cluster: what joining it gave.
    pub cluster: Option<crate::cluster::Started>,
}

/// Opens the configured store, reads the id alphabet (making one for a new
/// store), the largest message count and the saved sessions, then starts
/// the store thread.
pub(crate) async fn open_store(config: &Config) -> Result<OpenStore, StartError> {
    if let Some(cluster) = &config.cluster {
        return join_cluster(config, cluster).await;
    }
    let spec = match &config.store {
        Some(spec) => spec.clone(),
        None => StoreSpec::default_sqlite()?,
    };
    let mut store = store::open(&spec, config.history_max)?;
    let alphabet = alphabet(&mut *store)?;
    let last_msg = store.max_seq()?;
    let saved = store.take_sessions()?;
    let last_peer = saved
        .as_ref()
        .map_or(0, |s| s.next_peer_seq.saturating_sub(1));
    let ids = IdentityMaker::new(&alphabet, last_peer, last_msg)?;
    let (handle, thread) =
        StoreWorker::spawn(store, WorkerLimits::default()).map_err(StartError::StoreThread)?;
    Ok(OpenStore {
        handle,
        thread,
        ids,
        saved,
        cluster: None,
    })
}

/// Joins the cluster: its Redis is the store (the link writes history with
/// each message), so the local store is an empty in-memory one that never
/// saves sessions; ids use the cluster's alphabet, continue its order, and
/// carry a random tag of this node.
async fn join_cluster(
    config: &Config,
    cluster: &crate::cluster::ClusterConfig,
) -> Result<OpenStore, StartError> {
    let fresh: String = shuffled_alphabet()?.into_iter().collect();
    let started = crate::cluster::start(cluster, &fresh, config.history_max).await?;
    let ids =
        IdentityMaker::new(&started.alphabet, 0, started.seq)?.with_node_tag(fastrand::u32(..));
    let (handle, thread) = StoreWorker::spawn(
        Box::new(store::MemoryStore::new(0)),
        WorkerLimits::default(),
    )
    .map_err(StartError::StoreThread)?;
    Ok(OpenStore {
        handle,
        thread,
        ids,
        saved: None,
        cluster: Some(started),
    })
}

/// The store's alphabet, or a new one saved in it.
fn alphabet(store: &mut dyn Store) -> Result<String, StartError> {
    if let Some(alphabet) = store.meta(ALPHABET_KEY)? {
        let mut chars: Vec<char> = alphabet.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        if chars.len() == 62 && chars.iter().all(char::is_ascii_alphanumeric) {
            return Ok(alphabet);
        }
        tracing::warn!("the store's id alphabet is damaged: making a new one");
    }
    let alphabet: String = shuffled_alphabet()?.into_iter().collect();
    store.set_meta(ALPHABET_KEY, &alphabet)?;
    Ok(alphabet)
}
