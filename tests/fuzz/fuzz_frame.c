/* libFuzzer target: a stream of length-prefixed frames as a peer sends
 * them, decoded and checked the way fy_conn_recv does; each also read in
 * place as a Block (fy_block_view_parse), which must agree with
 * protobuf-c's decode whenever it answers (block_view_diff.h). */
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"
#include "block_view_diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fy_log_set_level(FY_LOG_QUIET);
	while (size >= 4) {
		uint32_t len = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
			       (uint32_t)data[2] << 8 | data[3];
		fy_frame *f = NULL;

		data += 4;
		size -= 4;
		if (len == 0 || len > FY_FRAME_MAX || len > size)
			break;
		if (block_view_diff(data, len) == 2)
			__builtin_trap();
		if (fy_frame_decode(data, len, &f) == 0) {
			(void)fy_frame_name(f);
			fy_frame_free(f);
		}
		data += len;
		size -= len;
	}
	return 0;
}
