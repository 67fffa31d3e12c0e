//! Server-sent events from a byte stream: the `data:` payload of each event.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};

fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    // Events end with a blank line; servers write "\n\n" or "\r\n\r\n".
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Longest an upstream may send nothing in the middle of a stream. Generous, since a
/// server may say nothing while it prefills a long prompt, but finite.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest event an upstream may send; a stream that never ends an event is cut here
/// instead of buffered without bound.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Why an upstream's event stream broke off.
#[derive(Debug, thiserror::Error)]
pub enum SseError<E> {
    #[error("{0}")]
    Body(E),
    #[error("no data for {} s", .0.as_secs())]
    Idle(Duration),
    #[error("an event longer than {0} bytes")]
    TooLarge(usize),
}

/// The `data:` payloads of an SSE body, joined per event. Bytes are buffered until an
/// event is whole, so a character split across chunks arrives intact.
pub fn data_events<S, E>(body: S) -> impl Stream<Item = Result<String, SseError<E>>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    data_events_within(body, IDLE_TIMEOUT, MAX_EVENT_BYTES)
}

/// [`data_events`] with the idle timeout and event size given.
pub fn data_events_within<S, E>(
    body: S,
    idle: Duration,
    max_event: usize,
) -> impl Stream<Item = Result<String, SseError<E>>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    futures::stream::unfold(
        (body, Vec::<u8>::new(), false),
        move |(mut body, mut buffer, mut done)| async move {
            loop {
                if let Some((at, len)) = event_end(&buffer) {
                    let event: Vec<u8> = buffer.drain(..at + len).collect();
                    let text = String::from_utf8_lossy(&event);
                    let data: Vec<&str> = text
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if data.is_empty() {
                        continue;
                    }
                    return Some((Ok(data.join("\n")), (body, buffer, done)));
                }
                if done {
                    return None;
                }
                if buffer.len() > max_event {
                    return Some((Err(SseError::TooLarge(max_event)), (body, Vec::new(), true)));
                }
                let next = match tokio::time::timeout(idle, body.next()).await {
                    Ok(next) => next,
                    Err(_) => return Some((Err(SseError::Idle(idle)), (body, buffer, true))),
                };
                match next {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(err)) => {
                        return Some((Err(SseError::Body(err)), (body, buffer, true)))
                    }
                    None => {
                        done = true;
                        buffer.extend_from_slice(b"\n\n");
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_split_anywhere_come_out_whole() {
        let body = "data: {\"a\":\"é\"}\n\ndata: [DONE]\r\n\r\n".as_bytes();
        // Split inside the two-byte é and inside the separator.
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::copy_from_slice(&body[..12])),
            Ok(Bytes::copy_from_slice(&body[12..17])),
            Ok(Bytes::copy_from_slice(&body[17..])),
        ];
        let events: Vec<String> = data_events(futures::stream::iter(chunks))
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(events, ["{\"a\":\"é\"}", "[DONE]"]);
    }

    #[tokio::test]
    async fn an_event_that_never_ends_is_cut_not_buffered() {
        let endless = futures::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Bytes::from_static(b"data: xxxxxxxx"))
        });
        let mut events = Box::pin(data_events_within(endless, Duration::from_secs(5), 1024));
        assert!(matches!(
            events.next().await,
            Some(Err(SseError::TooLarge(1024)))
        ));
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn a_silent_upstream_times_out() {
        let silent = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        let mut events = Box::pin(data_events_within(silent, Duration::from_millis(50), 1024));
        assert!(matches!(events.next().await, Some(Err(SseError::Idle(_)))));
    }
}
