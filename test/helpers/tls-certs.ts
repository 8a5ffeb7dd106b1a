// Test certificates made with the openssl CLI: a CA, a server certificate for "localhost" signed
// by it, and an unrelated second CA (a wrong trust anchor).
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

export interface TestCertificates {
  readonly ca: string;
  readonly otherCa: string;
  readonly serverCert: string;
  readonly serverKey: string;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** Writes the files into `dir`; the server certificate names DNS:localhost only (no IP address). */
export function makeTestCertificates(dir: string): TestCertificates {
  const p = (f: string): string => path.join(dir, f);
  for (const ca of ['ca', 'other-ca']) {
    openssl(
      dir,
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=myproxy test ${ca}`,
      '-keyout',
      `${ca}.key`,
      '-out',
      `${ca}.pem`,
    );
  }
  openssl(
    dir,
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=localhost',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
  );
  require_ext(dir);
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'server.ext',
    '-out',
    'server.pem',
  );
  return { ca: p('ca.pem'), otherCa: p('other-ca.pem'), serverCert: p('server.pem'), serverKey: p('server.key') };
}

function require_ext(dir: string): void {
  execFileSync('sh', ['-c', 'printf "subjectAltName=DNS:localhost\\n" > server.ext'], { cwd: dir });
}
