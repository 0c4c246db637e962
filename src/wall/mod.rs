//! Overlay drawing, the MJPEG/SSE web wall and annotated RTSP out.
pub mod overlay;
