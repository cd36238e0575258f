/*
 * prune: apply a retention policy to each group's backups.
 *
 * A group is a namespace, an owner and a source: a backup made by another
 * client under the same source name is in another group and changes
 * nothing here (docs/SECURITY.md). Per group, newest first: keep_last keeps the N newest; keep_daily the
 * newest backup of each of the N most recent UTC days that have backups;
 * keep_weekly the same per ISO 8601 week, keep_monthly per month. A backup
 * is kept when any rule keeps it. Only manifests are removed; the blocks
 * they alone used are freed by gc.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image/image_private.h"

struct pbackup {
	char id[FY_ID_MAX];
	char *source; /* the group: namespace, owner and source, NUL-joined */
	size_t source_len;
	int64_t created;
	bool unreadable;
	bool keep;
	char reasons[128];
};

/* Grouped by source, newest first within a source (ids, which sort by
 * time, break ties), unreadable ones last. */
static int cmp_backup(const void *a, const void *b)
{
	const struct pbackup *x = a, *y = b;
	size_t n = x->source_len < y->source_len ? x->source_len : y->source_len;
	int c = memcmp(x->source, y->source, n);

	if (c)
		return c;
	if (x->source_len != y->source_len)
		return x->source_len < y->source_len ? -1 : 1;
	if (x->unreadable != y->unreadable)
		return x->unreadable ? 1 : -1;
	if (x->created != y->created)
		return x->created > y->created ? -1 : 1;
	return -strcmp(x->id, y->id);
}

static void add_reason(struct pbackup *b, const char *reason)
{
	size_t n = strlen(b->reasons);

	snprintf(b->reasons + n, sizeof(b->reasons) - n, "%s%s",
		 n ? ", " : "", reason);
	b->keep = true;
}

/* The UTC period a backup falls in, as text that is equal for equal
 * periods: "2024-05-01", "2024-W18", "2024-05". */
static void period(int64_t t, const char *fmt, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(out, len, fmt, &tm))
		snprintf(out, len, "@%" PRId64, t);
}

/* Keeps the newest backup of each of the first n distinct periods. */
static void keep_periods(struct pbackup *g, size_t count, int n,
			 const char *rule, const char *fmt)
{
	char last[32] = "", cur[32], reason[64];
	size_t i;
	int kept = 0;

	for (i = 0; i < count && kept < n; i++) {
		period(g[i].created, fmt, cur, sizeof(cur));
		if (kept && !strcmp(cur, last))
			continue;
		snprintf(reason, sizeof(reason), "%s %s", rule, cur);
		add_reason(&g[i], reason);
		memcpy(last, cur, sizeof(last));
		kept++;
	}
}

static void apply_policy(struct pbackup *g, size_t count,
			 const struct fy_prune_policy *p)
{
	size_t i;

	for (i = 0; i < count && i < (size_t)p->keep_last; i++)
		add_reason(&g[i], "last");
	keep_periods(g, count, p->keep_daily, "daily", "%Y-%m-%d");
	keep_periods(g, count, p->keep_weekly, "weekly", "%G-W%V");
	keep_periods(g, count, p->keep_monthly, "monthly", "%Y-%m");
}

int fy_repo_prune(struct fy_repo *repo, const struct fy_prune_policy *p,
		  FILE *out, uint64_t *removed)
{
	char (*ids)[FY_ID_MAX] = NULL;
	struct pbackup *b = NULL;
	struct fy_acl *acl = NULL;
	size_t count = 0, i, start;
	char local[320];
	const char *who = p->who ? p->who : fy_local_user(local, sizeof(local));
	int rc;

	*removed = 0;
	if (p->keep_last < 0 || p->keep_daily < 0 || p->keep_weekly < 0 ||
	    p->keep_monthly < 0)
		return fy_err_set(-EINVAL, "prune: --keep-* values must not be "
				  "negative");
	if (!p->keep_last && !p->keep_daily && !p->keep_weekly &&
	    !p->keep_monthly)
		return fy_err_set(-EINVAL, "no --keep-* option given: refusing "
				  "to remove every backup");

	rc = fy_acl_load(repo, &acl);
	if (rc)
		goto out;
	rc = fy_repo_list_ids(repo, &ids, &count);
	if (rc)
		goto out;
	b = calloc(count ? count : 1, sizeof(*b));
	if (!b) {
		rc = fy_err_set(-ENOMEM, "prune: out of memory");
		goto out;
	}
	for (i = 0; i < count; i++) {
		struct fy_manifest *m = NULL;

		memcpy(b[i].id, ids[i], FY_ID_MAX);
		rc = fy_repo_backup_open(repo, ids[i], &m);
		if (rc == -ENOMEM)
			goto out;
		if (rc) {
			/* Never remove what we cannot judge; verify will
			 * report it. */
			if (out && rc != -ENOENT)
				fprintf(out, "skip %s (unreadable: %s)\n",
					ids[i], fy_err_msg());
			b[i].unreadable = true;
			b[i].source = strdup("");
		} else {
			const char *owner = fy_acl_owner_of(acl, m);
			size_t nl = strlen(m->namespace_), ol = strlen(owner);
			size_t sl = strlen(m->source);

			if ((p->namespace_ &&
			     strcmp(p->namespace_, m->namespace_)) ||
			    (p->owner && strcmp(p->owner, owner)))
				b[i].unreadable = true; /* not ours to judge */
			b[i].source_len = nl + ol + sl + 2;
			b[i].source = malloc(b[i].source_len + 1);
			if (b[i].source) {
				memcpy(b[i].source, m->namespace_, nl + 1);
				memcpy(b[i].source + nl + 1, owner, ol + 1);
				memcpy(b[i].source + nl + ol + 2, m->source,
				       sl + 1);
			}
			b[i].created = m->created_unix;
			fy_manifest_free(m);
		}
		if (!b[i].source) {
			rc = fy_err_set(-ENOMEM, "prune: out of memory");
			goto out;
		}
	}
	rc = 0;
	if (count)
		qsort(b, count, sizeof(*b), cmp_backup);

	for (start = 0; start < count; start = i) {
		size_t n = 0, j;

		/* Unreadable ones sort last in their group and are neither
		 * kept nor removed, only skipped. */
		for (i = start; i < count &&
			    b[i].source_len == b[start].source_len &&
			    !memcmp(b[i].source, b[start].source,
				    b[start].source_len); i++)
			n += !b[i].unreadable;
		apply_policy(&b[start], n, p);
		for (j = start; j < start + n; j++) {
			if (b[j].keep) {
				if (out)
					fprintf(out, "keep %s (%s)\n", b[j].id,
						b[j].reasons);
				continue;
			}
			if (out)
				fprintf(out, "remove %s\n", b[j].id);
			if (!p->dry_run) {
				rc = fy_repo_backup_delete(repo, b[j].id);
				if (rc == -ENOENT)
					rc = 0; /* removed meanwhile */
				/* Object Lock (format 3): not yet; the next
				 * prune after the date removes it. */
				if (rc == -EPERM) {
					if (out)
						fprintf(out, "kept %s: %s\n",
							b[j].id, fy_err_msg());
					rc = 0;
					continue;
				}
				if (rc) {
					fy_err_wrap(rc, "prune");
					goto out;
				}
				fy_repo_audit(repo, who, "local", "prune",
					      "removed backup %s", b[j].id);
			}
			(*removed)++;
		}
	}
	if (out && p->dry_run)
		fprintf(out, "dry run: %" PRIu64 " backups would be removed\n",
			*removed);
out:
	if (b)
		for (i = 0; i < count; i++)
			free(b[i].source);
	free(b);
	free(ids);
	fy_acl_free(acl);
	return rc;
}
