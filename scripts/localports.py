"""What the anchor scripts (idle-anchor.py, fanout-anchors.py) share."""

import socket
import time


def wait_port(port, timeout):
    """Waits until something accepts TCP on 127.0.0.1:`port`, for at most
    `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")
