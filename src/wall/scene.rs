//! What the wall draws for one site: the tile (picture centred in a fixed-size frame), zones
//! coloured by state, counting lines with their totals, tracked boxes, the header with site name,
//! live clock and camera state, and the "KAMERA OFFLINE" tile.
//!
//! Every output of the wall (MJPEG, per-site RTSP, mosaic cell) is exactly the configured tile
//! size, whatever the camera's aspect: wall controllers and VMS software want a stream whose
//! size never changes, and a camera that goes offline and comes back must not renegotiate caps.

use chrono::{DateTime, Utc};
use opencv::core::{Point as CvPoint, Rect};

use super::words::{class_name, clock_text, since_text, time_text, zone_label};
use crate::config::Site;
use crate::draw::canvas::{Canvas, Font, Spans, Yuv};
use crate::draw::DrawError;
use crate::hub::CameraStatus;
use crate::model::{
    DisplayFrame, Image, Labels, LineTotals, PixelFormat, Point, Severity, SiteResults, Track,
    TrackState,
};
use crate::time::Timezone;

/// Tracks are drawn where they are expected to be now, extrapolated from the last analytics
/// result by their velocity, but not further than this: beyond it the guess is worse than lag.
const MAX_EXTRAPOLATION_S: f64 = 0.5;
/// Results older than this are not drawn as boxes (they would mislead); the tile says so.
const STALE_RESULTS_S: f64 = 3.0;

const BAR: Yuv = Yuv::gray(24);

/// Zone geometry from config.
#[derive(Clone, Debug)]
struct ZoneGeom {
    id: String,
    name: String,
    polygon: Vec<Point>,
}

/// Counting-line geometry from config.
#[derive(Clone, Debug)]
struct LineGeom {
    id: String,
    a: Point,
    b: Point,
}

/// What one render sees.
pub struct SceneInput<'a> {
    /// The newest display frame, if any.
    pub frame: Option<&'a DisplayFrame>,
    /// True when `frame` is fresh (the camera is delivering).
    pub live: bool,
    pub results: &'a SiteResults,
    pub status: &'a CameraStatus,
    pub now: DateTime<Utc>,
    /// Seconds since the wall started (a camera that never delivered is "connecting" at first).
    pub uptime_s: f64,
}

/// Placement of the picture inside the tile, in tile pixels: the picture's full extent (it may
/// be larger than the tile and cropped) and where its top-left corner lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placement {
    x: i32,
    y: i32,
    w: i32,
    h: i32,
}

impl Placement {
    fn px(&self, p: Point) -> CvPoint {
        CvPoint::new(
            self.x + (p.x * self.w as f32).round() as i32,
            self.y + (p.y * self.h as f32).round() as i32,
        )
    }
}

/// The renderer of one site's tile, with geometry cached per picture placement.
pub struct SiteScene {
    pub name: String,
    zones: Vec<ZoneGeom>,
    lines: Vec<LineGeom>,
    labels: Labels,
    tz: Timezone,
    tile_w: u32,
    tile_h: u32,
    /// Size of text and marks relative to a 640x360 tile, so a 1280x720 tile (or a 320x180
    /// one) reads the same at the same viewing size.
    ui: f64,
    cached_for: Option<Placement>,
    zone_spans: Vec<Spans>,
}

impl SiteScene {
    pub fn new(site: &Site, labels: Labels, tz: Timezone, tile_w: u32, tile_h: u32) -> Self {
        Self {
            name: site.name.clone(),
            zones: site
                .zones
                .iter()
                .map(|z| ZoneGeom {
                    id: z.id.clone(),
                    name: z.name.clone(),
                    polygon: z
                        .polygon
                        .iter()
                        .map(|p| Point::new(p[0] as f32, p[1] as f32))
                        .collect(),
                })
                .collect(),
            lines: site
                .lines
                .iter()
                .map(|l| LineGeom {
                    id: l.id.clone(),
                    a: Point::new(l.points[0][0] as f32, l.points[0][1] as f32),
                    b: Point::new(l.points[1][0] as f32, l.points[1][1] as f32),
                })
                .collect(),
            labels,
            tz,
            tile_w,
            tile_h,
            // Not below 0.75: small tiles are shown enlarged, and text must stay legible.
            ui: (tile_h as f64 / 360.0).clamp(0.75, 3.0),
            cached_for: None,
            zone_spans: Vec::new(),
        }
    }

    fn simplex(&self, scale: f64) -> Font {
        Font::simplex(scale * self.ui, if self.ui >= 1.6 { 2 } else { 1 })
    }

    fn duplex(&self, scale: f64, thickness: i32) -> Font {
        let t = ((thickness as f64) * self.ui.max(1.0)).round() as i32;
        Font::duplex(scale * self.ui, t.max(1))
    }

    /// A length in pixels of a 640x360 tile, at this tile's size.
    fn px(&self, v: f64) -> i32 {
        (v * self.ui).round() as i32
    }

    fn header_h(&self) -> i32 {
        self.px(24.0)
    }

    pub fn tile_size(&self) -> (u32, u32) {
        (self.tile_w, self.tile_h)
    }

    /// Renders the tile into `out` (reallocated to the tile size if needed).
    pub fn render(&mut self, out: &mut Image, input: &SceneInput) -> Result<(), DrawError> {
        if out.width != self.tile_w
            || out.height != self.tile_h
            || out.format != PixelFormat::I420
            || !out.is_valid()
        {
            *out = Image::with_format(self.tile_w, self.tile_h, PixelFormat::I420);
        }
        let placed = match input.frame {
            Some(f) if f.image.format == PixelFormat::I420 && f.image.is_valid() => {
                Some(blit_centred(&f.image, out))
            }
            _ => None,
        };
        let mut c = Canvas::new(out)?;
        if let Some(p) = placed {
            self.fill_bars(&mut c, p)?;
        } else {
            c.fill_rect(Rect::new(0, 0, c.w, c.h), BAR)?;
        }
        match (input.live, placed) {
            (true, Some(p)) => {
                self.draw_analytics(&mut c, p, input)?;
                self.draw_header(&mut c, input, true)?;
            }
            (_, p) => {
                if p.is_some() {
                    // The last picture the camera sent, frozen and dimmed: operators see what the
                    // camera last showed without mistaking it for live video.
                    c.dim(90)?;
                }
                self.draw_offline(&mut c, input)?;
                self.draw_header(&mut c, input, false)?;
            }
        }
        Ok(())
    }

    fn fill_bars(&self, c: &mut Canvas, p: Placement) -> Result<(), DrawError> {
        let (x0, y0) = (p.x.max(0), p.y.max(0));
        let (x1, y1) = ((p.x + p.w).min(c.w), (p.y + p.h).min(c.h));
        let bars = [
            Rect::new(0, 0, c.w, y0),
            Rect::new(0, y1, c.w, c.h - y1),
            Rect::new(0, y0, x0, y1 - y0),
            Rect::new(x1, y0, c.w - x1, y1 - y0),
        ];
        for r in bars {
            if r.width > 0 && r.height > 0 {
                c.fill_rect(r, BAR)?;
            }
        }
        Ok(())
    }

    fn ensure_geometry(&mut self, p: Placement) -> Result<(), DrawError> {
        if self.cached_for == Some(p) {
            return Ok(());
        }
        let (w, h) = (self.tile_w as i32, self.tile_h as i32);
        self.zone_spans = self
            .zones
            .iter()
            .map(|z| {
                let pts: Vec<CvPoint> = z.polygon.iter().map(|q| p.px(*q)).collect();
                Spans::of_polygon(&pts, w, h)
            })
            .collect::<Result<_, _>>()?;
        self.cached_for = Some(p);
        Ok(())
    }

    fn draw_analytics(
        &mut self,
        c: &mut Canvas,
        p: Placement,
        input: &SceneInput,
    ) -> Result<(), DrawError> {
        self.ensure_geometry(p)?;
        let r = input.results;
        let results_age = r
            .captured_at
            .map(|t| (input.now - t).num_milliseconds() as f64 / 1000.0);
        let fresh = results_age.is_some_and(|a| a < STALE_RESULTS_S);
        // Alarm blink: open incidents pulse once a second so they catch the eye on a wall of
        // many tiles.
        let blink = input.now.timestamp_subsec_millis() < 500;

        for (i, z) in self.zones.iter().enumerate() {
            let state = r.zones.iter().find(|s| s.zone.as_str() == z.id);
            let incident = r
                .open_incidents
                .iter()
                .any(|(_, zone)| zone.as_ref().is_some_and(|zz| zz.as_str() == z.id));
            let sev = match (incident, state) {
                (true, _) => Some(Severity::Alert),
                (false, Some(s)) if fresh => Some(s.severity),
                _ => None,
            };
            let pts: Vec<CvPoint> = z.polygon.iter().map(|q| p.px(*q)).collect();
            let spans = &self.zone_spans[i];
            match sev {
                Some(s) => {
                    let col = severity_yuv(s);
                    let alpha = if s == Severity::Alert && blink {
                        110
                    } else {
                        64
                    };
                    c.blend_spans(spans, col, alpha)?;
                    let t = if incident { 3.0 } else { 2.0 };
                    c.polyline(&pts, true, col, self.px(t).max(2))?;
                }
                None => c.polyline(&pts, true, Yuv::gray(200), 1)?,
            }
            let text = match (state, fresh) {
                (Some(s), true) => match zone_label(s) {
                    w if !w.is_empty() => format!("{}: {w}", z.name),
                    _ => format!("{}: {}", z.name, s.count),
                },
                _ => z.name.clone(),
            };
            let bg = sev.map(severity_yuv).unwrap_or(Yuv::gray(60));
            let font = self.simplex(0.38);
            let (tw, th, base) = font.size(&text)?;
            // Anchored just inside the zone's topmost corner, like the zone names of an NVR: the
            // middle of a zone is where the traffic (and the counting line) is.
            let top = pts
                .iter()
                .min_by_key(|q| (q.y, q.x))
                .copied()
                .unwrap_or(CvPoint::new(spans.centroid.0, spans.centroid.1));
            let at = CvPoint::new(
                (top.x - tw / 2).clamp(p.x.max(2), ((p.x + p.w).min(c.w) - tw - 10).max(2)),
                (top.y + 4).clamp(self.header_h() + 2, c.h - th - base - 10),
            );
            c.label(&text, at, font, bg, bg.text_on())?;
        }

        for l in &self.lines {
            let totals = r
                .lines
                .iter()
                .find(|t| t.line.as_ref().is_some_and(|id| id.as_str() == l.id));
            self.draw_line(c, p, l, totals)?;
        }

        if fresh {
            let dt = match (input.frame, r.captured_at) {
                (Some(f), Some(t)) => ((f.captured_at - t).num_milliseconds() as f64 / 1000.0)
                    .clamp(0.0, MAX_EXTRAPOLATION_S),
                _ => 0.0,
            };
            for t in r.tracks.iter().filter(|t| t.state == TrackState::Confirmed) {
                self.draw_track(c, p, t, dt as f32)?;
            }
        } else {
            let text = if r.captured_at.is_some() {
                "ANALITIK TERTUNDA"
            } else {
                "ANALITIK BELUM AKTIF"
            };
            let font = self.simplex(0.36);
            let (tw, th, base) = font.size(text)?;
            c.label(
                text,
                CvPoint::new(c.w - tw - 10, c.h - th - base - 8),
                font,
                Yuv::gray(50),
                200,
            )?;
        }
        Ok(())
    }

    fn draw_line(
        &self,
        c: &mut Canvas,
        p: Placement,
        l: &LineGeom,
        totals: Option<&LineTotals>,
    ) -> Result<(), DrawError> {
        let (a, b) = (p.px(l.a), p.px(l.b));
        let col = Yuv::rgb(255, 255, 255);
        // A dark underlay keeps the white line visible on bright asphalt.
        c.line(a, b, Yuv::gray(30), self.px(4.0).max(3))?;
        c.line(a, b, col, self.px(2.0).max(1))?;
        c.dot(a, self.px(4.0), col)?;
        c.dot(b, self.px(4.0), col)?;
        // "in" is a crossing from the left of A->B to its right (image coordinates, y down):
        // the right-hand normal of (dx, dy) is (-dy, dx).
        let (dx, dy) = ((b.x - a.x) as f32, (b.y - a.y) as f32);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (nx, ny) = (-dy / len, dx / len);
        let arrow = 26.0 * self.ui as f32;
        let (in_n, out_n) = totals.map(|t| (t.in_count, t.out_count)).unwrap_or((0, 0));
        let font = self.simplex(0.45);
        let cyan = Yuv::rgb(0, 200, 255);
        // Two anchors along the line so the two arrows do not overlap each other's labels.
        for (frac, sign, n) in [(0.35f32, 1.0f32, in_n), (0.65, -1.0, out_n)] {
            let m = CvPoint::new(
                (a.x as f32 + dx * frac) as i32,
                (a.y as f32 + dy * frac) as i32,
            );
            // The arrow points where crossers go: "in" towards the right-hand side.
            let to = CvPoint::new(
                (m.x as f32 + sign * nx * arrow) as i32,
                (m.y as f32 + sign * ny * arrow) as i32,
            );
            c.arrow(m, to, cyan, self.px(2.0).max(2))?;
            let text = n.to_string();
            let (tw, th, base) = font.size(&text)?;
            let lx = (to.x + (to.x - m.x) / 2 - tw / 2).clamp(2, c.w - tw - 10);
            let ly =
                (to.y + (to.y - m.y) / 2 - th / 2).clamp(self.header_h() + 2, c.h - th - base - 10);
            c.label(&text, CvPoint::new(lx, ly), font, cyan, cyan.text_on())?;
        }
        Ok(())
    }

    fn draw_track(
        &self,
        c: &mut Canvas,
        p: Placement,
        t: &Track,
        dt: f32,
    ) -> Result<(), DrawError> {
        let b = t.bbox;
        let (ox, oy) = (t.velocity.x * dt, t.velocity.y * dt);
        let tl = p.px(Point::new(b.x1 + ox, b.y1 + oy));
        let br = p.px(Point::new(b.x2 + ox, b.y2 + oy));
        let r = Rect::new(tl.x, tl.y, (br.x - tl.x).max(2), (br.y - tl.y).max(2));
        let name = class_name(&self.labels, t.class_id);
        let col = class_colour(&name);
        c.rect(r, col, self.px(2.0).max(2))?;
        let text = match t.speed_kmh {
            Some(v) if v >= 1.0 => format!("{name} {} {:.0}km/j", t.id, v),
            _ => format!("{name} {}", t.id),
        };
        let font = self.simplex(0.34);
        let (_, th, base) = font.size(&text)?;
        let h = th + base + 2 * 2;
        let y = if r.y - h >= self.header_h() {
            r.y - h
        } else {
            r.y
        };
        c.label(&text, CvPoint::new(r.x.max(0), y), font, col, col.text_on())?;
        Ok(())
    }

    fn draw_header(&self, c: &mut Canvas, input: &SceneInput, live: bool) -> Result<(), DrawError> {
        c.blend_rect(Rect::new(0, 0, c.w, self.header_h()), Yuv::gray(16), 180)?;
        let dot = if live {
            Yuv::rgb(40, 210, 90)
        } else if connecting(input) {
            Yuv::rgb(230, 160, 0)
        } else {
            Yuv::rgb(230, 40, 40)
        };
        c.dot(
            CvPoint::new(self.px(11.0), self.header_h() / 2),
            self.px(5.0),
            dot,
        )?;
        let font = self.duplex(0.45, 1);
        // Narrow tiles show the time only: the site name matters more than the date.
        let clock = if self.tile_w < 480 {
            time_text(self.tz, input.now)
        } else {
            clock_text(self.tz, input.now)
        };
        let (cw, _, _) = font.size(&clock)?;
        let max_name = (c.w - cw - 40).max(40);
        let name = fit_text(&self.name, font, max_name)?;
        c.text(
            &name,
            CvPoint::new(self.px(22.0), self.header_h() - self.px(7.0)),
            font,
            235,
        )?;
        c.text(
            &clock,
            CvPoint::new(c.w - cw - self.px(8.0), self.header_h() - self.px(7.0)),
            font,
            235,
        )?;
        Ok(())
    }

    fn draw_offline(&self, c: &mut Canvas, input: &SceneInput) -> Result<(), DrawError> {
        let st = input.status;
        let connecting = connecting(input);
        let (title, bg) = if connecting {
            ("MENGHUBUNGKAN KAMERA...", Yuv::rgb(230, 160, 0))
        } else {
            ("KAMERA OFFLINE", Yuv::rgb(200, 30, 30))
        };
        let big = self.duplex(0.8, 2);
        let (tw, th, base) = big.size(title)?;
        let cy = c.h / 2 - 10;
        let r = c.label(
            title,
            CvPoint::new((c.w - tw) / 2 - 8, cy - th),
            big,
            bg,
            bg.text_on(),
        )?;
        let _ = base;
        let small = self.simplex(0.45);
        let mut y = r.y + r.height + 22;
        let mut lines = Vec::new();
        if !connecting {
            // Offline since the camera was last seen, or since the supervisor declared it.
            let since = if st.online {
                st.last_frame_at.unwrap_or(st.since)
            } else {
                st.since
            };
            lines.push(format!("sejak {}", since_text(self.tz, since, input.now)));
        }
        if let Some(e) = &st.last_error {
            lines.push(truncate(e, 60));
        }
        if st.reconnects > 0 {
            lines.push(format!("percobaan sambung ulang: {}", st.reconnects));
        }
        for (i, l) in lines.iter().enumerate() {
            let f = if i == 0 && !connecting {
                self.duplex(0.55, 1)
            } else {
                small
            };
            let (lw, lh, _) = f.size(l)?;
            c.text(l, CvPoint::new((c.w - lw) / 2, y), f, 225)?;
            y += lh + 12;
        }
        Ok(())
    }
}

/// A camera that has not delivered a frame yet, shortly after start, is "connecting" rather than
/// offline: the first RTSP setup takes a few seconds and should not look like a failure.
fn connecting(input: &SceneInput) -> bool {
    input.status.last_frame_at.is_none()
        && input.frame.is_none()
        && input.status.reconnects == 0
        && input.uptime_s < 20.0
}

/// Copies `src` centred into `dst` (both I420, `dst` at least 2x2), cropping what does not fit.
/// Offsets are even so chroma samples stay aligned with their luma.
fn blit_centred(src: &Image, dst: &mut Image) -> Placement {
    let (sw, sh) = (src.width as usize, src.height as usize);
    let (dw, dh) = (dst.width as usize, dst.height as usize);
    let cw = sw.min(dw) & !1;
    let ch = sh.min(dh) & !1;
    let sx = ((sw - cw) / 2) & !1;
    let sy = ((sh - ch) / 2) & !1;
    let dx = ((dw - cw) / 2) & !1;
    let dy = ((dh - ch) / 2) & !1;
    let (s_y, s_c) = (sw * sh, sw.div_ceil(2) * sh.div_ceil(2));
    let (d_y, d_c) = (dw * dh, (dw / 2) * (dh / 2));
    let planes = [
        (0usize, 0usize, sw, dw, 1usize),
        (s_y, d_y, sw.div_ceil(2), dw / 2, 2),
        (s_y + s_c, d_y + d_c, sw.div_ceil(2), dw / 2, 2),
    ];
    for (s_off, d_off, s_stride, d_stride, div) in planes {
        let (rows, cols) = (ch / div, cw / div);
        for r in 0..rows {
            let s = s_off + (sy / div + r) * s_stride + sx / div;
            let d = d_off + (dy / div + r) * d_stride + dx / div;
            if let (Some(from), true) = (src.data.get(s..s + cols), d + cols <= dst.data.len()) {
                dst.data[d..d + cols].copy_from_slice(from);
            }
        }
    }
    Placement {
        x: dx as i32 - sx as i32,
        y: dy as i32 - sy as i32,
        w: sw as i32,
        h: sh as i32,
    }
}

/// Colour of a zone condition: green, yellow, red.
pub fn severity_yuv(s: Severity) -> Yuv {
    match s {
        Severity::Normal => Yuv::rgb(60, 200, 80),
        Severity::Elevated => Yuv::rgb(255, 210, 0),
        Severity::Alert => Yuv::rgb(230, 40, 40),
    }
}

/// What an object is, for its box colour (here and on the browser wall's canvas): `vehicle`,
/// `person` or `other`, by its class name in the wall's words.
pub fn class_group(name: &str) -> &'static str {
    match name {
        "mobil" | "motor" | "bus" | "truk" | "sepeda" | "kereta" => "vehicle",
        "orang" => "person",
        _ => "other",
    }
}

/// Box colour by what the object is: vehicles amber, people cyan, anything else violet (the
/// browser wall's `GROUP_COLOUR` in assets/wall/live.js matches).
fn class_colour(name: &str) -> Yuv {
    match class_group(name) {
        "vehicle" => Yuv::rgb(255, 170, 0),
        "person" => Yuv::rgb(0, 210, 255),
        _ => Yuv::rgb(190, 120, 255),
    }
}

fn truncate(s: &str, n: usize) -> String {
    // Hershey fonts draw ASCII only; anything else would show as '?'.
    let ascii: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if ascii.chars().count() <= n {
        ascii
    } else {
        format!(
            "{}...",
            ascii.chars().take(n.saturating_sub(3)).collect::<String>()
        )
    }
}

fn fit_text(s: &str, font: Font, max_w: i32) -> Result<String, DrawError> {
    let mut t = truncate(s, 80);
    while font.size(&t)?.0 > max_w && t.len() > 4 {
        let keep = t.chars().count().saturating_sub(5);
        t = format!("{}...", t.chars().take(keep).collect::<String>());
    }
    Ok(t)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{BBox, Level, SiteId, TrackId, ZoneId, ZoneKind, ZoneState, ZoneWatch};
    use chrono::TimeZone;
    use std::sync::Arc;

    /// A site with one jam zone and one counting line (the wall's tests share it).
    pub(in crate::wall) fn site() -> Site {
        let text = r#"
[city]
name = "Palembang"
[[sites]]
id = "charitas"
name = "Simpang Charitas"
address = "Jl. X"
lat = -2.9
lon = 104.7
stream = "rtsp://127.0.0.1:1/x"
[[sites.zones]]
id = "sudirman"
name = "Pendekat Sudirman"
kind = "traffic_jam"
polygon = [[0.30, 0.42], [0.70, 0.42], [0.90, 1.0], [0.10, 1.0]]
[[sites.lines]]
id = "stop"
name = "Garis henti"
points = [[0.10, 0.72], [0.90, 0.72]]
"#;
        crate::config::Config::from_str_at(text, std::path::Path::new("t.toml"))
            .unwrap()
            .sites
            .remove(0)
    }

    fn frame(w: u32, h: u32, y: u8, at: DateTime<Utc>) -> DisplayFrame {
        let mut img = Image::with_format(w, h, PixelFormat::I420);
        img.data[..(w * h) as usize].fill(y);
        DisplayFrame {
            site: SiteId::new("charitas"),
            seq: 1,
            captured_at: at,
            image: Arc::new(img),
        }
    }

    fn luma(img: &Image, x: u32, y: u32) -> u8 {
        img.data[(y * img.width + x) as usize]
    }
    fn chroma_v(img: &Image, x: u32, y: u32) -> u8 {
        let ys = (img.width * img.height) as usize;
        img.data[ys + ys / 4 + ((y / 2) * (img.width / 2) + x / 2) as usize]
    }

    #[test]
    fn narrow_picture_is_centred_with_bars_and_zone_coloured() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let mut scene = SiteScene::new(&site(), Arc::from(Vec::new()), Timezone::JAKARTA, 640, 360);
        let f = frame(480, 360, 120, now);
        let results = SiteResults {
            captured_at: Some(now),
            zones: vec![ZoneState {
                severity: Severity::Alert,
                watch: ZoneWatch::Live,
                level: Some(Level::Macet),
                count: 12,
                ..ZoneState::new(ZoneId::new("sudirman"), ZoneKind::TrafficJam)
            }],
            ..Default::default()
        };
        let status = CameraStatus::starting(now);
        let mut out = Image::default();
        scene
            .render(
                &mut out,
                &SceneInput {
                    frame: Some(&f),
                    live: true,
                    results: &results,
                    status: &status,
                    now,
                    uptime_s: 100.0,
                },
            )
            .unwrap();
        assert_eq!(
            (out.width, out.height, out.format),
            (640, 360, PixelFormat::I420)
        );
        // bars left and right of the 480-wide picture, picture in the middle
        assert_eq!(luma(&out, 20, 200), BAR.y);
        assert_eq!(luma(&out, 630, 200), BAR.y);
        // inside the zone (red fill): V raised well above neutral; outside: untouched
        assert!(
            chroma_v(&out, 320, 330) > 150,
            "{}",
            chroma_v(&out, 320, 330)
        );
        assert_eq!(luma(&out, 100, 100), 120);
        assert_eq!(chroma_v(&out, 100, 100), 128);
    }

    #[test]
    fn offline_tile_is_mostly_dark_with_red_banner() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let mut scene = SiteScene::new(&site(), Arc::from(Vec::new()), Timezone::JAKARTA, 640, 360);
        let mut status = CameraStatus::starting(now - chrono::Duration::minutes(30));
        status.last_error = Some("no frames for 5.0 s".into());
        status.reconnects = 3;
        let mut out = Image::default();
        scene
            .render(
                &mut out,
                &SceneInput {
                    frame: None,
                    live: false,
                    results: &SiteResults::default(),
                    status: &status,
                    now,
                    uptime_s: 100.0,
                },
            )
            .unwrap();
        let reds = (0..640)
            .flat_map(|x| (0..360).map(move |y| (x, y)))
            .filter(|&(x, y)| chroma_v(&out, x, y) > 180)
            .count();
        assert!(reds > 2000, "red banner pixels: {reds}");
        assert_eq!(luma(&out, 5, 300), BAR.y);
    }

    #[test]
    fn tracks_drawn_with_class_and_id() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let mut scene = SiteScene::new(
            &site(),
            Arc::from(vec!["person".to_string(), "car".to_string()]),
            Timezone::JAKARTA,
            640,
            360,
        );
        let f = frame(640, 360, 60, now);
        let track = Track {
            id: TrackId(7),
            class_id: 1,
            bbox: BBox::new(0.1, 0.2, 0.3, 0.4),
            score: 0.9,
            state: TrackState::Confirmed,
            velocity: Point::new(0.2, 0.0),
            speed_px_s: 0.0,
            speed_kmh: None,
            age_s: 1.0,
            hits: 5,
        };
        let results = SiteResults {
            captured_at: Some(now - chrono::Duration::milliseconds(250)),
            tracks: vec![track],
            ..Default::default()
        };
        let status = CameraStatus::starting(now);
        let mut out = Image::default();
        scene
            .render(
                &mut out,
                &SceneInput {
                    frame: Some(&f),
                    live: true,
                    results: &results,
                    status: &status,
                    now,
                    uptime_s: 100.0,
                },
            )
            .unwrap();
        // extrapolated by 0.2 * 0.25 = 0.05 of the width: left edge near x = 0.15 * 640 = 96
        let amber = Yuv::rgb(255, 170, 0);
        let col = (90..102).find(|&x| luma(&out, x, 110).abs_diff(amber.y) < 8);
        assert!(col.is_some_and(|x| (94..=98).contains(&x)), "{col:?}");
        assert_eq!(class_name(&Arc::from(Vec::new()), 3), "kelas 3");
    }
}
