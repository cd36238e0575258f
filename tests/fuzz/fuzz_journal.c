/*
 * libFuzzer target for the hotadd journal parser: any bytes must give 0 or
 * a message, never a crash, a leak or a read past len. A parsed journal is
 * checked against its bounds.
 */
#include "hotadd/hotadd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fy_journal j;
	char *copy = malloc(size ? size : 1);
	size_t i;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	fy_log_set_level(FY_LOG_QUIET);
	if (fy_journal_parse(copy, size, "fuzz", &j) == 0) {
		if (j.n > FY_JOURNAL_MAX_ENTRIES)
			abort();
		for (i = 0; i < j.n; i++)
			if (!j.entries[i].vm[0] ||
			    j.entries[i].id >= j.next_id ||
			    strlen(j.entries[i].file) >= FY_JOURNAL_MAX_FIELD)
				abort();
		fy_journal_release(&j);
	}
	free(copy);
	return 0;
}
