//! The incident path's disk step: one message committed to the SQLite outbox (WAL, `synchronous
//! = FULL`, so one fsync per commit) and deleted again once acknowledged, as every incident and
//! counts message is before it reaches the broker.
//!
//! `cargo bench --bench outbox`; figures in docs/performance.md. The temporary database lives in
//! the system temp dir: the fsync cost is that disk's.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use simpang::incident::outbox::{MsgKind, NewMessage, Outbox};

fn bench_outbox(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let outbox = rt
        .block_on(Outbox::open(&dir.path().join("outbox.db"), 100_000))
        .expect("outbox");
    let mut g = c.benchmark_group("outbox");
    for (name, kind, bytes) in [
        // an incident message: JSON with its inline base64 snapshot (~40 KB JPEG)
        (
            "insert_delete_incident_54kB",
            MsgKind::Incident,
            54_000usize,
        ),
        // a counts report
        ("insert_delete_counts_1kB", MsgKind::Counts, 1_000),
    ] {
        let msg = NewMessage {
            site: "bkb".into(),
            kind,
            topic: "simpang/v1/sites/bkb/incidents".into(),
            payload: vec![b'x'; bytes],
            retain: false,
            created_ms: 0,
            label: "bench".into(),
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let ins = outbox.insert(&msg, &[]).await.expect("insert");
                    if let simpang::incident::outbox::Inserted::Stored { id, .. } = ins {
                        black_box(outbox.delete(id).await.expect("delete"));
                    }
                })
            })
        });
    }
    g.finish();
    rt.block_on(outbox.close());
}

criterion_group!(benches, bench_outbox);
criterion_main!(benches);
