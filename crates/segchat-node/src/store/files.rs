//! What the local store knows of files: which messages share a file
//! (`messages.file`, indexed by its hash), and the files this node
//! fetched or shared (`files`). The bytes are in the blob store.

use rusqlite::{params, OptionalExtension};
use segchat_proto::dm::DmFile;
use segchat_proto::files::FileRef;

use super::{Store, StoreError};

/// Where a file stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Being fetched, or stopped part way (it resumes from what is here).
    Fetching,
    /// Here whole, verified: served to peers who may read its channel.
    Complete,
    /// The last fetch failed (`reason`); asking again resumes it.
    Failed,
}

impl FileState {
    fn as_str(self) -> &'static str {
        match self {
            FileState::Fetching => "fetching",
            FileState::Complete => "complete",
            FileState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<FileState, StoreError> {
        Ok(match s {
            "fetching" => FileState::Fetching,
            "complete" => FileState::Complete,
            "failed" => FileState::Failed,
            other => return Err(StoreError::Corrupt(format!("file state {other:?}"))),
        })
    }
}

/// A file this node fetched or shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub file: FileRef,
    /// The channel it was fetched for or first shared in.
    pub channel: String,
    pub state: FileState,
    pub reason: Option<String>,
    /// Here only as a host's copy for others (see `keep_for_others`).
    pub for_others: bool,
}

impl Store {
    /// The file `hash` as a message in `channel` shares it (not deleted),
    /// if one does.
    pub async fn file_shared_in(
        &self,
        channel: String,
        hash: String,
    ) -> Result<Option<FileRef>, StoreError> {
        self.read(move |c| {
            let json: Option<String> = c
                .prepare_cached(
                    "SELECT file FROM messages
                     WHERE file_hash = ?1 AND channel = ?2 AND file IS NOT NULL AND deleted = 0
                     LIMIT 1",
                )?
                .query_row(params![hash, channel], |r| r.get(0))
                .optional()?;
            json.map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("message file: {e}")))
        })
        .await
    }

    /// The file `hash` as the first direct message here that shares it
    /// (not deleted) says: its reference and key.
    pub async fn dm_file(&self, hash: String) -> Result<Option<DmFile>, StoreError> {
        self.read(move |c| {
            let json: Option<String> = c
                .prepare_cached(
                    "SELECT file FROM dms WHERE file_hash = ?1 AND file IS NOT NULL
                     ORDER BY stored_at_ms LIMIT 1",
                )?
                .query_row(params![hash], |r| r.get(0))
                .optional()?;
            json.map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("direct message file: {e}")))
        })
        .await
    }

    /// Everyone in a conversation here where a direct message (not
    /// deleted) shares file `hash`: who may fetch it from this node, and
    /// whose nodes may hold it.
    pub async fn dm_file_members(&self, hash: String) -> Result<Vec<String>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT account, conversation FROM dms
                 WHERE file_hash = ?1 AND file IS NOT NULL LIMIT 64",
            )?;
            let rows = stmt.query_map(params![hash], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut names = Vec::new();
            for row in rows {
                let (account, conversation) = row?;
                names.push(account.to_lowercase());
                names.extend(conversation.split(',').map(str::to_lowercase));
            }
            names.sort();
            names.dedup();
            Ok(names)
        })
        .await
    }

    /// Every file this node records (fetched, being fetched, or shared):
    /// what the blob store's collector must leave.
    pub async fn recorded_files(&self) -> Result<Vec<String>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT hash FROM files")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    /// Files recorded here, unchanged since `before_ms`, that no message
    /// (in a channel, not deleted; or a direct message, its file not
    /// removed) shares any more: at most 256.
    pub async fn unshared_files(&self, before_ms: u64) -> Result<Vec<String>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT hash FROM files f WHERE updated_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.file_hash = f.hash
                                   AND m.file IS NOT NULL AND m.deleted = 0)
                   AND NOT EXISTS (SELECT 1 FROM dms d WHERE d.file_hash = f.hash
                                   AND d.file IS NOT NULL)
                 LIMIT 256",
            )?;
            let rows = stmt.query_map(params![before_ms as i64], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    /// Forgets file `hash`, unless a message came to share it meanwhile.
    /// Whether it did.
    pub async fn forget_file(&self, hash: String) -> Result<bool, StoreError> {
        self.with(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM files WHERE hash = ?1
                       AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.file_hash = ?1
                                       AND m.file IS NOT NULL AND m.deleted = 0)
                       AND NOT EXISTS (SELECT 1 FROM dms d WHERE d.file_hash = ?1
                                       AND d.file IS NOT NULL)",
                )?
                .execute(params![hash])?;
            Ok(n == 1)
        })
        .await
    }

    /// Every channel a message here shares `hash` in (not deleted).
    pub async fn file_channels(&self, hash: String) -> Result<Vec<String>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT channel FROM messages
                 WHERE file_hash = ?1 AND file IS NOT NULL AND deleted = 0 LIMIT 64",
            )?;
            let rows = stmt.query_map(params![hash], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    /// Records where file `record.file` stands.
    pub async fn set_file(&self, record: FileRecord, mine: bool) -> Result<(), StoreError> {
        self.with(move |c| {
            let f = &record.file;
            c.prepare_cached(
                "INSERT INTO files
                     (hash, channel, name, size, mime, state, reason, mine, for_others, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (hash) DO UPDATE SET state = ?6, reason = ?7,
                     mine = MAX(mine, ?8), for_others = MIN(for_others, ?9), updated_ms = ?10",
            )?
            .execute(params![
                f.hash,
                record.channel,
                f.name,
                f.size as i64,
                f.mime,
                record.state.as_str(),
                record.reason,
                mine,
                record.for_others && !mine,
                crate::clock::now_ms() as i64,
            ])?;
            Ok(())
        })
        .await
    }

    /// What this node knows of file `hash`, if it fetched or shared it.
    pub async fn file_record(&self, hash: String) -> Result<Option<FileRecord>, StoreError> {
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {RECORD} FROM files WHERE hash = ?1"))?
                .query_row(params![hash], record)
                .optional()?
                .transpose()
        })
        .await
    }

    /// Counts file `hash` as this node's user's own from now on: they
    /// asked for it.
    pub async fn claim_file(&self, hash: String) -> Result<(), StoreError> {
        self.with(move |c| {
            c.prepare_cached("UPDATE files SET for_others = 0 WHERE hash = ?1")?
                .execute(params![hash])?;
            Ok(())
        })
        .await
    }

    /// Bytes of the copies kept for others, whole or being fetched.
    pub async fn kept_for_others(&self) -> Result<u64, StoreError> {
        self.read(move |c| {
            let total: i64 = c
                .prepare_cached(
                    "SELECT COALESCE(SUM(size), 0) FROM files
                     WHERE for_others = 1 AND state != 'failed'",
                )?
                .query_row([], |r| r.get(0))?;
            Ok(total.max(0) as u64)
        })
        .await
    }

    /// Files left part way (by a stop or a crash), to resume.
    pub async fn unfinished_files(&self) -> Result<Vec<FileRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD} FROM files WHERE state = 'fetching' ORDER BY updated_ms LIMIT 64"
            ))?;
            let rows = stmt.query_map([], record)?;
            rows.map(|r| r?).collect()
        })
        .await
    }
}

/// The columns [`record`] reads.
const RECORD: &str = "hash, channel, name, size, mime, state, reason, for_others";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<FileRecord, StoreError>> {
    let state: String = r.get(5)?;
    let file = FileRef {
        hash: r.get(0)?,
        name: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        mime: r.get(4)?,
        thumb: None,
    };
    let (channel, reason, for_others) = (r.get(1)?, r.get(6)?, r.get(7)?);
    Ok(FileState::parse(&state).map(|state| FileRecord {
        file,
        channel,
        state,
        reason,
        for_others,
    }))
}
