"""The S3 behaviour mlc's object store relies on, checked against the real SeaweedFS.

mlc never overwrites a shared object blindly: it creates with ``If-None-Match: *`` and replaces
or deletes with ``If-Match: <ETag>``. These tests prove the test server answers 412 to every
stale condition and that the conditions are atomic under concurrent writers, so the store's
tests below measure mlc and not a lenient server.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.seaweed import Seaweed

pytestmark = pytest.mark.e2e


def error_of(call: Any) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_if_none_match_creates_only_when_absent(seaweed: Seaweed, s3_bucket: str) -> None:
    s3 = seaweed.client()
    s3.put_object(Bucket=s3_bucket, Key="doc", Body=b"first", IfNoneMatch="*")
    assert error_of(lambda: s3.put_object(Bucket=s3_bucket, Key="doc", Body=b"second", IfNoneMatch="*")) == (
        "PreconditionFailed", 412)
    assert s3.get_object(Bucket=s3_bucket, Key="doc")["Body"].read() == b"first"


def test_if_match_replaces_only_at_the_current_etag(seaweed: Seaweed, s3_bucket: str) -> None:
    s3 = seaweed.client()
    first = s3.put_object(Bucket=s3_bucket, Key="doc", Body=b"one", IfNoneMatch="*")["ETag"]
    second = s3.put_object(Bucket=s3_bucket, Key="doc", Body=b"two", IfMatch=first)["ETag"]
    assert second != first
    # Stale, made-up and absent-key conditions all fail with 412 and change nothing.
    assert error_of(lambda: s3.put_object(Bucket=s3_bucket, Key="doc", Body=b"x", IfMatch=first)) == (
        "PreconditionFailed", 412)
    assert error_of(lambda: s3.put_object(Bucket=s3_bucket, Key="doc", Body=b"x", IfMatch='"0"')) == (
        "PreconditionFailed", 412)
    assert error_of(lambda: s3.put_object(Bucket=s3_bucket, Key="absent", Body=b"x", IfMatch=second)) == (
        "PreconditionFailed", 412)
    got = s3.get_object(Bucket=s3_bucket, Key="doc")
    assert (got["Body"].read(), got["ETag"]) == (b"two", second)
    assert s3.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 1


def test_if_match_delete_refuses_a_stale_etag(seaweed: Seaweed, s3_bucket: str) -> None:
    s3 = seaweed.client()
    first = s3.put_object(Bucket=s3_bucket, Key="lease", Body=b"a")["ETag"]
    current = s3.put_object(Bucket=s3_bucket, Key="lease", Body=b"b", IfMatch=first)["ETag"]
    assert error_of(lambda: s3.delete_object(Bucket=s3_bucket, Key="lease", IfMatch=first)) == (
        "PreconditionFailed", 412)
    s3.head_object(Bucket=s3_bucket, Key="lease")
    s3.delete_object(Bucket=s3_bucket, Key="lease", IfMatch=current)
    assert error_of(lambda: s3.head_object(Bucket=s3_bucket, Key="lease"))[1] == 404


def test_concurrent_creates_have_exactly_one_winner(seaweed: Seaweed, s3_bucket: str) -> None:
    def create(worker: int, key: str) -> bool:
        try:
            clients[worker].put_object(Bucket=s3_bucket, Key=key, Body=str(worker).encode(), IfNoneMatch="*")
            return True
        except ClientError as e:
            assert e.response["Error"]["Code"] == "PreconditionFailed"
            return False

    clients = [seaweed.client() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        for round_ in range(4):  # few rounds: SeaweedFS answers contended conditional puts one per second
            key = f"claims/{round_}"
            wins = list(pool.map(lambda w, k=key: create(w, k), range(8)))
            assert wins.count(True) == 1, (round_, wins)
            winner = wins.index(True)
            assert seaweed.client().get_object(Bucket=s3_bucket, Key=key)["Body"].read() == str(winner).encode()


def test_compare_and_swap_loses_no_concurrent_append(seaweed: Seaweed, s3_bucket: str) -> None:
    seaweed.client().put_object(Bucket=s3_bucket, Key="list", Body=b"[]")

    def append(worker: int) -> int:
        s3 = seaweed.client()
        lost = 0
        for i in range(6):
            while True:
                got = s3.get_object(Bucket=s3_bucket, Key="list")
                entries = json.loads(got["Body"].read()) + [f"{worker}-{i}"]
                try:
                    s3.put_object(Bucket=s3_bucket, Key="list", Body=json.dumps(entries).encode(), IfMatch=got["ETag"])
                    break
                except ClientError as e:
                    assert e.response["Error"]["Code"] == "PreconditionFailed"
                    lost += 1
        return lost

    with ThreadPoolExecutor(6) as pool:
        lost_races = sum(pool.map(append, range(6)))
    entries = json.loads(seaweed.client().get_object(Bucket=s3_bucket, Key="list")["Body"].read())
    assert sorted(entries) == sorted(f"{w}-{i}" for w in range(6) for i in range(6))
    assert lost_races > 0  # the writers did race; every lost race was refused, not merged blindly


def test_missing_bucket_and_wrong_credentials_are_refused(seaweed: Seaweed, s3_bucket: str) -> None:
    s3 = seaweed.client()
    assert error_of(lambda: s3.put_object(Bucket="no-such-bucket-here", Key="k", Body=b"", IfNoneMatch="*"))[1] == 404
    assert "no-such-bucket-here" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    wrong = seaweed.client(secret_key="not-the-secret")
    assert error_of(lambda: wrong.get_object(Bucket=s3_bucket, Key="k")) == ("SignatureDoesNotMatch", 403)
    unknown = seaweed.client(access_key="nobody", secret_key="x")
    assert error_of(lambda: unknown.list_objects_v2(Bucket=s3_bucket)) == ("InvalidAccessKeyId", 403)
