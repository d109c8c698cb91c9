//! The tasks that talk to the cluster's Redis for this node.
//!
//! - The *writer* runs the registry's [`LinkRequest`]s in the order given
//!   (so this node's messages keep their order, and a HISTORY asked after
//!   a message sees it), those that are one script each as one pipeline of
//!   all that are queued. A request that fails because
//!   Redis is unreachable is tried again until Redis is back: what the
//!   registry accepted is not lost to an outage.
//! - The *reader* reads this node's inbox and hands the events to the
//!   registry, in order.
//! - The *heartbeat* keeps this node alive in Redis, declares dead the nodes
//!   that stopped theirs, and notices a Redis that lost its data (then the
//!   registry puts back what this node knows).
//!
//! The registry never waits on any of them: it queues requests with
//! `try_send` and reads `up` to answer 503 while Redis is unreachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Value};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tsockm_proto::Text;

use super::scripts;
use super::{ClusterConfig, ClusterError, INBOX_MAX};

pub use super::requests::*;
use super::{heartbeat, reader, writer};

/// Requests queued from the registry to the writer.
pub const LINK_QUEUE: usize = 8192;

/// Bytes the queued requests may hold (see [`LinkRequest::queued_bytes`]):
/// 32 MiB, so that 8,192 messages of the largest frame cannot pile up.
pub const LINK_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// Free places in the queue below which the registry stops taking its
/// clients' frames until the writer catches up: clients then wait (TCP
/// slows them) instead of being refused, and the registry's own requests
/// (removals, answers to other nodes) still find room.
const LINK_HEADROOM: usize = LINK_QUEUE / 4;

/// The same headroom in bytes.
const LINK_HEADROOM_BYTES: usize = LINK_QUEUE_BYTES / 4;

/// Most events the reader takes from the inbox at once.
pub(super) const READ_BATCH: usize = 1024;

/// How long one blocking read of the inbox waits for events.
pub(super) const READ_BLOCK_MS: u64 = 1000;

/// Waits between two attempts while Redis is unreachable.
pub(super) const RETRY_MIN: Duration = Duration::from_millis(50);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(1);

/// How long a command may take before Redis counts as unreachable.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stopping node keeps trying an unreachable Redis.
pub(super) const STOP_GIVE_UP: Duration = Duration::from_secs(3);

/// Entries read per page when looking through an inbox for a resume.
pub(super) const REPLAY_PAGE: usize = 1000;

/// The registry's end of the link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    tx: mpsc::Sender<LinkRequest>,
    queued: Arc<QueuedBytes>,
    up: Arc<AtomicBool>,
    /// This node's name.
    pub node: Text,
}

/// The bytes of the requests in the link's queue, counted by the registry
/// as it queues them and by the writer as it takes them.
#[derive(Debug, Default)]
pub(crate) struct QueuedBytes {
    bytes: AtomicUsize,
    /// Notified each time the writer takes a request.
    taken: Notify,
}

impl QueuedBytes {
    /// The writer took `request` out of the queue.
    pub(super) fn taken(&self, request: &LinkRequest) {
        self.bytes
            .fetch_sub(request.queued_bytes(), Ordering::Relaxed);
        self.taken.notify_waiters();
    }

    fn get(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl LinkHandle {
    /// Whether Redis is reachable (as far as the last command knew).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Queues a request; `false` if the queue is full, in requests or in
    /// bytes (or the link ended). A request larger than the whole byte
    /// bound is still taken when the queue is empty.
    pub fn request(&self, request: LinkRequest) -> bool {
        let n = request.queued_bytes();
        let before = self.queued.bytes.fetch_add(n, Ordering::Relaxed);
        if before > 0 && before + n > LINK_QUEUE_BYTES {
            self.queued.bytes.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        match self.tx.try_send(request) {
            Ok(()) => true,
            Err(_) => {
                self.queued.bytes.fetch_sub(n, Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether the writer is so far behind that the registry should take
    /// no more frames from its clients until [`LinkHandle::room`].
    pub fn is_busy(&self) -> bool {
        !self.tx.is_closed()
            && (self.tx.capacity() < LINK_HEADROOM
                || self.queued.get() > LINK_QUEUE_BYTES - LINK_HEADROOM_BYTES)
    }

    /// Waits until the queue has room again (forever if the link ended).
    pub async fn room(&self) {
        loop {
            let taken = self.queued.taken.notified();
            if self.tx.is_closed() {
                return std::future::pending().await;
            }
            if !self.is_busy() {
                return;
            }
            taken.await;
        }
    }
}

/// What joining the cluster gave.
pub struct Started {
    /// The registry's end.
    pub link: LinkHandle,
    /// The alphabet ids are written with.
    pub alphabet: String,
    /// The cluster's sequence number at the join: this node's inbox
    /// carries what comes after.
    pub seq: u64,
    /// Every peer of the cluster then: id, node, online, name, since, addr.
    pub peers: Vec<(Text, Text, bool, Text, i64, Text)>,
    runner: Runner,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("node", &self.link.node)
            .field("seq", &self.seq)
            .field("n_peers", &self.peers.len())
            .finish()
    }
}

impl Started {
    /// Starts the writer, the reader and the heartbeat; they end when the
    /// registry drops its handle (the writer, after its queue) or
    /// `stopped` is cancelled.
    pub fn spawn(
        self,
        tracker: &tokio_util::task::TaskTracker,
        inputs: mpsc::Sender<ClusterInput>,
        stopped: CancellationToken,
    ) {
        let Runner {
            config,
            history_max,
            client,
            writer,
            rx,
            queued,
            up,
            epoch,
            alphabet,
        } = self.runner;
        let shared = Arc::new(Shared {
            config,
            history_max,
            queued,
            up,
            epoch,
            alphabet,
        });
        tracker.spawn(writer::write_loop(
            shared.clone(),
            writer.clone(),
            rx,
            inputs.clone(),
        ));
        tracker.spawn(reader::read_loop(
            shared.clone(),
            client,
            self.seq,
            inputs.clone(),
            stopped.clone(),
        ));
        tracker.spawn(heartbeat::heartbeat_loop(shared, writer, inputs, stopped));
    }
}

/// What the tasks need, before they are started.
struct Runner {
    config: ClusterConfig,
    history_max: usize,
    client: Client,
    writer: ConnectionManager,
    rx: mpsc::Receiver<LinkRequest>,
    queued: Arc<QueuedBytes>,
    up: Arc<AtomicBool>,
    epoch: String,
    alphabet: String,
}

/// What the three tasks share.
pub(super) struct Shared {
    pub(super) config: ClusterConfig,
    /// Messages kept per conversation (`--history-max`).
    pub(super) history_max: usize,
    /// The bytes in the registry's queue to the writer.
    pub(super) queued: Arc<QueuedBytes>,
    pub(super) up: Arc<AtomicBool>,
    pub(super) epoch: String,
    pub(super) alphabet: String,
}

impl Shared {
    pub(super) fn prefix(&self) -> String {
        format!("{}:", self.config.name)
    }

    pub(super) fn heartbeat_ms(&self) -> u64 {
        u64::try_from(self.config.node_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Redis answered: log the end of an outage.
    pub(super) fn reached(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::warn!("the cluster's Redis is reachable again");
        }
    }

    /// Redis did not answer: log the start of an outage, once.
    pub(super) fn unreachable(&self, error: &RedisError) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(%error, "the cluster's Redis is unreachable: MSG, JOIN, PART and HISTORY get 503 until it is back");
        }
    }
}

/// Whether an error means Redis could not be reached (retry), rather than
/// that it refused the command (do not).
pub(super) fn is_unreachable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
}

/// Connects to Redis, joins the cluster and reads what this node needs to
/// start: the alphabet, the current order, every peer.
pub async fn start(
    config: &ClusterConfig,
    fresh_alphabet: &str,
    history_max: usize,
) -> Result<Started, ClusterError> {
    let unreachable = |source| ClusterError::Unreachable {
        url: config.url.clone(),
        source,
    };
    let client = Client::open(config.url.as_str()).map_err(unreachable)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(RETRY_MAX);
    let mut writer = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .map_err(unreachable)?;
    let prefix = format!("{}:", config.name);
    let taken: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}alive:{}", config.node))
        .query_async(&mut writer)
        .await
        .map_err(unreachable)?;
    if taken {
        return Err(ClusterError::NameTaken(config.node.clone()));
    }
    let epoch = format!("{:016x}", fastrand::u64(..));
    let heartbeat_ms = u64::try_from(config.node_timeout.as_millis()).unwrap_or(u64::MAX);
    let reply: Vec<Value> = scripts::NODE_UP
        .arg(&prefix)
        .arg(INBOX_MAX)
        .arg(&config.node)
        .arg(heartbeat_ms)
        .arg(fresh_alphabet)
        .arg(&epoch)
        .invoke_async(&mut writer)
        .await
        .map_err(unreachable)?;
    let unexpected = |what: &str| ClusterError::Unexpected {
        url: config.url.clone(),
        what: what.to_owned(),
    };
    let strings: Vec<String> = reply.iter().map(value_string).collect();
    let [alphabet, epoch, seq, rest @ ..] = strings.as_slice() else {
        return Err(unexpected("a short answer to joining"));
    };
    let seq = seq
        .parse::<u64>()
        .map_err(|_| unexpected("a sequence number that is not a number"))?;
    let mut peers = Vec::new();
    for chunk in rest.chunks(6) {
        let [id, node, state, name, since, addr] = chunk else {
            return Err(unexpected("a peer record of the wrong length"));
        };
        peers.push((
            Text::from(id.as_str()),
            Text::from(node.as_str()),
            state == "on",
            Text::from(name.as_str()),
            since.parse::<i64>().unwrap_or(0),
            Text::from(addr.as_str()),
        ));
    }
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let queued = Arc::new(QueuedBytes::default());
    let up = Arc::new(AtomicBool::new(true));
    Ok(Started {
        link: LinkHandle {
            tx,
            queued: queued.clone(),
            up: up.clone(),
            node: Text::from(config.node.as_str()),
        },
        alphabet: alphabet.clone(),
        seq,
        peers,
        runner: Runner {
            config: config.clone(),
            history_max,
            client,
            writer,
            rx,
            queued,
            up,
            epoch: epoch.clone(),
            alphabet: alphabet.clone(),
        },
    })
}

/// A reply value as a string (bulk, simple or integer).
pub(super) fn value_string(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::Okay => "OK".to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
impl LinkHandle {
    /// A handle whose queue ends in the returned receiver, with no writer:
    /// the test takes requests as the writer would (with
    /// [`QueuedBytes::taken`]).
    pub(crate) fn detached(
        node: &str,
    ) -> (LinkHandle, mpsc::Receiver<LinkRequest>, Arc<QueuedBytes>) {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let queued = Arc::new(QueuedBytes::default());
        let handle = LinkHandle {
            tx,
            queued: queued.clone(),
            up: Arc::new(AtomicBool::new(true)),
            node: Text::from(node),
        };
        (handle, rx, queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Target;
    use crate::store::Conversation;

    /// A message request carrying `n` bytes of text.
    fn message(n: usize) -> LinkRequest {
        LinkRequest::Msg {
            conn: 1,
            target: Target::Lobby,
            author: Text::from("a1"),
            name: Text::from("ann"),
            text: Text::from("x".repeat(n).as_str()),
            at_ms: 0,
            conversation: Conversation::Lobby,
        }
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_and_busy_near_the_bound() {
        let (link, mut rx, queued) = LinkHandle::detached("n1");
        let big = LINK_QUEUE_BYTES / 8;
        let mut taken = 0;
        while link.request(message(big)) {
            taken += 1;
            assert!(taken < 16, "the byte bound never refused");
        }
        // Eight of them would pass the bound with their fixed sizes.
        assert_eq!(taken, 7);
        assert!(queued.get() <= LINK_QUEUE_BYTES);
        assert!(link.is_busy(), "past three quarters of the bytes");
        // Small requests still fit in what is left.
        assert!(link.request(LinkRequest::NodeDown));

        // Room comes back only once the writer has taken enough.
        let room = tokio::spawn({
            let link = link.clone();
            async move { link.room().await }
        });
        for _ in 0..2 {
            let request = rx.recv().await.expect("queued");
            queued.taken(&request);
        }
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .expect("room once the writer caught up")
            .expect("no panic");
        assert!(!link.is_busy());
        while let Ok(request) = rx.try_recv() {
            queued.taken(&request);
        }
        assert_eq!(queued.get(), 0, "every byte counted is given back");
    }

    #[test]
    fn a_request_larger_than_the_bound_passes_an_empty_queue() {
        let (link, _rx, queued) = LinkHandle::detached("n1");
        assert!(link.request(message(LINK_QUEUE_BYTES + 1)));
        assert!(
            !link.request(LinkRequest::NodeDown),
            "then nothing else fits"
        );
        assert!(queued.get() > LINK_QUEUE_BYTES);
    }
}
