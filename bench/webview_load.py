"""The web view's own load on the server: requests/s, subscriptions, frames/s, server CPU.

``python -m bench.webview_load [--seconds 30]`` starts ``pyexchange demo`` (the bots
trading, the venue's default rate limits, fsync batch) and headless chromium, and for each
page (the market list without a key and with one, a market page with a key, the operator
page) keeps it open for ``--seconds``, then closes it, and reads the server's Prometheus
endpoint before and after: REST requests by route (the page load's static files counted
apart), WebSocket connections and frames sent (counted when a connection closes), and the
server process's CPU time, against a window with no page open (the bots alone). The
page's own counters (window.pyexchange) give its subscriptions and frames received.
Prints a Markdown table (docs/webview.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SLUG = "rain-in-paris-tomorrow"
_SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? ([-+0-9.eE]+|NaN|\+Inf)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            out[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_by_route(before: dict, after: dict) -> dict[str, float]:
    routes: dict[str, float] = {}
    for (name, labels), value in after.items():
        if name != "pyexchange_http_requests_total":
            continue
        route = re.search(r'route="([^"]*)"', labels).group(1)  # type: ignore[union-attr]
        routes[route] = routes.get(route, 0.0) + value - before.get((name, labels), 0.0)
    return {r: v for r, v in routes.items() if v > 0}


def frames(before: dict, after: dict) -> float:
    keys = [k for k in after if k[0] == "pyexchange_websocket_frames_total"]
    return sum(after[k] - before.get(k, 0.0) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    root = Path(tempfile.mkdtemp(prefix="webview-load-"))
    http_port, metrics_port = _free_port(), _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pyexchange", "demo", "--data-dir", str(root / "data"),
         "--port", "0", "--http-port", str(http_port), "--metrics-port", str(metrics_port),
         "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    browser = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                scrape(metrics_port)
                urllib.request.urlopen(url + "/ops/v1/health", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        keys = json.loads((root / "data" / "keys.json").read_text())["keys"]
        key = next(k for k in keys if k["name"] == "pm-trader-1")
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        time.sleep(5)  # the bots get going
        scenarios: list[tuple[str, str | None, bool]] = [
            ("no page (the bots alone)", None, False),
            ("market list, no key (polled)", "/#/", False),
            ("market list, with a key", "/#/", True),
            (f"market page ({SLUG}), with a key", f"/#/market/{SLUG}", True),
            ("operator page, with a key", "/#/ops", True),
        ]
        rows = []
        for title, path, keyed in scenarios:
            browser.get("about:blank")
            time.sleep(1)
            if path is not None:
                browser.get(url + "/")
                if keyed and not browser.execute_script("return sessionStorage.length"):
                    browser.find_element("id", "key-id").send_keys(key["key_id"])
                    browser.find_element("id", "key-secret").send_keys(key["secret"])
                    browser.find_element("id", "key-use").click()
                browser.get(url + path)
                time.sleep(2)  # loaded and subscribed: what follows is the steady state
            before, cpu0, t0 = scrape(metrics_port), cpu_seconds(server.pid), time.monotonic()
            page_before = browser.execute_script("return window.pyexchange || null")
            time.sleep(args.seconds)
            page_after = browser.execute_script("return window.pyexchange || null")
            if keyed:
                subscriptions = browser.execute_script(
                    "const l = window.pyexchange.live; return [l.marketStream, l.privateStream]"
                    ".map(s => s ? [...s.subscriptions.values()]"
                    ".map(b => b.subscriptionType.replace('SUBSCRIPTION_TYPE_', '') + ' '"
                    " + (b.marketSlugs ? b.marketSlugs.length : 'all')).join(', ') : '')"
                )
            else:
                subscriptions = ["", ""]
            if path is not None:  # its sockets closed: the server counts their frames then
                browser.execute_script("window.pyexchange.live.stop()")
            time.sleep(1.5)
            after, cpu1, elapsed = (
                scrape(metrics_port),
                cpu_seconds(server.pid),
                time.monotonic() - t0,
            )
            routes = requests_by_route(before, after)
            page_frames = (
                (page_after["frameCounter"]["frames"] - page_before["frameCounter"]["frames"])
                / args.seconds
                if page_after and page_before
                else 0.0
            )
            rows.append(
                (title, sum(routes.values()) / elapsed, routes, frames(before, after) / elapsed,
                 page_frames, (cpu1 - cpu0) / elapsed * 100, subscriptions)
            )  # fmt: skip
        print(f"{args.seconds:.0f} s per page; server CPU in % of one core\n")
        print("| page | REST requests/s | WebSocket frames/s (server sent, page got) "
              "| server CPU | subscriptions (markets; private) |")  # fmt: skip
        print("|---|---|---|---|---|")
        for title, rate, _, sent, got, cpu, subs in rows:
            shown = "; ".join(s for s in subs if s) or "none"
            print(f"| {title} | {rate:.2f} | {sent:.1f}, {got:.1f} | {cpu:.1f} % | {shown} |")
        print()
        for title, _, routes, *_ in rows:
            detail = ", ".join(f"{r} {v / args.seconds:.2f}/s" for r, v in sorted(routes.items()))
            print(f"- {title}: {detail or 'no request'}")
    finally:
        if browser is not None:
            browser.quit()
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
