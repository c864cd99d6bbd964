"""Responses made natively upstream (`responses: native`) read back, deleted and continued
through the gateway: `GET`/`DELETE /v1/responses/{id}` and `GET .../input_items` reach the
provider and the upstream key that made the response, and so does a turn naming it in
`previous_response_id`, for the gateway key that made it only (and those a cache hit
replayed it to); where it lives is kept in the database (SQLite and PostgreSQL), so every
worker finds it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import asyncpg
import httpx
import openai
import orjson
import pytest

from tests.conftest import Service, start_fake_upstream, start_gateway, stop
from tests.fakes import responses as fake
from tests.stores import database, query

POOL_KEYS = {"FAKE_POOL_KEY_A": "sk-fake-pool-key-a", "FAKE_POOL_KEY_B": "sk-fake-pool-key-b"}
UPSTREAM_KEY = "Bearer sk-fake-upstream-key"
ENV = {**POOL_KEYS, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY.removeprefix("Bearer ")}


@dataclass
class Native:
    gateway: Service
    database_url: str
    doomed: Service  # an upstream of its own, stopped by the test of an upstream that is down

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=key or self.gateway.key, base_url=self.gateway.base_url, max_retries=0
        )

    def new_key(self) -> str:
        headers = {"Authorization": f"Bearer {self.gateway.keys['admin']}"}
        made = httpx.post(self.gateway.url + "/admin/keys", headers=headers, json={"name": "x"})
        assert made.status_code == 201, made.text
        return str(made.json()["secret"])

    def rows(self, response_id: str) -> list[tuple[str, str, str | None]]:
        sql = "SELECT key_id, provider, account FROM native_responses WHERE id = :id"
        return [tuple(row) for row in query(self.database_url, sql, {"id": response_id})]

    def keys_that_reach(self, response_id: str) -> dict[str, bool]:
        """The keys that may reach the response, each with whether a cache hit gave it."""
        sql = "SELECT key_id, replayed FROM native_responses WHERE id = :id"
        return {
            key: bool(replayed)
            for key, replayed in query(self.database_url, sql, {"id": response_id})
        }


def config(fake_upstream: Service, doomed: Service, **extra: object) -> dict:
    upstream = {"base_url": fake_upstream.base_url, "api_key_env": "FAKE_UPSTREAM_KEY"}
    return {
        "local": {"enabled": False},
        "providers": {
            "native": {**upstream, "responses": "native", "models": ["resp-*"]},
            "pool": {
                "base_url": fake_upstream.base_url,
                "api_key_env": list(POOL_KEYS),
                "responses": "native",
                "models": ["pool-*"],
            },
            "doomed": {
                "base_url": doomed.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "responses": "native",
                "models": ["doomed-*"],
            },
            "chat": {**upstream, "models": ["text-*"]},
        },
        **extra,
    }


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def native(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_upstream: Service,
) -> Iterator[Native]:
    workdir = tmp_path_factory.mktemp(f"native-stored-{request.param}")
    doomed = start_fake_upstream(workdir / "doomed")
    try:
        with database(request.param, workdir) as url:
            settings = config(
                fake_upstream, doomed, database_url=url, cache={"models": ["resp-cached"]}
            )
            service = start_gateway(workdir, settings, name="native", env=ENV)
            try:
                yield Native(service, url, doomed)
            finally:
                stop(service.process)
    finally:
        stop(doomed.process)


@contextmanager
def inserts_held(url: str) -> Iterator[None]:
    """While this holds the test's own lock, the gateway's writes of `native_responses`
    wait; reads go on."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")  # the one writer, until it rolls back
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE native_responses IN EXCLUSIVE MODE")
                locked.set()
                await asyncio.to_thread(release.wait, 30)
        finally:
            await connection.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    assert locked.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)


def log(fake_upstream: Service) -> dict:
    return dict(httpx.get(fake_upstream.url + "/_log").json())


def stored_calls(fake_upstream: Service) -> list[dict]:
    return list(log(fake_upstream)["stored"])


def create(native: Native, stream: bool, key: str | None = None, **fields: object) -> dict:
    """A response made through the gateway, as its answer (or `response.completed`) said."""
    body = {"model": "resp-text", "input": "Hi", **fields, "stream": stream}
    headers = {"Authorization": f"Bearer {key or native.gateway.key}"}
    url = native.gateway.base_url + "/responses"
    if not stream:
        answer = httpx.post(url, json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as answer:
        assert answer.status_code == 200
        last = answer.read().strip().rsplit(b"\n\n", 1)[-1]
    event = orjson.loads(last.split(b"data: ", 1)[1])
    assert event["type"] == "response.completed"
    return dict(event["response"])


def get(native: Native, path: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or native.gateway.key}"}
    return httpx.get(native.gateway.base_url + path, headers=headers, timeout=30)


@pytest.mark.parametrize("stream", [False, True])
def test_a_get_right_after_the_answer_reads_it_upstream(
    native: Native, fake_upstream: Service, stream: bool
):
    for _ in range(10):  # the row must be in before the client hears the answer is done
        made = create(native, stream)
        got = get(native, f"/responses/{made['id']}")
        assert got.status_code == 200, got.text
        assert got.json() == made  # the upstream's own, `model` as the POST answered it
    assert stored_calls(fake_upstream)[-1] == {
        "method": "GET",
        "path": f"/v1/responses/{made['id']}",
        "query": "",
        "authorization": UPSTREAM_KEY,
    }
    ((_, provider, account),) = native.rows(made["id"])
    assert provider == "native" and account is not None and len(account) == 16  # a digest


@pytest.mark.parametrize("stream", [False, True])
def test_only_the_end_of_the_answer_waits_for_its_row(native: Native, stream: bool):
    url = native.gateway.base_url + "/responses"
    headers = {"Authorization": f"Bearer {native.gateway.key}"}
    # `resp-split` comes in many reads: the stream's first events go out on their own.
    body = {"model": "resp-split", "input": "Hi", "stream": stream}
    reads: list[bytes] = []

    def post() -> None:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as answer:
            reads.extend(answer.iter_raw())

    with inserts_held(native.database_url):
        client = threading.Thread(target=post)
        client.start()
        client.join(1.5)
        assert client.is_alive()  # the answer is not done while its row cannot be written
        so_far = b"".join(reads)
        if stream:  # the events before the end were not held back
            assert b"response.created" in so_far and b"response.output_text.delta" in so_far
        assert b"response.completed" not in so_far
    client.join(30)
    raw = b"".join(reads)
    made = fake.streamed_id(raw) if stream else orjson.loads(raw)["id"]
    assert get(native, f"/responses/{made}").status_code == 200


def test_the_sdk_retrieves_and_lists_input_items(native: Native, fake_upstream: Service):
    client = native.client()
    made = client.responses.create(
        model="resp-text",
        input=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    )
    got = client.responses.retrieve(
        made.id, include=["message.input_image.image_url"], extra_query={"secret": "x"}
    )
    assert got.id == made.id and got.output_text == fake.ANSWER
    assert got.model == made.model == "resp-text-2025-01-01"
    sent = stored_calls(fake_upstream)[-1]
    assert parse_qs(sent["query"]) == {"include[]": ["message.input_image.image_url"]}

    def texts(items: list) -> list[str]:
        return [item.content[0].text for item in items]

    newest_first = client.responses.input_items.list(made.id)
    assert texts(newest_first.data) == ["three", "two", "one"]
    assert all(item.id.startswith("msg_") for item in newest_first.data)
    page = client.responses.input_items.list(
        made.id, limit=2, order="asc", include=["message.input_image.image_url"]
    )
    assert texts(page.data) == ["one", "two"] and page.has_more
    assert parse_qs(stored_calls(fake_upstream)[-1]["query"]) == {
        "limit": ["2"],
        "order": ["asc"],
        "include[]": ["message.input_image.image_url"],
    }
    assert texts(list(page)) == ["one", "two", "three"]  # the next page asked `after` its last
    assert parse_qs(stored_calls(fake_upstream)[-1]["query"])["after"] == [page.data[-1].id]
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.input_items.list(made.id, limit=101)
    assert refused.value.param == "limit"  # the upstream's own error, relayed


def test_another_key_gets_404_and_the_upstream_is_not_asked(native: Native, fake_upstream: Service):
    made = create(native, stream=False)
    other = native.client(native.new_key())
    before = len(stored_calls(fake_upstream))
    calls = [
        lambda: other.responses.retrieve(made["id"]),
        lambda: other.responses.input_items.list(made["id"]),
        lambda: other.responses.delete(made["id"]),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as missing:
            call()
        assert missing.value.code == "not_found"
        assert f"Response with id '{made['id']}' not found." in missing.value.message
    assert len(stored_calls(fake_upstream)) == before
    assert native.client().responses.retrieve(made["id"]).id == made["id"]  # its own key still


@pytest.mark.parametrize("stream", [False, True])
def test_delete_deletes_upstream_and_forgets(native: Native, fake_upstream: Service, stream: bool):
    made = create(native, stream)
    deleted = httpx.delete(
        native.gateway.base_url + f"/responses/{made['id']}",
        headers={"Authorization": f"Bearer {native.gateway.key}"},
    )
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": made["id"], "object": "response", "deleted": True}
    assert stored_calls(fake_upstream)[-1]["method"] == "DELETE"
    assert native.rows(made["id"]) == []
    before = len(stored_calls(fake_upstream))
    client = native.client()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made["id"])
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made["id"])
    assert len(stored_calls(fake_upstream)) == before  # forgotten: not asked again


def test_an_upstream_that_lost_it_is_a_404_and_it_is_forgotten(
    native: Native, fake_upstream: Service
):
    made = create(native, stream=False)
    # Deleted upstream behind the gateway's back (as the upstream's own retention would).
    gone = httpx.delete(
        fake_upstream.base_url + f"/responses/{made['id']}",
        headers={"Authorization": UPSTREAM_KEY},
    )
    assert gone.status_code == 200
    client = native.client()
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.retrieve(made["id"])
    assert missing.value.message.endswith(f"Response with id '{made['id']}' not found.")
    assert native.rows(made["id"])  # a read changes nothing
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made["id"])
    assert native.rows(made["id"]) == []


@pytest.mark.parametrize("stream", [False, True])
def test_store_false_is_404_without_asking_the_upstream(
    native: Native, fake_upstream: Service, stream: bool
):
    made = create(native, stream, store=False)
    before = len(stored_calls(fake_upstream))
    for path in (f"/responses/{made['id']}", f"/responses/{made['id']}/input_items"):
        missing = get(native, path)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert len(stored_calls(fake_upstream)) == before
    assert native.rows(made["id"]) == []


def made_by_both_pool_keys(native: Native, fake_upstream: Service) -> dict[str, str]:
    """Responses of the pool, each with the upstream key that made it: some of each."""
    made: dict[str, str] = {}
    for turn in range(40):  # the pool's keys are picked at random: until both made some
        response = create(native, stream=turn % 2 == 1, model="pool-text")
        made[response["id"]] = log(fake_upstream)["requests"][-1]["authorization"]
        if len(set(made.values())) == 2 and len(made) >= 4:
            break
    assert set(made.values()) == {f"Bearer {key}" for key in POOL_KEYS.values()}
    return made


def test_a_pool_response_is_read_with_the_upstream_key_that_made_it(
    native: Native, fake_upstream: Service
):
    made = made_by_both_pool_keys(native, fake_upstream)
    for response_id, authorization in made.items():
        assert get(native, f"/responses/{response_id}").status_code == 200
        assert get(native, f"/responses/{response_id}/input_items").status_code == 200
        asked = stored_calls(fake_upstream)[-2:]
        assert [call["authorization"] for call in asked] == [authorization] * 2
    accounts = {native.rows(response_id)[0][1:] for response_id in made}
    assert len(accounts) == 2 and {provider for provider, _ in accounts} == {"pool"}


def test_previous_response_id_still_continues_upstream(native: Native, fake_upstream: Service):
    client = native.client()
    first = client.responses.create(model="resp-text", input="Hi")
    follow = client.responses.create(
        model="resp-text", input="And then?", previous_response_id=first.id
    )
    assert log(fake_upstream)["requests"][-1]["body"]["previous_response_id"] == first.id
    assert client.responses.retrieve(follow.id).previous_response_id == first.id
    with pytest.raises(openai.NotFoundError) as missing:  # the upstream's word, relayed
        client.responses.create(model="resp-text", input="x", previous_response_id="resp_none")
    assert missing.value.param == "previous_response_id"


@pytest.mark.parametrize("stream", [False, True])
def test_another_key_cannot_continue_a_response(
    native: Native, fake_upstream: Service, stream: bool
):
    made = create(native, stream)
    other = native.client(native.new_key())
    before = len(log(fake_upstream)["requests"])
    with pytest.raises(openai.NotFoundError) as missing:
        other.responses.create(
            model="resp-text",
            input="What did they say?",
            previous_response_id=made["id"],
            stream=stream,
        )
    assert missing.value.body == {  # OpenAI's own words for it
        "message": f"Previous response with id '{made['id']}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    assert len(log(fake_upstream)["requests"]) == before  # the upstream was not asked
    mine = native.client().responses.create(
        model="resp-text", input="And then?", previous_response_id=made["id"]
    )
    sent = log(fake_upstream)["requests"][-1]
    assert sent["body"]["previous_response_id"] == made["id"] == mine.previous_response_id
    assert native.rows(mine.id)  # a turn that continues is remembered like any other


def test_a_response_unknown_here_is_the_upstreams_to_find(native: Native, fake_upstream: Service):
    # Made at the upstream directly (or before the gateway remembered responses): whose it
    # is cannot be told, and the upstream keeps it in its account as it would anyway.
    direct = httpx.post(
        fake_upstream.base_url + "/responses",
        json={"model": "resp-text", "input": "Hi"},
        headers={"Authorization": UPSTREAM_KEY},
    ).json()
    for key in (native.gateway.key, native.new_key()):
        follow = native.client(key).responses.create(
            model="resp-text", input="And then?", previous_response_id=direct["id"]
        )
        assert follow.previous_response_id == direct["id"]
        assert log(fake_upstream)["requests"][-1]["body"]["previous_response_id"] == direct["id"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_pool_turn_continues_with_the_upstream_key_that_made_it(
    native: Native, fake_upstream: Service, stream: bool
):
    # Another key of the pool would not find it (the fake keeps it under the key that made
    # it, as OpenAI keeps it in that key's project): one turn in two would be a 404.
    for response_id, authorization in made_by_both_pool_keys(native, fake_upstream).items():
        for _ in range(3):
            follow = create(native, stream, model="pool-text", previous_response_id=response_id)
            assert follow["previous_response_id"] == response_id
            assert log(fake_upstream)["requests"][-1]["authorization"] == authorization


CACHE_HITS = [(False, False), (True, True), (False, True), (True, False)]


@pytest.mark.parametrize(("made_streamed", "hit_streamed"), CACHE_HITS)
def test_a_cache_hit_may_be_continued_by_the_key_it_was_replayed_to(
    native: Native, fake_upstream: Service, made_streamed: bool, hit_streamed: bool
):
    body = {"model": "resp-cached", "input": f"hi {uuid.uuid4().hex}", "temperature": 0}
    made = create(native, made_streamed, **body)
    assert create(native, hit_streamed, **body)["id"] == made["id"]  # its own hit
    ((mine, replayed),) = native.keys_that_reach(made["id"]).items()
    assert not replayed  # its own hit changed nothing
    secret = native.new_key()
    calls = len(log(fake_upstream)["requests"])
    # A hit: the upstream's response again, its id too. The key it goes to has seen all
    # the response holds (the cache key is the whole request): it may go on from it.
    assert create(native, hit_streamed, key=secret, **body)["id"] == made["id"]
    assert len(log(fake_upstream)["requests"]) == calls
    reach = native.keys_that_reach(made["id"])
    assert reach.pop(mine) is False and list(reach.values()) == [True]
    replayed_to = native.client(secret)
    assert replayed_to.responses.retrieve(made["id"]).id == made["id"]
    assert stored_calls(fake_upstream)[-1]["authorization"] == UPSTREAM_KEY
    follow = replayed_to.responses.create(
        model="resp-cached", input="And then?", previous_response_id=made["id"]
    )
    sent = log(fake_upstream)["requests"][-1]
    assert sent["body"]["previous_response_id"] == made["id"] == follow.previous_response_id
    assert replayed_to.responses.retrieve(follow.id).id == follow.id
    stranger = native.client(native.new_key())  # given nothing: reaches nothing
    with pytest.raises(openai.NotFoundError) as missing:
        stranger.responses.create(model="resp-cached", input="x", previous_response_id=made["id"])
    assert missing.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(made["id"])
    # Its delete forgets its own way to the response; the key that made it keeps it.
    asked = len(stored_calls(fake_upstream))
    deleted = httpx.delete(
        native.gateway.base_url + f"/responses/{made['id']}",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert deleted.json() == {"id": made["id"], "object": "response", "deleted": True}
    assert len(stored_calls(fake_upstream)) == asked
    with pytest.raises(openai.NotFoundError):
        replayed_to.responses.retrieve(made["id"])
    with pytest.raises(openai.NotFoundError):
        replayed_to.responses.create(
            model="resp-cached", input="x", previous_response_id=made["id"]
        )
    owner = native.client()
    assert owner.responses.retrieve(made["id"]).id == made["id"]
    # The key that made it deletes it upstream, for every key it was replayed to too.
    create(native, hit_streamed, key=secret, **body)
    owner.responses.delete(made["id"])
    assert stored_calls(fake_upstream)[-1]["method"] == "DELETE"
    assert native.keys_that_reach(made["id"]) == {}


def test_translated_responses_are_still_kept_here(native: Native, fake_upstream: Service):
    client = native.client()
    made = client.responses.create(model="text-basic", input="Weather?")
    before = len(stored_calls(fake_upstream))
    assert client.responses.retrieve(made.id).output_text == made.output_text
    assert client.responses.input_items.list(made.id).data[0].role == "user"  # type: ignore[union-attr]
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    assert len(stored_calls(fake_upstream)) == before
    assert native.rows(made.id) == []


def test_an_upstream_down_is_a_clear_error(native: Native):
    made = create(native, stream=False, model="doomed-text")
    stop(native.doomed.process)
    client = native.client()
    calls = [
        lambda: client.responses.retrieve(made["id"]),
        lambda: client.responses.input_items.list(made["id"]),
        lambda: client.responses.delete(made["id"]),
    ]
    for call in calls:
        with pytest.raises(openai.APIStatusError) as failed:
            call()
        assert failed.value.status_code == 502
        assert failed.value.code == "upstream_unavailable"
        assert "Could not reach the upstream provider 'doomed'" in failed.value.message
    assert native.rows(made["id"])  # kept: it can be deleted once the upstream is back


def test_every_worker_finds_a_response_another_made(tmp_path: Path, fake_upstream: Service):
    settings = config(fake_upstream, doomed=fake_upstream)
    service = start_gateway(tmp_path, settings, env=ENV, args=("--workers", "2"))
    try:
        native = Native(service, database_url="", doomed=fake_upstream)
        # A new connection each time: either worker may take the POST, and the GET.
        for turn in range(16):
            made = create(native, stream=turn % 2 == 1)
            assert get(native, f"/responses/{made['id']}").json() == made
    finally:
        stop(service.process)


def test_a_pool_turn_waits_for_its_upstream_key_rather_than_go_to_another(
    tmp_path: Path, fake_upstream: Service
):
    # `pool-flaky` fails once for whichever key asks first (a 500, which is retried).
    flaky = {"name": "pool-flaky", "upstream": f"flaky-{uuid.uuid4().hex}-1"}
    settings = config(
        fake_upstream, fake_upstream, routing={"failure_threshold": 1, "cooldown_seconds": 60}
    )
    settings["providers"]["pool"]["models"] = [flaky, "pool-*"]
    service = start_gateway(tmp_path, settings, env=ENV)
    try:
        native = Native(service, database_url="", doomed=fake_upstream)
        made = create(native, stream=False, model="pool-text")
        maker = log(fake_upstream)["requests"][-1]["authorization"]
        before = len(log(fake_upstream)["requests"])
        follow = {"model": "pool-flaky", "input": "And then?", "previous_response_id": made["id"]}
        failed = httpx.post(
            service.base_url + "/responses",
            json=follow,
            headers={"Authorization": f"Bearer {service.key}"},
            timeout=30,
        )
        assert failed.status_code >= 500  # not retried on a key that does not keep it
        asked = log(fake_upstream)["requests"][before:]
        assert [request["authorization"] for request in asked] == [maker]
        # That key is cooling down now, the other is not: it is tried all the same.
        answer = create(native, stream=True, **follow)
        assert answer["previous_response_id"] == made["id"]
        assert log(fake_upstream)["requests"][-1]["authorization"] == maker
    finally:
        stop(service.process)


def test_a_key_that_waited_for_the_same_call_may_continue_it(native: Native):
    # Two keys ask the same at once: one call upstream, whose answer the other waits for
    # and is served from the cache as soon as it is kept. By then its row is in.
    secret = native.new_key()
    for _ in range(10):
        body = {"model": "resp-cached", "input": f"hi {uuid.uuid4().hex}", "temperature": 0}
        answers: dict[str, dict] = {}

        def ask(key: str, body: dict = body, answers: dict = answers) -> None:
            answers[key] = create(native, False, key=key, **body)

        threads = [
            threading.Thread(target=ask, args=(key,)) for key in (native.gateway.key, secret)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        made = answers[secret]["id"]
        assert answers[native.gateway.key]["id"] == made
        follow = create(native, False, key=secret, model="resp-cached", previous_response_id=made)
        assert follow["previous_response_id"] == made
