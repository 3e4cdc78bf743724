//! In-pod commands for FROM scratch images, which have no shell, `curl`, `rm` or `sleep`:
//! exec probes (`http`, `tcp`, `file`) and preStop hooks (`drain`, `sleep`).
//!
//! Each runs on the calling thread, or a single-threaded runtime for `http`, so that a probe the
//! kubelet runs every second costs a millisecond, and prints one line when it fails.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use testpage::readiness::ReadyFileError;

use crate::client::{self, BodyRead, RequestError, Target};

/// The result of a check: `Ok`, or what failed, in one line.
pub type Check = Result<(), CheckError>;

/// What failed, as the one line the kubelet records as the probe's message.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The runtime for the request could not start.
    #[error("cannot start: {0}")]
    Start(#[source] io::Error),
    /// No answer.
    #[error("GET {uri}: {source}")]
    Request {
        /// The URL.
        uri: String,
        /// Why.
        #[source]
        source: RequestError,
    },
    /// An answer outside the accepted statuses.
    #[error("GET {uri}: status {status} (want {}-{})", .want.start(), .want.end())]
    Status {
        /// The URL.
        uri: String,
        /// The status received.
        status: u16,
        /// The accepted statuses.
        want: RangeInclusive<u16>,
    },
    /// The name could not be resolved.
    #[error("tcp {addr}: {source}")]
    Lookup {
        /// HOST:PORT as given.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Resolving, or connecting, took longer than the timeout.
    #[error("{check} {addr}: {what} timed out after {timeout:?}")]
    TimedOut {
        /// The check: `tcp` or `grpc`.
        check: &'static str,
        /// HOST:PORT as given.
        addr: String,
        /// `name lookup`, `connect` or `health check`.
        what: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The name resolved to nothing.
    #[error("tcp {0}: no address")]
    NoAddress(String),
    /// Every address refused or failed; the last one's reason.
    #[error("tcp {addr} ({candidate}): {source}")]
    Connect {
        /// HOST:PORT as given.
        addr: String,
        /// The address tried last.
        candidate: SocketAddr,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// `probe grpc`: the call failed (HTTP/2, or a gRPC status such as `NotFound`).
    #[error("grpc {addr}: {message}")]
    Grpc {
        /// HOST:PORT as given.
        addr: String,
        /// What failed.
        message: String,
    },
    /// `probe grpc`: the health service answered, but not `SERVING`.
    #[error("grpc {addr}: service {service:?} is {status}")]
    NotServing {
        /// HOST:PORT as given.
        addr: String,
        /// The service asked about.
        service: String,
        /// The status it has, e.g. `NOT_SERVING`.
        status: &'static str,
    },
    /// `probe file`: the file is not there.
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// `probe drain`: the ready file could not be removed.
    #[error(transparent)]
    ReadyFile(#[from] ReadyFileError),
}

/// `probe http`: GET a URL; ok when the status is in range.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpCheck {
    /// URL, or a path such as /readyz.
    #[arg(value_parser = client::parse_target)]
    pub url: Target,
    /// Give up after this long (more than 0).
    #[arg(long, default_value = "1s", value_parser = testpage::duration::positive)]
    pub timeout: Duration,
    /// Accepted statuses: 200-399, or one code.
    #[arg(long, default_value = "200-399", value_parser = parse_statuses)]
    pub status: RangeInclusive<u16>,
    /// Extra request header, Name:value (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `probe http`: the status must fall in the accepted range. The body is not read: the
/// status is the answer, and a huge or endless body costs nothing.
pub fn http(check: &HttpCheck) -> Check {
    let target = &check.url;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CheckError::Start)?;
    let answer = runtime.block_on(client::get_once(
        target,
        &check.headers,
        check.timeout,
        BodyRead::Skip,
    ));
    // A name lookup still running (getaddrinfo cannot be cancelled) must not outlast the timeout.
    runtime.shutdown_background();
    let uri = || target.uri.to_string();
    let answer = answer.map_err(|source| CheckError::Request { uri: uri(), source })?;
    if check.status.contains(&answer.status) {
        Ok(())
    } else {
        Err(CheckError::Status {
            uri: uri(),
            status: answer.status,
            want: check.status.clone(),
        })
    }
}

/// `probe tcp`: a TCP connection to `addr` can be made within `timeout`.
pub fn tcp(addr: &str, timeout: Duration) -> Check {
    // No deadline for a timeout beyond the clock's range: each attempt then gets all of it.
    let deadline = Instant::now().checked_add(timeout);
    let timed_out = |what| CheckError::TimedOut {
        check: "tcp",
        addr: addr.to_owned(),
        what,
        timeout,
    };
    // The name lookup counts against the timeout too: it runs on a thread of its own, left
    // behind (and ended with the process) if it outlasts the deadline.
    let (sender, lookup) = std::sync::mpsc::channel();
    let name = addr.to_owned();
    std::thread::spawn(move || {
        let _ = sender.send(name.to_socket_addrs().map(Vec::from_iter));
    });
    let candidates = lookup
        .recv_timeout(timeout)
        .map_err(|_| timed_out("name lookup"))?
        .map_err(|source| CheckError::Lookup {
            addr: addr.to_owned(),
            source,
        })?;
    let mut last = CheckError::NoAddress(addr.to_owned());
    for candidate in candidates {
        let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Err(timed_out("connect"));
        }
        match TcpStream::connect_timeout(&candidate, left) {
            Ok(_) => return Ok(()),
            Err(source) => {
                last = CheckError::Connect {
                    addr: addr.to_owned(),
                    candidate,
                    source,
                }
            }
        }
    }
    Err(last)
}

/// `probe file`: `path` exists.
pub fn file(path: &Path) -> Check {
    if path.exists() {
        Ok(())
    } else {
        Err(CheckError::Missing(path.to_owned()))
    }
}

/// `probe drain`: the preStop hook. Removes the ready file, so the pod turns unready and leaves
/// the endpoints, then waits while traffic moves away. testpage skips its own drain when SIGTERM
/// finds the file already gone.
pub fn drain(ready_file: Option<&Path>, sleep: Duration) -> Check {
    // Only a file testpage wrote is removed: never a device, a FIFO or someone else's file.
    let removed = match ready_file {
        Some(path) => testpage::readiness::withdraw(path).map(drop),
        // READY_FILE="" (testpage's "no file"): nothing to remove, only the wait.
        None => Ok(()),
    };
    // Sleep even when the removal failed: SIGTERM should still come as late as planned.
    std::thread::sleep(sleep);
    Ok(removed?)
}

/// A `--status` or `--header` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// Not a code from 100 to 599.
    #[error("{0:?} is not a status code 100-599")]
    Status(String),
    /// `high-low`.
    #[error("{0:?}: empty range")]
    EmptyRange(String),
    /// No colon.
    #[error("{0:?} is not Name:value")]
    NotAHeader(String),
    /// A name HTTP does not allow.
    #[error("{0:?} is not a header name")]
    HeaderName(String),
    /// A value HTTP does not allow.
    #[error("{0:?} is not a header value")]
    HeaderValue(String),
}

/// Parses `200-399` or `200` into an inclusive range of status codes.
pub fn parse_statuses(text: &str) -> Result<RangeInclusive<u16>, ArgError> {
    let code = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| ArgError::Status(s.to_owned()))
    };
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (code(low)?, code(high)?),
        None => (code(text)?, code(text)?),
    };
    if low > high {
        return Err(ArgError::EmptyRange(text.to_owned()));
    }
    Ok(low..=high)
}

/// Parses `Name: value` into a header.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), ArgError> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| ArgError::NotAHeader(text.to_owned()))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| ArgError::HeaderName(name.to_owned()))?;
    let value =
        HeaderValue::from_str(value.trim()).map_err(|_| ArgError::HeaderValue(value.to_owned()))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_statuses("200-399"), Ok(200..=399));
        assert_eq!(parse_statuses("204"), Ok(204..=204));
        assert!(parse_statuses("399-200").is_err());
        assert!(parse_statuses("2xx").is_err());
        assert!(parse_statuses("600").is_err());
    }

    #[test]
    fn headers() {
        let (name, value) = parse_header("X-Canary: always").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-canary", "always")
        );
        assert!(parse_header("nocolon").is_err());
    }
}
