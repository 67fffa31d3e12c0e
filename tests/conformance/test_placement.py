"""Model placement settings (issue 20): the attention kernel and the KV cache's number
format reach llama.cpp, `/metrics` says where the layers run, and a combination llama.cpp
cannot load is refused at start with the reason."""

import subprocess

import anthropic

from conftest import API_KEY, BINARY, Missive, metrics, sampling


def test_flash_attention_with_a_q8_0_cache_serves_and_reports_its_layers():
    server = Missive()
    server.env.update(MISSIVE_FLASH_ATTENTION="on", MISSIVE_KV_CACHE_TYPE="q8_0")
    server.start()
    try:
        client = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
        message = client.messages.create(
            model="claude-opus-4-8",
            max_tokens=40,
            messages=[{"role": "user", "content": "List the first five prime numbers."}],
            **sampling(temperature=0),
        )
        text = message.content[0].text
        assert all(p in text for p in ("2", "3", "5", "7", "11")), text
        layers = {
            line.split('device="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics(server.url).splitlines()
            if line.startswith("missive_model_layers{")
        }
        # Qwen2.5 0.5B has 24 layers; this build has no GPU backend, so all run on the CPU.
        assert layers == {"cpu": 24.0, "gpu": 0.0}, layers
        log = open(f"{server.home}/serve.log").read()
        assert 'flash_attention=On' in log and 'kv_cache_type="q8_0"' in log
    finally:
        server.stop()


def test_a_quantised_cache_without_flash_attention_is_refused_at_start():
    server = Missive()
    server.env.update(MISSIVE_FLASH_ATTENTION="off", MISSIVE_KV_CACHE_TYPE="q4_0")
    done = subprocess.run([BINARY, "serve"], env=server.env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert 'kv_cache_type = "q4_0" needs flash attention' in done.stderr, done.stderr
