/*
 * The journal: what an agent did to vSphere that must be undone if it dies
 * before undoing it. One text file, rewritten whole and durably on every
 * change under an exclusive flock, so that several agents on one proxy
 * share it. Format (docs/HOTADD.md):
 *
 *   ferry-journal 1
 *   <id>\t<kind>\t<pid>\t<device key>\t<vm>\t<object>\t<file>
 *
 * kind is attach, snapshot, disable or own; empty fields are "-".
 */
#include "hotadd/hotadd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define JOURNAL_MAGIC "ferry-journal 1"
#define JOURNAL_NAME "journal"

static const char *const kind_names[] = { "attach", "snapshot", "disable",
					  "own", "restore" };
#define N_KINDS (sizeof(kind_names) / sizeof(kind_names[0]))

struct fy_journal_file {
	char dir[PATH_MAX];
	char path[PATH_MAX];
	int lock_fd;
	/* flock on one open file does not exclude the threads of one
	 * process (the attach-ahead thread and the reader): this does. */
	pthread_mutex_t mutex;
};

void fy_journal_release(struct fy_journal *j)
{
	if (!j)
		return;
	free(j->entries);
	memset(j, 0, sizeof(*j));
}

static bool moref_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
	       c == ':' || c == '@' || c == '/';
}

/* Copies field [s, s+n) into out (size max), "-" meaning empty. */
static int take_field(const char *s, size_t n, char *out, size_t max,
		      bool moref)
{
	size_t i;

	if (n == 1 && s[0] == '-') {
		out[0] = '\0';
		return 0;
	}
	if (n == 0 || n >= max)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (moref ? !moref_char((char)c) : (c < 0x20 || c == 0x7f))
			return -1;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

static int take_int(const char *s, size_t n, int64_t min, int64_t max,
		    int64_t *out)
{
	char buf[24];
	char *end;
	long long v;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_line(const char *line, size_t len,
		      struct fy_journal_entry *e)
{
	const char *f[7];
	size_t fl[7], nf = 0, i;
	const char *p = line, *end = line + len;
	int64_t v;

	while (nf < 7) {
		const char *tab = nf < 6 ? memchr(p, '\t', (size_t)(end - p))
					 : NULL;

		f[nf] = p;
		fl[nf] = tab ? (size_t)(tab - p) : (size_t)(end - p);
		nf++;
		if (!tab)
			break;
		p = tab + 1;
	}
	if (nf != 7)
		return -1;
	memset(e, 0, sizeof(*e));
	if (take_int(f[0], fl[0], 1, INT64_MAX, &v) < 0)
		return -1;
	e->id = (uint64_t)v;
	for (i = 0; i < N_KINDS; i++)
		if (fl[1] == strlen(kind_names[i]) &&
		    !memcmp(f[1], kind_names[i], fl[1]))
			break;
	if (i == N_KINDS)
		return -1;
	e->kind = (enum fy_journal_kind)i;
	if (take_int(f[2], fl[2], 0, INT32_MAX, &v) < 0)
		return -1;
	e->pid = (int32_t)v;
	if (take_int(f[3], fl[3], -1, INT32_MAX, &v) < 0)
		return -1;
	e->device_key = (int32_t)v;
	if (take_field(f[4], fl[4], e->vm, sizeof(e->vm), true) < 0 ||
	    take_field(f[5], fl[5], e->object, sizeof(e->object), true) < 0 ||
	    take_field(f[6], fl[6], e->file, sizeof(e->file), false) < 0)
		return -1;
	if (!e->vm[0])
		return -1;
	return 0;
}

int fy_journal_parse(const char *text, size_t len, const char *name,
		     struct fy_journal *out)
{
	const char *p = text, *end = text + len;
	unsigned lineno = 0;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->next_id = 1;
	if (len > FY_JOURNAL_MAX_FILE)
		return fy_err_set(-EFBIG, "%s: larger than %u bytes", name,
				  FY_JOURNAL_MAX_FILE);
	out->entries = calloc(FY_JOURNAL_MAX_ENTRIES, sizeof(*out->entries));
	if (!out->entries)
		return fy_err_set(-ENOMEM, "%s: out of memory", name);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l;

		if (!nl) {
			fy_journal_release(out);
			return fy_err_set(-EBADMSG, "%s:%u: last line has no "
					  "newline (torn write?)", name,
					  lineno + 1);
		}
		l = (size_t)(nl - p);
		lineno++;
		if (lineno == 1) {
			if (l != strlen(JOURNAL_MAGIC) ||
			    memcmp(p, JOURNAL_MAGIC, l)) {
				fy_journal_release(out);
				return fy_err_set(-EBADMSG, "%s:1: not a Ferry "
						  "journal (want \"%s\")",
						  name, JOURNAL_MAGIC);
			}
		} else {
			struct fy_journal_entry *e;

			if (out->n == FY_JOURNAL_MAX_ENTRIES) {
				fy_journal_release(out);
				return fy_err_set(-E2BIG, "%s:%u: more than %u "
						  "entries", name, lineno,
						  FY_JOURNAL_MAX_ENTRIES);
			}
			e = &out->entries[out->n];
			if (parse_line(p, l, e) < 0) {
				fy_journal_release(out);
				return fy_err_set(-EBADMSG, "%s:%u: malformed "
						  "entry", name, lineno);
			}
			for (i = 0; i < out->n; i++)
				if (out->entries[i].id == e->id) {
					uint64_t id = e->id;

					fy_journal_release(out);
					return fy_err_set(-EBADMSG, "%s:%u: "
							  "duplicate id %" PRIu64,
							  name, lineno, id);
				}
			if (e->id >= out->next_id)
				out->next_id = e->id + 1;
			out->n++;
		}
		p = nl + 1;
	}
	if (lineno == 0 && len) {
		fy_journal_release(out);
		return fy_err_set(-EBADMSG, "%s: empty", name);
	}
	return 0;
}

static void put_field(char **p, char *end, const char *s, bool last)
{
	int n = snprintf(*p, (size_t)(end - *p), "%s%s", s[0] ? s : "-",
			 last ? "\n" : "\t");

	if (n > 0 && n < end - *p)
		*p += n;
}

static int journal_write(struct fy_journal_file *jf,
			 const struct fy_journal *j)
{
	size_t cap = 64 + j->n * (3 * FY_JOURNAL_MAX_FIELD + 128), i;
	char *buf = malloc(cap), *p, *end;
	int rc;

	if (!buf)
		return fy_err_set(-ENOMEM, "journal: out of memory");
	p = buf;
	end = buf + cap;
	p += snprintf(p, (size_t)(end - p), "%s\n", JOURNAL_MAGIC);
	for (i = 0; i < j->n; i++) {
		const struct fy_journal_entry *e = &j->entries[i];
		char num[64];

		snprintf(num, sizeof(num), "%" PRIu64 "\t%s\t%d\t%d", e->id,
			 kind_names[e->kind], e->pid, e->device_key);
		put_field(&p, end, num, false);
		put_field(&p, end, e->vm, false);
		put_field(&p, end, e->object, false);
		put_field(&p, end, e->file, true);
	}
	rc = fy_write_durable(jf->dir, jf->dir, JOURNAL_NAME, buf,
			      (size_t)(p - buf), true);
	free(buf);
	if (rc < 0)
		return fy_err_wrap(rc, "journal %s", jf->path);
	return 0;
}

static int journal_load(struct fy_journal_file *jf, struct fy_journal *j)
{
	void *data = NULL;
	size_t len = 0;
	int rc = fy_read_file(jf->path, FY_JOURNAL_MAX_FILE, &data, &len);

	if (rc == -ENOENT) {
		memset(j, 0, sizeof(*j));
		j->next_id = 1;
		j->entries = calloc(FY_JOURNAL_MAX_ENTRIES, sizeof(*j->entries));
		return j->entries ? 0 : fy_err_set(-ENOMEM, "out of memory");
	}
	if (rc < 0)
		return fy_err_wrap(rc, "journal %s", jf->path);
	rc = fy_journal_parse(data, len, jf->path, j);
	free(data);
	return rc;
}

static int lock(struct fy_journal_file *jf)
{
	pthread_mutex_lock(&jf->mutex);
	while (flock(jf->lock_fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			int rc = -errno;

			pthread_mutex_unlock(&jf->mutex);
			return fy_err_set(rc, "journal: lock: %s",
					  strerror(-rc));
		}
	return 0;
}

static void unlock(struct fy_journal_file *jf)
{
	flock(jf->lock_fd, LOCK_UN);
	pthread_mutex_unlock(&jf->mutex);
}

int fy_journal_open(const char *state_dir, struct fy_journal_file **out)
{
	struct fy_journal_file *jf;
	char lockpath[PATH_MAX + 16];
	int rc;

	*out = NULL;
	if (!state_dir || !state_dir[0] ||
	    strlen(state_dir) + 16 >= sizeof(jf->dir))
		return fy_err_set(-EINVAL, "journal: bad state directory");
	rc = fy_mkdirs(state_dir, 0700);
	if (rc < 0)
		return fy_err_wrap(rc, "state directory %s", state_dir);
	jf = calloc(1, sizeof(*jf));
	if (!jf)
		return fy_err_set(-ENOMEM, "out of memory");
	snprintf(jf->dir, sizeof(jf->dir), "%s", state_dir);
	snprintf(jf->path, sizeof(jf->path), "%s/" JOURNAL_NAME, state_dir);
	snprintf(lockpath, sizeof(lockpath), "%s/journal.lock", state_dir);
	jf->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (jf->lock_fd < 0) {
		rc = fy_err_set(-errno, "journal: %s: %s", lockpath,
				strerror(errno));
		free(jf);
		return rc;
	}
	pthread_mutex_init(&jf->mutex, NULL);
	*out = jf;
	return 0;
}

void fy_journal_close(struct fy_journal_file *jf)
{
	if (!jf)
		return;
	close(jf->lock_fd);
	pthread_mutex_destroy(&jf->mutex);
	free(jf);
}

int fy_journal_read(struct fy_journal_file *jf, struct fy_journal *out)
{
	int rc = lock(jf);

	if (rc < 0)
		return rc;
	rc = journal_load(jf, out);
	unlock(jf);
	return rc;
}

static bool entry_valid(const struct fy_journal_entry *e)
{
	char tmp[FY_JOURNAL_MAX_FIELD];
	const char *s[3] = { e->vm, e->object, e->file };
	size_t i;

	if (!e->vm[0] || (unsigned)e->kind >= N_KINDS)
		return false;
	for (i = 0; i < 3; i++)
		if (s[i][0] && take_field(s[i], strlen(s[i]), tmp, sizeof(tmp),
					  i < 2) < 0)
			return false;
	return true;
}

int fy_journal_add(struct fy_journal_file *jf, struct fy_journal_entry *e)
{
	struct fy_journal j;
	int rc;

	if (!entry_valid(e))
		return fy_err_set(-EINVAL, "journal: refusing an entry with "
				  "characters it cannot hold");
	if ((rc = lock(jf)) < 0)
		return rc;
	rc = journal_load(jf, &j);
	if (rc < 0)
		goto out;
	if (j.n == FY_JOURNAL_MAX_ENTRIES) {
		rc = fy_err_set(-E2BIG, "journal %s is full (%u entries): run "
				"ferry-agent cleanup", jf->path,
				FY_JOURNAL_MAX_ENTRIES);
		goto release;
	}
	e->id = j.next_id;
	j.entries[j.n++] = *e;
	rc = journal_write(jf, &j);
release:
	fy_journal_release(&j);
out:
	unlock(jf);
	return rc;
}

static int modify(struct fy_journal_file *jf, uint64_t id,
		  const struct fy_journal_entry *replace)
{
	struct fy_journal j;
	size_t i;
	int rc;

	if ((rc = lock(jf)) < 0)
		return rc;
	rc = journal_load(jf, &j);
	if (rc < 0)
		goto out;
	for (i = 0; i < j.n; i++)
		if (j.entries[i].id == id)
			break;
	if (i < j.n) {
		if (replace)
			j.entries[i] = *replace;
		else
			memmove(&j.entries[i], &j.entries[i + 1],
				(j.n - i - 1) * sizeof(j.entries[0]));
		if (!replace)
			j.n--;
		rc = journal_write(jf, &j);
	}
	fy_journal_release(&j);
out:
	unlock(jf);
	return rc;
}

int fy_journal_update(struct fy_journal_file *jf,
		      const struct fy_journal_entry *e)
{
	if (!entry_valid(e))
		return fy_err_set(-EINVAL, "journal: refusing an entry with "
				  "characters it cannot hold");
	return modify(jf, e->id, e);
}

int fy_journal_remove(struct fy_journal_file *jf, uint64_t id)
{
	return modify(jf, id, NULL);
}
