"""A batch survives `kill -9`: 200 requests, the server killed twice mid-run and restarted;
every request has exactly one result, the tallies agree, and each success is billed once."""

import time

import anthropic

from conftest import API_KEY, SDK_MAJOR, Missive

MODEL = "claude-haiku-4-5"
TOTAL = 200


def batches(client):
    return client.messages.batches if SDK_MAJOR >= 1 else client.beta.messages.batches


def finished(server, batch_id):
    return server.query(
        "SELECT count(*) FROM batch_requests WHERE batch_id = ? AND result_type IS NOT NULL", batch_id
    )[0][0]


def test_a_batch_survives_two_kill_9s():
    server = Missive().start()
    client = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=2)
    requests = [
        {
            "custom_id": f"r-{i:03d}",
            "params": {"model": MODEL, "max_tokens": 3, "temperature": 0,
                       "messages": [{"role": "user", "content": f"Reply with the number {i}."}]},
        }
        for i in range(TOTAL)
    ]
    batch = batches(client).create(requests=requests)
    progress = []
    for kill in (TOTAL // 4, TOTAL // 2):
        deadline = time.time() + 300
        while finished(server, batch.id) < kill and time.time() < deadline:
            time.sleep(0.1)
        server.kill9()
        progress.append(finished(server, batch.id))
        server.start()
    assert progress[0] >= TOTAL // 4 and progress[1] >= progress[0], progress
    assert progress[1] < TOTAL, "the second kill came after the batch had finished"

    deadline = time.time() + 600
    while time.time() < deadline:
        current = batches(client).retrieve(batch.id)
        if current.processing_status == "ended":
            break
        time.sleep(0.5)
    counts = current.request_counts
    assert current.processing_status == "ended"
    assert counts.processing == 0
    assert counts.succeeded + counts.errored + counts.canceled + counts.expired == TOTAL
    assert counts.succeeded == TOTAL, counts

    results = list(batches(client).results(batch.id))
    ids = [r.custom_id for r in results]
    assert len(ids) == TOTAL and len(set(ids)) == TOTAL, "a request has no result or two"
    assert set(ids) == {r["custom_id"] for r in requests}
    # Billed exactly once each: one batch-tier ledger row per success.
    rows = server.query("SELECT count(*) FROM usage_ledger WHERE service_tier = 'batch'")[0][0]
    assert rows == TOTAL
    server.stop()
