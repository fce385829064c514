//! Mapping benchmark (filled in later).
fn main() {}
