"""Redis through Sentinels: the settings, the broker URL and transport options, the job store's client,
and the job store's Lua scripts on a Redis that has never seen them (a newly promoted master)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scalespace import ScalespaceError
from scalespace.config import Settings

SENTINELS = "s0.redis:26379, s1.redis:26380,[fd00::2]:26381"


@pytest.mark.parametrize("value", ["sentinel-0", "s0:port", "s0:0", "s0:70000", "redis://s0:26379", "s0:26379,:1"])
def test_a_bad_sentinel_list_names_the_setting_and_the_fix(value, monkeypatch):
    monkeypatch.setenv("SCALESPACE_REDIS_SENTINELS", value)
    with pytest.raises(ValidationError) as e:
        Settings()
    text = str(e.value)
    assert "SCALESPACE_REDIS_SENTINELS" in text and "host:port pairs, comma-separated" in text
    assert "sentinel-0:26379,sentinel-1:26379" in text  # an example of the right form


def test_sentinels_and_a_url_together_are_refused(monkeypatch):
    monkeypatch.setenv("SCALESPACE_REDIS_SENTINELS", "s0:26379")
    monkeypatch.setenv("SCALESPACE_REDIS_URL", "redis://r:6379/0")
    with pytest.raises(ValidationError) as e:
        Settings()
    text = str(e.value)
    assert "SCALESPACE_REDIS_URL and SCALESPACE_REDIS_SENTINELS are both set" in text and "unset one" in text
    assert e.value.errors()[0]["loc"] == ("redis_sentinels",)  # the command line names the setting from it
    monkeypatch.setenv("SCALESPACE_REDIS_URL", "")  # an empty URL (as a chart renders it) is no URL
    assert Settings().sentinel_hosts() == [("s0", 26379)]


def test_sentinel_hosts_parse_names_and_v6_addresses():
    s = Settings(redis_sentinels=SENTINELS)
    assert s.sentinel_hosts() == [("s0.redis", 26379), ("s1.redis", 26380), ("fd00::2", 26381)]
    assert Settings().sentinel_hosts() == [] and Settings(redis_sentinels=" , ").sentinel_hosts() == []
    with pytest.raises(ValidationError, match="redis_sentinel_master"):
        Settings(redis_sentinels="s0:26379", redis_sentinel_master="")


def test_the_broker_is_kombus_sentinel_transport():
    from scalespace.scheduler.infra import celery_broker
    from scalespace.scheduler.queues import celery_client

    s = Settings(redis_sentinels=SENTINELS, redis_sentinel_master="jobs", redis_password="p@ss:w/rd",
                 redis_sentinel_password="sentinel-pw", redis_db=3, visibility_timeout_s=600)
    url, options = celery_broker(s)
    assert url == ("sentinel://:p%40ss%3Aw%2Frd@s0.redis:26379/3;sentinel://:p%40ss%3Aw%2Frd@s1.redis:26380/3;"
                   "sentinel://:p%40ss%3Aw%2Frd@[fd00::2]:26381/3")
    conf = celery_client(s).conf
    assert conf.broker_url == url
    opts = conf.broker_transport_options
    assert opts["master_name"] == "jobs" and opts["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert opts["visibility_timeout"] == 600 and opts["queue_order_strategy"] == "priority"
    # kombu reads the Sentinels, the master's password and its database from that URL
    from kombu import Connection

    conn = Connection(url, transport_options=opts)
    assert conn.transport_cls == "sentinel" and [u.split("@")[1] for u in conn.alt] == \
        ["s0.redis:26379/3", "s1.redis:26380/3", "[fd00::2]:26381/3"]
    # no Sentinels: the plain URL, no sentinel options
    plain = celery_client(Settings(redis_url="redis://h:1/0")).conf
    assert plain.broker_url == "redis://h:1/0" and "master_name" not in plain.broker_transport_options
    no_pw = celery_broker(Settings(redis_sentinels="s0:26379"))
    assert no_pw == ("sentinel://s0:26379/0", {"master_name": "mymaster",
                                              "sentinel_kwargs": {"socket_timeout": 5, "socket_connect_timeout": 5}})


def test_the_job_store_client_asks_the_sentinels_for_the_master():
    from redis.sentinel import SentinelConnectionPool

    from scalespace.scheduler.infra import redis_client

    client = redis_client(Settings(redis_sentinels=SENTINELS, redis_sentinel_master="jobs", redis_password="pw",
                                   redis_sentinel_password="spw", redis_db=2), retries=8)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "jobs" and pool.is_master
    kwargs = pool.connection_kwargs
    assert kwargs["password"] == "pw" and kwargs["db"] == 2 and kwargs["decode_responses"] is True
    assert kwargs["retry"]._retries == 8
    sentinels = pool.sentinel_manager.sentinels
    assert [(c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
            for c in sentinels] == [("s0.redis", 26379), ("s1.redis", 26380), ("fd00::2", 26381)]
    assert all(c.connection_pool.connection_kwargs["password"] == "spw" for c in sentinels)


def test_the_apis_async_client_asks_the_same_sentinels_with_the_same_options():
    from redis.asyncio.sentinel import SentinelConnectionPool

    from scalespace.scheduler.infra import async_redis_client

    client = async_redis_client(Settings(redis_sentinels=SENTINELS, redis_sentinel_master="jobs", redis_password="pw",
                                         redis_sentinel_password="spw", redis_db=2))
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "jobs" and pool.is_master
    kwargs = pool.connection_kwargs
    assert kwargs["password"] == "pw" and kwargs["db"] == 2 and kwargs["decode_responses"] is True
    assert kwargs["socket_timeout"] == 15 and kwargs["retry"]._retries == 3
    sentinels = pool.sentinel_manager.sentinels
    assert [(c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
            for c in sentinels] == [("s0.redis", 26379), ("s1.redis", 26380), ("fd00::2", 26381)]
    assert all(c.connection_pool.connection_kwargs["password"] == "spw" for c in sentinels)
    plain = async_redis_client(Settings(redis_url="redis://h:7/3")).connection_pool.connection_kwargs
    assert (plain["host"], plain["port"], plain["db"]) == ("h", 7, 3)
    with pytest.raises(ScalespaceError, match="SCALESPACE_REDIS_URL"):
        async_redis_client(Settings(redis_url="redis://h:notaport/0"))


def test_the_apis_async_client_packs_in_c_byte_for_byte_as_redis_py_packs_in_python():
    """The API's connections (plain and Sentinel-managed) pack commands with hiredis: the same bytes as
    redis.asyncio's own Python packer for a submission's real arguments, and its refusal of None or bool."""
    import redis
    from redis.asyncio.connection import Connection
    from redis.asyncio.sentinel import SentinelManagedConnection
    from redis.exceptions import DataError

    from scalespace.scheduler.infra import async_redis_client
    from scalespace.scheduler.jobstore import JobStore

    plain = async_redis_client(Settings(redis_url="redis://h:7/3")).connection_pool.connection_class
    managed = async_redis_client(Settings(redis_sentinels=SENTINELS, redis_sentinel_master="jobs")
                                 ).connection_pool.connection_class
    assert issubclass(plain, Connection) and plain is not Connection
    assert issubclass(managed, SentinelManagedConnection) and managed is not SentinelManagedConnection

    # a submission's real argument list (nothing is sent: the client never connects)
    argv, _ = JobStore(redis.Redis(port=1))._submit_argv(
        "sample-1", {"kind": "sample", "n": 4, "note": "é ∑"}, kind="sample", spec_hash="h" * 64, lane="batch",
        limit=1000, deadline_s=12.5, idempotency_key="k-1", message=("scalespace.batch", '{"body": "x"}'))
    command = ("EVALSHA", "f" * 40, 3, "k1", "k2", "k3", *argv, 0.1, 2 ** 70, b"\x00\xff")
    ours, theirs = plain(), Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    assert len(command) > 40 and any(isinstance(a, float) for a in command)
    for bad in (None, True):
        with pytest.raises(DataError):
            ours.pack_command("SET", "k", bad)
        with pytest.raises(DataError):
            theirs.pack_command("SET", "k", bad)


def test_unreachable_sentinels_are_named_at_startup():
    from scalespace.scheduler.infra import redis_client, wait_for_redis

    s = Settings(redis_sentinels="127.0.0.1:1", redis_sentinel_master="jobs", redis_password="never-shown")
    with pytest.raises(ScalespaceError) as e:
        wait_for_redis(s, redis_client(s, retries=0), 0)
    text = str(e.value)
    assert "SCALESPACE_REDIS_SENTINELS=127.0.0.1:1" in text and "'jobs'" in text
    assert "SCALESPACE_REDIS_SENTINEL_MASTER" in text and "never-shown" not in text
    assert "no Sentinel answered with that master" in text and "redis.client" not in text  # no client repr


def test_job_store_scripts_run_on_a_redis_that_never_saw_them(settings):
    """A promoted replica has no cached scripts: the job store's transitions load them again (NOSCRIPT)."""
    from scalespace.scheduler.jobstore import JobStore

    js = JobStore.from_settings(settings)
    first = js.submit("job-a", {"kind": "sample"}, kind="sample", spec_hash="h", lane="batch", limit=-1)
    assert first.action == "created"
    js.r.script_flush()
    assert not any(js.r.script_exists(*[s.sha for s in js._scripts.values()]))
    assert js.submit("job-b", {"kind": "sample"}, kind="sample", spec_hash="h", lane="batch", limit=-1).action \
        == "created"
    assert js.begin("job-a", "w/1", "w", lease_s=5, max_attempts=3).action == "run"
    assert js.get("job-a").state == "running" and js.get("job-b").state == "queued"


def test_serve_uses_its_own_redis_even_with_sentinels_in_the_environment(monkeypatch):
    from scalespace.scheduler.serve import worker_env

    monkeypatch.setenv("SCALESPACE_REDIS_SENTINELS", "s0:26379")
    env = worker_env(Settings(), "unix:///tmp/r.sock", "/tmp/out")
    assert env["SCALESPACE_REDIS_SENTINELS"] == "" and env["SCALESPACE_REDIS_URL"] == "unix:///tmp/r.sock"
    for name, value in env.items():
        if name.startswith("SCALESPACE_"):
            monkeypatch.setenv(name, value)
    assert Settings().sentinel_hosts() == []  # the workers' settings are valid and use the socket


def test_the_readme_lists_the_redis_settings():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for field in ("redis_sentinels", "redis_sentinel_master", "redis_password", "redis_sentinel_password", "redis_db"):
        assert f"| `SCALESPACE_{field.upper()}` |" in readme, field
    assert "### Redis that fails over" in readme
