"""``arealnb.serve``: real ``vllm serve`` processes with the tiny policy: health-checked start, completions with
token ids and log-probs, vLLM's RL pause/resume endpoints, and nothing left behind after stop or a failed start."""

from __future__ import annotations

import json
import os
import socket
import urllib.error

import pytest

from arealnb.errors import ConfigError
from arealnb.serve import ServerStartError, VLLMServer, start_servers

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _shm_files() -> set[str]:
    return {f.path for f in os.scandir("/dev/shm")} if os.path.isdir("/dev/shm") else set()


def test_two_servers_serve_the_policy_and_leave_nothing_behind(tiny_policy):
    shm_before = _shm_files()
    servers = start_servers(tiny_policy, 2)
    try:
        assert len({s.port for s in servers}) == 2
        pgids, rpcs = [s.proc.pid for s in servers], [s._rpc_dir for s in servers]
        for s in servers:
            assert s.request("GET", "/v1/models")["data"][0]["id"] == "policy"
            r = s.request("POST", "/v1/completions", {"model": "policy", "prompt": [3, 4, 5], "max_tokens": 5,
                                                         "temperature": 1.0, "seed": 7, "logprobs": 0,
                                                         "ignore_eos": True, "return_tokens_as_token_ids": True})
            lp = r["choices"][0]["logprobs"]
            assert len(lp["tokens"]) == 5 and all(t.startswith("token_id:") for t in lp["tokens"])
            assert all(v <= 0.0 for v in lp["token_logprobs"])
        s = servers[0]
        assert s.request("GET", "/is_paused") == {"is_paused": False}        # dev-mode RL endpoints are on
        s.request("POST", "/pause?mode=keep")
        assert s.request("GET", "/is_paused") == {"is_paused": True}
        assert servers[1].request("GET", "/is_paused") == {"is_paused": False}
        s.request("POST", "/resume")
        assert s.request("GET", "/is_paused") == {"is_paused": False}
    finally:
        for s in servers:
            s.stop()
    for s, pgid, rpc in zip(servers, pgids, rpcs, strict=True):
        assert not _group_alive(pgid), "a process of a server's group survived stop()"
        assert not _port_open(s.port) and not os.path.exists(rpc)
        assert s.log_path.is_file() and not s.alive()
    assert not _shm_files() - shm_before, "a server left shared-memory files in /dev/shm"
    servers[0].stop()                                                         # idempotent


def test_a_server_that_cannot_start_says_why_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    s = VLLMServer(bad, startup_timeout=240)
    with pytest.raises(ServerStartError, match="exited with code") as e:
        s.start()
    assert str(s.log_path) in str(e.value) and "no-such-architecture" in str(e.value)
    assert not _group_alive(s.proc.pid) and not _port_open(s.port)


def test_bad_arguments_are_refused_before_anything_starts(tmp_path, tiny_policy):
    with pytest.raises(ConfigError, match="not a model folder"):
        VLLMServer(tmp_path)
    with pytest.raises(ConfigError, match="dtype"):
        VLLMServer(tiny_policy, dtype="float8")
    with pytest.raises(ConfigError, match="kv_cache_bytes"):
        VLLMServer(tiny_policy, kv_cache_bytes=0)
    with pytest.raises(ConfigError, match="servers"):
        start_servers(tiny_policy, 0)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        VLLMServer(tiny_policy).request("GET", "/health", timeout=2)       # never started: nothing listens
