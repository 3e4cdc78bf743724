"""Takes the README's picture of the live view (`/ui`) in the middle of a rolling update: the
lab plays k8s/004-strategies/ramped (v1.0.0 -> v2.0.0, maxSurge 2) and headless Chromium shows
/ui through the Service's NodePort.

    python -m lab.ui_screenshot [--out docs/ui-rollout.png]
"""

import argparse
import pathlib
import shutil
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from lab.common import ROOT, end_on_signals
from lab.run import parse_args, started

NS = "-n strategy-ramped"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "ui-rollout.png")
    out = p.parse_args().out
    args = parse_args(["--duration", "1", "--qps", "100"])
    options = webdriver.ChromeOptions()
    chromium = shutil.which("chromium")
    if chromium is None:
        # Selenium refuses None with a TypeError that does not say what is missing.
        raise SystemExit("ui_screenshot: no chromium on PATH")
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--window-size=1100,760"):
        options.add_argument(flag)
    browser = webdriver.Chrome(
        service=Service(shutil.which("chromedriver")), options=options
    )
    try:
        with started("004-strategies/ramped", {"steps": []}, args) as run:
            run.step("kubectl apply -k k8s/004-strategies/ramped")
            run.step(f"kubectl {NS} rollout status deployment my-app")
            service = run.cluster.service("strategy-ramped", "my-app")
            run.cluster.wait(lambda: run.cluster.settled(service), 30, "endpoints")
            browser.get(service.url() + "ui")
            browser.find_element("id", "rate").send_keys("10")
            time.sleep(4)
            run.step("kubectl apply -f k8s/004-strategies/ramped/app-v2.yaml")
            # Until the new version holds about half of the last answers.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                share = browser.execute_script(
                    "const e = document.querySelector('#versions li[data-version=\"v2.0.0\"]');"
                    "return e ? Number(e.dataset.share) : 0;"
                )
                if share >= 40:
                    break
                time.sleep(0.2)
            out.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(out))
            print(f"saved {out}")
    finally:
        browser.quit()


if __name__ == "__main__":
    end_on_signals("ui-screenshot")
    main()
