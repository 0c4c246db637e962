//! Incident snapshots: the frame with the zone and the boxes drawn (by `draw::overlay`), as a
//! JPEG stored under the data directory and carried inline, base64, in the message.
//!
//! Inline rather than on a separate topic: one QoS 1 message is the whole report, so the desk
//! never holds a report whose picture is lost or late, and the outbox has one row per report.
//! A 640-pixel JPEG at quality 80 is 30-80 KB (40-110 KB as base64): fine for MQTT brokers
//! (mosquitto's default limit is 256 MB; the embedded broker is set to 16 MB).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Days, FixedOffset, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use super::message::LocalTime;
use super::text::titles;
use crate::draw::overlay::{self, DrawError};
use crate::model::{
    Image, IncidentEvent, IncidentKind, Picture, Point, Severity, Snapshot, SnapshotBox,
};

/// The picture a snapshot shows, from the frame analytics worked on: the model's input
/// (stretched to a square, say) back to the camera's aspect, keeping the detail the analytics
/// frame has along its better-resolved side. The display branch may not be running at all
/// (nobody watches a burned-in output), so this is the picture every snapshot starts from.
pub fn picture_image(p: &Picture) -> Result<Image, DrawError> {
    let (w, h) = (p.image.width.max(1), p.image.height.max(1));
    let (sw, sh) = (p.source_width, p.source_height);
    if sw == 0 || sh == 0 {
        return overlay::resized(&p.image, w, h);
    }
    let aspect = sw as f64 / sh as f64;
    // Undo the stretch by growing the squeezed side, never past the camera's own size.
    let (tw, th) = if w as f64 / h as f64 >= aspect {
        (w, (w as f64 / aspect).round() as u32)
    } else {
        ((h as f64 * aspect).round() as u32, h)
    };
    let (tw, th) = if tw > sw || th > sh {
        (sw, sh)
    } else {
        (tw, th)
    };
    overlay::resized(&p.image, tw.max(2), th.max(2))
}

/// Renders and encodes a snapshot. Returns the JPEG and its size.
pub fn render_jpeg(
    frame: &Image,
    zone: Option<&[Point]>,
    boxes: &[SnapshotBox],
    severity: Severity,
    caption: &str,
    width: u32,
    quality: u8,
) -> Result<(Vec<u8>, u32, u32), DrawError> {
    let img = overlay::render_snapshot(frame, zone, boxes, severity, caption, width)?;
    let jpeg = overlay::encode_jpeg(&img, quality)?;
    Ok((jpeg, img.width, img.height))
}

/// The caption drawn on a snapshot: short and time first, since a long caption is cut off at the
/// picture's right edge. `at` is the decision's time, `started_at` the incident's start.
pub fn caption(
    kind: IncidentKind,
    event: IncidentEvent,
    site_name: &str,
    at: DateTime<Utc>,
    started_at: DateTime<Utc>,
    local: &LocalTime,
) -> String {
    let (title, _) = titles(kind, site_name);
    let clock = |t| format!("{} {}", local.at(t).format("%H:%M:%S"), local.abbrev(t));
    match (kind, event) {
        (_, IncidentEvent::End) => format!("{} - selesai: {title}", clock(at)),
        // The picture is the last one before the camera went offline (`started_at`).
        (IncidentKind::CameraOffline, _) => format!(
            "{} - gambar terakhir sebelum kamera mati",
            clock(started_at)
        ),
        _ => format!("{} - {title}", clock(at)),
    }
}

/// Where a snapshot is stored, relative to the data directory:
/// `snapshots/YYYY-MM-DD/<incident id>-<seq>.jpg`, the date being local.
pub fn relative_path(id: &str, seq: u32, at: DateTime<FixedOffset>) -> PathBuf {
    PathBuf::from("snapshots")
        .join(at.format("%Y-%m-%d").to_string())
        .join(format!("{id}-{seq}.jpg"))
}

/// Deletes the day folders under `data_dir/snapshots` older than `keep_days` days before
/// `today` (today's and the previous `keep_days - 1` days' folders stay). Anything that is not a
/// `YYYY-MM-DD` folder is left alone, so an operator's own files there are never touched.
/// Returns the folders removed.
pub fn prune(data_dir: &Path, today: NaiveDate, keep_days: u32) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if keep_days == 0 {
        return Ok(removed);
    }
    let root = data_dir.join("snapshots");
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    let Some(oldest_kept) = today.checked_sub_days(Days::new(u64::from(keep_days) - 1)) else {
        return Ok(removed);
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(day) = name
            .to_str()
            .and_then(|n| NaiveDate::parse_from_str(n, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if day < oldest_kept && entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Writes the JPEG under `data_dir` (creating the day folder) and describes it for the message.
pub fn store(
    data_dir: &Path,
    rel: &Path,
    jpeg: &[u8],
    width: u32,
    height: u32,
) -> std::io::Result<Snapshot> {
    let path = data_dir.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write then rename, so a crash never leaves a truncated picture under the final name.
    let tmp = path.with_extension("jpg.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(jpeg)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(describe(rel, jpeg, width, height))
}

/// The message's description of a stored JPEG.
pub fn describe(rel: &Path, jpeg: &[u8], width: u32, height: u32) -> Snapshot {
    Snapshot {
        content_type: "image/jpeg".into(),
        width,
        height,
        sha256: hex::encode(Sha256::digest(jpeg)),
        // Forward slashes whatever the platform: the path is data, read by other machines.
        path: rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
        data_base64: base64::engine::general_purpose::STANDARD.encode(jpeg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BBox, PixelFormat};
    use chrono::TimeZone;

    #[test]
    fn prune_removes_only_old_day_folders() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = dir.path().join("snapshots");
        for d in ["2026-10-24", "2026-10-25", "2026-11-23", "notes"] {
            std::fs::create_dir_all(snaps.join(d)).unwrap();
            std::fs::write(snaps.join(d).join("a.jpg"), b"x").unwrap();
        }
        std::fs::write(snaps.join("2026-01-01"), b"a file, not a day folder").unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        // 30 days kept: 2026-10-25 ..= 2026-11-23.
        let removed = prune(dir.path(), today, 30).unwrap();
        assert_eq!(removed, vec![snaps.join("2026-10-24")]);
        for kept in ["2026-10-25", "2026-11-23", "notes", "2026-01-01"] {
            assert!(snaps.join(kept).exists(), "{kept} was removed");
        }
        assert!(prune(dir.path(), today, 30).unwrap().is_empty());
        assert!(prune(
            dir.path(),
            today.checked_add_days(Days::new(900)).unwrap(),
            0
        )
        .unwrap()
        .is_empty());
        // No snapshots folder yet: nothing to do, no error.
        let empty = tempfile::tempdir().unwrap();
        assert!(prune(empty.path(), today, 1).unwrap().is_empty());
    }

    #[test]
    fn snapshot_picture_has_the_camera_aspect() {
        let cases = [
            ((416, 416), (1920, 1080), (740, 416)),
            ((416, 416), (768, 576), (555, 416)),
            ((416, 416), (1080, 1920), (416, 740)),
            ((416, 416), (320, 240), (320, 240)), // never above the camera's size
            ((320, 320), (0, 0), (320, 320)),     // size unknown: as it is
        ];
        for ((w, h), (sw, sh), want) in cases {
            let p = Picture {
                image: Image::new(w, h),
                source_width: sw,
                source_height: sh,
                captured_at: Utc::now(),
            };
            let img = picture_image(&p).unwrap();
            assert_eq!((img.width, img.height), want, "{w}x{h} of {sw}x{sh}");
            assert!(img.is_valid());
        }
    }

    #[test]
    fn renders_stores_and_describes() {
        let dir = tempfile::tempdir().unwrap();
        let frame = Image::with_format(320, 180, PixelFormat::I420);
        let zone = [
            Point::new(0.1, 0.1),
            Point::new(0.9, 0.1),
            Point::new(0.5, 0.9),
        ];
        let boxes = [SnapshotBox {
            bbox: BBox::new(0.2, 0.2, 0.4, 0.5),
            label: "car".into(),
        }];
        let (jpeg, w, h) = render_jpeg(
            &frame,
            Some(&zone),
            &boxes,
            Severity::Alert,
            "Kemacetan",
            640,
            80,
        )
        .unwrap();
        assert_eq!((w, h), (320, 180));
        let at = FixedOffset::east_opt(7 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 11, 23, 23, 30, 0)
            .unwrap();
        let rel = relative_path("charitas-traffic_jam-x", 2, at);
        assert_eq!(
            rel,
            Path::new("snapshots/2026-11-23/charitas-traffic_jam-x-2.jpg")
        );
        let snap = store(dir.path(), &rel, &jpeg, w, h).unwrap();
        let on_disk = std::fs::read(dir.path().join(&rel)).unwrap();
        assert_eq!(on_disk, jpeg);
        assert_eq!(
            snap.path,
            "snapshots/2026-11-23/charitas-traffic_jam-x-2.jpg"
        );
        let back = base64::engine::general_purpose::STANDARD
            .decode(&snap.data_base64)
            .unwrap();
        assert_eq!(back, jpeg);
        assert_eq!(snap.sha256, hex::encode(Sha256::digest(&jpeg)));
        assert_eq!(&back[..3], &[0xFF, 0xD8, 0xFF]);
    }
}
