//! A small HTTP/1.1 client over hyper: one connection, requests on it, and what an answer says
//! about the pod that sent it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use testpage::routes::{X_POD, X_POD_IP, X_VERSION};
use tokio::net::TcpStream;

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
}

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The full URL.
    pub uri: Uri,
    /// `host:port` to connect to.
    pub addr: String,
    host: HeaderValue,
}

/// Why a URL was rejected.
#[derive(Debug, thiserror::Error)]
#[error("invalid URL {url:?}: {problem}")]
pub struct UrlError {
    url: String,
    problem: String,
}

impl Target {
    /// Parses `url`; a bare path (`/readyz`) means `http://127.0.0.1:$PORT/readyz` (PORT from
    /// the environment, 8080 when unset), so one HEALTHCHECK works in every image variant.
    /// A URL without a scheme (`localhost:8080/`) means `http://`.
    pub fn parse(url: &str) -> Result<Target, UrlError> {
        let fail = |problem: &str| UrlError {
            url: url.to_owned(),
            problem: problem.to_owned(),
        };
        let full = if url.starts_with('/') {
            let port = std::env::var("PORT").unwrap_or_default();
            let port = if port.trim().is_empty() {
                "8080"
            } else {
                port.trim()
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
        let port = authority.port_u16().unwrap_or(80);
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
        Ok(Target { uri, addr, host })
    }

    /// The request line's target (path and query).
    pub fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }
}

/// One HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
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
        // The connection task ends when the peer closes or the sender is dropped.
        tokio::spawn(connection);
        Ok(Conn { sender })
    }

    /// Whether another request can be sent on this connection.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends a GET and reads the whole answer.
    pub async fn get(
        &mut self,
        target: &Target,
        headers: &[(HeaderName, HeaderValue)],
        keep_alive: bool,
    ) -> Result<Answer, RequestError> {
        let started = Instant::now();
        let mut request = Request::get(target.path())
            .header(HOST, target.host.clone())
            .body(Empty::new())
            .unwrap_or_default();
        let request_headers = request.headers_mut();
        for (name, value) in headers {
            request_headers.insert(name.clone(), value.clone());
        }
        if !keep_alive {
            request_headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        let header = |name: &HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (body_version, body_ip) = identify_page(&body);
        Ok(Answer {
            status: parts.status.as_u16(),
            version: header(&X_VERSION).or(body_version),
            pod_ip: header(&X_POD_IP).or(body_ip),
            pod: header(&X_POD),
            close: parts
                .headers
                .get(CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close")),
            latency: started.elapsed(),
            body,
        })
    }
}

/// Opens a connection, sends one GET, and gives up after `timeout`.
pub async fn get_once(
    target: &Target,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
) -> Result<Answer, RequestError> {
    let exchange = async {
        let mut conn = Conn::open(target).await?;
        conn.get(target, headers, false).await
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
    /// From sending the request to the end of the body.
    pub latency: Duration,
    /// The body.
    pub body: Bytes,
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
