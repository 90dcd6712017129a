//! Sealed copies of what waits in the DM outbox. A message is encrypted
//! once per recipient device and the copy is kept in the same transaction
//! as the Olm state that made it, so every retry sends the same bytes: a
//! message that takes many tries does not move the ratchet on each time
//! (a receiver skips only so many message keys), and costs no encryption
//! after the first. The copies go when the message leaves the outbox.

use std::collections::HashMap;

use rusqlite::params;

use super::{Store, StoreError};
use crate::dm::olm::Pickled;

/// A sealed copy to keep: the message's id, the recipient device's
/// Curve25519 key, the envelope's body.
pub(crate) type SealedCopy = (String, String, String);

impl Store {
    /// The kept copies of the account's message `id`, by recipient
    /// device (its Curve25519 key).
    pub(crate) async fn dm_sealed(
        &self,
        account: &str,
        id: &str,
    ) -> Result<HashMap<String, String>, StoreError> {
        let (account, id) = (account.to_owned(), id.to_owned());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT device, body FROM dm_sealed WHERE account = ?1 AND id = ?2",
            )?;
            let found = stmt.query_map(params![account, id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(found.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// In one transaction: the Olm state after sealing and the copies it
    /// made.
    pub(crate) async fn dm_seal_keep(
        &self,
        account: &str,
        olm: Pickled,
        copies: Vec<SealedCopy>,
    ) -> Result<(), StoreError> {
        let account = account.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            super::olm::save(&tx, &account, &olm)?;
            for (id, device, body) in &copies {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO dm_sealed (account, id, device, body)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![account, id, device, body])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::dm::olm::Olm;
    use crate::store::{DmRow, DmState, Receipt, Store};

    /// Ann's message `id` to bob, pending.
    fn to_bob(id: &str) -> DmRow {
        DmRow {
            id: id.into(),
            conversation: "bob".into(),
            sender: "ann".into(),
            sent_at_ms: 1,
            text: "hi".into(),
            ..DmRow::default()
        }
    }

    #[tokio::test]
    async fn copies_are_kept_with_the_state_until_the_message_leaves_the_outbox() {
        let s = Store::open_in_memory().expect("store");
        let id = "00000001-0000-7000-8000-000000000000";
        s.dm_queue("ann", to_bob(id)).await.expect("queue");
        let olm = Olm::new();
        let copies = vec![
            (
                id.to_owned(),
                "curve-a".to_owned(),
                "sealed for a".to_owned(),
            ),
            (
                id.to_owned(),
                "curve-b".to_owned(),
                "sealed for b".to_owned(),
            ),
        ];
        s.dm_seal_keep("ann", olm.pickle(&[1; 32]), copies)
            .await
            .expect("keep");
        assert!(s.olm_state("ann").await.expect("state").is_some());
        let kept = s.dm_sealed("ann", id).await.expect("read");
        assert_eq!(kept.len(), 2);
        assert_eq!(kept["curve-b"], "sealed for b");
        assert!(s.dm_sealed("bob", id).await.expect("read").is_empty());

        s.dm_sent("ann", id, Ok("server")).await.expect("sent");
        assert!(s.dm_sealed("ann", id).await.expect("read").is_empty());
    }

    #[tokio::test]
    async fn a_receipt_before_the_send_has_finished_leaves_the_message_in_the_outbox() {
        let s = Store::open_in_memory().expect("store");
        let id = "00000002-0000-7000-8000-000000000000";
        s.dm_queue("ann", to_bob(id)).await.expect("queue");
        // A fast peer's receipt: delivered, though the server path has
        // not taken it for the other devices yet.
        let receipt = Receipt {
            conversation: "bob".into(),
            ids: vec![id.into()],
            state: DmState::Delivered,
            by_me: false,
        };
        let kept = s
            .dm_keep(
                "ann",
                Olm::new().pickle(&[1; 32]),
                Vec::new(),
                vec![receipt],
                0,
            )
            .await
            .expect("keep");
        assert_eq!(kept.updated[0].state, DmState::Delivered);
        let waiting = s.dm_pending("ann").await.expect("outbox");
        assert_eq!(waiting.len(), 1, "still to be sent to the rest");
        s.dm_sent("ann", id, Ok("server")).await.expect("sent");
        assert!(s.dm_pending("ann").await.expect("outbox").is_empty());
        let h = s.dm_history("ann", "bob", None, 10).await.expect("history");
        assert_eq!(h[0].state, DmState::Delivered, "the receipt's state stays");
    }
}
