#!/usr/bin/env python3
"""Memory per idle connection on an established server, to set beside
`segchat-bench conns` (docs/BENCHMARKS.md).

    scripts/idle-anchor.py nats|nats-tls|mosquitto|mosquitto-tls N

Starts the server itself (apt-get install nats-server mosquitto), opens N
client connections spread over 127.0.0.2.. source addresses, completes
each protocol's handshake (NATS: INFO, then TLS for nats-tls, CONNECT,
PING/PONG; MQTT: TLS first for mosquitto-tls, CONNECT/CONNACK, keep-alive
60 s; TLS on a fresh self-signed P-256 key), waits 12 s as the segchat bench does, and prints the
server's RSS before and after, divided by N. Python's standard library
only; N is bounded by this process's open files.
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from localports import wait_port

PER_SOURCE = 20_000


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_line(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        data += chunk
    return data


def nats_handshake(sock, tls):
    read_line(sock)  # INFO, in clear even when TLS follows
    if tls:
        sock = tls.wrap_socket(sock)
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
    if b"PONG" not in read_line(sock):
        raise RuntimeError("no PONG")
    return sock


def mqtt_handshake(sock, n):
    client_id = f"idle{n}".encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"  # MQTT 3.1.1, clean session, 60 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = var + payload
    sock.sendall(b"\x10" + bytes([len(body)]) + body)
    ack = sock.recv(4)
    if len(ack) < 4 or ack[0] != 0x20 or ack[3] != 0:
        raise RuntimeError(f"no CONNACK: {ack!r}")


def main():
    kinds = ("nats", "nats-tls", "mosquitto", "mosquitto-tls")
    if len(sys.argv) != 3 or sys.argv[1] not in kinds:
        sys.exit(__doc__)
    kind, n = sys.argv[1], int(sys.argv[2])
    work = tempfile.mkdtemp()
    server = None
    try:
        port = 14222 if kind.startswith("nats") else 11883
        tls = None
        key, cert = os.path.join(work, "k.pem"), os.path.join(work, "c.pem")
        if kind.endswith("-tls"):
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                 "-days", "1", "-subj", "/CN=127.0.0.1"],
                check=True, capture_output=True)
            os.chmod(key, 0o644)  # mosquitto drops to its own user
            os.chmod(work, 0o755)
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        if kind == "nats":
            cmd = ["nats-server", "-a", "127.0.0.1", "-p", str(port)]
        elif kind == "nats-tls":
            cmd = ["nats-server", "-a", "127.0.0.1", "-p", str(port),
                   "--tls", "--tlscert", cert, "--tlskey", key]
        else:
            conf = os.path.join(work, "m.conf")
            with open(conf, "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        "max_connections -1\n")
                if tls:
                    f.write(f"certfile {cert}\nkeyfile {key}\n")
            cmd = ["mosquitto", "-c", conf]
        binary = shutil.which(cmd[0]) or f"/usr/sbin/{cmd[0]}"
        server = subprocess.Popen([binary] + cmd[1:], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_port(port, 10.0)
        time.sleep(1)
        before = rss_kib(server.pid)
        socks = []
        start = time.time()
        for i in range(n):
            src = f"127.0.0.{2 + i // PER_SOURCE}"
            raw = socket.create_connection(("127.0.0.1", port), source_address=(src, 0))
            # Without it each handshake waits on delayed ACKs (~40 ms a step).
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if kind.startswith("mosquitto"):
                sock = tls.wrap_socket(raw) if tls else raw
                mqtt_handshake(sock, i)
            else:
                sock = nats_handshake(raw, tls)
            socks.append(sock)
        print(f"{kind}: {n} idle connections open in {time.time() - start:.1f} s")
        time.sleep(12)
        after = rss_kib(server.pid)
        print(f"{kind}: RSS {before // 1024} -> {after // 1024} MiB, "
              f"{(after - before) * 1024 / n / 1000:.1f} KB per connection")
        for s in socks:
            s.close()
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
