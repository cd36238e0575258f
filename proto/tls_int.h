/*
 * Private to proto/: what the handshake gate (gate.c) needs of the TLS
 * connection (tls.c). Not for other folders.
 */
#ifndef FERRY_PROTO_TLS_INT_H
#define FERRY_PROTO_TLS_INT_H

#include <openssl/ssl.h>

#include "proto/wire.h"

/* What a handshake learnt about its failure, kept with the SSL. */
struct tls_diag {
	int verify_error;   /* first X509_V_ERR_* of the peer's chain; 0 none */
	char cert[600];     /* the refused certificate: name, issuer, dates */
	int alert_received; /* fatal TLS alert the peer sent; -1 none */
};

SSL_CTX *tls_ctx(struct fy_tls *tls);
/* Keeps a tls_diag with ssl (freed with it); before the handshake. */
int tls_diag_attach(SSL *ssl);
/* "certificate NAME (issued by CA, valid A to B) refused: REASON" when
 * the peer's certificate failed verification, else NULL. */
const char *tls_verify_reason(const SSL *ssl, char *buf, size_t len);
/* Wraps an SSL whose server handshake completed on fd (blocking from now
 * on, each read or write bounded by timeout_ms) into a connection. Owns
 * ssl and fd from then on, even on failure. */
int tls_conn_adopt(SSL *ssl, int fd, int timeout_ms, struct fy_conn **out);

#endif
