/* The NBD client without sockets: the reply parser fed bytes (whole and
 * one at a time), the URI parser and the configuration keys. */
#include "common/common.h"
#include "nbd/nbd.h"
#include "nbd/nbd_int.h"
#include "../unit/check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void expect_msg(const char *want)
{
	if (!strstr(fy_err_msg(), want)) {
		fprintf(stderr, "expected '%s' in '%s'\n", want, fy_err_msg());
		CHECK(!"message");
	}
}

/* ---- a parser harness -------------------------------------------------- */

struct harness {
	struct nbd_rx rx;
	struct nbd_cmd *pending[8];
	size_t npending;
	struct nbd_cmd *done[8];
	size_t ndone;
};

static struct nbd_cmd *h_lookup(void *opaque, uint64_t cookie)
{
	struct harness *h = opaque;
	size_t i;

	for (i = 0; i < h->npending; i++)
		if (h->pending[i]->cookie == cookie)
			return h->pending[i];
	return NULL;
}

static void h_done(void *opaque, struct nbd_cmd *cmd)
{
	struct harness *h = opaque;
	size_t i;

	for (i = 0; i < h->npending; i++) {
		if (h->pending[i] == cmd) {
			h->pending[i] = h->pending[--h->npending];
			break;
		}
	}
	h->done[h->ndone++] = cmd;
}

static const struct nbd_rx_ops h_ops = { h_lookup, h_done };

static void h_init(struct harness *h, bool structured)
{
	memset(h, 0, sizeof(*h));
	nbd_rx_init(&h->rx, &h_ops, h, structured, true, 7);
}

static void h_add(struct harness *h, struct nbd_cmd *cmd, uint64_t cookie,
		  uint16_t type, uint64_t offset, uint32_t length, void *buf)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->cookie = cookie;
	cmd->type = type;
	cmd->offset = offset;
	cmd->length = length;
	cmd->buf = buf;
	nbd_cmd_reset_reply(cmd);
	h->pending[h->npending++] = cmd;
}

/* Feeds len bytes, at most step at a time. Returns the parser's code. */
static int h_feed(struct harness *h, const uint8_t *data, size_t len,
		  size_t step)
{
	uint8_t *where;
	size_t want, n;
	int rc;

	while (len) {
		want = nbd_rx_want(&h->rx, &where);
		if (!want)
			return -EPROTO;
		n = want < len ? want : len;
		if (n > step)
			n = step;
		memcpy(where, data, n);
		rc = nbd_rx_got(&h->rx, n);
		if (rc)
			return rc;
		data += n;
		len -= n;
	}
	return 0;
}

/* ---- a stream builder -------------------------------------------------- */

struct stream {
	uint8_t b[200000];
	size_t n;
};

static void s_raw(struct stream *s, const void *p, size_t len)
{
	memcpy(s->b + s->n, p, len);
	s->n += len;
}

static void s_u16(struct stream *s, uint16_t v)
{
	nbd_put16(s->b + s->n, v);
	s->n += 2;
}

static void s_u32(struct stream *s, uint32_t v)
{
	nbd_put32(s->b + s->n, v);
	s->n += 4;
}

static void s_u64(struct stream *s, uint64_t v)
{
	nbd_put64(s->b + s->n, v);
	s->n += 8;
}

static void s_simple(struct stream *s, uint32_t error, uint64_t cookie)
{
	s_u32(s, NBD_SIMPLE_REPLY_MAGIC);
	s_u32(s, error);
	s_u64(s, cookie);
}

static void s_chunk(struct stream *s, uint16_t flags, uint16_t type,
		    uint64_t cookie, uint32_t len)
{
	s_u32(s, NBD_STRUCTURED_REPLY_MAGIC);
	s_u16(s, flags);
	s_u16(s, type);
	s_u64(s, cookie);
	s_u32(s, len);
}

static void s_data(struct stream *s, uint16_t flags, uint64_t cookie,
		   uint64_t off, const uint8_t *data, uint32_t len)
{
	s_chunk(s, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookie, len + 8);
	s_u64(s, off);
	s_raw(s, data, len);
}

static void s_hole(struct stream *s, uint16_t flags, uint64_t cookie,
		   uint64_t off, uint32_t len)
{
	s_chunk(s, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookie, 12);
	s_u64(s, off);
	s_u32(s, len);
}

static void s_none(struct stream *s, uint64_t cookie)
{
	s_chunk(s, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
}

static void s_error(struct stream *s, uint16_t type, uint16_t flags,
		    uint64_t cookie, uint32_t err, const char *msg,
		    const uint64_t *off)
{
	size_t ml = strlen(msg);

	s_chunk(s, flags, type, cookie, (uint32_t)(6 + ml + (off ? 8 : 0)));
	s_u32(s, err);
	s_u16(s, (uint16_t)ml);
	s_raw(s, msg, ml);
	if (off)
		s_u64(s, *off);
}

static uint8_t pattern[65536];

static void fill_pattern(void)
{
	size_t i;

	for (i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7 + (i >> 9));
}

static const size_t steps[] = { 1, 3, 1000000 };
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

/* ---- parser tests ------------------------------------------------------ */

static void test_simple_replies(void)
{
	size_t k;

	for (k = 0; k < NSTEPS; k++) {
		struct harness h;
		struct nbd_cmd a, b;
		static uint8_t ba[4096], bb[512];
		struct stream *s = calloc(1, sizeof(*s));

		h_init(&h, false);
		h_add(&h, &a, 1, NBD_CMD_READ, 0, 4096, ba);
		h_add(&h, &b, 2, NBD_CMD_READ, 8192, 512, bb);
		/* b answered first, with an error and so no data */
		s_simple(s, 28, 2);
		s_simple(s, 0, 1);
		s_raw(s, pattern, 4096);
		CHECK(h_feed(&h, s->b, s->n, steps[k]) == 0);
		CHECK(h.ndone == 2);
		CHECK(b.done && b.error == -ENOSPC);
		CHECK(a.done && a.error == 0);
		CHECK(!memcmp(ba, pattern, 4096));
		CHECK(h.rx.data_bytes == 4096);
		CHECK(nbd_rx_idle(&h.rx));
		free(s);
	}
}

static void test_structured_out_of_order(void)
{
	size_t k;

	for (k = 0; k < NSTEPS; k++) {
		struct harness h;
		struct nbd_cmd a, b;
		static uint8_t ba[8192], bb[4096];
		struct stream *s = calloc(1, sizeof(*s));

		memset(bb, 0xaa, sizeof(bb));
		h_init(&h, true);
		h_add(&h, &a, 10, NBD_CMD_READ, 65536, 8192, ba);
		h_add(&h, &b, 11, NBD_CMD_READ, 0, 4096, bb);
		/* a in three pieces, last first; b's chunks between them */
		s_data(s, 0, 10, 65536 + 6000, pattern + 6000, 2192);
		s_data(s, 0, 11, 2048, pattern + 2048, 2048);
		s_data(s, 0, 10, 65536, pattern, 1000);
		s_hole(s, NBD_REPLY_FLAG_DONE, 11, 0, 2048);
		s_data(s, 0, 10, 65536 + 1000, pattern + 1000, 5000);
		s_none(s, 10);
		CHECK(h_feed(&h, s->b, s->n, steps[k]) == 0);
		CHECK(h.ndone == 2 && h.done[0] == &b && h.done[1] == &a);
		CHECK(a.error == 0 && b.error == 0);
		CHECK(!memcmp(ba, pattern, 8192));
		CHECK(fy_is_zero(bb, 2048));
		CHECK(!memcmp(bb + 2048, pattern + 2048, 2048));
		CHECK(h.rx.hole_bytes == 2048);
		CHECK(h.rx.data_bytes == 8192 + 2048);
		free(s);
	}
}

static void test_incomplete_read(void)
{
	struct harness h;
	struct nbd_cmd a;
	static uint8_t ba[4096];
	struct stream *s = calloc(1, sizeof(*s));

	h_init(&h, true);
	h_add(&h, &a, 1, NBD_CMD_READ, 0, 4096, ba);
	s_data(s, 0, 1, 0, pattern, 1024);
	s_data(s, 0, 1, 3072, pattern, 1024);
	s_none(s, 1);
	/* The stream itself is fine; the request failed. */
	CHECK(h_feed(&h, s->b, s->n, 1000000) == 0);
	CHECK(a.done && a.error == -EPROTO);
	CHECK(strstr(a.message, "2048 of 4096") != NULL);
	free(s);
}

/* Each stream breaks the protocol; the parser must say how. */
static void expect_violation(bool structured, struct stream *s,
			     const char *want)
{
	size_t k;

	for (k = 0; k < NSTEPS; k++) {
		struct harness h;
		struct nbd_cmd a, st;
		static uint8_t ba[4096];
		struct nbd_extent ext[4];
		uint8_t *where;

		h_init(&h, structured);
		h_add(&h, &a, 1, NBD_CMD_READ, 4096, 4096, ba);
		h_add(&h, &st, 2, NBD_CMD_BLOCK_STATUS, 0, 1 << 20, NULL);
		st.extents = ext;
		st.extents_cap = 4;
		fy_err_clear();
		CHECK(h_feed(&h, s->b, s->n, steps[k]) == -EPROTO);
		expect_msg(want);
		/* Once broken, it stays broken. */
		CHECK(nbd_rx_want(&h.rx, &where) == 0);
		CHECK(nbd_rx_got(&h.rx, 0) == -EPROTO);
	}
}

static void test_violations(void)
{
	struct stream *s = calloc(1, sizeof(*s));
	uint64_t off;

	s->n = 0;
	s_simple(s, 0, 99);
	expect_violation(true, s, "no request in flight carries");

	s->n = 0;
	s_u32(s, 0xdeadbeef);
	s_u32(s, 0);
	s_u64(s, 1);
	expect_violation(true, s, "bad reply magic 0xdeadbeef");

	s->n = 0;
	s_none(s, 1);
	expect_violation(false, s, "structured replies were not agreed");

	s->n = 0;
	s_simple(s, 0, 1);
	expect_violation(true, s, "simple reply to a read");

	s->n = 0;
	s_chunk(s, 0, NBD_REPLY_TYPE_NONE, 1, 0);
	expect_violation(true, s, "without the DONE flag");

	s->n = 0;
	s_data(s, 0, 1, 0, pattern, 16);
	expect_violation(true, s, "outside the request");

	s->n = 0;
	s_data(s, 0, 1, 4096 + 4000, pattern, 200);
	expect_violation(true, s, "outside the request");

	s->n = 0;
	s_chunk(s, 0, NBD_REPLY_TYPE_OFFSET_DATA, 1, 8 + 4097);
	expect_violation(true, s, "OFFSET_DATA chunk of 4105 bytes");

	s->n = 0;
	s_chunk(s, 0, NBD_REPLY_TYPE_OFFSET_DATA, 1, 8);
	expect_violation(true, s, "OFFSET_DATA chunk of 8 bytes");

	s->n = 0;
	s_data(s, 0, 1, 4096, pattern, 100);
	s_hole(s, 0, 1, 4096 + 50, 100);
	expect_violation(true, s, "twice");

	s->n = 0;
	s_hole(s, 0, 1, 4096, 0);
	expect_violation(true, s, "hole chunk of zero length");

	s->n = 0;
	s_chunk(s, 0, NBD_REPLY_TYPE_OFFSET_HOLE, 1, 16);
	expect_violation(true, s, "not 12");

	s->n = 0;
	s_chunk(s, 0, 0x42, 1, NBD_MAX_UNKNOWN_CHUNK + 1);
	expect_violation(true, s, "unknown chunk type 66");

	s->n = 0;
	s_chunk(s, 0, NBD_REPLY_TYPE_ERROR, 1, 6 + NBD_MAX_STRING + 1);
	expect_violation(true, s, "ERROR chunk of");

	s->n = 0;
	s_chunk(s, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 1, 8);
	s_u32(s, 5);
	s_u16(s, 3); /* message longer than the chunk */
	s_u16(s, 0);
	expect_violation(true, s, "message of 3 bytes");

	s->n = 0;
	off = 1;
	s_error(s, NBD_REPLY_TYPE_ERROR_OFFSET, NBD_REPLY_FLAG_DONE, 1, 5,
		"x", &off);
	expect_violation(true, s, "error offset");

	s->n = 0;
	s_data(s, 0, 2, 0, pattern, 16);
	expect_violation(true, s, "data chunk in reply to block status");

	s->n = 0;
	s_chunk(s, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 1, 12);
	s_u32(s, 7);
	s_u32(s, 512);
	s_u32(s, 0);
	expect_violation(true, s, "block status chunk in reply to a read");

	s->n = 0;
	s_chunk(s, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 2, 12);
	s_u32(s, 8);
	s_u32(s, 512);
	s_u32(s, 0);
	expect_violation(true, s, "context id 8");

	s->n = 0;
	s_chunk(s, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 2, 12);
	s_u32(s, 7);
	s_u32(s, 0);
	s_u32(s, 0);
	expect_violation(true, s, "zero length");

	s->n = 0;
	s_chunk(s, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 2, 14);
	expect_violation(true, s, "BLOCK_STATUS chunk of 14 bytes");

	s->n = 0;
	s_chunk(s, 0, NBD_REPLY_TYPE_BLOCK_STATUS, 2, 12);
	s_u32(s, 7);
	s_u32(s, 512);
	s_u32(s, 0);
	s_chunk(s, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 2, 12);
	s_u32(s, 7);
	s_u32(s, 512);
	s_u32(s, 0);
	expect_violation(true, s, "two block status chunks");

	/* A reply after DONE: the cookie is no longer in flight. */
	s->n = 0;
	s_hole(s, NBD_REPLY_FLAG_DONE, 1, 4096, 4096);
	s_none(s, 1);
	expect_violation(true, s, "no request in flight carries");
	free(s);
}

static void test_too_fragmented(void)
{
	struct harness h;
	struct nbd_cmd a;
	static uint8_t ba[4096];
	struct stream *s = calloc(1, sizeof(*s));
	int i;

	h_init(&h, true);
	h_add(&h, &a, 1, NBD_CMD_READ, 0, 4096, ba);
	/* Every other 16-byte piece, from the end backwards: none join. */
	for (i = 0; i <= NBD_MAX_READ_PIECES; i++)
		s_hole(s, 0, 1, 4096 - 32 * (uint64_t)(i + 1), 16);
	CHECK(h_feed(&h, s->b, s->n, 1000000) == -EPROTO);
	expect_msg("out-of-order pieces");
	free(s);
}

static void test_error_chunks(void)
{
	size_t k;

	for (k = 0; k < NSTEPS; k++) {
		struct harness h;
		struct nbd_cmd a, b, c;
		static uint8_t ba[4096], bb[4096], bc[1024];
		struct stream *s = calloc(1, sizeof(*s));
		uint64_t off = 4096 + 100;

		h_init(&h, true);
		h_add(&h, &a, 1, NBD_CMD_READ, 0, 4096, ba);
		h_add(&h, &b, 2, NBD_CMD_READ, 4096, 4096, bb);
		h_add(&h, &c, 3, NBD_CMD_READ, 8192, 1024, bc);
		s_error(s, NBD_REPLY_TYPE_ERROR, NBD_REPLY_FLAG_DONE, 1, 5,
			"disk \x01on fire", NULL);
		s_error(s, NBD_REPLY_TYPE_ERROR_OFFSET, 0, 2, 22, "bad", &off);
		s_none(s, 2);
		/* unknown type with the error bit: fails the read, skipped */
		s_chunk(s, 0, 0x8123, 3, 6 + 4 + 20);
		s_u32(s, 1);
		s_u16(s, 4);
		s_raw(s, "nope", 4);
		s_raw(s, pattern, 20);
		/* unknown type without it: skipped */
		s_chunk(s, 0, 0x0042, 3, 100);
		s_raw(s, pattern, 100);
		s_data(s, NBD_REPLY_FLAG_DONE, 3, 8192, pattern, 1024);
		CHECK(h_feed(&h, s->b, s->n, steps[k]) == 0);
		CHECK(h.ndone == 3);
		CHECK(a.error == -EIO && !strcmp(a.message, "disk ?on fire"));
		CHECK(b.error == -EINVAL && b.error_offset == off);
		CHECK(!strcmp(b.message, "bad"));
		CHECK(c.error == -EPERM && !strcmp(c.message, "nope"));
		CHECK(nbd_rx_idle(&h.rx));
		free(s);
	}
}

static void test_block_status(void)
{
	size_t k;

	for (k = 0; k < NSTEPS; k++) {
		struct harness h;
		struct nbd_cmd st, st2, st3;
		struct nbd_extent ext[8], ext2[2], ext3[8];
		struct stream *s = calloc(1, sizeof(*s));

		h_init(&h, true);
		h_add(&h, &st, 5, NBD_CMD_BLOCK_STATUS, 4096, 65536, NULL);
		st.extents = ext;
		st.extents_cap = 8;
		h_add(&h, &st2, 6, NBD_CMD_BLOCK_STATUS, 0, 1 << 20, NULL);
		st2.extents = ext2;
		st2.extents_cap = 2;
		h_add(&h, &st3, 9, NBD_CMD_BLOCK_STATUS, 0, 4096, NULL);
		st3.extents = ext3;
		st3.extents_cap = 8;

		/* data 8K, data 8K (merged), hole|zero 16K, data 64K
		 * (clipped to the request), then one past it (ignored) */
		s_chunk(s, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 5,
			4 + 5 * 8);
		s_u32(s, 7);
		s_u32(s, 8192);
		s_u32(s, 0);
		s_u32(s, 8192);
		s_u32(s, 0x100); /* unknown flag bits are ignored */
		s_u32(s, 16384);
		s_u32(s, NBD_STATE_HOLE | NBD_STATE_ZERO);
		s_u32(s, 65536);
		s_u32(s, 0);
		s_u32(s, 4096);
		s_u32(s, NBD_STATE_ZERO);
		/* alternating flags into a 2-entry array */
		s_chunk(s, 0, NBD_REPLY_TYPE_BLOCK_STATUS, 6, 4 + 4 * 8);
		s_u32(s, 7);
		s_u32(s, 512);
		s_u32(s, 0);
		s_u32(s, 512);
		s_u32(s, NBD_STATE_ZERO);
		s_u32(s, 512);
		s_u32(s, 0);
		s_u32(s, 512);
		s_u32(s, NBD_STATE_ZERO);
		s_none(s, 6);
		/* a simple error reply is fine for block status */
		s_simple(s, 22, 9);
		CHECK(h_feed(&h, s->b, s->n, steps[k]) == 0);
		CHECK(st.done && !st.error && st.got_status);
		CHECK(st.nextents == 3);
		CHECK(ext[0].offset == 4096 && ext[0].length == 16384 &&
		      ext[0].flags == 0);
		CHECK(ext[1].offset == 4096 + 16384 && ext[1].length == 16384 &&
		      ext[1].flags == (NBD_STATE_HOLE | NBD_STATE_ZERO));
		CHECK(ext[2].offset == 4096 + 32768 && ext[2].length == 32768);
		CHECK(st.status_end == 4096 + 65536);
		CHECK(st2.done && !st2.error && st2.nextents == 2);
		CHECK(st2.status_full && st2.status_end == 1024);
		CHECK(st3.done && st3.error == -EINVAL);
		free(s);
	}
}

static void test_status_missing(void)
{
	struct harness h;
	struct nbd_cmd st;
	struct nbd_extent ext[2];
	struct stream *s = calloc(1, sizeof(*s));

	h_init(&h, true);
	h_add(&h, &st, 5, NBD_CMD_BLOCK_STATUS, 0, 4096, NULL);
	st.extents = ext;
	st.extents_cap = 2;
	s_none(s, 5);
	CHECK(h_feed(&h, s->b, s->n, 1000000) == 0);
	CHECK(st.done && st.error == -EPROTO);
	free(s);
}

static void test_errno_map(void)
{
	CHECK(nbd_errno(1) == -EPERM);
	CHECK(nbd_errno(5) == -EIO);
	CHECK(nbd_errno(108) == -ESHUTDOWN);
	CHECK(nbd_errno(12345) == -EIO);
	CHECK(nbd_errno(0) == -EIO);
}

/* ---- URIs -------------------------------------------------------------- */

static void test_uris(void)
{
	struct nbd_uri u;

	CHECK(fy_nbd_is_uri("nbd://h/e"));
	CHECK(fy_nbd_is_uri("NBDS://h"));
	CHECK(fy_nbd_is_uri("nbd+unix:///?socket=/s"));
	CHECK(fy_nbd_is_uri("nbds+unix:///x?socket=/s"));
	CHECK(!fy_nbd_is_uri("file:///x"));
	CHECK(!fy_nbd_is_uri("nbd:/x"));
	CHECK(!fy_nbd_is_uri(NULL));

	CHECK_RC(nbd_uri_parse("nbd://example.com/disk", &u));
	CHECK(!u.tls && !u.unix_socket && !strcmp(u.host, "example.com"));
	CHECK(!strcmp(u.port, "10809") && !strcmp(u.export_name, "disk"));

	CHECK_RC(nbd_uri_parse("nbds://10.1.2.3:1234", &u));
	CHECK(u.tls && !strcmp(u.host, "10.1.2.3") && !strcmp(u.port, "1234"));
	CHECK(u.export_name[0] == '\0');

	CHECK_RC(nbd_uri_parse("nbd://[::1]:99//a%20b?tls-hostname=srv", &u));
	CHECK(!strcmp(u.host, "::1") && !strcmp(u.port, "99"));
	CHECK(!strcmp(u.export_name, "/a b"));
	CHECK(!strcmp(u.tls_hostname, "srv"));

	CHECK_RC(nbd_uri_parse("nbds+unix:///exp?socket=/tmp/a%2Bb.sock", &u));
	CHECK(u.tls && u.unix_socket && !strcmp(u.socket, "/tmp/a+b.sock"));
	CHECK(!strcmp(u.export_name, "exp"));

	CHECK(nbd_uri_parse("nbd+unix:///exp", &u) == -EINVAL);
	expect_msg("?socket=PATH");
	CHECK(nbd_uri_parse("nbd+unix://host/exp?socket=/s", &u) == -EINVAL);
	expect_msg("names no host");
	CHECK(nbd_uri_parse("nbd://h/e?socket=/s", &u) == -EINVAL);
	expect_msg("nbd+unix:// URIs only");
	CHECK(nbd_uri_parse("nbd:///e", &u) == -EINVAL);
	expect_msg("names no host");
	CHECK(nbd_uri_parse("nbd://h:0/e", &u) == -EINVAL);
	expect_msg("bad port");
	CHECK(nbd_uri_parse("nbd://h:70000/e", &u) == -EINVAL);
	CHECK(nbd_uri_parse("nbd://h:12a/e", &u) == -EINVAL);
	CHECK(nbd_uri_parse("nbd://user@h/e", &u) == -EINVAL);
	expect_msg("user names");
	CHECK(nbd_uri_parse("nbd://h/e%zz", &u) == -EINVAL);
	expect_msg("percent escape");
	CHECK(nbd_uri_parse("nbd://h/e%2", &u) == -EINVAL);
	CHECK(nbd_uri_parse("nbd://h/e%00", &u) == -EINVAL);
	CHECK(nbd_uri_parse("nbd://h/e?foo=1", &u) == -EINVAL);
	expect_msg("unknown URI query parameter 'foo'");
	CHECK(nbd_uri_parse("nbd://h/e?noequals", &u) == -EINVAL);
	CHECK(nbd_uri_parse("nbd://h/e#frag", &u) == -EINVAL);
	CHECK(nbd_uri_parse("nbd://[::1/e", &u) == -EINVAL);
	CHECK(nbd_uri_parse("nbd://[::1]x/e", &u) == -EINVAL);
	CHECK(nbd_uri_parse("http://h/e", &u) == -EINVAL);
	expect_msg("not an NBD URI");
	CHECK(nbd_uri_parse(
		      "nbd+unix:///?socket=/s&socket=/t", &u) == -EINVAL);
	expect_msg("twice");
	{
		/* export names are bounded by the NBD string limit */
		char *big = malloc(NBD_MAX_STRING + 64);

		strcpy(big, "nbd://h/");
		memset(big + 8, 'x', NBD_MAX_STRING + 1);
		big[8 + NBD_MAX_STRING + 1] = '\0';
		CHECK(nbd_uri_parse(big, &u) == -EINVAL);
		expect_msg("longer than 4096");
		big[8 + NBD_MAX_STRING] = '\0';
		CHECK_RC(nbd_uri_parse(big, &u));
		free(big);
	}
}

/* ---- configuration ----------------------------------------------------- */

static void test_config(void)
{
	static const char text[] =
		"vixDiskLib.nfc.AcceptTimeoutMs=1000\n"
		"vixDiskLib.nfc.RequestTimeoutMs=2000\n"
		"vixDiskLib.nfc.ReadTimeoutsMs=3000\n"
		"vixDiskLib.nfc.WriteTimeoutMs=4000\n"
		"vixDiskLib.nfc.WriteTimeoutsMs=9999\n"
		"vixDiskLib.nfc.LogLevel=2\n"
		"ferry.nbd.MaxInFlight=64\n"
		"ferry.nbd.MaxConnections=4\n"
		"ferry.nbd.ReconnectAttempts=0\n"
		"ferry.nbd.ReconnectBaseMs=50\n"
		"ferry.nbd.TlsRequired=yes\n"
		"ferry.nbd.TlsCa=/etc/ca.pem\n";
	struct fy_config *cfg = fy_config_new();
	struct fy_nbd_opts o;

	fy_nbd_opts_default(&o);
	CHECK(o.max_in_flight == 16 && o.max_connections == 1);
	CHECK(o.reconnect_attempts == 5 && !o.tls_required);
	CHECK_RC(fy_config_parse(cfg, "cfg", text, strlen(text)));
	CHECK_RC(fy_nbd_opts_from_config(&o, cfg));
	CHECK(o.connect_timeout_ms == 1000);
	CHECK(o.negotiate_timeout_ms == 2000);
	CHECK(o.read_timeout_ms == 3000);	/* misspelling accepted */
	CHECK(o.write_timeout_ms == 4000);	/* correct spelling wins */
	CHECK(o.log_level == 2);
	CHECK(o.max_in_flight == 64 && o.max_connections == 4);
	CHECK(o.reconnect_attempts == 0 && o.reconnect_base_ms == 50);
	CHECK(o.tls_required && !strcmp(o.tls_ca, "/etc/ca.pem"));
	CHECK(fy_config_warn_unknown(cfg, fy_nbd_config_keys) == 0);

	CHECK_RC(fy_config_set(cfg, "ferry.nbd.MaxConnections", "17"));
	CHECK(fy_nbd_opts_from_config(&o, cfg) == -ERANGE);
	expect_msg("ferry.nbd.MaxConnections");
	fy_config_free(cfg);
}

/* Opening fails cleanly before any network traffic. */
static void test_open_errors(void)
{
	struct fy_source *src = (struct fy_source *)1;
	struct fy_nbd_opts o;
	struct fy_nbd_stats st;

	CHECK(fy_nbd_source_open("nbd://h:0/x", NULL, &src) == -EINVAL);
	CHECK(src == NULL);
	fy_nbd_opts_default(&o);
	o.tls_cert = "/nonexistent/cert.pem";
	CHECK(fy_nbd_source_open("nbds+unix:///?socket=/nonexistent", &o,
				 &src) == -EINVAL);
	expect_msg("needs both a certificate and a key");
	o.tls_cert = NULL;
	o.tls_ca = "/nonexistent/ca.pem";
	CHECK(fy_nbd_source_open("nbds+unix:///?socket=/nonexistent", &o,
				 &src) == -EINVAL);
	expect_msg("/nonexistent/ca.pem");
	CHECK(fy_nbd_source_open("nbd+unix:///?socket=/nonexistent/s", NULL,
				 &src) < 0);
	expect_msg("/nonexistent/s");
	CHECK(fy_nbd_stats(NULL, &st) == -EINVAL);
}

int main(void)
{
	fill_pattern();
	test_simple_replies();
	test_structured_out_of_order();
	test_incomplete_read();
	test_violations();
	test_too_fragmented();
	test_error_chunks();
	test_block_status();
	test_status_missing();
	test_errno_map();
	test_uris();
	test_config();
	test_open_errors();
	CHECK_DONE();
}
