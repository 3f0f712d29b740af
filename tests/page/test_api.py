"""The chat page's API, through gradio_client against a real app process on 127.0.0.1 with a login.

One app process serves the whole module, over the seed index that conftest builds once per session.
"""

import json
import os
import subprocess

import httpx
import pytest
from gradio_client.exceptions import AppError

from qa.config import parse_auth
from qa.errors import QAError
from qa.page.access import is_loopback
from qa.page.chat import Chat
from qa.page.events import may_rebuild
from qa.page.layout import build_page

from ..conftest import case_number, dev_question
from ..helpers import HTTP_TIMEOUT, QA, page_client, running_page

LOGIN = ("tester", "s3cret")


@pytest.fixture(scope="module")
def page(seed_assistant, tmp_path_factory):
    folder = tmp_path_factory.mktemp("app-api")
    config = seed_assistant.config
    flags = ("--corpus", str(config.corpus_dir), "--index", str(config.index_dir), "--feedback", str(folder / "feedback.jsonl"))
    with running_page(*flags, log=folder / "app.log", env={"QA_AUTH": ":".join(LOGIN)}) as running:
        yield running.url


@pytest.fixture(scope="module")
def client(page):
    return page_client(page, auth=LOGIN)


@pytest.mark.parametrize("question_id", ["d14", "d10", "d21"])
def test_ask_returns_the_passages_of_the_right_case(client, seed_assistant, question_id):
    row = dev_question(question_id)
    result = client.predict(row["question"], api_name="/ask")
    assert case_number(result["passages"][0]["section"]) == row["case"]
    assert [passage["rank"] for passage in result["passages"]] == [1, 2, 3, 4, 5]
    assert result == seed_assistant.ask(row["question"]).to_json()


def test_ask_returns_exactly_what_qa_ask_json_prints(client, seed_assistant):
    question = dev_question("d14")["question"]
    printed = subprocess.run(
        [str(QA), "ask", "--json", "--index", str(seed_assistant.config.index_dir), question],
        capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    ).stdout
    assert client.predict(question, api_name="/ask") == json.loads(printed)


def test_ask_takes_k_and_says_not_found(client):
    assert len(client.predict(dev_question("d14")["question"], 2, api_name="/ask")["passages"]) == 2
    result = client.predict("红烧肉怎么做才好吃？", api_name="/ask")
    assert (result["question"], result["outcome"], result["answered"]) == ("红烧肉怎么做才好吃？", "not_found", False)
    # The dev set's English off-topic question is never answered; it may be "uncertain": English
    # thresholds sit low so that valid English questions are not declined (README, Evaluating).
    english = client.predict(dev_question("d24")["question"], api_name="/ask")
    assert english["question"] == "How do I bake sourdough bread?" and english["outcome"] != "answered"


def test_an_empty_question_is_a_clean_error(client):
    with pytest.raises(AppError, match="the question is empty: type a question about the documents"):
        client.predict("   ", api_name="/ask")


def test_only_ask_and_compose_are_offered_to_api_clients(client):
    # The page's own events (rebuild, feedback, the written answer's stream, ...) are private: not callable by API clients.
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/ask", "/compose"]


def test_the_page_needs_the_login(page):
    with pytest.raises(Exception):
        page_client(page).predict("问题", api_name="/ask")
    with pytest.raises(Exception):
        page_client(page, auth=("tester", "wrong"))
    login = {"username": LOGIN[0], "password": LOGIN[1]}
    assert httpx.post(page + "login", data=login, timeout=HTTP_TIMEOUT).status_code == 200


# --- the page's start-up options, without a server -------------------------------------------------


def test_parse_auth():
    assert parse_auth(None) is None and parse_auth("") is None
    assert parse_auth("ann:pw, bob:p:w") == (("ann", "pw"), ("bob", "p:w"))
    with pytest.raises(QAError, match=r"^QA_AUTH must look like user:password\[,user2:password2\], not 'ann'$"):
        parse_auth("ann")
    with pytest.raises(QAError, match=r"^QA_AUTH must look like user:password\[,user2:password2\], not ':…'$"):
        parse_auth(":secret")  # named without its password


def test_rebuild_is_only_for_loopback_or_logged_in_visitors(seed_assistant):
    assert [is_loopback(host) for host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "192.168.1.5")] == [
        True, True, True, False, False,
    ]
    assert may_rebuild(True, None) and may_rebuild(False, "ann") and not may_rebuild(False, None)
    config = build_page(Chat(seed_assistant), rebuild_allowed=False).get_config_file()
    props = {c["props"].get("elem_id"): c["props"] for c in config["components"]}
    assert props["qa-rebuild"]["visible"] is False and props["qa-chat"]["visible"] is True
    assert config["analytics_enabled"] is False
