// The Node peer of scripts/bench: the shape of a typical hand-written broadcaster on the `ws` package
// (Debian node-ws): a rooms map, JSON.stringify once per publish, publishes over HTTP POST.
// Usage: node ws-server.js PORT
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8090);
const rooms = new Map();

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/publish') {
    res.writeHead(404);
    res.end();
    return;
  }
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const message = JSON.parse(body);
    const text = JSON.stringify({ type: 'message', channel: message.channel, event: message.event, data: message.data, ts: Date.now() });
    const room = rooms.get(message.channel);
    let recipients = 0;
    if (room) for (const socket of room) { socket.send(text); recipients++; }
    const answer = JSON.stringify({ channel: message.channel, recipients });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
    res.end(answer);
  });
});

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false });
wss.on('connection', (socket) => {
  const joined = new Set();
  socket.on('message', (data) => {
    let message;
    try { message = JSON.parse(data); } catch { return; }
    if (message.type === 'subscribe' && typeof message.channel === 'string') {
      if (!rooms.has(message.channel)) rooms.set(message.channel, new Set());
      rooms.get(message.channel).add(socket);
      joined.add(message.channel);
      socket.send(JSON.stringify({ type: 'subscribed', channel: message.channel }));
    }
  });
  socket.on('close', () => {
    for (const channel of joined) {
      const room = rooms.get(channel);
      room.delete(socket);
      if (room.size === 0) rooms.delete(channel);
    }
  });
});

server.listen(port, '127.0.0.1');
