/*
 * libFuzzer target for the VMDK descriptor parser and the https
 * transport's verdict on it: any bytes give a descriptor or an error,
 * never a crash; what parses satisfies the bounds the reader relies on.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vsphere/vsphere.h"

static struct fy_vmdk_descriptor d;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t sum = 0;
	size_t i;

	if (fy_vmdk_parse((const char *)data, size, "fuzz.vmdk", &d) < 0)
		return 0;
	if (d.n_extents == 0 || d.n_extents > FY_VMDK_MAX_EXTENTS)
		abort();
	for (i = 0; i < d.n_extents; i++) {
		if (d.extents[i].sectors == 0)
			abort();
		sum += d.extents[i].sectors;
	}
	if (sum * FY_VMDK_SECTOR != d.capacity || sum > UINT64_MAX / FY_VMDK_SECTOR)
		abort();
	fy_vmdk_check_flat(&d, "fuzz.vmdk");
	return 0;
}
