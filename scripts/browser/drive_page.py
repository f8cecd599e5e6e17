#!/usr/bin/env python3
"""Drives Sluice's web page in headless Chromium through the DevTools protocol, as a user would:
types the token, uploads files, submits, watches the job's progress bar, opens the results, and saves
a screenshot. Prints one JSON line with what it saw; exits non-zero on anything unexpected.

  drive_page.py --url http://127.0.0.1:PORT/ --token TOKEN --screenshot OUT.png FILE...

Needs Debian's chromium and python3-websocket (scripts/setup --browser installs them)."""
import argparse, base64, json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request

import websocket


class Page:
    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=60)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("chromium is not installed")
    profile = tempfile.mkdtemp(prefix="sluice-chromium-")
    process = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1400,1000",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.time() + 60
        while time.time() < deadline and port is None:
            line = process.stderr.readline()
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                port = int(match.group(1))
        if port is None:
            sys.exit("chromium did not start its DevTools endpoint")
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        page = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        page.call("Page.navigate", url=args.url)
        page.wait_for("document.readyState === 'complete' && !!document.getElementById('files')", 30, "the page")

        # The token, as a user types it (kept in localStorage), then the model list appears.
        page.eval(f"(() => {{ const t = document.getElementById('token'); t.value = {json.dumps(args.token)};"
                  " t.dispatchEvent(new Event('change')); })()")
        page.eval("loadModels()")
        page.wait_for(f"[...document.getElementById('model').options].some(o => o.value === {json.dumps(args.model)})",
                      30, "the model list")
        page.eval(f"document.getElementById('model').value = {json.dumps(args.model)}")

        # Upload: the file input gets real files, as a file chooser would set them.
        document = page.call("DOM.getDocument")
        node = page.call("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#files")
        page.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[os.path.abspath(f) for f in args.files])
        chosen = page.eval("document.getElementById('files').files.length")
        if chosen != len(args.files):
            raise RuntimeError(f"the file input holds {chosen} files, not {len(args.files)}")
        page.eval("document.getElementById('go').click()")

        # Watch the job: its progress bar moves (seen through the page's event stream) until done.
        progress_seen = []
        deadline = time.time() + 180
        while time.time() < deadline:
            state = page.eval("(() => { const r = document.querySelector('#jobs tr.selected');"
                              " if (!r) return null; const p = r.querySelector('progress');"
                              " return [r.children[1].textContent, Number(p.value), Number(p.max)]; })()")
            if state and (not progress_seen or progress_seen[-1] != state):
                progress_seen.append(state)
            if state and state[0] == "done":
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"the job did not finish; saw {progress_seen}")

        # The results view: a card per file with labels and a loaded overlay thumbnail.
        expected = len(args.files)
        page.wait_for(f"document.querySelectorAll('#results .card').length === {expected}", 60, "the result cards")
        page.wait_for("[...document.querySelectorAll('#results img')].length > 0 && "
                      "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)",
                      60, "the overlay thumbnails")
        cards = page.eval("[...document.querySelectorAll('#results .card')].map(c => ({"
                          " name: c.querySelector('.name').textContent,"
                          " top: c.querySelector('ol li') ? c.querySelector('ol li').textContent : null,"
                          " images: c.querySelectorAll('img').length }))")
        message = page.eval("document.getElementById('message').textContent")
        shot = page.call("Page.captureScreenshot", format="png")
        os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
        with open(args.screenshot, "wb") as out:
            out.write(base64.b64decode(shot["data"]))
        print(json.dumps({"message": message, "progress": progress_seen, "cards": cards}))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
