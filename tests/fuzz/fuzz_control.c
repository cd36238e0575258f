/* libFuzzer target: a stream of length-prefixed control frames as a
 * controller (or an agent, to the ferry client) sends them, decoded and
 * checked the way fy_control_recv does (proto/control.c). */
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fy_log_set_level(FY_LOG_QUIET);
	while (size >= 4) {
		uint32_t len = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
			       (uint32_t)data[2] << 8 | data[3];
		fy_control_frame *f = NULL;

		data += 4;
		size -= 4;
		if (len == 0 || len > FY_CONTROL_FRAME_MAX || len > size)
			break;
		if (fy_control_decode(data, len, &f) == 0) {
			(void)fy_control_name(f);
			fy_control_free(f);
		}
		data += len;
		size -= len;
	}
	return 0;
}
