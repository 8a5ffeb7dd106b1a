// Certificates for TLS tests, made with the openssl CLI in a directory of the test's: a CA, a
// server certificate for localhost / 127.0.0.1 / ::1 signed by it, one for the name localhost only
// (to test a host name that does not match), a client certificate signed by it, and a client
// certificate from a second CA that the first does not know.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCertificates {
  readonly dir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** Signed by caCert, subject CN=app1,O=Example. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** Signed by another CA. */
  readonly strangerCert: string;
  readonly strangerKey: string;
  /** The other CA (a wrong trust anchor). */
  readonly otherCaCert: string;
  /** Signed by caCert for DNS:localhost only (no IP address). */
  readonly localhostOnlyCert: string;
  readonly localhostOnlyKey: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string, cn: string): void {
  openssl(dir, [
    'req',
    '-x509',
    ...KEY,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '3650',
    '-subj',
    `/CN=${cn}`,
  ]);
}

function makeSigned(dir: string, name: string, subject: string, ca: string, ext: string | undefined): void {
  openssl(dir, ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
  const extArgs: string[] = [];
  if (ext !== undefined) {
    writeFileSync(join(dir, `${name}.ext`), ext);
    extArgs.push('-extfile', `${name}.ext`);
  }
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '825',
    ...extArgs,
  ]);
}

/** Makes the set in `dir` (about 0.1 s). */
export function makeTestCertificates(dir: string): TestCertificates {
  makeCa(dir, 'ca', 'Test CA');
  makeCa(dir, 'other-ca', 'Other CA');
  makeSigned(dir, 'server', '/CN=localhost', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n');
  makeSigned(dir, 'client', '/O=Example/CN=app1', 'ca', 'extendedKeyUsage=clientAuth\n');
  makeSigned(dir, 'stranger', '/CN=stranger', 'other-ca', 'extendedKeyUsage=clientAuth\n');
  makeSigned(dir, 'localhost-only', '/CN=localhost', 'ca', 'subjectAltName=DNS:localhost\n');
  const p = (f: string): string => join(dir, f);
  return {
    dir,
    caCert: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    strangerCert: p('stranger.pem'),
    strangerKey: p('stranger.key'),
    otherCaCert: p('other-ca.pem'),
    localhostOnlyCert: p('localhost-only.pem'),
    localhostOnlyKey: p('localhost-only.key'),
  };
}
