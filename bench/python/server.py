"""The tutorial's testpage (seed 000), re-implemented in Python 3's http.server for comparison:
the same page, `I am: <eth0 IP>, the version is: <VERSION>`, on port 8080 (or PORT)."""

import fcntl
import http.server
import os
import socket
import struct


def ip_address(interface):
    """eth0's IPv4 address, as the original read it; POD_IP wins when set."""
    if os.environ.get("POD_IP"):
        return os.environ["POD_IP"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(
                s.fileno(), 0x8915, struct.pack("256s", interface[:15].encode())
            )
            return socket.inet_ntoa(packed[20:24])
        except OSError:
            return "127.0.0.1"


PAGE = f"I am: {ip_address('eth0')}, the version is: {os.environ.get('VERSION')}\n".encode()


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0 and a single-threaded server, as the original: one connection per request. With
    # HTTP/1.1 keep-alive a single-threaded server serves one client and starves the others.

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    server = http.server.HTTPServer(
        (host, int(os.environ.get("PORT", "8080"))), Handler
    )
    print(f"listening on {host}:{server.server_address[1]}", flush=True)
    server.serve_forever()
