/*
 * The transmission-phase reply parser: simple replies and structured
 * reply chunks, checked against the request they answer.
 *
 * It owns no socket and allocates nothing, so a fuzzer can drive it with
 * arbitrary bytes. Every length the server sends is checked against the
 * request (or a named maximum in nbd_int.h) before a byte of payload is
 * accepted, and data is written only inside the request's buffer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "nbd/nbd_int.h"

int nbd_errno(uint32_t nbd_error)
{
	switch (nbd_error) {
	case 1:
		return -EPERM;
	case 5:
		return -EIO;
	case 12:
		return -ENOMEM;
	case 22:
		return -EINVAL;
	case 28:
		return -ENOSPC;
	case 75:
		return -EOVERFLOW;
	case 95:
		return -ENOTSUP;
	case 108:
		return -ESHUTDOWN;
	default:
		/* Includes 0, which an error chunk must not carry. */
		return -EIO;
	}
}

void nbd_cmd_reset_reply(struct nbd_cmd *cmd)
{
	cmd->error = 0;
	cmd->message[0] = '\0';
	cmd->error_offset = UINT64_MAX;
	cmd->done = false;
	cmd->got_status = false;
	cmd->nextents = 0;
	cmd->status_end = cmd->offset;
	cmd->status_full = false;
	cmd->npieces = 0;
}

static void expect(struct nbd_rx *rx, enum nbd_rx_state state, size_t need)
{
	rx->state = state;
	rx->need = need;
	rx->have = 0;
}

void nbd_rx_init(struct nbd_rx *rx, const struct nbd_rx_ops *ops,
		 void *opaque, bool structured, bool has_meta,
		 uint32_t meta_id)
{
	memset(rx, 0, sizeof(*rx));
	rx->ops = ops;
	rx->opaque = opaque;
	rx->structured = structured;
	rx->has_meta = has_meta;
	rx->meta_id = meta_id;
	expect(rx, NBD_RX_HEADER, NBD_SIMPLE_REPLY_SIZE);
}

bool nbd_rx_idle(const struct nbd_rx *rx)
{
	return rx->state == NBD_RX_HEADER && rx->have == 0;
}

__attribute__((format(printf, 2, 3)))
static int violation(struct nbd_rx *rx, const char *fmt, ...)
{
	char msg[FY_ERR_MAX / 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rx->state = NBD_RX_FAILED;
	rx->need = 0;
	rx->have = 0;
	return fy_err_set(-EPROTO, "NBD server broke the protocol: %s", msg);
}

/* What a request is called in messages: "a read", "block status". */
static const char *cmd_name(uint16_t type)
{
	switch (type) {
	case NBD_CMD_READ:
		return "a read";
	case NBD_CMD_WRITE:
		return "a write";
	case NBD_CMD_FLUSH:
		return "a flush";
	case NBD_CMD_BLOCK_STATUS:
		return "block status";
	default:
		return "a request";
	}
}

static const char *chunk_name(uint16_t type)
{
	switch (type) {
	case NBD_REPLY_TYPE_NONE:
		return "NONE";
	case NBD_REPLY_TYPE_OFFSET_DATA:
		return "OFFSET_DATA";
	case NBD_REPLY_TYPE_OFFSET_HOLE:
		return "OFFSET_HOLE";
	case NBD_REPLY_TYPE_BLOCK_STATUS:
		return "BLOCK_STATUS";
	case NBD_REPLY_TYPE_ERROR:
		return "ERROR";
	case NBD_REPLY_TYPE_ERROR_OFFSET:
		return "ERROR_OFFSET";
	default:
		return "unknown";
	}
}

/* Keeps the first error of a reply; its text is shown to a person, so
 * anything but printable ASCII becomes '?'. */
static void record_error(struct nbd_cmd *cmd, uint32_t nbd_error,
			 const uint8_t *msg, size_t len)
{
	size_t i;

	if (cmd->error)
		return;
	cmd->error = nbd_errno(nbd_error);
	if (len > sizeof(cmd->message) - 1)
		len = sizeof(cmd->message) - 1;
	for (i = 0; i < len; i++)
		cmd->message[i] = msg[i] >= 0x20 && msg[i] < 0x7f ?
					  (char)msg[i] : '?';
	cmd->message[len] = '\0';
}

/* Records that [start, end) of a read arrived, refusing overlaps: two
 * chunks for the same bytes would let one hide a gap elsewhere. */
static int add_piece(struct nbd_rx *rx, struct nbd_cmd *cmd, uint64_t start,
		     uint64_t end)
{
	unsigned i = 0, n = cmd->npieces;
	bool join_prev, join_next;

	while (i < n && cmd->pieces[i].start < start)
		i++;
	if ((i > 0 && cmd->pieces[i - 1].end > start) ||
	    (i < n && cmd->pieces[i].start < end))
		return violation(rx,
				 "read reply for cookie %#" PRIx64
				 " sends bytes %" PRIu64 "-%" PRIu64 " twice",
				 cmd->cookie, start, end);
	join_prev = i > 0 && cmd->pieces[i - 1].end == start;
	join_next = i < n && cmd->pieces[i].start == end;
	if (join_prev && join_next) {
		cmd->pieces[i - 1].end = cmd->pieces[i].end;
		memmove(&cmd->pieces[i], &cmd->pieces[i + 1],
			(n - i - 1) * sizeof(cmd->pieces[0]));
		cmd->npieces--;
	} else if (join_prev) {
		cmd->pieces[i - 1].end = end;
	} else if (join_next) {
		cmd->pieces[i].start = start;
	} else {
		if (n == NBD_MAX_READ_PIECES)
			return violation(rx,
					 "read reply for cookie %#" PRIx64
					 " is split into more than %d"
					 " out-of-order pieces",
					 cmd->cookie, NBD_MAX_READ_PIECES);
		memmove(&cmd->pieces[i + 1], &cmd->pieces[i],
			(n - i) * sizeof(cmd->pieces[0]));
		cmd->pieces[i].start = start;
		cmd->pieces[i].end = end;
		cmd->npieces++;
	}
	return 0;
}

/* Checks that [off, off+len) lies inside the request. */
static int check_inside(struct nbd_rx *rx, struct nbd_cmd *cmd, uint64_t off,
			uint64_t len, const char *what)
{
	if (off < cmd->offset || off - cmd->offset > cmd->length ||
	    len > cmd->length - (off - cmd->offset))
		return violation(rx,
				 "%s at %" PRIu64 "+%" PRIu64
				 " lies outside the request %" PRIu64
				 "+%" PRIu32 " (cookie %#" PRIx64 ")",
				 what, off, len, cmd->offset, cmd->length,
				 cmd->cookie);
	return 0;
}

static void finish(struct nbd_rx *rx, struct nbd_cmd *cmd)
{
	uint64_t got = 0;
	unsigned i;

	if (!cmd->error && cmd->type == NBD_CMD_READ && cmd->length) {
		for (i = 0; i < cmd->npieces; i++)
			got += cmd->pieces[i].end - cmd->pieces[i].start;
		if (got != cmd->length) {
			cmd->error = -EPROTO;
			snprintf(cmd->message, sizeof(cmd->message),
				 "server ended the read reply after %" PRIu64
				 " of %" PRIu32 " bytes",
				 got, cmd->length);
		}
	}
	if (!cmd->error && cmd->type == NBD_CMD_BLOCK_STATUS &&
	    !cmd->got_status) {
		cmd->error = -EPROTO;
		snprintf(cmd->message, sizeof(cmd->message),
			 "server ended the block status reply without status");
	}
	cmd->done = true;
	rx->ops->done(rx->opaque, cmd);
}

static void end_chunk(struct nbd_rx *rx)
{
	struct nbd_cmd *cmd = rx->cmd;

	rx->cmd = NULL;
	expect(rx, NBD_RX_HEADER, NBD_SIMPLE_REPLY_SIZE);
	if (rx->flags & NBD_REPLY_FLAG_DONE)
		finish(rx, cmd);
}

static struct nbd_cmd *find(struct nbd_rx *rx, uint64_t cookie)
{
	return rx->ops->lookup(rx->opaque, cookie);
}

static int simple_reply(struct nbd_rx *rx)
{
	uint32_t error = nbd_get32(rx->hdr + 4);
	uint64_t cookie = nbd_get64(rx->hdr + 8);
	struct nbd_cmd *cmd = find(rx, cookie);

	if (!cmd)
		return violation(rx,
				 "simple reply for cookie %#" PRIx64
				 ", which no request in flight carries",
				 cookie);
	if (rx->structured && cmd->type == NBD_CMD_READ)
		return violation(rx,
				 "simple reply to a read (cookie %#" PRIx64
				 ") although structured replies were agreed",
				 cookie);
	rx->cmd = cmd;
	rx->flags = NBD_REPLY_FLAG_DONE;
	if (error) {
		record_error(cmd, error, NULL, 0);
	} else if (cmd->type == NBD_CMD_READ && cmd->length) {
		/* A simple reply carries exactly the request's length. */
		expect(rx, NBD_RX_SIMPLE_DATA, cmd->length);
		return 0;
	}
	end_chunk(rx);
	return 0;
}

static int chunk_header(struct nbd_rx *rx)
{
	struct nbd_cmd *cmd;
	uint64_t cookie = nbd_get64(rx->hdr + 8);
	uint32_t len;

	rx->flags = nbd_get16(rx->hdr + 4);
	rx->type = nbd_get16(rx->hdr + 6);
	rx->length = len = nbd_get32(rx->hdr + 16);
	rx->remaining = len;
	cmd = find(rx, cookie);
	if (!cmd)
		return violation(rx,
				 "%s chunk (type %u) for cookie %#" PRIx64
				 ", which no request in flight carries",
				 chunk_name(rx->type), rx->type, cookie);
	rx->cmd = cmd;

	switch (rx->type) {
	case NBD_REPLY_TYPE_NONE:
		if (len != 0)
			return violation(rx, "NONE chunk with %" PRIu32
					 " bytes of payload", len);
		if (!(rx->flags & NBD_REPLY_FLAG_DONE))
			return violation(rx, "NONE chunk without the DONE "
					 "flag");
		end_chunk(rx);
		return 0;
	case NBD_REPLY_TYPE_OFFSET_DATA:
		if (cmd->type != NBD_CMD_READ)
			return violation(rx, "data chunk in reply to %s "
					 "(cookie %#" PRIx64 ")",
					 cmd_name(cmd->type), cookie);
		if (len < 9 || len - 8 > cmd->length)
			return violation(rx,
					 "OFFSET_DATA chunk of %" PRIu32
					 " bytes for a read of %" PRIu32,
					 len, cmd->length);
		expect(rx, NBD_RX_PREFIX, 8);
		return 0;
	case NBD_REPLY_TYPE_OFFSET_HOLE:
		if (cmd->type != NBD_CMD_READ)
			return violation(rx, "hole chunk in reply to %s "
					 "(cookie %#" PRIx64 ")",
					 cmd_name(cmd->type), cookie);
		if (len != 12)
			return violation(rx, "OFFSET_HOLE chunk of %" PRIu32
					 " bytes, not 12", len);
		expect(rx, NBD_RX_PREFIX, 12);
		return 0;
	case NBD_REPLY_TYPE_BLOCK_STATUS:
		if (cmd->type != NBD_CMD_BLOCK_STATUS)
			return violation(rx, "block status chunk in reply to "
					 "%s (cookie %#" PRIx64 ")",
					 cmd_name(cmd->type), cookie);
		if (len < 12 || (len - 4) % 8 ||
		    (len - 4) / 8 > NBD_MAX_STATUS_DESCRIPTORS)
			return violation(rx, "BLOCK_STATUS chunk of %" PRIu32
					 " bytes", len);
		expect(rx, NBD_RX_PREFIX, 4);
		return 0;
	case NBD_REPLY_TYPE_ERROR:
		if (len < 6 || len > 6 + NBD_MAX_STRING)
			return violation(rx, "ERROR chunk of %" PRIu32
					 " bytes", len);
		expect(rx, NBD_RX_PREFIX, len);
		return 0;
	case NBD_REPLY_TYPE_ERROR_OFFSET:
		if (len < 14 || len > 14 + NBD_MAX_STRING)
			return violation(rx, "ERROR_OFFSET chunk of %" PRIu32
					 " bytes", len);
		expect(rx, NBD_RX_PREFIX, len);
		return 0;
	}

	/* A type we do not know. Its length still frames it, so it can be
	 * skipped; one with the error bit fails the request. A read that
	 * lost data to such a chunk is caught by the coverage check. */
	if (len > NBD_MAX_UNKNOWN_CHUNK)
		return violation(rx, "unknown chunk type %u with %" PRIu32
				 " bytes of payload", rx->type, len);
	if (rx->type & NBD_REPLY_TYPE_ERROR_BIT) {
		if (len < 6)
			return violation(rx, "error chunk type %u of %" PRIu32
					 " bytes", rx->type, len);
		expect(rx, NBD_RX_PREFIX,
		       len < 6 + NBD_MAX_STRING ? len : 6 + NBD_MAX_STRING);
		return 0;
	}
	if (len == 0) {
		end_chunk(rx);
		return 0;
	}
	expect(rx, NBD_RX_SKIP, len < NBD_RX_SCRATCH ? len : NBD_RX_SCRATCH);
	return 0;
}

static int header_done(struct nbd_rx *rx)
{
	uint32_t magic = nbd_get32(rx->hdr);

	if (rx->need == NBD_STRUCTURED_REPLY_SIZE)
		return chunk_header(rx);
	if (magic == NBD_SIMPLE_REPLY_MAGIC)
		return simple_reply(rx);
	if (magic != NBD_STRUCTURED_REPLY_MAGIC)
		return violation(rx, "bad reply magic %#010" PRIx32, magic);
	if (!rx->structured)
		return violation(rx, "structured reply chunk although "
				 "structured replies were not agreed");
	rx->need = NBD_STRUCTURED_REPLY_SIZE;
	return 0;
}

static int error_prefix(struct nbd_rx *rx, struct nbd_cmd *cmd)
{
	const uint8_t *p = rx->scratch;
	uint32_t error = nbd_get32(p);
	uint16_t msglen = nbd_get16(p + 4);
	uint32_t fixed = rx->type == NBD_REPLY_TYPE_ERROR_OFFSET ? 14 : 6;
	uint64_t off;
	size_t shown;

	if (msglen > rx->length - fixed)
		return violation(rx, "%s chunk message of %u bytes in a "
				 "chunk of %" PRIu32,
				 chunk_name(rx->type), msglen, rx->length);
	/* An unknown error type may have been read only in part. */
	shown = msglen < rx->have - 6 ? msglen : rx->have - 6;
	if (rx->type == NBD_REPLY_TYPE_ERROR_OFFSET) {
		off = nbd_get64(p + 6 + msglen);
		if (check_inside(rx, cmd, off, 1, "error offset"))
			return -EPROTO;
		if (!cmd->error)
			cmd->error_offset = off;
	}
	record_error(cmd, error, p + 6, shown);
	if (rx->remaining) {
		expect(rx, NBD_RX_SKIP,
		       rx->remaining < NBD_RX_SCRATCH ? rx->remaining
						      : NBD_RX_SCRATCH);
		return 0;
	}
	end_chunk(rx);
	return 0;
}

static int prefix_done(struct nbd_rx *rx)
{
	struct nbd_cmd *cmd = rx->cmd;
	const uint8_t *p = rx->scratch;
	uint64_t off;
	uint32_t len;
	int rc;

	rx->remaining -= (uint32_t)rx->have;
	switch (rx->type) {
	case NBD_REPLY_TYPE_OFFSET_DATA:
		off = nbd_get64(p);
		len = rx->length - 8;
		rc = check_inside(rx, cmd, off, len, "data chunk");
		if (!rc)
			rc = add_piece(rx, cmd, off, off + len);
		if (rc)
			return rc;
		rx->data_pos = off;
		expect(rx, NBD_RX_DATA, len);
		return 0;
	case NBD_REPLY_TYPE_OFFSET_HOLE:
		off = nbd_get64(p);
		len = nbd_get32(p + 8);
		if (len == 0)
			return violation(rx, "hole chunk of zero length");
		rc = check_inside(rx, cmd, off, len, "hole chunk");
		if (!rc)
			rc = add_piece(rx, cmd, off, off + len);
		if (rc)
			return rc;
		memset(cmd->buf + (off - cmd->offset), 0, len);
		rx->hole_bytes += len;
		end_chunk(rx);
		return 0;
	case NBD_REPLY_TYPE_BLOCK_STATUS:
		if (!rx->has_meta || nbd_get32(p) != rx->meta_id)
			return violation(rx, "block status for context id %"
					 PRIu32 ", which was not agreed",
					 nbd_get32(p));
		if (cmd->got_status)
			return violation(rx, "two block status chunks for one "
					 "context (cookie %#" PRIx64 ")",
					 cmd->cookie);
		cmd->got_status = true;
		expect(rx, NBD_RX_STATUS, 8);
		return 0;
	default:
		return error_prefix(rx, cmd);
	}
}

/* One base:allocation descriptor. Extents are clipped to the request
 * and merged when their flags agree; when the caller's array is full the
 * rest is dropped, and status_end tells how far the answer reached. */
static int descriptor_done(struct nbd_rx *rx)
{
	struct nbd_cmd *cmd = rx->cmd;
	uint32_t len = nbd_get32(rx->scratch);
	uint32_t flags = nbd_get32(rx->scratch + 4) &
			 (NBD_STATE_HOLE | NBD_STATE_ZERO);
	uint64_t end = cmd->offset + cmd->length;
	uint64_t take;
	struct nbd_extent *last;

	if (len == 0)
		return violation(rx, "block status extent of zero length");
	take = end - cmd->status_end < len ? end - cmd->status_end : len;
	last = cmd->nextents ? &cmd->extents[cmd->nextents - 1] : NULL;
	if (take == 0) {
		/* Past the request: allowed, and ignored. */
	} else if (!cmd->status_full && last && last->flags == flags &&
		   last->offset + last->length == cmd->status_end) {
		last->length += take;
		cmd->status_end += take;
	} else if (!cmd->status_full && cmd->nextents < cmd->extents_cap) {
		cmd->extents[cmd->nextents].offset = cmd->status_end;
		cmd->extents[cmd->nextents].length = take;
		cmd->extents[cmd->nextents].flags = flags;
		cmd->nextents++;
		cmd->status_end += take;
	} else {
		/* Full: status_end stays where the recorded extents end, and
		 * no later descriptor may join them across the gap. */
		cmd->status_full = true;
	}
	rx->remaining -= 8;
	if (rx->remaining == 0) {
		end_chunk(rx);
		return 0;
	}
	expect(rx, NBD_RX_STATUS, 8);
	return 0;
}

size_t nbd_rx_want(struct nbd_rx *rx, uint8_t **where)
{
	struct nbd_cmd *cmd = rx->cmd;

	switch (rx->state) {
	case NBD_RX_HEADER:
		*where = rx->hdr + rx->have;
		break;
	case NBD_RX_SIMPLE_DATA:
		*where = cmd->buf + rx->have;
		break;
	case NBD_RX_DATA:
		*where = cmd->buf + (rx->data_pos - cmd->offset) + rx->have;
		break;
	case NBD_RX_PREFIX:
	case NBD_RX_STATUS:
	case NBD_RX_SKIP:
		*where = rx->scratch + rx->have;
		break;
	default:
		*where = NULL;
		return 0;
	}
	return rx->need - rx->have;
}

int nbd_rx_got(struct nbd_rx *rx, size_t n)
{
	if (rx->state == NBD_RX_FAILED)
		return -EPROTO;
	if (n > rx->need - rx->have)
		return fy_err_set(-EINVAL, "nbd: %zu bytes stored where %zu "
				  "were wanted", n, rx->need - rx->have);
	rx->have += n;
	if (rx->have < rx->need)
		return 0;

	switch (rx->state) {
	case NBD_RX_HEADER:
		return header_done(rx);
	case NBD_RX_SIMPLE_DATA:
		rx->cmd->npieces = 1;
		rx->cmd->pieces[0].start = rx->cmd->offset;
		rx->cmd->pieces[0].end = rx->cmd->offset + rx->cmd->length;
		rx->data_bytes += rx->have;
		end_chunk(rx);
		return 0;
	case NBD_RX_PREFIX:
		return prefix_done(rx);
	case NBD_RX_DATA:
		rx->data_bytes += rx->have;
		end_chunk(rx);
		return 0;
	case NBD_RX_STATUS:
		return descriptor_done(rx);
	case NBD_RX_SKIP:
		rx->remaining -= (uint32_t)rx->have;
		if (rx->remaining == 0)
			end_chunk(rx);
		else
			expect(rx, NBD_RX_SKIP,
			       rx->remaining < NBD_RX_SCRATCH ? rx->remaining
							      : NBD_RX_SCRATCH);
		return 0;
	default:
		return -EPROTO;
	}
}
