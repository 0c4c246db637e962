//! A missing ONNX Runtime library is a clear error naming the path. Its own test binary: a
//! process loads the library once, so this must run before anything else loads it.

mod support;

use simpang::detect::{DetectError, DetectOptions, Detector};

#[test]
fn missing_library_names_the_path() {
    // SAFETY of the test: the only test in this binary, so no other thread reads the
    // environment (the variable would win over the configured path).
    std::env::remove_var("ORT_DYLIB_PATH");
    let d = tempfile::tempdir().unwrap();
    for lib in [
        d.path().join("lib/libonnxruntime.so"),
        // a file that exists but is not a shared library
        support::detect::nanodet_manifest(),
    ] {
        let e = Detector::from_manifest(
            &support::detect::nanodet_manifest(),
            &DetectOptions {
                ort_library: Some(lib.clone()),
                ..DetectOptions::default()
            },
        )
        .err()
        .unwrap();
        assert!(matches!(e, DetectError::OrtLibrary { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&*lib.to_string_lossy()), "{msg}");
        assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
    }
    // ... and a later attempt with the right library still works
    let det = Detector::from_manifest(
        &support::detect::nanodet_manifest(),
        &support::detect::options(),
    )
    .unwrap();
    assert_eq!(det.input_size(), (416, 416));
}
