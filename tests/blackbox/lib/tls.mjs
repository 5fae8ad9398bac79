// TLS helpers for the suites: certificates made by `openssl req -x509` in a temporary directory,
// TLS connections that resolve once the handshake is done, HTTPS requests verified against a CA.
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { EVENT_TIMEOUT, withTimeout } from './util.mjs';

const SAN = 'subjectAltName=DNS:localhost,IP:127.0.0.1';

function openssl(args) {
  execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

// A temporary directory for certificates, removed by remove().
export function certDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-tls-'));
  return { dir, file: (name) => path.join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

// Reads a certificate file into {certFile, keyFile, cert, key, ca, fingerprint} (ca: what a client trusts).
function describe(certFile, keyFile, caPem) {
  const cert = readFileSync(certFile, 'utf8');
  return {
    certFile,
    keyFile,
    cert,
    key: readFileSync(keyFile, 'utf8'),
    ca: caPem ?? cert,
    fingerprint: new X509Certificate(cert).fingerprint256,
  };
}

// A self-signed EC P-256 certificate for localhost and 127.0.0.1 (valid two days), in dir.
export function makeCert(dir, name = 'server', cn = 'localhost') {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${cn}`, '-addext', SAN]);
  return describe(certFile, keyFile);
}

// A root CA, an intermediate CA and a leaf for localhost signed by the intermediate. The leaf's
// file holds the leaf, then the intermediate (a PEM chain); `ca` is the root alone, so a client
// verifies only if the server sends the chain.
export function makeChain(dir, name = 'chained') {
  const f = (n) => path.join(dir, `${name}-${n}`);
  const key = (n) => ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${n}.key`)];
  writeFileSync(f('ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  writeFileSync(f('leaf.ext'), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n${SAN}\n`);
  openssl(['req', '-x509', ...key('root'), '-out', f('root.crt'), '-days', '2', '-subj', `/CN=${name} root`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  openssl(['req', '-new', ...key('int'), '-out', f('int.csr'), '-subj', `/CN=${name} intermediate`]);
  openssl(['x509', '-req', '-in', f('int.csr'), '-CA', f('root.crt'), '-CAkey', f('root.key'),
    '-CAcreateserial', '-days', '2', '-extfile', f('ca.ext'), '-out', f('int.crt')]);
  openssl(['req', '-new', ...key('leaf'), '-out', f('leaf.csr'), '-subj', '/CN=localhost']);
  openssl(['x509', '-req', '-in', f('leaf.csr'), '-CA', f('int.crt'), '-CAkey', f('int.key'),
    '-CAcreateserial', '-days', '2', '-extfile', f('leaf.ext'), '-out', f('leaf-only.crt')]);
  writeFileSync(f('leaf.crt'), readFileSync(f('leaf-only.crt'), 'utf8') + readFileSync(f('int.crt'), 'utf8'));
  return describe(f('leaf.crt'), f('leaf.key'), readFileSync(f('root.crt'), 'utf8'));
}

// Opens a TLS connection; resolves with the socket once the handshake is done, rejects with the
// handshake's error (e.g. code ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: the server's alert).
export function tlsConnect(port, options = {}, timeoutMs = EVENT_TIMEOUT) {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
  const done = new Promise((resolve, reject) => {
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
  return withTimeout(done, timeoutMs, `TLS handshake with 127.0.0.1:${port}`).catch((err) => {
    socket.destroy();
    throw err;
  });
}

// The error a handshake ends with (fails the test if it succeeds).
export async function tlsRefusal(port, options = {}) {
  try {
    const socket = await tlsConnect(port, options);
    socket.destroy();
  } catch (err) {
    return err;
  }
  throw new Error(`the TLS handshake with ${JSON.stringify(options)} succeeded`);
}

// GET over HTTPS, verified against `ca`; resolves {status, headers, text, socket facts}.
export function httpsGet(port, pathname, { ca, headers = {}, timeoutMs = EVENT_TIMEOUT } = {}) {
  const request = new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', port, path: pathname, ca, servername: 'localhost', headers, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () =>
          resolve({
            status: res.statusCode,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
            protocol: res.socket.getProtocol?.(),
            alpn: res.socket.alpnProtocol,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
  return withTimeout(request, timeoutMs, `HTTPS GET ${pathname}`);
}
