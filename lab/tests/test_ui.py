"""The live rollout view (`/ui`) in a real browser: headless Chromium driven by Selenium, the
page loaded through haproxy (the lab's load balancer) in front of testpage processes of two
versions, three pods of v1 and one of v2."""

import json
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib

SHOTS = ROOT / "target" / "ui"


def require():
    testlib.skip_or_fail(
        testlib.binaries_problem("testpage"),
        testlib.tool_problem("haproxy"),
        testlib.tool_problem("chromium"),
        testlib.tool_problem("chromedriver"),
    )


class Pods:
    """testpage processes on 127.0.0.1, each on a port the kernel chose."""

    def __init__(self, tmp):
        self.tmp, self.procs, self.addrs = tmp, [], []

    def start(self, version, name):
        ready = self.tmp / f"{name}.ready"
        env = {
            "VERSION": version,
            "POD_NAME": name,
            "READY_FILE": str(ready),
            "DRAIN": "0",
        }
        proc = testlib.Process(
            [testlib.DIST / "testpage", "--listen", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        self.addrs.append(testlib.ready_addr(ready, proc))

    def close(self):
        for proc in self.procs:
            proc.close()


class Haproxy:
    """Round robin over `addrs`, no retries: a refused or failing pod shows as it is."""

    def __init__(self, tmp, addrs):
        listener = testlib.listening_socket()
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        servers = "\n".join(f"    server p{i} {a}" for i, a in enumerate(addrs))
        config = tmp / "haproxy.cfg"
        config.write_text(
            f"""defaults
    mode http
    retries 0
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend service
    bind fd@{listener.fileno()}
    default_backend pods
backend pods
    balance roundrobin
{servers}
"""
        )
        with listener:
            self.proc = testlib.Process(
                ["haproxy", "-db", "-f", config],
                pass_fds=[listener.fileno()],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        testlib.wait_until(lambda: testlib.http_status(self.url) == 200, 5, "haproxy")

    def close(self):
        self.proc.close()


def chromium(language, size="1200,1000"):
    """Headless Chromium whose preferred language is `language` (navigator.languages and
    Accept-Language)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={size}")
    options.add_argument(f"--lang={language}")
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    return webdriver.Chrome(
        service=Service(shutil.which("chromedriver")), options=options
    )


@pytest.fixture(scope="module")
def world():
    require()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="testpage-ui-"))
    pods = Pods(tmp)
    lb = browser = None
    try:
        for i in range(3):
            pods.start("v1", f"v1-pod-{i}")
        pods.start("v2", "v2-pod-0")
        lb = Haproxy(tmp, pods.addrs)
        browser = chromium("en-US")
        browser.get(lb.url + "ui")
        browser.find_element("id", "rate").send_keys("20")
        yield browser, pods, lb
    finally:
        if browser is not None:
            browser.quit()
        if lb is not None:
            lb.close()
        pods.close()
        shutil.rmtree(tmp, ignore_errors=True)


def tallies(browser):
    """What the page shows, read from its DOM."""
    script = """
      const count = (sel, key) => Object.fromEntries([...document.querySelectorAll(sel)]
          .map((e) => [e.dataset[key], Number(e.dataset.count)]));
      return {total: Number(document.getElementById('total').dataset.count),
              failed: Number(document.getElementById('failed').dataset.count),
              versions: count('#versions li', 'version'), pods: count('#pods tr', 'pod'),
              errors: [...document.querySelectorAll('#errors li')].map((e) => e.textContent),
              events: [...document.querySelectorAll('#events li')].map((e) => e.textContent)};
    """
    return browser.execute_script(script)


def wait_for(browser, condition, limit=20):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        seen = tallies(browser)
        if condition(seen):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the page never showed it: {tallies(browser)}")


def test_the_view_shows_both_versions_and_the_real_split(world):
    browser, _, _ = world
    seen = wait_for(browser, lambda t: t["total"] >= 120)
    assert set(seen["versions"]) == {"v1", "v2"}, seen
    assert sum(seen["versions"].values()) + seen["failed"] == seen["total"], seen
    assert sum(seen["pods"].values()) == sum(seen["versions"].values()), seen
    assert len(seen["pods"]) == 4, seen
    # One pod of four: a quarter of the answers, round robin.
    share = seen["versions"]["v2"] / sum(seen["versions"].values())
    assert 0.15 <= share <= 0.35, seen
    assert any("v2 appeared" in e for e in seen["events"]), seen
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "split.png"))


def test_the_view_speaks_english_by_default(world):
    browser, _, _ = world
    assert browser.execute_script("return document.documentElement.lang") == "en"
    assert browser.find_element("id", "pause").text == "Pause"
    assert browser.title == "testpage · live rollout view"


def test_a_browser_that_prefers_chinese_gets_the_view_in_chinese_on_a_projector(world):
    """One page, both languages in it: a browser whose first language is Chinese sees every
    label in Chinese; `?view=projector` makes the marks and the split large enough for a room."""
    english, _, lb = world
    # Round robin over four pods and two browsers polling in turn: each would see only every
    # other pod. The English view pauses while this one runs.
    english.find_element("id", "pause").click()
    browser = chromium("zh-CN,zh,en", size="1600,1000")
    try:
        browser.get(lb.url + "ui?view=projector")
        browser.find_element("id", "rate").send_keys("20")
        seen = wait_for(browser, lambda t: t["total"] >= 60 and len(t["versions"]) == 2)
        page = browser.execute_script(
            """return {lang: document.documentElement.lang, title: document.title,
                       projector: document.body.classList.contains('projector'),
                       pause: document.getElementById('pause').textContent,
                       total: document.getElementById('total').textContent,
                       heads: [...document.querySelectorAll('h2')].map((h) => h.textContent),
                       mark: document.querySelector('#marks span').getBoundingClientRect().width,
                       split: document.getElementById('split').getBoundingClientRect().height,
                       url: location.search}"""
        )
        assert page["lang"] == "zh-CN", page
        assert page["title"] == "testpage · 发布实况", page
        assert page["pause"] == "暂停", page
        assert page["total"].endswith(" 个回答"), page
        assert "各版本比例" in page["heads"], page
        assert "Pod" in page["heads"], page
        assert any("出现" in e for e in seen["events"]), seen
        assert page["projector"], page
        assert page["url"] == "?view=projector", page
        assert page["mark"] >= 36, page
        assert page["split"] >= 90, page
        # The button leaves the projector view, and says so in Chinese.
        browser.find_element("id", "projector").click()
        assert browser.find_element("id", "projector").text == "投影视图"
        browser.find_element("id", "projector").click()
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / "zh-projector.png"))
        # ?lang=en wins over the browser's preference.
        browser.get(lb.url + "ui?lang=en")
        assert browser.find_element("id", "pause").text == "Pause"
    finally:
        browser.quit()
        english.find_element("id", "pause").click()


def test_faults_set_from_the_page_reach_every_pod_of_one_version(world):
    browser, pods, _ = world
    from selenium.webdriver.support.ui import Select

    wait_for(browser, lambda t: len(t["pods"]) == 4)
    assert browser.find_element("id", "faults").is_displayed()
    Select(browser.find_element("id", "fault-version")).select_by_value("v1")
    rate = browser.find_element("id", "fault-rate")
    rate.clear()
    rate.send_keys("0.5")
    browser.find_element("id", "fault-apply").click()
    result = browser.find_element("id", "fault-result")
    deadline = time.monotonic() + 20
    while "pods set" not in result.text and time.monotonic() < deadline:
        time.sleep(0.2)
    assert result.text == "v1: 3 of 3 pods set", result.text
    rates = [settings(addr)["error_rate"] for addr in pods.addrs]
    assert rates == [0.5, 0.5, 0.5, 0.0], rates
    # The page sees the failures, with their status and version.
    seen = wait_for(
        browser, lambda t: any("status 500 from v1" in e for e in t["errors"])
    )
    assert seen["failed"] > 0
    browser.find_element("id", "fault-reset").click()
    deadline = time.monotonic() + 20
    while [settings(a)["error_rate"] for a in pods.addrs] != [0.0] * 4:
        assert time.monotonic() < deadline, [settings(a) for a in pods.addrs]
        time.sleep(0.2)


def test_a_foreign_page_cannot_frame_the_view(world):
    """Clickjacking: a page of another origin frames /ui; the browser refuses to render it
    (frame-ancestors 'none', X-Frame-Options: DENY), so there is no button to click."""
    browser, pods, _ = world
    view = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        url = f"http://{pods.addrs[0]}/ui"
        browser.get(
            f"data:text/html,<iframe id=f width=800 height=600 src='{url}'></iframe>"
        )
        time.sleep(1.5)
        browser.switch_to.frame(browser.find_element("id", "f"))
        where = browser.execute_script("return location.href")
        buttons = browser.find_elements("id", "fault-apply")
        browser.switch_to.default_content()
        browser.save_screenshot(str(SHOTS / "framed.png"))
        assert where != url, (where, len(buttons))
        assert not buttons, (where, len(buttons))
        # The same page opened as itself works.
        browser.get(url)
        assert wait_for_element(browser, "fault-apply")
    finally:
        browser.close()
        browser.switch_to.window(view)


def wait_for_element(browser, element_id, limit=10):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if browser.find_elements("id", element_id):
            return True
        time.sleep(0.1)
    return False


def test_a_refusing_load_balancer_shows_as_errors_and_the_page_survives(world):
    browser, _, lb = world
    before = tallies(browser)["failed"]
    lb.close()
    seen = wait_for(browser, lambda t: t["failed"] >= before + 10)
    assert any("fetch" in e.lower() for e in seen["errors"]), seen["errors"]
    assert browser.find_element("id", "split").is_displayed()
    browser.save_screenshot(str(SHOTS / "refused.png"))


def settings(addr):
    with urllib.request.urlopen(f"http://{addr}/fault", timeout=2) as answer:
        return json.load(answer)
