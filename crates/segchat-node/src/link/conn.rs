//! Opening one connection to the server: TCP, `hello`, `welcome`.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::{Failure, Frame, FrameCodec, Hello, LinkKind, Welcome, PROTOCOL_VERSION};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub(super) type Codec = FrameCodec<Request, Reply, Event>;
pub(super) type TrackerFrame = Frame<Request, Reply, Event>;

/// A connection that completed the handshake.
#[derive(Debug)]
pub(super) struct Connected {
    pub(super) framed: Framed<TcpStream, Codec>,
    pub(super) welcome: Welcome,
    /// Our end of the connection (its IP is the one the server reaches).
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the server refused the link: {0}")]
    Refused(Failure),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Connects to `addr` and performs the handshake within `timeout`.
pub(super) async fn connect(addr: &str, timeout: Duration) -> Result<Connected, ConnectError> {
    tokio::time::timeout(timeout, connect_inner(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

async fn connect_inner(addr: &str) -> Result<Connected, ConnectError> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr()?;
    let remote = stream.peer_addr()?;
    let mut framed = Framed::new(stream, Codec::default());
    framed
        .send(Frame::Hello(Hello::new(LinkKind::Tracker, crate::AGENT)))
        .await
        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    match framed.next().await {
        Some(Ok(Frame::Welcome(welcome))) if welcome.version == PROTOCOL_VERSION => Ok(Connected {
            framed,
            welcome,
            local,
            remote,
        }),
        Some(Ok(Frame::Welcome(welcome))) => Err(ConnectError::Protocol(format!(
            "the server speaks protocol version {}, this node {PROTOCOL_VERSION}",
            welcome.version
        ))),
        Some(Ok(Frame::Error(failure))) => Err(ConnectError::Refused(failure)),
        Some(Ok(other)) => Err(ConnectError::Protocol(format!(
            "expected welcome, got a {:?} frame",
            other.kind()
        ))),
        Some(Err(e)) => Err(ConnectError::Protocol(e.to_string())),
        None => Err(ConnectError::Protocol(
            "the server closed the connection during the handshake".into(),
        )),
    }
}
