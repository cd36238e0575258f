/*
 * nbd: a disk source that reads an export of an NBD server (nbdkit,
 * qemu-nbd, nbd-server) over TCP or a Unix socket, optionally with TLS.
 *
 * The client speaks the fixed newstyle handshake of the NBD protocol
 * (doc/proto.md of the NBD project), negotiates structured replies and
 * the base:allocation metadata context, pipelines reads on one or more
 * connections and reconnects when a connection drops. docs/NBD.md says
 * what is and is not supported.
 *
 * Everything here follows common.h: 0 or -errno plus fy_err_msg().
 */
#ifndef FERRY_NBD_H
#define FERRY_NBD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

#define FY_NBD_DEFAULT_PORT 10809

struct fy_nbd_writer; /* writer.c */

/* Upper bounds on the tunables, so a typo in a config file cannot ask
 * for a million connections. */
#define FY_NBD_MAX_IN_FLIGHT 1024
#define FY_NBD_MAX_CONNECTIONS 16
#define FY_NBD_MAX_RECONNECTS 100

struct fy_nbd_opts {
	/* Refuse anything but TLS (nbds:// URIs always require it; this
	 * makes nbd:// require it too, as VDDK's nbdssl mode does). */
	bool tls_required;
	/* PEM files; NULL tls_ca means the system's trust store. A client
	 * certificate is sent only when both tls_cert and tls_key are set. */
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	/* Name the server certificate must carry; default: the URI host
	 * (a DNS name or an IP address). */
	const char *tls_server_name;
	/* Milliseconds; 0 means wait forever. */
	unsigned connect_timeout_ms;   /* TCP or Unix socket connect */
	unsigned negotiate_timeout_ms; /* the whole handshake, TLS included */
	unsigned read_timeout_ms;      /* longest wait for a reply to move */
	unsigned write_timeout_ms;     /* longest wait to send a request */
	unsigned max_in_flight;        /* requests outstanding per connection */
	/* More than 1 is used only when the server advertises
	 * NBD_FLAG_CAN_MULTI_CONN: a batch is then split among the
	 * connections, each read on a thread of its own. */
	unsigned max_connections;
	/* Consecutive reconnects without a completed request before a
	 * read fails for good; 0 disables reconnecting. */
	unsigned reconnect_attempts;
	/* Delay before the first reconnect; it doubles on each attempt. */
	unsigned reconnect_base_ms;
	/* The client's own messages are logged up to this level of the
	 * fy_log scale (0 quiet .. 6 most verbose). */
	int log_level;
};

void fy_nbd_opts_default(struct fy_nbd_opts *o);

/*
 * Fills o from a configuration, starting from what o already holds:
 *   vixDiskLib.nfc.AcceptTimeoutMs   -> connect_timeout_ms
 *   vixDiskLib.nfc.RequestTimeoutMs  -> negotiate_timeout_ms
 *   vixDiskLib.nfc.ReadTimeoutMs     -> read_timeout_ms
 *   vixDiskLib.nfc.WriteTimeoutMs    -> write_timeout_ms
 *   vixDiskLib.nfc.LogLevel          -> log_level
 * VDDK's own documentation spells two keys ReadTimeoutsMs and
 * WriteTimeoutsMs; both spellings are accepted, with a warning.
 *   ferry.nbd.MaxInFlight, ferry.nbd.MaxConnections,
 *   ferry.nbd.ReconnectAttempts, ferry.nbd.ReconnectBaseMs,
 *   ferry.nbd.TlsRequired, ferry.nbd.TlsCa, ferry.nbd.TlsCert,
 *   ferry.nbd.TlsKey, ferry.nbd.TlsServerName
 * The string options point into cfg, which must outlive their use
 * (fy_nbd_source_open copies them). Returns 0 or -errno.
 */
int fy_nbd_opts_from_config(struct fy_nbd_opts *o,
			    const struct fy_config *cfg);

/* The configuration keys above, NULL-terminated, for
 * fy_config_warn_unknown. */
extern const char *const fy_nbd_config_keys[];

/* True for nbd://, nbds://, nbd+unix:// and nbds+unix:// (the scheme
 * only; fy_nbd_source_open checks the rest). */
bool fy_nbd_is_uri(const char *s);

/*
 * Connects to the export named by uri:
 *   nbd://host[:port]/export      nbds://host[:port]/export
 *   nbd+unix:///export?socket=/path   nbds+unix:///export?socket=/path
 * host may be a name, an IPv4 address or [an IPv6 address]; the port
 * defaults to 10809; the export name is percent-decoded. The query may
 * also carry tls-hostname=NAME. opts may be NULL for the defaults.
 */
int fy_nbd_source_open(const char *uri, const struct fy_nbd_opts *opts,
		       struct fy_source **out);

/* What an NBD source has done so far, for tests and progress output. */
struct fy_nbd_stats {
	uint64_t size;             /* export size */
	uint64_t wire_bytes;       /* every byte received after the handshake */
	uint64_t data_bytes;       /* export bytes received as data */
	uint64_t hole_bytes;       /* read bytes the server sent as holes */
	uint64_t read_requests;    /* NBD_CMD_READ sent, re-issues included */
	uint64_t block_status_calls; /* NBD_CMD_BLOCK_STATUS sent */
	uint64_t reconnects;       /* successful reconnects */
	unsigned connections;      /* connections open now */
	/* the server's minimum and preferred block sizes, and the largest
	 * read sent in one request (its maximum payload, at most 32 MiB) */
	uint32_t min_block, preferred_block, max_payload;
	bool tls;                  /* the connections run TLS */
	bool structured_replies;
	bool base_allocation;      /* extents() can answer */
	bool multi_conn;           /* the server advertised CAN_MULTI_CONN */
};

/* -EINVAL when src is not an NBD source. */
int fy_nbd_stats(struct fy_source *src, struct fy_nbd_stats *out);

/*
 * The VDDK path (nbd/vddk.c): with VMware's VDDK installed on the proxy,
 * start nbdkit's vddk plugin for one disk on a private Unix socket (in a
 * fresh 0700 directory, TLS off: the socket never leaves this machine),
 * wait for it, and read it as an NBD source. Closing the source stops
 * nbdkit and removes the socket and the directory. docs/TRANSPORTS.md.
 *
 * The vddk plugin gets (nbdkit-vddk-plugin(1)): libdir=, server=, port=,
 * user=, password=+FILE, thumbprint=, vm=moref=, snapshot=, transports=,
 * file=, each when set, then plugin_args. Any other plugin stands in for
 * vddk (the tests use nbdkit's file plugin) and gets plugin_args only.
 */
struct fy_nbd_vddk_opts {
	const char *nbdkit;         /* program; NULL: "nbdkit" from PATH */
	const char *plugin;         /* NULL: "vddk" */
	const char *libdir;         /* VDDK's libDir (InitEx's parameter) */
	const char *server;         /* "vc", "vc:443" or "https://vc/sdk" */
	const char *user;
	const char *password_file;  /* passed as password=+FILE */
	const char *password;       /* else this, written to a 0600 file in
				     * the private directory */
	const char *thumbprint;     /* the server's SHA-1 thumbprint */
	const char *vm_moref;       /* "vm-42" */
	const char *snapshot_moref; /* optional */
	const char *file;           /* "[ds1] vm/vm.vmdk" */
	const char *transports;     /* one VDDK mode: "nbdssl", "nbd"... */
	const char *plugin_args;    /* more KEY=VALUE, blank-separated */
	bool writable;              /* no --readonly (fy_nbd_vddk_open_writer
				     * sets it) */
	unsigned start_timeout_ms;  /* nbdkit must be ready by then */
	/* VDDK's own keys found here (tmpDirectory, vixDiskLib.*) go to VDDK
	 * in a configuration file (nbdkit's config=); NULL: none. */
	const struct fy_config *cfg;
	const struct fy_nbd_opts *nbd; /* NULL: defaults; TLS always off */
};

void fy_nbd_vddk_opts_default(struct fy_nbd_vddk_opts *o);
/*
 * Fills o from a configuration (strings point into cfg):
 *   libDir                             -> libdir
 *   ferry.nbd.vddkPlugin               -> plugin (default "vddk")
 *   ferry.nbd.vddkPluginArgs           -> plugin_args
 *   ferry.nbd.nbdkit                   -> nbdkit
 *   ferry.nbd.vddkStartTimeoutSeconds  -> start_timeout_ms (1..600, 30)
 *   ferry.vcenter.server, ferry.vcenter.user, ferry.vcenter.passwordFile
 *   (or the FERRY_VCENTER_PASSWORD environment variable)
 *   VDDK's documented InitEx keys                -> cfg (passed on)
 * The caller adds vm_moref, file, thumbprint, transports.
 */
int fy_nbd_vddk_opts_from_config(struct fy_nbd_vddk_opts *o,
				 const struct fy_config *cfg);
/* Whether this proxy can take the VDDK path: libDir configured (and, for
 * the vddk plugin, holding VDDK's lib64/libvixDiskLib.so), nbdkit
 * installed and able to load the plugin. false with the reason in why. */
bool fy_nbd_vddk_available(const struct fy_nbd_vddk_opts *o, char *why,
			   size_t whylen);
/* Starts nbdkit and opens its export; the source's transport name is the
 * VDDK mode asked for (transports "nbdssl" or "nbd"; "nbd" otherwise).
 * A plugin that fails to start is an error with the end of its log, in
 * at most start_timeout_ms. */
int fy_nbd_vddk_open(const struct fy_nbd_vddk_opts *o,
		     struct fy_source **out);
/* The same for writing (restore-vm): nbdkit without --readonly, with the
 * exitlast filter, and no snapshot (the disk written is a live one).
 * Closing the writer waits for nbdkit to exit by itself once the writer
 * disconnected (the plugin has closed the disk then: VDDK's close is
 * what completes its writes), at most 2 minutes, and fails with the end
 * of its log when it did not exit with status 0; then removes its
 * directory. */
int fy_nbd_vddk_open_writer(const struct fy_nbd_vddk_opts *o,
			    struct fy_nbd_writer **out);

/* ---- writing an export (writer.c) --------------------------------------- */

/*
 * One connection to a writable export (the URIs of fy_nbd_source_open),
 * one request at a time: each write is answered before the next is sent,
 * so an error names the write it refused. A read-only export is -EROFS.
 * Used by restore-vm's nbdssl/nbd modes through fy_nbd_vddk_open_writer.
 */
struct iovec;

int fy_nbd_writer_open(const char *uri, const struct fy_nbd_opts *opts,
		       struct fy_nbd_writer **out);
uint64_t fy_nbd_writer_size(const struct fy_nbd_writer *w);
/* Writes the iov pieces at off, in requests of at most the server's
 * maximum payload (32 MiB at most); off and the length whole blocks of
 * the server's minimum block size. */
int fy_nbd_writer_pwritev(struct fy_nbd_writer *w, const struct iovec *iov,
			  int iovcnt, uint64_t off);
/* NBD_CMD_FLUSH when the server offers it: what was written is durable
 * once this returns 0. */
int fy_nbd_writer_flush(struct fy_nbd_writer *w);
/* Closes the connection (politely when the stream is in step), then
 * calls the release function set on it (clean: the stream was in step),
 * whose result it returns: for VDDK, whether nbdkit closed the disk and
 * exited cleanly. NULL does nothing. */
int fy_nbd_writer_close(struct fy_nbd_writer *w);
void fy_nbd_writer_set_release(struct fy_nbd_writer *w,
			       int (*release)(void *, bool clean),
			       void *arg);

/* ---- a read-only NBD server (server.c) --------------------------------- */

/* What the server serves. Called from one thread per client, at once. */
struct fy_nbd_export_ops {
	/* Fills buf with len bytes (at most 32 MiB) at offset; -errno with
	 * a message on failure (the client gets EIO, or EINVAL...). */
	int (*read)(void *opaque, uint64_t offset, uint32_t len, void *buf);
	/* From offset, within len bytes: whether the data is a hole (reads
	 * as zeros) and for how many bytes (*run, 1..len) that holds. */
	int (*extent)(void *opaque, uint64_t offset, uint64_t len, bool *hole,
		      uint64_t *run);
	/* Optional (NULL: every read goes through read(); set with
	 * release). Lends the data at offset, within len bytes (not a
	 * hole), without a copy: *data holds *lent bytes (1..len) that stay
	 * as they are until release(opaque, token). A structured reply is
	 * then sent straight from it, a chunk per loan. A loan is held while
	 * its chunk is sent, which waits for the client to read: an export
	 * bounds how much it lends. *lent = 0: nothing lent (nothing to
	 * release), the run goes through read(). -errno with a message on
	 * failure. */
	int (*lend)(void *opaque, uint64_t offset, uint32_t len,
		    const uint8_t **data, uint32_t *lent, void **token);
	void (*release)(void *opaque, void *token);
};

struct fy_nbd_server_opts {
	const char *listen;      /* HOST:PORT, or NULL */
	const char *socket;      /* a Unix socket path, or NULL */
	const char *export_name; /* the export's name besides "" (may be NULL) */
	uint64_t size;           /* bytes */
	/* TLS (STARTTLS, required when set): the server's certificate and
	 * key, and the CA a client's certificate must chain to. */
	const char *tls_cert, *tls_key, *tls_ca;
	unsigned max_clients;
	/* Threads serving each client's reads at once (0 or 1: one; at most
	 * 16; one for a client without structured replies). Each holds a
	 * reply buffer of up to 4 MiB: structured replies send larger reads
	 * in chunks of that size; a simple reply is built whole (a read is
	 * at most 32 MiB). */
	unsigned workers;
	/* Called once listening, with the bound address or the socket. */
	void (*on_ready)(void *opaque, const char *bound);
	void *ready_opaque;
};

/* Serves one read-only export (fixed newstyle, structured replies,
 * base:allocation, STARTTLS) until *stop is set. Writes, trims and
 * flushes are refused with EPERM. At the stop every connection is cut and
 * its thread waited for: once this returns, no thread uses ops or opaque,
 * unless it returns -EBUSY (a read still running 10 s after the stop: the
 * caller must leave what the export uses alone and exit). */
int fy_nbd_serve(const struct fy_nbd_server_opts *o,
		 const struct fy_nbd_export_ops *ops, void *opaque,
		 volatile sig_atomic_t *stop);

#endif
