//! Text out of PDFs, bounded in time and in how many are read at once. Documents in
//! requests and PDFs that `web_fetch` brings back both come through here.

use std::time::Duration;

use tokio::sync::Semaphore;

/// How long reading one PDF may take.
const TIME_LIMIT: Duration = Duration::from_secs(10);

/// PDFs read at once, server-wide: the reader runs on the blocking pool, and a time limit
/// cannot stop a thread that is already reading, so their number is bounded instead.
static READERS: Semaphore = Semaphore::const_new(2);

/// Text of each page of a PDF. The parser is not ours to trust with hostile input: a
/// panic inside it is a bad document, not a crashed request.
pub fn pages(bytes: &[u8]) -> Result<Vec<String>, String> {
    let bytes = bytes.to_vec();
    match std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem_by_pages(&bytes)) {
        Ok(Ok(pages)) if pages.iter().any(|p| !p.trim().is_empty()) => {
            Ok(pages.into_iter().map(|p| p.trim().to_owned()).collect())
        }
        Ok(Ok(_)) => Err("the PDF has no extractable text".to_owned()),
        Ok(Err(err)) => Err(format!("the PDF could not be read: {err}")),
        Err(_) => Err("the PDF could not be read: it is malformed".to_owned()),
    }
}

/// [`pages`] on the blocking pool, within [`TIME_LIMIT`].
pub async fn read(bytes: Vec<u8>) -> Result<Vec<String>, String> {
    let _permit = READERS
        .acquire()
        .await
        .map_err(|_| "the PDF reader is shutting down".to_owned())?;
    let reading = tokio::task::spawn_blocking(move || pages(&bytes));
    match tokio::time::timeout(TIME_LIMIT, reading).await {
        Ok(Ok(pages)) => pages,
        Ok(Err(_)) => Err("the PDF could not be read: it is malformed".to_owned()),
        Err(_) => Err(format!(
            "the PDF could not be read within {} s",
            TIME_LIMIT.as_secs()
        )),
    }
}
