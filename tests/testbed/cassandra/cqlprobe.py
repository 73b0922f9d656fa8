#!/usr/bin/env python3
"""Minimal CQL native-protocol (v4) client, standard library only.

    cqlprobe.py HOST:PORT [QUERY]

Connects, sends STARTUP, expects READY, then runs QUERY (default:
SELECT release_version FROM system.local) at consistency ONE and prints the
rows, one per line, columns separated by tabs. Exit 0 when the node answered,
1 otherwise (the reason goes to stderr). Used by cassandra.sh as the readiness
check and for ad-hoc queries; no authentication, no TLS, no paging.
"""
import socket
import struct
import sys
import uuid
from datetime import datetime, timezone

VERSION = 0x04
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x03, 0x07, 0x08
CONSISTENCY_ONE = 0x0001


class ProbeError(Exception):
    pass


def _string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _long_string(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by the server")
        buf += chunk
    return bytes(buf)


def _request(sock, stream, opcode, body):
    sock.sendall(struct.pack(">BBhBi", VERSION, 0, stream, opcode, len(body)) + body)
    header = _recv_exact(sock, 9)
    version, _flags, _stream, op, length = struct.unpack(">BBhBi", header)
    if version & 0x7F != VERSION:
        raise ProbeError(f"unexpected protocol version in answer: {version:#x}")
    payload = _recv_exact(sock, length)
    if op == OP_ERROR:
        code = struct.unpack(">i", payload[:4])[0]
        (n,) = struct.unpack(">H", payload[4:6])
        raise ProbeError(f"server error {code:#06x}: {payload[6:6 + n].decode(errors='replace')}")
    return op, payload


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def string(self):
        return self.take(self.short()).decode()

    def bytes(self):
        n = self.int()
        return None if n < 0 else self.take(n)

    def option(self):
        kind = self.short()
        if kind == 0x0000:
            return (kind, self.string())
        if kind in (0x0020, 0x0022):  # list, set
            return (kind, self.option())
        if kind == 0x0021:  # map
            return (kind, self.option(), self.option())
        if kind == 0x0030:  # udt
            self.string(), self.string()
            fields = [(self.string(), self.option()) for _ in range(self.short())]
            return (kind, fields)
        if kind == 0x0031:  # tuple
            return (kind, [self.option() for _ in range(self.short())])
        return (kind,)


def _decode(typ, raw):
    if raw is None:
        return "null"
    kind = typ[0]
    if kind in (0x0001, 0x000A, 0x000D):  # ascii, text, varchar
        return raw.decode(errors="replace")
    if kind in (0x0002, 0x0005, 0x0009, 0x0013, 0x0014, 0x000E):  # bigint, counter, int, smallint, tinyint, varint
        return str(int.from_bytes(raw, "big", signed=True))
    if kind == 0x0004:
        return "true" if raw != b"\x00" else "false"
    if kind in (0x000C, 0x000F):  # uuid, timeuuid
        return str(uuid.UUID(bytes=raw))
    if kind == 0x000B:  # timestamp
        ms = int.from_bytes(raw, "big", signed=True)
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()
    if kind == 0x0007:
        return repr(struct.unpack(">d", raw)[0])
    if kind == 0x0008:
        return repr(struct.unpack(">f", raw)[0])
    return "0x" + raw.hex()


def _rows(payload):
    r = Reader(payload)
    kind = r.int()
    if kind == 0x0001:
        return []  # void
    if kind == 0x0003:
        return [[f"keyspace {r.string()}"]]  # set_keyspace
    if kind == 0x0005:
        return [[f"schema change: {r.string()} {r.string()}"]]
    if kind != 0x0002:
        return [[f"result kind {kind}"]]
    flags, ncols = r.int(), r.int()
    if flags & 0x0002:
        r.bytes()  # paging state
    if flags & 0x0004:
        raise ProbeError("no metadata in rows result")
    if flags & 0x0001:
        r.string(), r.string()
    types = []
    for _ in range(ncols):
        if not flags & 0x0001:
            r.string(), r.string()
        r.string()
        types.append(r.option())
    return [[_decode(t, r.bytes()) for t in types] for _ in range(r.int())]


def query(endpoint, cql, timeout=5.0):
    endpoint = endpoint.split(",")[0].strip()
    host, _, port = endpoint.rpartition(":")
    if not host:
        host, port = endpoint, "9042"
    host = host.strip("[]")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        op, _ = _request(sock, 1, OP_STARTUP, struct.pack(">H", 1) + _string("CQL_VERSION") + _string("3.0.0"))
        if op == OP_AUTHENTICATE:
            raise ProbeError("the node asks for authentication; cqlprobe.py has none")
        if op != OP_READY:
            raise ProbeError(f"expected READY after STARTUP, got opcode {op:#x}")
        body = _long_string(cql) + struct.pack(">HB", CONSISTENCY_ONE, 0)
        op, payload = _request(sock, 2, OP_QUERY, body)
        if op != OP_RESULT:
            raise ProbeError(f"expected RESULT, got opcode {op:#x}")
        return _rows(payload)


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    cql = argv[2] if len(argv) == 3 else "SELECT release_version FROM system.local"
    try:
        rows = query(argv[1], cql)
    except (OSError, ProbeError, struct.error) as e:
        print(f"cqlprobe: {argv[1]}: {e}", file=sys.stderr)
        return 1
    for row in rows:
        print("\t".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
