"""Message Batches, Files and documents through the official SDK: the batch lifecycle,
cancel, delete; files upload/list/retrieve/download/delete; a message that cites a PDF
uploaded as a file; workspaces kept apart."""

import io
import time

import anthropic
import httpx
import pytest

from conftest import API_KEY, SDK_MAJOR, Missive, sampling
from pdf import make_pdf

MODEL = "claude-haiku-4-5"
CONFIG = """
[files]
downloadable_uploads = true
"""


@pytest.fixture(scope="module")
def server():
    s = Missive(CONFIG).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)


def batches(client):
    return client.messages.batches if SDK_MAJOR >= 1 else client.beta.messages.batches


def files(client):
    return client.files if SDK_MAJOR >= 1 else client.beta.files


def params(text, max_tokens=4):
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}], "temperature": 0}


def wait_ended(client, batch_id, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        batch = batches(client).retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} did not end")


def test_a_batch_runs_to_results(client):
    requests = [{"custom_id": f"q-{i}", "params": params(f"Say the number {i}.")} for i in range(4)]
    requests.append({"custom_id": "bad", "params": {"model": MODEL, "messages": []}})
    batch = batches(client).create(requests=requests)
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 5
    ended = wait_ended(client, batch.id)
    assert ended.request_counts.succeeded == 4 and ended.request_counts.errored == 1
    assert ended.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")
    results = {r.custom_id: r.result for r in batches(client).results(batch.id)}
    assert set(results) == {f"q-{i}" for i in range(4)} | {"bad"}
    ok = results["q-0"]
    assert ok.type == "succeeded"
    assert ok.message.usage.service_tier == "batch"
    assert ok.message.content[0].type == "text"
    assert results["bad"].type == "errored"
    assert "max_tokens" in results["bad"].error.error.message
    listed = [b.id for b in batches(client).list(limit=100)]
    assert batch.id in listed
    deleted = batches(client).delete(batch.id)
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        batches(client).retrieve(batch.id)


def test_a_batch_canceled_mid_run_ends_with_canceled_requests(client):
    requests = [{"custom_id": f"c-{i}", "params": params(f"Write a long story number {i}.", 64)} for i in range(30)]
    batch = batches(client).create(requests=requests)
    time.sleep(1)
    with pytest.raises(anthropic.BadRequestError):
        batches(client).delete(batch.id)  # not ended yet
    canceling = batches(client).cancel(batch.id)
    assert canceling.processing_status in ("canceling", "ended")
    assert canceling.cancel_initiated_at is not None
    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert counts.canceled > 0
    assert counts.succeeded + counts.canceled + counts.errored == 30
    assert counts.processing == 0
    kinds = [r.result.type for r in batches(client).results(batch.id)]
    assert len(kinds) == 30 and kinds.count("canceled") == counts.canceled
    batches(client).delete(batch.id)


def test_bad_batches_are_refused_whole_or_per_request(client, server):
    with pytest.raises(anthropic.BadRequestError) as dup:
        batches(client).create(requests=[{"custom_id": "x", "params": params("a")}, {"custom_id": "x", "params": params("b")}])
    assert "`x`" in dup.value.message
    streaming = dict(params("hi"), stream=True)
    batch = batches(client).create(requests=[{"custom_id": "s", "params": streaming}])
    ended = wait_ended(client, batch.id, timeout=30)
    assert ended.request_counts.errored == 1
    [result] = list(batches(client).results(batch.id))
    assert "stream" in result.result.error.error.message


def test_files_upload_list_retrieve_download_delete(client):
    body = b"Missive keeps files on disk.\n" * 100
    uploaded = files(client).upload(file=("notes.txt", io.BytesIO(body), "text/plain"))
    assert uploaded.id.startswith("file_") and uploaded.type == "file"
    assert uploaded.size_bytes == len(body) and uploaded.filename == "notes.txt"
    assert uploaded.mime_type == "text/plain"
    assert uploaded.id in [f.id for f in files(client).list()]
    meta = files(client).retrieve_metadata(uploaded.id)
    assert meta.size_bytes == len(body)
    assert files(client).download(uploaded.id).read() == body
    assert files(client).delete(uploaded.id).type == "file_deleted"
    with pytest.raises(anthropic.NotFoundError):
        files(client).retrieve_metadata(uploaded.id)


def test_a_message_cites_a_pdf_uploaded_as_a_file(client):
    pdf = make_pdf(
        [
            "Missive field manual. The Zephyr engine was designed in 1987 by Ada Ortiz.",
            "Maintenance. The Zephyr engine must be cleaned every 300 hours of running.",
        ]
    )
    uploaded = files(client).upload(file=("manual.pdf", io.BytesIO(pdf), "application/pdf"))
    create = client.messages.create if SDK_MAJOR >= 1 else client.beta.messages.create
    extra = {} if SDK_MAJOR >= 1 else {"betas": ["files-api-2025-04-14"]}
    message = create(
        model=MODEL,
        max_tokens=40,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "file", "file_id": uploaded.id},
                        "title": "Field manual",
                        "citations": {"enabled": True},
                    },
                    {"type": "text", "text": "How often must the Zephyr engine be cleaned? Answer in one sentence."},
                ],
            }
        ],
        **extra,
        **sampling(temperature=0),
    )
    cited = [c for block in message.content if block.type == "text" for c in (block.citations or [])]
    assert cited, message.content
    pages = ["Missive field manual. The Zephyr engine was designed in 1987 by Ada Ortiz.",
             "Maintenance. The Zephyr engine must be cleaned every 300 hours of running."]
    for c in cited:
        assert c.type == "page_location"
        assert c.document_index == 0 and c.document_title == "Field manual"
        assert c.cited_text in pages[c.start_page_number - 1]
        assert c.end_page_number == c.start_page_number + 1


def test_a_corrupt_pdf_and_a_foreign_file_are_400s(client, server):
    with pytest.raises(anthropic.BadRequestError) as corrupt:
        client.messages.create(
            model=MODEL,
            max_tokens=4,
            messages=[{"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQKZ2FyYmFnZQ=="}},
                {"type": "text", "text": "Summarise."},
            ]}],
        )
    assert "messages.0.content.0.source" in corrupt.value.message and "PDF" in corrupt.value.message
    # An image file on a text-only model is read as a placeholder, and the reply says so.
    png = files(client).upload(file=("pixel.png", io.BytesIO(b"\x89PNG\r\n\x1a\n"), "image/png"))
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=4,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": png.id}},
            {"type": "text", "text": "Describe it."},
        ]}],
    )
    assert raw.headers["x-missive-images"].startswith("replaced 1")
    # A file of another workspace is not found from this one.
    other_key = server.cli("keys", "create", "--workspace", "elsewhere")
    other = anthropic.Anthropic(base_url=server.url, api_key=other_key, max_retries=0)
    theirs = files(other).upload(file=("secret.txt", io.BytesIO(b"theirs"), "text/plain"))
    with pytest.raises(anthropic.NotFoundError):
        files(client).retrieve_metadata(theirs.id)
    with pytest.raises(anthropic.BadRequestError) as foreign:
        client.messages.create(
            model=MODEL,
            max_tokens=4,
            messages=[{"role": "user", "content": [
                {"type": "document", "source": {"type": "file", "file_id": theirs.id}},
                {"type": "text", "text": "Summarise."},
            ]}],
        )
    assert theirs.id in foreign.value.message
    # Their batches are invisible too.
    batch = batches(other).create(requests=[{"custom_id": "t", "params": params("hi")}])
    with pytest.raises(anthropic.NotFoundError):
        batches(client).retrieve(batch.id)
    assert batch.id not in [b.id for b in batches(client).list(limit=100)]
