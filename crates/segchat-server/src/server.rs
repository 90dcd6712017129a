//! The accept loop and background tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use segchat_log::SystemLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::ConnCounter;
use crate::auth::{Hasher, Limits, LoginLimiter};
use crate::config::ServerConfig;
use crate::conn;
use crate::hub::Hub;
use crate::names::TakenNames;
use crate::ops::{now_ms, Shared};
use crate::store::{self, StoreError};

/// How long connections get to finish after shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("could not open the database: {0}")]
    Store(#[from] StoreError),
    #[error("could not open {dir}: {source}")]
    Log { dir: String, source: std::io::Error },
}

/// Runs the server on `listener` until `shutdown` is cancelled, then waits
/// (up to a grace period) for connections to close.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    config.validate().map_err(ServerError::Config)?;
    segchat_log::private_dir(&config.data_dir).map_err(|source| ServerError::Log {
        dir: config.data_dir.display().to_string(),
        source,
    })?;
    let log = SystemLog::open(config.log.clone()).map_err(|source| ServerError::Log {
        dir: config.log.dir.display().to_string(),
        source,
    })?;
    let url = config
        .database_url
        .clone()
        .unwrap_or_else(|| config.data_dir.join("server.db").display().to_string());
    let store = store::open(&url).await?;
    let taken_names = TakenNames::new(store.usernames().await?);
    let key = crate::keys::load_or_create(&config.data_dir).map_err(|source| ServerError::Log {
        dir: config.data_dir.display().to_string(),
        source,
    })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    log.record(
        "SERVER_STARTED",
        &local,
        format!("database={}", redact_url(&url)),
    );
    tracing::info!(addr = %local, "segchat server listening");

    let shared = Arc::new(Shared {
        limiter: LoginLimiter::new(Limits {
            per_pair: config.login_failures_per_account_source,
            per_source: config.login_failures_per_source,
            per_account: config.login_failures_per_account,
            window: config.login_window,
        }),
        hasher: Hasher::new(config.hash_slots, config.hash_queue),
        taken_names,
        hub: Hub::new(log.clone()),
        store,
        log: log.clone(),
        verifier: segchat_proto::verify::Verifier::new(key.verifying_key()),
        key,
        config,
    });

    tracing::info!(
        slots = shared.config.hash_slots,
        queue = shared.config.hash_queue,
        mib_per_slot = shared.hasher.slot_bytes() >> 20,
        "password hashing bounded"
    );

    let tasks = TaskTracker::new();
    tasks.spawn(reaper(shared.clone(), shutdown.clone()));
    let next_id = AtomicU64::new(1);
    let conns = ConnCounter::new(shared.config.max_conns_per_source);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = conns.admit(addr.ip()) else {
                    tasks.spawn(conn::refuse(stream, addr, shared.clone()));
                    continue;
                };
                tasks.spawn(conn::serve(
                    stream,
                    addr,
                    id,
                    shared.clone(),
                    shutdown.child_token(),
                    slot,
                ));
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; stopping anyway");
    }
    log.record("SERVER_STOPPED", &local, "shutdown");
    log.flush();
    Ok(())
}

/// Drops peers whose heartbeats stopped, and expired sessions.
async fn reaper(shared: Arc<Shared>, shutdown: CancellationToken) {
    let tick =
        (shared.config.heartbeat / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    let mut last_session_sweep = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        for (conn, addr, p) in shared.hub.reap(shared.config.peer_ttl) {
            crate::ops::end_streams(&shared, conn, addr, "streamer_expired").await;
            shared.log.record(
                "PEER_EXPIRED",
                addr,
                format!(
                    "user={} session={} no heartbeat for {} ms",
                    p.username,
                    p.session_id,
                    shared.config.peer_ttl.as_millis()
                ),
            );
        }
        if last_session_sweep.elapsed() > Duration::from_secs(3600) {
            last_session_sweep = std::time::Instant::now();
            match shared.store.delete_expired_sessions(now_ms()).await {
                Ok(n) if n > 0 => tracing::info!(n, "removed expired sessions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not remove expired sessions"),
            }
        }
    }
}

/// A database URL without its password, for logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
