//! `probe`: exec probes, preStop helpers, a rollout watcher and a load client.
fn main() {}
