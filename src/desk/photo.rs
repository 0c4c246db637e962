//! Content sniffing for uploaded photos and camera snapshots: the bytes decide the type, never
//! the file name or the declared content type. Only JPEG and PNG are taken. Attachments are
//! stored with their SHA-256 ([`sha256_hex`]).

/// What the bytes turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Why bytes are not an acceptable image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhotoError {
    #[error("berkas foto kosong")]
    Empty,
    #[error("berkas bukan gambar JPEG atau PNG")]
    NotAnImage,
    #[error("gambar {0} rusak atau terpotong")]
    Corrupt(&'static str),
    #[error("ukuran gambar {width}x{height} tidak wajar")]
    BadSize { width: u32, height: u32 },
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Larger than any camera or phone picture; a guard against decompression bombs downstream.
const MAX_SIDE: u32 = 20_000;

/// SHA-256 of the bytes, lower-case hex (stored with each attachment; camera snapshots carry
/// theirs in the message and must match it).
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

/// What `bytes` are, if a JPEG or PNG of sane size.
pub fn sniff(bytes: &[u8]) -> Result<ImageInfo, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    let info = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        jpeg(bytes)?
    } else if bytes.starts_with(PNG_MAGIC) {
        png(bytes)?
    } else {
        return Err(PhotoError::NotAnImage);
    };
    if info.width == 0 || info.height == 0 || info.width > MAX_SIDE || info.height > MAX_SIDE {
        return Err(PhotoError::BadSize {
            width: info.width,
            height: info.height,
        });
    }
    Ok(info)
}

/// Walks the marker segments up to the start of scan: needs a frame header (SOFn) for the size
/// and a scan, and an end-of-image marker at the end so a truncated upload is refused.
fn jpeg(b: &[u8]) -> Result<ImageInfo, PhotoError> {
    let bad = PhotoError::Corrupt("JPEG");
    let mut i = 2;
    let mut size = None;
    loop {
        // Markers may be padded with any number of 0xFF bytes.
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if b.get(i) != Some(&0xFF) {
            return Err(bad);
        }
        let marker = *b.get(i + 1).ok_or(PhotoError::Corrupt("JPEG"))?;
        i += 2;
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err(bad),
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([
            *b.get(i).ok_or(PhotoError::Corrupt("JPEG"))?,
            *b.get(i + 1).ok_or(PhotoError::Corrupt("JPEG"))?,
        ]));
        if len < 2 || i + len > b.len() {
            return Err(bad);
        }
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            if len < 7 {
                return Err(bad);
            }
            let h = u16::from_be_bytes([b[i + 3], b[i + 4]]);
            let w = u16::from_be_bytes([b[i + 5], b[i + 6]]);
            size = Some((u32::from(w), u32::from(h)));
        }
        if marker == 0xDA {
            let (width, height) = size.ok_or(PhotoError::Corrupt("JPEG"))?;
            if !b.ends_with(&[0xFF, 0xD9]) {
                return Err(bad);
            }
            return Ok(ImageInfo {
                content_type: "image/jpeg",
                width,
                height,
            });
        }
        i += len;
    }
}

/// Walks the chunks: IHDR first (with a correct CRC), IEND last.
fn png(b: &[u8]) -> Result<ImageInfo, PhotoError> {
    let bad = PhotoError::Corrupt("PNG");
    let mut i = PNG_MAGIC.len();
    let mut size = None;
    loop {
        let head = b.get(i..i + 8).ok_or(PhotoError::Corrupt("PNG"))?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let data_end = i.checked_add(8 + len).ok_or(PhotoError::Corrupt("PNG"))?;
        let crc_bytes = b
            .get(data_end..data_end + 4)
            .ok_or(PhotoError::Corrupt("PNG"))?;
        let crc = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc32(&b[i + 4..data_end]) != crc {
            return Err(bad);
        }
        if size.is_none() {
            if kind != b"IHDR" || len != 13 {
                return Err(bad);
            }
            let d = &b[i + 8..data_end];
            size = Some((
                u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            ));
        }
        i = data_end + 4;
        if kind == b"IEND" {
            let (width, height) = size.ok_or(PhotoError::Corrupt("PNG"))?;
            return Ok(ImageInfo {
                content_type: "image/png",
                width,
                height,
            });
        }
    }
}

/// CRC-32 (IEEE), as PNG chunks use it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid PNG of `w` x `h` (the pixel data is not decoded by the sniffer).
    pub(crate) fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let mut out = PNG_MAGIC.to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32(&body).to_be_bytes());
        };
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(b"IEND", &[]);
        out
    }

    /// A minimal JPEG marker structure of `w` x `h`.
    pub(crate) fn jpeg_bytes(w: u16, h: u16) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        out.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        out.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        out.extend_from_slice(&h.to_be_bytes());
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
        out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        out.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56]);
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    #[test]
    fn sniff_cases() {
        let png = png_bytes(640, 480);
        let jpg = jpeg_bytes(1280, 720);
        let mut png_bad_crc = png.clone();
        png_bad_crc[20] ^= 0xFF;
        let ok = |t: &'static str, w, h| {
            Ok(ImageInfo {
                content_type: t,
                width: w,
                height: h,
            })
        };
        let cases: Vec<(&str, Vec<u8>, Result<ImageInfo, PhotoError>)> = vec![
            ("empty", vec![], Err(PhotoError::Empty)),
            ("text", b"hello world".to_vec(), Err(PhotoError::NotAnImage)),
            (
                "html with jpg name",
                b"<html><script>alert(1)</script>".to_vec(),
                Err(PhotoError::NotAnImage),
            ),
            (
                "gif",
                b"GIF89a\x01\x00\x01\x00".to_vec(),
                Err(PhotoError::NotAnImage),
            ),
            ("png", png.clone(), ok("image/png", 640, 480)),
            ("jpeg", jpg.clone(), ok("image/jpeg", 1280, 720)),
            (
                "png truncated",
                png[..png.len() - 6].to_vec(),
                Err(PhotoError::Corrupt("PNG")),
            ),
            ("png bad crc", png_bad_crc, Err(PhotoError::Corrupt("PNG"))),
            (
                "jpeg truncated",
                jpg[..jpg.len() - 2].to_vec(),
                Err(PhotoError::Corrupt("JPEG")),
            ),
            (
                "jpeg magic only",
                vec![0xFF, 0xD8, 0xFF],
                Err(PhotoError::Corrupt("JPEG")),
            ),
            (
                "png zero width",
                png_bytes(0, 10),
                Err(PhotoError::BadSize {
                    width: 0,
                    height: 10,
                }),
            ),
            (
                "png huge",
                png_bytes(20_001, 10),
                Err(PhotoError::BadSize {
                    width: 20_001,
                    height: 10,
                }),
            ),
            (
                "png largest side",
                png_bytes(20_000, 1),
                ok("image/png", 20_000, 1),
            ),
            ("png one pixel", png_bytes(1, 1), ok("image/png", 1, 1)),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(sniff(&bytes), want, "{name}");
        }
    }

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(crc32(b""), 0);
    }
}
