#!/usr/bin/env python3
"""An `echo` handler for `yard worker --exec echo='python3 echo.py'`.

Speaks docs/exec-protocol.md on stdin/stdout: reads job frames, answers each
with a result frame whose data is the job's payload. A payload `steps:N`
first reports progress N times (progress frames), as a long job would.
Python 3 standard library only. Copy it and change handle() to write your
own handler.
"""
import struct
import sys
import time


def handle(task, attempt, payload, progress):
    """Returns the output bytes; raise an exception to fail the job.

    progress(fraction, message) tells the job's producer how far it is
    (the worker passes on at most one report per job every 100 ms).
    """
    if payload.startswith(b"steps:"):
        steps = int(payload[6:])
        for i in range(1, steps + 1):
            time.sleep(0.15)
            progress(i / steps, "step %d of %d" % (i, steps))
    return payload


def write_frame(stdout, job_id, status, data):
    # Flushed at once: the worker counts the next job (which may already be
    # waiting in stdin) as started when this answer arrives.
    out = job_id + bytes([status]) + data
    stdout.write(struct.pack("<I", len(out)) + out)
    stdout.flush()


def read_exact(stream, n):
    data = stream.read(n)
    if data is None or len(data) < n:
        return None  # end of file: the worker is done with us
    return data


def main():
    # stdin is buffered: the several jobs the worker writes at once come in
    # one read.
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

        def progress(fraction, message=""):
            write_frame(stdout, job_id, 3, struct.pack("<f", fraction) +
                        message.encode("utf-8", "replace"))

        try:
            status, data = 0, handle(task, attempt, payload, progress)
        except MemoryError:
            status, data = 2, b""
        except Exception as e:  # the job fails with this text
            status, data = 1, str(e).encode("utf-8", "replace")
        write_frame(stdout, job_id, status, data)


if __name__ == "__main__":
    sys.exit(main())
