//! Thumbnails: the node that shares an image puts a small JPEG of it in
//! the message (`FileRef::thumb`, signed with it, encrypted with it in a
//! direct message), so every timeline shows the picture the moment the
//! message arrives, and an image too large to fetch by itself still
//! shows as more than a name. The receiver fetches nothing more for it.
//!
//! Decoding is the `image` crate's, bounded: only the raster types a
//! browser is shown, files up to [`MAX_SOURCE`], at most [`MAX_SIDE`]
//! pixels a side and [`MAX_ALLOC`] bytes of decoded image, one at a time
//! on the blocking pool, so a crafted image (a decompression bomb) costs
//! a refusal, not the node's memory.

use std::io::Cursor;
use std::path::Path;

use base64::Engine;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, ImageReader, Limits};
use segchat_proto::files::MAX_THUMB_LEN;

/// Largest image file a thumbnail is made of.
const MAX_SOURCE: u64 = 64 << 20;
/// Largest width or height decoded.
const MAX_SIDE: u32 = 12_000;
/// Most bytes a decoded image may take.
const MAX_ALLOC: u64 = 512 << 20;
/// The box a thumbnail fits in, then smaller tries if it is too large.
const TRIES: [(u32, u8); 3] = [(320, 70), (320, 45), (160, 50)];

/// One thumbnail made at a time: each may hold [`MAX_ALLOC`] bytes.
static MAKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The thumbnail of the image at `path` (of type `mime`), as base64, or
/// `None` when it is not an image this makes one of, or does not decode.
pub(super) async fn thumbnail(path: &Path, mime: &str, size: u64) -> Option<String> {
    let format = format_of(mime)?;
    if size > MAX_SOURCE {
        return None;
    }
    let _one = MAKING.acquire().await.ok()?;
    let path = path.to_owned();
    let made = tokio::task::spawn_blocking(move || make(&path, format)).await;
    match made {
        Ok(Ok(thumb)) => thumb,
        Ok(Err(why)) => {
            tracing::info!(%why, "no thumbnail");
            None
        }
        Err(_) => None,
    }
}

/// The formats thumbnails are made of (the browser-safe raster types,
/// but AVIF, which this build does not decode).
fn format_of(mime: &str) -> Option<ImageFormat> {
    match segchat_proto::files::safe_inline(mime)? {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

fn make(path: &Path, format: ImageFormat) -> Result<Option<String>, image::ImageError> {
    let mut reader = ImageReader::open(path)?;
    reader.set_format(format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader.decode()?;
    for (side, quality) in TRIES {
        // Never larger than the image itself.
        let small = if image.width() > side || image.height() > side {
            image.thumbnail(side, side)
        } else {
            image.clone()
        };
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), quality)
            .encode_image(&small.to_rgb8())?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
        if b64.len() <= MAX_THUMB_LEN {
            return Ok(Some(b64));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(dir: &Path, w: u32, h: u32) -> std::path::PathBuf {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
        });
        let path = dir.join(format!("{w}x{h}.png"));
        img.save(&path).expect("save");
        path
    }

    #[tokio::test]
    async fn an_image_gets_a_small_jpeg_that_keeps_its_shape() {
        let dir = tempfile::tempdir().expect("dir");
        let path = png(dir.path(), 1600, 900);
        let size = std::fs::metadata(&path).expect("meta").len();
        let thumb = thumbnail(&path, "image/png", size)
            .await
            .expect("a thumbnail");
        assert!(thumb.len() <= MAX_THUMB_LEN);
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(&thumb)
            .expect("base64");
        let back = image::load_from_memory_with_format(&jpeg, ImageFormat::Jpeg).expect("jpeg");
        assert_eq!(back.width().max(back.height()), back.width());
        assert!(
            back.width() <= 320 && back.width() >= 160,
            "{}",
            back.width()
        );
        let ratio = back.width() as f64 / back.height() as f64;
        assert!((ratio - 16.0 / 9.0).abs() < 0.05, "{ratio}");
        let file = segchat_proto::files::FileRef {
            hash: "ab".repeat(32),
            name: "x.png".into(),
            size,
            mime: "image/png".into(),
            thumb: Some(thumb),
        };
        assert_eq!(file.check(), Ok(()));
    }

    #[tokio::test]
    async fn no_thumbnail_of_what_is_not_an_image_or_does_not_decode() {
        let dir = tempfile::tempdir().expect("dir");
        let fake = dir.path().join("fake.png");
        std::fs::write(&fake, b"\x89PNG\r\n\x1a\nnot really").expect("write");
        assert_eq!(thumbnail(&fake, "image/png", 20).await, None);
        let path = png(dir.path(), 40, 40);
        assert_eq!(thumbnail(&path, "application/pdf", 100).await, None);
        assert_eq!(thumbnail(&path, "image/svg+xml", 100).await, None);
        // Claimed larger than it is worth decoding.
        assert_eq!(thumbnail(&path, "image/png", MAX_SOURCE + 1).await, None);
    }

    #[test]
    fn a_bomb_is_refused_by_its_header() {
        let dir = tempfile::tempdir().expect("dir");
        // A PNG header claiming 100,000 × 100,000 pixels.
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend_from_slice(&100_000u32.to_be_bytes());
        bytes.extend_from_slice(&100_000u32.to_be_bytes());
        bytes.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        let path = dir.path().join("bomb.png");
        std::fs::write(&path, bytes).expect("write");
        assert!(make(&path, ImageFormat::Png).is_err());
    }
}
