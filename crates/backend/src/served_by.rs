//! Which upstream served a request: a backend that routes (a fallback chain) records the
//! member it chose; the server reads it back for the `x-missive-upstream` header. Scoped to
//! one dispatch, so concurrent requests never see each other's.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static SERVED_BY: RefCell<Option<String>>;
}

/// Runs `dispatch` and returns its output with the upstream it recorded, if any.
pub async fn capture<F: Future>(dispatch: F) -> (F::Output, Option<String>) {
    SERVED_BY
        .scope(RefCell::new(None), async {
            let output = dispatch.await;
            let name = SERVED_BY.with(|cell| cell.borrow_mut().take());
            (output, name)
        })
        .await
}

/// Records the upstream serving the current dispatch (no-op outside [`capture`]).
pub fn record(name: &str) {
    let _ = SERVED_BY.try_with(|cell| *cell.borrow_mut() = Some(name.to_owned()));
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn what_a_dispatch_records_comes_back_with_its_output() {
        let (out, name) = super::capture(async {
            super::record("a");
            7
        })
        .await;
        assert_eq!((out, name.as_deref()), (7, Some("a")));
        let (_, none) = super::capture(async {}).await;
        assert_eq!(none, None);
        super::record("outside: ignored");
    }
}
