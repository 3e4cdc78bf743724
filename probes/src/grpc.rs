//! `probe grpc`: the gRPC health check (`grpc.health.v1.Health/Check`) over h2c, the question
//! the kubelet's native `grpc:` probe asks; ok when the answer is `SERVING`.
//!
//! The messages and the client are tonic's (`tonic-health`); the connection is hyper's HTTP/2
//! client with prior knowledge (no TLS), as the kubelet's probe connects.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::client;
use crate::pod::{Check, CheckError};

/// The most of a server's status message shown.
const MESSAGE_SHOWN: usize = 200;

/// `probe grpc HOST:PORT [--service S]`.
#[derive(Debug, Clone, clap::Args)]
pub struct GrpcCheck {
    /// HOST:PORT of the gRPC server (h2c, no TLS).
    pub addr: String,
    /// The service to ask about; empty: the whole server.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this long (more than 0), name lookup and connection included.
    #[arg(long, default_value = "1s", value_parser = testpage::duration::positive)]
    pub timeout: Duration,
}

/// `probe grpc`: ok when the health service answers `SERVING` for the service.
pub fn grpc(check: &GrpcCheck) -> Check {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CheckError::Start)?;
    let answer = runtime.block_on(async {
        tokio::time::timeout(check.timeout, ask(&check.addr, &check.service))
            .await
            .unwrap_or_else(|_| {
                Err(CheckError::TimedOut {
                    check: "grpc",
                    addr: check.addr.clone(),
                    what: "health check",
                    timeout: check.timeout,
                })
            })
    });
    // A name lookup still running (getaddrinfo cannot be cancelled) must not outlast the timeout.
    runtime.shutdown_background();
    match answer? {
        ServingStatus::Serving => Ok(()),
        status => Err(CheckError::NotServing {
            addr: check.addr.clone(),
            service: check.service.clone(),
            status: status.as_str_name(),
        }),
    }
}

async fn ask(addr: &str, service: &str) -> Result<ServingStatus, CheckError> {
    let mut client = connect(addr).await?;
    let answer = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| CheckError::Grpc {
            addr: addr.to_owned(),
            // On one line and bounded: it is the kubelet's probe message.
            message: format!(
                "{:?}: {}",
                status.code(),
                client::excerpt(status.message(), MESSAGE_SHOWN)
            ),
        })?;
    Ok(ServingStatus::try_from(answer.get_ref().status).unwrap_or(ServingStatus::Unknown))
}

/// A health client on a new h2c connection to `addr` (HOST:PORT; each address it names is
/// tried in turn).
pub async fn connect(addr: &str) -> Result<HealthClient<H2>, CheckError> {
    let failed = |message: String| CheckError::Grpc {
        addr: addr.to_owned(),
        message,
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| failed(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| failed(format!("HTTP/2: {e}")))?;
    tokio::spawn(connection);
    let origin = format!("http://{addr}")
        .parse()
        .map_err(|e| failed(format!("not HOST:PORT: {e}")))?;
    Ok(HealthClient::with_origin(H2(sender), origin))
}

/// One HTTP/2 connection, as the service tonic's client calls.
#[derive(Debug)]
pub struct H2(http2::SendRequest<tonic::body::Body>);

type Answer = hyper::Response<hyper::body::Incoming>;

impl tonic::codegen::Service<hyper::Request<tonic::body::Body>> for H2 {
    type Response = Answer;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: hyper::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}
