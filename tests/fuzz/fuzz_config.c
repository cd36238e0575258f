/*
 * libFuzzer target for the configuration parser: any bytes must give 0 or
 * a message, never a crash, a leak or a read past len. On success the
 * getters run over what was parsed, and parsing twice exercises overrides.
 */
#include "common/common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const known[] = { "tmpDirectory", "ferry.*", NULL };
	struct fy_config *cfg;
	char *copy;
	int64_t n;
	bool b;

	/* An exact-size copy, so ASan sees any read past the end. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	fy_log_set_level(FY_LOG_QUIET);
	cfg = fy_config_new();
	if (!cfg)
		goto out;
	if (fy_config_parse(cfg, "fuzz", copy, size) == 0) {
		fy_config_parse(cfg, "again", copy, size);
		fy_config_get_int(cfg, "a", 0, -100, 100, &n);
		fy_config_get_bool(cfg, "b", false, &b);
		fy_config_get(cfg, "tmpDirectory");
		fy_config_origin(cfg, "a");
		fy_config_set_pair(cfg, "a=1");
		fy_config_warn_unknown(cfg, known);
	}
	if (size < FY_CONFIG_MAX_LINE && memchr(copy, '\0', size) == NULL) {
		/* The --set path takes a C string with the same rules. */
		char *pair = malloc(size + 1);

		if (pair) {
			memcpy(pair, copy, size);
			pair[size] = '\0';
			fy_config_set_pair(cfg, pair);
			free(pair);
		}
	}
	fy_config_free(cfg);
out:
	free(copy);
	return 0;
}
