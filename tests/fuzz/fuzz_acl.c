/*
 * Fuzzes the access list parser (image/acl.c): whatever the bytes, it
 * returns a list or an error; an accepted list prints back to text that
 * parses to the same entries, and every entry can be judged.
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
	static struct fy_manifest m;
	struct fy_acl *acl = NULL, *again = NULL;
	char *text = NULL;
	size_t len = 0, i;
	FILE *out;

	if (fy_acl_parse_mem(data, size, &acl))
		return 0;
	snprintf(m.source, sizeof(m.source), "legacy.img");
	for (i = 0; i < fy_acl_count(acl); i++) {
		const struct fy_acl_entry *e = fy_acl_entry(acl, i);

		(void)fy_acl_may_read(acl, e->client, FY_ROLE_AGENT, &m);
		(void)fy_acl_owner_of(acl, &m);
	}
	out = open_memstream(&text, &len);
	if (!out)
		abort();
	fputs("ferry-acl 1\n", out);
	fy_acl_print(acl, out, false);
	fclose(out);
	if (fy_acl_parse_mem(text, len, &again) ||
	    fy_acl_count(again) != fy_acl_count(acl))
		abort();
	for (i = 0; i < fy_acl_count(acl); i++)
		if (memcmp(fy_acl_entry(acl, i), fy_acl_entry(again, i),
			   sizeof(struct fy_acl_entry)))
			abort();
	free(text);
	fy_acl_free(again);
	fy_acl_free(acl);
	return 0;
}
