/*
 * Fuzzes the NBD reply parser (nbd/reply.c) as a hostile server would:
 * arbitrary bytes after the handshake, with a few requests in flight.
 *
 * The requests in flight are reads, block status, and a write and a
 * flush (nbd/writer.c): a reply to those must never carry data or extents.
 *
 * Input: byte 0 picks the negotiated features (bit 0 structured replies,
 * bit 1 base:allocation) and byte 1 how many bytes each feed carries, so
 * both whole and dribbled delivery are exercised; the rest is the stream.
 * Buffers are exactly the requests' sizes, so AddressSanitizer catches a
 * write outside them. A read reported complete without error must have
 * been covered exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "nbd/nbd_int.h"

#define NCMDS 6

struct fuzz {
	struct nbd_rx rx;
	struct nbd_cmd cmds[NCMDS];
	bool live[NCMDS];
	uint8_t *bufs[NCMDS];
	struct nbd_extent ext[8];
};

static struct nbd_cmd *f_lookup(void *opaque, uint64_t cookie)
{
	struct fuzz *f = opaque;
	int i;

	for (i = 0; i < NCMDS; i++)
		if (f->live[i] && f->cmds[i].cookie == cookie)
			return &f->cmds[i];
	return NULL;
}

static void f_done(void *opaque, struct nbd_cmd *cmd)
{
	struct fuzz *f = opaque;
	uint64_t got = 0;
	unsigned i;

	f->live[cmd - f->cmds] = false;
	if (cmd->error)
		return;
	if (cmd->type == NBD_CMD_READ) {
		for (i = 0; i < cmd->npieces; i++)
			got += cmd->pieces[i].end - cmd->pieces[i].start;
		if (cmd->length && got != cmd->length)
			abort();
	} else if (cmd->type == NBD_CMD_BLOCK_STATUS) {
		if (cmd->nextents > cmd->extents_cap ||
		    cmd->status_end > cmd->offset + cmd->length)
			abort();
	} else if (cmd->npieces || cmd->nextents || cmd->got_status) {
		abort();
	}
}

static const struct nbd_rx_ops f_ops = { f_lookup, f_done };

static void setup(struct fuzz *f, uint8_t features)
{
	static const struct {
		uint16_t type;
		uint64_t offset;
		uint32_t length;
	} reqs[NCMDS] = {
		{ NBD_CMD_READ, 0, 4096 },
		{ NBD_CMD_READ, 4096, 512 },
		{ NBD_CMD_READ, 1ull << 40, 3 },
		{ NBD_CMD_BLOCK_STATUS, 0, 65536 },
		{ NBD_CMD_WRITE, 8192, 65536 },
		{ NBD_CMD_FLUSH, 0, 0 },
	};
	int i;

	memset(f, 0, sizeof(*f));
	nbd_rx_init(&f->rx, &f_ops, f, features & 1, features & 2, 7);
	for (i = 0; i < NCMDS; i++) {
		struct nbd_cmd *c = &f->cmds[i];

		c->cookie = (uint64_t)i + 1;
		c->type = reqs[i].type;
		c->offset = reqs[i].offset;
		c->length = reqs[i].length;
		if (c->type == NBD_CMD_READ) {
			f->bufs[i] = malloc(c->length);
			c->buf = f->bufs[i];
		} else if (c->type == NBD_CMD_BLOCK_STATUS) {
			c->extents = f->ext;
			c->extents_cap = 8;
		}
		nbd_cmd_reset_reply(c);
		f->live[i] = true;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz *f;
	size_t step, want, n;
	uint8_t *where;
	int i;

	if (size < 2)
		return 0;
	f = malloc(sizeof(*f));
	if (!f)
		return 0;
	setup(f, data[0]);
	step = data[1] ? data[1] : 65536;
	data += 2;
	size -= 2;
	while (size) {
		want = nbd_rx_want(&f->rx, &where);
		if (!want)
			break;
		n = want < size ? want : size;
		if (n > step)
			n = step;
		memcpy(where, data, n);
		if (nbd_rx_got(&f->rx, n))
			break;
		data += n;
		size -= n;
	}
	for (i = 0; i < NCMDS; i++)
		free(f->bufs[i]);
	free(f);
	return 0;
}
