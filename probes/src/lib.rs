//! probe: the toolkit that ships next to `/testpage` in every image.
//!
//! # Layout
//!
//! - [`client`] — a small HTTP/1.1 client, and reading version and pod from an answer.
//! - [`pod`] — in-pod commands: exec probes (`http`, `tcp`, `file`) and preStop (`drain`).
//! - [`grpc`] — `probe grpc`, the gRPC health check.
//! - [`watch`] — `probe watch`, the readable rollout watcher: its settings and clock; `drive`
//!   (requests, connections, Ctrl-C), `summary` (what it counts) and `screen` (what it writes).
//! - [`stream`] — the WebSocket and server-sent events that `probe watch` follows.
//! - [`load`] — `probe load`, the fortio-style load client.
//! - [`histogram`] — the load client's bounded latency record.
//! - [`tally`] — the versions and pods a watch or load reports, in tables of bounded size.

pub mod client;
pub mod grpc;
pub mod histogram;
pub mod load;
pub mod pod;
pub mod stream;
pub mod tally;
pub mod watch;
