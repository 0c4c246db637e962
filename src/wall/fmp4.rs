//! Fragmented MP4 (ISO/IEC 14496-12) for Media Source Extensions, written by hand: one
//! initialisation segment from the camera's `avcC`, then one `moof`+`mdat` fragment per access
//! unit, sent the moment the access unit arrives.
//!
//! Not GStreamer's `mp4mux`: in fragment mode it holds every frame until the next one arrives
//! (it needs the next timestamp for the duration), 200 ms at 10 fps, and it cannot start a late
//! joiner mid-stream. Here a fragment's duration is the previous frame interval (a camera's
//! rate is regular; the next fragment's decode time is exact, so an estimate never accumulates),
//! and its decode time is the media time the analytics results carry, in a 90 kHz timescale.

/// Ticks per second of the video track (RTP's video clock).
pub const TIMESCALE: u32 = 90_000;

/// `ns` on the 90 kHz timescale (rounded down; the same function for fragments and metadata, so
/// a frame and its analytics result agree to the tick).
pub fn ticks(ns: u64) -> u64 {
    (ns as u128 * TIMESCALE as u128 / 1_000_000_000) as u64
}

fn push_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn push_full_box(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    push_box(out, kind, |o| {
        o.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00FF_FFFF)).to_be_bytes());
        body(o);
    });
}

fn u16be(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u32be(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}

/// The unity transformation matrix of `mvhd` and `tkhd`.
fn matrix(o: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32be(o, v);
    }
}

/// The initialisation segment (`ftyp` + `moov`) of a single H.264 video track (track 1).
pub fn init_segment(avcc: &[u8], width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width.min(0xFFFF), height.min(0xFFFF));
    let mut out = Vec::with_capacity(700 + avcc.len());
    push_box(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"isom");
        u32be(o, 0x200);
        for brand in [b"isom", b"iso6", b"avc1", b"mp41"] {
            o.extend_from_slice(brand);
        }
    });
    push_box(&mut out, b"moov", |o| {
        push_full_box(o, b"mvhd", 0, 0, |o| {
            u32be(o, 0); // creation time
            u32be(o, 0); // modification time
            u32be(o, 1000); // timescale
            u32be(o, 0); // duration: unknown (live)
            u32be(o, 0x0001_0000); // rate 1.0
            u16be(o, 0x0100); // volume 1.0
            o.extend_from_slice(&[0; 10]);
            matrix(o);
            o.extend_from_slice(&[0; 24]);
            u32be(o, 2); // next track id
        });
        push_box(o, b"trak", |o| {
            // flags: enabled, in movie
            push_full_box(o, b"tkhd", 0, 3, |o| {
                u32be(o, 0);
                u32be(o, 0);
                u32be(o, 1); // track id
                u32be(o, 0);
                u32be(o, 0); // duration
                o.extend_from_slice(&[0; 8]);
                u16be(o, 0); // layer
                u16be(o, 0); // alternate group
                u16be(o, 0); // volume
                u16be(o, 0);
                matrix(o);
                u32be(o, w << 16);
                u32be(o, h << 16);
            });
            push_box(o, b"mdia", |o| {
                push_full_box(o, b"mdhd", 0, 0, |o| {
                    u32be(o, 0);
                    u32be(o, 0);
                    u32be(o, TIMESCALE);
                    u32be(o, 0);
                    u16be(o, 0x55C4); // language "und"
                    u16be(o, 0);
                });
                push_full_box(o, b"hdlr", 0, 0, |o| {
                    u32be(o, 0);
                    o.extend_from_slice(b"vide");
                    o.extend_from_slice(&[0; 12]);
                    o.extend_from_slice(b"VideoHandler\0");
                });
                push_box(o, b"minf", |o| {
                    push_full_box(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                    push_box(o, b"dinf", |o| {
                        push_full_box(o, b"dref", 0, 0, |o| {
                            u32be(o, 1);
                            push_full_box(o, b"url ", 0, 1, |_| {});
                        });
                    });
                    push_box(o, b"stbl", |o| {
                        push_full_box(o, b"stsd", 0, 0, |o| {
                            u32be(o, 1);
                            push_box(o, b"avc1", |o| {
                                o.extend_from_slice(&[0; 6]);
                                u16be(o, 1); // data reference index
                                o.extend_from_slice(&[0; 16]);
                                u16be(o, w as u16);
                                u16be(o, h as u16);
                                u32be(o, 0x0048_0000); // 72 dpi
                                u32be(o, 0x0048_0000);
                                u32be(o, 0);
                                u16be(o, 1); // frame count
                                o.extend_from_slice(&[0; 32]); // compressor name
                                u16be(o, 0x18); // depth
                                o.extend_from_slice(&(-1i16).to_be_bytes());
                                push_box(o, b"avcC", |o| o.extend_from_slice(avcc));
                            });
                        });
                        for kind in [b"stts", b"stsc", b"stco"] {
                            push_full_box(o, kind, 0, 0, |o| u32be(o, 0));
                        }
                        push_full_box(o, b"stsz", 0, 0, |o| {
                            u32be(o, 0);
                            u32be(o, 0);
                        });
                    });
                });
            });
        });
        push_box(o, b"mvex", |o| {
            push_full_box(o, b"trex", 0, 0, |o| {
                for v in [1u32, 1, 0, 0, 0] {
                    u32be(o, v);
                }
            });
        });
    });
    out
}

/// `sample_depends_on = 2` (an I picture, decoding may start here).
const KEY_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample`.
const DELTA_FLAGS: u32 = 0x0101_0000;

/// One access unit's fragment, as [`fragment`] writes it.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// Fragment sequence number (`mfhd`), increasing from 1.
    pub seq: u32,
    /// Decode time, 90 kHz ticks (`tfdt`).
    pub decode_time: u64,
    /// Presentation time minus decode time, ticks (B-frames; 0 otherwise).
    pub composition_offset: i32,
    pub duration: u32,
    pub key: bool,
    /// The access unit: AVC NAL units with 4-byte lengths.
    pub data: &'a [u8],
}

/// The fragment (`moof` + `mdat`) carrying one access unit, after `prefix` (a header the
/// caller wants in the same buffer).
pub fn fragment(prefix: &[u8], s: &Sample) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 128 + s.data.len());
    out.extend_from_slice(prefix);
    let moof_start = out.len();
    let mut data_offset_at = 0;
    push_box(&mut out, b"moof", |o| {
        push_full_box(o, b"mfhd", 0, 0, |o| u32be(o, s.seq));
        push_box(o, b"traf", |o| {
            // default-base-is-moof: trun's data offset counts from the moof's first byte.
            push_full_box(o, b"tfhd", 0, 0x02_0000, |o| u32be(o, 1));
            push_full_box(o, b"tfdt", 1, 0, |o| {
                o.extend_from_slice(&s.decode_time.to_be_bytes())
            });
            // data offset, sample duration, size, flags, composition offset (signed: v1)
            push_full_box(o, b"trun", 1, 0x00_0F01, |o| {
                u32be(o, 1);
                data_offset_at = o.len();
                u32be(o, 0);
                u32be(o, s.duration);
                u32be(o, s.data.len() as u32);
                u32be(o, if s.key { KEY_FLAGS } else { DELTA_FLAGS });
                o.extend_from_slice(&s.composition_offset.to_be_bytes());
            });
        });
    });
    let moof_len = out.len() - moof_start;
    let offset = (moof_len + 8) as u32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&offset.to_be_bytes());
    u32be(&mut out, 8 + s.data.len() as u32);
    out.extend_from_slice(b"mdat");
    out.extend_from_slice(s.data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boxes at the top level of `b`: (type, payload).
    fn boxes(mut b: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            assert!(
                len >= 8 && len <= b.len(),
                "box length {len} of {}",
                b.len()
            );
            out.push((b[4..8].try_into().unwrap(), &b[8..len]));
            b = &b[len..];
        }
        assert!(b.is_empty(), "trailing bytes");
        out
    }

    fn find<'a>(b: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
        let (first, rest) = path.split_first().unwrap();
        let (_, body) = boxes(b)
            .into_iter()
            .find(|(k, _)| k == *first)
            .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(*first)));
        if rest.is_empty() {
            body
        } else {
            find(body, rest)
        }
    }

    #[test]
    fn init_segment_structure() {
        let avcc = [
            1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x64, 1, 0, 1, 0x68,
        ];
        let init = init_segment(&avcc, 640, 360);
        let top: Vec<[u8; 4]> = boxes(&init).into_iter().map(|(k, _)| k).collect();
        assert_eq!(top, [*b"ftyp", *b"moov"]);
        let tkhd = find(&init, &[b"moov", b"trak", b"tkhd"]);
        assert_eq!(&tkhd[tkhd.len() - 8..], &[2, 128, 0, 0, 1, 104, 0, 0]);
        let mdhd = find(&init, &[b"moov", b"trak", b"mdia", b"mdhd"]);
        assert_eq!(
            u32::from_be_bytes(mdhd[12..16].try_into().unwrap()),
            TIMESCALE
        );
        let stsd = find(
            &init,
            &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
        );
        let avc1 = find(&stsd[8..], &[b"avc1"]);
        assert_eq!(find(&avc1[78..], &[b"avcC"]), &avcc);
        let trex = find(&init, &[b"moov", b"mvex", b"trex"]);
        assert_eq!(&trex[4..8], &1u32.to_be_bytes());
    }

    #[test]
    fn fragment_points_at_its_sample() {
        let data = [0, 0, 0, 3, 0x65, 0x88, 0x84];
        for (key, cts) in [(true, 0), (false, -3003)] {
            let f = fragment(
                b"HDR",
                &Sample {
                    seq: 7,
                    decode_time: 123_456_789_012,
                    composition_offset: cts,
                    duration: 3003,
                    key,
                    data: &data,
                },
            );
            assert_eq!(&f[..3], b"HDR");
            let f = &f[3..];
            let top = boxes(f);
            assert_eq!(top[0].0, *b"moof");
            assert_eq!(top[1], (*b"mdat", &data[..]));
            let mfhd = find(f, &[b"moof", b"mfhd"]);
            assert_eq!(&mfhd[4..8], &7u32.to_be_bytes());
            let tfdt = find(f, &[b"moof", b"traf", b"tfdt"]);
            assert_eq!(tfdt[0], 1, "64-bit decode time");
            assert_eq!(&tfdt[4..12], &123_456_789_012u64.to_be_bytes());
            let trun = find(f, &[b"moof", b"traf", b"trun"]);
            let field =
                |i: usize| u32::from_be_bytes(trun[4 + i * 4..8 + i * 4].try_into().unwrap());
            assert_eq!(field(0), 1, "one sample");
            // The data offset lands on the mdat payload, counted from the moof's start.
            let moof_len = 8 + top[0].1.len();
            assert_eq!(field(1) as usize, moof_len + 8);
            assert_eq!(&f[field(1) as usize..], &data);
            assert_eq!((field(2), field(3)), (3003, data.len() as u32));
            assert_eq!(field(4), if key { KEY_FLAGS } else { DELTA_FLAGS });
            assert_eq!(field(5) as i32, cts);
        }
    }

    #[test]
    fn ticks_cases() {
        let cases = [
            (0, 0),
            (1_000_000_000, 90_000),
            (33_366_666, 3002),
            (40_000_000, 3600),
            (3_600_000_000_000_000, 324_000_000_000),
        ];
        for (ns, want) in cases {
            assert_eq!(ticks(ns), want, "{ns}");
        }
    }
}
