"""A loopback TCP relay in front of an API server that can *hang*: accept, answer nothing.

While hung, the relay still accepts connections and keeps the open ones, but moves no byte
in either direction: what a server stuck in a long pause, or a load balancer that stopped
forwarding, looks like to a client. TLS passes through untouched (the API server's
certificate names 127.0.0.1, which the relay's address is too), so a kubeconfig differs
from the server's only in its port: :func:`kubeconfig_via`. When it resumes, the bytes
held meanwhile flow on, as they would from a server that wakes up.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator

import yaml


class HangingProxy:
    """``start()``; ``port`` is where clients connect; ``hang()``/``resume()``; ``stop()``."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    @property
    def hung(self) -> bool:
        return not self._forwarding.is_set()

    def start(self) -> HangingProxy:
        self._spawn(self._accept_loop)
        return self

    def hang(self) -> None:
        """From now on no byte moves; connections are still accepted."""
        self._forwarding.clear()

    def resume(self) -> None:
        self._forwarding.set()

    @contextlib.contextmanager
    def hung_for_a_while(self) -> Iterator[None]:
        self.hang()
        try:
            yield
        finally:
            self.resume()

    def stop(self) -> None:
        self._stopped.set()
        self._forwarding.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._spawn(self._relay, client)

    def _relay(self, client: socket.socket) -> None:
        # The upstream connection is made at once: a hung server's kernel accepts too.
        try:
            upstream = socket.create_connection(self._upstream, timeout=10)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        peers = {client: upstream, upstream: client}
        selector = selectors.DefaultSelector()
        for sock in peers:
            sock.setblocking(True)
            selector.register(sock, selectors.EVENT_READ)
        try:
            while not self._stopped.is_set():
                # Hung: read nothing, so the kernel buffers fill and the peers wait.
                self._forwarding.wait()
                for key, _ in selector.select(timeout=0.2):
                    if not self._forwarding.is_set():
                        break
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in peers:
                with contextlib.suppress(OSError):
                    sock.close()


def kubeconfig_via(kubeconfig: str, proxy: HangingProxy) -> str:
    """``kubeconfig`` with its (only) cluster's server moved to the relay's port."""
    config = yaml.safe_load(kubeconfig)
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    return str(yaml.safe_dump(config))
