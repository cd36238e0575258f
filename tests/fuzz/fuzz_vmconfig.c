/*
 * Fuzzes the VM configuration record's parser (image/vmconfig.c):
 * whatever the bytes, decode returns a record that keeps every rule or an
 * error; an accepted record encodes and decodes back to itself, and
 * printing it (text and JSON) is safe. The manifest's parser reaches the
 * same code through fuzz_manifest (seed vm_record.manifest).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *null;
	struct fy_vmconfig *c = NULL, *again = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;

	if (!null)
		null = fopen("/dev/null", "w");
	if (fy_vmconfig_decode(data, size, &c))
		return 0;
	if (null) {
		fy_vmconfig_print(c, null, false);
		fy_vmconfig_print(c, null, true);
	}
	if (c->newer)
		goto out;
	if (fy_vmconfig_check(c))
		__builtin_trap();
	(void)fy_vmconfig_check_backup(c, (uint32_t)(size % 4));
	/* An accepted record survives a round trip unchanged. */
	if (fy_vmconfig_encode(c, &buf, &len) ||
	    fy_vmconfig_decode(buf, len, &again) ||
	    memcmp(c, again, sizeof(*c)))
		__builtin_trap();
out:
	fy_vmconfig_free(again);
	fy_vmconfig_free(c);
	free(buf);
	return 0;
}
