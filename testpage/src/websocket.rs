//! The WebSocket of `GET /ws` (RFC 6455) once upgraded: an event a second, an echo of each
//! message, and a close with 1001 "going away" at the socket's goodbye.
//!
//! # How a socket is served, and why
//!
//! Two futures serve one socket, inside the task of the connection it was upgraded from (so the
//! socket keeps that connection's slot of `MAX_CONNECTIONS`, is counted as open, and is cut with
//! the others at the end of the shutdown):
//!
//! - the **reader** ([`read_messages`]) reads frames, assembles fragmented messages, checks
//!   them, and hands whole messages to the writer, one at a time;
//! - the **writer** ([`serve`]'s loop) waits for a message, the next event, a ping's turn or the
//!   goodbye, and writes.
//!
//! The reader is one future for the socket's whole life, never raced against anything: a frame
//! read halfway is never abandoned. A read cancelled halfway (one `read_frame()` inside a
//! `select!` loop, say, against a timer) loses the bytes already taken from the socket, and the
//! next read parses the rest of a payload as a new frame: messages are lost, or a payload that
//! is itself a frame gets smuggled in. The writer only waits on futures that lose nothing when
//! dropped (a channel's `recv`, timers), and every write has a deadline.
//!
//! # What one socket can hold
//!
//! - A message is at most [`MAX_MESSAGE`] bytes, all fragments together; a larger one ends the
//!   socket with 1009 before its payload is read.
//! - The bytes of messages being read, waiting or being echoed come out of one budget shared by
//!   every socket ([`MESSAGE_MEMORY`]): a socket whose message does not fit waits for room (its
//!   deadline still runs), so memory stays bounded however many clients send and never read.
//! - The reader waits while the writer has a message in hand: a client that never reads its
//!   echoes stops being read, and its write deadline ([`WRITE_TIMEOUT`]) ends it.
//! - A message must arrive whole within [`MESSAGE_TIMEOUT`] of its first byte; a socket that
//!   sends nothing at all, not even a pong to the pings sent every half `IDLE_TIMEOUT`, is
//!   closed after `IDLE_TIMEOUT`.
//!
//! Protocol errors are answered with a close frame and the RFC's code (1002 for a malformed or
//! unmasked frame, 1007 for text that is not UTF-8, 1009 for a message too large), then the
//! socket ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};

/// The largest message read (and echoed), all its fragments together; a message of exactly
/// this size is accepted.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

/// The most bytes of messages that every WebSocket together holds at once (being read,
/// waiting, or being echoed). At the default `MAX_CONNECTIONS` this keeps a full table of
/// sockets inside the tutorials' `memory: 20Mi`.
pub(crate) const MESSAGE_MEMORY: usize = 2 * 1024 * 1024;

/// How long a message may take to arrive, from its first byte to its last.
pub(crate) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one write may wait for a client that does not read.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the close frame may take to be written, and then the client's close to arrive.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 4 * 1024;

/// The largest payload of a control frame (ping, pong, close).
const MAX_CONTROL: u64 = 125;

/// Close codes (RFC 6455, 7.4.1).
pub(crate) mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (its goodbye), or the client was idle too long.
    pub const GOING_AWAY: u16 = 1001;
    /// A malformed frame.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message that broke a rule of this server (too slow).
    pub const POLICY: u16 = 1008;
    /// A message over [`super::MAX_MESSAGE`].
    pub const TOO_BIG: u16 = 1009;
}

/// Frame opcodes.
mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Why a socket must be closed: the code and the reason sent in the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// The first bytes of a frame: what it is and how long its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    pub len: u64,
}

impl Header {
    fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a client's frame header from the front of `buf`: `Ok(None)` when more bytes are
/// needed, else the header and its length in bytes. Everything a header alone can break is
/// refused here: reserved bits (no extension was agreed), unknown opcodes, an unmasked frame
/// (clients must mask), a control frame fragmented or over 125 bytes, a 64-bit length with its
/// top bit set.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<(Header, usize)>, Violation> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(violation(code::PROTOCOL_ERROR, "reserved bits set"));
    }
    let opcode = first & 0x0F;
    if !matches!(
        opcode,
        op::CONTINUATION | op::TEXT | op::BINARY | op::CLOSE | op::PING | op::PONG
    ) {
        return Err(violation(code::PROTOCOL_ERROR, "unknown opcode"));
    }
    if second & 0x80 == 0 {
        return Err(violation(
            code::PROTOCOL_ERROR,
            "client frames must be masked",
        ));
    }
    let (len, at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if len >> 63 != 0 {
        return Err(violation(code::PROTOCOL_ERROR, "length out of range"));
    }
    let Some(m) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let header = Header {
        fin: first & 0x80 != 0,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        len,
    };
    if header.is_control() && (!header.fin || header.len > MAX_CONTROL) {
        return Err(violation(
            code::PROTOCOL_ERROR,
            "control frames must be whole and at most 125 bytes",
        ));
    }
    Ok(Some((header, at + 4)))
}

/// Unmasks `payload`, one frame's payload from its first byte (every frame has its own mask).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// The header of a server frame (never masked) of `len` bytes.
pub(crate) fn frame_header(opcode: u8, len: usize) -> Bytes {
    let mut header = Vec::with_capacity(10);
    header.push(0x80 | opcode);
    match len {
        0..=125 => header.push(len as u8),
        126..=0xFFFF => {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    Bytes::from(header)
}

/// Checks a close frame's payload: empty, or a code a peer may send and a UTF-8 reason.
pub(crate) fn check_close(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(violation(
            code::PROTOCOL_ERROR,
            "a close payload of one byte",
        )),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            // 1004-1006 and 1015 are never sent; 1012-1014 were registered after RFC 6455.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(violation(
                    code::PROTOCOL_ERROR,
                    "a close code nobody may send",
                ));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(violation(code::INVALID_DATA, "a close reason not in UTF-8"));
            }
            Ok(Some(code))
        }
    }
}

/// What the reader hands the writer.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A whole message, checked, and the share of [`MESSAGE_MEMORY`] it holds until echoed.
    Message {
        text: bool,
        data: Vec<u8>,
        held: Option<OwnedSemaphorePermit>,
    },
    /// A ping, to be answered with its payload.
    Ping(Vec<u8>),
    /// The client's close, with its code if it gave one. The reader stops.
    Close(Option<u16>),
    /// The client broke the protocol or a limit: close with this. The reader stops.
    Violation(Violation),
    /// The client sent nothing for the idle timeout. The reader stops.
    Idle,
    /// The socket ended or failed. The reader stops.
    Gone,
}

/// The deadlines and the shared budget the reader works with.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Nothing at all from the client for this long ends the socket.
    pub idle: Duration,
    /// From a message's first byte to its last.
    pub message: Duration,
    /// The bytes every socket's messages share ([`MESSAGE_MEMORY`]).
    pub budget: Arc<Semaphore>,
}

/// Reads frames until the socket ends, handing the writer whole messages, pings and the end.
/// Never cancelled while the socket lives: see the module's documentation.
pub(crate) async fn read_messages<R: AsyncRead + Unpin>(
    read: R,
    out: mpsc::Sender<Inbound>,
    limits: Limits,
) {
    let mut reader = Reader {
        io: BufReader::with_capacity(READ_BUFFER, read),
        limits,
        partial: None,
    };
    loop {
        let inbound = match reader.next().await {
            Ok(inbound) => inbound,
            Err(violation) => Inbound::Violation(violation),
        };
        let last = !matches!(inbound, Inbound::Message { .. } | Inbound::Ping(_));
        if out.send(inbound).await.is_err() || last {
            return;
        }
    }
}

/// A message whose first fragments have arrived.
struct Partial {
    text: bool,
    data: Vec<u8>,
    held: Option<OwnedSemaphorePermit>,
    /// When its last byte is due.
    due: Instant,
}

struct Reader<R> {
    io: BufReader<R>,
    limits: Limits,
    partial: Option<Partial>,
}

/// The read failed or timed out: what to tell the writer.
enum Stop {
    Inbound(Inbound),
    Violation(Violation),
}

impl From<Violation> for Stop {
    fn from(v: Violation) -> Self {
        Stop::Violation(v)
    }
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// The next thing for the writer: a whole message, a ping, or the end.
    async fn next(&mut self) -> Result<Inbound, Violation> {
        loop {
            match self.frame().await {
                Ok(Some(inbound)) => return Ok(inbound),
                Ok(None) => {}
                Err(Stop::Inbound(inbound)) => return Ok(inbound),
                Err(Stop::Violation(v)) => return Err(v),
            }
        }
    }

    /// Reads one frame; `Some` when it completes something for the writer.
    async fn frame(&mut self) -> Result<Option<Inbound>, Stop> {
        // Between messages, only the idle timeout runs; inside one, its own deadline.
        let waiting = Instant::now() + self.limits.idle;
        let first_due = self.partial.as_ref().map_or(waiting, |p| p.due);
        match timeout_at(first_due, self.io.fill_buf()).await {
            Ok(Ok([])) | Ok(Err(_)) => return Err(Stop::Inbound(Inbound::Gone)),
            Ok(Ok(_)) => {}
            Err(_) if self.partial.is_some() => return Err(too_slow()),
            Err(_) => return Err(Stop::Inbound(Inbound::Idle)),
        }
        // From here the frame has begun: the rest of it is due with its message.
        let due = self
            .partial
            .as_ref()
            .map_or(Instant::now() + self.limits.message, |p| p.due);
        let header = self.header(due).await?;
        if header.is_control() {
            let mut payload = vec![0; header.len as usize];
            self.read_exact(&mut payload, due).await?;
            unmask(&mut payload, header.mask);
            return Ok(match header.opcode {
                op::PING => Some(Inbound::Ping(payload)),
                op::CLOSE => Some(Inbound::Close(check_close(&payload)?)),
                _ => None,
            });
        }
        match (header.opcode, self.partial.is_some()) {
            (op::CONTINUATION, false) => {
                return Err(
                    violation(code::PROTOCOL_ERROR, "a continuation with no message").into(),
                )
            }
            (op::TEXT | op::BINARY, true) => {
                return Err(violation(code::PROTOCOL_ERROR, "a new message inside another").into())
            }
            _ => {}
        }
        let partial = self.partial.get_or_insert_with(|| Partial {
            text: header.opcode == op::TEXT,
            data: Vec::new(),
            held: None,
            due,
        });
        let have = partial.data.len();
        let total = have as u64 + header.len;
        if total > MAX_MESSAGE as u64 {
            return Err(violation(code::TOO_BIG, "a message over 64 KiB").into());
        }
        let len = header.len as usize;
        if len > 0 {
            // Room in the shared budget first, then the bytes.
            let budget = Arc::clone(&self.limits.budget);
            let permit = timeout_at(due, budget.acquire_many_owned(len as u32))
                .await
                .map_err(|_| too_slow())?
                .map_err(|_| Stop::Inbound(Inbound::Gone))?;
            match &mut partial.held {
                Some(held) => held.merge(permit),
                held => *held = Some(permit),
            }
            partial.data.resize(have + len, 0);
            let due = partial.due;
            let mut payload = std::mem::take(&mut partial.data);
            let read = self.read_exact(&mut payload[have..], due).await;
            unmask(&mut payload[have..], header.mask);
            if let Some(partial) = &mut self.partial {
                partial.data = payload;
            }
            read?;
        }
        if !header.fin {
            return Ok(None);
        }
        let Some(Partial {
            text, data, held, ..
        }) = self.partial.take()
        else {
            return Ok(None);
        };
        if text && std::str::from_utf8(&data).is_err() {
            return Err(violation(code::INVALID_DATA, "text that is not UTF-8").into());
        }
        Ok(Some(Inbound::Message { text, data, held }))
    }

    /// Reads a frame header, due by `due`.
    async fn header(&mut self, due: Instant) -> Result<Header, Stop> {
        let mut buf = [0u8; 14];
        let mut have = 0;
        loop {
            if let Some((header, len)) = parse_header(&buf[..have])? {
                debug_assert_eq!(len, have);
                return Ok(header);
            }
            // The header's next byte: at most 14 bytes, one at a time from the buffer.
            let byte = match timeout_at(due, self.io.read_u8()).await {
                Ok(Ok(byte)) => byte,
                Ok(Err(_)) => return Err(Stop::Inbound(Inbound::Gone)),
                Err(_) => return Err(too_slow()),
            };
            buf[have] = byte;
            have += 1;
        }
    }

    async fn read_exact(&mut self, into: &mut [u8], due: Instant) -> Result<(), Stop> {
        match timeout_at(due, self.io.read_exact(into)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Stop::Inbound(Inbound::Gone)),
            Err(_) => Err(too_slow()),
        }
    }
}

fn too_slow() -> Stop {
    Stop::Violation(violation(
        code::POLICY,
        "a message must arrive within 10 s of its first byte",
    ))
}

/// The writing half of a socket: frames out, each under [`WRITE_TIMEOUT`].
pub(crate) struct Writer<W> {
    io: W,
}

/// A write did not complete: the socket failed or the client stopped reading.
#[derive(Debug)]
pub(crate) struct WriteFailed;

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub(crate) fn new(io: W) -> Self {
        Writer { io }
    }

    /// Writes one frame within `within`.
    pub(crate) async fn frame(
        &mut self,
        opcode: u8,
        payload: &[u8],
        within: Duration,
    ) -> Result<(), WriteFailed> {
        let mut out = frame_header(opcode, payload.len()).chain(payload);
        match timeout(within, self.io.write_all_buf(&mut out)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(WriteFailed),
        }
    }

    /// Writes a close frame with `code` and `reason`.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) -> Result<(), WriteFailed> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.frame(op::CLOSE, &payload, CLOSE_TIMEOUT).await
    }

    pub(crate) async fn text(&mut self, text: &[u8]) -> Result<(), WriteFailed> {
        self.frame(op::TEXT, text, WRITE_TIMEOUT).await
    }

    pub(crate) async fn echo(&mut self, text: bool, data: &[u8]) -> Result<(), WriteFailed> {
        let opcode = if text { op::TEXT } else { op::BINARY };
        self.frame(opcode, data, WRITE_TIMEOUT).await
    }

    pub(crate) async fn pong(&mut self, payload: &[u8]) -> Result<(), WriteFailed> {
        self.frame(op::PONG, payload, WRITE_TIMEOUT).await
    }

    pub(crate) async fn ping(&mut self) -> Result<(), WriteFailed> {
        self.frame(op::PING, b"", WRITE_TIMEOUT).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn headers_of_every_length_form_need_their_bytes() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let frame = masked(0x82, &vec![7; len], [1, 2, 3, 4]);
            let at = frame.len() - len;
            for cut in 0..at {
                assert_eq!(parse_header(&frame[..cut]), Ok(None), "len {len} cut {cut}");
            }
            let (header, used) = parse_header(&frame).unwrap().unwrap();
            assert_eq!((header.len as usize, used, header.fin), (len, at, true));
            assert_eq!(header.opcode, op::BINARY);
        }
    }

    #[test]
    fn header_violations() {
        let unmasked = [0x81, 0x05];
        assert_eq!(parse_header(&unmasked).unwrap_err().code, 1002);
        let reserved = [0xC1, 0x80, 0, 0, 0, 0];
        assert_eq!(parse_header(&reserved).unwrap_err().code, 1002);
        let opcode = [0x83, 0x80, 0, 0, 0, 0];
        assert_eq!(parse_header(&opcode).unwrap_err().code, 1002);
        let long_ping = masked(0x89, &[0; 126], [0; 4]);
        assert_eq!(parse_header(&long_ping).unwrap_err().code, 1002);
        let fragmented_ping = masked(0x09, b"x", [0; 4]);
        assert_eq!(parse_header(&fragmented_ping).unwrap_err().code, 1002);
        let huge = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_header(&huge).unwrap_err().code, 1002);
        let ping_125 = masked(0x89, &[0; 125], [0; 4]);
        assert!(parse_header(&ping_125).unwrap().is_some());
    }

    #[test]
    fn close_payloads() {
        assert_eq!(check_close(b""), Ok(None));
        assert_eq!(check_close(&[3]).unwrap_err().code, 1002);
        assert_eq!(check_close(&1000u16.to_be_bytes()), Ok(Some(1000)));
        assert_eq!(check_close(&4999u16.to_be_bytes()), Ok(Some(4999)));
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert_eq!(
                check_close(&bad.to_be_bytes()).unwrap_err().code,
                1002,
                "{bad}"
            );
        }
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.extend_from_slice(&[0xC3]);
        assert_eq!(check_close(&bad_reason).unwrap_err().code, 1007);
    }

    #[test]
    fn server_frame_headers() {
        assert_eq!(&frame_header(op::TEXT, 5)[..], &[0x81, 5]);
        assert_eq!(&frame_header(op::BINARY, 126)[..], &[0x82, 126, 0, 126]);
        assert_eq!(
            &frame_header(op::BINARY, 65536)[..],
            &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    fn limits(budget: usize) -> Limits {
        Limits {
            idle: Duration::from_secs(60),
            message: Duration::from_secs(10),
            budget: Arc::new(Semaphore::new(budget)),
        }
    }

    /// Every `Inbound` the reader hands over for `input`, until it stops.
    async fn read_all(input: Vec<u8>, limits: Limits) -> Vec<Inbound> {
        let (tx, mut rx) = mpsc::channel(1);
        let reader = tokio::spawn(read_messages(std::io::Cursor::new(input), tx, limits));
        let mut seen = Vec::new();
        while let Some(inbound) = rx.recv().await {
            seen.push(inbound);
        }
        reader.await.unwrap();
        seen
    }

    fn summary(seen: &[Inbound]) -> Vec<String> {
        seen.iter()
            .map(|i| match i {
                Inbound::Message { text, data, .. } => {
                    format!("{}:{}", if *text { "text" } else { "binary" }, data.len())
                }
                Inbound::Ping(p) => format!("ping:{}", p.len()),
                Inbound::Close(code) => format!("close:{code:?}"),
                Inbound::Violation(v) => format!("violation:{}", v.code),
                Inbound::Idle => "idle".into(),
                Inbound::Gone => "gone".into(),
            })
            .collect()
    }

    #[tokio::test]
    async fn fragments_are_assembled_with_control_frames_between() {
        let mut input = masked(0x01, "h\u{e9}".as_bytes()[..2].as_ref(), [9, 8, 7, 6]);
        input.extend(masked(0x89, b"hi", [1, 1, 1, 1]));
        input.extend(masked(0x80, &"h\u{e9}llo".as_bytes()[2..], [5, 5, 5, 5]));
        input.extend(masked(0x88, &1000u16.to_be_bytes(), [0; 4]));
        let seen = read_all(input, limits(MESSAGE_MEMORY)).await;
        assert_eq!(summary(&seen), ["ping:2", "text:6", "close:Some(1000)"]);
        let Inbound::Message { data, .. } = &seen[1] else {
            unreachable!()
        };
        assert_eq!(data, "h\u{e9}llo".as_bytes());
    }

    #[tokio::test]
    async fn the_limit_is_on_the_whole_message() {
        let exactly: Vec<u8> = (0..16)
            .flat_map(|i| {
                masked(
                    if i == 15 {
                        0x80
                    } else if i == 0 {
                        0x02
                    } else {
                        0x00
                    },
                    &[1; 4096],
                    [3; 4],
                )
            })
            .collect();
        let seen = read_all(exactly, limits(MESSAGE_MEMORY)).await;
        assert_eq!(summary(&seen), ["binary:65536", "gone"]);
        let over: Vec<u8> = (0..17)
            .flat_map(|i| masked(if i == 0 { 0x02 } else { 0x00 }, &[1; 4096], [3; 4]))
            .collect();
        assert_eq!(
            summary(&read_all(over, limits(MESSAGE_MEMORY)).await),
            ["violation:1009"]
        );
    }

    #[tokio::test]
    async fn messages_out_of_order_and_bad_text_are_refused() {
        let orphan = masked(0x80, b"x", [0; 4]);
        assert_eq!(
            summary(&read_all(orphan, limits(1024)).await),
            ["violation:1002"]
        );
        let mut nested = masked(0x01, b"a", [0; 4]);
        nested.extend(masked(0x81, b"b", [0; 4]));
        assert_eq!(
            summary(&read_all(nested, limits(1024)).await),
            ["violation:1002"]
        );
        let bad_text = masked(0x81, &[0xC3, 0x28], [0; 4]);
        assert_eq!(
            summary(&read_all(bad_text, limits(1024)).await),
            ["violation:1007"]
        );
    }

    #[tokio::test]
    async fn a_payload_that_is_itself_a_frame_stays_a_payload() {
        let inner = masked(0x81, b"smuggled", [4, 3, 2, 1]);
        let outer = masked(0x82, &inner, [7; 4]);
        let seen = read_all(outer, limits(1024)).await;
        assert_eq!(
            summary(&seen),
            [format!("binary:{}", inner.len()), "gone".into()]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_does_not_fit_the_budget_waits_then_times_out() {
        let frame = masked(0x82, &[0; 2048], [0; 4]);
        // The budget has room for 1 KiB only: the frame waits for room until its deadline.
        let seen = read_all(frame, limits(1024)).await;
        assert_eq!(summary(&seen), ["violation:1008"]);
    }

    #[tokio::test]
    async fn held_bytes_go_back_to_the_budget_when_the_message_is_dropped() {
        let budget = limits(MESSAGE_MEMORY);
        let shared = Arc::clone(&budget.budget);
        let seen = read_all(masked(0x82, &[0; 3000], [0; 4]), budget).await;
        assert_eq!(shared.available_permits(), MESSAGE_MEMORY - 3000);
        drop(seen);
        assert_eq!(shared.available_permits(), MESSAGE_MEMORY);
    }
}
