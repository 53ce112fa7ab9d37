//! Load time of the embedded table and cost of the common queries.

use backflow_topology::{RegionCode, Topology};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    c.bench_function("load china table (parse + index)", |b| {
        b.iter(|| {
            Topology::from_tables(black_box(&[
                include_str!("../data/provinces.csv"),
                include_str!("../data/cities.csv"),
                include_str!("../data/areas.csv"),
                include_str!("../data/streets.csv"),
            ]))
            .unwrap()
        })
    });
    let china = Topology::china();
    let t = RegionCode::parse("441900003").unwrap();
    let u = RegionCode::parse("110101001").unwrap();
    c.bench_function("get (binary search)", |b| {
        b.iter(|| china.get(black_box(t)))
    });
    c.bench_function("township_of village code", |b| {
        b.iter(|| china.township_of(black_box("441900003012")))
    });
    c.bench_function("lowest_common_ancestor", |b| {
        b.iter(|| black_box(t).lowest_common_ancestor(black_box(u)))
    });
    c.bench_function("children", |b| {
        b.iter(|| {
            china
                .children(black_box(RegionCode::parse("44").unwrap()))
                .len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
