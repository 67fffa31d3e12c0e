//! Every response carries `request-id: req_…`; error bodies carry the same id. The id is
//! set for the request's task, so any `ApiError` can read it without plumbing.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id, when called inside a request.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = crate::ids::new_id("req");
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let (slot, started) = crate::access::start(&mut request);
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("request-id", value);
    }
    crate::access::finish(response, id, method, path, started, slot)
}
