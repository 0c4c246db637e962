//! The mosaic behind `/annotated/wall`: every site's annotated tile in the configured grid, one
//! picture, encoded once for all its clients.
//!
//! Composed here by copying the site workers' latest tiles into the grid at a fixed rate rather
//! than with GStreamer's `compositor`: tiles are latest-value slots, so a slow or dead camera
//! never holds up the mosaic (an aggregator would wait for it), and the copy is a few memcpys.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use opencv::core::{Point as CvPoint, Rect};
use tracing::{debug, info_span, warn};

use super::jpeg::i420_buffer;
use super::metrics::thread_cpu_seconds;
use super::rtsp::MOSAIC;
use super::tile::{push_to_sinks, SiteOutput, WorkerShared};
use crate::draw::canvas::{Canvas, Font, Yuv};
use crate::draw::DrawError;
use crate::model::{Image, PixelFormat};
use crate::timing::{self, Stage};

/// Grid geometry of the mosaic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub cols: u32,
    pub rows: u32,
    pub tile_w: u32,
    pub tile_h: u32,
}

impl Grid {
    /// The configured grid, grown by rows when there are more sites than cells.
    pub fn fit(cols: u32, rows: u32, sites: usize, tile_w: u32, tile_h: u32) -> Grid {
        let cols = cols.max(1);
        let rows = rows.max((sites as u32).div_ceil(cols)).max(1);
        Grid {
            cols,
            rows,
            tile_w,
            tile_h,
        }
    }
    pub fn width(&self) -> u32 {
        self.cols * self.tile_w
    }
    pub fn height(&self) -> u32 {
        self.rows * self.tile_h
    }
}

/// Copies `tile` into cell `i` of `out`.
pub fn place(out: &mut Image, grid: Grid, i: usize, tile: &Image) {
    let (col, row) = (i as u32 % grid.cols, i as u32 / grid.cols);
    if row >= grid.rows
        || tile.format != PixelFormat::I420
        || !tile.is_valid()
        || tile.width != grid.tile_w
        || tile.height != grid.tile_h
    {
        return;
    }
    let (ow, oh) = (out.width as usize, out.height as usize);
    let (tw, th) = (tile.width as usize, tile.height as usize);
    let (x0, y0) = ((col * grid.tile_w) as usize, (row * grid.tile_h) as usize);
    let planes = [
        (0, 0, tw, ow, 1),
        (tw * th, ow * oh, tw / 2, ow / 2, 2),
        (tw * th * 5 / 4, ow * oh * 5 / 4, tw / 2, ow / 2, 2),
    ];
    for (t_off, o_off, t_stride, o_stride, div) in planes {
        for r in 0..th / div {
            let s = t_off + r * t_stride;
            let d = o_off + (y0 / div + r) * o_stride + x0 / div;
            if let (Some(src), Some(dst)) = (
                tile.data.get(s..s + t_stride),
                out.data.get_mut(d..d + t_stride),
            ) {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// Paints an empty or not-yet-available cell.
fn placeholder(out: &mut Image, grid: Grid, i: usize, text: &str) -> Result<(), DrawError> {
    let (col, row) = (i as u32 % grid.cols, i as u32 / grid.cols);
    let r = Rect::new(
        (col * grid.tile_w) as i32,
        (row * grid.tile_h) as i32,
        grid.tile_w as i32,
        grid.tile_h as i32,
    );
    let mut c = Canvas::new(out)?;
    c.fill_rect(r, Yuv::gray(20))?;
    if !text.is_empty() {
        let f = Font::simplex(0.6, 1);
        let (tw, _, _) = f.size(text)?;
        c.text(
            text,
            CvPoint::new(r.x + (r.width - tw) / 2, r.y + r.height / 2),
            f,
            150,
        )?;
    }
    Ok(())
}

/// Thin dark lines between cells so adjacent pictures read as separate cameras.
fn gridlines(out: &mut Image, grid: Grid) -> Result<(), DrawError> {
    let mut c = Canvas::new(out)?;
    for col in 1..grid.cols {
        let x = (col * grid.tile_w) as i32;
        c.fill_rect(Rect::new(x - 1, 0, 2, c.h), Yuv::BLACK)?;
    }
    for row in 1..grid.rows {
        let y = (row * grid.tile_h) as i32;
        c.fill_rect(Rect::new(0, y - 1, c.w, 2), Yuv::BLACK)?;
    }
    Ok(())
}

/// Composes one mosaic frame from the sites' latest tiles.
pub fn compose(out: &mut Image, grid: Grid, sites: &[Arc<SiteOutput>]) -> Result<(), DrawError> {
    if out.width != grid.width() || out.height != grid.height() || !out.is_valid() {
        *out = Image::with_format(grid.width(), grid.height(), PixelFormat::I420);
    }
    for i in 0..(grid.cols * grid.rows) as usize {
        match sites.get(i) {
            Some(s) => match s.tile.load_full() {
                Some(t) => place(out, grid, i, &t),
                None => placeholder(out, grid, i, &format!("{}: memuat...", s.name))?,
            },
            None => placeholder(out, grid, i, "")?,
        }
    }
    gridlines(out, grid)
}

/// Starts the mosaic thread: it composes at `fps` while the mosaic mount has a client.
pub fn spawn(
    sites: Vec<Arc<SiteOutput>>,
    shared: Arc<WorkerShared>,
    grid: Grid,
    fps: f64,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wall-mosaic".into())
        .spawn(move || {
            let span = info_span!("wall", site = MOSAIC);
            let _g = span.enter();
            super::metrics::deprioritize_current_thread();
            let m = &shared.metrics;
            let cpu = m.cpu_seconds.with_label_values(&["mosaic"]);
            let compose_s = m.mosaic_compose_seconds.with_label_values::<&str>(&[]);
            let frames = m.rtsp_frames.with_label_values(&[MOSAIC]);
            let interval = Duration::from_secs_f64(1.0 / fps.max(0.1));
            let mut out = Image::default();
            let mut cpu_prev = thread_cpu_seconds();
            let mut next = Instant::now();
            while !shared.stop.load(Ordering::SeqCst) {
                if shared.mosaic_sinks.lock().is_empty() {
                    shared.wake.wait(Duration::from_millis(250));
                    next = Instant::now();
                    continue;
                }
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                    continue;
                }
                // Fixed cadence; after a stall, resume from now instead of bursting to catch up.
                next += interval;
                if next < now {
                    next = now + interval;
                }
                let t = Instant::now();
                if let Err(e) = compose(&mut out, grid, &sites) {
                    warn!(error = %e, "cannot compose mosaic");
                    continue;
                }
                let spent = t.elapsed();
                compose_s.observe(spent.as_secs_f64());
                timing::record(Stage::Mosaic, spent);
                match i420_buffer(&out, gst::ClockTime::ZERO) {
                    Ok(buf) => {
                        if push_to_sinks(&shared.mosaic_sinks, &buf) > 0 {
                            frames.inc();
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot wrap mosaic frame"),
                }
                let c = thread_cpu_seconds();
                cpu.inc_by((c - cpu_prev).max(0.0));
                cpu_prev = c;
            }
            debug!("mosaic ended");
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_grows_rows_for_more_sites() {
        let cases = [
            ((3, 2, 6), (3, 2)),
            ((3, 2, 2), (3, 2)),
            ((3, 2, 7), (3, 3)),
            ((2, 1, 5), (2, 3)),
            ((0, 0, 0), (1, 1)),
        ];
        for ((c, r, n), want) in cases {
            let g = Grid::fit(c, r, n, 640, 360);
            assert_eq!((g.cols, g.rows), want, "{c}x{r} with {n}");
        }
    }

    #[test]
    fn place_copies_into_the_right_cell() {
        let grid = Grid::fit(2, 2, 4, 8, 4);
        let mut out = Image::with_format(16, 8, PixelFormat::I420);
        let mut tile = Image::with_format(8, 4, PixelFormat::I420);
        tile.data[..32].fill(200);
        let ys = 32;
        tile.data[ys..ys + 8].fill(50); // U
        place(&mut out, grid, 3, &tile);
        let y = |x: usize, yy: usize| out.data[yy * 16 + x];
        assert_eq!(y(8, 4), 200);
        assert_eq!(y(15, 7), 200);
        assert_eq!(y(7, 4), 16);
        assert_eq!(y(8, 3), 16);
        let u = |x: usize, yy: usize| out.data[128 + yy * 8 + x];
        assert_eq!(u(4, 2), 50);
        assert_eq!(u(3, 2), 128);
        // wrong size tiles are ignored, not smeared across cells
        let small = Image::with_format(4, 4, PixelFormat::I420);
        place(&mut out, grid, 0, &small);
        assert_eq!(out.data[0], 16);
    }
}
