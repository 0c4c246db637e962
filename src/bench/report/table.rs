//! The bench report as printed at the end of `simpang bench`: one table per trial, the
//! searches, the ceilings and the baseline, from the structs `--json` writes.

use std::fmt::Write as _;

use super::{BaselineStream, Mode, Report, Search, TrialResult};

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// The rows of the stage table that the issue asks for, in order, with what each measures.
pub const STAGE_NOTES: &[(&str, &str)] = &[
    ("decode", "decoder: compressed frame in -> picture out"),
    (
        "scale_display",
        "1080p -> tile size, I420 (burned-in outputs, at their rate)",
    ),
    ("scale_analytics", "1080p -> model size, BGR (detect rate)"),
    ("preprocess", "BGR -> tensor"),
    ("inference", "ONNX Runtime, one call"),
    ("postprocess", "decode + NMS"),
    ("tracking", "tracker, one frame"),
    ("rules", "zone/line rules + incident decisions, one frame"),
    ("result_age", "capture -> results published"),
    ("overlay", "wall: copy + draw one tile"),
    ("jpeg", "wall: JPEG of one tile"),
    ("x264_site", "wall: x264, per-site RTSP frame"),
    ("x264_mosaic", "wall: x264, mosaic frame"),
    ("mosaic", "wall: compose the mosaic"),
    ("publish_incident", "rule event -> broker PUBACK"),
    ("publish_counts", "counts report -> broker PUBACK"),
];

/// The table of one trial.
pub fn trial_table(t: &TrialResult) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} streams, {} mode, {:.0} s window after {:.0} s warm-up",
        t.streams,
        t.mode.map(Mode::as_str).unwrap_or("?"),
        t.window_s,
        t.warmup_s
    );
    let _ = writeln!(
        o,
        "  {:<17} {:>8} {:>9} {:>9} {:>9} {:>9}  what",
        "stage", "count", "p50 ms", "p95 ms", "p99 ms", "mean ms"
    );
    for row in &t.stages {
        let note = STAGE_NOTES
            .iter()
            .find(|(n, _)| *n == row.stage)
            .map(|(_, w)| *w)
            .unwrap_or("");
        let s = &row.summary;
        let _ = writeln!(
            o,
            "  {:<17} {:>8} {:>9} {:>9} {:>9} {:>9}  {}",
            row.stage,
            s.count,
            ms(s.p50_ms),
            ms(s.p95_ms),
            ms(s.p99_ms),
            ms(s.mean_ms),
            note
        );
    }
    let _ = writeln!(
        o,
        "  {:<14} {:>8} {:>8} {:>8} {:>7} {:>6} {:>9} {:>8} {:>9} {:>8}",
        "stream",
        "decoded",
        "display",
        "disp_fps",
        "dropped",
        "missed",
        "analytics",
        "an_drop",
        "processed",
        "an_fps"
    );
    for r in t.per_stream.iter().chain(std::iter::once(&t.total)) {
        let _ = writeln!(
            o,
            "  {:<14} {:>8} {:>8} {:>8.2} {:>7} {:>6} {:>9} {:>8} {:>9} {:>8.2}",
            r.site,
            r.decoded,
            r.display_frames,
            r.display_fps,
            r.display_dropped,
            r.display_missed,
            r.analytics_frames,
            r.analytics_dropped,
            r.processed,
            r.analytics_fps
        );
    }
    let _ = writeln!(
        o,
        "  process: CPU {:.1} % (100 % = one core), peak RSS {:.0} MB, real-time factor {:.3}",
        t.cpu_percent, t.peak_rss_mb, t.realtime_factor
    );
    let others = t.others_cpu_percent();
    let _ = writeln!(
        o,
        "  machine: CPU {:.1} % busy in the window, {:.1} % of it other processes'",
        t.machine_cpu_percent, others
    );
    if !t.threads.is_empty() {
        let parts: Vec<String> = t
            .threads
            .iter()
            .map(|g| format!("{} {:.1}%", g.group, g.cpu_percent))
            .collect();
        let _ = writeln!(o, "  CPU by thread group: {}", parts.join(", "));
    }
    let _ = writeln!(
        o,
        "  wall: {} tiles drawn, {} JPEGs, {} mosaic frames; MQTT: {} incident messages stored, {} acknowledged, {} counts reports acknowledged",
        t.wall.frames_rendered,
        t.wall.jpeg_frames,
        t.wall.mosaic_frames,
        t.messages.incident_messages,
        t.messages.published_incidents,
        t.messages.published_counts
    );
    if let Some(c) = t.consumers.as_ref().filter(|c| c.live_viewers > 0) {
        let _ = writeln!(
            o,
            "  viewers (harness): {} browser tiles {} frames ({:.1}/s); harness CPU {:.1} %",
            c.live_viewers,
            c.live_frames,
            c.live_fps,
            t.harness_cpu_percent.unwrap_or(0.0)
        );
    } else if let Some(c) = t.consumers.as_ref().filter(|c| c.mjpeg_url.is_empty()) {
        let _ = writeln!(
            o,
            "  viewers (harness): {} {} frames ({:.1}/s); harness CPU {:.1} % (with the clock camera)",
            c.rtsp_url,
            c.rtsp_frames,
            c.rtsp_fps,
            t.harness_cpu_percent.unwrap_or(0.0)
        );
    } else if let Some(c) = &t.consumers {
        let _ = writeln!(
            o,
            "  viewers (harness): {} {} frames ({:.1}/s), {} {} frames ({:.1}/s); harness CPU {:.1} %",
            c.mjpeg_url,
            c.mjpeg_frames,
            c.mjpeg_fps,
            c.rtsp_url,
            c.rtsp_frames,
            c.rtsp_fps,
            t.harness_cpu_percent.unwrap_or(0.0)
        );
    }
    if let Some(b) = &t.browsers {
        browsers_table(&mut o, b, t.holds);
    }
    if t.holds {
        let _ = writeln!(
            o,
            "  verdict: HOLDS real time ({:.0} fps display, {:.0} fps analytics on every stream)",
            t.source_fps, t.detect_fps
        );
    } else {
        let _ = writeln!(o, "  verdict: does NOT hold real time");
        for f in &t.failures {
            let _ = writeln!(o, "    - {f}");
        }
    }
    o
}

fn search_table(title: &str, s: &Search) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{title}");
    let _ = writeln!(
        o,
        "  {:>7} {:>6} {:>8} {:>9} {:>9} {:>13} {:>15}",
        "streams", "holds", "CPU %", "others %", "RSS MB", "min disp fps", "min analyt fps"
    );
    for st in &s.steps {
        let _ = writeln!(
            o,
            "  {:>7} {:>6} {:>8.1} {:>9.1} {:>9.0} {:>13.2} {:>15.2}",
            st.streams,
            if st.holds { "yes" } else { "no" },
            st.cpu_percent,
            st.others_cpu_percent,
            st.peak_rss_mb,
            st.min_display_fps,
            st.min_analytics_fps
        );
    }
    let _ = writeln!(
        o,
        "  sustained: {} streams{}",
        s.sustained,
        if s.capped {
            " (stopped at --max-streams)"
        } else {
            ""
        }
    );
    o
}

/// The whole report as printed.
pub fn table(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "simpang bench ({})", r.started_at);
    let _ = writeln!(
        o,
        "machine: {}, {} CPUs, AVX-512: {}{}; kernel {}",
        r.machine.cpu_model,
        r.machine.cpus,
        if r.machine.avx512 { "yes" } else { "no" },
        if r.machine.avx512_flags.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.machine.avx512_flags.join(" "))
        },
        r.machine.kernel
    );
    let _ = writeln!(
        o,
        "load average: {:.2} {:.2} {:.2} at start, {:.2} {:.2} {:.2} at end",
        r.load_start[0],
        r.load_start[1],
        r.load_start[2],
        r.load_end[0],
        r.load_end[1],
        r.load_end[2]
    );
    let m = &r.model;
    let _ = writeln!(
        o,
        "model: {} ({}x{}), {} session(s) x {} thread(s), batch {}, detect {:.1} fps per stream",
        m.name, m.input_width, m.input_height, m.sessions, m.threads, m.max_batch, m.detect_fps
    );
    let f = &r.footage;
    let _ = writeln!(
        o,
        "footage: {} ({}x{} @ {:.2} fps, {:.1} s, looped)",
        f.path, f.width, f.height, f.fps, f.duration_s
    );
    let _ = writeln!(o, "wall output: {}", r.wall_consumers);
    let _ = writeln!(
        o,
        "rules: each stream has the zones and lines of the config site it copies{}",
        if r.bench_zone {
            ", plus the bench crowd zone (>= 2 people in view for 2 s opens an incident)"
        } else {
            " (no bench zone)"
        }
    );
    let c = &r.ceilings;
    let _ = writeln!(o, "ceilings (same run):");
    let _ = writeln!(
        o,
        "  decode only     {:>8.1} frames/s, {} pipelines (fakesink), CPU {:.0} %, {:.2} CPU-ms/frame -> {:.2} streams",
        c.decode.fps, c.decode.pipelines, c.decode.cpu_percent, c.decode.cpu_ms_per_frame, c.decode_limit_streams
    );
    let _ = writeln!(
        o,
        "  inference only  {:>8.1} frames/s, {} session(s) x {} thread(s), CPU {:.0} %, {:.2} CPU-ms/frame -> {:.2} streams",
        c.inference.fps,
        c.inference.sessions,
        c.inference.threads,
        c.inference.cpu_percent,
        c.inference.cpu_ms_per_frame,
        c.inference_limit_streams
    );
    let _ = writeln!(
        o,
        "  limit           {:>8.2} streams = 1 / ({:.2}/{:.1} + {:.2}/{:.1})",
        c.limit_streams, f.fps, c.decode.fps, m.detect_fps, c.inference.fps
    );
    if let Some(t) = &r.run {
        o.push_str("run: ");
        o.push_str(&trial_table(t));
    }
    if let Some(s) = &r.find_max {
        o.push_str(&search_table("find-max (simpang):", s));
    }
    match (r.sustained, r.efficiency) {
        (Some(n), Some(e)) => {
            let _ = writeln!(
                o,
                "sustained: {n} streams; efficiency {n} / {:.2} = {e:.2}{}",
                c.limit_streams,
                if r.find_max.is_some() {
                    ""
                } else {
                    " (a lower bound: this run held with N streams; --find-max searches the most)"
                }
            );
        }
        (Some(n), None) => {
            let _ = writeln!(o, "sustained: {n} streams");
        }
        _ => {
            let _ = writeln!(
                o,
                "sustained: unknown (the run did not hold; try --find-max)"
            );
        }
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(o, "baseline (plain Python, {}):", b.python);
        for s in &b.setups {
            let _ = writeln!(o, "  ({}) {}", s.setup, s.description);
            let _ = writeln!(
                o,
                "    {:>7} {:>6} {:>8} {:>9} {:>9} {:>13} {:>15} {:>10}",
                "streams",
                "holds",
                "CPU %",
                "others %",
                "RSS MB",
                "min fps",
                "min detect fps",
                "infer p50"
            );
            for run in &s.runs {
                let minf = |f: fn(&BaselineStream) -> f64| {
                    run.per_stream.iter().map(f).fold(f64::INFINITY, f64::min)
                };
                let _ = writeln!(
                    o,
                    "    {:>7} {:>6} {:>8.1} {:>9.1} {:>9.0} {:>13.2} {:>15.2} {:>10}",
                    run.streams,
                    if run.holds { "yes" } else { "no" },
                    run.cpu_percent,
                    run.others_cpu_percent,
                    run.peak_rss_mb,
                    minf(|s| s.fps),
                    minf(|s| s.detect_fps),
                    ms(run.inference_ms_p50)
                );
            }
            let _ = writeln!(
                o,
                "    sustained: {} streams{}",
                s.sustained,
                if s.capped {
                    " (stopped at --max-streams)"
                } else {
                    ""
                }
            );
        }
        match b.ratio {
            Some(x) => {
                let _ = writeln!(
                    o,
                    "  ratio: simpang {} / best Python {} = {x:.2}x",
                    b.simpang_basis, b.best_sustained
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "  ratio: not defined (simpang {}, best Python {})",
                    b.simpang_basis, b.best_sustained
                );
            }
        }
    }
    o
}

/// The `--browsers` lines of a trial.
fn browsers_table(o: &mut String, b: &super::BrowserViewers, holds: bool) {
    let _ = writeln!(
        o,
        "  browsers: {} headless {} (nice {}) on {}; simpang CPU {:.1} % without them ({:.0} s before, \
         others {:.1} %), {:.1} % with them: {:+.2} % per extra browser viewer",
        b.browsers,
        b.program,
        b.nice,
        b.url,
        b.simpang_cpu_percent_without,
        b.without_seconds,
        b.others_cpu_percent_without,
        b.simpang_cpu_percent_with,
        b.per_viewer_cpu_percent
    );
    if !holds {
        let _ = writeln!(
            o,
            "    (the run did not hold real time: simpang had less CPU than it needed with the \
             browsers on the same machine, so the difference is not what a viewer costs)"
        );
    }
    let _ = writeln!(
        o,
        "  browsers' own CPU (the operators' machines): {:.1} % together; {}",
        b.browsers_cpu_percent,
        if b.all_played {
            "every tile of every browser played (frames presented, currentTime advancing)"
        } else {
            "NOT every tile played"
        }
    );
    for p in &b.per_browser {
        let _ = writeln!(
            o,
            "    browser {}: {}/{} tiles playing, {} frames presented, slowest tile {:.1} fps, CPU {:.1} %{}",
            p.index,
            p.tiles_playing,
            p.tiles,
            p.presented_frames,
            p.min_tile_fps,
            p.cpu_percent,
            if p.problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.problems.join("; "))
            }
        );
    }
    match &b.glass_to_glass {
        Some(g) => {
            let _ = writeln!(
                o,
                "  glass-to-glass ({}): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms, min {:.0} ms, n {} of {} frames presented ({} unreadable)",
                g.site, g.p50_ms, g.p95_ms, g.max_ms, g.min_ms, g.n, g.frames_seen, g.unreadable
            );
            let _ = writeln!(o, "    measured: {}", g.method);
        }
        None => {
            let _ = writeln!(o, "  glass-to-glass: not measured");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{StageRow, StreamRow};
    use super::*;
    use crate::timing::Summary;

    #[test]
    fn table_lists_every_stage_row() {
        let t = TrialResult {
            streams: 1,
            mode: Some(Mode::Realtime),
            stages: STAGE_NOTES
                .iter()
                .map(|(n, _)| StageRow {
                    stage: n.to_string(),
                    summary: Summary::default(),
                })
                .collect(),
            per_stream: vec![StreamRow {
                site: "a".into(),
                ..StreamRow::default()
            }],
            holds: true,
            ..Default::default()
        };
        let text = trial_table(&t);
        for (n, _) in STAGE_NOTES {
            assert!(text.contains(&format!("  {n} ")), "{n} missing:\n{text}");
        }
        assert!(text.contains("HOLDS"));
    }
}
