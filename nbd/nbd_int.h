/*
 * Private to nbd/ (and its tests and fuzzer): wire constants, the reply
 * parser, the URI parser and the connection layer.
 *
 * All numbers on the wire are big-endian. Names follow the NBD project's
 * doc/proto.md so the two can be read side by side.
 */
#ifndef FERRY_NBD_INT_H
#define FERRY_NBD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd/nbd.h"

/* ---- protocol constants ------------------------------------------------ */

#define NBD_INIT_MAGIC 0x4e42444d41474943ull	/* "NBDMAGIC" */
#define NBD_OLDSTYLE_MAGIC 0x00420281861253ull
#define NBD_OPTS_MAGIC 0x49484156454f5054ull	/* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x3e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)

/* Options. */
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_GO 7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_SET_META_CONTEXT 10

/* Option replies; errors have bit 31 set. */
#define NBD_REP_ACK 1
#define NBD_REP_SERVER 2
#define NBD_REP_INFO 3
#define NBD_REP_META_CONTEXT 4
#define NBD_REP_FLAG_ERROR (1u << 31)
#define NBD_REP_ERR_UNSUP (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG (NBD_REP_FLAG_ERROR | 9)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT 0
#define NBD_INFO_NAME 1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE 3

/* Commands. */
#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_FLUSH 3
#define NBD_CMD_DISC 2
#define NBD_CMD_BLOCK_STATUS 7

/* Structured reply chunks. */
#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR_BIT (1u << 15)
#define NBD_REPLY_TYPE_ERROR (NBD_REPLY_TYPE_ERROR_BIT | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET (NBD_REPLY_TYPE_ERROR_BIT | 2)

/* base:allocation flags. */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

#define NBD_REQUEST_SIZE 28
#define NBD_SIMPLE_REPLY_SIZE 16
#define NBD_STRUCTURED_REPLY_SIZE 20
#define NBD_OPTION_REPLY_SIZE 20

/* ---- limits on what a server may send ---------------------------------- */

/* Strings (export names, messages) are at most 4096 bytes by the spec. */
#define NBD_MAX_STRING 4096
/* One option reply payload; the largest legitimate one is a string. */
#define NBD_MAX_OPTION_REPLY (64u * 1024)
/* Option replies to one option (NBD_REP_INFO, META_CONTEXT) before its
 * final reply: a server that never ends the list is cut off. */
#define NBD_MAX_OPTION_REPLIES 64
/* The largest read we send in one request, whatever the server allows:
 * the spec's portable maximum payload. */
#define NBD_MAX_REQUEST (32u << 20)
/* A structured chunk type we do not know is skipped when it is no
 * longer than this; a longer one ends the connection. */
#define NBD_MAX_UNKNOWN_CHUNK (64u * 1024)
/* Block status descriptors in one chunk (the spec says servers should
 * send at most 2^20); also the payload bound for that chunk. */
#define NBD_MAX_STATUS_DESCRIPTORS (1u << 20)
/* Disjoint pieces of a read reply that arrived out of order and have
 * not joined up yet. Servers send in order; a reply fragmented past
 * this is treated as hostile. */
#define NBD_MAX_READ_PIECES 32

/* ---- the reply parser -------------------------------------------------- */

/* One extent of a block status reply, already clipped to the request. */
struct nbd_extent {
	uint64_t offset;
	uint64_t length;
	uint32_t flags;
};

/*
 * A request in flight. The owner fills the request fields; the parser
 * fills the reply fields and calls done() once the final chunk (or the
 * simple reply) arrived. nbd_cmd_reset_reply() clears the reply state
 * before a request is sent again on another connection.
 */
struct nbd_cmd {
	/* request */
	uint64_t cookie;
	uint16_t type;		/* NBD_CMD_READ or NBD_CMD_BLOCK_STATUS */
	uint64_t offset;
	uint32_t length;
	uint8_t *buf;		/* READ: length bytes for the data */
	struct nbd_extent *extents; /* BLOCK_STATUS: room for the results */
	size_t extents_cap;

	/* reply */
	int error;		/* first error the server reported, -errno */
	char message[160];	/* the server's text for it, if any */
	uint64_t error_offset;	/* UINT64_MAX unless ERROR_OFFSET said */
	bool done;
	bool got_status;
	size_t nextents;
	uint64_t status_end;	/* absolute end of the extents recorded */
	bool status_full;	/* extents_cap reached; the rest dropped */
	unsigned npieces;	/* read coverage, sorted and disjoint */
	struct {
		uint64_t start, end;
	} pieces[NBD_MAX_READ_PIECES];

	/* owner's bookkeeping, untouched by the parser */
	void *owner;
	size_t index;
};

void nbd_cmd_reset_reply(struct nbd_cmd *cmd);

struct nbd_rx_ops {
	/* The request with this cookie, or NULL: an unknown cookie. */
	struct nbd_cmd *(*lookup)(void *opaque, uint64_t cookie);
	/* The reply to cmd is complete (cmd->done is set). */
	void (*done)(void *opaque, struct nbd_cmd *cmd);
};

enum nbd_rx_state {
	NBD_RX_HEADER,
	NBD_RX_SIMPLE_DATA,
	NBD_RX_PREFIX,
	NBD_RX_DATA,
	NBD_RX_STATUS,
	NBD_RX_SKIP,
	NBD_RX_FAILED,
};

/* What a chunk's fixed-length prefix may hold: an error chunk with the
 * longest message, its offset, and slack. */
#define NBD_RX_SCRATCH (16 + NBD_MAX_STRING + 16)

/*
 * A push parser for the transmission phase: the caller asks where the
 * next bytes go (nbd_rx_want), stores at most that many there, and
 * reports how many (nbd_rx_got). Data lands straight in the request's
 * buffer, and the parser never points outside it. The same parser runs
 * on a socket and on a fuzzer's bytes.
 */
struct nbd_rx {
	const struct nbd_rx_ops *ops;
	void *opaque;
	bool structured;	/* NBD_OPT_STRUCTURED_REPLY was agreed */
	bool has_meta;		/* base:allocation was agreed ... */
	uint32_t meta_id;	/* ... with this context id */

	enum nbd_rx_state state;
	size_t need;		/* bytes still wanted in this state */
	size_t have;		/* bytes stored so far in hdr or scratch */
	uint8_t hdr[NBD_STRUCTURED_REPLY_SIZE];
	uint8_t scratch[NBD_RX_SCRATCH];
	struct nbd_cmd *cmd;	/* the request the current reply answers */
	uint16_t flags;
	uint16_t type;
	uint32_t length;	/* chunk payload length */
	uint32_t remaining;	/* payload bytes not yet consumed */
	uint64_t data_pos;	/* where NBD_RX_DATA writes, export offset */

	/* counters for fy_nbd_stats */
	uint64_t data_bytes;
	uint64_t hole_bytes;
};

void nbd_rx_init(struct nbd_rx *rx, const struct nbd_rx_ops *ops,
		 void *opaque, bool structured, bool has_meta,
		 uint32_t meta_id);
/* Returns how many bytes the parser can take now (>0) and where. */
size_t nbd_rx_want(struct nbd_rx *rx, uint8_t **where);
/* n bytes were stored at the last want. 0, or -EPROTO (with a message)
 * when the server broke the protocol: the connection must be dropped. */
int nbd_rx_got(struct nbd_rx *rx, size_t n);
/* True between replies: nothing of a reply has been received. */
bool nbd_rx_idle(const struct nbd_rx *rx);

/* Maps an NBD error number to -errno. */
int nbd_errno(uint32_t nbd_error);

/* ---- URIs -------------------------------------------------------------- */

#define NBD_MAX_URI 8192
#define NBD_MAX_HOST 256

struct nbd_uri {
	bool tls;		/* nbds or nbds+unix */
	bool unix_socket;
	char host[NBD_MAX_HOST]; /* TCP: name or address, no brackets */
	char port[8];
	char socket[108];	/* Unix: the socket path */
	char export_name[NBD_MAX_STRING + 1];
	char tls_hostname[NBD_MAX_HOST]; /* from ?tls-hostname= */
};

/* Parses uri into out; a malformed one is -EINVAL with a message that
 * says what is wrong. */
int nbd_uri_parse(const char *uri, struct nbd_uri *out);

/* ---- connections: socket, TLS and the handshake ------------------------ */

struct ssl_ctx_st;
struct nbd_conn;

/* What the handshake agreed on. */
struct nbd_export {
	uint64_t size;
	uint16_t flags;		/* transmission flags */
	uint32_t min_block;	/* 1 when the server gave none */
	uint32_t preferred_block;
	uint32_t max_payload;	/* as advertised; 0 when not */
	bool structured;
	bool has_meta;		/* base:allocation selected ... */
	uint32_t meta_id;	/* ... with this id */
	bool tls;
};

/* Everything needed to open (and reopen) a connection. */
struct nbd_conn_cfg {
	const struct nbd_uri *uri;
	const struct fy_nbd_opts *opts;
	struct ssl_ctx_st *tls_ctx; /* NULL: no TLS */
	const char *server_name;    /* checked in the certificate; NULL:
				     * the chain only (Unix sockets) */
	const char *label;	    /* the URI, for messages */
};

/* Builds the TLS client context from opts (CA, client certificate). */
int nbd_tls_ctx_new(const struct fy_nbd_opts *opts,
		    struct ssl_ctx_st **out);
void nbd_tls_ctx_free(struct ssl_ctx_st *ctx);

/* Connects and runs the handshake up to the transmission phase, within
 * the connect and negotiate timeouts. The socket is left non-blocking. */
int nbd_conn_open(const struct nbd_conn_cfg *cfg, struct nbd_conn **out);
/* Sends NBD_CMD_DISC first when polite (the stream must be between
 * requests); closes the socket. NULL does nothing. */
void nbd_conn_close(struct nbd_conn *c, bool polite);
const struct nbd_export *nbd_conn_export(const struct nbd_conn *c);
int nbd_conn_fd(const struct nbd_conn *c);
/* The poll events the connection waits for: POLLIN, plus POLLOUT when
 * TLS needs to write before it can read or want_write is set. */
short nbd_conn_events(const struct nbd_conn *c, bool want_write);
/* Non-blocking transfers: bytes moved (>0), 0 at the end of the stream
 * (recv only), -EAGAIN when the socket is not ready, or -errno with a
 * message. */
long nbd_conn_recv(struct nbd_conn *c, void *buf, size_t len);
long nbd_conn_send(struct nbd_conn *c, const void *buf, size_t len);
/* A deadline ms from now for the two calls below (0: none). */
double nbd_deadline_after(unsigned ms);
/* Exactly len bytes, waiting as needed until deadline (0: forever). what
 * ends the messages: "timed out WHAT", "the server closed the connection
 * WHAT". 0 or -errno with a message. */
int nbd_conn_read_full(struct nbd_conn *c, void *buf, size_t len,
		       double deadline, const char *what);
int nbd_conn_write_full(struct nbd_conn *c, const void *buf, size_t len,
			double deadline, const char *what);
/* Encodes a request header. */
void nbd_encode_request(uint8_t out[NBD_REQUEST_SIZE], uint16_t flags,
			uint16_t type, uint64_t cookie, uint64_t offset,
			uint32_t length);

/* ---- big-endian helpers ------------------------------------------------ */

static inline uint16_t nbd_get16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t nbd_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t nbd_get64(const uint8_t *p)
{
	return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4);
}

static inline void nbd_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void nbd_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void nbd_put64(uint8_t *p, uint64_t v)
{
	nbd_put32(p, (uint32_t)(v >> 32));
	nbd_put32(p + 4, (uint32_t)v);
}

#endif
