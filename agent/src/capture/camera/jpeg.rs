//! JPEG checks without decoding: the magic bytes a camera's answer must start with, and the image
//! size read from the frame header (SOF) by walking the marker segments. A snapshot's `width` and
//! `height` come from here; a body that is not a JPEG (a camera's HTML login page, say) is refused.
//!
//! [`generate`] makes small valid baseline JPEGs (grey blocks, DC coefficients only) for the fake
//! camera and for tests, so nothing here needs an encoder or a real camera.

use std::fmt;

/// What every JPEG starts with: SOI (FF D8) and the first byte of the next marker.
pub const MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Width and height in pixels, as the frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimensions {
    pub width: u32,
    pub height: u32,
}

/// Why bytes are not a usable JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegError {
    /// The first bytes are not FF D8 FF; `looks_like` says what it seems to be instead.
    NotJpeg { looks_like: &'static str },
    /// The data ends (or the scan starts) before a frame header.
    NoFrameHeader,
    /// A segment is cut short or its length is impossible.
    Truncated { offset: usize },
    /// The frame header gives a zero width or height (height in a DNL segment is not supported).
    ZeroSize,
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JpegError::NotJpeg { looks_like } => {
                write!(
                    f,
                    "not a JPEG (it does not start with FF D8 FF; it looks like {looks_like})"
                )
            }
            JpegError::NoFrameHeader => f.write_str("a JPEG without a frame header (SOF)"),
            JpegError::Truncated { offset } => write!(f, "a JPEG cut short at byte {offset}"),
            JpegError::ZeroSize => f.write_str("a JPEG whose frame header gives no size"),
        }
    }
}

/// A guess at what a non-JPEG answer is, for the error message.
fn looks_like(bytes: &[u8]) -> &'static str {
    let head: Vec<u8> = bytes
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(16)
        .map(u8::to_ascii_lowercase)
        .collect();
    if head.is_empty() {
        "nothing: the body is empty"
    } else if head.starts_with(b"<!doctype html") || head.starts_with(b"<html") {
        "an HTML page"
    } else if head.starts_with(b"<?xml") || head.starts_with(b"<") {
        "XML or HTML"
    } else if head.starts_with(b"{") {
        "JSON"
    } else if head.starts_with(b"\x89png") {
        "a PNG image"
    } else {
        "something else"
    }
}

/// Checks the magic bytes and reads the size from the first frame header (any SOF0–SOF15).
pub fn dimensions(bytes: &[u8]) -> Result<Dimensions, JpegError> {
    if !bytes.starts_with(&MAGIC) {
        return Err(JpegError::NotJpeg {
            looks_like: looks_like(bytes),
        });
    }
    let mut i = 2;
    loop {
        // A marker: 0xFF, any number of 0xFF fill bytes, then the marker code.
        if bytes.get(i) != Some(&0xFF) {
            return Err(if i >= bytes.len() {
                JpegError::NoFrameHeader
            } else {
                JpegError::Truncated { offset: i }
            });
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return Err(JpegError::NoFrameHeader);
        };
        i += 1;
        match marker {
            // Markers without a length: TEM, RST0–7.
            0x01 | 0xD0..=0xD7 => continue,
            // End of image or start of scan before any frame header.
            0xD9 | 0xDA => return Err(JpegError::NoFrameHeader),
            _ => {}
        }
        let len = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(&hi), Some(&lo)) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(JpegError::Truncated { offset: i }),
        };
        if len < 2 || i + len > bytes.len() {
            return Err(JpegError::Truncated { offset: i });
        }
        // SOF0–SOF15, except DHT (C4), JPG (C8) and DAC (CC) which share the range.
        let is_sof = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            // length(2) precision(1) height(2) width(2) ...
            if len < 7 {
                return Err(JpegError::Truncated { offset: i });
            }
            let height = u16::from_be_bytes([bytes[i + 3], bytes[i + 4]]);
            let width = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]);
            if width == 0 || height == 0 {
                return Err(JpegError::ZeroSize);
            }
            return Ok(Dimensions {
                width: u32::from(width),
                height: u32::from(height),
            });
        }
        i += len;
    }
}

/// The standard luminance DC Huffman table (ITU T.81 Annex K.3): code counts per length, symbols.
const DC_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_SYMBOLS: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

/// Canonical Huffman codes `(code, length)` per DC category, built as a decoder builds them.
fn dc_codes() -> [(u16, u8); 12] {
    let mut codes = [(0u16, 0u8); 12];
    let mut code = 0u16;
    let mut k = 0;
    for (len, &count) in DC_BITS.iter().enumerate() {
        for _ in 0..count {
            codes[usize::from(DC_SYMBOLS[k])] = (code, len as u8 + 1);
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    codes
}

/// Writes entropy-coded bits with 0xFF byte stuffing.
struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u8,
}

impl Bits {
    fn put(&mut self, value: u16, len: u8) {
        for k in (0..len).rev() {
            self.acc = (self.acc << 1) | u32::from((value >> k) & 1);
            self.n += 1;
            if self.n == 8 {
                let byte = self.acc as u8;
                self.out.push(byte);
                if byte == 0xFF {
                    self.out.push(0);
                }
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    /// Pads the last byte with 1 bits.
    fn finish(mut self) -> Vec<u8> {
        while self.n != 0 {
            self.put(1, 1);
        }
        self.out
    }
}

fn segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A valid greyscale baseline JPEG of `width`×`height` (each 1..=65535) showing 8×8 grey blocks in
/// a pattern that depends on `seed`, with `comment` in a COM segment: a cheap, distinct frame per
/// call for the fake camera. Any JPEG decoder reads it.
pub fn generate(width: u16, height: u16, seed: u64, comment: &str) -> Vec<u8> {
    let (width, height) = (width.max(1), height.max(1));
    let mut out = vec![0xFF, 0xD8];
    segment(
        &mut out,
        0xE0,
        b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    );
    let comment = comment.as_bytes();
    segment(&mut out, 0xFE, &comment[..comment.len().min(60_000)]);
    // One quantisation table: DC step 8, so a flat block of grey g has DC level g − 128.
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[8u8; 64]);
    segment(&mut out, 0xDB, &dqt);
    let [h1, h0] = height.to_be_bytes();
    let [w1, w0] = width.to_be_bytes();
    segment(&mut out, 0xC0, &[8, h1, h0, w1, w0, 1, 1, 0x11, 0]);
    // DC table 0 (standard); AC table 0 with one symbol, end-of-block, coded as a single 0 bit.
    let mut dht = vec![0x00];
    dht.extend_from_slice(&DC_BITS);
    dht.extend_from_slice(&DC_SYMBOLS);
    dht.push(0x10);
    dht.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    dht.push(0x00);
    segment(&mut out, 0xC4, &dht);
    segment(&mut out, 0xDA, &[1, 1, 0x00, 0, 63, 0]);

    let codes = dc_codes();
    let mut bits = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    let (cols, rows) = (u64::from(width).div_ceil(8), u64::from(height).div_ceil(8));
    let mut previous: i32 = 0;
    for row in 0..rows {
        for col in 0..cols {
            // Diagonal stripes whose phase and slope move with the seed.
            let phase = (col + row * (1 + seed % 3) + seed * 7) % 32;
            let level = (phase as i32) * 8 - 128;
            let diff = level - previous;
            previous = level;
            let magnitude = diff.unsigned_abs();
            let category = (32 - magnitude.leading_zeros()) as u8;
            let (code, len) = codes[usize::from(category)];
            bits.put(code, len);
            if category > 0 {
                let value = if diff < 0 {
                    (diff + (1 << category) - 1) as u16
                } else {
                    diff as u16
                };
                bits.put(value, category);
            }
            // End of block.
            bits.put(0, 1);
        }
    }
    out.extend_from_slice(&bits.finish());
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_are_jpegs_of_their_size() {
        for (w, h) in [(640, 480), (1, 1), (1920, 1080), (17, 9)] {
            let jpeg = generate(w, h, 3, "cam w1 frame 3");
            assert!(jpeg.starts_with(&MAGIC));
            assert!(jpeg.ends_with(&[0xFF, 0xD9]));
            assert_eq!(
                dimensions(&jpeg),
                Ok(Dimensions {
                    width: u32::from(w),
                    height: u32::from(h)
                })
            );
        }
        assert_ne!(generate(64, 64, 1, ""), generate(64, 64, 2, ""));
    }

    #[test]
    fn the_size_comes_from_the_sof_after_other_segments() {
        // SOI, APP1 (Exif-like, with FF bytes inside), fill bytes, a progressive SOF2.
        let mut j = vec![0xFF, 0xD8];
        segment(&mut j, 0xE1, &[0xFF, 0xC0, 0xFF, 0xFF, 0x00, 0x10]);
        segment(&mut j, 0xC4, &[0; 20]);
        j.extend_from_slice(&[0xFF, 0xFF]);
        segment(&mut j, 0xC2, &[8, 0x04, 0x38, 0x07, 0x80, 3, 1, 0x22, 0]);
        assert_eq!(
            dimensions(&j),
            Ok(Dimensions {
                width: 1920,
                height: 1080
            })
        );
    }

    #[test]
    fn what_is_not_a_jpeg_says_what_it_is() {
        let html = b"<!DOCTYPE html><html><body>login</body></html>";
        let err = dimensions(html).unwrap_err();
        assert_eq!(
            err,
            JpegError::NotJpeg {
                looks_like: "an HTML page"
            }
        );
        assert!(err.to_string().contains("HTML"), "{err}");
        assert_eq!(
            dimensions(b""),
            Err(JpegError::NotJpeg {
                looks_like: "nothing: the body is empty"
            })
        );
        // Magic right, but cut before the frame header.
        let full = generate(32, 32, 0, "x");
        assert!(matches!(
            dimensions(&full[..30]),
            Err(JpegError::Truncated { .. } | JpegError::NoFrameHeader)
        ));
        // A scan before any frame header.
        let mut j = vec![0xFF, 0xD8];
        segment(&mut j, 0xDA, &[1, 1, 0, 0, 63, 0]);
        assert_eq!(dimensions(&j), Err(JpegError::NoFrameHeader));
        // A zero height (DNL) is refused.
        let mut j = vec![0xFF, 0xD8];
        segment(&mut j, 0xC0, &[8, 0, 0, 0, 16, 1, 1, 0x11, 0]);
        assert_eq!(dimensions(&j), Err(JpegError::ZeroSize));
        // A segment length running past the end.
        assert!(matches!(
            dimensions(&[0xFF, 0xD8, 0xFF, 0xE0, 0x40, 0x00, 1, 2]),
            Err(JpegError::Truncated { .. })
        ));
        assert!(matches!(
            dimensions(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]),
            Err(JpegError::Truncated { .. })
        ));
    }

    /// A real decoder reads the generated frames (the `image` crate comes with the USB feature).
    #[cfg(feature = "usb-camera")]
    #[test]
    fn a_decoder_reads_generated_frames() {
        for (w, h, seed) in [(640u16, 480u16, 0u64), (17, 9, 5), (1, 1, 2)] {
            let jpeg = generate(w, h, seed, "decode me");
            let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
                .expect("decodes");
            assert_eq!(
                (image.width(), image.height()),
                (u32::from(w), u32::from(h))
            );
        }
        // Diagonal stripes: not one flat grey.
        let image = image::load_from_memory(&generate(64, 64, 1, ""))
            .unwrap()
            .to_luma8();
        assert_ne!(image.get_pixel(0, 0), image.get_pixel(40, 0));
    }

    proptest::proptest! {
        /// Any bytes after the magic get an answer, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut j = MAGIC.to_vec();
            j.extend_from_slice(&tail);
            let _ = dimensions(&j);
            let _ = dimensions(&tail);
        }

        #[test]
        fn generated_sizes_round_trip(w in 1u16..700, h in 1u16..700, seed in 0u64..100) {
            let jpeg = generate(w, h, seed, "");
            proptest::prop_assert_eq!(dimensions(&jpeg), Ok(Dimensions { width: u32::from(w), height: u32::from(h) }));
        }
    }
}
