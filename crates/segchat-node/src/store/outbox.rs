//! The outbox: messages the user wrote, and how far each got. A written
//! message is stored `pending` before the API answers and leaves the
//! outbox only when the host (`stored`) or the server (`backed_up`)
//! acknowledges it; a restarted node resends whatever is still pending.
//!
//! Invariant: a state only moves forward, and never out of `refused`.

use rusqlite::{params, OptionalExtension};
use segchat_proto::message::Message;

use super::messages::{insert, Arrival};
use super::rows::{full_message, DeliveryState, Source, MESSAGE_COLUMNS};
use super::{Store, StoreError};

impl Store {
    /// Puts a message the user wrote in the outbox (state `pending`).
    pub async fn insert_outgoing(&self, m: Message) -> Result<(), StoreError> {
        self.with(move |c| {
            let a = Arrival {
                source: Source::Local,
                from: None,
                host_seq: None,
                server_seq: None,
            };
            insert(c, &m, &a, Some(DeliveryState::Pending), None)?;
            Ok(())
        })
        .await
    }

    /// Moves a written message's state forward (never back, and never out
    /// of `refused`).
    pub async fn set_state(
        &self,
        id: String,
        state: DeliveryState,
        reason: Option<String>,
    ) -> Result<bool, StoreError> {
        self.with(move |c| {
            let current: Option<Option<String>> = c
                .query_row(
                    "SELECT state FROM messages WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(Some(current)) = current else {
                return Ok(false);
            };
            let current = DeliveryState::parse(&current)?;
            if current == DeliveryState::Refused || current >= state {
                return Ok(false);
            }
            c.execute(
                "UPDATE messages SET state = ?2, reason = ?3 WHERE id = ?1",
                params![id, state.as_str(), reason],
            )?;
            Ok(true)
        })
        .await
    }

    /// Marks every message written here in `channel` with a hosted seq in
    /// `after..=through` as backed up; returns their ids. The range keeps
    /// this a walk of one backup batch, not of the channel's history.
    pub async fn mark_backed_up(
        &self,
        channel: String,
        after: u64,
        through: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE messages SET state = 'backed_up'
                 WHERE channel = ?1 AND hosted_seq > ?2 AND hosted_seq <= ?3
                   AND state IN ('pending', 'stored')
                 RETURNING id",
            )?;
            let ids = stmt
                .query_map(params![channel, after as i64, through as i64], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await
    }

    /// How many messages written here in `channel` are in `state`.
    pub async fn count_in_state(
        &self,
        channel: String,
        state: DeliveryState,
    ) -> Result<u64, StoreError> {
        self.read(move |c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM messages WHERE channel = ?1 AND state = ?2",
                params![channel, state.as_str()],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    /// The outbox: messages written here and not yet acknowledged, oldest
    /// first.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<Message>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE state = 'pending'
                 ORDER BY local_id LIMIT ?1"
            ))?;
            let rows = stmt.query_map(params![limit], full_message)?;
            rows.map(|r| r?).collect()
        })
        .await
    }
}
