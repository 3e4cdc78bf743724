//! probe: the toolkit that ships next to `/testpage` in every image.
//!
//! # Layout
//!
//! - [`client`] — a small HTTP/1.1 client, and reading version and pod from an answer.
//! - [`pod`] — in-pod commands: exec probes (`http`, `tcp`, `file`) and preStop (`drain`).
//! - [`grpc`] — `probe grpc`, the gRPC health check.
//! - [`watch`] — `probe watch`, the readable rollout watcher.
//! - [`stream`] — the WebSocket and server-sent events that `probe watch` follows.
//! - [`load`] — `probe load`, the fortio-style load client.
//! - [`histogram`] — the load client's bounded latency record.

pub mod client;
pub mod grpc;
pub mod histogram;
pub mod load;
pub mod pod;
pub mod stream;
pub mod watch;
