//! Files: share one in a channel (the request's body is the file), see
//! where one stands, fetch one, and read one back.
//!
//! A file is read back only as bytes: raster images as themselves (so
//! the web UI can show them), everything else as an attachment of type
//! `application/octet-stream`, never sniffed (`nosniff` on every answer)
//! and sandboxed, so a shared HTML page or SVG never runs as this
//! origin. A file's name is only ever a `filename*` parameter.

use axum::body::Body as RawBody;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use segchat_proto::files::{safe_inline, FileRef, MAX_MIME_LEN, MAX_NAME_LEN};
use segchat_proto::types::AccountKind;
use segchat_proto::{Failure, Status};

use super::messages::Sent;
use super::{ApiError, ApiState, Body};
use crate::files::{disk_failure, FileStatus, UploadStatus, DM_SCOPE};

#[derive(Debug, Deserialize)]
pub(super) struct ShareQuery {
    /// The file's name as shown (never a path).
    name: String,
    /// Its media type; guessed from the name when missing.
    #[serde(default, rename = "type")]
    mime: Option<String>,
    /// Text to go with it.
    #[serde(default)]
    caption: String,
    /// The message it replies to.
    #[serde(default)]
    reply_to: Option<String>,
    /// A resumable upload, whole, to share instead of the body.
    #[serde(default)]
    upload: Option<uuid::Uuid>,
}

/// `POST /channels/{name}/files?name=…&type=…&caption=…`, the body the
/// file's bytes (or `upload=ID`, a whole resumable upload, and no body):
/// stores it, shares it in a message (answered as `messages` answers) and
/// tells the channel's host.
pub(super) async fn share(
    State(st): State<ApiState>,
    Path(channel): Path<String>,
    Query(q): Query<ShareQuery>,
    body: RawBody,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    st.inner.activity.input();
    may_share(&st)?;
    // Before a byte is stored: the channel must be one the user joined.
    let joined = st
        .inner
        .store
        .cached_channels()
        .await
        .map_err(crate::error::store_failure)?
        .is_some_and(|c| {
            c.channels
                .iter()
                .any(|c| c.name == channel && c.my_role.is_some())
        });
    if !joined {
        return Err(ApiError(Failure::forbidden(format!(
            "join {channel:?} before sharing in it"
        ))));
    }
    let (path, name, mime) = take_upload(&st, &q, body).await?;
    let files = &st.inner.files;
    let message = files
        .share(
            &channel,
            &path,
            &name,
            &mime,
            &q.caption,
            q.reply_to.as_deref(),
        )
        .await?;
    st.record(
        "FILE_SHARED",
        format!(
            "channel={channel} hash={}",
            message.file.as_ref().map(|f| f.hash.as_str()).unwrap_or("")
        ),
    );
    Ok((StatusCode::ACCEPTED, Json(Sent { message })))
}

/// The file a share request brings: its body (or the resumable upload it
/// names) written to an upload path, and its name and type, checked.
async fn take_upload(
    st: &ApiState,
    q: &ShareQuery,
    body: RawBody,
) -> Result<(std::path::PathBuf, String, String), ApiError> {
    let name = clean_name(&q.name)?;
    let mime = match q.mime.as_deref().filter(|m| !m.trim().is_empty()) {
        Some(m) if m.len() <= MAX_MIME_LEN => m.trim().to_owned(),
        Some(_) => {
            return Err(ApiError(Failure::bad_request(
                "that media type is too long",
            )))
        }
        None => guess_mime(&name).to_owned(),
    };
    let files = &st.inner.files;
    let path = files.upload_path();
    match q.upload {
        Some(id) => {
            files.uploads().take(id, &path).await?;
        }
        None => {
            if let Err(e) = receive(body, &path, files.max_size()).await {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(ApiError(e));
            }
        }
    }
    Ok((path, name, mime))
}

/// `POST /dms/{users}/files?name=…&type=…&caption=…`, the body the
/// file's bytes (or `upload=ID`): encrypts it end to end, shares it in a
/// direct message to `users` (answered as `POST /dms/{users}` answers).
pub(super) async fn share_dm(
    State(st): State<ApiState>,
    Path(users): Path<String>,
    Query(q): Query<ShareQuery>,
    body: RawBody,
) -> Result<(StatusCode, Json<super::dms::Sent>), ApiError> {
    st.inner.activity.input();
    may_share(&st)?;
    let to = super::dms::others(&users)?;
    let (path, name, mime) = take_upload(&st, &q, body).await?;
    let file = st.inner.files.seal(&path, &name, &mime).await?;
    let shared = file.file.clone();
    let message = st
        .inner
        .dms
        .send(&to, &q.caption, q.reply_to.as_deref(), Some(file))
        .await?;
    // A copy on the server, for when this node is away.
    let readers = message.conversation.split(',').map(str::to_owned).collect();
    st.inner.files.back_up_sealed(&shared, readers);
    let hash = shared.hash;
    st.record(
        "FILE_SHARED",
        format!("dm={} hash={hash}", message.conversation),
    );
    Ok((StatusCode::ACCEPTED, Json(super::dms::Sent { message })))
}

/// Refuses a user who may share no file: signed out, or a visitor.
fn may_share(st: &ApiState) -> Result<(), ApiError> {
    let session = st
        .link()
        .state()
        .session
        .ok_or_else(|| ApiError(Failure::unauthorized("sign in first")))?;
    if session.kind == AccountKind::Visitor {
        return Err(ApiError(Failure::forbidden(
            "visitors only read; register an account to share files",
        )));
    }
    Ok(())
}

/// Writes the request's body to `path`, refusing it past `max` bytes.
async fn receive(body: RawBody, path: &std::path::Path, max: u64) -> Result<(), Failure> {
    let mut out = tokio::fs::File::create(path)
        .await
        .map_err(|e| disk_failure(&e))?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Failure::bad_request(format!("the upload broke off: {e}")))?;
        total += chunk.len() as u64;
        if total > max {
            return Err(Failure::new(
                Status::TooLarge,
                format!("this node takes files up to {max} bytes (--max-file-mib)"),
            ));
        }
        out.write_all(&chunk).await.map_err(|e| disk_failure(&e))?;
    }
    out.flush().await.map_err(|e| disk_failure(&e))?;
    Ok(())
}

/// A name to show: the last part of whatever path was given, without
/// control characters, at most [`MAX_NAME_LEN`] bytes.
fn clean_name(name: &str) -> Result<String, ApiError> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = last.chars().filter(|c| !c.is_control()).collect();
    while out.len() > MAX_NAME_LEN {
        out.pop();
    }
    let out = out.trim().to_owned();
    if out.is_empty() || out == "." || out == ".." {
        return Err(ApiError(Failure::bad_request(
            "give the file a name (?name=…)",
        )));
    }
    Ok(out)
}

/// A media type from a file name's extension, for uploads that name
/// none.
fn guess_mime(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "txt" | "md" | "log" => "text/plain",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// `GET /files/{hash}`: where the file stands on this node.
pub(super) async fn status(
    State(st): State<ApiState>,
    Path(hash): Path<String>,
) -> Result<Json<FileStatus>, ApiError> {
    st.inner
        .files
        .status(&hash)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError(Failure::not_found(format!(
                "this node knows no file {hash}"
            )))
        })
}

#[derive(Debug, Deserialize)]
pub(super) struct FetchBody {
    /// The channel a message shares it in; none (or `null`) for a file a
    /// direct message here shares.
    #[serde(default)]
    channel: Option<String>,
}

/// `POST /files/{hash}/fetch` `{"channel": …}`: starts fetching a file a
/// message in that channel (or, without one, a direct message) shares,
/// or resumes it; answers where it stands. The name, size and type are
/// the message's, not the caller's.
pub(super) async fn fetch(
    State(st): State<ApiState>,
    Path(hash): Path<String>,
    Body(body): Body<FetchBody>,
) -> Result<(StatusCode, Json<FileStatus>), ApiError> {
    let (scope, file) = match body.channel {
        Some(channel) => {
            let file = shared(&st, &channel, &hash).await?;
            (channel, file)
        }
        None => (DM_SCOPE.to_owned(), shared_in_dm(&st, &hash).await?),
    };
    let status = st.inner.files.fetch(&scope, &file).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// The file `hash` as a direct message on this node shares it.
async fn shared_in_dm(st: &ApiState, hash: &str) -> Result<FileRef, ApiError> {
    crate::files::to_hash(hash)?;
    st.inner
        .store
        .dm_file(hash.to_owned())
        .await
        .map_err(crate::error::store_failure)?
        .map(|f| f.file)
        .ok_or_else(|| {
            ApiError(Failure::not_found(format!(
                "no direct message here shares file {hash}"
            )))
        })
}

/// The file `hash` as a message in `channel` on this node shares it.
async fn shared(st: &ApiState, channel: &str, hash: &str) -> Result<FileRef, ApiError> {
    crate::files::to_hash(hash)?;
    st.inner
        .store
        .file_shared_in(channel.to_owned(), hash.to_owned())
        .await
        .map_err(crate::error::store_failure)?
        .ok_or_else(|| {
            ApiError(Failure::not_found(format!(
                "no message in {channel:?} here shares file {hash}"
            )))
        })
}

#[derive(Debug, Deserialize)]
pub(super) struct ContentQuery {
    /// `1`: always as an attachment, also an image.
    #[serde(default)]
    download: Option<String>,
}

/// `GET /files/{hash}/content`: the file's bytes, once here whole.
pub(super) async fn content(
    State(st): State<ApiState>,
    Path(hash): Path<String>,
    Query(q): Query<ContentQuery>,
) -> Result<Response, ApiError> {
    let h = crate::files::to_hash(&hash)?;
    let files = &st.inner.files;
    let status = files.status(&hash).await?.ok_or_else(|| {
        ApiError(Failure::not_found(format!(
            "this node knows no file {hash}"
        )))
    })?;
    let Some(size) = files.complete_size(h).await else {
        return Err(ApiError(Failure::conflict(format!(
            "{} is not here whole yet ({} of {} bytes); POST /files/{hash}/fetch",
            status.name, status.bytes, status.size
        ))));
    };
    let inline = safe_inline(&status.mime).filter(|_| q.download.is_none());
    let disposition = format!(
        "{}; filename*=UTF-8''{}",
        if inline.is_some() {
            "inline"
        } else {
            "attachment"
        },
        percent_encoding::utf8_percent_encode(&status.name, percent_encoding::NON_ALPHANUMERIC)
    );
    let bytes = tokio_util::io::ReaderStream::new(files.reader(h));
    // A direct message's file is kept encrypted: opened as it is read.
    let body = match files.key_of(&status).await? {
        Some(key) => {
            let mut cipher = crate::files::cipher(&key);
            RawBody::from_stream(bytes.map(move |piece| {
                piece.map(|b| {
                    let mut plain = b.to_vec();
                    chacha20::cipher::StreamCipher::apply_keystream(&mut cipher, &mut plain);
                    bytes::Bytes::from(plain)
                })
            }))
        }
        None => RawBody::from_stream(bytes),
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                inline.unwrap_or("application/octet-stream").to_owned(),
            ),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_owned(),
            ),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_owned(),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_only_names() {
        assert_eq!(clean_name("../../x").ok().as_deref(), Some("x"));
        assert_eq!(
            clean_name("C:\\Users\\a\\cat.png").ok().as_deref(),
            Some("cat.png")
        );
        assert_eq!(clean_name("a\u{0}b\nc").ok().as_deref(), Some("abc"));
        assert!(clean_name("..").is_err());
        assert!(clean_name("dir/").is_err());
        assert_eq!(
            clean_name(&"é".repeat(200)).map(|n| n.len()).ok(),
            Some(254)
        );
    }

    #[test]
    fn types_come_from_the_extension_when_not_given() {
        assert_eq!(guess_mime("Cat.PNG"), "image/png");
        assert_eq!(guess_mime("page.html"), "application/octet-stream");
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct NewUpload {
    /// The file's size in bytes.
    size: u64,
}

/// `POST /uploads` `{size}`: opens a resumable upload.
pub(super) async fn create_upload(
    State(st): State<ApiState>,
    Json(b): Json<NewUpload>,
) -> Result<(StatusCode, Json<UploadStatus>), ApiError> {
    st.inner.activity.input();
    may_share(&st)?;
    let files = &st.inner.files;
    let status = files.uploads().create(b.size, files.max_size()).await?;
    Ok((StatusCode::CREATED, Json(status)))
}

/// `GET /uploads/{id}`: how far an upload is.
pub(super) async fn upload_status(
    State(st): State<ApiState>,
    Path(id): Path<uuid::Uuid>,
) -> Result<Json<UploadStatus>, ApiError> {
    Ok(Json(st.inner.files.uploads().status(id)?))
}

#[derive(Debug, Deserialize)]
pub(super) struct PartQuery {
    /// Where this part starts: the upload's offset.
    offset: u64,
}

/// `PUT /uploads/{id}?offset=N`, the body the next bytes: adds them.
/// What arrives before the request breaks off is kept.
pub(super) async fn upload_part(
    State(st): State<ApiState>,
    Path(id): Path<uuid::Uuid>,
    Query(q): Query<PartQuery>,
    body: RawBody,
) -> Result<Json<UploadStatus>, ApiError> {
    st.inner.activity.input();
    let status = st
        .inner
        .files
        .uploads()
        .append(id, q.offset, body.into_data_stream())
        .await?;
    Ok(Json(status))
}

/// `DELETE /uploads/{id}`: cancels an upload.
pub(super) async fn cancel_upload(
    State(st): State<ApiState>,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    st.inner.files.uploads().cancel(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /files/{hash}/fetch`: stops a fetch that runs (what it holds
/// stays; fetching again goes on from there).
pub(super) async fn cancel_fetch(
    State(st): State<ApiState>,
    Path(hash): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.inner.activity.input();
    if st.inner.files.cancel(&hash)? {
        st.record("FILE_FETCH_CANCELLED", format!("hash={hash}"));
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(Failure::not_found(format!(
            "no fetch of {hash} is running"
        ))))
    }
}
