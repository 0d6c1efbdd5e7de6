/* tls_private.h — what conn.c needs of a TLS context (tls.c) to run a
 * session: private to common/, not part of common.h. */
#ifndef HEARTH_TLS_PRIVATE_H
#define HEARTH_TLS_PRIVATE_H

#include <gnutls/gnutls.h>
#include <stdbool.h>

#include "tls.h"

gnutls_certificate_credentials_t tls_ctx_credentials(const tls_ctx_t *ctx);
gnutls_priority_t tls_ctx_priority(const tls_ctx_t *ctx);
bool tls_ctx_verifies(const tls_ctx_t *ctx);
bool tls_ctx_requests_cert(const tls_ctx_t *ctx);
/* Sessions hold a reference, so a context can be freed while in use. */
tls_ctx_t *tls_ctx_hold(tls_ctx_t *ctx);
void tls_ctx_release(tls_ctx_t *ctx);

#endif
