// Preloaded (node --require) into amqplib's test run: its tests connect to amqp://localhost,
// i.e. port 5672, in many places; send those connections to $AMQP_PORT instead.
// Only the port changes; host names (localhost, [::1]) are left as the tests wrote them.
'use strict';
const net = require('node:net');
const target = parseInt(process.env.AMQP_PORT || '5672', 10);
const orig = net.connect;
function connect(...args) {
  const o = args[0];
  if (o && typeof o === 'object' && String(o.port) === '5672') args[0] = { ...o, port: target };
  else if ((typeof o === 'number' || typeof o === 'string') && String(o) === '5672') args[0] = target;
  return orig.apply(this, args);
}
net.connect = connect;
net.createConnection = connect;
