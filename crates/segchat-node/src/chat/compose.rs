//! Writing: a message, a reply, an edit, a deletion or a reaction is
//! checked here, signed with the node key, stored `pending` in the outbox
//! (where the store applies it at once, so the user sees it) and handed to
//! whoever delivers it: this node's own sequencer for a channel it hosts,
//! else the member's outbox loop. The host and the server check the same
//! rules again (`segchat_proto::edits`); these checks only spare the user a
//! refusal later.

use segchat_proto::edits::{allowed, check_shape, Ref, RefKind};
use segchat_proto::files::FileRef;
use segchat_proto::message::{Draft, Message};
use segchat_proto::types::{AccountKind, ChannelInfo, Role};
use segchat_proto::{Failure, Status};
use uuid::Uuid;

use super::{internal, refuse, Chat, MessageRow};

/// What the user asked to write.
enum Writing<'a> {
    Text {
        body: &'a str,
        reply_to: Option<&'a str>,
        file: Option<&'a FileRef>,
    },
    Edit {
        id: &'a str,
        body: &'a str,
    },
    Delete {
        id: &'a str,
    },
    React {
        id: &'a str,
        emoji: &'a str,
        on: bool,
    },
}

impl Chat {
    /// Writes a message (a reply if `reply_to` names one in the channel).
    /// Returns it as stored, usually `pending`.
    pub async fn send(
        &self,
        channel: &str,
        body: &str,
        reply_to: Option<&str>,
    ) -> Result<MessageRow, Failure> {
        self.write(
            channel,
            Writing::Text {
                body,
                reply_to,
                file: None,
            },
        )
        .await
    }

    /// Shares `file` (already in this node's blob store) in a message
    /// with an optional caption.
    pub async fn send_file(
        &self,
        channel: &str,
        caption: &str,
        reply_to: Option<&str>,
        file: &FileRef,
    ) -> Result<MessageRow, Failure> {
        self.write(
            channel,
            Writing::Text {
                body: caption,
                reply_to,
                file: Some(file),
            },
        )
        .await
    }

    /// Edits one of the user's messages. Returns the message as now shown.
    pub async fn edit(&self, channel: &str, id: &str, body: &str) -> Result<MessageRow, Failure> {
        self.write(channel, Writing::Edit { id, body }).await
    }

    /// Deletes a message: the user's own, or anyone's in a channel they
    /// own or moderate. Returns the message as now shown (deleted).
    pub async fn delete(&self, channel: &str, id: &str) -> Result<MessageRow, Failure> {
        self.write(channel, Writing::Delete { id }).await
    }

    /// Adds (`on`) or takes back the user's `emoji` reaction on a message.
    /// Returns the message as now shown.
    pub async fn react(
        &self,
        channel: &str,
        id: &str,
        emoji: &str,
        on: bool,
    ) -> Result<MessageRow, Failure> {
        self.write(channel, Writing::React { id, emoji, on }).await
    }

    /// A stored message as shown now (`None` if it is not here or cannot
    /// be read).
    pub async fn shown(&self, id: String) -> Option<MessageRow> {
        self.store().message(id).await.ok().flatten()
    }

    async fn write(&self, channel: &str, w: Writing<'_>) -> Result<MessageRow, Failure> {
        let me = self
            .session()
            .ok_or_else(|| Failure::unauthorized("sign in first"))?;
        if me.kind == AccountKind::Visitor {
            return Err(refuse(
                Status::Forbidden,
                "visitors only read; register an account to write",
            ));
        }
        let info = self.joined(channel).await?;
        let mut file = None;
        let (body, re) = match w {
            Writing::Text {
                body,
                reply_to,
                file: shared,
            } => {
                file = shared;
                let re = match reply_to {
                    None => None,
                    Some(id) => Some(
                        self.target(channel, id, RefKind::Reply, &me.username, &info)
                            .await?,
                    ),
                };
                (body, re)
            }
            Writing::Edit { id, body } => {
                let re = self
                    .target(channel, id, RefKind::Edit, &me.username, &info)
                    .await?;
                (body, Some(re))
            }
            Writing::Delete { id } => {
                let re = self
                    .target(channel, id, RefKind::Delete, &me.username, &info)
                    .await?;
                ("", Some(re))
            }
            Writing::React { id, emoji, on } => {
                let kind = if on { RefKind::React } else { RefKind::Unreact };
                let re = self.target(channel, id, kind, &me.username, &info).await?;
                (emoji, Some(re))
            }
        };
        let max = self.max_body_len();
        if body.len() > max {
            return Err(refuse(
                Status::TooLarge,
                format!(
                    "a message is at most {max} bytes; this one is {}",
                    body.len()
                ),
            ));
        }
        let ticket = match self.ticket() {
            Some(t) => t,
            None => self.fetch_ticket().await?,
        };
        let message = Draft {
            id: Uuid::now_v7(),
            channel,
            author: &me.username,
            ts_ms: self.stamp(),
            body,
            re,
            file,
        }
        .sign(&self.inner.key, ticket)
        .map_err(|e| Failure::bad_request(e.to_string()))?;
        check_shape(&message).map_err(|e| Failure::bad_request(e.to_string()))?;
        self.deliver(message, info.owner == me.username).await
    }

    /// Stores a signed message in the outbox, tells subscribers and hands
    /// it on; answers what it shows: itself, or the message it acted on.
    async fn deliver(&self, message: Message, hosted_here: bool) -> Result<MessageRow, Failure> {
        let row = MessageRow::written(&message);
        let acted = crate::store::acted_on(&message);
        let (id, channel) = (message.id, message.channel.clone());
        self.store()
            .insert_outgoing(message.clone())
            .await
            .map_err(internal)?;
        let what = match message.re {
            Some(r) if acted.is_some() => format!(" {}={}", r.kind.as_str(), r.id),
            _ => String::new(),
        };
        self.log().record(
            "MESSAGE_SENT",
            "local",
            format!("channel={channel} id={id} state=pending{what}"),
        );
        self.announce(row, acted);
        if hosted_here {
            self.host_own(message).await;
        } else {
            self.bell(&channel).notify_one();
        }
        self.shown(acted.unwrap_or(id).to_string())
            .await
            .ok_or_else(Failure::server_error)
    }

    /// The channel as last listed, if the user joined it.
    async fn joined(&self, channel: &str) -> Result<ChannelInfo, Failure> {
        let cached = self.store().cached_channels().await.map_err(internal)?;
        let info = cached
            .and_then(|c| c.channels.into_iter().find(|ch| ch.name == channel))
            .ok_or_else(|| Failure::not_found(format!("no channel named {channel:?}")))?;
        if info.my_role.is_none() {
            return Err(refuse(
                Status::Forbidden,
                format!("join {channel:?} before writing in it"),
            ));
        }
        Ok(info)
    }

    /// The message `id` in `channel`, which `me` may act on with `kind`.
    async fn target(
        &self,
        channel: &str,
        id: &str,
        kind: RefKind,
        me: &str,
        info: &ChannelInfo,
    ) -> Result<Ref, Failure> {
        let missing = || Failure::not_found(format!("no message {id} in {channel:?}"));
        let parsed: Uuid = id.parse().map_err(|_| missing())?;
        let row = self
            .store()
            .message(parsed.to_string())
            .await
            .map_err(internal)?
            .filter(|r| r.channel == channel)
            .ok_or_else(missing)?;
        if row.deleted && kind != RefKind::Reply {
            return Err(Failure::new(
                Status::Conflict,
                format!("message {id} was deleted"),
            ));
        }
        if kind == RefKind::Edit && row.file.is_some() {
            // An edit carries text only, and replacing the text would
            // also drop the signed file with it.
            return Err(Failure::new(
                Status::Conflict,
                "a message that shares a file cannot be edited; delete it and share again",
            ));
        }
        let moderates =
            info.owner == me || matches!(info.my_role, Some(Role::Owner | Role::Moderator));
        if !allowed(kind, me, channel, row.as_target(), moderates) {
            return Err(refuse(
                Status::Forbidden,
                match kind {
                    RefKind::Edit => "you can only edit your own messages".to_owned(),
                    _ => format!(
                        "only its author, the owner of {channel:?} or a moderator deletes a message"
                    ),
                },
            ));
        }
        Ok(Ref { kind, id: parsed })
    }
}
