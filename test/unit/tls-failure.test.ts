import { describe, expect, it } from 'vitest';
import { tlsFailure } from '../../src/pool/connection.js';

const error = (code: string | undefined): NodeJS.ErrnoException => Object.assign(new Error('x'), { code });

describe('tlsFailure', () => {
  it('calls a refused certificate, ours or the server\'s, certificate', () => {
    for (const code of ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA']) {
      expect(tlsFailure(error(code)), code).toBe('certificate');
    }
  });

  it('calls any other TLS failure tls_handshake, and leaves the rest alone', () => {
    for (const code of ['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'ERR_TLS_HANDSHAKE_TIMEOUT']) expect(tlsFailure(error(code)), code).toBe('tls_handshake');
    for (const code of ['ECONNREFUSED', 'ECONNRESET', undefined]) expect(tlsFailure(error(code)), String(code)).toBeNull();
  });
});
