//! A small HTTP/1.1 client over hyper: one connection, requests on it, and what an answer says
//! about the pod that sent it.
//!
//! Bodies are never read whole: each command says how much it needs ([`BodyRead`]) and the rest
//! is left unread, so an endless or huge body costs neither memory nor time. A connection whose
//! body was not read to its end is closed, never reused.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use testpage::pod_info::{X_POD, X_POD_IP, X_VERSION};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The TCP connection could not be made.
    #[error("connect {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The connection failed during the exchange (reset, closed early, bad response).
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// No answer within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The request could not be built from the target and headers.
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// How much of a response body a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRead {
    /// None: the status is the answer (exec probes). The connection is not reused.
    Skip,
    /// Keep the first `keep` bytes and read the body to its end if it is at most `limit` bytes,
    /// discarding what is not kept, so that a keep-alive connection can carry the next request.
    /// A longer body is abandoned after `limit` bytes and its connection closed.
    Prefix {
        /// Bytes kept in [`Answer::body`].
        keep: usize,
        /// Bytes read in all before the body is abandoned.
        limit: u64,
    },
}

impl BodyRead {
    /// What `watch` and `load` read: 4 KiB kept, enough for [`identify_page`] to find the
    /// tutorials' pages, and bodies up to 1 MiB read through so that keep-alive works for
    /// ordinary pages.
    pub const PAGE: BodyRead = BodyRead::Prefix {
        keep: 4096,
        limit: 1 << 20,
    };
}

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The full URL.
    pub uri: Uri,
    /// `host:port` to connect to.
    pub addr: String,
    host: HeaderValue,
    /// The request line's target (origin form), parsed once: each request clones it.
    origin: Uri,
}

/// Why a URL was rejected.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The URL itself is wrong.
    #[error("invalid URL {url:?}: {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A bare path was given and `PORT` is set but is not a port.
    #[error("PORT={value:?} is not a port 1-65535 (a bare path means http://127.0.0.1:$PORT)")]
    Port {
        /// `PORT` as found in the environment.
        value: String,
    },
}

/// Parses a URL argument into a [`Target`] (clap's `value_parser`).
pub fn parse_target(url: &str) -> Result<Target, UrlError> {
    Target::parse(url)
}

impl Target {
    /// Parses `url`; a bare path (`/readyz`) means `http://127.0.0.1:$PORT/readyz` (PORT from
    /// the environment, 8080 when unset or empty), so one HEALTHCHECK works in every image
    /// variant. A URL without a scheme (`localhost:8080/`) means `http://`.
    pub fn parse(url: &str) -> Result<Target, UrlError> {
        Target::parse_with_port(url, std::env::var_os("PORT").as_deref())
    }

    /// [`Target::parse`] with `PORT` given rather than read from the environment.
    fn parse_with_port(url: &str, port: Option<&OsStr>) -> Result<Target, UrlError> {
        let fail = |problem: &'static str| UrlError::Url {
            url: url.to_owned(),
            problem,
        };
        let full = if url.starts_with('/') {
            let port = match port.map(|p| (p, p.to_str().map(str::trim))) {
                None | Some((_, Some(""))) => 8080,
                Some((raw, text)) => text
                    .and_then(|t| t.parse::<u16>().ok())
                    .filter(|&p| p != 0)
                    .ok_or_else(|| UrlError::Port {
                        value: raw.to_string_lossy().into_owned(),
                    })?,
            };
            format!("http://127.0.0.1:{port}{url}")
        } else if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = full.parse().map_err(|_| fail("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(fail("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| fail("no host"))?;
        // `Authority::port` is None both without a port and with one that is not a number
        // (`host:abc`); only the first means 80.
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, hp)| hp);
        let port = match host_port.rsplit_once(':') {
            Some((_, text)) if !text.contains(']') => text
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| fail("the port is not a number 1-65535"))?,
            _ => 80,
        };
        let host = authority.host();
        let addr = format!("{host}:{port}");
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| fail("bad host"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|_| fail("not a URL"))?;
        let origin = Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|_| fail("not a URL"))?;
        Ok(Target {
            uri,
            addr,
            host,
            origin,
        })
    }

    /// The request line's target (path and query).
    pub fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// A GET of this target with `headers` (which may replace `Host`).
    pub fn get(
        &self,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Request<Empty<Bytes>>, RequestError> {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.origin.clone();
        let request_headers = request.headers_mut();
        request_headers.insert(HOST, self.host.clone());
        for (name, value) in headers {
            request_headers.insert(name.clone(), value.clone());
        }
        Ok(request)
    }
}

/// One HTTP/1.1 connection. Dropping it closes the socket.
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    /// Drives the socket; aborted on drop so that an abandoned body is not read on.
    driver: JoinHandle<()>,
    /// False once an answer's body was left unread: the connection cannot carry another request.
    reusable: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    /// Connects to `target`.
    pub async fn open(target: &Target) -> Result<Conn, RequestError> {
        let stream =
            TcpStream::connect(&target.addr)
                .await
                .map_err(|source| RequestError::Connect {
                    addr: target.addr.clone(),
                    source,
                })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // The task ends when the peer closes, the sender is dropped, or the Conn is dropped; or
        // when a `101 Switching Protocols` hands the socket over to `hyper::upgrade::on` (a
        // WebSocket). Without an upgrade, `with_upgrades` changes nothing.
        let driver = tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        Ok(Conn {
            sender,
            driver,
            reusable: true,
        })
    }

    /// Whether another request can be sent on this connection: the peer has not closed it and
    /// every body was read to its end.
    pub fn is_open(&self) -> bool {
        self.reusable && !self.sender.is_closed()
    }

    /// Sends `request` and returns the answer with its body unread, for the caller to read as
    /// it arrives (a stream of events) or to take the connection over (a WebSocket upgrade).
    /// The connection carries no further request.
    pub async fn send(
        &mut self,
        request: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, RequestError> {
        self.reusable = false;
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Sends a GET and reads as much of the body as `read` says.
    pub async fn get(
        &mut self,
        target: &Target,
        headers: &[(HeaderName, HeaderValue)],
        keep_alive: bool,
        read: BodyRead,
    ) -> Result<Answer, RequestError> {
        let started = Instant::now();
        let mut request = target.get(headers)?;
        if !keep_alive {
            request
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        // One pass over the answer's few headers: comparing names costs less than hashing each
        // name looked for.
        let (mut version, mut pod_ip, mut pod, mut close) = (None, None, None, false);
        for (name, value) in &parts.headers {
            let text = || value.to_str().ok().map(str::to_owned);
            if name == X_VERSION {
                version = version.or_else(text);
            } else if name == X_POD_IP {
                pod_ip = pod_ip.or_else(text);
            } else if name == X_POD {
                pod = pod.or_else(text);
            } else if name == CONNECTION {
                close |= value.as_bytes().eq_ignore_ascii_case(b"close");
            }
        }
        // Only an app that does not say who it is in headers is read from its page: otherwise
        // the body is read through, and none of it kept.
        let identified = version.is_some() && pod_ip.is_some();
        let read = match read {
            BodyRead::Prefix { limit, .. } if identified => BodyRead::Prefix { keep: 0, limit },
            read => read,
        };
        let (body, complete) = read_body(body, read).await?;
        if !complete {
            self.reusable = false;
        }
        if !identified {
            let (body_version, body_ip) = identify_page(&body);
            version = version.or(body_version);
            pod_ip = pod_ip.or(body_ip);
        }
        Ok(Answer {
            status: parts.status.as_u16(),
            version: version.map(bounded),
            pod_ip,
            pod: pod.map(bounded),
            close,
            latency: started.elapsed(),
            body,
            complete,
        })
    }
}

/// Reads `body` as `read` says: the kept prefix, and whether the body was read to its end.
async fn read_body(mut body: Incoming, read: BodyRead) -> Result<(Bytes, bool), RequestError> {
    let BodyRead::Prefix { keep, limit } = read else {
        return Ok((Bytes::new(), false));
    };
    let mut kept = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        // Trailers carry nothing this client uses.
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let room = keep.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
        seen = seen.saturating_add(data.len() as u64);
        if seen > limit {
            return Ok((kept.freeze(), false));
        }
    }
    Ok((kept.freeze(), true))
}

/// Opens a connection, sends one GET, reads as much of the body as `read` says, and gives up
/// after `timeout`. The connection is closed on return.
pub async fn get_once(
    target: &Target,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
    read: BodyRead,
) -> Result<Answer, RequestError> {
    let exchange = async {
        let mut conn = Conn::open(target).await?;
        conn.get(target, headers, false, read).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RequestError::Timeout(timeout))?
}

/// An HTTP answer and what it says about the pod behind it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `X-Version`, else the version parsed from the page.
    pub version: Option<String>,
    /// `X-Pod-IP`, else the IP parsed from the page.
    pub pod_ip: Option<String>,
    /// `X-Pod`.
    pub pod: Option<String>,
    /// The server asked to close the connection.
    pub close: bool,
    /// From sending the request to the end of the body, or to where reading it stopped.
    pub latency: Duration,
    /// The start of the body, as much as [`BodyRead`] kept; empty when the headers said the
    /// version and pod IP (the body is not needed then).
    pub body: Bytes,
    /// The body was read to its end (false: abandoned, and the connection closed).
    pub complete: bool,
}

/// The longest version or pod name kept, in characters: the server chooses these values, and
/// a report must not grow with them (nor with their number: [`crate::tally`]).
pub const MAX_NAME_CHARS: usize = 64;

/// `name`, cut to [`MAX_NAME_CHARS`] characters.
pub(crate) fn bounded(name: String) -> String {
    match name.char_indices().nth(MAX_NAME_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name,
    }
}

/// The start of `text` on one line, for a message or a log: at most `max` characters, control
/// characters (line ends, escape codes) shown as `�`, and `…` when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let mut shown: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        shown.push('…');
    }
    shown
}

/// Reads version and IP from the pages of apps that send no headers: the tutorials' originals,
/// `I am: <ip>, the version is: <version>` and `This is version <n>.`.
pub fn identify_page(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(text) = std::str::from_utf8(body) else {
        return (None, None);
    };
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("I am: ") {
        if let Some((ip, version)) = rest.split_once(", the version is: ") {
            return (Some(version.trim().to_owned()), Some(ip.trim().to_owned()));
        }
    }
    if let Some(rest) = text.strip_prefix("This is version ") {
        return (Some(rest.trim_end_matches('.').to_owned()), None);
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_paths_and_schemeless_urls() {
        let t = Target::parse("localhost:9090/x?y=1").unwrap();
        assert_eq!((t.addr.as_str(), t.path()), ("localhost:9090", "/x?y=1"));
        let t = Target::parse("http://example.test").unwrap();
        assert_eq!((t.addr.as_str(), t.path()), ("example.test:80", "/"));
        assert!(Target::parse("https://example.test").is_err());
        assert!(Target::parse("http://").is_err());
        let t = Target::parse("http://[::1]/").unwrap();
        assert_eq!(t.addr, "[::1]:80");
        let t = Target::parse("http://[::1]:9090/").unwrap();
        assert_eq!(t.addr, "[::1]:9090");
    }

    #[test]
    fn a_port_that_is_not_a_number_is_an_error_not_80() {
        for url in [
            "http://127.0.0.1:abc/",
            "127.0.0.1:0/",
            "h:70000/",
            "http://h:/",
        ] {
            let error = Target::parse(url).unwrap_err().to_string();
            assert!(error.contains("port"), "{url}: {error}");
        }
    }

    #[test]
    fn a_bare_path_takes_the_port_from_port() {
        let parse = |port: Option<&str>| Target::parse_with_port("/readyz", port.map(OsStr::new));
        assert_eq!(parse(None).unwrap().addr, "127.0.0.1:8080");
        assert_eq!(parse(Some(" ")).unwrap().addr, "127.0.0.1:8080");
        assert_eq!(parse(Some(" 9090 ")).unwrap().addr, "127.0.0.1:9090");
        for bad in ["abc", "0", "65536", "-1", "80x"] {
            let error = parse(Some(bad)).unwrap_err().to_string();
            assert!(error.starts_with(&format!("PORT={bad:?} ")), "{error}");
        }
    }

    #[test]
    fn identifies_the_tutorial_pages() {
        assert_eq!(
            identify_page(b"I am: 172.1.14.7, the version is: 0.8\n"),
            (Some("0.8".into()), Some("172.1.14.7".into()))
        );
        assert_eq!(
            identify_page(b"This is version 2.\n"),
            (Some("2".into()), None)
        );
        assert_eq!(identify_page(b"<html>"), (None, None));
    }
}
