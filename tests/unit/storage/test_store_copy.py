"""ArtifactStore.copy (how a worker publishes the committed attempt's manifest): byte for byte; on S3 one
server-side CopyObject, no GET and PUT through the worker."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from scalespace import ScalespaceError
from scalespace.scheduler.janitor import publish
from scalespace.storage import LocalStore, S3Store


class FakeS3:
    """Records the calls; `copy_code` makes copy_object fail with that S3 error code."""

    def __init__(self, copy_code: str | None = None):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.objects: dict[str, bytes] = {}
        self.copy_code = copy_code

    def copy_object(self, **kw: Any) -> None:
        self.calls.append(("copy_object", kw))
        if self.copy_code:
            raise ClientError({"Error": {"Code": self.copy_code, "Message": "no"}}, "CopyObject")
        self.objects[kw["Key"]] = self.objects[kw["CopySource"]["Key"]]

    def get_object(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("get_object", kw))

        class Body:
            def read(_self) -> bytes:
                return self.objects[kw["Key"]]

        return {"Body": Body()}

    def put_object(self, **kw: Any) -> None:
        self.calls.append(("put_object", kw))
        self.objects[kw["Key"]] = kw["Body"]


def test_local_copy_is_byte_for_byte(tmp_path):
    store = LocalStore(tmp_path)
    store.put("jobs", "j", "attempt-2/manifest.json", b'{"attempt": 2}')
    publish(store, "j", 2)
    assert store.get("jobs", "j", "manifest.json") == b'{"attempt": 2}'


def test_s3_publish_is_one_server_side_copy():
    client = FakeS3()
    store = S3Store("bkt", "p", "http://127.0.0.1:9", client=client)
    client.objects["p/jobs/j/attempt-3/manifest.json"] = b'{"attempt": 3}'
    publish(store, "j", 3)
    assert [c[0] for c in client.calls] == ["copy_object"]
    kw = client.calls[0][1]
    assert kw["Key"] == "p/jobs/j/manifest.json" and kw["CopySource"] == {"Bucket": "bkt", "Key": "p/jobs/j/attempt-3/manifest.json"}
    assert kw["ContentType"] == "application/json"
    assert client.objects["p/jobs/j/manifest.json"] == b'{"attempt": 3}'


def test_s3_copy_falls_back_to_get_and_put_where_the_endpoint_has_no_copy():
    client = FakeS3(copy_code="NotImplemented")
    store = S3Store("bkt", "p", "http://127.0.0.1:9", client=client)
    client.objects["p/jobs/j/attempt-1/manifest.json"] = b"m"
    store.copy("jobs", "j", "attempt-1/manifest.json", "manifest.json")
    assert [c[0] for c in client.calls] == ["copy_object", "get_object", "put_object"]
    assert client.objects["p/jobs/j/manifest.json"] == b"m"


def test_s3_copy_of_a_missing_object_names_it():
    store = S3Store("bkt", "p", "http://127.0.0.1:9", client=FakeS3(copy_code="NoSuchKey"))
    with pytest.raises(ScalespaceError, match="attempt-1/manifest.json"):
        store.copy("jobs", "j", "attempt-1/manifest.json", "manifest.json")
