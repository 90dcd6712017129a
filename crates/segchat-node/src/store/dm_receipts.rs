//! Receipts in direct messages: how far the account's own messages got
//! (delivered, read, as the recipients' receipts tell), and others'
//! messages the account read on another of its devices — also when that
//! mark comes before the message itself.

use rusqlite::{params, Connection};

use super::dm_edits::shown;
use super::dm_rows::{conversation_key, one, DmRow, DmState};
use super::StoreError;

/// A receipt to apply: these ids (sent by the account, in conversation)
/// reached `state`; or, `by_me`, the account read these others' messages
/// on another of its devices.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub conversation: String,
    pub ids: Vec<String>,
    pub state: DmState,
    pub by_me: bool,
}

/// Marks another member's message `id` (in `conversation`) read here
/// because the account read it on another device; the row, if it moved.
pub(super) fn read_elsewhere(
    c: &Connection,
    account: &str,
    conversation: &str,
    id: &str,
    state: DmState,
) -> Result<Option<DmRow>, StoreError> {
    if state != DmState::Read {
        return Ok(None);
    }
    let key = conversation_key(conversation);
    let moved = c.execute(
        "UPDATE dms SET state = 'read'
         WHERE account = ?1 AND id = ?2 AND conversation_key = ?3 AND state = 'received'",
        params![account, id, key],
    )?;
    if moved == 0 {
        // Not here yet (the mark came first): it arrives read.
        let now = crate::clock::now_ms() as i64;
        c.execute(
            "INSERT OR IGNORE INTO dm_read_early (account, id, conversation_key, stored_at_ms)
             SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS
                 (SELECT 1 FROM dms WHERE account = ?1 AND id = ?2)",
            params![account, id, key, now],
        )?;
        c.execute(
            "DELETE FROM dm_read_early WHERE account = ?1 AND stored_at_ms < ?2",
            params![account, now - READ_EARLY_KEPT_MS],
        )?;
        return Ok(None);
    }
    shown(c, account, id)
}

/// How long a read mark that came before its message is kept.
const READ_EARLY_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// Whether the account read `m` on another device before it arrived
/// here (the mark is used up).
pub(super) fn read_early(c: &Connection, account: &str, m: &DmRow) -> Result<bool, StoreError> {
    let taken = c.execute(
        "DELETE FROM dm_read_early WHERE account = ?1 AND id = ?2 AND conversation_key = ?3",
        params![account, m.id, conversation_key(&m.conversation)],
    )?;
    Ok(taken > 0)
}

/// Moves the account's own message `id` (in `conversation`) to `state`
/// if that is forward; the row as it is now, if it moved.
pub(super) fn advance(
    c: &Connection,
    account: &str,
    conversation: &str,
    id: &str,
    state: DmState,
) -> Result<Option<DmRow>, StoreError> {
    let Some(now) = one(c, account, id)? else {
        return Ok(None);
    };
    let forward = now.state < state && now.state != DmState::Failed;
    let same = conversation_key(&now.conversation) == conversation_key(conversation);
    if now.sender != account || !same || !forward {
        return Ok(None);
    }
    c.execute(
        "UPDATE dms SET state = ?3 WHERE account = ?1 AND id = ?2",
        params![account, id, state.as_str()],
    )?;
    shown(c, account, id)
}

#[cfg(test)]
mod tests {
    use super::Receipt;
    use crate::dm::olm::Olm;
    use crate::store::{DmRow, DmState, Store};

    fn from_bob(n: u32) -> DmRow {
        DmRow {
            id: format!("{n:08}-0000-7000-8000-000000000000"),
            conversation: "bob".into(),
            sender: "bob".into(),
            sent_at_ms: u64::from(n),
            text: format!("message {n}"),
            state: DmState::Received,
            ..DmRow::default()
        }
    }

    fn read_by_me(rows: &[&DmRow]) -> Receipt {
        Receipt {
            conversation: "bob".into(),
            ids: rows.iter().map(|r| r.id.clone()).collect(),
            state: DmState::Read,
            by_me: true,
        }
    }

    async fn keep(s: &Store, messages: Vec<DmRow>, receipts: Vec<Receipt>) {
        s.dm_keep("ann", Olm::new().pickle(&[1; 32]), messages, receipts, 0)
            .await
            .expect("keep");
    }

    #[tokio::test]
    async fn read_on_another_device_is_read_here_also_when_the_mark_comes_first() {
        let s = Store::open_in_memory().expect("store");
        let (first, second) = (from_bob(1), from_bob(2));
        keep(&s, vec![first.clone()], Vec::new()).await;
        // Ann read both on her phone; the mark reaches this device before
        // the second message does.
        keep(&s, Vec::new(), vec![read_by_me(&[&first, &second])]).await;
        keep(&s, vec![second.clone()], Vec::new()).await;
        let h = s.dm_history("ann", "bob", None, 10).await.expect("history");
        let states: Vec<DmState> = h.iter().map(|r| r.state).collect();
        assert_eq!(states, [DmState::Read, DmState::Read]);
        let list = s.dm_conversations("ann").await.expect("list");
        assert_eq!(list[0].unread, 0);
        // A third that no mark named arrives unread.
        keep(&s, vec![from_bob(3)], Vec::new()).await;
        let list = s.dm_conversations("ann").await.expect("list");
        assert_eq!(list[0].unread, 1);
    }
}
