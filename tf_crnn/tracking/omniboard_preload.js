// Loaded by `node --require` before Omniboard's own code (tf_crnn/tracking/board.py starts it so).
//
// 1. Omniboard calls app.listen(port) without an address, which listens on every network interface, and it has
//    no option to choose one. Here a listen(port, ...) without an address gets TF_CRNN_BOARD_HOST (127.0.0.1
//    unless tf-crnn board --host says otherwise).
// 2. Omniboard takes basic authentication only as its argument -u USER:PASSWORD:SECRET, which every user of the
//    machine can read in the process list. tf-crnn passes user and password in the environment instead; they
//    are appended to this process's own argument list here (not visible outside it) and removed from its
//    environment. The session secret is random per start.
'use strict';
const net = require('net');
const crypto = require('crypto');

const host = process.env.TF_CRNN_BOARD_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const numeric = typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port));
  if (numeric && typeof args[1] !== 'string') {
    args.splice(1, 0, host); // listen(port[, backlog][, callback]) -> listen(port, host[, backlog][, callback])
  }
  return listen.apply(this, args);
};

const password = process.env.TF_CRNN_BOARD_PASSWORD;
if (password) {
  const user = process.env.TF_CRNN_BOARD_USER || 'admin';
  process.argv.push('-u', `${user}:${password}:${crypto.randomBytes(24).toString('hex')}`);
}
delete process.env.TF_CRNN_BOARD_PASSWORD;
