//! Server-sent events from a byte stream: the `data:` payload of each event.

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

/// The `data:` payloads of an SSE body, joined per event. Bytes are buffered until an
/// event is whole, so a character split across chunks arrives intact.
pub fn data_events<S, E>(body: S) -> impl Stream<Item = Result<String, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    futures::stream::unfold(
        (body, Vec::<u8>::new(), false),
        |(mut body, mut buffer, mut done)| async move {
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
                match body.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(err)) => return Some((Err(err), (body, buffer, true))),
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
}
