//! A bare client of segchat's links, for programs that speak the protocol
//! themselves rather than through a node: the benchmark, the tests' raw
//! clients, an independent implementation's reference.
//!
//! It binds an endpoint of its own under the key it is given (every peer
//! link must be keyed by its ticket's node key), learns the server's key
//! the way a node does on first contact, and opens one stream per peer
//! link; its tracker links are TLS over TCP under the same key, from the
//! same IP.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::Endpoint;

use crate::{PeerAddress, RecvStream, SendStream};

/// One link's stream: both halves as one `AsyncRead + AsyncWrite`.
pub type Duplex = tokio::io::Join<RecvStream, SendStream>;

/// An open link: the stream, and the connection it lives on (keep it: the
/// connection closes when the last handle is dropped).
#[derive(Debug)]
pub struct Link {
    pub conn: Connection,
    pub stream: Duplex,
}

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Bind(#[from] crate::endpoint::BindError),
    #[error("{0}")]
    Key(#[from] crate::relay::FetchKeyError),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// A TLS dial's failure (`timeout` was its budget).
    fn of_tls(e: std::io::Error, timeout: Duration) -> ClientError {
        match e.kind() {
            std::io::ErrorKind::TimedOut => ClientError::Timeout(timeout),
            _ => ClientError::Connect(e.to_string()),
        }
    }
}

/// An endpoint under one key.
#[derive(Debug, Clone)]
pub struct Client {
    key: ed25519_dalek::SigningKey,
    /// The IP the endpoint is bound to, which tracker links come from too
    /// (none: any).
    source: Option<IpAddr>,
    endpoint: Endpoint,
    relay: Option<iroh::RelayUrl>,
}

impl Client {
    /// Binds a client endpoint with `key` on `bind` (e.g. `127.0.0.1:0`).
    /// With `relay` (the server's address) it can use the server's relay,
    /// once [`Client::use_relay`] says so (the relay admits signed-in
    /// nodes only, so a client signs in first).
    pub async fn bind(
        key: &ed25519_dalek::SigningKey,
        bind: SocketAddr,
        relay: Option<SocketAddr>,
    ) -> Result<Client, ClientError> {
        let endpoint = crate::endpoint::bind(crate::endpoint::Options {
            key: key.clone(),
            bind,
            relay: match relay {
                Some(_) => crate::endpoint::Relay::Later,
                None => crate::endpoint::Relay::None,
            },
            batched_sends: true,
        })
        .await?;
        Ok(Client {
            key: key.clone(),
            source: Some(bind.ip()).filter(|ip| !ip.is_unspecified()),
            endpoint,
            relay: relay.map(crate::relay::url_of),
        })
    }

    /// Binds a client endpoint with `key` that has no UDP socket: it
    /// reaches the server at `server`, and every peer, through the
    /// server's relay only (as a node on a network that blocks UDP does).
    pub async fn bind_relay_only(
        key: &ed25519_dalek::SigningKey,
        server: SocketAddr,
    ) -> Result<Client, ClientError> {
        let url = crate::relay::url_of(server);
        let endpoint = crate::endpoint::bind(crate::endpoint::Options {
            key: key.clone(),
            bind: server,
            relay: crate::endpoint::Relay::Only(url.clone()),
            batched_sends: true,
        })
        .await?;
        Ok(Client {
            key: key.clone(),
            source: None,
            endpoint,
            relay: Some(url),
        })
    }

    /// Starts using the server's relay (after signing in); waits up to
    /// `timeout` for the relay connection. False if the client was bound
    /// without a relay or the relay did not take it in time.
    pub async fn use_relay(&self, timeout: Duration) -> bool {
        let Some(url) = self.relay.clone() else {
            return false;
        };
        crate::endpoint::use_relay_within(&self.endpoint, url, timeout).await
    }

    /// Opens a peer link to the node `id` through the relay only.
    pub async fn peer_via_relay(
        &self,
        node_id: &str,
        timeout: Duration,
    ) -> Result<Link, ClientError> {
        let id = crate::parse_id(node_id).map_err(|e| ClientError::Connect(e.to_string()))?;
        let relay = self
            .relay
            .clone()
            .ok_or_else(|| ClientError::Connect("this client has no relay".into()))?;
        self.open(
            PeerAddress {
                id,
                direct: Vec::new(),
                relay: Some(relay),
            },
            crate::ALPN_PEER,
            timeout,
        )
        .await
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a tracker link to the server at `server`, whose key it asks
    /// the server for (trust on first use, as a node without a pin does).
    pub async fn tracker(
        &self,
        server: SocketAddr,
        timeout: Duration,
    ) -> Result<crate::tls::ClientStream, ClientError> {
        let key = crate::relay::fetch_server_key(server, timeout).await?;
        self.tracker_to(key, server, timeout).await
    }

    /// Opens a tracker link (TLS over TCP) to the server holding `id` at
    /// `server`, from this client's IP.
    pub async fn tracker_to(
        &self,
        id: iroh::EndpointId,
        server: SocketAddr,
        timeout: Duration,
    ) -> Result<crate::tls::ClientStream, ClientError> {
        let from = self.source.map(|ip| SocketAddr::new(ip, 0));
        crate::tls::connect(server, from, &self.key, id, timeout)
            .await
            .map_err(|e| ClientError::of_tls(e, timeout))
    }

    /// Opens a link of protocol `alpn` to `to`.
    pub async fn open(
        &self,
        to: PeerAddress,
        alpn: &[u8],
        timeout: Duration,
    ) -> Result<Link, ClientError> {
        let open = async {
            let conn = self
                .endpoint
                .connect(to.to_endpoint_addr(), alpn)
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            let (send, recv) = conn
                .open_bi()
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            Ok(Link {
                conn,
                stream: tokio::io::join(recv, send),
            })
        };
        tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// Opens a peer link to the node with key `node_id` (hex) announced at
    /// `addr`.
    pub async fn peer(
        &self,
        node_id: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Link, ClientError> {
        let id = crate::parse_id(node_id).map_err(|e| ClientError::Connect(e.to_string()))?;
        self.open(
            PeerAddress {
                id,
                direct: vec![addr],
                relay: None,
            },
            crate::ALPN_PEER,
            timeout,
        )
        .await
    }

    /// Opens a peer link over TLS on TCP to the node with key `node_id`
    /// (hex) at `addr` (its QUIC address: it takes TCP on the same port),
    /// from this client's IP: how a member reaches a host it can reach
    /// directly.
    pub async fn peer_tcp(
        &self,
        node_id: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<crate::tls::ClientStream, ClientError> {
        let id = crate::parse_id(node_id).map_err(|e| ClientError::Connect(e.to_string()))?;
        let from = self.source.map(|ip| SocketAddr::new(ip, 0));
        crate::tls::connect_peer(addr, from, &self.key, id, timeout)
            .await
            .map_err(|e| ClientError::of_tls(e, timeout))
    }

    /// Closes the endpoint (and every connection of it).
    pub async fn close(&self) {
        self.endpoint.close().await;
    }
}
