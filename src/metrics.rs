//! Prometheus metrics. One [`Registry`] per process (not the global default, so tests can run
//! several instances side by side); each stage registers its families on it. Names are
//! `simpang_*`; per-camera series carry a `site` label.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Metrics of the ingest stage, per camera.
#[derive(Clone)]
pub struct IngestMetrics {
    pub camera_online: IntGaugeVec,
    pub frames_decoded: IntCounterVec,
    /// Every frame the camera sent, counted before decoding, and its bytes.
    pub source_frames: IntCounterVec,
    pub source_bytes: IntCounterVec,
    /// Access units the passthrough tap could not use (malformed, outside their segment).
    pub passthrough_errors: IntCounterVec,
    /// Compressed frames a live camera's decode queue dropped (decoding 2 s behind).
    pub decode_dropped: IntCounterVec,
    pub analytics_frames: IntCounterVec,
    pub analytics_dropped: IntCounterVec,
    /// Decoded frames the display branch took (only while a burned-in output asks, at its rate).
    pub display_decoded: IntCounterVec,
    pub display_frames: IntCounterVec,
    pub display_dropped: IntCounterVec,
    pub reconnects: IntCounterVec,
    /// Per stream of a camera (`stream` = `main` | `detect`): a site with a `detect_stream`
    /// decodes the substream for analytics and its main stream only for burned-in outputs.
    pub stream_decoded: IntCounterVec,
    pub stream_analytics_frames: IntCounterVec,
    pub stream_online: IntGaugeVec,
}

impl IngestMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let site = &["site"];
        Ok(Self {
            camera_online: int_gauge_vec(
                r,
                "simpang_camera_online",
                "1 while the camera delivers frames",
                site,
            )?,
            frames_decoded: int_counter_vec(
                r,
                "simpang_frames_decoded_total",
                "Frames decoded from the camera",
                site,
            )?,
            source_frames: int_counter_vec(
                r,
                "simpang_source_frames_total",
                "Frames the camera sent, counted before decoding (what the browser wall plays)",
                site,
            )?,
            source_bytes: int_counter_vec(
                r,
                "simpang_source_bytes_total",
                "Bytes of the camera's compressed video",
                site,
            )?,
            passthrough_errors: int_counter_vec(
                r,
                "simpang_passthrough_errors_total",
                "Access units the passthrough to browsers could not use (malformed or untimed)",
                site,
            )?,
            decode_dropped: int_counter_vec(
                r,
                "simpang_decode_dropped_total",
                "Compressed frames of a live camera dropped because decoding fell 2 s behind",
                site,
            )?,
            display_decoded: int_counter_vec(
                r,
                "simpang_display_decoded_total",
                "Decoded frames the display branch took: only while a burned-in output (MJPEG, annotated RTSP) is watched, at its rate",
                site,
            )?,
            analytics_frames: int_counter_vec(
                r,
                "simpang_analytics_frames_total",
                "Frames delivered to analytics (at the detect rate)",
                site,
            )?,
            analytics_dropped: int_counter_vec(
                r,
                "simpang_analytics_frames_dropped_total",
                "Analytics frames replaced by a newer one before the detector took them",
                site,
            )?,
            display_frames: int_counter_vec(
                r,
                "simpang_display_frames_total",
                "Display frames scaled to the tile size and delivered to the wall (only while a burned-in output is watched)",
                site,
            )?,
            display_dropped: int_counter_vec(
                r,
                "simpang_display_frames_dropped_total",
                "Display frames dropped because the display path fell behind",
                site,
            )?,
            reconnects: int_counter_vec(
                r,
                "simpang_reconnects_total",
                "Times the camera pipeline was rebuilt after a failure",
                site,
            )?,
            stream_decoded: int_counter_vec(
                r,
                "simpang_stream_frames_decoded_total",
                "Frames decoded, per stream of the camera (main: the wall's stream; detect: the substream analytics decodes)",
                &["site", "stream"],
            )?,
            stream_analytics_frames: int_counter_vec(
                r,
                "simpang_stream_analytics_frames_total",
                "Frames delivered to analytics, per stream of the camera",
                &["site", "stream"],
            )?,
            stream_online: int_gauge_vec(
                r,
                "simpang_stream_online",
                "1 while the stream delivers frames, per stream of the camera",
                &["site", "stream"],
            )?,
        })
    }
}

pub fn int_gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

pub fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, prometheus::Error> {
    let m = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

pub fn int_counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let m = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

pub fn int_gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let m = IntGauge::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

pub fn gauge(r: &Registry, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
    let m = Gauge::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

pub fn int_counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let m = IntCounter::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

/// A latency histogram in seconds with [`LATENCY_BUCKETS`].
pub fn latency_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    let m = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

/// The registry in Prometheus text format.
pub fn render(r: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for I/O reasons; a family error leaves that family out.
    let _ = TextEncoder::new().encode(&r.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_site_series() {
        let r = Registry::new();
        let m = IngestMetrics::register(&r).unwrap();
        m.camera_online.with_label_values(&["bkb"]).set(1);
        m.frames_decoded.with_label_values(&["bkb"]).inc_by(5);
        let text = render(&r);
        assert!(
            text.contains("simpang_camera_online{site=\"bkb\"} 1"),
            "{text}"
        );
        assert!(text.contains("simpang_frames_decoded_total{site=\"bkb\"} 5"));
        // registering twice on one registry is an error, not a panic
        assert!(IngestMetrics::register(&r).is_err());
    }
}
