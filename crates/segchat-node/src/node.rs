//! Starting and stopping a node: bind every socket, then spawn the task
//! tree (server link, P2P listeners, livestreams, HTTP API) under one cancellation
//! token. On shutdown the tasks get a bounded grace period, then are
//! aborted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use segchat_log::SystemLog;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiFile, ApiState, NodeAddrs};
use crate::link::{LinkConfig, LinkHandle, PeerAddrs};
use crate::p2p::{self, PeerSockets};
use crate::store::Store;
use crate::{NodeConfig, NodeError};

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
    udp_addr: SocketAddr,
    data_dir: PathBuf,
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

        let peers = PeerSockets::bind(config.p2p_listen, config.udp_listen).await?;
        let p2p_addr = local(&peers.tcp, "P2P TCP", config.p2p_listen)?;
        let udp_addr = peers.udp.local_addr().map_err(|source| NodeError::Bind {
            what: "P2P UDP",
            addr: config.p2p_listen,
            source,
        })?;
        let api_listener = TcpListener::bind(config.api_listen)
            .await
            .map_err(|source| NodeError::Bind {
                what: "HTTP API",
                addr: config.api_listen,
                source,
            })?;
        let api_addr = local(&api_listener, "HTTP API", config.api_listen)?;

        let shutdown = shutdown.child_token();
        let (link, actor) = LinkHandle::new(
            LinkConfig {
                server_addr: config.server_addr.clone(),
                peers: PeerAddrs {
                    p2p: p2p_addr,
                    udp_port: udp_addr.port(),
                    advertise_ip: config.advertise_ip,
                },
                reconnect_min: config.reconnect_min,
                reconnect_max: config.reconnect_max,
                connect_timeout: config.connect_timeout,
                request_timeout: config.request_timeout,
            },
            store.clone(),
            log.clone(),
            shutdown.clone(),
        );

        let chat = crate::chat::Chat::open(
            store.clone(),
            link.clone(),
            log.clone(),
            data_dir.clone(),
            config.server_addr.clone(),
        )
        .await
        .map_err(|source| NodeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;

        let api_token = api::new_token();
        let url = format!("http://{api_addr}");
        let upkeep = store.clone();
        let api_state = ApiState::new(
            link.clone(),
            chat.clone(),
            store,
            log.clone(),
            api_token.clone(),
            NodeAddrs {
                server_addr: config.server_addr.clone(),
                api: api_addr,
                p2p: p2p_addr,
                udp: udp_addr,
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

        let streams = crate::stream::Streams::new(
            peers.udp,
            link.clone(),
            log.clone(),
            chat.signing_key().clone(),
            chat.revoked().clone(),
            config.stream_loss,
            shutdown.clone(),
        );
        chat.attach_streams(streams.clone());

        let mut tasks = JoinSet::new();
        tasks.spawn(actor);
        tasks.spawn(p2p::serve(
            peers.tcp,
            chat.clone(),
            log.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(chat.run(shutdown.clone()));
        tasks.spawn(streams.run());
        tasks.spawn(upkeep.clone().index_in_background(shutdown.clone()));
        tasks.spawn(upkeep.checkpoint_in_background(shutdown.clone()));
        tasks.spawn(api::serve(api_listener, api_state, shutdown.clone()));

        log.record("API_LISTENING", api_addr, format!("url={url}"));
        log.record(
            "NODE_STARTED",
            p2p_addr,
            format!("udp={udp_addr} server={}", config.server_addr),
        );
        tracing::info!(api = %url, p2p = %p2p_addr, udp = %udp_addr, "node started");
        Ok(NodeHandle {
            api_addr,
            api_token,
            p2p_addr,
            udp_addr,
            data_dir,
            link,
            log,
            shutdown,
            grace: config.shutdown_grace,
            tasks,
        })
    }
}

fn local(l: &TcpListener, what: &'static str, addr: SocketAddr) -> Result<SocketAddr, NodeError> {
    l.local_addr()
        .map_err(|source| NodeError::Bind { what, addr, source })
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

    /// Where the P2P TCP listener is bound.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.p2p_addr
    }

    /// Where the UDP socket is bound.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
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
