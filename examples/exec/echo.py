#!/usr/bin/env python3
"""An `echo` handler for `yard worker --exec echo='python3 echo.py'`.

Speaks docs/exec-protocol.md on stdin/stdout: reads job frames, answers each
with a result frame whose data is the job's payload. Python 3 standard
library only. Copy it and change handle() to write your own handler.
"""
import struct
import sys


def handle(task, attempt, payload):
    """Returns the output bytes; raise an exception to fail the job."""
    return payload


def read_exact(stream, n):
    data = stream.read(n)
    if data is None or len(data) < n:
        return None  # end of file: the worker is done with us
    return data


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = read_exact(stdin, 4)
        if head is None:
            return 0
        (length,) = struct.unpack("<I", head)
        body = read_exact(stdin, length)
        if body is None:
            return 0
        job_id = body[:16]
        attempt, task_len = struct.unpack_from("<HH", body, 16)
        task = body[20:20 + task_len].decode("utf-8", "replace")
        payload = body[20 + task_len:]
        try:
            status, data = 0, handle(task, attempt, payload)
        except MemoryError:
            status, data = 2, b""
        except Exception as e:  # the job fails with this text
            status, data = 1, str(e).encode("utf-8", "replace")
        out = job_id + bytes([status]) + data
        stdout.write(struct.pack("<I", len(out)) + out)
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
