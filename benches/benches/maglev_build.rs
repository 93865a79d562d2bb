//! Maglev table build time (criterion): N = 10, 100, 1000, 5000 backends at
//! M = 65537, and N = 1000 at M = 655373, equal weights.
//!
//! `cargo bench -p lb-bench --bench maglev_build`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lb_dataplane::programmer::backend_identity;
use lb_maglev::{Member, build};

/// Identities of `n` IPv4 backends, encoded as the controller encodes them.
fn identities(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| backend_identity(std::net::Ipv4Addr::from(0x0a00_0000 + i).into()))
        .collect()
}

fn build_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    for (n, size) in [
        (10, 65_537),
        (100, 65_537),
        (1000, 65_537),
        (5000, 65_537),
        (1000, 655_373),
    ] {
        let ids = identities(n);
        let members: Vec<Member<'_>> = ids.iter().map(|id| Member::new(id, 1)).collect();
        group.bench_with_input(
            BenchmarkId::new(format!("M={size}"), n),
            &members,
            |b, m| {
                b.iter(|| build(black_box(m), size).unwrap());
            },
        );
    }
    group.finish();
}

criterion_group!(benches, build_time);
criterion_main!(benches);
