//! TLS 1.3 over TCP with raw public keys: the tracker link, and the peer
//! link where the other node is directly reachable.
//!
//! A node's link to the server is one long-lived, mostly idle stream of
//! small frames, and a server holds one per signed-in node. On QUIC such a
//! link cost the server ~95 KB (the QUIC stack's per-connection state and
//! buffers, see docs/BENCHMARKS.md); TLS over TCP holds the same link in
//! ~10 KB, and the kernel keeps the TCP state. So the tracker link is
//! always TLS over TCP (rustls).
//!
//! A channel's host fans every message out to each member: there QUIC's
//! per-packet work in user space was most of the delivery time (the fan-out
//! benchmark in docs/BENCHMARKS.md), while TCP hands the kernel a whole
//! write. So a member's chat link to its host is TLS over TCP as well when
//! the host's announced address takes TCP ([`connect_peer`], the
//! [`peer_server_config`] a node listens with on the TCP port of the same
//! number as its QUIC one); everything TCP cannot do (hole punching, the
//! relay, a livestream's datagrams, file transfer) stays on QUIC.
//!
//! The identities are the same ed25519 keys as on QUIC (RFC 7250 raw
//! public keys, as iroh's own TLS): the listening side presents its key and
//! the dialler checks it against the key it expects; the dialler presents
//! its node key, which the listener reads back as the link's identity
//! ([`remote_id`]). No certificate, no name, no authority.
//!
//! The server takes tracker links on its one TCP port beside the relay: a
//! connection whose first byte is a TLS handshake record
//! ([`is_tls_start`]) is a tracker link, anything else is HTTP (the relay,
//! the key route).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use iroh::EndpointId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::{TcpSocket, TcpStream};

/// A node's end of a tracker link.
pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;
/// The server's end of a tracker link.
pub type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The DER prefix of an ed25519 SubjectPublicKeyInfo; the 32 key bytes
/// follow (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The DER prefix of an ed25519 private key in PKCS #8 (v1); the 32-byte
/// seed follows (RFC 8410).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Whether a TCP connection that starts with `first` is TLS (a tracker
/// link) rather than HTTP.
pub fn is_tls_start(first: u8) -> bool {
    first == TLS_HANDSHAKE_RECORD
}

/// The server's TLS: presents `key`, and requires every client to prove
/// an ed25519 key of its own (its node key).
pub fn server_config(key: &ed25519_dalek::SigningKey) -> Arc<rustls::ServerConfig> {
    listener_config(key, crate::ALPN_TRACKER)
}

/// A node's TLS for the peer links it takes over TCP: as the server's, for
/// the peer protocol.
pub fn peer_server_config(key: &ed25519_dalek::SigningKey) -> Arc<rustls::ServerConfig> {
    listener_config(key, crate::ALPN_PEER)
}

fn listener_config(key: &ed25519_dalek::SigningKey, alpn: &[u8]) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring offers TLS 1.3")
        .with_client_cert_verifier(Arc::new(AnyNodeKey))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified(key)),
        ));
    config.alpn_protocols = vec![alpn.to_vec()];
    // No resumption: every link proves its node key with a signature of
    // its own, and the server keeps nothing per past link.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

/// A node's TLS towards the server whose key is `server`: presents the
/// node key `key`, and accepts no server but the one holding `server`.
pub fn client_config(
    key: &ed25519_dalek::SigningKey,
    server: EndpointId,
) -> Arc<rustls::ClientConfig> {
    dialler_config(key, server, crate::ALPN_TRACKER)
}

fn dialler_config(
    key: &ed25519_dalek::SigningKey,
    server: EndpointId,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring offers TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer { key: spki(&server) }))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified(key)),
        ));
    config.alpn_protocols = vec![alpn.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Opens a tracker link to the server holding `server` at `addr`, as the
/// node key `key`, from the local address `from` (any when `None`).
/// Connecting and the handshake together take at most `timeout`.
pub async fn connect(
    addr: SocketAddr,
    from: Option<SocketAddr>,
    key: &ed25519_dalek::SigningKey,
    server: EndpointId,
    timeout: Duration,
) -> io::Result<ClientStream> {
    dial(addr, from, client_config(key, server), timeout).await
}

/// Opens a peer link over TCP to the node holding `node` at `addr`, as the
/// node key `key`, from `from` (any when `None`), within `timeout`. A
/// listener with another key or no peer protocol fails the handshake.
pub async fn connect_peer(
    addr: SocketAddr,
    from: Option<SocketAddr>,
    key: &ed25519_dalek::SigningKey,
    node: EndpointId,
    timeout: Duration,
) -> io::Result<ClientStream> {
    dial(
        addr,
        from,
        dialler_config(key, node, crate::ALPN_PEER),
        timeout,
    )
    .await
}

async fn dial(
    addr: SocketAddr,
    from: Option<SocketAddr>,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> io::Result<ClientStream> {
    let connector = TlsConnector::from(config);
    let open = async {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(from) = from {
            socket.bind(from)?;
        }
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        // The name is not checked (the key is); rustls wants one.
        let name = ServerName::IpAddress(addr.ip().into());
        connector.connect(name, tcp).await
    };
    tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS answer in time"))?
}

/// The key the other side of a finished handshake proved it holds.
pub fn remote_id(conn: &rustls::CommonState) -> Option<EndpointId> {
    let presented = conn.peer_certificates()?.first()?;
    key_of(presented.as_ref())
}

/// Whether `err` (from [`connect`]) says the server holds another key
/// than the one asked for.
pub fn is_wrong_key(err: &io::Error) -> bool {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
            )
        })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn spki(id: &EndpointId) -> Vec<u8> {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(id.as_bytes());
    der
}

fn key_of(spki: &[u8]) -> Option<EndpointId> {
    let key = spki.strip_prefix(&SPKI_PREFIX[..])?;
    EndpointId::from_bytes(key.try_into().ok()?).ok()
}

fn certified(key: &ed25519_dalek::SigningKey) -> Arc<CertifiedKey> {
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&key.to_bytes());
    let signer = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(der))
        .expect("an ed25519 seed in PKCS #8 is a signing key");
    let public = spki(&crate::endpoint_id(&key.verifying_key()));
    Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(public)],
        signer,
    ))
}

/// The one signature scheme either side accepts.
const ED25519_ONLY: [SignatureScheme; 1] = [SignatureScheme::ED25519];

/// Both configurations offer TLS 1.3 only, so a TLS 1.2 signature is
/// never asked to be checked.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

fn verify_signature(
    message: &[u8],
    presented: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(presented.as_ref()),
        dss,
        &algorithms(),
    )
}

/// The node's check of the server: the presented key is the pinned one.
#[derive(Debug)]
struct PinnedServer {
    key: Vec<u8>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        presented: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if presented.as_ref() == self.key.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _presented: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        presented: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, presented, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.to_vec()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The server's check of a node: any well-formed ed25519 key it proves
/// (who may do what is the server's business after the handshake).
#[derive(Debug)]
struct AnyNodeKey;

impl ClientCertVerifier for AnyNodeKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        presented: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match key_of(presented.as_ref()) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _presented: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        presented: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, presented, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.to_vec()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn key(b: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[b; 32])
    }

    /// A server on loopback holding `server_key`; answers each connection
    /// with the node key it proved, then echoes one line.
    async fn serve(server_key: ed25519_dalek::SigningKey) -> SocketAddr {
        serve_with(server_config(&server_key)).await
    }

    /// The same, with `config`.
    async fn serve_with(config: Arc<rustls::ServerConfig>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let id = remote_id(tls.get_ref().1).expect("a node key");
                    let _ = tls.write_all(id.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        addr
    }

    /// All the listener sent on `link` until it closed, or where the
    /// handshake or the read failed.
    async fn all_sent(link: io::Result<ClientStream>) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        link?.read_to_end(&mut got).await.map(|_| got)
    }

    #[tokio::test]
    async fn the_server_learns_the_node_key_and_the_node_gets_the_pinned_server() {
        let addr = serve(key(1)).await;
        let server = crate::endpoint_id(&key(1).verifying_key());
        let mut link = connect(addr, None, &key(2), server, Duration::from_secs(5))
            .await
            .expect("the pinned server");
        let mut got = Vec::new();
        link.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, key(2).verifying_key().as_bytes());
        assert_eq!(
            remote_id(link.get_ref().1),
            Some(server),
            "the node reads back the server's key"
        );
    }

    #[tokio::test]
    async fn a_server_with_another_key_is_refused_and_said_so() {
        let addr = serve(key(3)).await;
        let pinned = crate::endpoint_id(&key(1).verifying_key());
        let err = connect(addr, None, &key(2), pinned, Duration::from_secs(5))
            .await
            .expect_err("another key");
        assert!(is_wrong_key(&err), "{err}");
    }

    #[tokio::test]
    async fn a_client_that_proves_no_key_gets_no_link() {
        let addr = serve(key(1)).await;
        let server = crate::endpoint_id(&key(1).verifying_key());
        let mut anonymous = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServer { key: spki(&server) }))
            .with_no_client_auth();
        anonymous.alpn_protocols = vec![crate::ALPN_TRACKER.to_vec()];
        let tcp = TcpStream::connect(addr).await.expect("tcp");
        let name = ServerName::IpAddress(addr.ip().into());
        // TLS 1.3 finishes the client's side before the server has checked
        // it: the refusal shows as the server's alert on the first read.
        let outcome = all_sent(
            TlsConnector::from(Arc::new(anonymous))
                .connect(name, tcp)
                .await,
        )
        .await;
        assert!(
            outcome.is_err(),
            "the server answered a client without a key: {outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_peer_link_over_tcp_is_keyed_both_ways_and_no_tracker_link_gets_in() {
        let addr = serve_with(peer_server_config(&key(4))).await;
        let host = crate::endpoint_id(&key(4).verifying_key());
        let got = all_sent(connect_peer(addr, None, &key(5), host, Duration::from_secs(5)).await)
            .await
            .expect("the host, and what it says");
        assert_eq!(got, key(5).verifying_key().as_bytes());
        let err = connect_peer(
            addr,
            None,
            &key(5),
            crate::endpoint_id(&key(6).verifying_key()),
            Duration::from_secs(5),
        )
        .await
        .expect_err("another host's key");
        assert!(is_wrong_key(&err), "{err}");
        // A tracker client (another ALPN) is refused in the handshake.
        let outcome =
            all_sent(connect(addr, None, &key(5), host, Duration::from_secs(5)).await).await;
        assert!(
            outcome.is_err(),
            "a tracker client got a peer link: {outcome:?}"
        );
    }

    #[test]
    fn only_a_tls_handshake_record_starts_a_tracker_link() {
        assert!(is_tls_start(0x16));
        for http in b"GET POST HEAD" {
            assert!(!is_tls_start(*http));
        }
    }
}
