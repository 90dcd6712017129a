//! Replies, edits, deletions and reactions in direct messages, by the
//! rules channels follow ([`segchat_proto::edits`]), so every device of
//! the conversation ends the same from the same messages whatever order
//! they arrived in:
//!
//! - an edit or a deletion counts only from the target's sender, in the
//!   target's conversation, on a shown message (not on another action);
//! - edits are last-writer-wins by `(sent_at_ms, id)`; a deletion beats
//!   every edit and is final;
//! - a reaction counts while its sender's latest react/unreact for that
//!   emoji is `react`; any member may react;
//! - an action that arrives before its target is kept and applied when
//!   the target arrives;
//! - the text a deletion or a newer edit replaced is removed from this
//!   device (a row still waiting in the outbox keeps its text until it
//!   has left, then loses it too).
//!
//! Actions are rows of their own (the outbox and the receivers carry them
//! like messages); what edits and a deletion did is kept on the target
//! (`shown`, `edit_id`, `edited_ms`, `deleted`); reactions and a reply's
//! quote are read when rows are shown ([`decorate`]).

use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::edits::RefKind;

use super::dm_rows::{conversation_key, one, DmRow};
use super::rows::{tally, Quote};
use super::StoreError;

/// Which rows of `dms` are shown messages (not edits, deletions or
/// reactions).
pub(super) const SHOWN: &str = "(re_kind IS NULL OR re_kind = 'reply')";

/// After a row of the account was stored or left the outbox: what the
/// edits and deletion pointing at message `target` make of it now. A
/// target this device does not have yet, or one that is itself an action,
/// is left alone. Text is removed only once the action that replaced it
/// has left (or arrived): one that fails leaves the message as it was.
pub(super) fn settle(c: &Connection, account: &str, target: &str) -> Result<(), StoreError> {
    let found: Option<(String, String, Option<String>)> = c
        .prepare_cached(
            "SELECT conversation_key, sender, re_kind FROM dms WHERE account = ?1 AND id = ?2",
        )?
        .query_row(params![account, target], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((conversation, sender, kind)) = found else {
        return Ok(());
    };
    if RefKind::is_action(kind.as_deref().and_then(RefKind::parse)) {
        return Ok(());
    }
    // (id, kind, sent_at_ms, still to leave), oldest first: the last edit
    // wins; failed ones do not count.
    let acts: Vec<(String, String, i64, bool)> = c
        .prepare_cached(
            "SELECT id, re_kind, sent_at_ms, outbox = 1 FROM dms
             WHERE account = ?1 AND re_id = ?2 AND re_kind IN ('edit', 'delete')
               AND conversation_key = ?3 AND sender = ?4 AND state != 'failed'
             ORDER BY sent_at_ms, id",
        )?
        .query_map(params![account, target, conversation, sender], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let deletion = acts.iter().find(|a| a.1 == "delete");
    let winner = acts
        .iter()
        .rev()
        .find(|a| a.1 == "edit")
        .filter(|_| deletion.is_none());
    match (deletion, winner) {
        (Some(_), _) => {
            c.prepare_cached(
                "UPDATE dms SET shown = '', deleted = 1, edit_id = NULL, edited_ms = NULL
                 WHERE account = ?1 AND id = ?2",
            )?
            .execute(params![account, target])?;
        }
        (None, Some((id, _, at, _))) => {
            c.prepare_cached(
                "UPDATE dms SET shown = (SELECT text FROM dms WHERE account = ?1 AND id = ?3),
                     edit_id = ?3, edited_ms = ?4, deleted = 0
                 WHERE account = ?1 AND id = ?2",
            )?
            .execute(params![account, target, id, at])?;
        }
        (None, None) => {
            // Nothing (any more: a failed action) changes it.
            c.prepare_cached(
                "UPDATE dms SET shown = NULL, edit_id = NULL, edited_ms = NULL, deleted = 0
                 WHERE account = ?1 AND id = ?2 AND (shown IS NOT NULL OR deleted = 1)",
            )?
            .execute(params![account, target])?;
            return Ok(());
        }
    }
    // What decides it has left or arrived: the text it replaced goes (a
    // row still to leave keeps its own until then).
    let decided = deletion.or(winner).is_some_and(|a| !a.3);
    if !decided {
        return Ok(());
    }
    let mut blank = c.prepare_cached(
        "UPDATE dms SET text = '' WHERE account = ?1 AND id = ?2 AND outbox = 0 AND text != ''",
    )?;
    if deletion.is_some() {
        // A deleted message's file is no longer served or shown.
        c.prepare_cached(
            "UPDATE dms SET file = NULL WHERE account = ?1 AND id = ?2 AND outbox = 0",
        )?
        .execute(params![account, target])?;
    }
    blank.execute(params![account, target])?;
    for (id, kind, _, _) in &acts {
        if kind == "edit" && winner.is_none_or(|w| &w.0 != id) {
            blank.execute(params![account, id])?;
        }
    }
    Ok(())
}

/// Fills in what shown rows carry of others: a reply's quote (from the
/// same conversation) and reactions by emoji, in the order each first
/// came.
pub(super) fn decorate(
    c: &Connection,
    account: &str,
    rows: &mut [DmRow],
) -> Result<(), StoreError> {
    let mut quote = c.prepare_cached(&format!(
        "SELECT id, sender, COALESCE(shown, text), deleted,
                CASE WHEN deleted = 0 THEN json_extract(file, '$.name') END FROM dms
         WHERE account = ?1 AND id = ?2 AND conversation_key = ?3 AND {SHOWN}"
    ))?;
    let mut reactions = c.prepare_cached(
        "SELECT text, sender, re_kind FROM dms
         WHERE account = ?1 AND re_id = ?2 AND conversation_key = ?3
           AND re_kind IN ('react', 'unreact') AND state != 'failed'
         ORDER BY sent_at_ms, id",
    )?;
    for row in rows.iter_mut() {
        let key = conversation_key(&row.conversation);
        if let Some(to) = &row.reply_to {
            row.quote = quote
                .query_row(params![account, to, key], |r| {
                    Ok(Quote {
                        id: r.get(0)?,
                        author: r.get(1)?,
                        body: r.get(2)?,
                        deleted: r.get(3)?,
                        file: r.get(4)?,
                    })
                })
                .optional()?;
        }
        row.reactions.clear();
        if row.deleted {
            continue;
        }
        let acts = reactions
            .query_map(params![account, row.id, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)? == "react"))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        row.reactions = tally(acts, |u| u.eq_ignore_ascii_case(account));
    }
    Ok(())
}

/// The shown message `id` as the API shows it (its quote and reactions
/// filled in); `None` for an action or one this device does not have.
pub(super) fn shown(c: &Connection, account: &str, id: &str) -> Result<Option<DmRow>, StoreError> {
    let Some(row) = one(c, account, id)?.filter(|r| !r.is_action()) else {
        return Ok(None);
    };
    let mut found = [row];
    decorate(c, account, &mut found)?;
    let [row] = found;
    Ok(Some(row))
}

#[cfg(test)]
mod tests {
    use segchat_proto::edits::RefKind;

    use crate::dm::olm::Olm;
    use crate::store::{DmRow, DmState, Store};

    const KEY: [u8; 32] = [7; 32];

    /// Row `n` of ann's conversation with bob (as ann's device keeps it),
    /// by `sender` at `at`, doing `re` to row `to`.
    fn row(n: u32, sender: &str, at: u64, text: &str, re: Option<(RefKind, u32)>) -> DmRow {
        DmRow {
            id: format!("{n:08}-0000-7000-8000-000000000000"),
            conversation: "bob".into(),
            sender: sender.into(),
            sent_at_ms: at,
            text: text.into(),
            state: if sender == "ann" {
                DmState::Sent
            } else {
                DmState::Received
            },
            reply_to: re
                .filter(|r| r.0 == RefKind::Reply)
                .map(|r| row(r.1, "", 0, "", None).id),
            re: re.map(|(k, to)| (k, row(to, "", 0, "", None).id)),
            ..DmRow::default()
        }
    }

    /// Keeps `rows` on ann's device, one batch each, in the given order.
    async fn keep(s: &Store, rows: Vec<DmRow>) {
        for r in rows {
            s.dm_keep("ann", Olm::new().pickle(&KEY), vec![r], Vec::new(), 0)
                .await
                .expect("keep");
        }
    }

    /// What row `n` holds as its own text.
    async fn raw_text(s: &Store, n: u32) -> String {
        let id = row(n, "", 0, "", None).id;
        s.read(move |c| Ok(c.query_row("SELECT text FROM dms WHERE id = ?1", [id], |r| r.get(0))?))
            .await
            .expect("row")
    }

    async fn shown(s: &Store) -> Vec<DmRow> {
        s.dm_history("ann", "bob", None, 50).await.expect("history")
    }

    #[tokio::test]
    async fn edits_and_a_deletion_end_the_same_in_any_order_of_arrival() {
        let rows = vec![
            row(1, "bob", 10, "hello", None),
            row(2, "bob", 20, "hello!", Some((RefKind::Edit, 1))),
            row(3, "bob", 30, "hello!!", Some((RefKind::Edit, 1))),
        ];
        let mut ends = Vec::new();
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let s = Store::open_in_memory().expect("store");
            keep(&s, order.iter().map(|&i| rows[i].clone()).collect()).await;
            let h = shown(&s).await;
            assert_eq!(h.len(), 1, "actions are not shown: {h:?}");
            assert_eq!(h[0].text, "hello!!", "the last edit wins ({order:?})");
            assert_eq!(h[0].edited_ms, Some(30));
            ends.push(h);
        }
        assert!(ends.windows(2).all(|w| w[0] == w[1]));

        // A deletion beats every edit, even one after it, and the text
        // it replaced is gone from the store.
        let s = Store::open_in_memory().expect("store");
        let mut all = rows.clone();
        all.push(row(4, "bob", 25, "", Some((RefKind::Delete, 1))));
        all.reverse();
        keep(&s, all).await;
        let h = shown(&s).await;
        assert!(h[0].deleted && h[0].text.is_empty(), "{h:?}");
        for id in [1, 2, 3] {
            assert_eq!(raw_text(&s, id).await, "", "row {id} keeps no text");
        }
        assert!(s
            .dm_search("ann", vec!["hello".into()], 10)
            .await
            .expect("search")
            .is_empty());
    }

    #[tokio::test]
    async fn only_the_sender_edits_or_deletes_and_not_across_conversations() {
        let s = Store::open_in_memory().expect("store");
        let mut elsewhere = row(4, "bob", 40, "", Some((RefKind::Delete, 1)));
        elsewhere.conversation = "bob,cat".into();
        keep(
            &s,
            vec![
                row(1, "bob", 10, "mine", None),
                row(2, "ann", 20, "not yours", Some((RefKind::Edit, 1))),
                row(3, "ann", 30, "", Some((RefKind::Delete, 1))),
                elsewhere,
            ],
        )
        .await;
        let h = shown(&s).await;
        assert_eq!((h[0].text.as_str(), h[0].deleted), ("mine", false));
        assert_eq!(h[0].edited_ms, None);
    }

    #[tokio::test]
    async fn reactions_count_each_members_latest_and_replies_quote_as_shown() {
        let s = Store::open_in_memory().expect("store");
        keep(
            &s,
            vec![
                row(1, "ann", 10, "lunch?", None),
                row(2, "bob", 20, "👍", Some((RefKind::React, 1))),
                row(3, "ann", 21, "👍", Some((RefKind::React, 1))),
                row(4, "bob", 22, "🎉", Some((RefKind::React, 1))),
                row(5, "bob", 23, "🎉", Some((RefKind::Unreact, 1))),
                row(6, "bob", 30, "yes", Some((RefKind::Reply, 1))),
                row(7, "ann", 40, "lunch at 1?", Some((RefKind::Edit, 1))),
            ],
        )
        .await;
        let h = shown(&s).await;
        assert_eq!(h.len(), 2);
        let r = &h[0].reactions;
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!((r[0].emoji.as_str(), r[0].count, r[0].me), ("👍", 2, true));
        assert_eq!(r[0].users, ["bob", "ann"]);
        let quote = h[1].quote.as_ref().expect("quote");
        assert_eq!(quote.body, "lunch at 1?", "the quote shows the edit");
        assert_eq!(h[1].reply_to.as_deref(), Some(h[0].id.as_str()));
    }

    #[tokio::test]
    async fn a_message_waiting_in_the_outbox_keeps_its_text_until_it_has_left() {
        let s = Store::open_in_memory().expect("store");
        let mut first = row(1, "ann", 10, "typo", None);
        first.state = DmState::Pending;
        s.dm_queue("ann", first.clone()).await.expect("queue");
        let mut fix = row(2, "ann", 20, "fixed", Some((RefKind::Edit, 1)));
        fix.state = DmState::Pending;
        let now = s.dm_queue("ann", fix).await.expect("queue").expect("shown");
        assert_eq!(now.text, "fixed", "an edit shows at once");
        let pending = s.dm_pending("ann").await.expect("pending");
        let texts: Vec<&str> = pending.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["typo", "fixed"], "each leaves with its own text");
        assert_eq!(raw_text(&s, 1).await, "typo");
        s.dm_sent("ann", &first.id, Ok("server"))
            .await
            .expect("sent");
        assert_eq!(raw_text(&s, 1).await, "typo", "the edit has not left yet");
        s.dm_sent("ann", &row(2, "", 0, "", None).id, Ok("server"))
            .await
            .expect("sent");
        assert_eq!(
            raw_text(&s, 1).await,
            "",
            "replaced text goes once both left"
        );
    }

    #[tokio::test]
    async fn an_edit_or_a_deletion_that_fails_leaves_the_message_as_it_was() {
        let s = Store::open_in_memory().expect("store");
        keep(&s, vec![row(1, "ann", 10, "first", None)]).await;
        for (n, kind, text) in [(2, RefKind::Edit, "second"), (3, RefKind::Delete, "")] {
            let mut act = row(n, "ann", 20 + n as u64, text, Some((kind, 1)));
            act.state = DmState::Pending;
            let shown = s.dm_queue("ann", act.clone()).await.expect("queue");
            assert!(shown.expect("shown").text != "first", "shown at once");
            let after = s
                .dm_sent("ann", &act.id, Err("blocked".into()))
                .await
                .expect("failed")
                .expect("shown");
            assert_eq!((after.text.as_str(), after.deleted), ("first", false));
            assert_eq!(after.edited_ms, None);
        }
        assert_eq!(raw_text(&s, 1).await, "first");
    }

    #[tokio::test]
    async fn a_conversation_is_one_whatever_the_case_of_its_names() {
        let s = Store::open_in_memory().expect("store");
        let mut shouted = row(2, "ann", 20, "HI", None);
        shouted.conversation = "BOB".into();
        let mut group = row(3, "bob", 30, "group", None);
        group.conversation = "BOB,mallory".into();
        keep(&s, vec![row(1, "bob", 10, "hi", None), shouted, group]).await;
        for spelled in ["bob", "Bob", "BOB"] {
            let h = s
                .dm_history("ann", spelled, None, 50)
                .await
                .expect("history");
            let texts: Vec<&str> = h.iter().map(|r| r.text.as_str()).collect();
            assert_eq!(texts, ["hi", "HI"], "{spelled}");
            assert!(
                h.iter().all(|r| r.conversation == "bob"),
                "first spelling shown"
            );
        }
        let list = s.dm_conversations("ann").await.expect("list");
        assert_eq!(list.len(), 2, "the group is a conversation of its own");
    }

    #[tokio::test]
    async fn a_reply_quotes_only_a_shown_message_and_reactions_have_few_kinds() {
        let s = Store::open_in_memory().expect("store");
        let mut rows = vec![
            row(1, "bob", 10, "hello", None),
            row(2, "bob", 11, "👍", Some((RefKind::React, 1))),
            row(
                3,
                "ann",
                12,
                "quoting a reaction",
                Some((RefKind::Reply, 2)),
            ),
        ];
        for n in 0..30u32 {
            let emoji = format!("e{n}");
            rows.push(row(
                100 + n,
                "bob",
                20 + n as u64,
                &emoji,
                Some((RefKind::React, 1)),
            ));
        }
        keep(&s, rows).await;
        let h = shown(&s).await;
        assert_eq!(h[1].quote, None, "an action is not quoted");
        assert_eq!(h[0].reactions.len(), crate::store::rows::MAX_REACTION_KINDS);
    }
}
