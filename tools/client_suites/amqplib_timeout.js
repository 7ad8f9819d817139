// Preloaded (node --require) into amqplib's test run: give every test (it/test) and hook a timeout of
// $AMQPLIB_TEST_TIMEOUT ms unless it sets its own. node 20's --test-timeout would also apply to
// each whole test file, so one hung test would cancel the rest of its file.
'use strict';
const nt = require('node:test');
const ms = parseInt(process.env.AMQPLIB_TEST_TIMEOUT || '5000', 10);
function wrap(orig) {
  const f = function (name, options, fn) {
    if (typeof name === 'function') { fn = name; name = fn.name; options = {}; }
    else if (typeof options === 'function') { fn = options; options = {}; }
    options = Object.assign({ timeout: ms }, options || {});
    return orig.call(this, name, options, fn);
  };
  for (const k of Object.keys(orig)) f[k] = orig[k];  // it.skip, it.only, it.todo
  return f;
}
function wrapHook(orig) {
  return function (fn, options) { return orig.call(this, fn, Object.assign({ timeout: ms }, options || {})); };
}
for (const k of ['it', 'test']) nt[k] = wrap(nt[k]);
for (const k of ['before', 'after', 'beforeEach', 'afterEach']) nt[k] = wrapHook(nt[k]);
// A test that failed half-way can leave a socket open, and node 20 then waits for ever for the
// file's process to end; once the file's tests are all done, end it 2 s later.
if (process.env.NODE_TEST_CONTEXT) {  // set in the per-file child processes only
  nt.after(() => { setTimeout(() => process.exit(process.exitCode || 0), 2000).unref(); });
}
