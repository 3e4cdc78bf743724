//! The watch's I/O: the requests of a poll, a stream's connections and messages, the waits
//! between them and Ctrl-C. Each event is counted ([`super::summary`]), then shown
//! ([`super::screen`]).

use std::future::Future;
use std::io::Write;

use tokio::time::Instant;

use super::screen::Screen;
use super::summary::{Heard, Observation, StreamCount, StreamSummary, Summary};
use super::{clock_text, stamp, Settings, INTERVAL_RANGE};
use crate::client::{self, BodyRead, RequestError, Target};
use crate::stream::{End, Kind, OpenError, Stream};

/// Polls `target` every interval, showing each answer on `screen`.
pub(super) async fn poll(
    target: &Target,
    settings: &Settings,
    mut screen: Screen<impl Write>,
    interrupt: impl Future<Output = ()>,
) -> Summary {
    let mut summary = Summary::default();
    tokio::pin!(interrupt);
    // Requests start an interval apart. After an answer slower than the interval the next request
    // goes at once and the schedule restarts from it (tokio's `MissedTickBehavior::Delay`): no
    // burst of catch-up requests at a slow pod. `None`: the next slot is beyond the clock's
    // range, so no further request.
    let mut next = Some(Instant::now());
    while settings.count.is_none_or(|n| summary.requests < n) {
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut interrupt => break,
            () = wait => {}
        }
        next = next
            .map(|at| at.max(Instant::now()))
            .and_then(|at| at.checked_add(settings.interval));
        let time = settings.clock.now();
        let request = client::get_once(target, &settings.headers, settings.timeout, BodyRead::PAGE);
        let result = tokio::select! {
            biased;
            () = &mut interrupt => break,
            result = request => result,
        };
        let observation = match result {
            Ok(answer) => Observation {
                time: stamp(time),
                status: Some(answer.status),
                version: answer.version,
                pod_ip: answer.pod_ip.or(answer.pod),
                latency_ms: answer.latency.as_secs_f64() * 1e3,
                error: None,
            },
            Err(e) => Observation {
                time: stamp(time),
                status: None,
                version: None,
                pod_ip: None,
                latency_ms: (settings.clock.now() - time).as_seconds_f64() * 1e3,
                error: Some(e.to_string()),
            },
        };
        let new = summary.record(&observation, &clock_text(time));
        screen.answer(time, &observation, new);
    }
    screen.poll_summary(&summary);
    summary
}

/// Follows a stream at `target`, reconnecting whenever it ends, until `--count` messages or
/// `interrupt`, showing each event on `screen`. A connection still open then is dropped,
/// counted neither clean nor abnormal.
pub(super) async fn stream(
    kind: Kind,
    target: &Target,
    settings: &Settings,
    mut screen: Screen<impl Write>,
    interrupt: impl Future<Output = ()>,
) -> StreamSummary {
    let mut count = StreamCount::default();
    let wanted = |count: &StreamCount| settings.count.is_none_or(|n| count.summary.messages < n);
    let mut delay = settings.interval;
    tokio::pin!(interrupt);
    'watch: while wanted(&count) {
        let time = settings.clock.now();
        let open = tokio::time::timeout(
            settings.timeout,
            Stream::open(kind, target, &settings.headers),
        );
        let opened = tokio::select! {
            biased;
            () = &mut interrupt => break,
            opened = open => opened.unwrap_or_else(|_| {
                Err(OpenError::Request(RequestError::Timeout(settings.timeout)))
            }),
        };
        match opened {
            Err(error) => {
                let error = error.to_string();
                count.failed(time, &error);
                screen.failed(time, &error, delay);
            }
            Ok(mut stream) => {
                let connection = count.connected();
                screen.connected(time, stream.status(), connection);
                let end = loop {
                    if !wanted(&count) {
                        break 'watch;
                    }
                    let next = tokio::time::timeout(settings.idle_timeout, stream.next());
                    let next = tokio::select! {
                        biased;
                        () = &mut interrupt => break 'watch,
                        next = next => next,
                    };
                    match next {
                        Ok(Ok(Some(message))) => {
                            let heard = Heard::of(&message);
                            let time = settings.clock.now();
                            let counted = count.message(time, Instant::now(), &heard);
                            screen.message(time, &heard, &counted);
                        }
                        // A sign of life: a ping, a comment, part of a message.
                        Ok(Ok(None)) => {}
                        Ok(Err(end)) => break end,
                        Err(_) => {
                            break End::abnormal(format!(
                                "nothing received for {}",
                                testpage::duration::format(settings.idle_timeout)
                            ))
                        }
                    }
                };
                // An event stream's `retry:` sets the delay for this and every later connection,
                // as in a browser; within --interval's range, whatever the server says.
                if let Some(retry) = stream.retry() {
                    delay = retry.clamp(*INTERVAL_RANGE.start(), *INTERVAL_RANGE.end());
                }
                drop(stream);
                let time = settings.clock.now();
                count.ended(time, &end);
                screen.ended(time, &end, delay);
            }
        }
        tokio::select! {
            biased;
            () = &mut interrupt => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    screen.stream_summary(&count);
    count.summary
}
