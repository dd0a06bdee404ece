"""Python HTTP clients through keystile's forward proxy, configured only as
the README says: HTTPS_PROXY with the kst_ token as the proxy user, and the
exported CA in REQUESTS_CA_BUNDLE (requests: python-binance, pybit,
krakenex, coinbase-advanced-py, betfairlightweight) or SSL_CERT_FILE (httpx:
python-okx). Nothing is passed to the libraries in code: no proxies=, no
verify=.

Reads a JSON plan on stdin: {"requests": [{"lib", "method", "url",
"headers", "body"}]}, sends each request in order with its library, and
prints one JSON line per request: {"lib", "url", "status", "body",
"error"}. Run by TestE2EForwardProxyPython (internal/app).
"""

import json
import sys

import httpx
import requests


def send_requests(session, r):
    resp = session.request(r["method"], r["url"], headers=r["headers"], data=r["body"].encode() or None, timeout=30)
    return resp.status_code, resp.text


def send_httpx(client, r):
    resp = client.request(r["method"], r["url"], headers=r["headers"], content=r["body"].encode() or None)
    return resp.status_code, resp.text


def main():
    plan = json.load(sys.stdin)
    session = requests.Session()  # trust_env: HTTPS_PROXY, REQUESTS_CA_BUNDLE
    client = httpx.Client(timeout=30)  # trust_env: HTTPS_PROXY, SSL_CERT_FILE
    try:
        for r in plan["requests"]:
            out = {"lib": r["lib"], "url": r["url"], "status": 0, "body": "", "error": ""}
            try:
                send = send_httpx if r["lib"] == "httpx" else send_requests
                out["status"], out["body"] = send(client if r["lib"] == "httpx" else session, r)
            except Exception as e:  # reported to the test, which fails on it
                out["error"] = "%s: %s" % (type(e).__name__, e)
            print(json.dumps(out), flush=True)
    finally:
        client.close()
        session.close()
    versions = {"requests": requests.__version__, "httpx": httpx.__version__, "python": sys.version.split()[0]}
    print(json.dumps({"lib": "versions", "url": "", "status": 0, "body": json.dumps(versions), "error": ""}), flush=True)


if __name__ == "__main__":
    main()
