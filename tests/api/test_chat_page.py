"""The chat page end to end: Debian's headless Chromium driven by chromedriver (Selenium).

The page is served by the app at `/`; the key arrives in the URL fragment the way `make run`
prints it; the question is typed and submitted like a person would; the streamed answer and
its verified citation (quote and source) must appear in the DOM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import browsers
from tests.api.conftest import Deployment


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Missing either one fails here, with the apt-get command that installs it.
    chromium, chromedriver = browsers.chromium(), browsers.chromedriver()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_question_streams_an_answer_with_a_verified_citation(
    deployment: Deployment, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{deployment.server.url}/#key={deployment.keys['default']}")
    assert "key=" not in browser.current_url, "the page drops the key from the address bar"
    question = browser.find_element(By.ID, "question")
    question.send_keys("How long are database backups retained?")
    browser.find_element(By.ID, "ask").click()

    WebDriverWait(browser, 120).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "article.turn.done"))
    )
    turn = browser.find_element(By.CSS_SELECTOR, "article.turn.done")
    answer = turn.find_element(By.CSS_SELECTOR, ".answer")
    assert "35 days" in answer.text
    markers = answer.find_elements(By.CSS_SELECTOR, "a.marker")
    assert markers and markers[0].text == "[1]"
    citations = turn.find_elements(By.CSS_SELECTOR, "ol.citations > li")
    assert citations, "the verified citation is listed under the answer"
    first = citations[0]
    assert "policies/backup-policy.md" in first.find_element(By.CSS_SELECTOR, ".where").text
    assert "35 days" in first.find_element(By.CSS_SELECTOR, "blockquote").text
    assert not first.find_elements(By.CSS_SELECTOR, ".unverified")
    assert "answered by extractive" in turn.find_element(By.CSS_SELECTOR, ".meta").text
    # The marker links to its citation on the page.
    assert markers[0].get_attribute("href").endswith("#" + first.get_attribute("id"))
    report = browser.find_element(By.ID, "report-link")
    assert report.is_displayed()


def test_a_follow_up_on_the_chat_page_is_answered_from_the_conversation(
    deployment: Deployment, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{deployment.server.url}/#key={deployment.keys['default']}")
    for n, question in enumerate(
        ["What is the free tier rate limit of the public API?", "And the business tier?"], 1
    ):
        box = browser.find_element(By.ID, "question")
        box.send_keys(question)
        browser.find_element(By.ID, "ask").click()
        WebDriverWait(browser, 120).until(
            lambda b, n=n: len(b.find_elements(By.CSS_SELECTOR, "article.turn.done")) >= n
        )
    first, follow = browser.find_elements(By.CSS_SELECTOR, "article.turn.done")
    assert "60 requests per minute" in first.find_element(By.CSS_SELECTOR, ".answer").text
    assert not first.find_element(By.CSS_SELECTOR, ".standalone").is_displayed()
    assert "1,200 requests per minute" in follow.find_element(By.CSS_SELECTOR, ".answer").text
    shown = follow.find_element(By.CSS_SELECTOR, ".standalone")
    assert shown.is_displayed()
    assert shown.text == "Answered as: What is the business tier rate limit of the public API?"


def test_thumbs_down_on_the_chat_page_reaches_langfuse(
    deployment: Deployment, start_server: Any, browser: Any
) -> None:
    import uuid

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.langfuse_standin import LangfuseStandIn

    with LangfuseStandIn() as standin:
        server = start_server(
            tracing={
                "public_key": f"pk-lf-page-{uuid.uuid4().hex[:12]}",
                "secret_key": "sk-lf-page",
                "base_url": standin.url,
                "flush_interval_seconds": 0.2,
            }
        )
        browser.get(f"{server.url}/#key={deployment.keys['default']}")
        browser.find_element(By.ID, "question").send_keys("How long are database backups retained?")
        browser.find_element(By.ID, "ask").click()
        WebDriverWait(browser, 120).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "article.turn.done .feedback"))
        )
        box = browser.find_element(By.CSS_SELECTOR, "article.turn.done .feedback")
        trace_id = box.get_attribute("data-trace-id")
        box.find_element(By.CSS_SELECTOR, ".thumb[data-value='0']").click()
        box.find_element(By.CSS_SELECTOR, ".comment").send_keys("it missed the monthly snapshots")
        box.find_element(By.CSS_SELECTOR, ".feedback-comment button").click()
        WebDriverWait(browser, 30).until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, "article.turn.done .feedback-state"), "recorded"
            )
        )
        assert standin.wait_for(
            lambda s: any(
                x["name"] == "user_feedback" and x.get("traceId") == trace_id and x["value"] == 0
                for x in s.scores
            )
        )
        server.app.state.rag.tracing.shutdown(1.0)


def test_a_link_with_another_key_does_not_switch_the_page_silently(
    deployment: Deployment, browser: Any
) -> None:
    """A colleague's ``#key=`` link must not make this page answer from the colleague's
    tenant: with a key stored, a different key in the link is offered (naming its tenant),
    the stored key stays until "Use it" is pressed, and the link's key leaves the address bar."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def stored() -> Any:
        return browser.execute_script("return localStorage.getItem('rag-kb-api-key')")

    def docs_label(tenant: str) -> None:
        WebDriverWait(browser, 30).until(
            ec.text_to_be_present_in_element((By.ID, "docs-count"), f"tenant {tenant} ")
        )

    mine, theirs = deployment.keys["default"], deployment.keys["acme"]
    url = deployment.server.url
    browser.get(f"{url}/#key={mine}")
    assert stored() == mine, "the first key is taken as it comes"
    docs_label("default")

    # A link opened in this tab changes only the fragment: no page load, a hashchange.
    browser.get(f"{url}/#key={theirs}&section=2")
    assert "key=" not in browser.current_url and theirs not in browser.current_url
    assert browser.current_url.endswith("#section=2"), "the rest of the fragment stays"
    banner = WebDriverWait(browser, 30).until(
        ec.visibility_of_element_located((By.ID, "key-offer"))
    )
    WebDriverWait(browser, 30).until(
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#key-offer .offer-text"), "tenant acme")
    )
    assert "another API key" in banner.text and "tenant default" in banner.text
    assert stored() == mine, "the link's key replaced the stored one without asking"
    docs_label("default")
    # Not answering, or answering through the page meanwhile, keeps the stored key.
    browser.find_element(By.ID, "question").send_keys("How many vacation days do Acme staff get?")
    browser.find_element(By.ID, "ask").click()
    WebDriverWait(browser, 120).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "article.turn.done"))
    )
    answer = browser.find_element(By.CSS_SELECTOR, "article.turn.done .answer").text
    assert "thirty" not in answer, "answered from the link's tenant"
    banner.find_element(By.CSS_SELECTOR, ".keep-mine").click()
    assert not banner.is_displayed() and stored() == mine

    # The same key again: nothing to ask.
    browser.get(f"{url}/#key={mine}")
    assert not browser.find_element(By.ID, "key-offer").is_displayed()
    assert stored() == mine

    # Asked and accepted, on a fresh page load this time: the page switches, visibly.
    browser.get("about:blank")
    browser.get(f"{url}/#key={theirs}")
    banner = WebDriverWait(browser, 30).until(
        ec.visibility_of_element_located((By.ID, "key-offer"))
    )
    banner.find_element(By.CSS_SELECTOR, ".use-offered").click()
    assert stored() == theirs and not banner.is_displayed()
    docs_label("acme")
    assert "key=" not in browser.current_url
