//! The gate in front of the blobs protocol (iroh-blobs' verified
//! streaming), as node and server both serve it: only keys holding a
//! grant connect, each fetches only the files granted to it, and
//! nothing else is served (no pushes, no multi-blob requests, no
//! listing).
//!
//! Invariant: a `GET` or `observe` is answered only for a hash granted
//! to the key behind its connection; a connection from a key with no
//! grant is refused at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use iroh::EndpointId;
use iroh_blobs::provider::events::{
    AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage, RequestMode,
    ThrottleMode,
};
use iroh_blobs::Hash;

/// The grants: which keys may fetch which files, each counted by the
/// grants made (a key may hold several links, each with its grant).
#[derive(Debug, Default, Clone)]
pub struct Gate(Arc<Mutex<HashMap<EndpointId, HashMap<Hash, usize>>>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gate {
    /// Lets `who` fetch `hash` until a matching [`Gate::revoke`].
    pub fn grant(&self, who: EndpointId, hash: Hash) {
        *lock(&self.0)
            .entry(who)
            .or_default()
            .entry(hash)
            .or_default() += 1;
    }

    /// Takes back one grant of `hash` to `who`.
    pub fn revoke(&self, who: EndpointId, hash: Hash) {
        let mut map = lock(&self.0);
        if let Some(files) = map.get_mut(&who) {
            if let Some(n) = files.get_mut(&hash) {
                *n -= 1;
                if *n == 0 {
                    files.remove(&hash);
                }
            }
            if files.is_empty() {
                map.remove(&who);
            }
        }
    }

    /// Whether `who` holds a grant of `hash`.
    pub fn holds(&self, who: &EndpointId, hash: &Hash) -> bool {
        self.allows(who, hash)
    }

    /// How many files `who` holds grants for.
    pub fn granted(&self, who: &EndpointId) -> usize {
        lock(&self.0).get(who).map_or(0, HashMap::len)
    }

    fn any(&self, who: &EndpointId) -> bool {
        lock(&self.0).contains_key(who)
    }

    fn allows(&self, who: &EndpointId, hash: &Hash) -> bool {
        lock(&self.0).get(who).is_some_and(|f| f.contains_key(hash))
    }
}

/// The blobs protocol's events, answered by `gate`: every connection and
/// every request is asked about; at most `max_conns` connections at once,
/// none while `serving()` is false; pushes and multi-blob requests are
/// off.
pub fn police(
    gate: Gate,
    max_conns: usize,
    serving: impl Fn() -> bool + Send + 'static,
) -> EventSender {
    let mask = EventMask {
        connected: ConnectMode::Intercept,
        get: RequestMode::Intercept,
        get_many: RequestMode::Disabled,
        push: RequestMode::Disabled,
        observe: ObserveMode::Intercept,
        throttle: ThrottleMode::None,
    };
    let (events, mut rx) = EventSender::channel(64, mask);
    tokio::spawn(async move {
        // The key behind each connection the gate let in.
        let mut conns: HashMap<u64, EndpointId> = HashMap::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                ProviderMessage::ClientConnected(m) => {
                    let verdict = match m.endpoint_id {
                        Some(id) if gate.any(&id) && conns.len() < max_conns && serving() => {
                            conns.insert(m.connection_id, id);
                            Ok(())
                        }
                        _ => Err(AbortReason::Permission),
                    };
                    m.tx.send(verdict).await.ok();
                }
                ProviderMessage::ConnectionClosed(m) => {
                    conns.remove(&m.connection_id);
                }
                ProviderMessage::GetRequestReceived(m) => {
                    let ok = m.request.ranges.is_blob()
                        && conns
                            .get(&m.connection_id)
                            .is_some_and(|id| gate.allows(id, &m.request.hash));
                    m.tx.send(verdict(ok)).await.ok();
                }
                ProviderMessage::ObserveRequestReceived(m) => {
                    let ok = conns
                        .get(&m.connection_id)
                        .is_some_and(|id| gate.allows(id, &m.request.hash));
                    m.tx.send(verdict(ok)).await.ok();
                }
                ProviderMessage::GetManyRequestReceived(m) => {
                    m.tx.send(Err(AbortReason::Permission)).await.ok();
                }
                ProviderMessage::PushRequestReceived(m) => {
                    m.tx.send(Err(AbortReason::Permission)).await.ok();
                }
                ProviderMessage::Throttle(m) => {
                    m.tx.send(Ok(())).await.ok();
                }
                _ => {}
            }
        }
    });
    events
}

fn verdict(ok: bool) -> Result<(), AbortReason> {
    if ok {
        Ok(())
    } else {
        Err(AbortReason::Permission)
    }
}
