/*
 * proto: Ferry's wire protocol. The messages are in proto/ferry.proto
 * (generated into proto/ferry.pb-c.h at build time); this header adds the
 * framing (4-byte big-endian length, then one Frame), the bounds every
 * received frame is checked against, and the mutual-TLS connection the
 * frames travel on. Depends on common and OpenSSL.
 */
#ifndef FERRY_PROTO_WIRE_H
#define FERRY_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "proto/ferry.pb-c.h"
#include "proto/control.pb-c.h"

#define FY_PROTOCOL_VERSION 1
/* Largest frame either side accepts: one 8 MiB block fits with room to
 * spare; 16 MiB plus a small header as the protocol promises. */
#define FY_FRAME_MAX ((16u << 20) + (64u << 10))
/* A PutBlock frame's bytes beside the block's own (digest, sizes, codec,
 * tags); a repository's max_frame must leave room for them. */
#define FY_FRAME_PUT_OVERHEAD 1024u
/* The least max_frame a repository may announce in HelloReply: a block of
 * the smallest size, stored raw, fits. */
#define FY_FRAME_LEAST ((64u << 10) + FY_FRAME_PUT_OVERHEAD)
#define FY_QUERY_MAX 4096     /* digests in one QueryBlocks */
#define FY_MAP_CHUNK_MAX 16384 /* entries in one MapChunk */
#define FY_GET_MAX 64          /* digests in one GetBlocks */
#define FY_LIST_PAGE 256       /* backups in one BackupList */
#define FY_STRING_MAX 4096     /* any string field */
/* A VM configuration record (Commit, BackupSummary): its bytes, decoded
 * only by image/vmconfig.c; equal to image's FY_VMCONFIG_MAX. */
#define FY_VM_CONFIG_WIRE_MAX (64u << 10)

typedef Ferry__Frame fy_frame;

/* Checks every bound of a decoded frame (digest lengths, counts, sizes,
 * string lengths). 0 or -EBADMSG with a message. */
int fy_frame_check(const fy_frame *f);
/* Decodes one frame body (without the length prefix) and checks it. */
int fy_frame_decode(const uint8_t *buf, size_t len, fy_frame **out);
void fy_frame_free(fy_frame *f);
/* Human name of the frame's body, for messages: "PutBlock". */
const char *fy_frame_name(const fy_frame *f);

/* A Block frame read in place: its fields point into the frame's bytes,
 * so a block is decoded straight from the receive buffer, without
 * protobuf-c's allocation and copy of its data. */
struct fy_block_view {
	const uint8_t *digest;
	size_t digest_len;
	uint32_t plain_size;
	int codec;               /* Ferry__Codec */
	const uint8_t *data;
	size_t data_len;
};
/* 1: buf (one frame body) is a Block frame in the encoding protobuf-c
 * writes, each field at most once and nothing else; *v is filled and
 * checked as fy_frame_check checks a Block (-EBADMSG with a message when
 * it fails). 0: any other frame or encoding; decode it with
 * fy_frame_decode, which gives the same answer for it as for any frame. */
int fy_block_view_parse(const uint8_t *buf, size_t len,
			struct fy_block_view *v);
/* The view of a Block decoded by protobuf-c (pointing into it). */
void fy_block_view_of(const Ferry__Block *b, struct fy_block_view *v);

/* A PutBlock frame's bytes before its data field's contents: what
 * protobuf-c would pack for Frame{put_block{digest, plain_size, codec,
 * data}} up to the data's first byte (the data, dlen bytes, follows). So
 * the block is sent from its own buffer (fy_conn_send_tail) instead of
 * copied into the frame buffer. Returns the length written to out, which
 * needs FY_PUT_HEAD_MAX bytes. */
#define FY_PUT_HEAD_MAX 64u
size_t fy_put_block_head(uint8_t *out, const uint8_t digest[FY_DIGEST_LEN],
			 uint32_t plain_size, uint32_t codec, size_t dlen);

/* ---- TLS --------------------------------------------------------------- */

struct fy_tls_opts {
	const char *cert; /* our certificate (PEM) */
	const char *key;  /* its private key */
	const char *ca;   /* CA that signs the peers we accept */
	/* Optional: a CRL of that CA (`ferry ca revoke`); peers whose
	 * certificate it lists are refused in the handshake. */
	const char *crl;
};

struct fy_tls;
/* TLS 1.3 only. A server requires a client certificate signed by ca. */
int fy_tls_new_server(const struct fy_tls_opts *opts, struct fy_tls **out);
/* A client verifies the server's certificate against ca and its name. */
int fy_tls_new_client(const struct fy_tls_opts *opts, struct fy_tls **out);
void fy_tls_free(struct fy_tls *tls);

/* ---- connections ------------------------------------------------------- */

struct fy_conn;

/* Connects to host:port and runs the TLS handshake, checking that the
 * server's certificate names server_name (NULL: the host part). */
int fy_conn_connect(struct fy_tls *tls, const char *hostport,
		    const char *server_name, int timeout_ms,
		    struct fy_conn **out);
/* Listens on host:port (port 0 picks one); writes the bound address. */
int fy_listen(const char *hostport, int *fd, char *bound, size_t boundlen);
/* Runs the server side of the handshake on an accepted socket (which it
 * owns from then on, even on failure). */
int fy_conn_accept(struct fy_tls *tls, int fd, int timeout_ms,
		   struct fy_conn **out);
/* The peer: certificate CN and address, for logs. */
const char *fy_conn_peer(const struct fy_conn *c);

/* Who the peer is: its certificate's commonName and the role written in
 * its subject (docs/SECURITY.md), and its address. -EACCES when the
 * certificate has no name, an unknown role or several roles. */
struct fy_identity {
	char name[256];
	enum fy_role role; /* FY_ROLE_NONE: a certificate from before roles */
	char address[64];  /* numeric, without the port */
};
int fy_conn_identity(const struct fy_conn *c, struct fy_identity *id);
/* The role to act on: FY_ROLE_NONE counts as FY_ROLE_AGENT, which is
 * logged once per certificate name. */
enum fy_role fy_identity_role(const struct fy_identity *id);
/* "certificate NAME (issued by CA, valid A to B)": the peer's certificate,
 * for messages. */
void fy_conn_cert_text(const struct fy_conn *c, char *buf, size_t len);
/* Refuses an authenticated peer for a reason of the caller's (a role, a
 * list of names): sets "certificate NAME (issued by CA, valid A to B) from
 * ADDR refused: REASON" as the error and returns code. The caller sends it
 * to the peer (an Error frame) and logs it. */
int fy_conn_refuse(const struct fy_conn *c, int code, const char *reason);
/* Each blocking read or write gives up after this long without progress. */
void fy_conn_set_timeout(struct fy_conn *c, int timeout_ms);

/* Queues a frame; frames go out when the buffer fills or on flush/recv.
 * Errors are sticky: once a send fails, every later call fails too. */
int fy_conn_send(struct fy_conn *c, const fy_frame *f);
/* Sends one frame made of head (hlen bytes: the frame's start, as
 * fy_put_block_head builds it) and tail (tlen bytes, its end) straight
 * from the caller's buffers, after what is queued; the same bounds and
 * sticky errors as fy_conn_send. what names the frame in messages. */
int fy_conn_send_tail(struct fy_conn *c, const uint8_t *head, size_t hlen,
		      const void *tail, size_t tlen, const char *what);
int fy_conn_flush(struct fy_conn *c);
/* Flushes, then reads and checks one frame. A peer's Error frame comes
 * back as a frame; the caller decides. -ECONNRESET when the peer closed. */
int fy_conn_recv(struct fy_conn *c, fy_frame **out);
/* Waits up to timeout_ms for a frame to start arriving: 1 when one can be
 * read, 0 on timeout, -errno on failure. Lets a server loop notice other
 * events (a worker's failure) while a client is silent. */
int fy_conn_wait_readable(struct fy_conn *c, int timeout_ms);
/* Sends a TLS 1.3 KeyUpdate: a record the peer's TLS layer consumes
 * without passing a byte to its reader, so that a peer blocked in a read
 * with a timeout hears from us while we have nothing to say yet. Not to be
 * called while another thread uses c. */
int fy_conn_keepalive(struct fy_conn *c);
/* Sends an Error frame and flushes, ignoring failures (we are closing). */
void fy_conn_send_error(struct fy_conn *c, int code, const char *msg);
void fy_conn_close(struct fy_conn *c);

/* The largest frame the peer takes (FY_FRAME_MAX, or less when the
 * repository's HelloReply said so). */
size_t fy_conn_max_frame(const struct fy_conn *c);

/* The client side of the greeting, shared by the agent and the CLI: sends
 * Hello, checks the reply's version and limits (block_size, when not 0,
 * must be one the repository takes; from then on no frame larger than its
 * max_frame is sent), returns the repository's id. */
int fy_conn_hello(struct fy_conn *c, const char *software,
		  uint32_t block_size, const char *namespace_, char *repo_id,
		  size_t repo_id_len);

/* ---- the handshake gate (proto/gate.c) ---------------------------------
 * What a server does before it knows who a client is. One thread accepts
 * on the listening socket and runs every TLS handshake at once, without
 * blocking, in a bounded set of slots: a handshake has handshake_timeout_ms
 * to complete; at most max_pending run at once and at most max_per_address
 * from one address. When the slots are full, a new connection takes the
 * slot of the oldest unfinished handshake (of its own address first), so
 * idle or stalled connections can hold neither descriptors nor a client's
 * place: a real client's handshake takes one round trip and completes
 * before they could push it out. Only a completed handshake (a certificate
 * of the CA) reaches the server's callback, which takes a client slot. */

struct fy_gate_opts {
	const char *what;          /* "control", "repository": for log lines */
	int handshake_timeout_ms;  /* a handshake's deadline */
	unsigned max_pending;      /* unauthenticated connections at once */
	unsigned max_per_address;  /* of those, from one address */
	int io_timeout_ms;         /* set on a connection once authenticated */
};

#define FY_GATE_PENDING_MAX 1024

struct fy_gate;
/* Called on the gate's thread with an authenticated connection, which it
 * owns from then on; it must not block (take a client slot, start a
 * thread, or refuse and close). */
typedef void (*fy_gate_cb)(void *opaque, struct fy_conn *c);
/* Starts the gate's thread on the listening socket lfd (which stays the
 * caller's to close after fy_gate_stop). */
int fy_gate_start(struct fy_tls *tls, int lfd, const struct fy_gate_opts *o,
		  fy_gate_cb cb, void *opaque, struct fy_gate **out);
/* Stops accepting, drops the unfinished handshakes, joins the thread.
 * NULL does nothing. */
void fy_gate_stop(struct fy_gate *g);

/* ---- framing for other protocols on the same connection ---------------- */

/* Queues one message of another protocol with the same framing (length
 * prefix, 1 <= length <= max); what names it in messages. */
int fy_conn_send_message(struct fy_conn *c, const ProtobufCMessage *m,
			 size_t max, const char *what);
/* Flushes, then reads one frame's body of at most max bytes; *body stays
 * valid until the next receive. */
int fy_conn_recv_body(struct fy_conn *c, size_t max, const uint8_t **body,
		      size_t *len);
/* Flushes, then reads one frame: 1 and *v (valid until the next
 * receive on c) for a Block frame read in place (fy_block_view_parse), 0
 * and *other for any other frame, decoded and checked as fy_conn_recv
 * does; < 0 on failure. */
int fy_conn_recv_block(struct fy_conn *c, struct fy_block_view *v,
		       fy_frame **other);
/* Marks the incoming stream broken (a body that did not decode). */
void fy_conn_set_rx_error(struct fy_conn *c, int code);

/* ---- the control protocol (proto/control.proto, proto/control.c) -------- */

#define FY_CONTROL_PROTOCOL_VERSION 1
/* Largest control frame: a job's result with 64 disks is about 100 KiB. */
#define FY_CONTROL_FRAME_MAX (1u << 20)
#define FY_CONTROL_LOG_MAX 16384   /* CleanupResult.log */
#define FY_CONTROL_DISKS_MAX 64    /* StartBackup.disks, JobResult.disks */
#define FY_CONTROL_JOBS_MAX 128    /* JobList.jobs, Status.jobs */
#define FY_CONTROL_NETWORKS_MAX 16 /* StartRestoreVm.networks */
#define FY_CONTROL_MODES_MAX 16    /* Status.transport_modes */
#define FY_CONTROL_NAME_MAX 1024   /* vm, name, repository, job id, ... */

typedef Ferry__Control__ControlFrame fy_control_frame;

/* Checks every bound of a decoded control frame (string lengths, counts,
 * enum values, disk indexes). 0 or -EBADMSG with a message naming the
 * field. */
int fy_control_check(const fy_control_frame *f);
/* Decodes one control frame body (without the length prefix), checks it. */
int fy_control_decode(const uint8_t *buf, size_t len, fy_control_frame **out);
void fy_control_free(fy_control_frame *f);
/* "StartBackup", for messages. */
const char *fy_control_name(const fy_control_frame *f);
/* Queues one control frame. */
int fy_control_send(struct fy_conn *c, const fy_control_frame *f);
/* Flushes, then receives, decodes and checks one control frame. A frame
 * that does not decode or breaks a bound leaves the stream unusable. */
int fy_control_recv(struct fy_conn *c, fy_control_frame **out);
/* Sends an Error control frame and flushes, ignoring failures. */
void fy_control_send_error(struct fy_conn *c, int code, const char *msg);

#endif
