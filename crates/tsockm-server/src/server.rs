//! [`Server`]: binds the listener, starts the registry, accepts connections.
//!
//! `run` takes the shutdown signal as an argument, so the binary (signals and
//! `:exit`) and the tests (a token they cancel) choose when it ends. Every
//! task is spawned on one `TaskTracker`, and `run` returns only when all of
//! them have finished.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use bytes::Bytes;
use tsockm_proto::{Action, Frame, Status};

use crate::addr::wire_addr;
use crate::config::Config;
use crate::connection::{self, Accepted, ConnectionContext};
use crate::doorman::{DoorLimits, Doorman, Slots, Turned};
use crate::logging::FrameLog;
use crate::outbox::{Backlog, Bounds};
use crate::registry::{
    ConsoleReply, ConsoleRequest, Hook, Registry, RegistryClosed, RegistryHandle, Shared,
};
use crate::start::{OpenStore, StartError, open_store};
use crate::stats::Stats;
use crate::store::StoreHandle;
use crate::tls::TlsListener;
use crate::wire;

/// Connections allowed beyond `max_peers`, for clients still registering
/// (and resumes taking over a connection not yet found dead).
pub const EXTRA_CONNECTIONS: usize = 1024;

/// What the cluster's link hands the registry, queued.
pub const CLUSTER_INPUTS: usize = 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A bound, not yet running, server.
#[derive(Debug)]
pub struct Server {
    config: Config,
    listener: TcpListener,
    local_addr: SocketAddr,
    /// `Some` when the listener speaks TLS: the certificate, loaded.
    tls: Option<TlsListener>,
    registry: Registry,
    handle: RegistryHandle,
    shared: Shared,
    /// In a cluster: the link's tasks, to start, and where they hand over.
    cluster: Option<(
        crate::cluster::Started,
        mpsc::Sender<crate::cluster::ClusterInput>,
    )>,
    /// The store's thread, joined once the registry has stopped.
    store: (StoreHandle, std::thread::JoinHandle<()>),
}

impl Server {
    /// Loads the TLS certificate if one is configured, opens the store,
    /// binds `config.addr` and prepares the registry (restoring the
    /// sessions a previous server saved in the store).
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        // First, so that a bad certificate is reported before the store is
        // touched.
        let tls = match &config.tls {
            Some(files) => Some(TlsListener::load(files, config.handshake_timeout)?),
            None => None,
        };
        let OpenStore {
            handle: store,
            thread,
            ids,
            saved,
            cluster,
        } = open_store(&config).await?;
        let listen_error = |source| StartError::Listen {
            addr: config.addr,
            source,
        };
        let listener = TcpListener::bind(config.addr).await.map_err(listen_error)?;
        let local_addr = listener.local_addr().map_err(listen_error)?;
        let shared = Shared {
            log: FrameLog::new(config.log_mode),
            stats: Arc::new(Stats::default()),
            slots: Slots::new(config.max_peers.saturating_add(EXTRA_CONNECTIONS)),
            backlog: Arc::new(Backlog::new(Bounds {
                frames: config.send_queue_frames,
                bytes: config.send_queue_bytes,
                remember: config.kept_frames,
            })),
        };
        let (mut registry, handle) =
            Registry::new(&config, local_addr, shared.clone(), ids, store.clone());
        if let Some(saved) = saved {
            registry.restore(saved);
        }
        let cluster = cluster.map(|mut started| {
            let (inputs_tx, inputs_rx) = mpsc::channel(CLUSTER_INPUTS);
            let peers = std::mem::take(&mut started.peers);
            registry.join_cluster(started.link.clone(), started.seq, peers, inputs_rx);
            (started, inputs_tx)
        });
        Ok(Server {
            cluster,
            config,
            listener,
            local_addr,
            tls,
            registry,
            handle,
            shared,
            store: (store, thread),
        })
    }

    /// The store in use, e.g. `sqlite:/home/me/.local/share/tsockm/tsockm.db`
    /// (in a cluster, `the cluster's Redis at <url> (node <name>)`).
    pub fn store(&self) -> String {
        match &self.config.cluster {
            Some(cluster) => format!(
                "the cluster's Redis at {} (node {})",
                cluster.url, cluster.node
            ),
            None => self.store.0.describe().to_owned(),
        }
    }

    /// The address the server listens on (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a hook that receives every message the server accepts, once, in
    /// the order accepted (see [`Hook`]).
    pub fn add_hook(&mut self, hook: Box<dyn Hook>) {
        self.registry.add_hook(hook);
    }

    /// A handle for console commands, usable while the server runs.
    pub fn console(&self) -> Console {
        Console {
            registry: self.handle.clone(),
            log: self.shared.log.clone(),
        }
    }

    /// Serves until `shutdown` is cancelled, then ends every session
    /// (COMM_END to every peer) and returns once every task has finished.
    pub async fn run(self, shutdown: CancellationToken) -> io::Result<()> {
        let Server {
            config,
            listener,
            local_addr,
            tls,
            registry,
            handle,
            shared,
            store,
            cluster,
        } = self;
        tracing::info!(addr = %local_addr, tls = tls.is_some(), "listening");
        let tracker = TaskTracker::new();
        let registry_done = CancellationToken::new();
        {
            let registry_shutdown = shutdown.clone();
            let registry_done = registry_done.clone();
            tracker.spawn(async move {
                registry.run(registry_shutdown).await;
                registry_done.cancel();
            });
        }
        if let Some((started, inputs)) = cluster {
            started.spawn(&tracker, inputs, registry_done.clone());
        }
        // Shared by every connection's task: one pointer in each.
        let cx = Arc::new(ConnectionContext {
            registry: handle,
            stats: shared.stats,
            backlog: shared.backlog,
            max_frame_bytes: config.max_frame_bytes,
            shutdown: registry_done.clone(),
        });
        let slots = shared.slots;
        let doorman = Doorman::new(DoorLimits {
            unregistered: config.max_unregistered,
            unregistered_per_ip: config.max_unregistered_per_ip,
            conns_per_ip: config.max_conns_per_ip,
        });
        let srv = wire_addr(local_addr);
        let mut next_conn = 0u64;
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = slots.free() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            let slot = slots.take(permit);
            let accepted_at = tokio::time::Instant::now();
            let _ = stream.set_nodelay(true);
            let ticket = match doorman.admit(addr) {
                Ok(ticket) => ticket,
                Err(turned) if tls.is_none() => {
                    // Told why in one frame, then closed.
                    let refusal = turned_away(&srv, addr, turned);
                    tracker.spawn(async move {
                        connection::turn_away(stream, refusal).await;
                        drop(slot);
                    });
                    continue;
                }
                Err(turned) => {
                    // A TLS client cannot read a frame sent in clear, and a
                    // handshake to say it over TLS would spend the very time
                    // and sockets the door limits bound: closed unanswered.
                    tracing::debug!(%addr, reason = %turned, "turned away (TLS)");
                    tracker.spawn(async move {
                        let mut stream = stream;
                        connection::close_gracefully(&mut stream).await;
                        drop(slot);
                    });
                    continue;
                }
            };
            next_conn += 1;
            let accepted = Box::new(Accepted {
                addr,
                conn: next_conn,
                accepted_at,
                ticket,
                slot,
            });
            let cx = cx.clone();
            // Two task types: plain TCP's stays `serve::<TcpStream>`, as
            // small as it was, and only TLS connections carry TLS. Each is
            // spawned as it is, with no wrapping block to hold a second copy
            // of its arguments. A plain connection's task logs nothing (the
            // registry speaks for it), so it carries no span: a span is 40
            // bytes in every idle peer's task.
            match &tls {
                None => tracker.spawn(connection::serve(stream, accepted, cx)),
                Some(tls) => {
                    let span = tracing::info_span!("conn", id = next_conn, %addr);
                    tracker.spawn(tls.clone().serve(stream, accepted, cx).instrument(span))
                }
            };
        }
        drop(listener);
        tracker.close();
        tracker.wait().await;
        // The registry has stopped (and asked the store to save the
        // sessions): the store writes everything queued, then ends.
        let (store, thread) = store;
        store.close();
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .is_err()
        {
            tracing::error!("the store thread failed while closing");
        }
        tracing::info!("server stopped");
        Ok(())
    }
}

/// The frame a connection turned away at the door gets:
/// `ERR::NONE::503::server::<srv>::<client addr>::<reason>`.
fn turned_away(srv: &str, addr: SocketAddr, turned: Turned) -> Bytes {
    let frame = Frame::error(Action::None, Status::ServiceUnavailable, turned.to_string())
        .with_sender(tsockm_proto::SERVER_ID)
        .with_src(srv)
        .with_dst(wire_addr(addr));
    wire::encode(&frame).unwrap_or_default()
}

/// Sends operator commands to a running server's registry.
#[derive(Debug, Clone)]
pub struct Console {
    registry: RegistryHandle,
    log: FrameLog,
}

impl Console {
    /// Asks the registry.
    pub async fn request(&self, request: ConsoleRequest) -> Result<ConsoleReply, RegistryClosed> {
        self.registry.console(request).await
    }

    /// Stops or resumes printing protocol frames.
    pub fn set_muted(&self, muted: bool) {
        self.log.set_muted(muted);
    }
}
