//! Binding an iroh endpoint that talks to segchat's own parties only.
//!
//! iroh's defaults reach for n0's public relays and DNS; segchat has its
//! own relay (in `segchat server`) and learns addresses from the server,
//! so every such default is off here: the `Minimal` preset (crypto only,
//! no address lookup), one custom relay or none, no port mapping (it is
//! not compiled in), no captive-portal probe, no public DNS fallback.

use std::net::SocketAddr;
use std::time::Duration;

use iroh::dns::DnsResolver;
use iroh::endpoint::{presets, QuicTransportConfig};
use iroh::{Endpoint, NetReportConfig, RelayMap, RelayMode, RelayUrl};

/// A QUIC connection with nothing heard from the other side for this long
/// is closed. Each side sends a keep-alive every [`KEEP_ALIVE`], and the
/// segchat links ping at their own pace on top, so a quiet link never
/// gets near it; a vanished one is noticed by the link's own liveness
/// first (6 s on the peer link).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often QUIC sends a keep-alive on a quiet connection; also keeps
/// NAT mappings and hole-punched paths open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// What an endpoint is bound with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The identity: the server's key or the node key.
    pub key: ed25519_dalek::SigningKey,
    /// The UDP address to bind (port 0 for any).
    pub bind: SocketAddr,
    /// How this endpoint uses a relay.
    pub relay: Relay,
    /// Whether it hands the kernel batches of packets at once (GSO).
    /// Worth it where bulk flows (a node: history, files, streams), but
    /// each connection then keeps a transmit buffer sized for a batch
    /// (~15 KB) for its whole life; the server, whose links carry small
    /// frames to many idle nodes, sends one packet at a time.
    pub batched_sends: bool,
}

/// How an endpoint uses a relay.
#[derive(Debug, Clone)]
pub enum Relay {
    /// Never (bench and test clients that must go direct).
    None,
    /// Keeps a connection to this relay (its "home relay"), so that
    /// peers behind NAT can reach it.
    Now(RelayUrl),
    /// Not yet: the relay serves signed-in nodes only, so a node turns it
    /// on with [`use_relay`] once signed in (and off with [`drop_relay`]).
    Later,
    /// Through this relay and nothing else: no UDP socket is bound (the
    /// `bind` address is not used). What a client on a network that
    /// blocks UDP is reduced to; the bench uses it to measure the relay.
    Only(RelayUrl),
}

/// Starts using `url` as the endpoint's relay.
pub async fn use_relay(endpoint: &Endpoint, url: RelayUrl) {
    let config = iroh::RelayConfig::new(url.clone(), None);
    endpoint
        .insert_relay(url, std::sync::Arc::new(config))
        .await;
}

/// How often [`use_relay_within`] asks again while no home relay is up.
const RELAY_NUDGE: Duration = Duration::from_secs(3);

/// Starts using `url` and waits up to `timeout` for a home relay
/// connection; whether one came up. iroh picks its home relay from a
/// network report, and after one that found no relay (a probe lost on a
/// busy machine) the next comes only 20–26 s later: while waiting, the
/// relay is given again every few seconds, each time starting a report.
pub async fn use_relay_within(endpoint: &Endpoint, url: RelayUrl, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        use_relay(endpoint, url.clone()).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        if tokio::time::timeout(left.min(RELAY_NUDGE), endpoint.online())
            .await
            .is_ok()
        {
            return true;
        }
    }
}

/// Stops using `url`.
pub async fn drop_relay(endpoint: &Endpoint, url: &RelayUrl) {
    endpoint.remove_relay(url).await;
}

/// Why an endpoint could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("could not bind the QUIC endpoint on {addr}: {reason}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub reason: String,
}

/// Binds an endpoint on `options.bind` (IPv4 or IPv6, as given).
pub async fn bind(options: Options) -> Result<Endpoint, BindError> {
    let addr = options.bind;
    let err = |reason: String| BindError { addr, reason };
    let mut report = NetReportConfig::default();
    // The probe asks port 80 of the relay's host for a fixed page; segchat
    // serves no such page and the check would be a stray connection.
    report.captive_portal_check = false;
    let dns = DnsResolver::builder()
        .with_system_defaults()
        .disable_fallback()
        .build();
    let transport = QuicTransportConfig::builder()
        .max_idle_timeout(Some(
            IDLE_TIMEOUT
                .try_into()
                .map_err(|_| err("idle timeout out of range".into()))?,
        ))
        .keep_alive_interval(KEEP_ALIVE)
        .enable_segmentation_offload(options.batched_sends)
        .build();
    let ip = !matches!(options.relay, Relay::Only(_));
    let relay_mode = match options.relay {
        // No QUIC address discovery port: the server tells each node the
        // address it sees its packets come from (`crate::observe`).
        Relay::Now(url) | Relay::Only(url) => {
            RelayMode::Custom(RelayMap::from(iroh::RelayConfig::new(url, None)))
        }
        Relay::Later => RelayMode::Custom(RelayMap::empty()),
        Relay::None => RelayMode::Disabled,
    };
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(crate::secret_key(&options.key))
        .clear_ip_transports();
    if ip {
        builder = builder.bind_addr(addr).map_err(|e| err(e.to_string()))?;
    }
    builder
        .relay_mode(relay_mode)
        .net_report_config(report)
        .dns_resolver(dns)
        .transport_config(transport)
        .bind()
        .await
        .map_err(|e| err(e.to_string()))
}

/// The UDP address an endpoint is bound at (the first one).
pub fn local_addr(endpoint: &Endpoint) -> Option<SocketAddr> {
    endpoint.bound_sockets().into_iter().next()
}
