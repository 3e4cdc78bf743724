//! In-pod commands for FROM scratch images, which have no shell, `curl`, `rm` or `sleep`:
//! exec probes (`http`, `tcp`, `file`) and preStop hooks (`drain`, `sleep`).
//!
//! Each runs on the calling thread, or a single-threaded runtime for `http`, so that a probe the
//! kubelet runs every second costs a millisecond, and prints one line when it fails.

use std::net::{TcpStream, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};

use crate::client::{self, BodyRead, Target};

/// The result of a check: `Ok` or the line saying what failed.
pub type Check = Result<(), String>;

/// `probe http`: GET `url`; the status must fall in `statuses`. The body is not read: the
/// status is the answer, and a huge or endless body costs nothing.
pub fn http(
    target: &Target,
    timeout: Duration,
    statuses: RangeInclusive<u16>,
    headers: &[(HeaderName, HeaderValue)],
) -> Check {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    let answer = runtime.block_on(client::get_once(target, headers, timeout, BodyRead::Skip));
    // A name lookup still running (getaddrinfo cannot be cancelled) must not outlast the timeout.
    runtime.shutdown_background();
    let answer = answer.map_err(|e| format!("GET {}: {e}", target.uri))?;
    if statuses.contains(&answer.status) {
        Ok(())
    } else {
        Err(format!(
            "GET {}: status {} (want {}-{})",
            target.uri,
            answer.status,
            statuses.start(),
            statuses.end()
        ))
    }
}

/// `probe tcp`: a TCP connection to `addr` can be made within `timeout`.
pub fn tcp(addr: &str, timeout: Duration) -> Check {
    // No deadline for a timeout beyond the clock's range: each attempt then gets all of it.
    let deadline = Instant::now().checked_add(timeout);
    // The name lookup counts against the timeout too: it runs on a thread of its own, left
    // behind (and ended with the process) if it outlasts the deadline.
    let (sender, lookup) = std::sync::mpsc::channel();
    let name = addr.to_owned();
    std::thread::spawn(move || {
        let _ = sender.send(name.to_socket_addrs().map(Vec::from_iter));
    });
    let candidates = match lookup.recv_timeout(timeout) {
        Ok(found) => found.map_err(|e| format!("tcp {addr}: {e}"))?,
        Err(_) => {
            return Err(format!(
                "tcp {addr}: name lookup timed out after {timeout:?}"
            ))
        }
    };
    let mut last = format!("tcp {addr}: no address");
    for candidate in candidates {
        let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Err(format!("tcp {addr}: timed out after {timeout:?}"));
        }
        match TcpStream::connect_timeout(&candidate, left) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("tcp {addr} ({candidate}): {e}"),
        }
    }
    Err(last)
}

/// `probe file`: `path` exists.
pub fn file(path: &Path) -> Check {
    if path.exists() {
        Ok(())
    } else {
        Err(format!("{} does not exist", path.display()))
    }
}

/// `probe drain`: the preStop hook. Removes the ready file, so the pod turns unready and leaves
/// the endpoints, then waits while traffic moves away. testpage skips its own drain when SIGTERM
/// finds the file already gone.
pub fn drain(ready_file: Option<&Path>, sleep: Duration) -> Check {
    // Only a file testpage wrote is removed: never a device, a FIFO or someone else's file.
    let removed = match ready_file {
        Some(path) => testpage::readiness::withdraw(path)
            .map(drop)
            .map_err(|e| e.to_string()),
        // READY_FILE="" (testpage's "no file"): nothing to remove, only the wait.
        None => Ok(()),
    };
    // Sleep even when the removal failed: SIGTERM should still come as late as planned.
    std::thread::sleep(sleep);
    removed
}

/// Parses `200-399` or `200` into an inclusive range of status codes.
pub fn parse_statuses(text: &str) -> Result<RangeInclusive<u16>, String> {
    let code = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| format!("{s:?} is not a status code 100-599"))
    };
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (code(low)?, code(high)?),
        None => (code(text)?, code(text)?),
    };
    if low > high {
        return Err(format!("{text:?}: empty range"));
    }
    Ok(low..=high)
}

/// Parses `Name: value` into a header.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not Name:value"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("{value:?} is not a header value"))?;
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
