//! Round trips of the reference's messages, content blocks and stream events: every
//! fixture parses into our types and serialises back to the same JSON (modulo fields the
//! reference marks optional that we always write, which are checked separately).

#[cfg(test)]
mod round_trip {
    use missive_protocol::stream::StreamEvent;
    use missive_protocol::{parse_messages_request, Message};
    use serde_json::Value;

    fn sse_frames(text: &str) -> Vec<(String, Value)> {
        text.split("\n\n")
            .filter(|f| !f.trim().is_empty())
            .map(|frame| {
                let name = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap()
                    .to_owned();
                let data = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                (name, serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    /// `ours` must contain everything in `theirs` with equal values (we may add fields the
    /// SDK types require, such as `citations: null`).
    fn assert_superset(theirs: &Value, ours: &Value, path: &str) {
        match (theirs, ours) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in a {
                    // Usage fields outside our usage model are informational.
                    if k == "inference_geo" {
                        continue;
                    }
                    let Some(o) = b.get(k) else {
                        panic!("{path}.{k} missing in {ours}")
                    };
                    assert_superset(v, o, &format!("{path}.{k}"));
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                assert_eq!(a.len(), b.len(), "{path}");
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    assert_superset(x, y, &format!("{path}[{i}]"));
                }
            }
            _ => assert_eq!(theirs, ours, "{path}"),
        }
    }

    fn round_trip_stream(fixture: &str) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        for (name, data) in sse_frames(fixture) {
            let event: StreamEvent = serde_json::from_value(data.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}: {data}"));
            assert_eq!(event.name(), name);
            let back = serde_json::to_value(&event).unwrap();
            assert_superset(&data, &back, &name);
            let framed = event.to_sse();
            assert!(
                framed.starts_with(&format!("event: {name}\ndata: {{")),
                "{framed}"
            );
            assert!(framed.ends_with("\n\n"));
            assert_eq!(framed.matches('\n').count(), 3, "one-line data: {framed}");
            events.push(event);
        }
        events
    }

    #[test]
    fn text_stream_fixture_round_trips() {
        let events = round_trip_stream(include_str!("fixtures/text_stream.sse"));
        assert_eq!(events.len(), 8);
    }

    #[test]
    fn tool_use_stream_fixture_round_trips() {
        let events = round_trip_stream(include_str!("fixtures/tool_use_stream.sse"));
        let partial: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ContentBlockDelta {
                    delta: missive_protocol::ContentBlockDelta::InputJsonDelta { partial_json },
                    ..
                } => Some(partial_json.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&partial).unwrap(),
            serde_json::json!({"location": "Paris"})
        );
    }

    #[test]
    fn thinking_citation_redacted_and_error_events_round_trip() {
        let events = round_trip_stream(include_str!("fixtures/thinking_stream.sse"));
        assert!(matches!(events.last(), Some(StreamEvent::Error { .. })));
    }

    #[test]
    fn message_with_every_response_block_round_trips() {
        let fixture: Value = serde_json::from_str(include_str!("fixtures/message.json")).unwrap();
        let message: Message = serde_json::from_value(fixture.clone()).unwrap();
        assert_eq!(message.content.len(), 4);
        let back = serde_json::to_value(&message).unwrap();
        assert_eq!(back, fixture);
    }

    #[test]
    fn request_with_every_request_block_parses_and_round_trips() {
        let text = include_str!("fixtures/request_blocks.json");
        let request = parse_messages_request(text.as_bytes()).unwrap();
        assert_eq!(request.messages.len(), 3);
        let back = serde_json::to_value(&request).unwrap();
        let fixture: Value = serde_json::from_str(text).unwrap();
        assert_superset(&fixture, &back, "request");
    }

    #[test]
    fn text_block_always_writes_citations_key() {
        let block = missive_protocol::ContentBlock::text("hi");
        assert_eq!(
            serde_json::to_string(&block).unwrap(),
            r#"{"type":"text","text":"hi","citations":null}"#
        );
    }

    mod fuzz {
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = missive_protocol::parse_messages_request(&bytes);
                let _ = missive_protocol::parse_count_tokens_request(&bytes);
            }

            #[test]
            fn truncated_valid_requests_are_errors_not_panics(cut in 0usize..2000) {
                let text = include_str!("fixtures/request_blocks.json");
                let cut = cut.min(text.len());
                if let Some(prefix) = text.get(..cut) {
                    let result = missive_protocol::parse_messages_request(prefix.as_bytes());
                    prop_assert!(cut == text.len() || result.is_err());
                }
            }
        }
    }
}
