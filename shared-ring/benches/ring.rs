//! Criterion benchmarks of the shared ring against its peers (written next).

fn main() {}
