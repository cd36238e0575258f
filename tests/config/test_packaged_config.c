/*
 * The packaged /etc/ferry/agent.conf (packaging/agent.conf) documents
 * every key of fy_all_known_keys(), commented out with its default, and
 * documents nothing this build does not know. With every documented line
 * uncommented, the file loads, warns about no key, and its defaults pass
 * the agent's own range checks, so the comments cannot drift from the
 * code.
 *
 * usage: test_packaged_config packaging/agent.conf
 */
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "tests/unit/check.h"

#define MAX_DOCUMENTED 512

static char *documented[MAX_DOCUMENTED];
static size_t n_documented;

/* "#key=value" or "key=value" at the start of a line: a documented key. */
static void collect(char *text, size_t len, char *uncommented)
{
	char *line = text, *end = text + len, *out = uncommented;

	while (line < end) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t llen = (size_t)((nl ? nl : end) - line);
		char *k = line, *eq;

		if (llen && *k == '#')
			k++;
		eq = memchr(k, '=', (size_t)(line + llen - k));
		if (eq && eq > k && !memchr(k, ' ', (size_t)(eq - k)) &&
		    !memchr(k, '\t', (size_t)(eq - k))) {
			CHECK(n_documented < MAX_DOCUMENTED);
			if (n_documented < MAX_DOCUMENTED)
				documented[n_documented++] =
					strndup(k, (size_t)(eq - k));
			memcpy(out, k, (size_t)(line + llen - k));
			out += line + llen - k;
			*out++ = '\n';
		}
		line = nl ? nl + 1 : end;
	}
	*out = '\0';
}

static bool is_documented(const char *key)
{
	size_t i;

	for (i = 0; i < n_documented; i++)
		if (!strcmp(documented[i], key))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	const char *const *known = fy_all_known_keys(), *const *k;
	struct fy_config *cfg;
	struct fy_settings s;
	char *uncommented;
	size_t len, i, n_known = 0;
	void *text;

	if (argc != 2) {
		fprintf(stderr, "usage: %s AGENT_CONF\n", argv[0]);
		return 2;
	}
	/* As shipped: loads (every line a comment or blank). */
	cfg = fy_config_new();
	CHECK_RC(fy_config_load(cfg, argv[1]));
	fy_config_free(cfg);

	CHECK_RC(fy_read_file(argv[1], FY_CONFIG_MAX_FILE, &text, &len));
	uncommented = malloc(len + 2);
	collect(text, len, uncommented);

	for (k = known; *k; k++) {
		size_t klen = strlen(*k);

		/* A wildcard ("prefix.*") stands for keys of another
		 * program: nothing to document one by one. */
		if (klen && (*k)[klen - 1] == '*') {
			printf("not documented one by one: %s\n", *k);
			continue;
		}
		n_known++;
		if (!is_documented(*k)) {
			printf("FAIL: %s is not in %s\n", *k, argv[1]);
			CHECK(is_documented(*k));
		}
	}
	/* Every documented key is known: uncommented, nothing is warned
	 * about, and the defaults are in range. */
	cfg = fy_config_new();
	CHECK_RC(fy_config_parse(cfg, "agent.conf uncommented", uncommented,
				 strlen(uncommented)));
	CHECK(fy_config_warn_unknown(cfg, known) == 0);
	CHECK_RC(fy_settings_load(cfg, &s));
	CHECK(s.block_size == 1048576 && s.compression_level == 3 &&
	      !s.compression_probe && s.queue_depth == 16 && !s.read_cache);
	fy_config_free(cfg);

	printf("%zu keys known, %zu documented\n", n_known, n_documented);
	for (i = 0; i < n_documented; i++)
		free(documented[i]);
	free(uncommented);
	free(text);
	CHECK_DONE();
}
