/**
 * TLS material for connections to servers: reading the CA, certificate and key files and checking
 * that they can be used, at load (and so at every reload, which loads again). Kept apart from the
 * YAML walk so that whatever (re)reads a config reads the files the same way. Messages name the
 * file and never quote its content.
 */
import { createSecureContext } from 'node:tls';

export type TlsFileField = 'ca_file' | 'cert_file' | 'key_file';

export interface TlsFiles {
  /** Absolute paths; null = not given. */
  caFile: string | null;
  certFile: string | null;
  keyFile: string | null;
}

export interface TlsMaterial {
  ca: string | null;
  cert: string | null;
  key: string | null;
}

export interface TlsFileProblem {
  /** The field the problem is about; null = about the combination (reported at the tls mapping). */
  field: TlsFileField | null;
  message: string;
}

const WHAT: Record<TlsFileField, { name: string; pem: RegExp; expected: string }> = {
  ca_file: { name: 'CA file', pem: /-----BEGIN [A-Z0-9 ]*CERTIFICATE-----/, expected: 'PEM certificates' },
  cert_file: { name: 'certificate file', pem: /-----BEGIN [A-Z0-9 ]*CERTIFICATE-----/, expected: 'a PEM certificate' },
  key_file: { name: 'key file', pem: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, expected: 'a PEM private key' },
};

/**
 * Reads and checks the files: each readable and PEM of the right kind, cert and key given together
 * and matching, and the lot accepted by OpenSSL (createSecureContext). `readFile` is injectable for
 * tests, like the password files'.
 */
export function readTlsFiles(files: TlsFiles, readFile: (path: string) => string): { material: TlsMaterial; problems: TlsFileProblem[] } {
  const problems: TlsFileProblem[] = [];
  const read = (field: TlsFileField, path: string | null): string | null => {
    if (path === null) return null;
    const what = WHAT[field];
    let text: string;
    try {
      text = readFile(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      problems.push({ field, message: `cannot read ${what.name} ${path}${code === undefined ? '' : ` (${code})`}` });
      return null;
    }
    if (!what.pem.test(text)) {
      problems.push({ field, message: `${what.name} ${path} does not hold ${what.expected}` });
      return null;
    }
    return text;
  };
  const material: TlsMaterial = { ca: read('ca_file', files.caFile), cert: read('cert_file', files.certFile), key: read('key_file', files.keyFile) };
  if ((files.certFile === null) !== (files.keyFile === null)) {
    const missing: TlsFileField = files.certFile === null ? 'cert_file' : 'key_file';
    problems.push({ field: missing === 'cert_file' ? 'key_file' : 'cert_file', message: `a client certificate needs both cert_file and key_file; ${missing} is missing` });
  }
  if (problems.length === 0) {
    const problem = contextProblem(material);
    if (problem !== null) problems.push(problem);
  }
  return { material, problems };
}

/** What OpenSSL says about the material, in words that name the files' roles; null = usable. */
function contextProblem(material: TlsMaterial): TlsFileProblem | null {
  try {
    createSecureContext({ ca: material.ca ?? undefined, cert: material.cert ?? undefined, key: material.key ?? undefined });
    return null;
  } catch (error) {
    const message = (error as Error).message;
    if (/key values mismatch/i.test(message)) return { field: 'key_file', message: 'key_file is not the key of cert_file' };
    const field: TlsFileField = /key|decrypt|bad password/i.test(message) ? 'key_file' : material.cert !== null && /cert/i.test(message) ? 'cert_file' : 'ca_file';
    return { field, message: `OpenSSL cannot use the ${WHAT[field].name}: ${message}` };
  }
}
