/*
 * Who may do what in a repository (docs/SECURITY.md): the access list
 * (ROOT/acl), the owner record of every backup group (ROOT/groups/), and
 * the audit log (ROOT/audit.log). Formats in docs/FORMAT.md.
 *
 * The rules, in one place (fy_acl_may_read): an admin reads everything;
 * anyone else reads the backups it owns, plus what a grant names. Only
 * agents and admins create backups, and only in groups they own.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image/image_private.h"

#define ACL_MAGIC "ferry-acl 1"
#define GROUP_MAGIC "ferry-group 1"
/* A field's encoded form: every byte as %XX at worst. */
#define FIELD_ENC_MAX (3 * FY_LABEL_MAX)
#define GROUP_FILE_MAX (8u << 10)

struct fy_acl {
	struct fy_acl_entry *entries;
	size_t n, cap;
};

/* ---- field encoding ---------------------------------------------------- */

/* Fields are separated by spaces; groups (sources) may hold any byte. So
 * each field is written with every byte outside a plain set as %XX, the
 * empty string as "~" and the wildcard as a lone "*". */
static bool plain_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	       c == ':' || c == '/' || c == '@' || c == '[' || c == ']';
}

static void encode_field(const char *s, bool wildcard_ok, FILE *out)
{
	if (!s[0]) {
		fputc('~', out);
		return;
	}
	if (wildcard_ok && !strcmp(s, FY_ACL_ANY)) {
		fputc('*', out);
		return;
	}
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (plain_byte(c))
			fputc(c, out);
		else
			fprintf(out, "%%%02X", c);
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes one field of len bytes into out (size bytes). */
static int decode_field(const char *in, size_t len, char *out, size_t size,
			const char *what, unsigned line)
{
	size_t i, o = 0;

	if (len == 1 && in[0] == '~') {
		out[0] = '\0';
		return 0;
	}
	if (len == 1 && in[0] == '*') {
		snprintf(out, size, "%s", FY_ACL_ANY);
		return 0;
	}
	for (i = 0; i < len; i++) {
		int c = (unsigned char)in[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				goto bad;
			hi = hexval(in[i + 1]);
			lo = hexval(in[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad;
			c = hi << 4 | lo;
			i += 2;
		} else if (!plain_byte((unsigned char)c)) {
			goto bad;
		}
		if (o + 1 >= size)
			return fy_err_set(-EBADMSG, "acl line %u: %s is longer "
					  "than %zu bytes", line, what,
					  size - 1);
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
bad:
	return fy_err_set(-EBADMSG, "acl line %u: %s is not encoded as "
			  "docs/FORMAT.md says", line, what);
}

/* ---- the access list --------------------------------------------------- */

static int acl_add(struct fy_acl *acl, const struct fy_acl_entry *e)
{
	if (acl->n == acl->cap) {
		size_t ncap = acl->cap ? 2 * acl->cap : 16;
		void *n;

		if (ncap > FY_ACL_ENTRIES_MAX)
			ncap = FY_ACL_ENTRIES_MAX;
		if (acl->n >= ncap)
			return fy_err_set(-E2BIG, "the access list holds %u "
					  "entries already",
					  FY_ACL_ENTRIES_MAX);
		n = realloc(acl->entries, ncap * sizeof(*acl->entries));
		if (!n)
			return fy_err_set(-ENOMEM, "out of memory");
		acl->entries = n;
		acl->cap = ncap;
	}
	acl->entries[acl->n++] = *e;
	return 0;
}

/* Splits line into at most max space-separated fields. */
static size_t split(char *line, char **f, size_t *flen, size_t max)
{
	size_t n = 0;
	char *p = line;

	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if (n == max)
			return max + 1;
		f[n] = p;
		while (*p && *p != ' ')
			p++;
		flen[n] = (size_t)(p - f[n]);
		n++;
	}
	return n;
}

static int parse_line(struct fy_acl *acl, char *line, unsigned no)
{
	struct fy_acl_entry e;
	char *f[5];
	size_t flen[5], n;
	int rc;

	memset(&e, 0, sizeof(e));
	n = split(line, f, flen, 5);
	if (n == 0)
		return 0;
	if (flen[0] == 5 && !strncmp(f[0], "grant", 5) && n == 5) {
		e.kind = FY_ACL_GRANT;
		rc = decode_field(f[1], flen[1], e.client, sizeof(e.client),
				  "the client", no);
		if (!rc)
			rc = decode_field(f[2], flen[2], e.namespace_,
					  sizeof(e.namespace_),
					  "the namespace", no);
		if (!rc)
			rc = decode_field(f[3], flen[3], e.owner,
					  sizeof(e.owner), "the owner", no);
		if (!rc)
			rc = decode_field(f[4], flen[4], e.group,
					  sizeof(e.group), "the group", no);
		if (!rc && (!e.client[0] || !strcmp(e.client, FY_ACL_ANY)))
			rc = fy_err_set(-EBADMSG, "acl line %u: a grant names "
					"one client", no);
	} else if (flen[0] == 5 && !strncmp(f[0], "adopt", 5) && n == 4) {
		e.kind = FY_ACL_ADOPT;
		rc = decode_field(f[1], flen[1], e.owner, sizeof(e.owner),
				  "the owner", no);
		if (!rc)
			rc = decode_field(f[2], flen[2], e.namespace_,
					  sizeof(e.namespace_),
					  "the namespace", no);
		if (!rc)
			rc = decode_field(f[3], flen[3], e.group,
					  sizeof(e.group), "the group", no);
		if (!rc && (!e.owner[0] || !strcmp(e.owner, FY_ACL_ANY)))
			rc = fy_err_set(-EBADMSG, "acl line %u: adopt names "
					"one owner", no);
	} else {
		rc = fy_err_set(-EBADMSG, "acl line %u: expected 'grant CLIENT "
				"NAMESPACE OWNER GROUP' or 'adopt OWNER "
				"NAMESPACE GROUP'", no);
	}
	if (!rc && e.namespace_[0] && strcmp(e.namespace_, FY_ACL_ANY) &&
	    !fy_namespace_valid(e.namespace_))
		rc = fy_err_set(-EBADMSG, "acl line %u: %s", no,
				FY_NAMESPACE_RULE);
	return rc ? rc : acl_add(acl, &e);
}

int fy_acl_parse_mem(const void *data, size_t len, struct fy_acl **out)
{
	const char *p = data, *end = p + len;
	struct fy_acl *acl;
	char line[FY_ACL_LINE_MAX + 1];
	unsigned no = 0;
	int rc = 0;

	*out = NULL;
	if (len > FY_ACL_FILE_MAX)
		return fy_err_set(-EFBIG, "the access list is %zu bytes, at "
				  "most %u", len, FY_ACL_FILE_MAX);
	acl = calloc(1, sizeof(*acl));
	if (!acl)
		return fy_err_set(-ENOMEM, "out of memory");
	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		no++;
		if (!nl) {
			rc = fy_err_set(-EBADMSG, "acl line %u: no newline at "
					"the end (a torn write?)", no);
			break;
		}
		if (n > FY_ACL_LINE_MAX) {
			rc = fy_err_set(-EBADMSG, "acl line %u is longer than "
					"%u bytes", no, FY_ACL_LINE_MAX);
			break;
		}
		if (memchr(p, '\0', n)) {
			rc = fy_err_set(-EBADMSG, "acl line %u holds a NUL "
					"byte", no);
			break;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		p = nl + 1;
		if (no == 1) {
			if (strcmp(line, ACL_MAGIC))
				rc = fy_err_set(-EBADMSG, "the access list does "
						"not start with '%s'",
						ACL_MAGIC);
			continue;
		}
		if (line[0] == '#')
			continue;
		rc = parse_line(acl, line, no);
	}
	if (rc == 0 && no == 0)
		rc = fy_err_set(-EBADMSG, "the access list is empty");
	if (rc < 0) {
		fy_acl_free(acl);
		return rc;
	}
	*out = acl;
	return 0;
}

static int acl_path(const struct fy_repo *repo, char *out, size_t len)
{
	return fy_path_fmt(out, len, "%s/acl", repo->root);
}

int fy_acl_load(struct fy_repo *repo, struct fy_acl **out)
{
	char path[PATH_MAX];
	void *data = NULL;
	size_t len = 0;
	int rc;

	rc = acl_path(repo, path, sizeof(path));
	if (rc < 0)
		return rc;
	rc = fy_read_file(path, FY_ACL_FILE_MAX, &data, &len);
	if (rc == -ENOENT) {
		/* No list yet: owners read their own, admins everything. */
		*out = calloc(1, sizeof(**out));
		return *out ? 0 : fy_err_set(-ENOMEM, "out of memory");
	}
	if (rc < 0)
		return fy_err_wrap(rc, "access list %s", path);
	rc = fy_acl_parse_mem(data, len, out);
	free(data);
	if (rc < 0)
		return fy_err_wrap(rc, "%s", path);
	return 0;
}

void fy_acl_free(struct fy_acl *acl)
{
	if (!acl)
		return;
	free(acl->entries);
	free(acl);
}

size_t fy_acl_count(const struct fy_acl *acl)
{
	return acl->n;
}

const struct fy_acl_entry *fy_acl_entry(const struct fy_acl *acl, size_t i)
{
	return i < acl->n ? &acl->entries[i] : NULL;
}

static bool field_matches(const char *pattern, const char *value)
{
	return !strcmp(pattern, FY_ACL_ANY) || !strcmp(pattern, value);
}

const char *fy_acl_owner_of(const struct fy_acl *acl,
			    const struct fy_manifest *m)
{
	size_t i;

	if (m->owner[0])
		return m->owner;
	/* A legacy backup belongs to whoever the migration named. */
	for (i = 0; acl && i < acl->n; i++) {
		const struct fy_acl_entry *e = &acl->entries[i];

		if (e->kind == FY_ACL_ADOPT &&
		    field_matches(e->namespace_, m->namespace_) &&
		    field_matches(e->group, m->source))
			return e->owner;
	}
	return "";
}

bool fy_acl_may_read(const struct fy_acl *acl, const char *client,
		     enum fy_role role, const struct fy_manifest *m)
{
	const char *owner = fy_acl_owner_of(acl, m);
	size_t i;

	if (role == FY_ROLE_ADMIN)
		return true;
	if (role == FY_ROLE_REPOSITORY)
		return false;
	if (owner[0] && !strcmp(owner, client))
		return true;
	for (i = 0; acl && i < acl->n; i++) {
		const struct fy_acl_entry *e = &acl->entries[i];

		if (e->kind == FY_ACL_GRANT && !strcmp(e->client, client) &&
		    field_matches(e->namespace_, m->namespace_) &&
		    field_matches(e->owner, owner) &&
		    field_matches(e->group, m->source) &&
		    /* A wildcard owner never reaches ownerless backups: those
		     * are for admins until adopted. */
		    (owner[0] || strcmp(e->owner, FY_ACL_ANY)))
			return true;
	}
	return false;
}

static void print_entry(const struct fy_acl_entry *e, FILE *out)
{
	if (e->kind == FY_ACL_GRANT) {
		fputs("grant ", out);
		encode_field(e->client, false, out);
		fputc(' ', out);
		encode_field(e->namespace_, true, out);
		fputc(' ', out);
		encode_field(e->owner, true, out);
		fputc(' ', out);
		encode_field(e->group, true, out);
	} else {
		fputs("adopt ", out);
		encode_field(e->owner, false, out);
		fputc(' ', out);
		encode_field(e->namespace_, true, out);
		fputc(' ', out);
		encode_field(e->group, true, out);
	}
	fputc('\n', out);
}

void fy_acl_print(const struct fy_acl *acl, FILE *out, bool json)
{
	size_t i;

	if (json)
		fputc('[', out);
	for (i = 0; i < acl->n; i++) {
		const struct fy_acl_entry *e = &acl->entries[i];

		if (!json) {
			print_entry(e, out);
			continue;
		}
		fprintf(out, "%s{\"kind\":\"%s\",\"client\":", i ? "," : "",
			e->kind == FY_ACL_GRANT ? "grant" : "adopt");
		fy_json_string(out, e->client);
		fputs(",\"namespace\":", out);
		fy_json_string(out, e->namespace_);
		fputs(",\"owner\":", out);
		fy_json_string(out, e->owner);
		fputs(",\"group\":", out);
		fy_json_string(out, e->group);
		fputc('}', out);
	}
	if (json)
		fputs("]\n", out);
}

static bool same_entry(const struct fy_acl_entry *a,
		       const struct fy_acl_entry *b)
{
	return a->kind == b->kind && !strcmp(a->client, b->client) &&
	       !strcmp(a->namespace_, b->namespace_) &&
	       !strcmp(a->owner, b->owner) && !strcmp(a->group, b->group);
}

/* Writes the list durably: temp file, fsync, rename, fsync the root. */
static int acl_save(struct fy_repo *repo, const struct fy_acl *acl)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	size_t i;
	int rc;

	if (!mem)
		return fy_err_set(-ENOMEM, "out of memory");
	fprintf(mem, "%s\n", ACL_MAGIC);
	for (i = 0; i < acl->n; i++)
		print_entry(&acl->entries[i], mem);
	if (fclose(mem) != 0) {
		free(text);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	if (len > FY_ACL_FILE_MAX)
		rc = fy_err_set(-EFBIG, "the access list would be %zu bytes, "
				"at most %u", len, FY_ACL_FILE_MAX);
	else
		rc = fy_write_durable(repo->tmpdir, repo->root, "acl", text,
				      len, true);
	free(text);
	return rc;
}

/* Changes of the list are serialized by an exclusive lock on the list's
 * own lock file, so two admins cannot lose each other's grant. */
static int acl_lock(struct fy_repo *repo)
{
	char path[PATH_MAX];
	int fd, rc;

	rc = fy_path_fmt(path, sizeof(path), "%s/acl.lock", repo->root);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return fy_err_set(-errno, "cannot open %s: %s", path,
				  strerror(errno));
	if (flock(fd, LOCK_EX) < 0) {
		rc = -errno;
		close(fd);
		return fy_err_set(rc, "cannot lock %s: %s", path,
				  strerror(-rc));
	}
	return fd;
}

static int check_entry(const struct fy_acl_entry *e)
{
	if (e->kind == FY_ACL_GRANT &&
	    (!e->client[0] || !strcmp(e->client, FY_ACL_ANY)))
		return fy_err_set(-EINVAL, "a grant names one client");
	if (e->kind == FY_ACL_ADOPT &&
	    (!e->owner[0] || !strcmp(e->owner, FY_ACL_ANY)))
		return fy_err_set(-EINVAL, "adopt names one owner");
	if (e->namespace_[0] && strcmp(e->namespace_, FY_ACL_ANY) &&
	    !fy_namespace_valid(e->namespace_))
		return fy_err_set(-EINVAL, "namespace '%s': %s",
				  e->namespace_, FY_NAMESPACE_RULE);
	return 0;
}

int fy_acl_change(struct fy_repo *repo, const struct fy_acl_entry *e,
		  bool add, const char *who)
{
	struct fy_acl *acl = NULL;
	size_t i;
	int fd, rc;

	rc = check_entry(e);
	if (rc < 0)
		return rc;
	fd = acl_lock(repo);
	if (fd < 0)
		return fd;
	rc = fy_acl_load(repo, &acl);
	if (rc < 0)
		goto out;
	for (i = 0; i < acl->n && !same_entry(&acl->entries[i], e); i++)
		;
	if (add && i < acl->n) {
		rc = fy_err_set(-EEXIST, "the access list has that entry "
				"already");
		goto out;
	}
	if (!add && i == acl->n) {
		rc = fy_err_set(-ENOENT, "the access list has no such entry");
		goto out;
	}
	if (add) {
		rc = acl_add(acl, e);
	} else {
		memmove(&acl->entries[i], &acl->entries[i + 1],
			(acl->n - i - 1) * sizeof(*e));
		acl->n--;
	}
	if (rc == 0)
		rc = acl_save(repo, acl);
	if (rc == 0) {
		char *line = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&line, &len);

		if (mem) {
			print_entry(e, mem);
			fclose(mem);
			if (len && line[len - 1] == '\n')
				line[len - 1] = '\0';
		}
		fy_repo_audit(repo, who, "local",
			      add ? "acl-add" : "acl-remove", "%s",
			      line ? line : "?");
		free(line);
	}
out:
	fy_acl_free(acl);
	close(fd);
	return rc;
}

/* ---- groups and their owners ------------------------------------------- */

static void group_key(const char *ns, const char *group, char hex[FY_DIGEST_HEX])
{
	uint8_t d[FY_DIGEST_LEN];
	size_t nl = strlen(ns), gl = strlen(group);
	char *buf = malloc(nl + gl + 1);

	/* ns and group cannot hold NUL: the separator is unambiguous. */
	if (buf) {
		memcpy(buf, ns, nl);
		buf[nl] = '\0';
		memcpy(buf + nl + 1, group, gl);
		fy_sha256(buf, nl + gl + 1, d);
		free(buf);
	} else {
		memset(d, 0, sizeof(d));
	}
	fy_digest_hex(d, hex);
}

static int group_path(struct fy_repo *repo, const char *ns, const char *group,
		      char *out, size_t len)
{
	char hex[FY_DIGEST_HEX];

	group_key(ns, group, hex);
	return fy_path_fmt(out, len, "%s/groups/%s", repo->root, hex);
}

/* Reads a group record: its owner, after checking that it is the record
 * of this namespace and group (a hash collision or a damaged file must
 * not hand a group to someone). */
static int group_read(const char *path, const char *ns, const char *group,
		      char *owner, size_t owner_len)
{
	char want_ns[FY_NAMESPACE_MAX], want_group[FY_LABEL_MAX];
	char got_owner[FY_OWNER_MAX];
	char *p, *lines[4];
	void *data = NULL;
	size_t len = 0, n = 0;
	int rc;

	rc = fy_read_file(path, GROUP_FILE_MAX, &data, &len);
	if (rc < 0)
		return rc;
	p = data;
	if (len == 0 || p[len - 1] != '\n' || memchr(p, '\0', len)) {
		rc = fy_err_set(-EBADMSG, "group record %s is damaged", path);
		goto out;
	}
	p[len - 1] = '\0';
	for (n = 0; n < 4 && p; n++) {
		lines[n] = p;
		p = strchr(p, '\n');
		if (p)
			*p++ = '\0';
	}
	if (n != 4 || p || strcmp(lines[0], GROUP_MAGIC) ||
	    strncmp(lines[1], "namespace ", 10) ||
	    strncmp(lines[2], "group ", 6) || strncmp(lines[3], "owner ", 6)) {
		rc = fy_err_set(-EBADMSG, "group record %s is damaged", path);
		goto out;
	}
	rc = decode_field(lines[1] + 10, strlen(lines[1] + 10), want_ns,
			  sizeof(want_ns), "namespace", 2);
	if (!rc)
		rc = decode_field(lines[2] + 6, strlen(lines[2] + 6),
				  want_group, sizeof(want_group), "group", 3);
	if (!rc)
		rc = decode_field(lines[3] + 6, strlen(lines[3] + 6), got_owner,
				  sizeof(got_owner), "owner", 4);
	if (rc < 0) {
		fy_err_wrap(rc, "group record %s", path);
		goto out;
	}
	if (strcmp(want_ns, ns) || strcmp(want_group, group)) {
		rc = fy_err_set(-EBADMSG, "group record %s is for another "
				"group", path);
		goto out;
	}
	snprintf(owner, owner_len, "%s", got_owner);
out:
	free(data);
	return rc;
}

int fy_repo_group_owner(struct fy_repo *repo, const char *ns,
			const char *group, char *owner, size_t owner_len)
{
	char path[PATH_MAX];
	int rc = group_path(repo, ns, group, path, sizeof(path));

	if (rc < 0)
		return rc;
	return group_read(path, ns, group, owner, owner_len);
}

int fy_repo_group_claim(struct fy_repo *repo, const char *ns,
			const char *group, const char *owner)
{
	char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX], have[FY_OWNER_MAX];
	char *text = NULL;
	size_t len = 0;
	FILE *mem;
	int fd = -1, rc;

	rc = group_path(repo, ns, group, path, sizeof(path));
	if (rc < 0)
		return rc;
	rc = group_read(path, ns, group, have, sizeof(have));
	if (rc == 0)
		goto judge;
	if (rc != -ENOENT)
		return rc;
	rc = fy_path_fmt(dir, sizeof(dir), "%s/groups", repo->root);
	if (rc == 0)
		rc = fy_path_fmt(tmp, sizeof(tmp), "%s/group.XXXXXX",
				 repo->tmpdir);
	if (rc < 0)
		return rc;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return fy_err_set(-errno, "cannot create %s: %s", dir,
				  strerror(errno));
	mem = open_memstream(&text, &len);
	if (!mem)
		return fy_err_set(-ENOMEM, "out of memory");
	fprintf(mem, "%s\nnamespace ", GROUP_MAGIC);
	encode_field(ns, false, mem);
	fputs("\ngroup ", mem);
	encode_field(group, false, mem);
	fputs("\nowner ", mem);
	encode_field(owner, false, mem);
	fputc('\n', mem);
	if (fclose(mem) != 0) {
		free(text);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		rc = fy_err_set(-errno, "cannot create %s: %s", tmp,
				strerror(errno));
		goto out;
	}
	rc = fy_write_all(fd, text, len);
	if (rc == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
		rc = fy_err_set(-errno, "%s: %s", tmp, strerror(errno));
	if (rc < 0)
		goto out;
	/* link() never replaces: of two first backups of one group at once,
	 * one claims it and the other finds the record. */
	if (link(tmp, path) == 0) {
		rc = fy_fsync_dir(dir);
		goto out;
	}
	if (errno != EEXIST) {
		rc = fy_err_set(-errno, "cannot create %s: %s", path,
				strerror(errno));
		goto out;
	}
	rc = group_read(path, ns, group, have, sizeof(have));
	if (rc < 0)
		goto out;
judge:
	if (strcmp(have, owner))
		rc = fy_err_set(-EACCES, "group '%s'%s%s belongs to %s, not %s",
				group, ns[0] ? " in namespace " : "", ns, have,
				owner);
	else
		rc = 0;
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(text);
	return rc;
}

/* ---- audit ------------------------------------------------------------- */

void fy_repo_audit(struct fy_repo *repo, const char *who, const char *from,
		   const char *action, const char *fmt, ...)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	char path[PATH_MAX], detail[2048], when[32], saved[FY_ERR_MAX];
	char *line = NULL;
	size_t len = 0;
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;
	FILE *mem;
	int fd;

	/* Callers audit a failure and then report it: writing the line (or
	 * failing to, as on a full disk) must not replace their message. */
	snprintf(saved, sizeof(saved), "%s", fy_err_msg());
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	mem = open_memstream(&line, &len);
	if (!mem)
		goto fail;
	fprintf(mem, "{\"time\":\"%s\",\"who\":", when);
	fy_json_string(mem, who ? who : "");
	fputs(",\"from\":", mem);
	fy_json_string(mem, from ? from : "");
	fputs(",\"action\":", mem);
	fy_json_string(mem, action);
	fputs(",\"detail\":", mem);
	fy_json_string(mem, detail);
	fputs("}\n", mem);
	if (fclose(mem) != 0)
		goto fail;
	if (fy_path_fmt(path, sizeof(path), "%s/audit.log", repo->root) < 0)
		goto fail;
	/* Opened per line, so that logrotate's move-and-create just works;
	 * O_APPEND and one write() keep concurrent lines whole. */
	pthread_mutex_lock(&lock);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (fy_write_all(fd, line, len) < 0 || fdatasync(fd) < 0)
			fy_warn("audit: cannot write %s: %s", path,
				strerror(errno));
		close(fd);
	} else {
		fy_warn("audit: cannot open %s: %s", path, strerror(errno));
	}
	pthread_mutex_unlock(&lock);
	/* The same line goes to the log, for admins who ship logs. */
	fy_info("audit: %s by %s from %s: %s", action, who ? who : "",
		from ? from : "", detail);
	free(line);
	fy_err_set(0, "%s", saved);
	return;
fail:
	free(line);
	fy_warn("audit: out of memory for: %s by %s: %s", action,
		who ? who : "", detail);
	fy_err_set(0, "%s", saved);
}

const char *fy_local_user(char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(getuid(), &pw, tmp, sizeof(tmp), &res) == 0 && res)
		snprintf(buf, len, "local:%s", res->pw_name);
	else
		snprintf(buf, len, "local:uid %u", (unsigned)getuid());
	return buf;
}
