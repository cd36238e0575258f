/*
 * The repository server behind `ferry-repo serve`: accepts agents and
 * admins over mutual TLS and runs backup, list and restore sessions on the
 * repository. Private to ferry-repo (image/server.cmake).
 */
#ifndef FERRY_IMAGE_REPO_SERVER_H
#define FERRY_IMAGE_REPO_SERVER_H

#include "image/image.h"
#include "proto/wire.h"

struct repo_server_opts {
	const char *root;
	const char *listen;   /* host:port */
	struct fy_tls_opts tls;
	unsigned workers;     /* block verify/store threads (0: one per core) */
	unsigned max_clients; /* connections served at once */
	int idle_timeout_ms;  /* a client silent this long is dropped */
	/* Before authentication (proto/wire.h, the handshake gate). */
	int handshake_timeout_ms;            /* --handshake-timeout */
	unsigned max_handshakes;             /* --max-handshakes */
	unsigned max_handshakes_per_address; /* --max-handshakes-per-address */
	const char *ready_file; /* written with the bound address once listening */
};

/* Serves until SIGTERM/SIGINT. Returns 0 or -errno. */
int repo_server_run(const struct repo_server_opts *opts);

#endif
