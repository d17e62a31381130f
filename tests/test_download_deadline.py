"""A download's ``timeout`` is a deadline for the whole transfer, not for each read."""

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from socialals.datasets import DownloadError, fetch

BODY_BYTES = 30
INTERVAL = 0.05  # one byte every 0.05 s: 1.5 s for the whole body, every single read is quick


@pytest.fixture
def trickling_url(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(BODY_BYTES))
            self.end_headers()
            try:
                for _ in range(BODY_BYTES):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(INTERVAL)
            except OSError:  # the client gave up: that is the point
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/slow.bin"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_trickling_server_is_cut_at_the_total_deadline(trickling_url, tmp_path):
    with pytest.raises(DownloadError, match=r"did not finish within timeout=0.5 s") as info:
        fetch(trickling_url, dest_dir=tmp_path, progress=False, timeout=0.5)
    received = int(re.search(r"\(([\d,]+) bytes received\)", str(info.value)).group(1).replace(",", ""))
    # every read returned well within 0.5 s, so a per-read timeout would have waited for all of it
    assert 0 < received < BODY_BYTES
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part is left


def test_a_fast_enough_download_is_unaffected(trickling_url, tmp_path):
    path = fetch(trickling_url, dest_dir=tmp_path, progress=False, timeout=60.0)
    assert path.read_bytes() == b"x" * BODY_BYTES
