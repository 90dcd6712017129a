//! Typed calls to the server: one method per operation the node's parts
//! make on their own (the API forwards its callers' requests as they
//! are). Each answers what its operation returns; an answer of another
//! kind (a server that does not follow the protocol) is logged here, once,
//! and comes back as `SERVER_ERROR`, so no call site has an "unexpected
//! answer" branch.

use segchat_proto::devices::{DeviceKeys, OneTimeKey};
use segchat_proto::message::{Message, Sequenced};
use segchat_proto::stream::{Codec, StreamInfo};
use segchat_proto::ticket::SignedTicket;
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::{ChannelInfo, MemberInfo, Visibility};
use segchat_proto::Failure;

use super::LinkHandle;

/// A page of the server's backup of a channel (`history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<Sequenced>,
    pub has_more: bool,
}

/// What `start_stream` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub channel: String,
    pub width: u16,
    pub height: u16,
    pub fps: u8,
    pub codec: Codec,
}

/// What `update_channel` changes: each `None` keeps the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelChange {
    pub topic: Option<String>,
    /// The displayed name ("rename"); the channel's name never changes.
    pub title: Option<String>,
    pub visibility: Option<Visibility>,
    pub allow_visitors: Option<bool>,
}

/// The failure for an answer of the wrong kind to `op`.
fn unexpected(op: &'static str, reply: Reply) -> Failure {
    tracing::warn!(op, ?reply, "unexpected answer from the server");
    Failure::server_error()
}

impl LinkHandle {
    /// `list_channels`: the channels the user may see.
    pub async fn list_channels(&self) -> Result<Vec<ChannelInfo>, Failure> {
        match self.request(Request::ListChannels).await? {
            Reply::Channels { channels } => Ok(channels),
            other => Err(unexpected("list_channels", other)),
        }
    }

    /// `update_channel`: changes a channel's settings (owner or
    /// moderator); the channel afterwards.
    pub async fn update_channel(
        &self,
        channel: &str,
        change: ChannelChange,
    ) -> Result<ChannelInfo, Failure> {
        let request = Request::UpdateChannel {
            channel: channel.to_owned(),
            topic: change.topic,
            title: change.title,
            visibility: change.visibility,
            allow_visitors: change.allow_visitors,
        };
        match self.request(request).await? {
            Reply::Channel(info) => Ok(info),
            other => Err(unexpected("update_channel", other)),
        }
    }

    /// `delete_channel`: deletes a channel (owner only), its members and
    /// the server's backup of it.
    pub async fn delete_channel(&self, channel: &str) -> Result<(), Failure> {
        let request = Request::DeleteChannel {
            channel: channel.to_owned(),
        };
        match self.request(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected("delete_channel", other)),
        }
    }

    /// `members`: a channel's members.
    pub async fn members(&self, channel: &str) -> Result<Vec<MemberInfo>, Failure> {
        let request = Request::Members {
            channel: channel.to_owned(),
        };
        match self.request(request).await? {
            Reply::Members { members, .. } => Ok(members),
            other => Err(unexpected("members", other)),
        }
    }

    /// `file_backup`: asks the server to keep a copy of file `hash`
    /// shared in `channel` (none: in a direct message, as `dm` says),
    /// fetched from this node. Answers whether it does, and if not why.
    pub async fn file_backup(
        &self,
        channel: Option<&str>,
        hash: &str,
        dm: Option<segchat_proto::tracker::DmBackup>,
    ) -> Result<(bool, Option<String>), Failure> {
        let request = Request::FileBackup {
            channel: channel.map(str::to_owned),
            hash: hash.to_owned(),
            dm,
        };
        match self.request(request).await? {
            Reply::FileKept { kept, reason, .. } => Ok((kept, reason)),
            other => Err(unexpected("file_backup", other)),
        }
    }

    /// `file_source`: the server's copy of file `hash` shared in
    /// `channel` (none: in a direct message), granted to this node: its
    /// size.
    pub async fn file_source(&self, channel: Option<&str>, hash: &str) -> Result<u64, Failure> {
        let request = Request::FileSource {
            channel: channel.map(str::to_owned),
            hash: hash.to_owned(),
        };
        match self.request(request).await? {
            Reply::FileSource { size, .. } => Ok(size),
            other => Err(unexpected("file_source", other)),
        }
    }

    /// `publish_keys`: this device's keys for direct messages; how many
    /// one-time keys the server holds for it afterwards.
    pub async fn publish_keys(
        &self,
        device: DeviceKeys,
        one_time_keys: Vec<OneTimeKey>,
    ) -> Result<u32, Failure> {
        let request = Request::PublishKeys {
            device,
            one_time_keys,
        };
        match self.request(request).await? {
            Reply::KeysPublished { one_time_keys } => Ok(one_time_keys),
            other => Err(unexpected("publish_keys", other)),
        }
    }

    /// `get_ticket`: a ticket binding `node_key` (hex) to the session.
    pub async fn get_ticket(&self, node_key: String) -> Result<SignedTicket, Failure> {
        match self.request(Request::GetTicket { node_key }).await? {
            Reply::Ticket(t) => Ok(t),
            other => Err(unexpected("get_ticket", other)),
        }
    }

    /// `host_channel`: this node is the live host of `channel`. Answers
    /// the server's highest sequence number for it.
    pub async fn host_channel(&self, channel: &str) -> Result<u64, Failure> {
        let request = Request::HostChannel {
            channel: channel.to_owned(),
        };
        match self.request(request).await? {
            Reply::Hosting {
                server_last_seq, ..
            } => Ok(server_last_seq),
            other => Err(unexpected("host_channel", other)),
        }
    }

    /// `backup`: the server stores `messages` durably. Answers how many
    /// were new and the server's highest sequence number afterwards.
    pub async fn backup(
        &self,
        channel: &str,
        messages: Vec<Message>,
    ) -> Result<(u32, u64), Failure> {
        let request = Request::Backup {
            channel: channel.to_owned(),
            messages,
        };
        match self.request(request).await? {
            Reply::BackedUp {
                stored,
                server_last_seq,
                ..
            } => Ok((stored, server_last_seq)),
            other => Err(unexpected("backup", other)),
        }
    }

    /// `post_message`: a member's post through the server while the host
    /// is away. Answers the server's sequence number for it.
    pub async fn post_message(&self, message: Message) -> Result<u64, Failure> {
        match self
            .request(Request::PostMessage {
                message: message.into(),
            })
            .await?
        {
            Reply::Stored { seq, .. } => Ok(seq),
            other => Err(unexpected("post_message", other)),
        }
    }

    /// `history`: the server's backup of `channel` after `after_seq`.
    pub async fn history(
        &self,
        channel: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<HistoryPage, Failure> {
        let request = Request::History {
            channel: channel.to_owned(),
            after_seq,
            limit,
        };
        match self.request(request).await? {
            Reply::Messages {
                messages, has_more, ..
            } => Ok(HistoryPage { messages, has_more }),
            other => Err(unexpected("history", other)),
        }
    }

    /// `start_stream`: announces a livestream of this node's.
    pub async fn start_stream(&self, s: StreamRequest) -> Result<StreamInfo, Failure> {
        let request = Request::StartStream {
            channel: s.channel,
            width: s.width,
            height: s.height,
            fps: s.fps,
            codec: s.codec,
        };
        match self.request(request).await? {
            Reply::Stream(info) => Ok(info),
            other => Err(unexpected("start_stream", other)),
        }
    }

    /// `stop_stream`: ends one of this node's livestreams.
    pub async fn stop_stream(&self, stream_id: u64) -> Result<(), Failure> {
        self.request(Request::StopStream { stream_id })
            .await
            .map(|_| ())
    }

    /// `list_streams`: the live streams the user may watch.
    pub async fn list_streams(&self) -> Result<Vec<StreamInfo>, Failure> {
        match self.request(Request::ListStreams { channel: None }).await? {
            Reply::Streams { streams } => Ok(streams),
            other => Err(unexpected("list_streams", other)),
        }
    }
}
