"""Several replicas behave as one server: what one learns (a key, a revocation, a limit
taken, money spent, a batch claimed) every other one honours."""

import concurrent.futures
import time
from datetime import datetime, timedelta, timezone

import anthropic
import httpx
import pytest

from cluster import MODEL, Cluster

# $1,000 per million tokens: a few tokens cost a measurable fraction of a cent.
CONFIG = """
[rate_limits.workspaces.limited]
requests_per_minute = 60
[prices.default]
input = 1000.0
output = 1000.0
[spend_limits.workspaces]
capped = 0.10
"""


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(3, CONFIG)
    yield cluster
    cluster.stop()


def ask(client, text="Say hi.", max_tokens=3):
    return client.messages.create(
        model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": text}]
    )


def status_of(client):
    try:
        ask(client, max_tokens=1)
        return 200
    except anthropic.APIStatusError as err:
        return err.status_code


def test_a_key_created_on_one_replica_works_on_all_and_revocation_reaches_all_within_a_second(cluster):
    key = cluster.create_key("default", "roaming")
    for replica in cluster.replicas:
        assert ask(replica.client(key)).stop_reason in ("end_turn", "max_tokens"), replica.name
    kid = cluster.key_id("roaming")
    revoked = cluster.replicas[1].admin("POST", f"/v1/organizations/api_keys/{kid}", json={"status": "inactive"})
    assert revoked.status_code == 200, revoked.text
    at = time.monotonic()
    pending = set(range(len(cluster.replicas)))
    while pending and time.monotonic() - at < 1.0:
        for i in list(pending):
            if status_of(cluster.replicas[i].client(key)) == 401:
                pending.discard(i)
    assert not pending, f"still accepted after 1 s on {[cluster.replicas[i].name for i in pending]}"


def test_a_workspace_limit_holds_across_replicas(cluster):
    key = cluster.create_key("limited", "burst")
    clients = [r.client(key) for r in cluster.replicas]

    def one(i):
        try:
            ask(clients[i % len(clients)], max_tokens=1)
            return "ok"
        except anthropic.RateLimitError as err:
            assert "60 requests per minute" in err.message, err.message
            return "limited"
        except anthropic.APIStatusError as err:
            return f"status {err.status_code}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(one, range(200)))
    ok = answers.count("ok")
    limited = answers.count("limited")
    assert ok <= 60 + 3, f"{ok} of 200 passed a limit of 60 per minute"
    assert limited >= 200 - 63, answers
    assert ok >= 30, f"only {ok} got through: {set(answers)}"


def test_a_spend_cap_stops_traffic_on_every_replica(cluster):
    key = cluster.create_key("capped", "spender")
    clients = [r.client(key) for r in cluster.replicas]
    refused_on = None
    for n in range(200):
        try:
            ask(clients[n % 3], "Write a long sentence about otters.", max_tokens=20)
        except anthropic.BadRequestError as err:
            assert "usage limits" in err.message, err.message
            refused_on = n % 3
            break
    assert refused_on is not None, "the cap never tripped"
    for client in clients:
        with pytest.raises(anthropic.BadRequestError, match="usage limits"):
            ask(client)


def since(hours):
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_reports_read_from_any_replica_equal_what_clients_received(cluster):
    key = cluster.create_key("reports", "counted")
    received = dict(input=0, output=0)
    for i, replica in enumerate(cluster.replicas * 2):
        usage = ask(replica.client(key), f"Name a number above {i}.", max_tokens=4).usage
        received["input"] += usage.input_tokens
        received["output"] += usage.output_tokens
    kid = cluster.key_id("counted")
    for replica in cluster.replicas:
        report = replica.admin(
            "GET",
            "/v1/organizations/usage_report/messages",
            params={"starting_at": since(2), "bucket_width": "1h", "api_key_ids[]": [kid]},
        ).json()
        totals = dict(input=0, output=0)
        for bucket in report["data"]:
            for row in bucket["results"]:
                totals["input"] += row["uncached_input_tokens"]
                totals["output"] += row["output_tokens"]
        assert totals == received, replica.name
        cost = replica.admin(
            "GET",
            "/v1/organizations/cost_report",
            params={"starting_at": since(24), "group_by[]": ["workspace_id"]},
        ).json()
        workspaces = replica.admin("GET", "/v1/organizations/workspaces", params={"limit": 1000}).json()["data"]
        wid = next(w["id"] for w in workspaces if w["name"] == "reports")
        billed = sum(
            float(row["amount"]) for bucket in cost["data"] for row in bucket["results"] if row["workspace_id"] == wid
        )
        # $1,000 per million: a tenth of a cent per token, reported in cents.
        assert abs(billed - (received["input"] + received["output"]) * 0.1) < 0.01, (replica.name, billed)


def finished(cluster, batch_id):
    return int(cluster.query(
        f"SELECT count(*) FROM batch_requests WHERE batch_id = '{batch_id}' AND result_type IS NOT NULL"
    ))


def test_a_batch_completes_exactly_once_while_a_replica_is_killed_twice(cluster):
    key = cluster.create_key("batches", "batcher")
    first, victim, _ = cluster.replicas
    client = anthropic.Anthropic(base_url=first.url, api_key=key, max_retries=3)
    requests = [
        {"custom_id": f"req-{i}", "params": {"model": MODEL, "max_tokens": 2,
                                             "messages": [{"role": "user", "content": f"Say {i}."}]}}
        for i in range(300)
    ]
    batch = client.messages.batches.create(requests=requests)
    for kill in (60, 160):
        deadline = time.time() + 600
        while finished(cluster, batch.id) < kill and time.time() < deadline:
            time.sleep(0.2)
        victim.kill9()
        victim.start()
    # Cancel and results work from any replica: read them from the one that was killed.
    watcher = anthropic.Anthropic(base_url=victim.url, api_key=key, max_retries=3)
    deadline = time.time() + 900
    while watcher.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.time() < deadline, f"{finished(cluster, batch.id)} of 300 after 15 min"
        time.sleep(1)
    results = list(watcher.messages.batches.results(batch.id))
    ids = [r.custom_id for r in results]
    assert len(ids) == 300 and len(set(ids)) == 300, "a request has no result or two"
    assert all(r.result.type == "succeeded" for r in results), {r.result.type for r in results}
    rows = cluster.query("SELECT count(*) FROM usage_ledger WHERE service_tier = 'batch'")
    assert int(rows) == 300, f"{rows} ledger rows for 300 batch requests"


def test_cancel_from_another_replica_ends_the_batch(cluster):
    key = cluster.create_key("batches", "canceler")
    requests = [
        {"custom_id": f"c-{i}", "params": {"model": MODEL, "max_tokens": 2,
                                           "messages": [{"role": "user", "content": "Hi."}]}}
        for i in range(100)
    ]
    batch = cluster.replicas[0].client(key).messages.batches.create(requests=requests)
    canceled = cluster.replicas[2].client(key).messages.batches.cancel(batch.id)
    assert canceled.processing_status == "canceling"
    deadline = time.time() + 120
    while True:
        seen = cluster.replicas[1].client(key).messages.batches.retrieve(batch.id)
        if seen.processing_status == "ended":
            break
        assert time.time() < deadline, seen
        time.sleep(0.5)
    counts = seen.request_counts
    assert counts.canceled > 0 and counts.canceled + counts.succeeded == 100, counts


def test_without_redis_replicas_refuse_as_documented_and_recover_when_it_returns(cluster):
    key = cluster.create_key("default", "outage")
    clients = [r.client(key) for r in cluster.replicas]
    assert all(status_of(c) == 200 for c in clients)
    cluster.kill_redis()
    try:
        # [coordination] when_unreachable = "refuse" (the default): a retryable 529, once
        # the replica's stock of tokens Redis granted (at most 1 s old) is gone.
        for replica, client in zip(cluster.replicas, clients):
            deadline = time.time() + 2
            while (status := status_of(client)) == 200:
                assert time.time() < deadline, f"{replica.name} still admits without Redis"
                time.sleep(0.1)
            with pytest.raises(anthropic.APIStatusError) as refused:
                ask(client, max_tokens=1)
            assert status == refused.value.status_code == 529, replica.name
            assert refused.value.body["error"]["type"] == "overloaded_error"
            ready = httpx.get(replica.url + "/ready", timeout=5)
            assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "failing"
    finally:
        cluster.start_redis()
    # Back without restarting any replica (spend is reseeded from the ledger).
    for replica, client in zip(cluster.replicas, clients):
        deadline = time.time() + 10
        while status_of(client) != 200:
            assert time.time() < deadline, f"{replica.name} did not recover"
            time.sleep(0.2)
        assert httpx.get(replica.url + "/ready", timeout=5).status_code == 200


def test_a_file_uploaded_through_one_replica_is_read_through_another(cluster):
    key = cluster.create_key("files", "uploader")
    uploaded = httpx.post(
        cluster.replicas[0].url + "/v1/files",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01", "anthropic-beta": "files-api-2025-04-14"},
        files={"file": ("note.txt", b"otters hold hands", "text/plain")},
        timeout=30,
    )
    assert uploaded.status_code == 200, uploaded.text
    file_id = uploaded.json()["id"]
    answer = cluster.replicas[2].client(key).messages.create(
        model=MODEL, max_tokens=3,
        messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "file", "file_id": file_id}},
            {"type": "text", "text": "What do otters hold?"}]}],
        extra_headers={"anthropic-beta": "files-api-2025-04-14"},
    )
    assert answer.usage.input_tokens > 10
    listed = httpx.get(cluster.replicas[1].url + "/v1/files", headers={
        "x-api-key": key, "anthropic-version": "2023-06-01", "anthropic-beta": "files-api-2025-04-14"}, timeout=30)
    assert [f["id"] for f in listed.json()["data"]] == [file_id]


def test_with_local_limits_a_replica_keeps_serving_and_limiting_without_redis():
    cluster = Cluster(1, "[rate_limits.workspaces.small]\nrequests_per_minute = 3\n", 'when_unreachable = "local"')
    try:
        client = cluster.replicas[0].client(cluster.create_key("small", "local"))
        assert status_of(client) == 200
        cluster.kill_redis()
        # This replica's own buckets carry on from the levels Redis last reported: two left.
        assert [status_of(client) for _ in range(3)] == [200, 200, 429]
        ready = httpx.get(cluster.replicas[0].url + "/ready", timeout=5).json()
        assert ready["checks"]["redis"] == "failing"
    finally:
        cluster.stop()
