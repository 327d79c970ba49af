"""Settings that choose the store, and the S3 store's keys and settings errors."""

from __future__ import annotations

import pytest

from scalespace import ScalespaceError
from scalespace.config import Settings
from scalespace.storage import LocalStore, S3Store, store_from_settings


def test_settings_lanes_and_store_choice(tmp_path):
    s = Settings(lane_limits="interactive=5,batch=7", api_token=" a, b ,", results_dir=str(tmp_path))
    assert s.lanes() == {"interactive": 5, "batch": 7} and s.api_tokens() == ["a", "b"]
    with pytest.raises(ValueError, match="SCALESPACE_LANE_LIMITS"):
        Settings(lane_limits="interactive=lots")
    assert isinstance(store_from_settings(s), LocalStore)
    s3 = store_from_settings(Settings(s3_endpoint="http://127.0.0.1:9", s3_bucket="bkt", s3_prefix="a/b"))
    assert isinstance(s3, S3Store) and s3.key("jobs", "j1", "x.npz") == "a/b/jobs/j1/x.npz"
    assert s3.location("models", "m1") == "s3://bkt/a/b/models/m1/"


@pytest.mark.parametrize("ident, name", [("../x", "a"), ("ok", "../a"), ("a/b", "c"), ("ok", ".hidden"), ("", "a"),
                                         ("ok", "attempt-0/a"), ("ok", "attempt-1/../a"), ("ok", "other/a"),
                                         ("ok", "attempt-1/attempt-2/a"), ("ok", "attempt-1/"), ("ok", "/a")])
def test_s3_keys_refuse_traversal(ident, name):
    store = S3Store("bkt", "p", "http://127.0.0.1:9", client=object())
    with pytest.raises(ScalespaceError):
        store.key("jobs", ident, name)


def test_attempt_folders_only_under_jobs(tmp_path):
    s3 = S3Store("bkt", "p", "http://127.0.0.1:9", client=object())
    assert s3.key("jobs", "j1", "attempt-12/x.npz") == "p/jobs/j1/attempt-12/x.npz"
    with pytest.raises(ScalespaceError, match="invalid artifact name"):
        s3.key("models", "m1", "attempt-1/x")
    local = LocalStore(tmp_path)
    local.put("jobs", "j", "a.txt", b"1")
    local.put("jobs", "j", "attempt-1/b.txt", b"2")
    local.put("jobs", "j", "attempt-2/c.txt", b"3")
    assert local.list("jobs", "j") == ["a.txt", "attempt-1/b.txt", "attempt-2/c.txt"]
    local.delete("jobs", "j", "attempt-1")
    assert local.list("jobs", "j") == ["a.txt", "attempt-2/c.txt"]
    with pytest.raises(ScalespaceError):
        local.delete("jobs", "j", "..")
    assert local.list("jobs", "j") == ["a.txt", "attempt-2/c.txt"]  # nothing went with the refused folder


def test_read_artifact_goes_through_the_manifest(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(ScalespaceError, match="has no results"):
        store.read_artifact("j", "x.bin")
    store.put("jobs", "j", "attempt-3/x.bin", b"payload")
    store.put_json("jobs", "j", "manifest.json", {"job_id": "j", "artifacts": [
        {"name": "x.bin", "path": "attempt-3/x.bin", "sha256": "-", "bytes": 7}]})
    assert store.read_artifact("j", "x.bin") == b"payload"
    with pytest.raises(ScalespaceError, match="no artifact 'y.bin'"):
        store.read_artifact("j", "y.bin")


@pytest.mark.parametrize("kwargs, words", [({"bucket": "A_B"}, "SCALESPACE_S3_BUCKET"),
                                           ({"bucket": "bkt", "prefix": "../up"}, "SCALESPACE_S3_PREFIX")])
def test_s3_settings_errors_name_the_variable(kwargs, words):
    with pytest.raises(ScalespaceError, match=words):
        S3Store(endpoint_url="http://127.0.0.1:9", client=object(), **kwargs)
