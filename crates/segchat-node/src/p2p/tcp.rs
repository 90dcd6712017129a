//! The peer layer on TCP: the node's TCP port of the same number as its
//! QUIC one takes peer links over TLS (raw public keys, the peer ALPN;
//! `segchat_net::tls`). A member whose host is directly reachable links to
//! it this way (`crate::transport::Transport::dial_chat`): a host's
//! fan-out is then one kernel write per member instead of QUIC's packets
//! in user space. What comes after the handshake is the same link as on
//! QUIC (`hello`, `welcome`, the protocols), under the same caps; it
//! carries no datagrams, so livestreams stay on QUIC.

use std::net::SocketAddr;
use std::time::Duration;

use segchat_net::tls::TlsAcceptor;
use tokio::net::TcpListener;
use tokio_util::either::Either;
use tracing::Instrument;

use super::{serve_peer, PeerService, Remote, Source, HELLO_TIMEOUT};

/// How long the accept loop rests after the system refused it a socket
/// (out of file descriptors), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Takes peer links on `listener` until the node shuts down, each under
/// the caps of `service` (the QUIC ones: one count for both).
pub(crate) async fn listen(
    service: PeerService,
    listener: TcpListener,
    key: ed25519_dalek::SigningKey,
) {
    let tls = TlsAcceptor::from(segchat_net::tls::peer_server_config(&key));
    let shutdown = service.shutdown.clone();
    loop {
        let (tcp, addr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a peer connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Refused before the handshake costs anything; dropping the
        // socket closes it.
        let Some(admitted) = service.admit(Source::Ip(addr.ip()), addr) else {
            continue;
        };
        let service = service.clone();
        let tls = tls.clone();
        let span = tracing::info_span!("peer", peer = %addr, on = "tcp");
        tokio::spawn(
            async move {
                let _admitted = admitted;
                let _ = tcp.set_nodelay(true);
                let stream = match tokio::time::timeout(HELLO_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "a TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                // The handshake required a key (rustls refuses a client
                // that proves none).
                let Some(id) = segchat_net::tls::remote_id(stream.get_ref().1) else {
                    return;
                };
                let remote = Remote {
                    id,
                    datagrams: None,
                    path: format!("tcp {addr}"),
                };
                let (r, w) = tokio::io::split(stream);
                serve_peer(&service, (Either::Right(w), Either::Right(r)), addr, remote).await;
            }
            .instrument(span),
        );
    }
}

/// Binds the peer TCP port at `at` (the QUIC endpoint's address, so the
/// same port number); `None`, logged, when it is taken: the node then
/// takes peer links on QUIC only, and members dial it there.
pub(crate) async fn bind(at: SocketAddr) -> Option<TcpListener> {
    match TcpListener::bind(at).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(%at, error = %e, "the peer TCP port is taken; peer links on QUIC only");
            None
        }
    }
}
