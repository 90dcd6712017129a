//! `/node`, `/session…` and `/status`: who this node is and who it is
//! signed in as.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::{AccountKind, Presence, SessionInfo};
use segchat_proto::{Failure, Status};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Body};

/// A session as the API shows it: never the token.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub username: String,
    pub display_name: String,
    pub kind: AccountKind,
    pub session_id: String,
    pub status: Presence,
}

impl From<&SessionInfo> for SessionView {
    fn from(s: &SessionInfo) -> Self {
        SessionView {
            username: s.username.clone(),
            display_name: s.display_name.clone(),
            kind: s.kind,
            session_id: s.session_id.clone(),
            status: s.status,
        }
    }
}

/// `GET /node`.
#[derive(Debug, Serialize)]
pub struct NodeView {
    pub agent: &'static str,
    pub server_addr: String,
    pub server_connected: bool,
    pub api_addr: String,
    /// The UDP address of the node's QUIC endpoint.
    pub p2p_addr: String,
    /// The node's key (hex): its identity on every P2P connection.
    pub node_id: String,
    /// The server's key this node pinned (hex), once connected.
    pub server_key: Option<String>,
    /// Why the node refuses the server (its key changed), if it does.
    pub server_refused: Option<String>,
    /// The P2P address announced to the server (known once connected).
    pub advertised_addr: Option<String>,
    /// On the server's live peer list right now.
    pub listed: bool,
    pub session: Option<SessionView>,
    /// The largest message body (UTF-8 bytes) the server accepts.
    pub max_body_len: u32,
    /// What to give people so they can join (the web UI's invite panel).
    pub invite: Invite,
}

/// What people need to join this node's server: where to dial it and its
/// key. Built from where the server listens when it runs beside the node
/// (`segchat up`), else from the address this node dials.
#[derive(Debug, Serialize)]
pub struct Invite {
    /// `host:port` others can dial, best first (may be empty: see `reach`).
    pub server_addrs: Vec<String>,
    /// The server's key (hex), once this node pinned it.
    pub server_key: Option<String>,
    /// `this_machine`: the server listens on loopback only, nobody else
    /// can reach it; `network`: it listens on this machine's interfaces
    /// (`server_addrs` are their addresses); `remote`: the server is
    /// elsewhere, `server_addrs` is how this node reaches it.
    pub reach: &'static str,
}

fn invite(a: &super::NodeAddrs, server_key: Option<String>) -> Invite {
    let Some(listen) = a.server_listen else {
        return Invite {
            server_addrs: crate::config::server_addrs(&a.server_addr)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            server_key,
            reach: "remote",
        };
    };
    if listen.ip().is_loopback() {
        return Invite {
            server_addrs: Vec::new(),
            server_key,
            reach: "this_machine",
        };
    }
    let server_addrs = if listen.ip().is_unspecified() {
        // The interfaces' addresses the QUIC endpoint found, on the
        // server's port; IPv4 first (what people type), no loopback.
        let mut ips: Vec<std::net::IpAddr> = a
            .endpoint
            .addr()
            .ip_addrs()
            .map(|s| s.ip())
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .filter(|ip| ip.is_ipv4() || listen.is_ipv6())
            .collect();
        ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
        ips.dedup();
        ips.into_iter()
            .map(|ip| std::net::SocketAddr::new(ip, listen.port()).to_string())
            .collect()
    } else {
        vec![listen.to_string()]
    };
    Invite {
        server_addrs,
        server_key,
        reach: "network",
    }
}

pub(super) async fn node(State(st): State<ApiState>) -> Json<NodeView> {
    let link = st.link().state();
    let a = &st.inner.addrs;
    Json(NodeView {
        agent: crate::config::AGENT,
        server_addr: a.server_addr.clone(),
        server_connected: link.connected,
        api_addr: a.api.to_string(),
        p2p_addr: a.p2p.to_string(),
        node_id: a.node_id.clone(),
        server_key: link.server_key.clone(),
        server_refused: link.refusal.clone(),
        advertised_addr: link.advertised.map(|x| x.to_string()),
        listed: link.listed.is_some(),
        session: link.session.as_ref().map(SessionView::from),
        max_body_len: u32::try_from(link.max_body_len()).unwrap_or(u32::MAX),
        invite: invite(a, link.server_key.clone()),
    })
}

fn not_signed_in() -> ApiError {
    ApiError(Failure::unauthorized(
        "not signed in; register, login or visit first",
    ))
}

/// `GET /session`: whoami, from the node's own state (it is kept in step
/// with the server, and still answers while the server is down).
pub(super) async fn whoami(State(st): State<ApiState>) -> Result<Json<SessionView>, ApiError> {
    let link = st.link().state();
    let session = link.session.as_ref().ok_or_else(not_signed_in)?;
    Ok(Json(SessionView::from(session)))
}

#[derive(Debug, Deserialize)]
pub(super) struct Credentials {
    username: String,
    password: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct VisitBody {
    display_name: String,
}

fn session_of(op: &str, reply: Reply) -> Result<SessionInfo, ApiError> {
    match reply {
        Reply::Session(info) => Ok(info),
        other => Err(ApiError::unexpected(op, &other)),
    }
}

/// `POST /session/register`.
pub(super) async fn register(
    State(st): State<ApiState>,
    Body(c): Body<Credentials>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let username = c.username.clone();
    let reply = st
        .link()
        .request(Request::Register {
            username: c.username,
            password: c.password,
        })
        .await?;
    let info = session_of("register", reply)?;
    st.record(
        "REGISTER",
        format!("user={} session={}", info.username, info.session_id),
    );
    tracing::info!(user = %username, "registered");
    Ok((StatusCode::CREATED, Json(SessionView::from(&info))))
}

/// `POST /session/login`.
pub(super) async fn login(
    State(st): State<ApiState>,
    Body(c): Body<Credentials>,
) -> Result<Json<SessionView>, ApiError> {
    let username = c.username.clone();
    let result = st
        .link()
        .request(Request::Login {
            username: c.username,
            password: c.password,
        })
        .await;
    match result {
        Ok(reply) => {
            let info = session_of("login", reply)?;
            st.record(
                "LOGIN",
                format!("user={} session={}", info.username, info.session_id),
            );
            tracing::info!(user = %username, "signed in");
            Ok(Json(SessionView::from(&info)))
        }
        Err(f) => {
            if matches!(f.status, Status::Unauthorized | Status::RateLimited) {
                st.record(
                    "LOGIN_FAILED",
                    format!("user={username} {}", f.status.name()),
                );
            }
            Err(f.into())
        }
    }
}

/// `POST /session/visit`.
pub(super) async fn visit(
    State(st): State<ApiState>,
    Body(v): Body<VisitBody>,
) -> Result<Json<SessionView>, ApiError> {
    let reply = st
        .link()
        .request(Request::Visit {
            display_name: v.display_name,
        })
        .await?;
    let info = session_of("visit", reply)?;
    st.record(
        "VISITOR",
        format!("user={} session={}", info.username, info.session_id),
    );
    Ok(Json(SessionView::from(&info)))
}

#[derive(Debug, Serialize)]
pub struct SignedOut {
    pub signed_out: bool,
}

/// `DELETE /session`: logout (everywhere this session is used).
pub(super) async fn logout(State(st): State<ApiState>) -> Result<Json<SignedOut>, ApiError> {
    let who = st
        .link()
        .state()
        .session
        .map(|s| s.username)
        .ok_or_else(not_signed_in)?;
    st.link().request(Request::Logout).await?;
    st.record("LOGOUT", format!("user={who}"));
    Ok(Json(SignedOut { signed_out: true }))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StatusBody {
    pub status: Presence,
}

/// `GET /status`: the user's own status (may be `invisible`).
pub(super) async fn status(State(st): State<ApiState>) -> Result<Json<StatusBody>, ApiError> {
    let link = st.link().state();
    let session = link.session.as_ref().ok_or_else(not_signed_in)?;
    Ok(Json(StatusBody {
        status: session.status,
    }))
}

/// `POST /activity`: the person did something in a client (a key, a
/// click). Answers 204; a client sends it at most every few seconds.
pub(super) async fn activity(State(st): State<ApiState>) -> axum::http::StatusCode {
    st.inner.activity.input();
    axum::http::StatusCode::NO_CONTENT
}

/// `PUT /status`.
pub(super) async fn set_status(
    State(st): State<ApiState>,
    Body(b): Body<StatusBody>,
) -> Result<Json<StatusBody>, ApiError> {
    st.inner.activity.input();
    let reply = st
        .link()
        .request(Request::SetStatus { status: b.status })
        .await?;
    let info = session_of("set_status", reply)?;
    st.record(
        "PRESENCE_CHANGED",
        format!(
            "user={} status={} (set on this node)",
            info.username,
            info.status.as_str()
        ),
    );
    Ok(Json(StatusBody {
        status: info.status,
    }))
}
