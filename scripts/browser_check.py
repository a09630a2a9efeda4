"""scripts/browser-check's browser half: drives the dashboard in headless Chromium (selenium) against a node on
127.0.0.1:PORT started with --demo, and a real WebSocket client (websockets) beside it. Every wait is bounded."""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from websockets.sync.client import connect

port, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
    options.add_argument(argument)
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(browser, 15)
failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        failures.append(what)


def text(element_id):
    return browser.find_element(By.ID, element_id).text


def fill(element_id, value):
    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


try:
    browser.get(base + "/")
    # The quote board fills and ticks (the demo publishes every 100 ms; the throttle lets one per 100 ms through).
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#quotes tbody tr")) >= 5)
    first = {r.get_attribute("data-symbol"): r.find_elements(By.TAG_NAME, "td")[4].text
             for r in browser.find_elements(By.CSS_SELECTOR, "#quotes tbody tr")}
    time.sleep(1.5)
    later = {r.get_attribute("data-symbol"): r.find_elements(By.TAG_NAME, "td")[4].text
             for r in browser.find_elements(By.CSS_SELECTOR, "#quotes tbody tr")}
    check(sorted(first) == ["AAPL", "BTC-USD", "ETH-USD", "GOOG", "MSFT"], f"quote board shows the demo symbols: {sorted(first)}")
    check(all(int(later[s]) > int(first[s]) for s in first), "quote board updates (every seq moved on)")
    check(text("feed-status") == "live", "feed status says live")

    # A bad token: the API's own 401 message.
    fill("token", "not-a-token")
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait.until(lambda b: b.find_element(By.ID, "admin-error").is_displayed())
    check(text("admin-error").startswith("401 UNAUTHORIZED:"), f"a bad token shows the API's 401: {text('admin-error')!r}")

    # The admin token: live figures.
    fill("token", token)
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#figures .figure")) >= 10)
    check(not browser.find_element(By.ID, "admin-error").is_displayed(), "the error went away")
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#figures .label")]
    check("connections" in labels and "delivered / s" in labels, f"stats figures shown: {labels}")
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#channels tbody tr")) >= 1)
    check(any("market_data:" in r.text for r in browser.find_elements(By.CSS_SELECTOR, "#channels tbody tr")),
          "live channels listed with the board's subscriptions")

    # A broadcast from the form reaches a WebSocket client; a disconnect from the form closes it with 4000.
    with connect(f"ws://127.0.0.1:{port}/ws?subscribe=system_status", open_timeout=5) as client:
        welcome = json.loads(client.recv(timeout=5))
        connection_id = welcome["connectionId"]
        fill("target", "system_status")
        fill("event", "notice")
        fill("data", '{"text":"from the dashboard"}')
        browser.find_element(By.CSS_SELECTOR, "#broadcast-form button[type=submit]").click()
        got = None
        deadline = time.time() + 10
        while time.time() < deadline and got is None:
            message = json.loads(client.recv(timeout=5))
            if message.get("event") == "notice":
                got = message
        check(got is not None and got["data"] == {"text": "from the dashboard"}, "a broadcast from the form reached the client")
        wait.until(lambda b: b.find_element(By.ID, "broadcast-result").text.startswith("published"))
        check("seq" in text("broadcast-result"), f"the form shows the result: {text('broadcast-result')!r}")

        Select(browser.find_element(By.ID, "disconnect-kind")).select_by_value("connection")
        fill("disconnect-target", connection_id)
        browser.find_element(By.CSS_SELECTOR, "#disconnect-form button[type=submit]").click()
        code = None
        try:
            while True:
                client.recv(timeout=10)
        except Exception:
            code = client.close_code
        check(code == 4000, f"the disconnect form closed the client with 4000 (got {code})")
        wait.until(lambda b: b.find_element(By.ID, "disconnect-result").text != "")
        check(text("disconnect-result") == "disconnected 1", f"the form shows it: {text('disconnect-result')!r}")

    # The node restarts: the board notices, reconnects with backoff and ticks again.
    import subprocess
    before = {r.get_attribute("data-symbol"): r.find_elements(By.TAG_NAME, "td")[5].text
              for r in browser.find_elements(By.CSS_SELECTOR, "#quotes tbody tr")}
    subprocess.run([f"{out}/restart-node"], check=True, timeout=30)
    WebDriverWait(browser, 20).until(lambda b: b.find_element(By.ID, "feed-status").text == "live")
    time.sleep(1.5)
    after = {r.get_attribute("data-symbol"): r.find_elements(By.TAG_NAME, "td")[5].text
             for r in browser.find_elements(By.CSS_SELECTOR, "#quotes tbody tr")}
    check(all(after[s] != before[s] for s in before), "after a node restart the board reconnected and ticks again")
    token = open(f"{out}/node.out").read().splitlines()[1]  # the new node's token
    fill("token", token)
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()

    # Screenshots from the top of the page, after a few stats refreshes: desktop, then phone width.
    time.sleep(4)
    browser.set_window_size(1280, 1700)
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    browser.save_screenshot(f"{out}/dashboard-desktop.png")
    browser.set_window_size(390, 1400)
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    browser.save_screenshot(f"{out}/dashboard-phone.png")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    check(width <= 400, f"no horizontal scrolling of the page at phone width (scroll width {width})")
    # Expected entries: the bad token's 401, and refused reconnects while the node restarted.
    expected = ("status of 401", "ERR_CONNECTION_REFUSED")
    logs = [entry for entry in browser.get_log("browser")
            if entry.get("level") == "SEVERE" and not any(e in entry.get("message", "") for e in expected)]
    check(not logs, f"no other errors in the browser console (CSP violations included): {logs[:3]}")
finally:
    browser.quit()

print(f"screenshots: {out}/dashboard-desktop.png, {out}/dashboard-phone.png")
if failures:
    print(f"browser check: {len(failures)} failed")
    sys.exit(1)
print("browser check: passed")
