//! How a direct message reads back from the local store: its state, the
//! row the API shows, the conversation key rows are found by. The bottom
//! of the DM store: `dms.rs`, `dm_edits.rs` and `dm_receipts.rs` build on
//! it.

use rusqlite::{params, Connection};
use segchat_proto::dm::DmFile;
use segchat_proto::edits::RefKind;
use segchat_proto::files::FileRef;
use serde::Serialize;

use super::rows::{Quote, Reaction};
use super::StoreError;

/// How far a direct message got. Sent ones move pending → sent →
/// delivered → read (or to failed, from pending only); received ones
/// received → read. A state never moves back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DmState {
    #[default]
    Pending,
    Failed,
    Sent,
    Received,
    Delivered,
    Read,
}

impl DmState {
    pub fn as_str(self) -> &'static str {
        match self {
            DmState::Pending => "pending",
            DmState::Failed => "failed",
            DmState::Sent => "sent",
            DmState::Received => "received",
            DmState::Delivered => "delivered",
            DmState::Read => "read",
        }
    }

    fn parse(s: &str) -> Result<DmState, StoreError> {
        Ok(match s {
            "pending" => DmState::Pending,
            "failed" => DmState::Failed,
            "sent" => DmState::Sent,
            "received" => DmState::Received,
            "delivered" => DmState::Delivered,
            "read" => DmState::Read,
            other => return Err(StoreError::Corrupt(format!("dm state {other:?}"))),
        })
    }
}

/// A direct message as this node keeps and shows it: a message or a
/// reply as the edits, deletion and reactions pointing at it left it, or
/// (only inside the node: the outbox, what arrived) one of those actions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DmRow {
    pub id: String,
    /// The other members, sorted, joined by `,`.
    pub conversation: String,
    pub sender: String,
    pub sent_at_ms: u64,
    /// The text shown: the latest edit's, '' once deleted (of an action:
    /// the edit's text, the emoji, or '' for a deletion).
    pub text: String,
    pub state: DmState,
    /// `server` or `p2p`, once it left or arrived.
    pub path: Option<String>,
    /// Why it failed, for a failed one.
    pub error: Option<String>,
    /// What it does to another message and which (a reply, an edit, …).
    #[serde(skip)]
    pub re: Option<(RefKind, String)>,
    /// The message this one replies to.
    pub reply_to: Option<String>,
    /// That message as it is shown now, if this device has it.
    pub quote: Option<Quote>,
    /// When it was last edited.
    pub edited_ms: Option<u64>,
    pub deleted: bool,
    pub reactions: Vec<Reaction>,
    /// The file it shares (gone once deleted).
    pub file: Option<Box<RowFile>>,
}

/// The file a direct message shares, as a row shows it: the key stays in
/// the node, which decrypts for its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowFile {
    #[serde(flatten)]
    pub file: FileRef,
    #[serde(skip)]
    pub key: String,
}

impl From<DmFile> for Box<RowFile> {
    fn from(f: DmFile) -> Self {
        Box::new(RowFile {
            file: f.file,
            key: f.key,
        })
    }
}

impl DmRow {
    /// The file as the payload carries it: reference and key.
    pub fn dm_file(&self) -> Option<DmFile> {
        let f = self.file.as_deref()?;
        Some(DmFile {
            file: f.file.clone(),
            key: f.key.clone(),
        })
    }

    /// The JSON kept in `dms.file`.
    pub(super) fn file_json(&self) -> Option<String> {
        self.dm_file().and_then(|f| serde_json::to_string(&f).ok())
    }

    /// Whether it changes another message (an edit, a deletion, a
    /// reaction) rather than being shown itself.
    pub fn is_action(&self) -> bool {
        RefKind::is_action(self.re.as_ref().map(|r| r.0))
    }

    /// The message an action changes.
    pub fn target(&self) -> Option<&str> {
        self.re
            .as_ref()
            .filter(|_| self.is_action())
            .map(|r| r.1.as_str())
    }
}

/// The key of a conversation named `conversation` (its other members,
/// joined by `,`): the names lowercased, sorted, each once. Rows are
/// found by it, so a name typed in another case is the same conversation.
pub(crate) fn conversation_key(conversation: &str) -> String {
    let mut names: Vec<String> = conversation.split(',').map(str::to_lowercase).collect();
    names.sort();
    names.dedup();
    names.join(",")
}

pub(super) const COLUMNS: &str =
    "id, conversation, sender, sent_at_ms, COALESCE(shown, text), state, \
     path, error, re_kind, re_id, edited_ms, deleted, file";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(DmRow, String)> {
    let state: String = r.get(5)?;
    let kind: Option<String> = r.get(8)?;
    let re_id: Option<String> = r.get(9)?;
    let re = kind.as_deref().and_then(RefKind::parse).zip(re_id);
    let deleted: bool = r.get(11)?;
    // A file that does not read back is shown as none.
    let file = r
        .get::<_, Option<String>>(12)?
        .filter(|_| !deleted)
        .and_then(|j| serde_json::from_str::<DmFile>(&j).ok());
    Ok((
        DmRow {
            id: r.get(0)?,
            conversation: r.get(1)?,
            sender: r.get(2)?,
            sent_at_ms: r.get::<_, i64>(3)? as u64,
            text: r.get(4)?,
            path: r.get(6)?,
            error: r.get(7)?,
            reply_to: re
                .as_ref()
                .filter(|r| r.0 == RefKind::Reply)
                .map(|r| r.1.clone()),
            re,
            edited_ms: r.get::<_, Option<i64>>(10)?.map(|t| t as u64),
            deleted,
            file: file.map(Into::into),
            ..DmRow::default()
        },
        state,
    ))
}

pub(super) fn rows(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DmRow>, StoreError> {
    let mut stmt = c.prepare_cached(sql)?;
    let found = stmt.query_map(params, row)?;
    let mut out = Vec::new();
    for f in found {
        let (mut r, state) = f?;
        r.state = DmState::parse(&state)?;
        out.push(r);
    }
    Ok(out)
}

pub(super) fn one(c: &Connection, account: &str, id: &str) -> Result<Option<DmRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM dms WHERE account = ?1 AND id = ?2");
    Ok(rows(c, &sql, params![account, id])?.pop())
}
