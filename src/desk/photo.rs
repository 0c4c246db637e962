//! Content sniffing for uploaded photos and camera snapshots: the bytes decide the type, never
//! the file name or the declared content type. Only JPEG and PNG are taken. Attachments are
//! stored with their SHA-256 ([`sha256_hex`]).
//!
//! Citizens' photos are stored without their metadata ([`strip_metadata`]): a phone's JPEG
//! carries EXIF with the GPS position of where it was taken (often the reporter's home), the
//! camera's serial number and times; XMP, IPTC, comments and PNG text chunks can carry as much.
//! The picture itself is kept byte for byte (no re-encoding, no quality lost), and a photo
//! taken sideways keeps its EXIF orientation, written back as the only tag.

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

/// The image without metadata: for JPEG every APPn segment but JFIF (APP0), ICC colour profiles
/// (APP2 `ICC_PROFILE`) and Adobe's colour transform (APP14), no comments, nothing after the end
/// marker, and the EXIF orientation (if any) as a one-tag EXIF; for PNG only the chunks that
/// say how to draw the pixels. `bytes` must have passed [`sniff`].
pub fn strip_metadata(bytes: &[u8]) -> Result<Vec<u8>, PhotoError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        strip_jpeg(bytes)
    } else if bytes.starts_with(PNG_MAGIC) {
        strip_png(bytes)
    } else {
        Err(PhotoError::NotAnImage)
    }
}

fn strip_jpeg(b: &[u8]) -> Result<Vec<u8>, PhotoError> {
    let bad = || PhotoError::Corrupt("JPEG");
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut orientation = None;
    // Where a one-tag EXIF goes: after SOI, or after a JFIF APP0 that comes first.
    let mut exif_at = out.len();
    let mut first = true;
    let mut i = 2;
    loop {
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if b.get(i) != Some(&0xFF) {
            return Err(bad());
        }
        let marker = *b.get(i + 1).ok_or_else(bad)?;
        let start = i;
        i += 2;
        match marker {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                break;
            }
            0xD8 => return Err(bad()),
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&b[start..i]);
                continue;
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([
            *b.get(i).ok_or_else(bad)?,
            *b.get(i + 1).ok_or_else(bad)?,
        ]));
        if len < 2 || i + len > b.len() {
            return Err(bad());
        }
        let payload = &b[i + 2..i + len];
        let end = i + len;
        let keep = match marker {
            0xE0 => payload.starts_with(b"JFIF\0"),
            0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
            0xEE => payload.starts_with(b"Adobe"),
            0xE1 => {
                if payload.starts_with(b"Exif\0\0") {
                    orientation = orientation.or(exif_orientation(&payload[6..]));
                }
                false
            }
            0xE3..=0xED | 0xEF | 0xFE => false,
            _ => true,
        };
        if keep {
            out.extend_from_slice(&b[start..end]);
            if first && marker == 0xE0 {
                exif_at = out.len();
            }
        }
        first = false;
        i = end;
        if marker == 0xDA {
            // Entropy-coded data up to the next marker (stuffed 0xFF00 and restarts are data).
            let mut j = i;
            while j < b.len() {
                if b[j] == 0xFF {
                    match b.get(j + 1) {
                        Some(0x00) | Some(0xD0..=0xD7) => {
                            j += 2;
                            continue;
                        }
                        _ => break,
                    }
                }
                j += 1;
            }
            out.extend_from_slice(&b[i..j.min(b.len())]);
            i = j;
            if i >= b.len() {
                return Err(bad());
            }
        }
    }
    if let Some(o) = orientation.filter(|o| (2..=8).contains(o)) {
        out.splice(exif_at..exif_at, orientation_exif(o));
    }
    Ok(out)
}

/// The Orientation tag (0x0112) of IFD0 in a TIFF structure, if present and sane.
fn exif_orientation(tiff: &[u8]) -> Option<u16> {
    let big = match tiff.get(..4)? {
        [b'M', b'M', 0, 42] => true,
        [b'I', b'I', 42, 0] => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let s: [u8; 2] = tiff.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let s: [u8; 4] = tiff.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let n = usize::from(u16_at(ifd)?);
    for k in 0..n.min(512) {
        let e = ifd.checked_add(2 + 12 * k)?;
        if u16_at(e)? == 0x0112 && u16_at(e + 2)? == 3 {
            return u16_at(e + 8);
        }
    }
    None
}

/// An APP1 EXIF segment holding only the Orientation tag.
fn orientation_exif(o: u16) -> Vec<u8> {
    let mut tiff = vec![b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1];
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    tiff.extend_from_slice(&o.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&tiff);
    seg
}

/// Chunks that say how to draw the pixels; text, times, EXIF and anything unknown go.
const PNG_KEEP: [&[u8; 4]; 12] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"pHYs", b"bKGD",
];

fn strip_png(b: &[u8]) -> Result<Vec<u8>, PhotoError> {
    let bad = || PhotoError::Corrupt("PNG");
    let mut out = PNG_MAGIC.to_vec();
    let mut i = PNG_MAGIC.len();
    loop {
        let head = b.get(i..i + 8).ok_or_else(bad)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let end = i
            .checked_add(12)
            .and_then(|v| v.checked_add(len))
            .ok_or_else(bad)?;
        let chunk = b.get(i..end).ok_or_else(bad)?;
        let kind = &head[4..8];
        if PNG_KEEP.iter().any(|k| k.as_slice() == kind) {
            out.extend_from_slice(chunk);
        }
        i = end;
        if kind == b"IEND" {
            return Ok(out);
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

    /// `jpeg_bytes` with EXIF (GPS and an orientation), XMP, a comment and trailing bytes.
    pub(crate) fn jpeg_with_metadata(orientation: u16) -> Vec<u8> {
        let plain = jpeg_bytes(64, 48);
        // TIFF, little-endian: IFD0 with Orientation and a GPS IFD pointer; GPS IFD with a
        // latitude reference "S".
        let mut tiff = vec![b'I', b'I', 42, 0, 8, 0, 0, 0, 2, 0];
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0]);
        tiff.extend_from_slice(&orientation.to_le_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]);
        tiff.extend_from_slice(&[0, 0, 0, 0]);
        tiff.extend_from_slice(&[1, 0, 0x01, 0x00, 2, 0, 2, 0, 0, 0, b'S', 0, 0, 0]);
        tiff.extend_from_slice(b"GPSLatitude -2.9761");
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        app1.extend_from_slice(b"Exif\0\0");
        app1.extend_from_slice(&tiff);
        let xmp_body = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>GPS 104.7754</x:xmpmeta>";
        let mut xmp = vec![0xFF, 0xE1];
        xmp.extend_from_slice(&((2 + xmp_body.len()) as u16).to_be_bytes());
        xmp.extend_from_slice(xmp_body);
        let com_body = b"taken at home";
        let mut com = vec![0xFF, 0xFE];
        com.extend_from_slice(&((2 + com_body.len()) as u16).to_be_bytes());
        com.extend_from_slice(com_body);
        // After the JFIF APP0 (2 + 16 bytes).
        let mut out = plain[..20].to_vec();
        out.extend_from_slice(&app1);
        out.extend_from_slice(&xmp);
        out.extend_from_slice(&com);
        out.extend_from_slice(&plain[20..]);
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn jpeg_metadata_goes_orientation_stays() {
        let with = jpeg_with_metadata(6);
        assert_eq!(sniff(&with), Ok(sniff(&jpeg_bytes(64, 48)).unwrap()));
        assert!(contains(&with, b"GPSLatitude"));
        let clean = strip_metadata(&with).unwrap();
        for gone in [&b"GPSLatitude"[..], b"xmpmeta", b"taken at home", b"II*"] {
            assert!(
                !contains(&clean, gone),
                "{:?} still there",
                String::from_utf8_lossy(gone)
            );
        }
        assert_eq!(sniff(&clean), sniff(&with), "same picture, same size");
        assert!(clean.starts_with(&jpeg_bytes(64, 48)[..20]), "JFIF first");
        // The orientation survives as the only EXIF tag.
        let at = clean.windows(6).position(|w| w == b"Exif\0\0").unwrap();
        assert_eq!(exif_orientation(&clean[at + 6..]), Some(6));
        // A photo without EXIF (or upright) gets none; the scan data is untouched.
        let plain = jpeg_bytes(64, 48);
        assert_eq!(strip_metadata(&plain).unwrap(), plain);
        assert_eq!(strip_metadata(&jpeg_with_metadata(1)).unwrap(), plain);
        let mut trailing = plain.clone();
        trailing.extend_from_slice(b"hidden");
        assert_eq!(strip_metadata(&trailing).unwrap(), plain);
    }

    #[test]
    fn png_text_and_exif_chunks_go() {
        let png = png_bytes(4, 3);
        let mut with = png[..33].to_vec();
        for (kind, data) in [
            (&b"tEXt"[..], &b"Comment\0at home"[..]),
            (b"eXIf", b"MM\0*GPS"),
            (b"tIME", b"\x07\xe9\x01\x01\0\0\0"),
        ] {
            with.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            with.extend_from_slice(&body);
            with.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        with.extend_from_slice(&png[33..]);
        assert!(sniff(&with).is_ok());
        let clean = strip_metadata(&with).unwrap();
        assert_eq!(clean, png);
    }

    proptest::proptest! {
        /// Any bytes: sniffing and stripping never panic, and what strips cleanly still sniffs
        /// as the same image.
        #[test]
        fn sniff_and_strip_take_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = sniff(&bytes);
            let _ = strip_metadata(&bytes);
        }

        #[test]
        fn damaged_images_never_panic(cut in 0usize..200, flip in 0usize..200, byte in proptest::prelude::any::<u8>()) {
            for img in [jpeg_with_metadata(3), png_bytes(7, 5)] {
                let mut b = img.clone();
                if flip < b.len() { b[flip] = byte; }
                b.truncate(b.len().saturating_sub(cut % 20));
                if let Ok(info) = sniff(&b) {
                    if let Ok(clean) = strip_metadata(&b) {
                        proptest::prop_assert_eq!(sniff(&clean), Ok(info));
                    }
                }
            }
        }
    }

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(crc32(b""), 0);
    }
}
