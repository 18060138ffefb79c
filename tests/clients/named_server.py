"""An upstream HTTP/1.1 server that names itself: every request is answered 200 with the body NAME.

usage: named_server.py NAME PORT      (PORT 0: an ephemeral port)
Prints `listening on PORT` once it accepts connections on 127.0.0.1. A real process, so that a test can kill
it (SIGKILL) and start it again on the same port.
"""
import http.server
import sys

name, port = sys.argv[1], int(sys.argv[2])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


srv = Server(("127.0.0.1", port), Handler)
print(f"listening on {srv.server_address[1]}", flush=True)
srv.serve_forever()
