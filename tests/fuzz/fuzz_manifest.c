/*
 * Fuzzes the manifest parser: whatever the bytes, parse_mem returns a fully
 * validated manifest or an error, and every map entry of an accepted one
 * can be read. The fuzz build of image/ skips the checksum comparison
 * (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) so that mutations reach the
 * checks behind it.
 */
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

#define CHUNK 257 /* odd, so reads straddle every boundary */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t map[CHUNK][FY_DIGEST_LEN];
	struct fy_manifest *m = NULL;
	uint64_t first, n, i, holes;
	uint32_t disk;

	if (fy_manifest_parse_mem(data, size, &m))
		return 0;
	for (disk = 0; disk < m->disk_count; disk++) {
		const struct fy_manifest_disk *d = &m->disks[disk];

		holes = 0;
		for (first = 0; first < d->block_count; first += n) {
			n = d->block_count - first;
			if (n > CHUNK)
				n = CHUNK;
			if (fy_manifest_read_map(m, disk, first, n, map))
				__builtin_trap();
			for (i = 0; i < n; i++)
				holes += fy_digest_is_hole(map[i]);
		}
		/* An accepted manifest's counts describe its maps. */
		if (holes != d->hole_blocks)
			__builtin_trap();
	}
	/* An accepted manifest's VM record decodes again. */
	if (m->vm_config) {
		struct fy_vmconfig *c = NULL;

		if (fy_vmconfig_decode(m->vm_config, m->vm_config_len, &c) ||
		    fy_vmconfig_check_backup(c, m->disk_count))
			__builtin_trap();
		fy_vmconfig_free(c);
	}
	fy_manifest_free(m);
	return 0;
}
