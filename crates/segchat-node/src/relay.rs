//! The server's relay, on demand. A peer behind a NAT that UDP hole
//! punching cannot get through reaches this node only through the relay in
//! its server, which forwards to nodes that hold a connection to it. Held
//! all the time by every node, that connection costs the server as much
//! memory again as the node's tracker link; so a node holds one only
//! while it is needed:
//!
//! - **Always, where UDP does not get through** (the server could not
//!   tell where this node's UDP packets come from, `LinkState::udp`):
//!   the relay is then its only way in and out ([`keep_while_udp_blocked`]).
//! - **While someone dials it.** A dial the direct path has not answered
//!   soon asks the server to bring the dialled node onto the relay
//!   (`reach`, [`forward_reach`]); the server tells that node
//!   (`relay_wanted`), and it sends the dialler a packet through the relay
//!   ([`answer_relay_wanted`], `Transport::wake_relay`). That opens its
//!   relay connection, which lives on while it carries traffic and closes
//!   after 60 s without any (iroh closes relay connections other than
//!   the home relay so). A server that fetches a file from the node
//!   tells it the same way.
//!
//! An invisible user's node wakes for nobody: a packet from it would say
//! it is there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use segchat_log::SystemLog;
use segchat_proto::tracker::{Event, Request};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::NodeEvent;
use crate::link::LinkHandle;
use crate::transport::Transport;

/// Asks for one node within this long of the last are dropped (a member
/// following several channels on one host dials it once per channel).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(2);
/// A dialler woken for within this long is not woken for again.
const WAKE_AGAIN_AFTER: Duration = Duration::from_secs(5);
/// Wake-ups under way at once; more are dropped (the server limits how
/// often any one node may ask, this how much all of them together cost).
const MAX_WAKING: usize = 8;
/// Dials waiting for their `reach` to be sent.
pub(crate) const REACH_QUEUE: usize = 64;

/// Keeps the server's relay as this node's home relay while it is signed
/// in (the relay refuses everybody else) and its UDP does not get
/// through; out of use otherwise.
pub(crate) async fn keep_while_udp_blocked(
    transport: Transport,
    link: LinkHandle,
    shutdown: CancellationToken,
) {
    let Some(url) = transport.relay().cloned() else {
        return;
    };
    let mut state = link.watch();
    let mut using = false;
    loop {
        // On once the server took the session and UDP was found blocked;
        // off when the session ends or a connection finds UDP working
        // (not while the server link blips: relayed peer links live on
        // through it).
        let wanted = {
            let st = state.borrow_and_update();
            st.session.is_some() && (using || st.connected) && st.udp == Some(false)
        };
        if wanted != using {
            using = wanted;
            if using {
                segchat_net::endpoint::use_relay(transport.endpoint(), url.clone()).await;
            } else {
                segchat_net::endpoint::drop_relay(transport.endpoint(), &url).await;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}

/// Sends the server a `reach` for each node a dial asks for (see
/// `Transport::connect`), once per node within [`ASK_AGAIN_AFTER`].
pub(crate) async fn forward_reach(
    mut asks: mpsc::Receiver<String>,
    link: LinkHandle,
    shutdown: CancellationToken,
) {
    let mut asked: HashMap<String, Instant> = HashMap::new();
    loop {
        let node_id = tokio::select! {
            _ = shutdown.cancelled() => return,
            ask = asks.recv() => match ask {
                Some(id) => id,
                None => return,
            },
        };
        let now = Instant::now();
        asked.retain(|_, at| now.duration_since(*at) < ASK_AGAIN_AFTER);
        if asked.contains_key(&node_id) {
            continue;
        }
        asked.insert(node_id.clone(), now);
        if let Err(f) = link.request(Request::Reach { node_id }).await {
            tracing::debug!(reason = %f, "reach not sent");
        }
    }
}

/// Answers `relay_wanted`: wakes this node's relay connection towards the
/// dialler (unless the user is invisible), once per dialler within
/// [`WAKE_AGAIN_AFTER`], at most [`MAX_WAKING`] at once.
pub(crate) async fn answer_relay_wanted(
    mut events: broadcast::Receiver<NodeEvent>,
    transport: Transport,
    link: LinkHandle,
    log: SystemLog,
    server_addr: String,
    shutdown: CancellationToken,
) {
    let waking = Arc::new(Semaphore::new(MAX_WAKING));
    let mut woken: HashMap<String, Instant> = HashMap::new();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = events.recv() => ev,
        };
        let dialler = match ev {
            Ok(NodeEvent::Tracker(Event::RelayWanted { node_id })) => node_id,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let short: String = dialler.chars().take(12).collect();
        if link.state().is_invisible() {
            log.record(
                "RELAY_WANTED",
                &server_addr,
                format!("by={short} invisible: not woken"),
            );
            continue;
        }
        let now = Instant::now();
        woken.retain(|_, at| now.duration_since(*at) < WAKE_AGAIN_AFTER);
        if woken.contains_key(&dialler) {
            continue;
        }
        let Ok(permit) = waking.clone().try_acquire_owned() else {
            log.record(
                "RELAY_WANTED",
                &server_addr,
                format!("by={short} busy: not woken"),
            );
            continue;
        };
        woken.insert(dialler.clone(), now);
        log.record("RELAY_WANTED", &server_addr, format!("by={short}"));
        let transport = transport.clone();
        tokio::spawn(async move {
            if let Err(e) = transport.wake_relay(&dialler).await {
                tracing::debug!(error = %e, "could not wake the relay");
            }
            drop(permit);
        });
    }
}
