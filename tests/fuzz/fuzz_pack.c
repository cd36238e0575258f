/*
 * Fuzzes the format 2 parsers of outside data: the first byte chooses a
 * pack file (header, trailer, the entries tiling the data area) or an
 * index file (header, pack table, sorted entries) or the lease object of
 * a repository in a bucket (format 3). Whatever the bytes,
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
	if (data[0] % 3 == 1)
		(void)fy_index_check(data + 1, size - 1);
	else if (data[0] % 3 == 2)
		(void)fy_s3_lease_check(data + 1, size - 1);
	else
		(void)fy_pack_check(data + 1, size - 1);
	return 0;
}
