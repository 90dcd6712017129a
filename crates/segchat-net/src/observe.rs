//! Where a node's QUIC packets come from, as the server sees them.
//!
//! Behind a NAT, a node's endpoint is reached at the router's mapping of
//! its UDP socket, which only a party outside can see. The tracker link
//! runs on TCP (a TCP mapping tells nothing about the UDP one), so a node
//! asks once per tracker link: it opens a QUIC connection to the server
//! with the protocol [`ALPN_OBSERVE`], the server writes the address the
//! connection's packets come from on a unidirectional stream (as text,
//! `IP:PORT`) and closes it. The node offers that address to peers for
//! hole punching. Nothing else is said on it, and the server holds it for
//! [`ANSWER_TIMEOUT`] at most.

use std::net::SocketAddr;
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::Endpoint;

use crate::PeerAddress;

/// The protocol of the question.
pub const ALPN_OBSERVE: &[u8] = b"segchat/observe/1";
/// How long the server waits for the node to take its answer and close.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest answer: an IPv6 address with a port.
const MAX_ANSWER: usize = 64;

/// The server's side: tells the connection's direct source address, or
/// nothing when its packets come through the relay. Returns what it told.
pub async fn answer(conn: Connection) -> Option<SocketAddr> {
    let told = crate::path::remote_addr(&conn);
    let said = async {
        if let Some(addr) = told {
            let mut send = conn.open_uni().await.ok()?;
            send.write_all(addr.to_string().as_bytes()).await.ok()?;
            send.finish().ok()?;
        }
        // The node closes once it read the answer.
        conn.closed().await;
        Some(())
    };
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, said).await;
    conn.close(0u32.into(), b"told");
    told
}

/// The node's side: asks the server at `server` (direct UDP only) where
/// it sees `endpoint`'s packets come from. `None` if it cannot tell in
/// `timeout` (UDP blocked, the server through the relay only).
pub async fn ask(
    endpoint: &Endpoint,
    server: &PeerAddress,
    timeout: Duration,
) -> Option<SocketAddr> {
    let asked = async {
        let conn = endpoint
            .connect(server.to_endpoint_addr(), ALPN_OBSERVE)
            .await
            .ok()?;
        let mut recv = conn.accept_uni().await.ok()?;
        let text = recv.read_to_end(MAX_ANSWER).await.ok();
        conn.close(0u32.into(), b"thanks");
        String::from_utf8(text?).ok()?.parse().ok()
    };
    tokio::time::timeout(timeout, asked).await.ok().flatten()
}
