//! Long-lived answers for `probe watch`: a WebSocket (`ws://`) or a stream of server-sent events
//! (`--sse`), each on a connection of its own, read one message at a time.
//!
//! A WebSocket is an HTTP/1.1 upgrade sent with hyper ([`Conn`]) and then framed by
//! fastwebsockets; server-sent events are read line by line from the body as it arrives
//! ([`EventParser`]). Every buffer is bounded: a message, a line of the event stream and the data
//! of an event are at most [`MAX_MESSAGE`] bytes, and a larger one ends the connection (counted
//! abnormal) instead of growing the client's memory.
//!
//! How a connection ended ([`End`]) is clean only when the server said goodbye: a WebSocket close
//! with code 1000 (normal) or 1001 (going away), or testpage's last event, [`BYE`], followed by
//! the end of the stream. Anything else is abnormal: another close code or none, a socket closed
//! without a close frame, a reset, a stream that ends without `bye`.

use std::time::Duration;

use bytes::{Buf, Bytes};
use fastwebsockets::{Frame, OpCode, Role, WebSocket, WebSocketError};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::Upgraded;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use testpage::pod_info::Stamp;

use crate::client::{self, Conn, RequestError, Target, UrlError};

/// The largest message, line of an event stream, or data of one event, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The type of testpage's last event on `/events`, sent when the pod goes away, just before the
/// stream ends.
pub const BYE: &str = "bye";

/// What `probe watch` watches.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// An `http://` URL: polled, or read as server-sent events (`--sse`).
    Http(Target),
    /// A `ws://` URL: a WebSocket, whose handshake goes to the target's `http://` form.
    WebSocket(Target),
}

/// Parses `probe watch`'s URL (clap's `value_parser`): `ws://` is a WebSocket; `wss://` and
/// `https://` are refused (no TLS); anything else is read as [`Target::parse`] reads it.
pub fn parse_endpoint(url: &str) -> Result<Endpoint, UrlError> {
    let refuse = |problem| {
        Err(UrlError::Url {
            url: url.to_owned(),
            problem,
        })
    };
    // A scheme is letters, digits, `+`, `-` and `.`; `host/?next=http://x` has none.
    let scheme = url.split_once("://").filter(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    match scheme.map(|(s, rest)| (s.to_ascii_lowercase(), rest)) {
        Some((s, rest)) if s == "ws" => match Target::parse(&format!("http://{rest}")) {
            Ok(target) => Ok(Endpoint::WebSocket(target)),
            Err(UrlError::Url { problem, .. }) => refuse(problem),
            Err(other) => Err(other),
        },
        Some((s, _)) if s == "wss" => {
            refuse("wss:// (WebSocket over TLS) is not supported: probe speaks plain ws://")
        }
        Some((s, _)) if s == "https" => {
            refuse("https:// is not supported: probe speaks plain http://")
        }
        Some((s, _)) if s != "http" => refuse("only http:// and ws:// are supported"),
        _ => Target::parse(url).map(Endpoint::Http),
    }
}

/// The kind of stream a watch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A WebSocket: each text or binary message.
    WebSocket,
    /// Server-sent events (`text/event-stream`): each event.
    Events,
}

/// One message: a WebSocket's text or binary message, or an event of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// An event's type (`message` unless the stream names it); `message` for a WebSocket's text,
    /// `binary` for its binary messages.
    pub event: String,
    /// An event's data; a WebSocket message's payload (as UTF-8, lossily for binary).
    pub data: String,
}

impl Message {
    /// What testpage puts in every message (`{"version", "pod", "seq"}`), if this is that.
    pub fn stamp(&self) -> Option<Stamp> {
        serde_json::from_str(&self.data).ok()
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The server said goodbye: a close 1000 or 1001, or `bye` and the end of the stream.
    pub clean: bool,
    /// What happened, for a line: `close 1001 going away`, `connection reset by peer`.
    pub detail: String,
}

impl End {
    fn clean(detail: impl Into<String>) -> End {
        End {
            clean: true,
            detail: detail.into(),
        }
    }

    /// An end that is not a goodbye.
    pub fn abnormal(detail: impl Into<String>) -> End {
        End {
            clean: false,
            detail: detail.into(),
        }
    }
}

/// Why a connection gave no stream.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No answer: the connection failed or timed out.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// An answer, but not the stream.
    #[error("status {0}")]
    Status(u16),
    /// An answer to the upgrade other than `101 Switching Protocols`.
    #[error("status {0}, not 101 Switching Protocols: not a WebSocket")]
    NotUpgraded(u16),
    /// A `101` that does not complete a WebSocket handshake.
    #[error("not a WebSocket handshake: {0}")]
    Handshake(&'static str),
    /// A `200` that is not an event stream: its `Content-Type`, if any.
    #[error("not an event stream: {}", .0.as_deref().map_or("no Content-Type".to_owned(), |t| format!("Content-Type {t:?}")))]
    NotEvents(Option<String>),
}

/// An open stream, read with [`Stream::next`]. Dropping it closes the connection.
pub struct Stream {
    /// Drives the connection of an event stream (aborted on drop); finished once a WebSocket
    /// took its socket over.
    _conn: Conn,
    status: u16,
    reader: Reader,
}

enum Reader {
    WebSocket {
        ws: Box<WebSocket<TokioIo<Upgraded>>>,
        /// The opcode and payload so far of a message sent in fragments.
        partial: Option<(OpCode, Vec<u8>)>,
    },
    Events {
        body: Incoming,
        /// What is left of the last chunk read: the start of the next event.
        pending: Bytes,
        parser: EventParser,
        /// The last event was [`BYE`].
        said_bye: bool,
    },
}

impl Stream {
    /// Connects to `target` and opens a stream of `kind`, sending `headers` with the request.
    /// Not bounded in time: the caller's timeout is.
    pub async fn open(
        kind: Kind,
        target: &Target,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Stream, OpenError> {
        let mut conn = Conn::open(target).await?;
        let mut request = target.get(headers)?;
        let request_headers = request.headers_mut();
        match kind {
            Kind::Events => {
                // What a browser's EventSource sends.
                request_headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
                request_headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                let response = conn.send(request).await?;
                let status = response.status();
                if status != StatusCode::OK {
                    return Err(OpenError::Status(status.as_u16()));
                }
                let content_type = response
                    .headers()
                    .get(CONTENT_TYPE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let essence = content_type.as_deref().and_then(|t| t.split(';').next());
                if !essence.is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream")) {
                    return Err(OpenError::NotEvents(content_type.map(client::bounded)));
                }
                Ok(Stream {
                    _conn: conn,
                    status: status.as_u16(),
                    reader: Reader::Events {
                        body: response.into_body(),
                        pending: Bytes::new(),
                        parser: EventParser::default(),
                        said_bye: false,
                    },
                })
            }
            Kind::WebSocket => {
                let key = fastwebsockets::handshake::generate_key();
                let key_value = HeaderValue::from_str(&key)
                    .map_err(|_| OpenError::Handshake("the key is not a header value"))?;
                request_headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                request_headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                request_headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                request_headers.insert(SEC_WEBSOCKET_KEY, key_value);
                let mut response = conn.send(request).await?;
                check_handshake(&response, &key)?;
                let upgraded = hyper::upgrade::on(&mut response)
                    .await
                    .map_err(RequestError::from)?;
                let mut ws = WebSocket::after_handshake(TokioIo::new(upgraded), Role::Client);
                // A frame of `max` bytes or more is an error; read nothing larger than a message.
                ws.set_max_message_size(MAX_MESSAGE + 1);
                // Pings and the close are answered in `next`, so that a ping counts as a sign of
                // life and a close is reported even when its answer cannot be sent.
                ws.set_auto_pong(false);
                ws.set_auto_close(false);
                Ok(Stream {
                    _conn: conn,
                    status: StatusCode::SWITCHING_PROTOCOLS.as_u16(),
                    reader: Reader::WebSocket {
                        ws: Box::new(ws),
                        partial: None,
                    },
                })
            }
        }
    }

    /// The status the stream was opened with: 101 for a WebSocket, 200 for events.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reconnection time the event stream asked for (its last `retry:` field), if any.
    pub fn retry(&self) -> Option<Duration> {
        match &self.reader {
            Reader::Events { parser, .. } => parser.retry,
            Reader::WebSocket { .. } => None,
        }
    }

    /// The next message; `Ok(None)` when something else arrived (a ping, a comment or field of an
    /// event stream, part of a message), a sign that the connection is alive; `Err` when the
    /// connection ended. Not cancel-safe: dropping it in the middle of a frame leaves the socket
    /// inside that frame, and a later call would read payload bytes as a new frame's header (a
    /// message lost, or a payload taken for frames). A caller that drops it must drop the stream
    /// too, as `watch` does.
    pub async fn next(&mut self) -> Result<Option<Message>, End> {
        match &mut self.reader {
            Reader::WebSocket { ws, partial } => next_frame(ws, partial).await,
            Reader::Events {
                body,
                pending,
                parser,
                said_bye,
            } => loop {
                if !pending.is_empty() {
                    return match parser.push(pending) {
                        Ok(Some(message)) => {
                            *said_bye = message.event == BYE;
                            Ok(Some(message))
                        }
                        Ok(None) => Ok(None),
                        Err(e) => Err(End::abnormal(e.to_string())),
                    };
                }
                match body.frame().await {
                    None if *said_bye => return Err(End::clean("bye, then the end of the stream")),
                    None => return Err(End::abnormal("the stream ended without bye")),
                    Some(Err(e)) => return Err(End::abnormal(with_source(&e))),
                    // Trailers carry nothing here.
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            *pending = data;
                        }
                    }
                }
            },
        }
    }
}

/// Checks a WebSocket handshake's answer (RFC 6455, 4.1): `101`, `Upgrade: websocket`,
/// `Connection: upgrade`, and the `Sec-WebSocket-Accept` that proves the server read the key.
fn check_handshake(response: &Response<Incoming>, key: &str) -> Result<(), OpenError> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(OpenError::NotUpgraded(response.status().as_u16()));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if !header(UPGRADE).trim().eq_ignore_ascii_case("websocket") {
        return Err(OpenError::Handshake("no Upgrade: websocket"));
    }
    if !header(CONNECTION)
        .split(',')
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    {
        return Err(OpenError::Handshake("no Connection: upgrade"));
    }
    if header(SEC_WEBSOCKET_ACCEPT).trim() != accept_key(key) {
        return Err(OpenError::Handshake(
            "Sec-WebSocket-Accept does not match the key",
        ));
    }
    Ok(())
}

/// The `Sec-WebSocket-Accept` a server answers to `key`.
fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    use sha1::{Digest as _, Sha1};
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// Reads one frame of a WebSocket: a whole message, or a sign of life.
async fn next_frame(
    ws: &mut WebSocket<TokioIo<Upgraded>>,
    partial: &mut Option<(OpCode, Vec<u8>)>,
) -> Result<Option<Message>, End> {
    let frame = ws.read_frame().await.map_err(socket_end)?;
    match frame.opcode {
        OpCode::Text | OpCode::Binary if partial.is_some() => Err(End::abnormal(
            "a new message before the end of a fragmented one",
        )),
        OpCode::Text | OpCode::Binary if frame.fin => {
            Ok(Some(message(frame.opcode, &frame.payload)))
        }
        OpCode::Text | OpCode::Binary => {
            *partial = Some((frame.opcode, frame.payload.to_vec()));
            Ok(None)
        }
        OpCode::Continuation => {
            let Some((_, data)) = partial.as_mut() else {
                return Err(End::abnormal("a continuation frame without a message"));
            };
            if data.len() + frame.payload.len() > MAX_MESSAGE {
                return Err(too_large());
            }
            data.extend_from_slice(&frame.payload);
            match (frame.fin, partial.take()) {
                (true, Some((opcode, data))) => Ok(Some(message(opcode, &data))),
                (_, taken) => {
                    *partial = taken;
                    Ok(None)
                }
            }
        }
        OpCode::Close => {
            // Answer with the code received, as RFC 6455 asks. The server may be gone already:
            // the close it sent is what counts.
            let code = frame.payload.get(..2).unwrap_or_default().to_vec();
            let _ = ws.write_frame(Frame::close_raw(code.into())).await;
            Err(close_end(&frame.payload))
        }
        OpCode::Ping => {
            ws.write_frame(Frame::pong(frame.payload))
                .await
                .map_err(socket_end)?;
            Ok(None)
        }
        OpCode::Pong => Ok(None),
    }
}

fn message(opcode: OpCode, payload: &[u8]) -> Message {
    Message {
        event: if opcode == OpCode::Binary {
            "binary"
        } else {
            "message"
        }
        .to_owned(),
        data: String::from_utf8_lossy(payload).into_owned(),
    }
}

/// How a close frame's payload (a code and a reason, or nothing) ends the connection.
fn close_end(payload: &[u8]) -> End {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return End::abnormal("close without a code (1005)");
    };
    let code = u16::from_be_bytes(*code);
    let reason = client::bounded(String::from_utf8_lossy(reason).into_owned());
    let detail = format!("close {code} {reason}").trim_end().to_owned();
    if code == 1000 || code == 1001 {
        End::clean(detail)
    } else {
        End::abnormal(detail)
    }
}

fn too_large() -> End {
    End::abnormal(format!("a message over {} KiB", MAX_MESSAGE / 1024))
}

/// A WebSocket that failed while reading or answering.
fn socket_end(error: WebSocketError) -> End {
    match error {
        WebSocketError::UnexpectedEOF => {
            End::abnormal("the connection closed without a close frame (1006)")
        }
        WebSocketError::FrameTooLarge => too_large(),
        WebSocketError::IoError(e) => End::abnormal(e.to_string()),
        other => End::abnormal(with_source(&other)),
    }
}

/// An error and its cause: hyper's body errors say "error reading a body from connection" and
/// keep the reason (a reset, an early end) in their source.
fn with_source(error: &dyn std::error::Error) -> String {
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Why an event stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A line without its end within [`MAX_MESSAGE`] bytes.
    #[error("an event-stream line over {} KiB", MAX_MESSAGE / 1024)]
    LineTooLong,
    /// An event whose `data:` lines add up to more than [`MAX_MESSAGE`] bytes.
    #[error("an event's data over {} KiB", MAX_MESSAGE / 1024)]
    DataTooLong,
}

/// Reads `text/event-stream` as a browser's EventSource does (the HTML standard, "Interpreting an
/// event stream"): lines end in CRLF, LF or CR; `event:`, `data:` and `retry:` fields; a line
/// starting with `:` is a comment; an empty line ends an event, which is dispatched if it has
/// data. `id:` and unknown fields are read and ignored. A line, and the data of an event, are
/// bounded by [`MAX_MESSAGE`].
#[derive(Debug, Default)]
pub struct EventParser {
    /// The line read so far.
    line: Vec<u8>,
    /// The last line ended in CR: a LF next is the same line end.
    after_cr: bool,
    /// A line was read (a byte order mark is skipped at the start only).
    started: bool,
    /// The current event's type and data.
    event: String,
    data: String,
    /// The last `retry:`.
    retry: Option<Duration>,
}

impl EventParser {
    /// Reads from `input` until an event is complete (returned, the rest left in `input`) or
    /// `input` is used up (`None`).
    pub fn push(&mut self, input: &mut Bytes) -> Result<Option<Message>, EventError> {
        while !input.is_empty() {
            if std::mem::take(&mut self.after_cr) && input[0] == b'\n' {
                input.advance(1);
                continue;
            }
            let Some(end) = input.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.extend_line(input)?;
                input.clear();
                break;
            };
            self.extend_line(&input[..end])?;
            self.after_cr = input[end] == b'\r';
            input.advance(end + 1);
            let line = std::mem::take(&mut self.line);
            let event = self.take_line(&line);
            // Keep the allocation for the next line.
            self.line = line;
            self.line.clear();
            if let Some(event) = event? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// The last `retry:` read.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), EventError> {
        if self.line.len() + bytes.len() > MAX_MESSAGE {
            return Err(EventError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn take_line(&mut self, line: &[u8]) -> Result<Option<Message>, EventError> {
        let line = String::from_utf8_lossy(line);
        let mut line: &str = &line;
        if !std::mem::replace(&mut self.started, true) {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_MESSAGE {
                    return Err(EventError::DataTooLong);
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// Ends the current event: dispatched if it has data, dropped otherwise.
    fn dispatch(&mut self) -> Option<Message> {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        data.pop();
        Some(Message {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event in `chunks`, fed one chunk at a time.
    fn events(chunks: &[&[u8]]) -> Result<Vec<(String, String)>, EventError> {
        let mut parser = EventParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input = Bytes::copy_from_slice(chunk);
            while let Some(m) = parser.push(&mut input)? {
                out.push((m.event, m.data));
            }
            assert!(input.is_empty());
        }
        Ok(out)
    }

    fn pair(event: &str, data: &str) -> (String, String) {
        (event.to_owned(), data.to_owned())
    }

    #[test]
    fn reads_testpage_events() {
        let stream = b"retry: 1000\n\nid: 1\nevent: message\ndata: {\"seq\":1}\n\n\
                       id: 2\nevent: bye\ndata: {\"seq\":2}\n\n";
        assert_eq!(
            events(&[stream]).unwrap(),
            [pair("message", "{\"seq\":1}"), pair("bye", "{\"seq\":2}")]
        );
        let mut parser = EventParser::default();
        parser
            .push(&mut Bytes::from_static(b"retry: 1500\n"))
            .unwrap();
        assert_eq!(parser.retry(), Some(Duration::from_millis(1500)));
        parser
            .push(&mut Bytes::from_static(b"retry: 2s\n"))
            .unwrap();
        assert_eq!(parser.retry(), Some(Duration::from_millis(1500)), "ignored");
    }

    #[test]
    fn every_line_end_and_any_chunking() {
        let stream: &[u8] = b"\xef\xbb\xbfdata: a\r\ndata:b\rdata\n\n: comment\ndata: c\r\r";
        let expected = [pair("message", "a\nb\n"), pair("message", "c")];
        assert_eq!(events(&[stream]).unwrap(), expected);
        // Byte by byte: a CR and its LF in two chunks are still one line end.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events(&bytes).unwrap(), expected);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(
            events(&[b"event: x\n\ndata: y\n\n"]).unwrap(),
            [pair("message", "y")],
            "the type is reset with the event"
        );
    }

    #[test]
    fn lines_and_data_are_bounded() {
        let endless = vec![b'x'; 4096];
        let mut parser = EventParser::default();
        let error = (0..100)
            .find_map(|_| parser.push(&mut Bytes::from(endless.clone())).err())
            .unwrap();
        assert_eq!(error, EventError::LineTooLong);
        assert!(parser.line.capacity() <= 2 * MAX_MESSAGE);

        let line = format!("data: {}\n", "y".repeat(1000));
        let mut parser = EventParser::default();
        let error = (0..100)
            .find_map(|_| parser.push(&mut Bytes::from(line.clone())).err())
            .unwrap();
        assert_eq!(error, EventError::DataTooLong);
    }

    #[test]
    fn urls() {
        let ws = parse_endpoint("ws://127.0.0.1:9/ws?x=1").unwrap();
        assert!(
            matches!(&ws, Endpoint::WebSocket(t) if t.addr == "127.0.0.1:9" && t.path() == "/ws?x=1")
        );
        assert!(matches!(
            parse_endpoint("WS://h/").unwrap(),
            Endpoint::WebSocket(_)
        ));
        assert!(matches!(
            parse_endpoint("localhost:8080/events").unwrap(),
            Endpoint::Http(_)
        ));
        for (url, says) in [
            ("wss://h/ws", "wss://"),
            ("https://h/", "https://"),
            ("ftp://h/", "only http:// and ws://"),
            ("ws://h:0/", "port"),
        ] {
            let error = parse_endpoint(url).unwrap_err().to_string();
            assert!(
                error.contains(says) && error.contains(url),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn close_codes() {
        assert!(close_end(&[0x03, 0xe9, b'g', b'o']).clean, "1001");
        assert_eq!(close_end(&[0x03, 0xe8]), End::clean("close 1000"));
        assert!(!close_end(&[0x03, 0xf3]).clean, "1011");
        assert!(!close_end(&[]).clean);
    }

    #[test]
    fn accept_key_of_rfc_6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
