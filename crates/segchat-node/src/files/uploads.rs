//! Resumable uploads: a file sent to the node in parts, over as many
//! requests as it takes, then shared as if it had come in one.
//!
//! Invariant: an upload's `offset` is the length of its part file on
//! disk, synced before it is answered, so the offset a client is told is
//! what a restart of the node finds. A part is appended only at the
//! offset the client names; anything else is a conflict the client
//! answers by asking where the upload stands.
//!
//! On disk an open upload is two files in `DATA_DIR/uploads`:
//! `r-<id>.part` (the bytes so far) and `r-<id>.size` (the size promised,
//! in decimal). Both go when the upload is shared, cancelled, or left
//! untouched for [`KEEP_FOR`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use segchat_proto::{Failure, Status};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

use super::disk_failure;

/// Most uploads open at once.
const MAX_OPEN: usize = 16;
/// How long an upload nobody adds to is kept.
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// Where an upload stands, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UploadStatus {
    pub id: Uuid,
    /// Bytes the node holds, from the start.
    pub offset: u64,
    /// Bytes promised.
    pub size: u64,
}

#[derive(Debug)]
struct Open {
    size: u64,
    offset: u64,
    touched: SystemTime,
    /// A part is being written.
    busy: bool,
    /// Cancelled while a part was being written: it goes when that ends.
    doomed: bool,
}

/// The open uploads of one node.
#[derive(Debug)]
pub(crate) struct Uploads {
    dir: PathBuf,
    open: Mutex<HashMap<Uuid, Open>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(id: Uuid) -> Failure {
    Failure::not_found(format!(
        "no upload {id} here (finished, cancelled or expired)"
    ))
}

/// A part being written. If its request goes away midway (its
/// connection dropped), the upload is freed again at what its file holds.
struct Writing<'a> {
    uploads: &'a Uploads,
    id: Uuid,
    armed: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let held = std::fs::metadata(self.uploads.part(self.id)).map_or(0, |m| m.len());
        let mut open = lock(&self.uploads.open);
        if let Some(o) = open.get_mut(&self.id) {
            if o.doomed {
                open.remove(&self.id);
                let _ = std::fs::remove_file(self.uploads.part(self.id));
                let _ = std::fs::remove_file(self.uploads.size_file(self.id));
                return;
            }
            o.busy = false;
            o.offset = held.min(o.size);
            o.touched = SystemTime::now();
        }
    }
}

impl Uploads {
    /// The uploads left in `dir` by an earlier run (younger than
    /// [`KEEP_FOR`]); everything else there is removed.
    pub(crate) fn load(dir: &Path) -> Uploads {
        let mut open = HashMap::new();
        let now = SystemTime::now();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let kept = name
                    .strip_prefix("r-")
                    .and_then(|n| n.strip_suffix(".size"))
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .and_then(|id| {
                        let size: u64 = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
                        let part = std::fs::metadata(dir.join(format!("r-{id}.part"))).ok()?;
                        let touched = part.modified().ok()?;
                        let fresh = now.duration_since(touched).unwrap_or_default() < KEEP_FOR;
                        (fresh && part.len() <= size).then_some((id, size, part.len(), touched))
                    });
                match kept {
                    Some((id, size, offset, touched)) => {
                        open.insert(
                            id,
                            Open {
                                size,
                                offset,
                                touched,
                                busy: false,
                                doomed: false,
                            },
                        );
                    }
                    // Parts are kept or dropped with their `.size`.
                    None if name.starts_with("r-") && name.ends_with(".part") => {}
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        // Parts whose `.size` went.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(id) = name
                    .strip_prefix("r-")
                    .and_then(|n| n.strip_suffix(".part"))
                else {
                    continue;
                };
                if !Uuid::parse_str(id).is_ok_and(|id| open.contains_key(&id)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Uploads {
            dir: dir.to_owned(),
            open: Mutex::new(open),
        }
    }

    fn part(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("r-{id}.part"))
    }

    fn size_file(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("r-{id}.size"))
    }

    /// Opens an upload of `size` bytes (at most `max`).
    pub(crate) async fn create(&self, size: u64, max: u64) -> Result<UploadStatus, Failure> {
        if size > max {
            return Err(Failure::new(
                Status::TooLarge,
                format!("this node takes files up to {max} bytes (--max-file-mib)"),
            ));
        }
        self.expire().await;
        let id = Uuid::now_v7();
        {
            let mut open = lock(&self.open);
            if open.len() >= MAX_OPEN {
                return Err(Failure::new(
                    Status::RateLimited,
                    format!("{MAX_OPEN} uploads are open; finish or cancel one first"),
                ));
            }
            open.insert(
                id,
                Open {
                    size,
                    offset: 0,
                    touched: SystemTime::now(),
                    busy: false,
                    doomed: false,
                },
            );
        }
        let made = async {
            tokio::fs::File::create(self.part(id))
                .await?
                .sync_all()
                .await?;
            tokio::fs::write(self.size_file(id), size.to_string()).await
        }
        .await;
        if let Err(e) = made {
            self.drop_files(id).await;
            lock(&self.open).remove(&id);
            return Err(disk_failure(&e));
        }
        Ok(UploadStatus {
            id,
            offset: 0,
            size,
        })
    }

    /// Where upload `id` stands.
    pub(crate) fn status(&self, id: Uuid) -> Result<UploadStatus, Failure> {
        lock(&self.open)
            .get(&id)
            .map(|o| UploadStatus {
                id,
                offset: o.offset,
                size: o.size,
            })
            .ok_or_else(|| not_found(id))
    }

    /// Appends `body` to upload `id` at `offset`, which must be where it
    /// stands. What arrives before a break is kept: the answer (or the
    /// next [`Uploads::status`]) says how far it got.
    pub(crate) async fn append<S, E>(
        &self,
        id: Uuid,
        offset: u64,
        body: S,
    ) -> Result<UploadStatus, Failure>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let size = {
            let mut open = lock(&self.open);
            let o = open.get_mut(&id).ok_or_else(|| not_found(id))?;
            if o.busy {
                return Err(Failure::new(
                    Status::Conflict,
                    "another part of this upload is being written",
                ));
            }
            if o.offset != offset {
                return Err(Failure::new(
                    Status::Conflict,
                    format!("the upload holds {} bytes; send from there", o.offset),
                ));
            }
            o.busy = true;
            o.size
        };
        let mut writing = Writing {
            uploads: self,
            id,
            armed: true,
        };
        let (written, result) = self.write(id, offset, size, body).await;
        writing.armed = false;
        let doomed = {
            let mut open = lock(&self.open);
            let doomed = open.get(&id).is_some_and(|o| o.doomed);
            if doomed {
                open.remove(&id);
            }
            doomed
        };
        if doomed {
            self.drop_files(id).await;
            return Err(not_found(id));
        }
        let mut open = lock(&self.open);
        let o = open.get_mut(&id).ok_or_else(|| not_found(id))?;
        o.busy = false;
        o.offset = offset + written;
        o.touched = SystemTime::now();
        let status = UploadStatus {
            id,
            offset: o.offset,
            size: o.size,
        };
        result.map(|()| status)
    }

    /// Writes what `body` brings at `offset`; answers how many bytes are
    /// on disk, synced, and whether the part arrived whole.
    async fn write<S, E>(
        &self,
        id: Uuid,
        offset: u64,
        size: u64,
        mut body: S,
    ) -> (u64, Result<(), Failure>)
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = match tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.part(id))
            .await
        {
            Ok(f) => f,
            Err(e) => return (0, Err(disk_failure(&e))),
        };
        // Whatever lies past the offset (never answered) goes.
        let start = async {
            file.set_len(offset).await?;
            file.seek(std::io::SeekFrom::Start(offset)).await
        };
        if let Err(e) = start.await {
            return (0, Err(disk_failure(&e)));
        }
        let mut written = 0u64;
        let mut result = Ok(());
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    result = Err(Failure::bad_request(format!("the part broke off: {e}")));
                    break;
                }
            };
            let room = size - offset - written;
            if chunk.len() as u64 > room {
                let _ = file.write_all(&chunk[..room as usize]).await;
                written += room;
                result = Err(Failure::new(
                    Status::TooLarge,
                    format!("the upload was opened for {size} bytes"),
                ));
                break;
            }
            if let Err(e) = file.write_all(&chunk).await {
                result = Err(disk_failure(&e));
                break;
            }
            written += chunk.len() as u64;
        }
        // What is answered is on disk; if it cannot be made so, nothing
        // of this part counts.
        let synced = async {
            file.flush().await?;
            file.sync_data().await
        };
        if let Err(e) = synced.await {
            let _ = file.set_len(offset).await;
            return (0, Err(disk_failure(&e)));
        }
        (written, result)
    }

    /// Takes upload `id`, which must be whole, out of the list: answers
    /// its part file, moved to `to`.
    pub(crate) async fn take(&self, id: Uuid, to: &Path) -> Result<u64, Failure> {
        let size = {
            let mut open = lock(&self.open);
            let o = open.get(&id).ok_or_else(|| not_found(id))?;
            if o.busy || o.offset != o.size {
                return Err(Failure::new(
                    Status::Conflict,
                    format!(
                        "the upload holds {} of {} bytes; send the rest first",
                        o.offset, o.size
                    ),
                ));
            }
            let size = o.size;
            open.remove(&id);
            size
        };
        let moved = tokio::fs::rename(self.part(id), to).await;
        let _ = tokio::fs::remove_file(self.size_file(id)).await;
        moved.map_err(|e| disk_failure(&e))?;
        Ok(size)
    }

    /// Cancels upload `id` (one with a part being written goes when that
    /// part ends).
    pub(crate) async fn cancel(&self, id: Uuid) -> Result<(), Failure> {
        {
            let mut open = lock(&self.open);
            match open.get_mut(&id) {
                None => return Err(not_found(id)),
                Some(o) if o.busy => {
                    o.doomed = true;
                    return Ok(());
                }
                Some(_) => {
                    open.remove(&id);
                }
            }
        }
        self.drop_files(id).await;
        Ok(())
    }

    /// Drops uploads untouched for [`KEEP_FOR`].
    async fn expire(&self) {
        let now = SystemTime::now();
        let old: Vec<Uuid> = {
            let mut open = lock(&self.open);
            let old: Vec<Uuid> = open
                .iter()
                .filter(|(_, o)| {
                    !o.busy && now.duration_since(o.touched).unwrap_or_default() >= KEEP_FOR
                })
                .map(|(id, _)| *id)
                .collect();
            for id in &old {
                open.remove(id);
            }
            old
        };
        for id in old {
            self.drop_files(id).await;
        }
    }

    async fn drop_files(&self, id: Uuid) {
        let _ = tokio::fs::remove_file(self.part(id)).await;
        let _ = tokio::fs::remove_file(self.size_file(id)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(chunks: &[&[u8]]) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )
    }

    fn broken(first: &[u8]) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(vec![
            Ok(bytes::Bytes::copy_from_slice(first)),
            Err(std::io::Error::other("connection reset")),
        ])
    }

    #[tokio::test]
    async fn parts_add_up_and_a_broken_part_keeps_what_arrived() {
        let dir = tempfile::tempdir().expect("ok");
        let up = Uploads::load(dir.path());
        let s = up.create(10, 100).await.expect("ok");
        let s = up.append(s.id, 0, parts(&[b"abc"])).await.expect("ok");
        assert_eq!(s.offset, 3);
        let err = up
            .append(s.id, 3, broken(b"de"))
            .await
            .expect_err("refused");
        assert_eq!(err.status, Status::BadRequest);
        assert_eq!(
            up.status(s.id).expect("ok").offset,
            5,
            "what arrived counts"
        );
        let out = dir.path().join("whole");
        assert_eq!(
            up.take(s.id, &out).await.expect_err("refused").status,
            Status::Conflict
        );
        up.append(s.id, 5, parts(&[b"fghij"])).await.expect("ok");
        assert_eq!(up.take(s.id, &out).await.expect("ok"), 10);
        assert_eq!(std::fs::read(&out).expect("ok"), b"abcdefghij");
        assert!(up.status(s.id).is_err(), "taken");
    }

    #[tokio::test]
    async fn a_part_at_the_wrong_offset_or_past_the_size_is_refused() {
        let dir = tempfile::tempdir().expect("ok");
        let up = Uploads::load(dir.path());
        let s = up.create(4, 100).await.expect("ok");
        let err = up
            .append(s.id, 2, parts(&[b"xx"]))
            .await
            .expect_err("refused");
        assert_eq!(err.status, Status::Conflict);
        let err = up
            .append(s.id, 0, parts(&[b"abcdef"]))
            .await
            .expect_err("refused");
        assert_eq!(err.status, Status::TooLarge);
        assert_eq!(
            up.status(s.id).expect("ok").offset,
            4,
            "kept up to the size"
        );
        assert_eq!(
            up.create(101, 100).await.expect_err("refused").status,
            Status::TooLarge
        );
    }

    #[tokio::test]
    async fn an_upload_survives_a_restart_and_strays_do_not() {
        let dir = tempfile::tempdir().expect("ok");
        let id = {
            let up = Uploads::load(dir.path());
            let s = up.create(6, 100).await.expect("ok");
            up.append(s.id, 0, parts(&[b"abc"])).await.expect("ok");
            s.id
        };
        std::fs::write(dir.path().join("x.part"), b"one-shot upload cut off").expect("ok");
        std::fs::write(
            dir.path().join(format!("r-{}.part", Uuid::now_v7())),
            b"no size",
        )
        .expect("ok");
        let up = Uploads::load(dir.path());
        assert_eq!(up.status(id).expect("ok").offset, 3);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ok")
            .map(|e| e.expect("ok").file_name())
            .collect();
        assert_eq!(left.len(), 2, "only the upload's files: {left:?}");
        up.cancel(id).await.expect("ok");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ok").count(), 0);
    }

    #[tokio::test]
    async fn an_upload_cancelled_while_a_part_is_written_goes_when_it_ends() {
        let dir = tempfile::tempdir().expect("ok");
        let up = Uploads::load(dir.path());
        let s = up.create(10, 100).await.expect("ok");
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<bytes::Bytes, std::io::Error>>();
        tx.unbounded_send(Ok(bytes::Bytes::from_static(b"abc")))
            .expect("ok");
        let writing = {
            let up = &up;
            async move { up.append(s.id, 0, rx).await }
        };
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            up.cancel(s.id).await.expect("ok");
            drop(tx);
        };
        let (written, ()) = tokio::join!(writing, cancel);
        assert_eq!(written.expect_err("refused").status, Status::NotFound);
        assert!(up.status(s.id).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ok").count(),
            0,
            "its files went"
        );
    }

    #[tokio::test]
    async fn no_more_than_max_open() {
        let dir = tempfile::tempdir().expect("ok");
        let up = Uploads::load(dir.path());
        for _ in 0..MAX_OPEN {
            up.create(1, 100).await.expect("ok");
        }
        assert_eq!(
            up.create(1, 100).await.expect_err("refused").status,
            Status::RateLimited
        );
    }
}
