"""A TCP proxy on loopback that can drop every connection through it at once, with a reset (RST), the way a
failing network, a load balancer or PgBouncer restarting does. The fault benchmark puts it between the app servers
and PostgreSQL.

    proxy = ResettingProxy(listen_port=15432, target=("127.0.0.1", 5432)); proxy.start()
    proxy.reset_all()      # every open connection gets an RST; new connections are accepted as before
    proxy.stop()

Only loopback: it listens on 127.0.0.1 and forwards to the target given (the benchmark's own PostgreSQL)."""

import select
import socket
import struct
import threading


class ResettingProxy:
    def __init__(self, *, listen_port: int, target: tuple[str, int]) -> None:
        if not target[0].startswith("127.") and target[0] != "localhost":
            raise ValueError("the proxy forwards to loopback only")
        self.listen_port, self.target = listen_port, target
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.resets = 0
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", listen_port))
        self.server.listen(256)

    def start(self) -> "ResettingProxy":
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()
        return self

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        a, b = pair
        peers = {a: b, b: a}
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                try:
                    sock.close()
                except OSError:
                    pass

    @staticmethod
    def _rst(sock: socket.socket) -> None:
        # SO_LINGER with a zero timeout makes close() send an RST instead of a FIN.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass

    def reset_all(self) -> int:
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for a, b in pairs:
            self._rst(a)
            self._rst(b)
        self.resets += len(pairs)
        return len(pairs)

    def stop(self) -> None:
        self._stopping.set()
        self.reset_all()
        self.server.close()
