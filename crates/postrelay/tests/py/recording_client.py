#!/usr/bin/env python3
"""Load client for the kill -9 test (tests/durability.rs).

Sends numbered messages over several concurrent SMTP connections. Message N
carries the header `X-Test-Seq: N` (N is unique across connections). The line
"N QUEUE-ID" is appended to RECORD_FILE, and flushed to the kernel, only
AFTER the server's `250 ... queued as QUEUE-ID` reply to the end of data has
been read: the file is the list of messages the server acknowledged.

A connection stops at its first error (reset, EOF, unexpected reply); the
program exits when every connection has stopped or MAX messages were sent.

usage: recording_client.py PORT RECORD_FILE CONNECTIONS [MAX]
"""

import re
import socket
import sys
import threading

QUEUED = re.compile(rb"^250[ -]2\.0\.0 .*queued as ([0-9A-Z]{26})\b")
# About 1 KiB of body, so that the daemon does real work per message.
FILLER = b"".join(b"line %02d of the body of a test message, padded to a realistic width\r\n" % i
                  for i in range(14))


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.rfile = self.sock.makefile("rb")

    def reply(self):
        """One complete reply as (code, [lines]); raises on EOF."""
        lines = []
        while True:
            line = self.rfile.readline(4096)
            if not line.endswith(b"\r\n"):
                raise EOFError("connection closed")
            lines.append(line[:-2])
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def cmd(self, text, expect):
        self.sock.sendall(text + b"\r\n")
        code, lines = self.reply()
        if code != expect:
            raise RuntimeError("%r -> %r" % (text, lines))
        return lines


def worker(port, counter, limit, record, lock, errors):
    try:
        c = Conn(port)
        code, lines = c.reply()
        if code != 220:
            raise RuntimeError("greeting %r" % lines)
        c.cmd(b"EHLO recorder.test", 250)
        while True:
            with lock:
                seq = counter[0]
                counter[0] += 1
            if seq > limit:
                c.cmd(b"QUIT", 221)
                return
            c.cmd(b"MAIL FROM:<recorder@example.com>", 250)
            c.cmd(b"RCPT TO:<rcpt@example.com>", 250)
            c.cmd(b"DATA", 354)
            msg = (b"From: recorder@example.com\r\nTo: rcpt@example.com\r\n"
                   b"Subject: durability test %d\r\nX-Test-Seq: %d\r\n\r\n" % (seq, seq)
                   + FILLER + b".\r\n")
            c.sock.sendall(msg)
            code, lines = c.reply()
            m = QUEUED.match(lines[-1] if code == 250 else b"")
            if code != 250 or not m:
                raise RuntimeError("end of data of %d -> %r" % (seq, lines))
            # Only now was the message acknowledged: record it.
            with lock:
                record.write("%d %s\n" % (seq, m.group(1).decode()))
                record.flush()
    except Exception as e:  # noqa: BLE001 - any failure ends this connection
        with lock:
            errors.append(repr(e))


def main():
    port = int(sys.argv[1])
    path = sys.argv[2]
    conns = int(sys.argv[3])
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 62
    counter = [1]
    lock = threading.Lock()
    errors = []
    with open(path, "a", encoding="ascii") as record:
        threads = [threading.Thread(target=worker,
                                    args=(port, counter, limit, record, lock, errors))
                   for _ in range(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for e in errors:
        print("connection ended: %s" % e, file=sys.stderr)


if __name__ == "__main__":
    main()
