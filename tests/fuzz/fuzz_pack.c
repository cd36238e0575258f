/*
 * Fuzzes the format 2 parsers of outside data: the first byte chooses a
 * pack file (header, trailer, the entries tiling the data area) or an
 * index file (header, pack table, sorted entries). Whatever the bytes,
 * the answer is 0 or an error, never a crash or an overread. The fuzz
 * build skips the checksum comparisons so mutations reach the checks
 * behind them.
 */
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		(void)fy_index_check(data + 1, size - 1);
	else
		(void)fy_pack_check(data + 1, size - 1);
	return 0;
}
