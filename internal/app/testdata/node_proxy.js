// Calls each URL given on the command line through keystile's forward
// proxy with nothing but Node's standard library, the way an SDK's
// HTTPS_PROXY agent does: CONNECT host:port with Proxy-Authorization built
// from the proxy URL's user info, then TLS verified against the default
// roots plus NODE_EXTRA_CA_CERTS (keystile's exported CA), then HTTP/1.1.
// Prints one JSON line per URL: {"url", "status", "body"} or {"url", "error"}.
//
//   HTTPS_PROXY=http://kst_...@127.0.0.1:7879 NODE_EXTRA_CA_CERTS=ca.pem node node_proxy.js https://...
'use strict';
const http = require('http');
const net = require('net');
const tls = require('tls');

const proxy = new URL(process.env.HTTPS_PROXY);
const auth = 'Basic ' + Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password)).toString('base64');

function tunnel(host, port) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: host + ':' + port,
      headers: { 'Proxy-Authorization': auth, Host: host + ':' + port },
    });
    req.on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new Error('CONNECT answered ' + res.statusCode));
        return;
      }
      // For a DNS name Node sends it as SNI and verifies it; for an IP
      // address it sends no SNI and verifies the IP (host).
      const opts = { socket, host };
      if (!net.isIP(host)) opts.servername = host;
      const t = tls.connect(opts, () => resolve(t));
      t.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function get(raw) {
  const u = new URL(raw);
  const sock = await tunnel(u.hostname, u.port || '443');
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port || 443, method: 'GET', path: u.pathname + u.search,
      createConnection: () => sock, // no agent: this socket, not a new connection
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => { sock.destroy(); resolve({ url: raw, status: res.statusCode, body: body.slice(0, 400) }); });
    });
    req.on('error', reject);
    req.end();
  });
}

(async () => {
  for (const raw of process.argv.slice(2)) {
    try {
      console.log(JSON.stringify(await get(raw)));
    } catch (e) {
      console.log(JSON.stringify({ url: raw, error: String(e && e.message || e) }));
    }
  }
})();
