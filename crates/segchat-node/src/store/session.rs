//! The signed-in session, kept so the node resumes it after a restart or
//! a reconnect. One at a time: signing in as somebody else replaces it
//! (and drops their cached channel list, see `channels.rs`).

use rusqlite::{params, OptionalExtension};
use segchat_proto::types::{AccountKind, Presence, SessionInfo};

use super::{Store, StoreError};

/// The session this node signs in with after a (re)connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub token: String,
    pub username: String,
    pub display_name: String,
    pub kind: AccountKind,
    pub session_id: String,
    pub status: Presence,
}

impl From<&SessionInfo> for StoredSession {
    fn from(s: &SessionInfo) -> Self {
        StoredSession {
            token: s.token.clone(),
            username: s.username.clone(),
            display_name: s.display_name.clone(),
            kind: s.kind,
            session_id: s.session_id.clone(),
            status: s.status,
        }
    }
}

impl Store {
    /// Saves the session to resume (replacing any other). Signing in as
    /// somebody else also drops their cached channel list.
    pub async fn save_session(&self, s: StoredSession) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let previous: Option<String> = tx
                .query_row("SELECT username FROM session WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            if previous.as_deref() != Some(s.username.as_str()) {
                tx.execute("DELETE FROM channel_cache", [])?;
            }
            tx.execute(
                "INSERT INTO session (id, token, username, display_name, kind, session_id, status, saved_at_ms)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET token = ?1, username = ?2, display_name = ?3,
                    kind = ?4, session_id = ?5, status = ?6, saved_at_ms = ?7",
                params![
                    s.token,
                    s.username,
                    s.display_name,
                    kind_str(s.kind),
                    s.session_id,
                    s.status.as_str(),
                    crate::clock::now_ms() as i64
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The session to resume, if any.
    pub async fn session(&self) -> Result<Option<StoredSession>, StoreError> {
        self.with(|c| {
            let row = c
                .query_row(
                    "SELECT token, username, display_name, kind, session_id, status FROM session WHERE id = 1",
                    [],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                        ))
                    },
                )
                .optional()?;
            let Some((token, username, display_name, kind, session_id, status)) = row else {
                return Ok(None);
            };
            Ok(Some(StoredSession {
                token,
                username,
                display_name,
                kind: parse_kind(&kind)?,
                session_id,
                status: status.parse().map_err(StoreError::Corrupt)?,
            }))
        })
        .await
    }

    /// Records the user's own status.
    pub async fn set_session_status(&self, status: Presence) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "UPDATE session SET status = ?1 WHERE id = 1",
                params![status.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the session and everything cached for it.
    pub async fn forget_session(&self) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM session", [])?;
            tx.execute("DELETE FROM channel_cache", [])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

fn kind_str(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::User => "user",
        AccountKind::Visitor => "visitor",
    }
}

fn parse_kind(s: &str) -> Result<AccountKind, StoreError> {
    match s {
        "user" => Ok(AccountKind::User),
        "visitor" => Ok(AccountKind::Visitor),
        other => Err(StoreError::Corrupt(format!(
            "unknown account kind {other:?}"
        ))),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::store) fn session(name: &str) -> StoredSession {
        StoredSession {
            token: "t0k".into(),
            username: name.into(),
            display_name: name.into(),
            kind: AccountKind::User,
            session_id: "s1".into(),
            status: Presence::Online,
        }
    }

    #[tokio::test]
    async fn session_round_trips_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        let store = Store::open(&path).expect("open");
        assert_eq!(store.session().await.expect("read"), None);
        store.save_session(session("alice")).await.expect("save");
        store
            .set_session_status(Presence::Invisible)
            .await
            .expect("status");
        drop(store);
        let store = Store::open(&path).expect("reopen runs no migration twice");
        let got = store.session().await.expect("read").expect("saved");
        assert_eq!(got.username, "alice");
        assert_eq!(got.status, Presence::Invisible);
        store.forget_session().await.expect("forget");
        assert_eq!(store.session().await.expect("read"), None);
    }
}
