//! The link actor: the reconnect loop outside, one connection's request
//! multiplexing inside.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use segchat_log::SystemLog;
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::{Presence, SessionInfo};
use segchat_proto::{Failure, Frame, Status};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::conn::{connect, ConnectError, Connected, TrackerFrame};
use super::instances::Instances;
use super::{LinkConfig, LinkMsg, LinkState, UNREACHABLE};
use crate::events::{EventBus, NodeEvent, NodeNotice};
use crate::store::{Store, StoredSession};

/// What to do with an answer besides handing it to whoever asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Nothing,
    /// register / login / visit: keep the new session, announce the node.
    SignedIn,
    /// Our own `resume` after connecting.
    Resumed,
    LoggedOut,
    StatusSet,
    Listed,
}

impl Then {
    fn of(body: &Request) -> Then {
        match body {
            Request::Register { .. } | Request::Login { .. } | Request::Visit { .. } => {
                Then::SignedIn
            }
            Request::Resume { .. } => Then::Resumed,
            Request::Logout => Then::LoggedOut,
            Request::SetStatus { .. } => Then::StatusSet,
            Request::SubmitInfo { .. } => Then::Listed,
            _ => Then::Nothing,
        }
    }
}

struct Pending {
    op: &'static str,
    then: Then,
    reply: Option<oneshot::Sender<Result<Reply, Failure>>>,
}

/// One live connection's bookkeeping.
struct Live {
    conn: Connected,
    pending: HashMap<u32, Pending>,
    next_id: u32,
    /// Resumed (or had nothing to resume): callers' requests may flow.
    ready: bool,
    last_heard: Instant,
}

impl Live {
    async fn send(
        &mut self,
        body: Request,
        reply: Option<oneshot::Sender<Result<Reply, Failure>>>,
    ) -> Result<(), String> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let then = Then::of(&body);
        let op = body.op_name();
        self.pending.insert(id, Pending { op, then, reply });
        let frame: TrackerFrame = Frame::Request { id, body };
        self.conn
            .framed
            .send(frame)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }
}

/// How long a signed-out connection must have lasted for its close to
/// count as the server's routine sign-in timeout.
const ROUTINE_AFTER: Duration = Duration::from_secs(1);

/// How a connection to the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// The server closed a signed-out connection after its sign-in
    /// timeout: routine, reconnect at once.
    SignInTimeout,
    Other,
}

pub(super) struct Actor {
    config: LinkConfig,
    store: Store,
    log: SystemLog,
    state: watch::Sender<LinkState>,
    events: EventBus,
    inbox: mpsc::Receiver<LinkMsg>,
    shutdown: CancellationToken,
    /// Set while a routine close has not been told to anyone: the server
    /// closes a signed-out connection after its sign-in timeout, and the
    /// node reconnects at once. Only if that reconnect fails is the
    /// disconnection announced (with this reason), so a sign-in page left
    /// open does not flicker "server unreachable" every half minute.
    unannounced: Option<(std::net::SocketAddr, String)>,
}

impl Actor {
    pub(super) fn new(
        config: LinkConfig,
        store: Store,
        log: SystemLog,
        state: watch::Sender<LinkState>,
        events: EventBus,
        inbox: mpsc::Receiver<LinkMsg>,
        shutdown: CancellationToken,
    ) -> Actor {
        Actor {
            config,
            store,
            log,
            state,
            events,
            inbox,
            shutdown,
            unannounced: None,
        }
    }

    pub(super) async fn run(mut self) {
        let span = tracing::info_span!(
            "server_link",
            server = %self.config.server_addr,
            user = tracing::field::Empty
        );
        async move {
            // Show who we will sign in as before the first connection.
            if let Ok(Some(s)) = self.store.session().await {
                tracing::Span::current().record("user", s.username.as_str());
                self.state
                    .send_modify(|st| st.session = Some(public_session(&s)));
            }
            let mut backoff = self.config.reconnect_min;
            // Several instances: a failed attempt moves on to the next
            // one at once; the backoff starts after every one failed.
            let mut instances = Instances::new(&self.config.server_addr);
            loop {
                let (addr, place, of) = instances.current().await;
                let attempt = tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    a = connect(
                        &self.config.endpoint,
                        &addr,
                        &self.config.pin,
                        self.config.connect_timeout,
                    ) => a,
                };
                let connected = attempt.is_ok();
                match attempt {
                    Ok((conn, pinned_now)) => {
                        if pinned_now {
                            self.log.record(
                                "SERVER_KEY_PINNED",
                                conn.remote,
                                format!("key={} (first contact)", conn.welcome.server_key),
                            );
                        }
                        backoff = self.config.reconnect_min;
                        if of > 1 {
                            self.log.record(
                                "SERVER_INSTANCE",
                                conn.remote,
                                format!("addr={addr} ({place} of {of})"),
                            );
                        }
                        if self.serve(conn).await == Closed::SignInTimeout {
                            continue;
                        }
                    }
                    Err(ConnectError::Key(e)) => {
                        // Not a network hiccup: say it every time, loudly.
                        tracing::error!(error = %e, "refusing the server");
                        self.log
                            .record("SERVER_REFUSED", &self.config.server_addr, e.to_string());
                        self.state
                            .send_modify(|st| st.refusal = Some(e.to_string()));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "could not reach the server");
                        if let Some((remote, reason)) = self.unannounced.take() {
                            self.announce_disconnected(remote, &reason);
                        }
                    }
                }
                if self.shutdown.is_cancelled() {
                    break;
                }
                if !connected && instances.failed() {
                    continue;
                }
                let wait = jittered(backoff);
                backoff = (backoff * 2).min(self.config.reconnect_max);
                if !self.wait_refusing(wait).await {
                    break;
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Waits `wait`, answering every request with `UNAVAILABLE`. False if
    /// the node is shutting down.
    async fn wait_refusing(&mut self, wait: Duration) -> bool {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = &mut sleep => return true,
                msg = self.inbox.recv() => match msg {
                    Some(LinkMsg::Request { reply, .. }) => {
                        let _ = reply.send(Err(Failure::unavailable(UNREACHABLE)));
                    }
                    None => return false,
                },
            }
        }
    }

    /// Serves one connection until it drops or the node shuts down.
    async fn serve(&mut self, mut conn: Connected) -> Closed {
        let opened = Instant::now();
        let remote = conn.remote;
        let advertised = self.config.peers.advertised(conn.local.ip());
        let heartbeat = Duration::from_millis(conn.welcome.heartbeat_ms.max(50));
        let silent_limit = Duration::from_millis(conn.welcome.peer_ttl_ms).max(heartbeat * 3);
        self.log.record(
            "CONNECTION_ESTABLISHED",
            remote,
            format!("link=tracker local={} tcp={}", conn.local, conn.tcp_local),
        );
        tracing::info!(%remote, "connected to the server");
        if let Some(udp) = conn.udp.take() {
            let state = self.state.clone();
            tokio::spawn(async move {
                let works = udp.get().await;
                state.send_if_modified(|st| st.udp.replace(works) != Some(works));
            });
        }
        let mut live = Live {
            conn,
            pending: HashMap::new(),
            next_id: 1,
            ready: false,
            last_heard: Instant::now(),
        };
        let (server_key, max_body_len) = (
            live.conn.welcome.server_key.clone(),
            live.conn.welcome.max_body_len,
        );
        let server_node = segchat_proto::types::NodeAddr {
            node_id: segchat_net::id_hex(&live.conn.server),
            addr: remote,
        };
        self.state.send_modify(|st| {
            st.refusal = None;
            st.server_node = Some(server_node);
            st.advertised = Some(advertised);
            st.server_key = Some(server_key).filter(|k| !k.is_empty());
            st.max_body_len = Some(max_body_len).filter(|n| *n > 0);
        });

        let reason = match self.store.session().await {
            Ok(Some(stored)) => live
                .send(
                    Request::Resume {
                        token: stored.token,
                    },
                    None,
                )
                .await
                .err(),
            Ok(None) => {
                self.become_ready(&mut live);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "could not read the stored session");
                self.become_ready(&mut live);
                None
            }
        };
        let (reason, closed) = match reason {
            Some(r) => (r, Closed::Other),
            None => self.pump(&mut live, heartbeat, silent_limit).await,
        };

        for (_, p) in live.pending.drain() {
            if let Some(reply) = p.reply {
                let _ = reply.send(Err(Failure::unavailable(UNREACHABLE)));
            }
        }
        let was_ready = live.ready;
        self.state.send_modify(|st| {
            st.connected = false;
            st.listed = None;
        });
        self.log.record(
            "CONNECTION_CLOSED",
            remote,
            format!("link=tracker {reason}"),
        );
        // A close within moments of connecting is not the sign-in
        // timeout, whatever it says: never reconnect in a tight loop.
        let closed = match closed {
            Closed::SignInTimeout if opened.elapsed() < ROUTINE_AFTER => Closed::Other,
            c => c,
        };
        if was_ready && closed == Closed::SignInTimeout {
            tracing::debug!(%remote, %reason, "signed-out connection timed out; reconnecting");
            self.unannounced = Some((remote, reason));
            return closed;
        }
        if was_ready {
            self.announce_disconnected(remote, &reason);
        }
        tracing::info!(%remote, %reason, "disconnected from the server");
        closed
    }

    fn announce_disconnected(&mut self, remote: std::net::SocketAddr, reason: &str) {
        self.log.record("SERVER_DISCONNECTED", remote, reason);
        self.events
            .publish(NodeEvent::Node(NodeNotice::ServerDisconnected));
    }

    /// The connection's main loop; returns why it ended.
    async fn pump(
        &mut self,
        live: &mut Live,
        heartbeat: Duration,
        silent_limit: Duration,
    ) -> (String, Closed) {
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return ("node shutting down".into(), Closed::Other),
                msg = self.inbox.recv(), if live.ready => match msg {
                    Some(LinkMsg::Request { body, reply }) => {
                        if let Err(e) = live.send(body, Some(reply)).await {
                            return (e, Closed::Other);
                        }
                    }
                    None => return ("node shutting down".into(), Closed::Other),
                },
                frame = live.conn.framed.next() => {
                    live.last_heard = Instant::now();
                    match frame {
                        None => return ("closed by the server".into(), Closed::Other),
                        Some(Err(e)) => return (format!("read error: {e}"), Closed::Other),
                        Some(Ok(Frame::Response { id, result })) => {
                            if let Some(p) = live.pending.remove(&id) {
                                if let Err(e) = self.complete(live, p, result).await {
                                    return (e, Closed::Other);
                                }
                            } else {
                                tracing::debug!(id, "answer to no pending request");
                            }
                        }
                        Some(Ok(Frame::Event(ev))) => self.on_event(live, ev).await,
                        Some(Ok(Frame::Error(f))) => {
                            let signed_out = self.state.borrow().session.is_none();
                            let closed = if signed_out && f.status == Status::Unauthorized {
                                Closed::SignInTimeout
                            } else {
                                Closed::Other
                            };
                            return (format!("the server closed the link: {f}"), closed);
                        }
                        Some(Ok(other)) => return (format!("unexpected {:?} frame from the server", other.kind()), Closed::Other),
                    }
                }
                _ = ticker.tick() => {
                    if live.last_heard.elapsed() > silent_limit {
                        return (format!("no word from the server for {} ms", silent_limit.as_millis()), Closed::Other);
                    }
                    if live.ready {
                        if let Err(e) = live.send(Request::Heartbeat, None).await {
                            return (e, Closed::Other);
                        }
                    }
                }
            }
        }
    }

    fn become_ready(&mut self, live: &mut Live) {
        live.ready = true;
        self.state.send_modify(|st| {
            st.connected = true;
            st.connection += 1;
        });
        if self.unannounced.take().is_some() {
            // Back after a routine close that nobody was told of.
            return;
        }
        self.log.record(
            "SERVER_CONNECTED",
            live.conn.remote,
            format!("heartbeat_ms={}", live.conn.welcome.heartbeat_ms),
        );
        self.events
            .publish(NodeEvent::Node(NodeNotice::ServerConnected));
    }

    /// Applies an answer's side effects and hands it to the asker.
    async fn complete(
        &mut self,
        live: &mut Live,
        p: Pending,
        result: Result<Reply, Failure>,
    ) -> Result<(), String> {
        let result = match (p.then, result) {
            (Then::SignedIn, Ok(Reply::Session(info))) => {
                self.keep_session(&info).await;
                self.announce(live).await?;
                Ok(Reply::Session(SessionInfo {
                    token: String::new(),
                    ..info
                }))
            }
            (Then::Resumed, Ok(Reply::Session(info))) => {
                self.keep_session(&info).await;
                self.log.record(
                    "SESSION_RESUMED",
                    live.conn.remote,
                    format!("user={} session={}", info.username, info.session_id),
                );
                self.become_ready(live);
                self.announce(live).await?;
                return Ok(());
            }
            (Then::Resumed, Err(f)) if f.status == Status::Unauthorized => {
                tracing::info!(reason = %f.reason, "stored session refused; forgetting it");
                self.log.record(
                    "SESSION_EXPIRED",
                    live.conn.remote,
                    format!("the server refused the stored session: {}", f.reason),
                );
                self.forget_session().await;
                self.become_ready(live);
                return Ok(());
            }
            (Then::Resumed, other) => {
                return Err(format!("could not resume the session: {other:?}"));
            }
            (Then::LoggedOut, Ok(_)) => {
                self.forget_session().await;
                Ok(Reply::Done)
            }
            (Then::LoggedOut, Err(f)) if f.status == Status::Unauthorized => {
                // Already over on the server's side: end it here too.
                self.forget_session().await;
                Ok(Reply::Done)
            }
            (Then::StatusSet, Ok(Reply::Session(info))) => {
                self.state.send_modify(|st| {
                    if let Some(s) = &mut st.session {
                        s.status = info.status;
                    }
                });
                if let Err(e) = self.store.set_session_status(info.status).await {
                    tracing::warn!(error = %e, "could not store the new status");
                }
                Ok(Reply::Session(SessionInfo {
                    token: String::new(),
                    ..info
                }))
            }
            (Then::Listed, Ok(Reply::Listed(info))) => {
                tracing::debug!(p2p = %info.p2p_addr, "listed by the server");
                self.state.send_modify(|st| st.listed = Some(info.clone()));
                Ok(Reply::Listed(info))
            }
            (_, Err(f)) => {
                if p.reply.is_none() {
                    tracing::warn!(op = p.op, failure = %f, "the server refused a request of the node");
                }
                Err(f)
            }
            (_, ok) => ok,
        };
        if let Some(reply) = p.reply {
            let _ = reply.send(result);
        }
        Ok(())
    }

    /// `submit_info`: puts this node on the server's live peer list.
    async fn announce(&mut self, live: &mut Live) -> Result<(), String> {
        let advertised = self.config.peers.advertised(live.conn.local.ip());
        live.send(
            Request::SubmitInfo {
                p2p_addr: advertised,
                status: None,
            },
            None,
        )
        .await
    }

    async fn keep_session(&mut self, info: &SessionInfo) {
        tracing::Span::current().record("user", info.username.as_str());
        if let Err(e) = self.store.save_session(StoredSession::from(info)).await {
            tracing::error!(error = %e, "could not store the session; it will not survive a restart");
        }
        let public = SessionInfo {
            token: String::new(),
            ..info.clone()
        };
        self.state.send_modify(|st| st.session = Some(public));
    }

    async fn forget_session(&mut self) {
        if let Err(e) = self.store.forget_session().await {
            tracing::error!(error = %e, "could not forget the stored session");
        }
        self.state.send_modify(|st| {
            st.session = None;
            st.listed = None;
        });
    }

    async fn on_event(&mut self, live: &mut Live, ev: Event) {
        match &ev {
            Event::Presence { username, status } => {
                self.log.record(
                    "PRESENCE_CHANGED",
                    live.conn.remote,
                    format!("user={username} status={}", status.as_str()),
                );
                let own = self
                    .state
                    .borrow()
                    .session
                    .as_ref()
                    .is_some_and(|s| &s.username == username);
                if own {
                    let status: Presence = *status;
                    self.state.send_modify(|st| {
                        if let Some(s) = &mut st.session {
                            s.status = status;
                        }
                    });
                    if status != Presence::Offline {
                        if let Err(e) = self.store.set_session_status(status).await {
                            tracing::warn!(error = %e, "could not store the new status");
                        }
                    }
                }
            }
            Event::SessionEnded { reason } => {
                self.log.record(
                    "LOGOUT",
                    live.conn.remote,
                    format!("session ended by the server: {reason}"),
                );
                self.forget_session().await;
            }
            other => tracing::debug!(event = ?other, "server event"),
        }
        // Nobody listening is fine.
        self.events.publish(NodeEvent::Tracker(ev));
    }
}

/// The session as shown to the node's clients: no token.
fn public_session(s: &StoredSession) -> SessionInfo {
    SessionInfo {
        username: s.username.clone(),
        display_name: s.display_name.clone(),
        kind: s.kind,
        session_id: s.session_id.clone(),
        token: String::new(),
        status: s.status,
    }
}

/// Somewhere between half and all of `d`, so that many nodes do not
/// reconnect in lockstep after a server restart.
fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    let extra = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_all() {
        for _ in 0..100 {
            let j = jittered(Duration::from_millis(400));
            assert!(j >= Duration::from_millis(200) && j <= Duration::from_millis(400));
        }
    }
}
