#!/usr/bin/env node
// An `echo` handler for `yard worker --exec echo='node echo.js'`.
//
// Speaks docs/exec-protocol.md on stdin/stdout: reads job frames, answers
// each with a result frame whose data is the job's payload. Node.js only, no
// npm packages. Copy it and change handle() to write your own handler.
'use strict';

// Returns the output (a Buffer); throw to fail the job.
function handle(task, attempt, payload) {
  return payload;
}

let pending = Buffer.alloc(0);

function answer(body) {
  const id = body.subarray(0, 16);
  const attempt = body.readUInt16LE(16);
  const taskLen = body.readUInt16LE(18);
  const task = body.toString('utf8', 20, 20 + taskLen);
  const payload = body.subarray(20 + taskLen);
  let status = 0;
  let data;
  try {
    data = Buffer.from(handle(task, attempt, payload));
  } catch (e) {
    status = e instanceof RangeError && /memory/i.test(e.message) ? 2 : 1;
    data = Buffer.from(String(e && e.message ? e.message : e), 'utf8');
  }
  const head = Buffer.alloc(4 + 16 + 1);
  head.writeUInt32LE(16 + 1 + data.length, 0);
  id.copy(head, 4);
  head[20] = status;
  return [head, data];
}

process.stdin.on('data', (chunk) => {
  pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
  const out = [];
  // Every whole frame in what has arrived; answers go out in one write.
  // Safe because handle() is instant: the worker counts a job as started
  // when the answer before it arrives, so a handler that takes time should
  // write each answer as soon as it has it.
  while (pending.length >= 4) {
    const length = pending.readUInt32LE(0);
    if (pending.length < 4 + length) break;
    out.push(...answer(pending.subarray(4, 4 + length)));
    pending = pending.subarray(4 + length);
  }
  if (out.length) process.stdout.write(Buffer.concat(out));
});
process.stdin.on('end', () => process.exit(0));
