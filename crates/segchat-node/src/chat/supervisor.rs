//! The supervisor: on every (re)connection, channel event and every 30 s
//! it lists the channels and decides what this node does with each: host
//! the user's own (`host/`), follow the others the user may read (one
//! `member.rs` task each), stop following the ones they left. It also
//! closes every member's link when the user turns invisible.

use std::collections::HashMap;
use std::time::Duration;

use segchat_proto::tracker::Event;
use segchat_proto::types::{AccountKind, ChannelInfo, NodeAddr};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{keys, lock, member, Chat};
use crate::events::NodeEvent;

impl Chat {
    /// Runs the supervisor until shutdown: on every (re)connection and
    /// channel change it decides which channels to host and to follow.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut state = self.link().watch();
        let mut events = self.inner.bus.subscribe();
        let mut followed: HashMap<String, Follow> = HashMap::new();
        let mut generation = 0u64;
        let mut was_connected = false;
        let mut was_invisible = false;
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            let mut refresh = false;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = state.changed() => {
                    if changed.is_err() { break; }
                    let st = state.borrow_and_update().clone();
                    if st.connected && !was_connected {
                        generation += 1;
                    }
                    if st.session.is_none() {
                        self.stop_all(&mut followed);
                        keys::forget_ticket(&self.inner.data_dir);
                        *lock(&self.inner.ticket) = None;
                    }
                    let invisible = st.is_invisible();
                    if invisible && !was_invisible {
                        // To others invisible is offline: no peer link
                        // stays open, none is admitted (see `p2p`).
                        let links = self.inner.hosting.drop_all_links();
                        self.log().record(
                            "P2P_HIDDEN",
                            self.server_addr(),
                            format!("status=invisible links_closed={links}"),
                        );
                    }
                    was_invisible = invisible;
                    was_connected = st.connected;
                    refresh = st.connected && st.session.is_some();
                }
                ev = events.recv() => match ev {
                    Ok(NodeEvent::Tracker(ev)) => refresh = self.on_event(ev, &followed),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => refresh = true,
                    Err(_) => break,
                },
                _ = tick.tick() => refresh = was_connected,
            }
            if refresh {
                self.refresh(generation, &mut followed, &shutdown).await;
            }
        }
        self.stop_all(&mut followed);
    }

    /// Reacts to a server event; true if the channel set should be
    /// refreshed.
    fn on_event(&self, ev: Event, followed: &HashMap<String, Follow>) -> bool {
        match ev {
            Event::HostStatus { channel, host } => {
                if let Some(f) = followed.get(&channel) {
                    let _ = f.host.send(host);
                }
                false
            }
            Event::MessageNotice { channel, .. } => {
                if self.inner.hosting.is_hosted(&channel) {
                    self.inner.hosting.wake_pull(&channel);
                } else {
                    self.bell(&channel).notify_one();
                }
                false
            }
            Event::MemberJoined {
                channel, username, ..
            } => {
                self.inner.hosting.member_changed(&channel, &username, true);
                true
            }
            Event::MemberLeft { channel, username } => {
                self.inner
                    .hosting
                    .member_changed(&channel, &username, false);
                true
            }
            Event::ChannelUpdated { channel } => {
                // Hosted here: its rules change at once, before the
                // refresh lists it again.
                self.inner.hosting.rules_changed(&channel);
                true
            }
            Event::ChannelDeleted { channel } => {
                self.stop_hosting(&channel);
                self.forget_channel(channel, true);
                true
            }
            Event::ChannelHidden { channel } => {
                self.stop_hosting(&channel);
                self.forget_channel(channel, false);
                true
            }
            Event::ChannelCreated { .. } | Event::Invited { .. } => true,
            _ => false,
        }
    }

    /// Lists channels; hosts the user's own, follows the others they can
    /// read, stops following the ones they left.
    async fn refresh(
        &self,
        generation: u64,
        followed: &mut HashMap<String, Follow>,
        shutdown: &CancellationToken,
    ) {
        let Some(me) = self.session() else { return };
        if self.ticket().is_none() {
            if let Err(f) = self.fetch_ticket().await {
                tracing::debug!(reason = %f, "no ticket yet");
            }
        }
        let mark = self.store().channel_cache_mark().await;
        let mark = mark.unwrap_or(crate::store::CacheMark::NOW);
        let channels: Vec<ChannelInfo> = match self.link().list_channels().await {
            Ok(channels) => channels,
            Err(f) => {
                tracing::debug!(reason = %f, "could not list channels");
                return;
            }
        };
        if let Err(e) = self.store().cache_channels(channels.clone(), mark).await {
            tracing::warn!(error = %e, "could not cache the channel list");
        }
        let mut keep = Vec::new();
        for ch in channels {
            let mine = me.kind == AccountKind::User && ch.owner == me.username;
            if mine {
                self.host(&ch, generation, shutdown).await;
                continue;
            }
            let follow = ch.my_role.is_some() || me.kind == AccountKind::Visitor;
            if !follow {
                continue;
            }
            keep.push(ch.name.clone());
            match followed.get(&ch.name) {
                Some(f) => {
                    let _ = f.host.send(ch.host);
                }
                None => {
                    let (tx, rx) = watch::channel(ch.host);
                    let cancel = shutdown.child_token();
                    tokio::spawn(member::follow(
                        self.clone(),
                        ch.name.clone(),
                        rx,
                        cancel.clone(),
                    ));
                    followed.insert(ch.name.clone(), Follow { host: tx, cancel });
                }
            }
        }
        followed.retain(|name, f| {
            let stay = keep.contains(name);
            if !stay {
                f.cancel.cancel();
                lock(&self.inner.links).remove(name);
            }
            stay
        });
    }

    /// Drops a deleted (or now hidden) channel from the channel cache at
    /// once; the refresh that follows stops following it.
    fn stop_hosting(&self, channel: &str) {
        if self.inner.hosting.stop(channel) {
            self.log().record(
                "HOST_STOPPED",
                self.server_addr(),
                format!("channel={channel} reason=deleted"),
            );
        }
    }

    /// Drops a channel from the cache; a deleted one's messages and
    /// cursors go too (its owner deleted it: nothing of it is shown or
    /// served again, and a new channel of the same name starts afresh).
    fn forget_channel(&self, channel: String, deleted: bool) {
        let store = self.store().clone();
        let log = self.log().clone();
        let server = self.server_addr();
        tokio::spawn(async move {
            if !deleted {
                if let Err(e) = store.uncache_channel(channel).await {
                    tracing::warn!(error = %e, "could not update the channel cache");
                }
                return;
            }
            match store.forget_channel(channel.clone()).await {
                Ok(messages) => log.record(
                    "CHANNEL_FORGOTTEN",
                    server,
                    format!("channel={channel} messages={messages} reason=deleted"),
                ),
                Err(e) => tracing::warn!(error = %e, "could not forget a deleted channel"),
            }
        });
    }

    /// A session's tickets were revoked: closes every member's link
    /// admitted under it. Answers how many.
    pub(crate) fn drop_session(&self, session: &str) -> usize {
        self.inner.hosting.drop_session(session)
    }

    fn stop_all(&self, followed: &mut HashMap<String, Follow>) {
        for (_, f) in followed.drain() {
            f.cancel.cancel();
        }
        self.inner.hosting.stop_all();
        lock(&self.inner.links).clear();
    }
}

/// A followed channel's task: where its host is, and how to stop it.
#[derive(Debug)]
struct Follow {
    host: watch::Sender<Option<NodeAddr>>,
    cancel: CancellationToken,
}
