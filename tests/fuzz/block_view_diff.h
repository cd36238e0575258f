/* The one contract of fy_block_view_parse, checked against protobuf-c on
 * any frame body: used by unit.test_frame and fuzz_frame.
 *
 * 1 (read in place): protobuf-c decodes the same body to a Block with the
 *   same digest, plain size, codec and data, and it passes the checks;
 * -EBADMSG: protobuf-c's decode fails the same checks;
 * 0: no claim (protobuf-c decodes it, or fails, on its own).
 * Returns the view's answer, or 2 when the two disagree. */
#ifndef FERRY_TEST_BLOCK_VIEW_DIFF_H
#define FERRY_TEST_BLOCK_VIEW_DIFF_H

#include <errno.h>
#include <string.h>

#include "proto/wire.h"

static int block_view_diff(const uint8_t *body, size_t len)
{
	struct fy_block_view v;
	fy_frame *f = NULL;
	int view = fy_block_view_parse(body, len, &v);
	int rc = fy_frame_decode(body, len, &f);
	int out = view;

	if (view == 1) {
		const Ferry__Block *b;

		if (rc < 0 || f->body_case != FERRY__FRAME__BODY_BLOCK) {
			out = 2;
		} else {
			b = f->block;
			if (b->digest.len != v.digest_len ||
			    (v.digest_len &&
			     memcmp(b->digest.data, v.digest, v.digest_len)) ||
			    b->plain_size != v.plain_size ||
			    (int)b->codec != v.codec ||
			    b->data.len != v.data_len ||
			    (v.data_len &&
			     memcmp(b->data.data, v.data, v.data_len)))
				out = 2;
		}
	} else if (view < 0) {
		if (view != -EBADMSG || rc == 0)
			out = 2;
	} else if (view != 0) {
		out = 2;
	}
	fy_frame_free(f);
	return out;
}

#endif
