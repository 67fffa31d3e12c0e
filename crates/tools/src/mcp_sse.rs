//! The MCP's older HTTP+SSE transport (protocol 2024-11-05), which `rmcp` no longer ships:
//! the client opens a `text/event-stream` with a GET, the server's first event
//! (`endpoint`) names where to POST messages, and every answer comes back on the stream
//! as a `message` event. Servers written before Streamable HTTP still speak only this.
//!
//! The POST endpoint must be on the origin that was checked and pinned: a server cannot
//! send the connector to another host.

use std::time::Duration;

use futures::StreamExt;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleClient;
use tokio::sync::mpsc;
use url::Url;

/// What went wrong on the wire, worded for the client's `mcp_tool_result`.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("the server refused the authorization token ({0})")]
    Unauthorized(u16),
    #[error("the server answered {0} to the event stream's GET")]
    Status(u16),
    #[error("the event stream ended before it named its message endpoint")]
    NoEndpoint,
    #[error("the message endpoint `{0}` is not on the server's own origin")]
    ForeignEndpoint(String),
    #[error("{0}")]
    Http(#[from] reqwest_mcp::Error),
    #[error("the server answered {0} to a message")]
    Rejected(u16),
}

/// An open HTTP+SSE session.
pub struct SseTransport {
    http: reqwest_mcp::Client,
    endpoint: Url,
    token: Option<String>,
    incoming: mpsc::Receiver<RxJsonRpcMessage<RoleClient>>,
    reader: tokio::task::JoinHandle<()>,
}

impl SseTransport {
    /// Opens the stream at `url` and waits (within `timeout`) for the message endpoint.
    pub async fn open(
        http: reqwest_mcp::Client,
        url: Url,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, SseError> {
        let mut get = http.get(url.clone()).header("accept", "text/event-stream");
        if let Some(token) = &token {
            get = get.bearer_auth(token);
        }
        let response = get.send().await?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            401 | 403 => return Err(SseError::Unauthorized(status)),
            _ => return Err(SseError::Status(status)),
        }
        let mut events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
        let first = tokio::time::timeout(timeout, async {
            while let Some(Ok(event)) = events.next().await {
                if event.event.as_deref() == Some("endpoint") {
                    return event.data;
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or(SseError::NoEndpoint)?;
        let endpoint = url
            .join(first.trim())
            .map_err(|_| SseError::ForeignEndpoint(first.clone()))?;
        if endpoint.origin() != url.origin() {
            return Err(SseError::ForeignEndpoint(endpoint.to_string()));
        }
        let (sender, incoming) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                if !matches!(event.event.as_deref(), None | Some("message")) {
                    continue;
                }
                let Some(data) = event.data else { continue };
                match serde_json::from_str(&data) {
                    Ok(message) => {
                        if sender.send(message).await.is_err() {
                            return;
                        }
                    }
                    Err(err) => tracing::debug!(%err, "an MCP SSE event that is not a message"),
                }
            }
        });
        Ok(Self {
            http,
            endpoint,
            token,
            incoming,
            reader,
        })
    }
}

impl Transport<RoleClient> for SseTransport {
    type Error = SseError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), SseError>> + Send + 'static {
        let mut post = self.http.post(self.endpoint.clone()).json(&item);
        if let Some(token) = &self.token {
            post = post.bearer_auth(token);
        }
        async move {
            let response = post.send().await?;
            match response.status().as_u16() {
                200..=299 => Ok(()),
                code @ (401 | 403) => Err(SseError::Unauthorized(code)),
                code => Err(SseError::Rejected(code)),
            }
        }
    }

    fn receive(
        &mut self,
    ) -> impl std::future::Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.reader.abort();
        Ok(())
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server whose event stream names `endpoint` as where to post messages.
    async fn stream_naming(endpoint: &'static str) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/sse", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
            let event = format!("event: endpoint\ndata: {endpoint}\n\n");
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(event.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        url
    }

    #[tokio::test]
    async fn a_message_endpoint_on_another_origin_is_refused() {
        let url = stream_naming("http://169.254.169.254/latest/meta-data").await;
        let opened = SseTransport::open(
            reqwest_mcp::Client::new(),
            url,
            None,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(opened, Err(SseError::ForeignEndpoint(_))));
    }

    #[tokio::test]
    async fn a_relative_message_endpoint_is_joined_to_the_stream_url() {
        let url = stream_naming("/messages/?session_id=abc").await;
        let opened = SseTransport::open(
            reqwest_mcp::Client::new(),
            url.clone(),
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(opened.endpoint.origin(), url.origin());
        assert_eq!(opened.endpoint.path(), "/messages/");
        assert_eq!(opened.endpoint.query(), Some("session_id=abc"));
    }
}
