//! Content capture, opt-in per workspace (`capture_content_days`, set in the console): the
//! body of each Messages request and the message it got back, redacted as the policy guard
//! redacts (cards, IBANs, emails, phone numbers), kept with the request log's row until
//! the workspace's retention period ends. Workspaces that do not opt in keep metadata only.

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use missive_protocol::StreamEvent;
use missive_store::CapturedContent;

use crate::access::AccessSlot;

/// The most of either side kept; a request full of documents is cut, and says so.
const MAX_BYTES: usize = 1024 * 1024;
const DAY_MS: i64 = 86_400_000;

/// A request's content on its way to the request log.
#[derive(Debug, Clone)]
pub struct Captured {
    request: String,
    response: String,
    days: u32,
}

impl Captured {
    /// The row the store keeps, expiring `days` after the request.
    pub fn keep(self, request_id: &str, workspace_id: &str, at_ms: i64) -> CapturedContent {
        CapturedContent {
            request_id: request_id.to_owned(),
            workspace_id: workspace_id.to_owned(),
            at_ms,
            expires_at_ms: at_ms.saturating_add(i64::from(self.days) * DAY_MS),
            request: self.request,
            response: self.response,
        }
    }
}

/// `text` redacted, and cut at `MAX_BYTES`.
fn redacted(text: &str) -> String {
    let mut actions = crate::policy::Actions::default();
    let mut out = crate::policy::redact(text, &mut actions);
    if out.len() > MAX_BYTES {
        let mut cut = MAX_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("…[truncated]");
    }
    out
}

/// Passes `events` through unchanged, and hands the request and the final message to
/// `slot` when the message stops (or the stream is dropped, for a client that left).
pub fn tap(
    events: BoxStream<'static, StreamEvent>,
    request: &[u8],
    days: u32,
    slot: AccessSlot,
) -> BoxStream<'static, StreamEvent> {
    let mut tap = Tap {
        seen: Vec::new(),
        request: Some(redacted(&String::from_utf8_lossy(request))),
        days,
        slot,
    };
    events
        .map(move |event| {
            tap.see(&event);
            event
        })
        .boxed()
}

struct Tap {
    seen: Vec<StreamEvent>,
    /// Taken when the capture is handed over, so it is handed over once.
    request: Option<String>,
    days: u32,
    slot: AccessSlot,
}

impl Tap {
    fn see(&mut self, event: &StreamEvent) {
        if self.request.is_none() {
            return;
        }
        self.seen.push(event.clone());
        if matches!(event, StreamEvent::MessageStop) {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        let Some(request) = self.request.take() else {
            return;
        };
        let seen = futures::stream::iter(std::mem::take(&mut self.seen));
        // The events are all here: folding them never waits.
        let response = match crate::sse::collect(seen).now_or_never() {
            Some(Ok(message)) => serde_json::to_string(&message).unwrap_or_default(),
            Some(Err(err)) => serde_json::json!({"error": err.message}).to_string(),
            None => String::new(),
        };
        self.slot.capture(Captured {
            request,
            response: redacted(&response),
            days: self.days,
        });
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.hand_over();
    }
}
