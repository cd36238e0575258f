/*
 * The set of blocks that backups reference, shared by verify and gc.
 *
 * Cost: 32 bytes of memory per distinct referenced block (about 320 MB per
 * 10 million blocks, i.e. per 10 TiB of distinct data in 1 MiB blocks),
 * up to twice that while collecting; and one read of every manifest.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_private.h"

/* 2 MiB: small repositories never re-sort. */
#define SET_MIN_CAP (1u << 16)

void fy_digest_set_init(struct fy_digest_set *s)
{
	memset(s, 0, sizeof(*s));
	s->sorted = true;
}

void fy_digest_set_release(struct fy_digest_set *s)
{
	free(s->d);
	fy_digest_set_init(s);
}

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, FY_DIGEST_LEN);
}

void fy_digest_set_finish(struct fy_digest_set *s)
{
	size_t i, n = 0;

	if (s->sorted)
		return;
	qsort(s->d, s->count, FY_DIGEST_LEN, cmp_digest);
	for (i = 0; i < s->count; i++)
		if (!n || memcmp(s->d[n - 1], s->d[i], FY_DIGEST_LEN))
			memmove(s->d[n++], s->d[i], FY_DIGEST_LEN);
	s->count = n;
	s->sorted = true;
}

int fy_digest_set_add(struct fy_digest_set *s,
		      const uint8_t digest[FY_DIGEST_LEN])
{
	if (s->count == s->cap) {
		size_t cap;
		void *p;

		/* Full: squeeze out repeats first, and grow only when the
		 * distinct digests alone fill more than half. */
		fy_digest_set_finish(s);
		if (s->cap && s->count <= s->cap / 2)
			goto append;
		cap = s->cap ? 2 * s->cap : SET_MIN_CAP;
		if (cap > SIZE_MAX / FY_DIGEST_LEN)
			return fy_err_set(-ENOMEM, "too many distinct blocks");
		p = realloc(s->d, cap * FY_DIGEST_LEN);
		if (!p)
			return fy_err_set(-ENOMEM,
					  "out of memory for %zu block digests",
					  cap);
		s->d = p;
		s->cap = cap;
	}
append:
	memcpy(s->d[s->count++], digest, FY_DIGEST_LEN);
	s->sorted = false;
	return 0;
}

bool fy_digest_set_contains(const struct fy_digest_set *s,
			    const uint8_t digest[FY_DIGEST_LEN])
{
	return s->count &&
	       bsearch(digest, s->d, s->count, FY_DIGEST_LEN, cmp_digest);
}

static int add_ref(void *opaque, uint32_t disk, uint64_t block,
		   const uint8_t digest[FY_DIGEST_LEN])
{
	return fy_digest_set_add(opaque, digest);
}

int fy_repo_collect_refs(struct fy_repo *repo, struct fy_digest_set *set,
			 int (*bad)(void *opaque, const char *id, int rc),
			 void *opaque, uint64_t *backups)
{
	char (*ids)[FY_ID_MAX] = NULL;
	struct fy_manifest *m = NULL;
	size_t count = 0, i;
	int rc;

	rc = fy_repo_list_ids(repo, &ids, &count);
	if (rc)
		goto out;
	for (i = 0; i < count; i++) {
		rc = fy_repo_backup_open(repo, ids[i], &m);
		if (rc == -ENOENT)
			continue; /* pruned since it was listed */
		if (!rc) {
			rc = fy_manifest_for_each(m, add_ref, set);
			fy_manifest_free(m);
			m = NULL;
		}
		if (rc == -ENOMEM)
			goto out;
		if (rc) {
			if (!bad)
				goto out;
			rc = bad(opaque, ids[i], rc);
			if (rc)
				goto out;
			continue;
		}
		if (backups)
			(*backups)++;
	}
	fy_digest_set_finish(set);
out:
	free(ids);
	return rc;
}
