//! Uploads bound themselves: multipart framing, fields beside `file`, the workspace quota
//! (issue 18).

use missive_server::FilesConfig;

use super::common::{hello, TestServer, KEY};

async fn upload(server: &TestServer, body: Vec<u8>) -> reqwest::Response {
    server
        .client
        .post(format!("{}/v1/files", server.url))
        .header("x-api-key", KEY)
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn file_part(name: &str, content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(b"\r\n--b0undary--\r\n");
    body
}

#[tokio::test]
async fn issue_18_a_preamble_that_never_reaches_a_part_is_refused() {
    let server = TestServer::start(hello()).await;
    let response = upload(&server, vec![b'x'; 8 << 20]).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bytes of multipart framing"),
        "{body}"
    );
}

#[tokio::test]
async fn issue_18_fields_beside_file_are_bounded() {
    let server = TestServer::start(hello()).await;
    let mut body = file_part("notes", &vec![b'n'; 1 << 20]);
    body.truncate(body.len() - b"--\r\n".len());
    body.extend_from_slice(&file_part("file", b"hello")[b"--b0undary".len()..]);
    let response = upload(&server, body).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn issue_18_a_workspace_cannot_upload_past_its_quota() {
    let server = TestServer::start_with(hello(), |state| {
        let mut files = FilesConfig::new(state.files.as_ref().unwrap().dir.clone());
        files.workspace_quota_bytes = 1000;
        state.with_files(files)
    })
    .await;
    let ok = upload(&server, file_part("file", &[b'a'; 600])).await;
    assert_eq!(ok.status(), 200);
    let over = upload(&server, file_part("file", &[b'a'; 600])).await;
    assert_eq!(over.status(), 413);
    let full = upload(&server, file_part("file", &[b'a'; 500])).await;
    assert_eq!(full.status(), 413, "400 of 1000 bytes were left");
    // What failed left nothing half-written behind.
    let dir = std::fs::read_dir(&server.files_dir).unwrap();
    assert!(dir
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().ends_with(".part")));
}
