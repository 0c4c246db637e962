//! Multi-object tracker (ByteTrack-style).
