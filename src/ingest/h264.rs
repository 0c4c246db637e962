//! Just enough of the H.264 bitstream to pass a camera's video through untouched: NAL units in
//! AVC (length-prefixed) and Annex B (start codes) framing, the decoder configuration record
//! (`avcC`) an MP4 `avc1` sample entry carries, key-frame detection, and the RFC 6381 codecs
//! string a browser asks `MediaSource.isTypeSupported` about. Everything here reads camera
//! data: malformed input is an error, never a panic.

/// NAL unit types (ITU-T H.264 table 7-1) this module cares about.
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H264Error {
    #[error("avcC record too short ({0} bytes) or not version 1")]
    BadAvcc(usize),
    #[error("NAL length {len} at byte {at} runs past the end of a {size}-byte access unit")]
    BadLength { len: usize, at: usize, size: usize },
    #[error("empty NAL unit at byte {0}")]
    EmptyNal(usize),
    #[error("no SPS or PPS to build an avcC record from")]
    NoParameterSets,
}

/// The type of a NAL unit (its first byte's low five bits).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1F)
}

/// The NAL units of an AVC access unit whose lengths take `length_size` bytes (1, 2 or 4).
pub fn avc_nals(data: &[u8], length_size: usize) -> Result<Vec<&[u8]>, H264Error> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if i + length_size > data.len() {
            return Err(H264Error::BadLength {
                len: 0,
                at: i,
                size: data.len(),
            });
        }
        let len = data[i..i + length_size]
            .iter()
            .fold(0usize, |n, b| (n << 8) | *b as usize);
        let start = i + length_size;
        if len == 0 {
            return Err(H264Error::EmptyNal(i));
        }
        if start + len > data.len() {
            return Err(H264Error::BadLength {
                len,
                at: i,
                size: data.len(),
            });
        }
        out.push(&data[start..start + len]);
        i = start + len;
    }
    Ok(out)
}

/// The NAL units of an Annex B byte stream (start codes `00 00 01` or `00 00 00 01`), without
/// their start codes and trailing zero bytes.
pub fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut e = starts.get(k + 1).map_or(data.len(), |next| next - 3);
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        if e > s {
            out.push(&data[s..e]);
        }
    }
    out
}

/// NAL units as one AVC access unit with 4-byte lengths.
pub fn to_avc<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

/// Whether the access unit holds an IDR picture (decoding can start there).
pub fn has_idr(nals: &[&[u8]]) -> bool {
    nals.iter().any(|n| nal_type(n) == NAL_IDR)
}

/// The bytes each NAL length takes in AVC access units described by `avcc`.
pub fn avcc_length_size(avcc: &[u8]) -> Result<usize, H264Error> {
    check_avcc(avcc)?;
    Ok((avcc[4] & 0x03) as usize + 1)
}

/// `avcc` with its NAL length size set to 4 bytes (what [`to_avc`] writes).
pub fn avcc_with_4_byte_lengths(avcc: &[u8]) -> Result<Vec<u8>, H264Error> {
    check_avcc(avcc)?;
    let mut v = avcc.to_vec();
    v[4] = 0xFC | 0x03;
    Ok(v)
}

fn check_avcc(avcc: &[u8]) -> Result<(), H264Error> {
    if avcc.len() < 7 || avcc[0] != 1 {
        return Err(H264Error::BadAvcc(avcc.len()));
    }
    Ok(())
}

/// An avcC record (ISO/IEC 14496-15 5.3.3.1) for one SPS and one PPS, 4-byte NAL lengths.
pub fn avcc_from(sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, H264Error> {
    if sps.len() < 4 || pps.is_empty() || sps.len() > 0xFFFF || pps.len() > 0xFFFF {
        return Err(H264Error::NoParameterSets);
    }
    let mut v = vec![1, sps[1], sps[2], sps[3], 0xFC | 0x03, 0xE0 | 1];
    v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    v.extend_from_slice(sps);
    v.push(1);
    v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    v.extend_from_slice(pps);
    // High profiles carry chroma format and bit depth after the PPS; 4:2:0 8-bit is what
    // browsers decode, and they accept the record without the extension too.
    Ok(v)
}

/// The RFC 6381 codecs parameter of an avcC record: `avc1.PPCCLL` (profile, constraint flags,
/// level), as `MediaSource.isTypeSupported` takes it.
pub fn codecs_string(avcc: &[u8]) -> Result<String, H264Error> {
    check_avcc(avcc)?;
    Ok(format!(
        "avc1.{:02x}{:02x}{:02x}",
        avcc[1], avcc[2], avcc[3]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4];
    const PPS: &[u8] = &[0x68, 0xee, 0x3c, 0xb0];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
    const SLICE: &[u8] = &[0x41, 0x9a, 0x00];

    #[test]
    fn annexb_round_trip_to_avc() {
        let mut annexb = vec![0, 0, 0, 1];
        annexb.extend_from_slice(SPS);
        annexb.extend_from_slice(&[0, 0, 1]);
        annexb.extend_from_slice(PPS);
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(IDR);
        annexb.push(0); // trailing zero
        let nals = annexb_nals(&annexb);
        assert_eq!(nals, vec![SPS, PPS, IDR]);
        assert!(has_idr(&nals));
        let avc = to_avc(nals.iter().copied());
        assert_eq!(avc_nals(&avc, 4).unwrap(), vec![SPS, PPS, IDR]);
        assert!(!has_idr(&avc_nals(&to_avc([SLICE]), 4).unwrap()));
        assert!(annexb_nals(&[]).is_empty());
        assert!(annexb_nals(&[0, 0, 1]).is_empty());
    }

    #[test]
    fn malformed_avc_is_an_error() {
        let cases: [(&[u8], usize); 4] = [
            (&[0, 0, 0, 9, 1, 2], 4), // length past the end
            (&[0, 0, 0], 4),          // truncated length
            (&[0, 0, 0, 0], 4),       // empty NAL
            (&[5, 1, 2], 1),          // 1-byte lengths, too long
        ];
        for (data, size) in cases {
            assert!(avc_nals(data, size).is_err(), "{data:?}");
        }
        assert_eq!(avc_nals(&[2, 0x65, 1, 1, 0x41], 1).unwrap().len(), 2);
        assert!(avc_nals(&[], 4).unwrap().is_empty());
    }

    #[test]
    fn avcc_record_and_codecs_string() {
        let avcc = avcc_from(SPS, PPS).unwrap();
        assert_eq!(&avcc[..6], &[1, 0x64, 0x00, 0x1e, 0xFF, 0xE1]);
        assert_eq!(avcc_length_size(&avcc).unwrap(), 4);
        assert_eq!(codecs_string(&avcc).unwrap(), "avc1.64001e");
        let mut two = avcc.clone();
        two[4] = 0xFD;
        assert_eq!(avcc_length_size(&two).unwrap(), 2);
        assert_eq!(avcc_with_4_byte_lengths(&two).unwrap(), avcc);
        assert!(codecs_string(&[0, 1, 2]).is_err());
        assert!(avcc_from(&[0x67], PPS).is_err());
        assert!(avcc_length_size(&[2, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
