//! The accept loop and background tasks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use segchat_log::SystemLog;
use segchat_net::relay::{self, Relay};
use segchat_net::EndpointId;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::ConnCounter;
use crate::auth::{Hasher, Limits, LoginLimiter};
use crate::config::ServerConfig;
use crate::conn;
use crate::hub::Hub;
use crate::names::TakenNames;
use crate::ops::{now_ms, Shared};
use crate::store::{self, StoreError};

/// How long connections get to finish after shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("could not open the database: {0}")]
    Store(#[from] StoreError),
    #[error("could not open {dir}: {source}")]
    Log { dir: String, source: std::io::Error },
    #[error("{0}")]
    Bind(#[from] segchat_net::endpoint::BindError),
    #[error("could not reach NATS at {url}: {source}")]
    Nats {
        url: String,
        source: async_nats::ConnectError,
    },
}

/// How long a new tracker link has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the server until `shutdown` is cancelled, then waits (up to a
/// grace period) for connections to close. `listener` (TCP) takes the
/// nodes' tracker links (TLS) and serves the relay and the server's key;
/// the UDP port of the same number is the server's QUIC endpoint (file
/// copies, and telling a node its UDP address).
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    config.validate().map_err(ServerError::Config)?;
    segchat_log::private_dir(&config.data_dir).map_err(|source| ServerError::Log {
        dir: config.data_dir.display().to_string(),
        source,
    })?;
    let log = SystemLog::open(config.log.clone()).map_err(|source| ServerError::Log {
        dir: config.log.dir.display().to_string(),
        source,
    })?;
    let url = config
        .database_url
        .clone()
        .unwrap_or_else(|| config.data_dir.join("server.db").display().to_string());
    let store = store::open(&url).await?;
    let taken_names = TakenNames::new(store.usernames().await?);
    let key = crate::keys::load_or_create(&config.key_file).map_err(|source| ServerError::Log {
        dir: config.key_file.display().to_string(),
        source,
    })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    log.record(
        "SERVER_STARTED",
        &local,
        match &config.nats_url {
            Some(nats) => format!("database={} nats={}", redact_url(&url), redact_url(nats)),
            None => format!("database={}", redact_url(&url)),
        },
    );
    tracing::info!(addr = %local, "segchat server listening");

    let link = match &config.nats_url {
        Some(url) => {
            Some(
                crate::cluster::connect(url)
                    .await
                    .map_err(|source| ServerError::Nats {
                        url: redact_url(url),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let hub = match &link {
        Some(l) => Hub::clustered(log.clone(), l.instance, l.tx.clone()),
        None => Hub::new(log.clone()),
    };
    let files = crate::files::ServerFiles::open(
        &config.data_dir,
        config.file_backup_max,
        config.file_backup_total,
        log.clone(),
    )
    .await
    .map_err(|source| ServerError::Log {
        dir: config.data_dir.join("blobs").display().to_string(),
        source,
    })?;
    let shared = Arc::new(Shared {
        files: Arc::new(files),
        limiter: LoginLimiter::new(Limits {
            per_pair: config.login_failures_per_account_source,
            per_source: config.login_failures_per_source,
            per_account: config.login_failures_per_account,
            window: config.login_window,
        }),
        hasher: Hasher::new(config.hash_slots, config.hash_queue),
        taken_names,
        hub,
        cluster: link.as_ref().map(|l| l.handle()),
        mates: Default::default(),
        store,
        log: log.clone(),
        verifier: segchat_proto::verify::Verifier::new(key.verifying_key()),
        key,
        config,
    });

    tracing::info!(
        slots = shared.config.hash_slots,
        queue = shared.config.hash_queue,
        mib_per_slot = shared.hasher.slot_bytes() >> 20,
        "password hashing bounded"
    );

    let fingerprint = segchat_net::id_hex(&segchat_net::endpoint_id(&shared.key.verifying_key()));
    let bind = listener.local_addr().map_err(|source| ServerError::Log {
        dir: "the listening socket".into(),
        source,
    })?;
    // The server is a client of its own relay: a node whose UDP is blocked
    // reaches the server's endpoint through it.
    let endpoint = segchat_net::endpoint::bind(segchat_net::endpoint::Options {
        key: shared.key.clone(),
        bind,
        relay: segchat_net::endpoint::Relay::Now(relay::url_of(relay::reachable_from_here(bind))),
        // Small frames to many mostly idle nodes: no batch buffer each.
        batched_sends: false,
    })
    .await?;
    let tasks = TaskTracker::new();
    let tracker = Tracker {
        shared: shared.clone(),
        tls: segchat_net::tls::server_config(&shared.key),
        conns: ConnCounter::new(shared.config.max_conns_per_source),
        next_id: Arc::new(AtomicU64::new(1)),
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
    };
    // One TCP port: the relay, the key route and (TLS) the tracker links.
    let relay = Relay::spawn(
        listener,
        endpoint.id(),
        Arc::new(HubGate(shared.clone())),
        Arc::new(tracker),
        relay::Limits::default(),
    );
    log.record("SERVER_KEY", &local, format!("key={fingerprint}"));
    tracing::info!(key = %fingerprint, "server key (nodes pin it)");

    tasks.spawn(reaper(shared.clone(), shutdown.clone()));
    if let Some(link) = link {
        tasks.spawn(crate::cluster::run(link, shared.clone(), shutdown.clone()));
    }
    shared.files.set_endpoint(
        endpoint.clone(),
        relay::url_of(relay::reachable_from_here(bind)),
    );
    let router = Router::builder(endpoint)
        .accept(iroh_blobs::ALPN, shared.files.protocol())
        .accept(segchat_net::observe::ALPN_OBSERVE, Observe(log.clone()))
        .spawn();
    shutdown.cancelled().await;
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; stopping anyway");
    }
    let _ = router.shutdown().await;
    relay.shutdown().await;
    log.record("SERVER_STOPPED", &local, "shutdown");
    log.flush();
    Ok(())
}

/// The tracker: each TLS connection on the server's TCP port is one
/// tracker link, the node known by the key it proved in the handshake.
#[derive(Debug, Clone)]
struct Tracker {
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    conns: Arc<ConnCounter>,
    next_id: Arc<AtomicU64>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl relay::TlsDoor for Tracker {
    fn enter(&self, stream: TcpStream, addr: SocketAddr, place: relay::Place) {
        let me = self.clone();
        self.tasks.spawn(async move {
            let tls = segchat_net::tls::TlsAcceptor::from(me.tls.clone());
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await;
            drop(place);
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    let why = format!("TLS: {e}");
                    return me.shared.log.record("HANDSHAKE_FAILED", addr, why);
                }
                Err(_) => {
                    let why = format!("no TLS handshake within {} s", HANDSHAKE_TIMEOUT.as_secs());
                    return me.shared.log.record("HANDSHAKE_FAILED", addr, why);
                }
            };
            let Some(node) = segchat_net::tls::remote_id(stream.get_ref().1) else {
                return;
            };
            let id = me.next_id.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = me.conns.admit(addr.ip()) else {
                return conn::refuse(stream, addr, me.shared.clone()).await;
            };
            let peer = conn::Peer {
                addr,
                node_id: segchat_net::id_hex(&node),
            };
            conn::serve(
                stream,
                peer,
                id,
                me.shared.clone(),
                me.shutdown.child_token(),
                slot,
            )
            .await;
        });
    }
}

/// Tells a node where its QUIC packets come from (see
/// `segchat_net::observe`), and logs what it told (`UDP_ADDRESS_TOLD`,
/// from `0.0.0.0:0` when the node came through the relay and was told
/// nothing).
#[derive(Debug, Clone)]
struct Observe(SystemLog);

impl ProtocolHandler for Observe {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let node = segchat_net::id_hex(&connection.remote_id());
        let told = segchat_net::observe::answer(connection).await;
        let at = told.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.0
            .record("UDP_ADDRESS_TOLD", at, format!("node={node}"));
        Ok(())
    }
}

/// The relay asks the hub where a node stands.
#[derive(Debug)]
struct HubGate(Arc<Shared>);

impl relay::Gate for HubGate {
    fn standing(&self, node: &EndpointId) -> relay::Standing {
        self.0.hub.node_standing(&segchat_net::id_hex(node))
    }

    fn note(&self, node: &EndpointId, what: relay::Note<'_>) {
        let node = segchat_net::id_hex(node);
        match what {
            relay::Note::Admitted => {
                self.0
                    .log
                    .record("RELAY_OPEN", "relay", format!("node={node}"))
            }
            relay::Note::Refused(why) => {
                self.0
                    .log
                    .record("RELAY_REFUSED", "relay", format!("node={node} {why}"))
            }
            relay::Note::Closed => {
                self.0
                    .log
                    .record("RELAY_CLOSED", "relay", format!("node={node}"))
            }
        }
    }
}

/// Drops peers whose heartbeats stopped, and expired sessions; signs out
/// connections whose session is gone.
async fn reaper(shared: Arc<Shared>, shutdown: CancellationToken) {
    let tick =
        (shared.config.heartbeat / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    let mut last_session_sweep = std::time::Instant::now();
    let mut last_session_check = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        for (conn, addr, p) in shared.hub.reap(shared.config.peer_ttl) {
            crate::ops::end_streams(&shared, conn, addr, "streamer_expired").await;
            shared.log.record(
                "PEER_EXPIRED",
                addr,
                format!(
                    "user={} session={} no heartbeat for {} ms",
                    p.username,
                    p.session_id,
                    shared.config.peer_ttl.as_millis()
                ),
            );
        }
        if last_session_check.elapsed() >= shared.config.session_check {
            last_session_check = std::time::Instant::now();
            end_sessions_gone(&shared).await;
        }
        if last_session_sweep.elapsed() > Duration::from_secs(3600) {
            last_session_sweep = std::time::Instant::now();
            match shared.store.delete_expired_sessions(now_ms()).await {
                Ok(n) if n > 0 => tracing::info!(n, "removed expired sessions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not remove expired sessions"),
            }
        }
    }
}

/// Signs out this instance's connections whose session no longer exists
/// or has expired. A logout through another instance says so over NATS
/// at once; this catches the message NATS lost (and instances without
/// NATS), and sessions that ran out while their connection stayed up.
async fn end_sessions_gone(shared: &Shared) {
    let held = shared.hub.signed_in_sessions();
    if held.is_empty() {
        return;
    }
    let live: std::collections::HashSet<String> =
        match shared.store.live_sessions(held.clone(), now_ms()).await {
            Ok(live) => live.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not check the sessions held");
                return;
            }
        };
    for session in held.iter().filter(|s| !live.contains(*s)) {
        crate::ops::end_session(
            shared,
            session,
            None,
            "your session ended (logged out elsewhere, or expired)",
        )
        .await;
    }
}

/// A database URL without its password, for logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
