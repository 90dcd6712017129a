//! Starting and stopping a node: bind the QUIC endpoint (keyed by the
//! node key) and the API socket, then build the parts from the bottom up
//! and spawn the task tree under one cancellation token. On shutdown the
//! tasks get a bounded grace period, then are aborted.
//!
//! This is the one place that knows every part. It owns the node's
//! [`EventBus`] and the list of revoked sessions and hands them down: the
//! server link publishes on the bus; chat and livestreams are built on the
//! link and the bus, and registered as protocols of the peer layer
//! ([`PeerService`]); the API gets handles to all of them. No part holds a
//! pointer back up to another: what spans parts (a revoked session closes
//! chat's links and drops stream viewers) is wired here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use segchat_log::SystemLog;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use segchat_proto::tracker::Event;

use crate::admission::Revoked;
use crate::api::{self, ApiFile, ApiState, NodeAddrs};
use crate::chat::Chat;
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::events::{EventBus, NodeEvent};
use crate::link::{LinkConfig, LinkHandle, PeerAddrs, ServerPin};
use crate::p2p::{PeerProtocol, PeerService};
use crate::store::Store;
use crate::stream::Streams;
use crate::transport::Transport;

/// Name of the local store inside the data directory.
pub const DB_FILE: &str = "node.db";

/// Entry point: see [`Node::start`].
#[derive(Debug)]
pub struct Node;

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    api_addr: SocketAddr,
    api_token: String,
    p2p_addr: SocketAddr,
    node_id: String,
    data_dir: PathBuf,
    router: iroh::protocol::Router,
    link: LinkHandle,
    log: SystemLog,
    shutdown: CancellationToken,
    grace: Duration,
    tasks: JoinSet<()>,
}

impl Node {
    /// Binds the P2P, UDP and API sockets, opens the store and the system
    /// log, writes `DATA_DIR/api.json`, and starts the node's tasks. They
    /// run until `shutdown` is cancelled (or [`NodeHandle::shutdown`]).
    pub async fn start(
        config: NodeConfig,
        shutdown: CancellationToken,
    ) -> Result<NodeHandle, NodeError> {
        config.validate().map_err(NodeError::Config)?;
        let data_dir = config.data_dir.clone();
        segchat_log::private_dir(&data_dir).map_err(|source| NodeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let log = SystemLog::open(config.log.clone()).map_err(|source| NodeError::Log {
            dir: config.log.dir.clone(),
            source,
        })?;
        let db = data_dir.join(DB_FILE);
        let store = tokio::task::spawn_blocking(move || Store::open(&db))
            .await
            .map_err(|e| crate::store::StoreError::Worker(e.to_string()))??;

        let key = crate::chat::load_node_key(&data_dir).map_err(|source| NodeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        // The relay is the first instance's (nodes behind NAT meet there).
        let first = crate::config::server_addrs(&config.server_addr)
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let server = crate::link::resolve(&first)
            .await
            .map_err(|source| NodeError::Config(format!("server address {first}: {source}")))?;
        let (endpoint, peer_tcp) = bind_p2p(config.p2p_listen, &key).await?;
        let p2p_addr = segchat_net::endpoint::local_addr(&endpoint).unwrap_or(config.p2p_listen);
        let node_id = segchat_net::id_hex(&endpoint.id());
        let (reach_tx, reach_rx) = tokio::sync::mpsc::channel(crate::relay::REACH_QUEUE);
        let transport = Transport::new(endpoint.clone(), Some(segchat_net::relay::url_of(server)))
            .with_reach(reach_tx)
            .with_tcp(key.clone());
        let configured_key = config
            .server_key
            .as_deref()
            .map(segchat_net::parse_id)
            .transpose()
            .map_err(|e| NodeError::Config(format!("server key: {e}")))?;
        let last_api = api::last_api(&data_dir);
        let api_listener = bind_api(config.api_listen, last_api.as_ref().map(|l| l.0)).await?;
        let api_addr = local(&api_listener, "HTTP API", config.api_listen)?;

        let shutdown = shutdown.child_token();
        let bus = EventBus::new();
        let revoked = Revoked::default();
        let (link, actor) = LinkHandle::new(
            LinkConfig {
                server_addr: config.server_addr.clone(),
                endpoint: endpoint.clone(),
                pin: ServerPin::new(&data_dir, configured_key),
                peers: PeerAddrs {
                    p2p: p2p_addr,
                    advertise_ip: config.advertise_ip,
                },
                reconnect_min: config.reconnect_min,
                reconnect_max: config.reconnect_max,
                connect_timeout: config.connect_timeout,
                request_timeout: config.request_timeout,
            },
            store.clone(),
            log.clone(),
            bus.clone(),
            shutdown.clone(),
        );

        let chat = Chat::open(
            store.clone(),
            link.clone(),
            bus.clone(),
            revoked.clone(),
            log.clone(),
            transport.clone(),
            key.clone(),
            data_dir.clone(),
            config.server_addr.clone(),
            config.max_file_size,
        )
        .await
        .map_err(|source| NodeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;

        let streams = Streams::new(
            transport.clone(),
            link.clone(),
            bus.clone(),
            log.clone(),
            key.clone(),
            revoked.clone(),
            config.stream_loss,
            shutdown.clone(),
        );

        // The same address keeps the same token: the browser's cookie (named
        // by the port) and bookmarks stay valid across restarts.
        let api_token = match last_api {
            Some((addr, token)) if addr == api_addr => token,
            _ => api::new_token(),
        };
        let url = format!("http://{api_addr}");
        let upkeep = store.clone();
        let device = crate::dm::Device::new(store.clone(), key.clone());
        let dms = crate::dm::service::Dms::new(
            device.clone(),
            chat.clone(),
            link.clone(),
            bus.clone(),
            log.clone(),
            config.server_addr.clone(),
        );
        let files = crate::files::Files::open(
            &data_dir,
            chat.clone(),
            link.clone(),
            store.clone(),
            log.clone(),
            crate::files::Limits {
                max_size: config.max_file_size,
                download: config.download_limit,
                keep_for_others: config.keep_for_others,
                unused_for: config.files_unused_for,
                sweep_every: config.files_sweep_every,
            },
            shutdown.clone(),
        )
        .await
        .map_err(|source| NodeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let activity = crate::presence::Activity::default();
        let api_state = ApiState::new(
            activity.clone(),
            link.clone(),
            bus.clone(),
            chat.clone(),
            streams.clone(),
            dms.clone(),
            files.clone(),
            store,
            log.clone(),
            api_token.clone(),
            NodeAddrs {
                server_addr: config.server_addr.clone(),
                api: api_addr,
                p2p: p2p_addr,
                node_id: node_id.clone(),
                server_listen: config.share_server,
                endpoint: endpoint.clone(),
            },
            shutdown.clone(),
        );
        let file = ApiFile {
            url: url.clone(),
            token: api_token.clone(),
        };
        api::write_api_file(&data_dir, &file).map_err(|source| NodeError::ApiFile {
            path: data_dir.join(api::API_FILE),
            source,
        })?;

        // Subscribed before the link actor runs, so no revocation it
        // publishes can come before the subscription.
        let revocations = bus.subscribe();
        let mut tasks = JoinSet::new();
        tasks.spawn(actor);
        tasks.spawn(crate::relay::keep_while_udp_blocked(
            transport.clone(),
            link.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::relay::forward_reach(
            reach_rx,
            link.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::relay::answer_relay_wanted(
            bus.subscribe(),
            transport.clone(),
            link.clone(),
            log.clone(),
            config.server_addr.clone(),
            shutdown.clone(),
        ));
        // The peer layer: every protocol on the peer link is one entry.
        let protocols: Vec<Arc<dyn PeerProtocol>> = vec![
            Arc::new(chat.clone()),
            Arc::new(streams.clone()),
            Arc::new(dms.clone()),
            Arc::new(files.clone()),
        ];
        let peers = PeerService::new(protocols, link.clone(), log.clone(), shutdown.clone());
        // Peer links over TCP on the same port number (members of a host
        // they reach directly); QUIC alone if that port was taken.
        if let Some(listener) = peer_tcp {
            tasks.spawn(crate::p2p::listen_tcp(peers.clone(), listener, key.clone()));
        }
        let router = iroh::protocol::Router::builder(endpoint)
            .accept(segchat_net::ALPN_PEER, peers)
            // Files, served only as `file_open` on a peer link granted.
            .accept(iroh_blobs::ALPN, files.protocol())
            .spawn();
        tasks.spawn(follow_revocations(
            revocations,
            revoked,
            chat.clone(),
            streams.clone(),
            log.clone(),
            config.server_addr.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::presence::keep(
            activity,
            link.clone(),
            log.clone(),
            config.server_addr.clone(),
            config.idle_after,
            shutdown.clone(),
        ));
        tasks.spawn(crate::dm::keys::keep_published(
            link.clone(),
            device,
            log.clone(),
            config.server_addr.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(dms.run(shutdown.clone()));
        tasks.spawn(files.clone().run(bus.clone()));
        tasks.spawn(files.clone().sweep_loop());
        tasks.spawn(chat.run(shutdown.clone()));
        tasks.spawn(streams.run());
        tasks.spawn(upkeep.clone().index_in_background(shutdown.clone()));
        tasks.spawn(upkeep.checkpoint_in_background(shutdown.clone()));
        tasks.spawn(api::serve(api_listener, api_state, shutdown.clone()));

        log.record("API_LISTENING", api_addr, format!("url={url}"));
        log.record(
            "NODE_STARTED",
            p2p_addr,
            format!("key={node_id} server={}", config.server_addr),
        );
        tracing::info!(api = %url, p2p = %p2p_addr, key = %node_id, "node started");
        Ok(NodeHandle {
            api_addr,
            api_token,
            p2p_addr,
            node_id,
            data_dir,
            router,
            link,
            log,
            shutdown,
            grace: config.shutdown_grace,
            tasks,
        })
    }
}

/// How many ephemeral ports the P2P bind tries for one free on both TCP
/// and UDP.
const P2P_PORT_TRIES: usize = 8;

/// The node's P2P sockets: its QUIC endpoint on UDP `at`, and a TCP
/// listener on the same address for peer links over TLS. With port 0 the
/// port is one free on both (TCP is asked for one, UDP takes it; another
/// is tried if UDP has it in use). With a port given, UDP must bind it and
/// TCP is taken if free, else peer links are on QUIC only (logged).
async fn bind_p2p(
    at: SocketAddr,
    key: &ed25519_dalek::SigningKey,
) -> Result<(segchat_net::Endpoint, Option<tokio::net::TcpListener>), NodeError> {
    let udp = |bind: SocketAddr| async move {
        segchat_net::endpoint::bind(segchat_net::endpoint::Options {
            key: key.clone(),
            bind,
            relay: segchat_net::endpoint::Relay::Later,
            batched_sends: true,
        })
        .await
        .map_err(|e| NodeError::Bind {
            what: "P2P QUIC (UDP)",
            addr: bind,
            source: std::io::Error::other(e.reason),
        })
    };
    if at.port() == 0 {
        for _ in 0..P2P_PORT_TRIES {
            let Ok(tcp) = tokio::net::TcpListener::bind(at).await else {
                break;
            };
            let Ok(port) = tcp.local_addr() else { break };
            if let Ok(endpoint) = udp(port).await {
                return Ok((endpoint, Some(tcp)));
            }
        }
    }
    let endpoint = udp(at).await?;
    let bound = segchat_net::endpoint::local_addr(&endpoint).unwrap_or(at);
    Ok((endpoint, crate::p2p::bind_tcp(bound).await))
}

/// Binds the HTTP API on `listen`. When that asks for any port, the port
/// of the last run (`last`, on the same IP) is tried first, so open tabs
/// find a restarted node where they left it; if it is taken, any port.
async fn bind_api(listen: SocketAddr, last: Option<SocketAddr>) -> Result<TcpListener, NodeError> {
    if let Some(last) = last.filter(|l| listen.port() == 0 && l.ip() == listen.ip()) {
        match TcpListener::bind(last).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                tracing::info!(addr = %last, error = %e, "the API's last address is taken; binding another")
            }
        }
    }
    TcpListener::bind(listen)
        .await
        .map_err(|source| NodeError::Bind {
            what: "HTTP API",
            addr: listen,
            source,
        })
}

fn local(l: &TcpListener, what: &'static str, addr: SocketAddr) -> Result<SocketAddr, NodeError> {
    l.local_addr()
        .map_err(|source| NodeError::Bind { what, addr, source })
}

/// Sessions the server revoked (`session_revoked` goes to every node):
/// remembered, so hosts and streamers refuse their tickets until they
/// expire, and every member link and viewer admitted under one is closed.
async fn follow_revocations(
    mut events: tokio::sync::broadcast::Receiver<NodeEvent>,
    revoked: Revoked,
    chat: Chat,
    streams: Streams,
    log: SystemLog,
    server_addr: String,
    shutdown: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(NodeEvent::Tracker(Event::SessionRevoked {
                session_id,
                expires_at_ms,
            })) => {
                revoked.revoke(session_id.clone(), expires_at_ms);
                let links = chat.drop_session(&session_id);
                let viewers = streams.drop_session(&session_id);
                log.record(
                    "SESSION_REVOKED",
                    &server_addr,
                    format!("session={session_id} links_closed={links} viewers_dropped={viewers}"),
                );
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

impl NodeHandle {
    /// Where the HTTP API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The bearer token every API request needs.
    pub fn api_token(&self) -> &str {
        &self.api_token
    }

    /// Where the QUIC endpoint is bound (UDP).
    pub fn p2p_addr(&self) -> SocketAddr {
        self.p2p_addr
    }

    /// The node's key (hex): its identity on every P2P connection.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The server link (for state and events).
    pub fn link(&self) -> &LinkHandle {
        &self.link
    }

    /// Waits until the node stops: its shutdown token is cancelled or one
    /// of its tasks ended on its own (which stops the rest). Tasks get the
    /// grace period to finish, then are aborted.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            Some(ended) = self.tasks.join_next() => {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "a node task failed; stopping the node");
                } else {
                    tracing::warn!("a node task ended early; stopping the node");
                }
            }
        }
        self.shutdown.cancel();
        let drained = tokio::time::timeout(self.grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("node tasks still running after the grace period; aborting them");
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.router.shutdown()).await;
        api::remove_api_file(&self.data_dir, &self.api_token);
        self.log.record("NODE_STOPPED", self.p2p_addr, "shutdown");
        let log = self.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.flush()).await;
        tracing::info!("node stopped");
    }

    /// Stops the node and waits until it has.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}
