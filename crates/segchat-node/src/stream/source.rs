//! Frame sources. The test pattern draws moving colour bars, a bouncing
//! box and the capture time (UTC, to the millisecond) and frame number in a
//! small built-in digit font, and encodes each frame as a baseline JPEG
//! (MJPEG) with the pure-Rust `jpeg-encoder`. It runs on a thread of its
//! own so that encoding never blocks the async runtime.

use std::time::{Duration, Instant};

use bytes::Bytes;
use jpeg_encoder::{ColorType, Encoder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// JPEG quality of the test pattern (1–100).
pub(crate) const TEST_PATTERN_QUALITY: u8 = 75;

/// One encoded frame on its way to the viewers.
#[derive(Debug, Clone)]
pub(crate) struct SourceFrame {
    pub(crate) capture_us: u64,
    pub(crate) jpeg: Bytes,
}

/// 3×5 glyphs for `0`–`9`, `:` and `.`, one row per 3 bits.
const GLYPHS: [[u8; 5]; 12] = [
    [0b111, 0b101, 0b101, 0b101, 0b111], // 0
    [0b010, 0b110, 0b010, 0b010, 0b111], // 1
    [0b111, 0b001, 0b111, 0b100, 0b111], // 2
    [0b111, 0b001, 0b111, 0b001, 0b111], // 3
    [0b101, 0b101, 0b111, 0b001, 0b001], // 4
    [0b111, 0b100, 0b111, 0b001, 0b111], // 5
    [0b111, 0b100, 0b111, 0b101, 0b111], // 6
    [0b111, 0b001, 0b010, 0b010, 0b010], // 7
    [0b111, 0b101, 0b111, 0b101, 0b111], // 8
    [0b111, 0b101, 0b111, 0b001, 0b111], // 9
    [0b000, 0b010, 0b000, 0b010, 0b000], // :
    [0b000, 0b000, 0b000, 0b000, 0b010], // .
];

const BARS: [[u8; 3]; 7] = [
    [192, 192, 192],
    [192, 192, 0],
    [0, 192, 192],
    [0, 192, 0],
    [192, 0, 192],
    [192, 0, 0],
    [0, 0, 192],
];

/// Draws frame `n` of a `w`×`h` test pattern captured at `capture_us` and
/// returns it as RGB bytes.
pub(crate) fn render(w: u16, h: u16, n: u64, capture_us: u64) -> Vec<u8> {
    let (w, h) = (usize::from(w), usize::from(h));
    let mut rgb = vec![0u8; w * h * 3];
    let shift = (n as usize * 4) % w.max(1);
    let bar_w = w.div_ceil(BARS.len()).max(1);
    for y in 0..h {
        let row = &mut rgb[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            let c = BARS[((x + shift) / bar_w) % BARS.len()];
            row[x * 3..x * 3 + 3].copy_from_slice(&c);
        }
    }
    // A box bouncing across the picture.
    let size = (h / 6).max(4);
    let span_x = w.saturating_sub(size).max(1);
    let span_y = h.saturating_sub(size).max(1);
    let bounce = |t: usize, span: usize| {
        let t = t % (2 * span);
        if t < span {
            t
        } else {
            2 * span - t
        }
    };
    let bx = bounce(n as usize * 6, span_x);
    let by = bounce(n as usize * 4, span_y);
    fill(&mut rgb, w, h, bx, by, size, size, [255, 255, 255]);
    // The capture time and frame number, black on white, top left.
    let secs = capture_us / 1_000_000;
    let ms = (capture_us / 1000) % 1000;
    let text = format!(
        "{:02}:{:02}:{:02}.{:03} {}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms,
        n
    );
    let scale = (h / 120).max(1);
    let text_w = text.len() * 4 * scale + scale;
    fill(&mut rgb, w, h, 0, 0, text_w, 7 * scale, [255, 255, 255]);
    for (i, ch) in text.chars().enumerate() {
        let glyph = match ch {
            '0'..='9' => GLYPHS[ch as usize - '0' as usize],
            ':' => GLYPHS[10],
            '.' => GLYPHS[11],
            _ => continue,
        };
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..3 {
                if bits & (0b100 >> gx) != 0 {
                    let x = scale + (i * 4 + gx) * scale;
                    let y = scale + gy * scale;
                    fill(&mut rgb, w, h, x, y, scale, scale, [0, 0, 0]);
                }
            }
        }
    }
    rgb
}

#[allow(clippy::too_many_arguments)]
fn fill(
    rgb: &mut [u8],
    w: usize,
    h: usize,
    x0: usize,
    y0: usize,
    fw: usize,
    fh: usize,
    c: [u8; 3],
) {
    for y in y0..(y0 + fh).min(h) {
        for x in x0..(x0 + fw).min(w) {
            let i = (y * w + x) * 3;
            rgb[i..i + 3].copy_from_slice(&c);
        }
    }
}

/// Encodes RGB bytes as a baseline JPEG.
pub(crate) fn encode_jpeg(rgb: &[u8], w: u16, h: u16, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(usize::from(w) * usize::from(h) / 8);
    Encoder::new(&mut out, quality)
        .encode(rgb, w, h, ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Runs the test pattern at `fps` on a thread of its own until `cancel`
/// or until nobody takes the frames. A frame that finds the queue full is
/// dropped (the sender is behind; never queue up latency).
pub(crate) fn spawn_test_pattern(
    w: u16,
    h: u16,
    fps: u8,
    tx: mpsc::Sender<SourceFrame>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let period = Duration::from_secs_f64(1.0 / f64::from(fps.max(1)));
    std::thread::Builder::new()
        .name("segchat-test-pattern".into())
        .spawn(move || {
            let start = Instant::now();
            let mut n: u64 = 0;
            while !cancel.is_cancelled() && !tx.is_closed() {
                let due = start + period * (n as u32);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                } else if now - due > period * 2 {
                    // Fell behind (a loaded machine): skip, do not burst.
                    n = ((now - start).as_secs_f64() / period.as_secs_f64()) as u64;
                    continue;
                }
                let capture_us = crate::clock::now_us();
                let rgb = render(w, h, n, capture_us);
                match encode_jpeg(&rgb, w, h, TEST_PATTERN_QUALITY) {
                    Ok(jpeg) => {
                        let _ = tx.try_send(SourceFrame {
                            capture_us,
                            jpeg: Bytes::from(jpeg),
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not encode a test-pattern frame");
                        return;
                    }
                }
                n += 1;
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_differ_and_encode_as_jpeg() {
        let a = render(64, 48, 0, 1_000_000);
        let b = render(64, 48, 1, 1_033_000);
        assert_eq!(a.len(), 64 * 48 * 3);
        assert_ne!(a, b, "the pattern moves");
        let jpeg = encode_jpeg(&a, 64, 48, 75).expect("encodes");
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "starts with SOI");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "ends with EOI");
    }

    #[test]
    fn the_capture_time_is_drawn() {
        // Same frame number, different times: only the clock differs.
        let a = render(320, 240, 5, 1_000_000);
        let b = render(320, 240, 5, 2_000_000);
        assert_ne!(a, b);
    }
}
