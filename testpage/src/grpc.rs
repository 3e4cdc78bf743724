//! gRPC health (`grpc.health.v1.Health`) on the HTTP port, over h2c: what the kubelet's native
//! `grpc:` probe, `grpc-health-probe` and `probe grpc` ask.
//!
//! The service and its messages are tonic's (`tonic-health`'s generated server); the answers
//! are testpage's readiness, with no second copy to keep in step:
//!
//! | readiness | `Check` and `Watch` |
//! |---|---|
//! | starting, withdrawn (`/readyz/disable`, ready file removed) or draining | `NOT_SERVING` |
//! | ready | `SERVING` |
//!
//! The services known are `""` (the whole server, what probes ask by default) and
//! `testpage`; `Check` on any other answers `NOT_FOUND`, `Watch` streams `SERVICE_UNKNOWN`.
//!
//! A `Watch` is a long-lived answer like `/events` ([`crate::live`]): it sends the status at
//! once and at each change, and once the drain begins, at its own moment in the drain's second
//! half, it ends with the status `UNAVAILABLE` ("the server is shutting down"), which tells a
//! gRPC client to call again: by then the pod's endpoint is gone and the call reaches a pod that
//! stays.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tonic::codegen::{tokio_stream::Stream, Service};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::app::App;
use crate::live::{say_goodbye, Message, Open, Outbox};
use crate::protocol::ConnectionHandle;
use crate::shutdown::Goodbye;

/// The path prefix of the health service's calls.
pub(crate) const PATH: &str = "/grpc.health.v1.Health/";

/// The route its calls are counted under in the metrics.
pub(crate) const ROUTE: &str = "/grpc.health.v1.Health";

/// The response body of a gRPC call.
pub(crate) type GrpcBody = tonic::body::Body;

/// The service names `Check` and `Watch` know.
const SERVICES: [&str; 2] = ["", "testpage"];

/// The largest request message accepted (a service name and its framing).
const MAX_REQUEST_BYTES: usize = 1024;

/// The message a `Watch` ends with when the pod goes.
const GOING_AWAY: &str = "the server is shutting down: call again";

/// Answers one call to the health service.
pub(crate) async fn serve(
    app: &Arc<App>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<GrpcBody> {
    // A request names a service: a few bytes. A larger message is refused before it is
    // buffered (`OUT_OF_RANGE`), so no client can make a call hold megabytes.
    let mut server = HealthServer::new(Checks {
        app: Arc::clone(app),
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    // tonic reads a request to its end before it answers: a client that never ends its request
    // would hold the call (and its connection) open for ever.
    match tokio::time::timeout(REQUEST_TIMEOUT, server.call(req)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => Status::deadline_exceeded(format!(
            "the request did not end within {}s",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_http(),
    }
}

/// How long a call's request may take to arrive whole (a `Check` or `Watch` request is a few
/// bytes, sent at once).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The health service: testpage's readiness, as gRPC statuses.
struct Checks {
    app: Arc<App>,
}

/// A known service's status: testpage's readiness.
fn status(ready: bool) -> ServingStatus {
    if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn reply(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for Checks {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if !SERVICES.contains(&request.get_ref().service.as_str()) {
            return Err(Status::not_found("unknown service"));
        }
        let status = status(self.app.lifecycle().is_ready());
        Ok(Response::new(reply(status)))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let open = Open::new(&self.app).ok_or_else(|| {
            Status::resource_exhausted(
                "too many streams at once: part of MAX_CONNECTIONS is kept for quick requests",
            )
        })?;
        let known = SERVICES.contains(&request.get_ref().service.as_str());
        let connection = request.extensions().get::<ConnectionHandle>().cloned();
        let (sender, outbox) = Outbox::new(open);
        self.app.phases().spawn(send_statuses(
            Arc::clone(&self.app),
            known,
            sender,
            connection,
        ));
        Ok(Response::new(WatchStream(outbox)))
    }
}

type Update = Result<HealthCheckResponse, Status>;

/// Sends the status now and at each change, until the client leaves or the pod goes.
async fn send_statuses(
    app: Arc<App>,
    known: bool,
    sender: mpsc::Sender<Message<Update>>,
    connection: Option<ConnectionHandle>,
) {
    let mut readiness = app.lifecycle().readiness();
    let mut goodbye = Goodbye::new(app.phases());
    loop {
        let status = if known {
            status(*readiness.borrow_and_update())
        } else {
            ServingStatus::ServiceUnknown
        };
        tokio::select! {
            biased;
            () = goodbye.due() => break,
            sent = sender.send(Message::Event(Ok(reply(status)))) => if sent.is_err() {
                return;
            },
        }
        tokio::select! {
            biased;
            () = goodbye.due() => break,
            changed = readiness.changed() => if changed.is_err() {
                // The lifecycle outlives every answer: never the case.
                return;
            },
            () = sender.closed() => return,
        }
    }
    let bye = Err(Status::unavailable(GOING_AWAY));
    say_goodbye(&sender, bye, connection.as_ref()).await;
}

/// The statuses of one `Watch`, as its task sends them.
pub(crate) struct WatchStream(Outbox<Update>);

impl Stream for WatchStream {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.0.poll_next(cx)
    }
}
