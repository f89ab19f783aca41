/**
 * Certificates for TLS tests, made with the openssl command line into a temp dir: a CA, a server
 * certificate for localhost and 127.0.0.1 signed by it, a client certificate signed by it (mutual
 * TLS), and a second, unrelated CA (a wrong CA). EC P-256 keys: quick to make.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { requireBinary } from './servers.js';

export interface TestCertificates {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** A CA that signed none of the above. */
  otherCaFile: string;
}

function openssl(dir: string, args: string[]): void {
  const result = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`);
}

function makeCa(dir: string, name: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  openssl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-sha256', '-days', '2', '-subj', `/CN=${name}`, '-out', `${name}.crt`]);
}

function makeSigned(dir: string, name: string, ext: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-out', `${name}.csr`]);
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
}

/** Makes every file in `dir` (a temp dir the caller removes). */
export function makeCertificates(dir: string): TestCertificates {
  requireBinary('openssl', 'openssl');
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  makeSigned(dir, 'server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  makeSigned(dir, 'client', 'extendedKeyUsage=clientAuth\n');
  const at = (file: string): string => path.join(dir, file);
  return {
    dir,
    caFile: at('ca.crt'),
    serverCertFile: at('server.crt'),
    serverKeyFile: at('server.key'),
    clientCertFile: at('client.crt'),
    clientKeyFile: at('client.key'),
    otherCaFile: at('other-ca.crt'),
  };
}
