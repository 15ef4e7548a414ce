use axum as _;
fn main() {}
