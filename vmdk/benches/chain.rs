//! Placeholder, replaced by the chain benchmark.
fn main() {}
