//! Who hosts which channel, and the live streams: this instance's, and
//! the other instances' replicas.

use segchat_proto::stream::StreamInfo;
use segchat_proto::types::{NodeAddr, Presence};

use super::remote::HostEntry;
use super::{Change, ConnId, Hub, Outgoing, State};

impl Hub {
    /// Makes the connection the live host of `channel` (owned by
    /// `owner_id`); returns how to reach it, or `None` if it has not
    /// submitted its address.
    pub(crate) fn set_host(&self, channel: &str, id: ConnId, owner_id: i64) -> Option<NodeAddr> {
        let mut st = self.lock();
        let node = st.peers.get(&id)?.node.clone();
        st.hosts
            .insert(channel.to_owned(), (id, node.clone(), owner_id));
        self.emit(Outgoing::Change(Change::Host {
            channel: channel.to_owned(),
            host: Some(HostEntry {
                conn: id,
                node: node.clone(),
                owner_id,
            }),
        }));
        Some(node)
    }

    /// The P2P address of a channel's host, as others may see it: `None`
    /// while no node hosts it or while its owner is invisible (an address
    /// would tell that they are online).
    pub(crate) fn host_of(&self, channel: &str) -> Option<NodeAddr> {
        let st = self.lock();
        let (node, owner) = match st.hosts.get(channel) {
            Some((_, node, owner)) => (node, *owner),
            None => {
                let (_, h) = &st.remote.hosts.get(channel)?.value;
                (&h.node, h.owner_id)
            }
        };
        let status = st.presence.shown(owner);
        (status.as_seen_by_others() != Presence::Offline).then(|| node.clone())
    }

    /// Channels hosted by the user's nodes.
    pub(crate) fn hosted_by(&self, owner_id: i64) -> Vec<String> {
        let st = self.lock();
        let local = st
            .hosts
            .iter()
            .filter(|(_, (_, _, o))| *o == owner_id)
            .map(|(name, _)| name.clone());
        let remote = st
            .remote
            .hosts
            .iter()
            .filter(|(name, s)| s.value.1.owner_id == owner_id && !st.hosts.contains_key(*name))
            .map(|(name, _)| name.clone());
        local.chain(remote).collect()
    }

    /// Stops `id` hosting anything; returns the channels it hosted.
    pub(crate) fn drop_hosts(&self, id: ConnId) -> Vec<String> {
        let mut st = self.lock();
        let gone: Vec<String> = st
            .hosts
            .iter()
            .filter(|(_, (c, _, _))| *c == id)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            st.hosts.remove(name);
            self.emit(Outgoing::Change(Change::Host {
                channel: name.clone(),
                host: None,
            }));
        }
        gone
    }

    /// A channel was deleted: forgets its host, and ends and returns its
    /// live streams.
    pub(crate) fn forget_channel(&self, channel: &str) -> Vec<StreamInfo> {
        let mut st = self.lock();
        self.emit(Outgoing::Change(Change::ChannelGone {
            channel: channel.to_owned(),
        }));
        let remote: Vec<StreamInfo> = st
            .remote
            .streams
            .values()
            .filter(|s| s.value.2.channel == channel)
            .map(|s| s.value.2.clone())
            .collect();
        st.remote.hosts.remove(channel);
        st.remote
            .streams
            .retain(|_, s| s.value.2.channel != channel);
        let mut gone = Self::forget_channel_here(&mut st, channel);
        gone.extend(remote);
        gone
    }

    /// Forgets this instance's host and streams of a deleted channel.
    pub(super) fn forget_channel_here(st: &mut State, channel: &str) -> Vec<StreamInfo> {
        st.hosts.remove(channel);
        let ids: Vec<u64> = st
            .streams
            .iter()
            .filter(|(_, (_, s))| s.channel == channel)
            .map(|(sid, _)| *sid)
            .collect();
        ids.iter()
            .filter_map(|sid| st.streams.remove(sid).map(|(_, s)| s))
            .collect()
    }

    /// Registers a live stream of connection `id` in `info.channel`,
    /// filling in its id and the connection's announced addresses. `None`
    /// if the connection has no peer entry (no `submit_info` yet); `Err`
    /// with the running stream if it already streams in that channel.
    pub(crate) fn start_stream(
        &self,
        id: ConnId,
        mut info: StreamInfo,
    ) -> Option<Result<StreamInfo, StreamInfo>> {
        let mut st = self.lock();
        let peer = st.peers.get(&id)?;
        info.p2p_addr = peer.node.addr;
        info.node_id = peer.node.node_id.clone();
        if let Some((_, running)) = st
            .streams
            .values()
            .find(|(c, s)| *c == id && s.channel == info.channel)
        {
            return Some(Err(running.clone()));
        }
        st.next_stream += 1;
        info.stream_id = st.next_stream;
        st.streams.insert(info.stream_id, (id, info.clone()));
        self.emit(Outgoing::Change(Change::Stream {
            stream_id: info.stream_id,
            info: Some((id, info.clone())),
        }));
        Some(Ok(info))
    }

    /// Ends a stream of connection `id`; `None` if it has no such stream.
    pub(crate) fn stop_stream(&self, id: ConnId, stream_id: u64) -> Option<StreamInfo> {
        let mut st = self.lock();
        match st.streams.get(&stream_id) {
            Some((c, _)) if *c == id => {
                self.emit(Outgoing::Change(Change::Stream {
                    stream_id,
                    info: None,
                }));
                st.streams.remove(&stream_id).map(|(_, s)| s)
            }
            _ => None,
        }
    }

    /// Ends every stream of connection `id` and returns them.
    pub(crate) fn drop_streams(&self, id: ConnId) -> Vec<StreamInfo> {
        let mut st = self.lock();
        let ids: Vec<u64> = st
            .streams
            .iter()
            .filter(|(_, (c, _))| *c == id)
            .map(|(sid, _)| *sid)
            .collect();
        for &stream_id in &ids {
            self.emit(Outgoing::Change(Change::Stream {
                stream_id,
                info: None,
            }));
        }
        ids.iter()
            .filter_map(|sid| st.streams.remove(sid).map(|(_, s)| s))
            .collect()
    }

    /// Every live stream, oldest first.
    pub(crate) fn streams(&self) -> Vec<StreamInfo> {
        let st = self.lock();
        let remote = st.remote.streams.values().map(|s| s.value.2.clone());
        let mut list: Vec<StreamInfo> = st
            .streams
            .values()
            .map(|(_, s)| s.clone())
            .chain(remote)
            .collect();
        list.sort_by_key(|s| s.stream_id);
        list
    }
}
