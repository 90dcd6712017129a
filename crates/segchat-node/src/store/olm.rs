//! This device's Olm state, one per account signed in on the node,
//! stored encrypted (`dm/olm.rs` pickles it; this keeps the strings).

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};
use crate::dm::olm::Pickled;

impl Store {
    /// The Olm state kept for `username`, if any.
    pub(crate) async fn olm_state(&self, username: &str) -> Result<Option<Pickled>, StoreError> {
        let username = username.to_owned();
        self.read(move |c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT account, sessions FROM olm_state WHERE username = ?1",
                    params![username],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            row.map(|(account, sessions)| {
                let sessions = serde_json::from_str(&sessions)
                    .map_err(|e| StoreError::Corrupt(format!("olm sessions: {e}")))?;
                Ok(Pickled { account, sessions })
            })
            .transpose()
        })
        .await
    }

    /// Keeps `state` as `username`'s (replacing what was kept).
    pub(crate) async fn save_olm_state(
        &self,
        username: &str,
        state: Pickled,
    ) -> Result<(), StoreError> {
        let username = username.to_owned();
        self.with(move |c| save(c, &username, &state)).await
    }
}

/// Keeps `username`'s Olm state (on `c`, which may be a transaction).
pub(super) fn save(c: &Connection, username: &str, state: &Pickled) -> Result<(), StoreError> {
    let sessions_json = serde_json::to_string(&state.sessions)
        .map_err(|e| StoreError::Corrupt(format!("olm sessions: {e}")))?;
    let account = &state.account;
    c.execute(
        "INSERT INTO olm_state (username, account, sessions, saved_at_ms)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (username) DO UPDATE SET account = ?2, sessions = ?3,
             saved_at_ms = ?4",
        params![
            username,
            account,
            sessions_json,
            crate::clock::now_ms() as i64
        ],
    )?;
    Ok(())
}
