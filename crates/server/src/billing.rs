//! Usage settles here, and only here: rate-limit reservations are replaced by what was
//! used, the spend hold by what it cost, the access log gets the counts, and the ledger a
//! durable row. A stream that ends normally settles on its final `message_delta`, before
//! that event is sent. A stream dropped earlier (the client went away, the backend failed)
//! settles what it had produced by then: the prompt as `message_start` reported it, and
//! one output token per content delta sent, which is how the engine and upstreams stream.

use futures::stream::BoxStream;
use futures::StreamExt;
use missive_protocol::context::IterationUsage;
use missive_protocol::stream::{ContentBlockDelta, StreamEvent};
use missive_protocol::usage::{MessageDeltaUsage, ServerToolUsage};
use missive_protocol::Usage;
use missive_store::{TokenCounts, UsageRecord};

use crate::access::AccessSlot;
use crate::admission::Hold;
use crate::error::ApiError;
use crate::limits::Reservation;
use crate::state::AppState;

/// What a generation owes once its usage is known.
pub struct Billing {
    pub state: AppState,
    pub hold: Hold,
    pub access: AccessSlot,
    /// The ledger row, but for its time and tokens.
    pub record: UsageRecord,
}

/// Token counts of one generation, wide enough that no upstream's numbers wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub input: u64,
    pub cache_read: u64,
    pub cache_creation_5m: u64,
    pub cache_creation_1h: u64,
    pub output: u64,
    pub web_search_requests: u64,
    pub web_fetch_requests: u64,
    pub code_execution_ms: u64,
}

impl Tally {
    pub fn of_usage(usage: &Usage) -> Self {
        let tools = usage.server_tool_use.unwrap_or_default();
        Self {
            input: usage.input_tokens.into(),
            cache_read: usage.cache_read_input_tokens.into(),
            cache_creation_5m: usage.cache_creation.ephemeral_5m_input_tokens.into(),
            cache_creation_1h: usage.cache_creation.ephemeral_1h_input_tokens.into(),
            output: usage.output_tokens.into(),
            web_search_requests: tools.web_search_requests.into(),
            web_fetch_requests: tools.web_fetch_requests.into(),
            code_execution_ms: tools.code_execution_ms,
        }
    }

    /// The final delta's counts, over what `message_start` said of the cache split.
    fn with_final(self, usage: &MessageDeltaUsage) -> Self {
        let mut settled = Self {
            output: usage.output_tokens.into(),
            ..self
        };
        if let Some(input) = usage.input_tokens {
            settled.input = input.into();
        }
        if let Some(read) = usage.cache_read_input_tokens {
            settled.cache_read = read.into();
        }
        if let Some(tools) = usage.server_tool_use {
            settled.web_search_requests = tools.web_search_requests.into();
            settled.web_fetch_requests = tools.web_fetch_requests.into();
            settled.code_execution_ms = tools.code_execution_ms;
        }
        // Upstreams that report the prompt only at the end give the writes as one total.
        if let Some(total) = usage.cache_creation_input_tokens.map(u64::from) {
            if total != settled.cache_creation_5m + settled.cache_creation_1h {
                settled.cache_creation_1h = settled.cache_creation_1h.min(total);
                settled.cache_creation_5m = total - settled.cache_creation_1h;
            }
        }
        settled
    }

    pub fn tokens(&self) -> TokenCounts {
        TokenCounts {
            uncached_input: self.input,
            cache_creation_5m: self.cache_creation_5m,
            cache_creation_1h: self.cache_creation_1h,
            cache_read: self.cache_read,
            output: self.output,
            web_search_requests: self.web_search_requests,
            web_fetch_requests: self.web_fetch_requests,
            code_execution_ms: self.code_execution_ms,
        }
    }
}

fn narrow(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Billing {
    /// Limits, spend and the access log; the ledger row is the caller's (batches write it
    /// with their result, in one transaction).
    pub fn settle_holds(&self, tally: &Tally) {
        let creation = tally
            .cache_creation_5m
            .saturating_add(tally.cache_creation_1h);
        // Cache reads do not count against the input-token limit.
        self.state.limits.settle(
            &self.hold.reservation,
            narrow(tally.input.saturating_add(creation)),
            narrow(tally.output),
        );
        self.access.usage(
            narrow(tally.input),
            narrow(tally.output),
            narrow(tally.cache_read),
            narrow(creation),
        );
        let tokens = tally.tokens();
        match &self.hold.spend {
            Some(hold) => self.state.spend.settle(hold, &tokens),
            None => self.state.spend.add(
                &self.record.workspace_id,
                &self.record.model,
                &self.record.service_tier,
                &tokens,
            ),
        }
    }

    /// The ledger row for `tally`, stamped now.
    pub fn record(&self, tally: &Tally) -> UsageRecord {
        UsageRecord {
            at_ms: crate::ids::now_ms(),
            tokens: tally.tokens(),
            ..self.record.clone()
        }
    }

    /// A step of the reply that its top-level usage leaves out (a compaction), if any:
    /// spent and written to the ledger as a row of its own, under the same request id. If
    /// the row cannot be written the reply does not start, and its holds are released.
    pub async fn charge(&self, step: Option<&IterationUsage>) -> Result<(), ApiError> {
        let Some(step) = step else {
            return Ok(());
        };
        let written = charge_step(&self.state, &self.record, step).await;
        if written.is_err() {
            self.settle_holds(&Tally::default());
        }
        written
    }

    /// Everything, the ledger row included; returns once the row is durable.
    pub async fn settle(self, tally: Tally) -> Result<(), ApiError> {
        self.settle_holds(&tally);
        let record = self.record(&tally);
        self.state.ledger.record(record).await
    }
}

/// Spends a step the reply's top-level usage leaves out, at its own model's price (an
/// advisor's), else the reply's, and writes its ledger row under the reply's request id.
async fn charge_step(
    state: &AppState,
    record: &UsageRecord,
    step: &IterationUsage,
) -> Result<(), ApiError> {
    let tally = Tally {
        input: step.input_tokens.into(),
        cache_read: step.cache_read_input_tokens.into(),
        cache_creation_5m: step.cache_creation.ephemeral_5m_input_tokens.into(),
        cache_creation_1h: step.cache_creation.ephemeral_1h_input_tokens.into(),
        output: step.output_tokens.into(),
        ..Tally::default()
    };
    let tokens = tally.tokens();
    let model = step.model.as_deref().unwrap_or(&record.model);
    state
        .spend
        .add(&record.workspace_id, model, &record.service_tier, &tokens);
    let row = UsageRecord {
        at_ms: crate::ids::now_ms(),
        model: model.to_owned(),
        tokens,
        ..record.clone()
    };
    state.ledger.record(row).await
}

/// Bills the steps a tool runs on another model as each ends (the advisor's answers), so
/// that a reply cut short has paid for the advice it was given. They count against the
/// workspace's token rate limits too, as the reply's own tokens do.
pub struct StepMeter {
    pub state: AppState,
    pub record: UsageRecord,
    /// The reply's rate-limit reservation: the buckets the steps are taken from.
    pub reservation: Reservation,
}

#[async_trait::async_trait]
impl missive_tools::Meter for StepMeter {
    async fn charge(&self, step: &IterationUsage) -> Result<(), String> {
        self.state.limits.charge_beyond(
            &self.reservation,
            step.input_tokens
                .saturating_add(step.cache_creation_input_tokens),
            step.output_tokens,
        );
        charge_step(&self.state, &self.record, step)
            .await
            .map_err(|err| err.message)
    }
}

/// Observes a response's events and settles its usage exactly once: on the final delta,
/// or with what was sent when the stream is dropped before it.
struct Meter {
    events: BoxStream<'static, StreamEvent>,
    billing: Option<Billing>,
    tally: Tally,
}

impl Drop for Meter {
    fn drop(&mut self) {
        let Some(billing) = self.billing.take() else {
            return;
        };
        let tally = self.tally;
        tracing::debug!(
            output = tally.output,
            "stream ended early; settling what was sent"
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(err) = billing.settle(tally).await {
                        tracing::error!(error = %err.message, "settling a dropped stream");
                    }
                });
            }
            Err(_) => billing.settle_holds(&tally),
        }
    }
}

/// `events`, with usage settled as the module describes.
pub fn metered(
    events: BoxStream<'static, StreamEvent>,
    billing: Billing,
) -> BoxStream<'static, StreamEvent> {
    let meter = Meter {
        events,
        billing: Some(billing),
        tally: Tally::default(),
    };
    futures::stream::unfold(meter, |mut meter| async move {
        let event = meter.events.next().await?;
        let event = match event {
            StreamEvent::MessageStart { message } => {
                meter.tally = Tally {
                    output: 0,
                    ..Tally::of_usage(&message.usage)
                };
                StreamEvent::MessageStart { message }
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                if matches!(
                    delta,
                    ContentBlockDelta::TextDelta { .. }
                        | ContentBlockDelta::ThinkingDelta { .. }
                        | ContentBlockDelta::InputJsonDelta { .. }
                ) {
                    meter.tally.output += 1;
                }
                StreamEvent::ContentBlockDelta { index, delta }
            }
            // A server tool's result: the call ran, and counts if the stream is dropped.
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let counted = ServerToolUsage::of_result(&content_block);
                meter.tally.web_search_requests += u64::from(counted.web_search_requests);
                meter.tally.web_fetch_requests += u64::from(counted.web_fetch_requests);
                StreamEvent::ContentBlockStart {
                    index,
                    content_block,
                }
            }
            StreamEvent::MessageDelta {
                delta,
                usage,
                context_management,
            } => {
                let settled = match meter.billing.take() {
                    Some(billing) => billing.settle(meter.tally.with_final(&usage)).await,
                    None => Ok(()),
                };
                match settled {
                    Ok(()) => StreamEvent::MessageDelta {
                        delta,
                        usage,
                        context_management,
                    },
                    Err(err) => StreamEvent::Error {
                        error: err.body().error,
                    },
                }
            }
            other => other,
        };
        Some((event, meter))
    })
    .boxed()
}
