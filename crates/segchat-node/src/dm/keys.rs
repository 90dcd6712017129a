//! Keeps this device's keys published while it is signed in as a user:
//! on every new server connection and every sign-in, the device's
//! identity keys, and one-time keys to top the server's pool up to
//! [`ONE_TIME_KEYS`] when it has fallen below half of that (others'
//! claims use them up).
//!
//! Order matters for a crash: new one-time keys are saved (unpublished)
//! before they are sent, and marked published only once the server has
//! them, so a key the server hands out is always one this device can
//! still open a session with.

use std::time::{Duration, Instant};

use segchat_log::SystemLog;
use segchat_proto::types::AccountKind;
use tokio_util::sync::CancellationToken;

use super::olm::ONE_TIME_KEYS;
use super::Device;
use crate::link::LinkHandle;

/// How long after a failed publish it is tried again.
const RETRY: Duration = Duration::from_secs(30);
/// How often the server's pool of this device's one-time keys is checked
/// (and topped up) while connected.
const TOP_UP: Duration = Duration::from_secs(300);

/// Runs until `shutdown`.
pub(crate) async fn keep_published(
    link: LinkHandle,
    device: Device,
    log: SystemLog,
    server: String,
    shutdown: CancellationToken,
) {
    let mut changed = link.watch();
    // (connection, session) the keys were last published on, and when.
    let mut done: Option<((u64, String), Instant)> = None;
    loop {
        let state = link.state();
        let mut failed = false;
        if let (true, Some(s)) = (state.connected, state.session.as_ref()) {
            let now = (state.connection, s.session_id.clone());
            let due = done
                .as_ref()
                .is_none_or(|(on, at)| *on != now || at.elapsed() >= TOP_UP);
            if s.kind == AccountKind::User && due {
                match publish(&link, &device, &s.username).await {
                    Ok(held) => {
                        done = Some((now, Instant::now()));
                        log.record(
                            "KEYS_PUBLISHED",
                            &server,
                            format!("user={} one_time_keys={held}", s.username),
                        );
                    }
                    Err(e) => {
                        failed = true;
                        tracing::warn!(error = %e, "could not publish this device's keys");
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            gone = changed.changed() => if gone.is_err() { return },
            _ = tokio::time::sleep(RETRY), if failed => {}
            // Others' claims use keys up between connections too.
            _ = tokio::time::sleep(TOP_UP), if !failed => {}
        }
    }
}

/// Publishes the device and, if the server runs low, more one-time keys;
/// how many the server holds afterwards.
async fn publish(link: &LinkHandle, device: &Device, username: &str) -> Result<u32, String> {
    let (_guard, mut olm) = device.open(username).await.map_err(|e| e.to_string())?;
    let node = device.node();
    let keys = olm.device_keys(node);
    let held = link
        .publish_keys(keys.clone(), Vec::new())
        .await
        .map_err(|f| f.to_string())?;
    if held as usize >= ONE_TIME_KEYS / 2 {
        return Ok(held);
    }
    // A new fallback key too: the server may have lost the last one with
    // an old session's device, and one that has been handed out often is
    // better replaced.
    olm.renew_fallback_key();
    let fresh = olm.keys_to_publish(node, held as usize);
    let saved = device.save(username, &olm).await;
    saved.map_err(|e| e.to_string())?;
    let held = link
        .publish_keys(keys, fresh)
        .await
        .map_err(|f| f.to_string())?;
    olm.mark_published();
    let saved = device.save(username, &olm).await;
    saved.map_err(|e| e.to_string())?;
    Ok(held)
}
