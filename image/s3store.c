/*
 * Repository format 3: format 2's packs and manifests in an S3 bucket,
 * with the repository directory as a local cache (docs/S3.md).
 *
 * The bucket holds every object a backup needs:
 *   ferry-repository          the repository's identity ("ferry-repository
 *                             3", id=): a cache is only ever attached to
 *                             the bucket of its own repository
 *   packs/<xx>/<id>.pack      pack files, byte for byte as in format 2
 *   backups/<id>.manifest     manifests
 *   lease                     which cache (which server) uses the bucket
 * The directory holds the configuration (config, with the bucket's
 * address and where the credentials are) and a cache: index/, backups/
 * and packs/, where a pack whose data was evicted keeps its size, header
 * and trailer with a hole in between (fy_pack_evict), so the index is
 * built as in format 2 and a read of a hole goes to the bucket.
 *
 * Order is what makes it safe, as on disk: a pack is in the bucket before
 * it is in the local index, so before any manifest can name it; a
 * manifest is in the bucket before it is listed. Losing the cache loses
 * nothing: reconcile() lists the bucket and brings back each missing
 * pack's trailer (as a stub) and each missing manifest.
 *
 * With Object Lock every object is written with a retention date; gc
 * neither deletes nor repacks a pack still retained, prune keeps a backup
 * whose manifest is retained, and gc extends the retention of what kept
 * backups still reference before it runs out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "image/image_private.h"

#define IDENTITY_KEY "ferry-repository"
/* As in backups/ on disk. */
#define MANIFEST_SUFFIX ".manifest"
#define LEASE_KEY "lease"
#define LEASE_MAX 1024
/* The lease is taken for this long and renewed by a serving process
 * every third of it. */
#define LEASE_SECONDS 300
#define CACHE_ID_HEX 32
/* A pack's trailer is fetched with one ranged GET of this much of its
 * tail when it fits (most do), else with a second GET. */
#define TAIL_GUESS (256u << 10)
/* Reads of evicted data fetch a window of this much from the object's
 * start (clipped to the pack), and keep the last few windows: a restore
 * reads a pack front to back, so one GET serves several blocks. */
#define WINDOW_SIZE (8u << 20)
#define WINDOWS 8
/* The window after the one just read is fetched ahead by these threads. */
#define PREFETCHERS 2
#define PREFETCH_QUEUE 4

struct window {
	uint8_t pack[FY_PACK_ID_LEN];
	uint64_t start;
	size_t len;
	uint8_t *data; /* WINDOW_SIZE bytes, allocated on first use */
	uint64_t used; /* LRU tick */
	enum { W_EMPTY, W_LOADING, W_READY } state;
};

struct s3_ctx {
	struct fy_s3 *s3;
	struct fy_repo_s3conf conf;
	char root[PATH_MAX];
	char tmpdir[PATH_MAX];
	char packs_dir[PATH_MAX];
	char cache_id[CACHE_ID_HEX + 1];
	pthread_mutex_t trim_lock;
	/* read-ahead windows of evicted pack data */
	pthread_mutex_t win_lock;
	pthread_cond_t win_cond;
	struct window win[WINDOWS];
	uint64_t win_tick;
	struct prefetch {
		uint8_t pack[FY_PACK_ID_LEN];
		uint64_t start, end;
	} pq[PREFETCH_QUEUE];
	size_t npq;
	pthread_t prefetchers[PREFETCHERS];
	unsigned nprefetchers;
	bool win_stop;
	/* the serving process renews the lease */
	bool serving, renewer;
	pthread_t renew_thread;
	pthread_mutex_t renew_lock;
	pthread_cond_t renew_cond;
	bool stopping;
};

static int pack_key(const uint8_t id[FY_PACK_ID_LEN], char *key, size_t len)
{
	char hex[FY_PACK_ID_LEN * 2 + 1];

	fy_pack_id_hex(id, hex);
	return fy_path_fmt(key, len, "packs/%.2s/%s" FY_PACK_SUFFIX, hex, hex);
}

static void lock_opts(const struct s3_ctx *c, struct fy_s3_put_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (!c->conf.lock_days)
		return;
	o->lock_mode = c->conf.lock_governance ? FY_S3_LOCK_GOVERNANCE
					       : FY_S3_LOCK_COMPLIANCE;
	o->retain_until = time(NULL) + (time_t)c->conf.lock_days * 86400;
}

/* ---- configuration ------------------------------------------------------ */

void fy_s3conf_init(struct fy_repo_s3conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->region, sizeof(c->region), "us-east-1");
	c->cache_size = FY_S3_CACHE_DEFAULT;
}

static int conf_bool(const char *v, bool *out)
{
	if (!strcmp(v, "true") || !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "false") || !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

int fy_s3conf_line(struct fy_repo_s3conf *c, const char *root,
		   const char *line, size_t n)
{
	char buf[FY_REPO_CONFIG_MAX], *eq, *v, *end;
	unsigned long long u;
	uint64_t size;
	int rc = 0;

	if (n < 3 || memcmp(line, "s3.", 3))
		return 1;
	if (n >= sizeof(buf))
		return fy_err_set(-EINVAL, "repository %s: config line too long",
				  root);
	memcpy(buf, line, n);
	buf[n] = 0;
	eq = strchr(buf, '=');
	if (!eq)
		return fy_err_set(-EINVAL, "repository %s: config line \"%s\" "
				  "has no '='", root, buf);
	*eq = 0;
	v = eq + 1;
	if (!strcmp(buf, "s3.url")) {
		if (strlen(v) >= sizeof(c->url))
			rc = -EINVAL;
		else
			strcpy(c->url, v);
	} else if (!strcmp(buf, "s3.region")) {
		if (!*v || strlen(v) >= sizeof(c->region))
			rc = -EINVAL;
		else
			strcpy(c->region, v);
	} else if (!strcmp(buf, "s3.path-style")) {
		rc = conf_bool(v, &c->path_style);
	} else if (!strcmp(buf, "s3.ca")) {
		if (strlen(v) >= sizeof(c->ca))
			rc = -EINVAL;
		else
			strcpy(c->ca, v);
	} else if (!strcmp(buf, "s3.credentials")) {
		if (strlen(v) >= sizeof(c->credentials))
			rc = -EINVAL;
		else
			strcpy(c->credentials, v);
	} else if (!strcmp(buf, "s3.object-lock-days")) {
		errno = 0;
		u = strtoull(v, &end, 10);
		if (errno || *end || end == v || u > 36500)
			rc = -EINVAL;
		else
			c->lock_days = (unsigned)u;
	} else if (!strcmp(buf, "s3.object-lock-mode")) {
		if (!strcmp(v, "compliance"))
			c->lock_governance = false;
		else if (!strcmp(v, "governance"))
			c->lock_governance = true;
		else
			rc = -EINVAL;
	} else if (!strcmp(buf, "s3.cache-size")) {
		rc = fy_parse_size(v, &size);
		if (!rc && size < (64ull << 20))
			rc = -EINVAL;
		if (!rc)
			c->cache_size = size;
	} else {
		return fy_err_set(-EINVAL, "repository %s: unknown config key "
				  "%s", root, buf);
	}
	if (rc)
		return fy_err_set(-EINVAL, "repository %s: bad value \"%s\" "
				  "for %s", root, v, buf);
	return 0;
}

int fy_s3conf_format(const struct fy_repo_s3conf *c, char *out, size_t len)
{
	int n;

	n = snprintf(out, len,
		     "s3.url=%s\ns3.region=%s\ns3.path-style=%s\n"
		     "s3.cache-size=%" PRIu64 "\n",
		     c->url, c->region, c->path_style ? "true" : "false",
		     c->cache_size);
	if (n >= 0 && (size_t)n < len && c->ca[0])
		n += snprintf(out + n, len - (size_t)n, "s3.ca=%s\n", c->ca);
	if (n >= 0 && (size_t)n < len && c->credentials[0])
		n += snprintf(out + n, len - (size_t)n, "s3.credentials=%s\n",
			      c->credentials);
	if (n >= 0 && (size_t)n < len && c->lock_days)
		n += snprintf(out + n, len - (size_t)n,
			      "s3.object-lock-days=%u\ns3.object-lock-mode=%s\n",
			      c->lock_days,
			      c->lock_governance ? "governance" : "compliance");
	if (n < 0 || (size_t)n >= len)
		return fy_err_set(-ENAMETOOLONG, "repository config too long");
	return n;
}

int fy_s3conf_client(const struct fy_repo_s3conf *c, struct fy_s3 **out)
{
	struct fy_s3_config cfg;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	rc = fy_s3_parse_url(c->url, &cfg);
	if (rc)
		return rc;
	snprintf(cfg.region, sizeof(cfg.region), "%s", c->region);
	cfg.path_style = c->path_style;
	snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", c->ca);
	/* A pack (at most FY_PACK_FILE_MAX) goes in one PUT: a multipart
	 * upload of 16 MiB parts cost four requests a pack, each part read
	 * and hashed on its own (bench/s3). */
	cfg.part_size = FY_PACK_FILE_MAX;
	rc = fy_s3_load_credentials(&cfg, c->credentials[0] ? c->credentials
							    : NULL);
	if (!rc)
		rc = fy_s3_open(&cfg, out);
	/* The secret lives on in the client only. */
	OPENSSL_cleanse(cfg.secret_key, sizeof(cfg.secret_key));
	return rc;
}

/* ---- the bucket's identity --------------------------------------------- */

static int identity_text(const char *id, char *out, size_t len)
{
	int n = snprintf(out, len, "%s %d\nid=%s\n", FY_REPO_CONFIG_LINE,
			 FY_REPO_VERSION_S3, id);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : n;
}

/* 0 with the bucket's repository id in id, or -ENOENT for a bucket
 * without one. */
static int read_identity(struct fy_s3 *s3, char id[FY_REPO_ID_HEX + 1])
{
	char buf[256], want[64];
	size_t got = 0;
	int rc;

	rc = fy_s3_get(s3, IDENTITY_KEY, 0, 0, buf, sizeof(buf) - 1, &got);
	if (rc)
		return rc;
	buf[got] = 0;
	snprintf(want, sizeof(want), "%s %d\nid=", FY_REPO_CONFIG_LINE,
		 FY_REPO_VERSION_S3);
	if (strncmp(buf, want, strlen(want)) ||
	    got != strlen(want) + FY_REPO_ID_HEX + 1 ||
	    buf[got - 1] != '\n')
		return fy_err_set(-EBADMSG, "the bucket's %s object is not a "
				  "Ferry repository identity", IDENTITY_KEY);
	memcpy(id, buf + strlen(want), FY_REPO_ID_HEX);
	id[FY_REPO_ID_HEX] = 0;
	return 0;
}

static int any_object(void *opaque, const char *key, uint64_t size)
{
	(void)size;
	snprintf(opaque, FY_S3_KEY_MAX, "%s", key);
	return 1;
}

int fy_s3_repo_prepare(const struct fy_repo_s3conf *conf,
		       char id[FY_REPO_ID_HEX + 1], bool *adopted)
{
	struct fy_s3 *s3 = NULL;
	char text[128], other[FY_S3_KEY_MAX] = "";
	struct fy_s3_put_opts o;
	bool locked = false;
	int rc;

	*adopted = false;
	rc = fy_s3conf_client(conf, &s3);
	if (rc)
		return rc;
	if (conf->lock_days) {
		rc = fy_s3_bucket_lock_enabled(s3, &locked);
		if (!rc && !locked)
			rc = fy_err_set(-EINVAL, "--object-lock-days needs a "
					"bucket created with Object Lock "
					"enabled; this bucket has none "
					"(docs/S3.md says how to create one)");
		if (rc)
			goto out;
	}
	rc = read_identity(s3, id);
	if (rc == 0) {
		/* A new cache for an existing repository: the machine (or its
		 * disk) was replaced. */
		*adopted = true;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	rc = fy_s3_list(s3, "", any_object, other);
	if (rc == 1) {
		rc = fy_err_set(-ENOTEMPTY, "the bucket is not empty (it holds "
				"%s) and is not a Ferry repository: give "
				"Ferry a bucket of its own", other);
		goto out;
	}
	if (rc)
		goto out;
	{
		uint8_t raw[FY_REPO_ID_HEX / 2];

		if (RAND_bytes(raw, sizeof(raw)) != 1) {
			rc = fy_err_set(-EIO, "no randomness for an id");
			goto out;
		}
		fy_hex(raw, sizeof(raw), id);
		id[FY_REPO_ID_HEX] = 0;
	}
	rc = identity_text(id, text, sizeof(text));
	if (rc < 0)
		goto out;
	/* The identity is never locked: it names the repository, it holds
	 * no backup. */
	memset(&o, 0, sizeof(o));
	o.if_none_match = true;
	rc = fy_s3_put(s3, IDENTITY_KEY, text, (size_t)rc, &o);
out:
	fy_s3_close(s3);
	return rc;
}

/* ---- the lease ---------------------------------------------------------- */

/* "owner=..\nhost=..\npid=..\nexpires=..\n", every field bounded. */
int fy_s3_lease_parse(const char *text, size_t len, struct lease_view *out)
{
	const char *line = text, *end = text + len, *nl;

	memset(out, 0, sizeof(*out));
	if (len > LEASE_MAX)
		return fy_err_set(-EBADMSG, "lease: %zu bytes", len);
	for (; line < end; line = nl + 1) {
		size_t n;
		char val[256], *e;

		nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			return fy_err_set(-EBADMSG, "lease: no final newline");
		n = (size_t)(nl - line);
		if (n > 6 && !memcmp(line, "owner=", 6) &&
		    n - 6 < sizeof(out->owner)) {
			memcpy(out->owner, line + 6, n - 6);
			out->owner[n - 6] = 0;
		} else if (n > 5 && !memcmp(line, "host=", 5) &&
			   n - 5 < sizeof(out->host)) {
			memcpy(out->host, line + 5, n - 5);
			out->host[n - 5] = 0;
		} else if ((n > 4 && !memcmp(line, "pid=", 4)) ||
			   (n > 8 && !memcmp(line, "expires=", 8))) {
			size_t k = line[0] == 'p' ? 4 : 8;

			if (n - k >= sizeof(val))
				return fy_err_set(-EBADMSG, "lease: long line");
			memcpy(val, line + k, n - k);
			val[n - k] = 0;
			errno = 0;
			long long v = strtoll(val, &e, 10);
			if (errno || *e || e == val || v < 0)
				return fy_err_set(-EBADMSG, "lease: bad number");
			if (k == 4)
				out->pid = v;
			else
				out->expires = v;
		} else {
			return fy_err_set(-EBADMSG, "lease: unknown line");
		}
	}
	if (!out->owner[0] || !out->expires)
		return fy_err_set(-EBADMSG, "lease: owner or expiry missing");
	return 0;
}

int fy_s3_lease_check(const uint8_t *data, size_t len)
{
	struct lease_view l;

	return fy_s3_lease_parse((const char *)data, len, &l);
}

static int lease_write(struct s3_ctx *c)
{
	char text[LEASE_MAX], host[200] = "";
	int n;

	gethostname(host, sizeof(host) - 1);
	n = snprintf(text, sizeof(text),
		     "owner=%s\nhost=%s\npid=%ld\nexpires=%lld\n", c->cache_id,
		     host, (long)getpid(),
		     (long long)time(NULL) + LEASE_SECONDS);
	return fy_s3_put(c->s3, LEASE_KEY, text, (size_t)n, NULL);
}

/* Takes the lease unless another cache holds it and it has not expired:
 * two repository servers on one bucket would each trust their own index
 * and gc could delete what the other just stored. */
static int lease_take(struct s3_ctx *c)
{
	struct lease_view l;
	char text[LEASE_MAX + 1];
	size_t got = 0;
	int rc, round;

	for (round = 0; round < 2; round++) {
		rc = fy_s3_get(c->s3, LEASE_KEY, 0, 0, text, LEASE_MAX, &got);
		if (rc == -ENOENT) {
			got = 0;
		} else if (rc) {
			return fy_err_wrap(rc, "lease");
		} else {
			rc = fy_s3_lease_parse(text, got, &l);
			if (rc) {
				fy_warn("repository %s: the bucket's lease is "
					"damaged (%s); taking it",
					c->root, fy_err_msg());
			} else if (strcmp(l.owner, c->cache_id) &&
				   l.expires > (long long)time(NULL)) {
				return fy_err_set(-EBUSY,
					"the bucket is in use by another "
					"repository cache (host %s, pid %lld) "
					"until %lld (Unix time): two servers "
					"on one bucket are refused. Stop the "
					"other one, or wait for its lease to "
					"run out (%d s after it stops)",
					l.host, l.pid, l.expires,
					LEASE_SECONDS);
			} else if (round == 1) {
				return 0; /* ours, read back */
			}
		}
		if (round == 1)
			return fy_err_set(-EBUSY, "lease: lost a race for the "
					  "bucket's lease");
		rc = lease_write(c);
		if (rc)
			return fy_err_wrap(rc, "lease");
	}
	return 0;
}

static void *renew_main(void *arg)
{
	struct s3_ctx *c = arg;
	struct timespec ts;

	pthread_mutex_lock(&c->renew_lock);
	while (!c->stopping) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += LEASE_SECONDS / 3;
		pthread_cond_timedwait(&c->renew_cond, &c->renew_lock, &ts);
		if (c->stopping)
			break;
		pthread_mutex_unlock(&c->renew_lock);
		if (lease_take(c))
			fy_error("repository %s: lease not renewed: %s",
				 c->root, fy_err_msg());
		pthread_mutex_lock(&c->renew_lock);
	}
	pthread_mutex_unlock(&c->renew_lock);
	return NULL;
}

/* ---- the cache ---------------------------------------------------------- */

static int cache_id(struct s3_ctx *c)
{
	char path[PATH_MAX];
	void *data = NULL;
	size_t len = 0, i;
	uint8_t raw[CACHE_ID_HEX / 2];
	int rc;

	rc = fy_path_fmt(path, sizeof(path), "%s/cache-id", c->root);
	if (rc)
		return rc;
	rc = fy_read_file(path, 64, &data, &len);
	if (rc == 0 && len == CACHE_ID_HEX + 1) {
		memcpy(c->cache_id, data, CACHE_ID_HEX);
		c->cache_id[CACHE_ID_HEX] = 0;
		free(data);
		for (i = 0; i < CACHE_ID_HEX; i++)
			if (!strchr("0123456789abcdef", c->cache_id[i]))
				break;
		if (i == CACHE_ID_HEX)
			return 0;
	} else {
		free(data);
	}
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return fy_err_set(-EIO, "cache id: no randomness");
	fy_hex(raw, sizeof(raw), c->cache_id);
	c->cache_id[CACHE_ID_HEX] = '\n';
	rc = fy_write_durable(c->tmpdir, c->root, "cache-id", c->cache_id,
			      CACHE_ID_HEX + 1, true);
	c->cache_id[CACHE_ID_HEX] = 0;
	return rc;
}

struct cached_pack {
	char path[PATH_MAX];
	time_t mtime;
	uint64_t bytes;
};

struct trim_walk {
	struct cached_pack *p;
	size_t n, cap;
	uint64_t total;
};

static int trim_collect(struct trim_walk *w, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct stat sb;
	char path[PATH_MAX];

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (fy_path_fmt(path, sizeof(path), "%s/%s", dir, de->d_name) ||
		    lstat(path, &sb))
			continue;
		if (S_ISDIR(sb.st_mode)) {
			trim_collect(w, path);
			continue;
		}
		if (!S_ISREG(sb.st_mode))
			continue;
		if (w->n == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 256;
			void *q = realloc(w->p, cap * sizeof(*w->p));

			if (!q)
				break;
			w->p = q;
			w->cap = cap;
		}
		strcpy(w->p[w->n].path, path);
		w->p[w->n].mtime = sb.st_mtime;
		w->p[w->n].bytes = (uint64_t)sb.st_blocks * 512;
		w->total += w->p[w->n].bytes;
		w->n++;
	}
	closedir(d);
	return 0;
}

static int cmp_mtime(const void *a, const void *b)
{
	const struct cached_pack *x = a, *y = b;

	return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

/* Keeps the packs' local data within s3.cache-size: the oldest packs'
 * data is punched out until 80% of it is used. Headers and trailers stay
 * (they are what the index is built from). */
static void s3_trim(void *ctx)
{
	struct s3_ctx *c = ctx;
	struct trim_walk w = { 0 };
	uint64_t target = c->conf.cache_size / 5 * 4, freed, evicted = 0;
	size_t i;

	pthread_mutex_lock(&c->trim_lock);
	trim_collect(&w, c->packs_dir);
	if (w.total > c->conf.cache_size) {
		qsort(w.p, w.n, sizeof(*w.p), cmp_mtime);
		for (i = 0; i < w.n && w.total > target; i++) {
			/* A stub is already only its ends. */
			if (w.p[i].bytes < 2 * 65536)
				continue;
			if (fy_pack_evict(w.p[i].path, &freed)) {
				fy_warn("repository %s: %s", c->root,
					fy_err_msg());
				break;
			}
			w.total -= freed < w.total ? freed : w.total;
			evicted += freed;
		}
		fy_debug("repository %s: cache trimmed by %" PRIu64 " bytes",
			 c->root, evicted);
	}
	pthread_mutex_unlock(&c->trim_lock);
	free(w.p);
}

/* ---- reconcile: the cache against the bucket ---------------------------- */

#define NAME_LEN 80 /* a manifest's file name: id and suffix */

struct recon {
	struct s3_ctx *c;
	uint64_t packs, stubs, manifests, fetched;
	int failed;
	/* the manifests the bucket lists, sorted at the end */
	char (*names)[NAME_LEN];
	size_t nnames, capnames;
};

/* A pack the cache does not have: its trailer, checked, as a stub. */
static int fetch_stub(struct s3_ctx *c, const char *key,
		      const uint8_t id[FY_PACK_ID_LEN], uint64_t size)
{
	struct fy_pack_entry *e = NULL;
	uint8_t *tail;
	size_t want, got = 0, n = 0, tlen;
	int rc;

	if (size < FY_PACK_HDR_LEN + FY_PACK_FOOTER_LEN ||
	    size > FY_PACK_FILE_MAX)
		return fy_err_set(-EBADMSG, "bucket object %s: %" PRIu64
				  " bytes is no pack", key, size);
	want = size - FY_PACK_HDR_LEN < TAIL_GUESS ? size - FY_PACK_HDR_LEN
						   : TAIL_GUESS;
	tail = malloc(FY_PACK_ENTRIES_MAX * (size_t)FY_PACK_ENTRY_LEN +
		      FY_PACK_FOOTER_LEN);
	if (!tail)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = fy_s3_get(c->s3, key, size - want, want, tail, want, &got);
	if (rc)
		goto out;
	tlen = (size_t)fy_get_be32(tail + want - FY_PACK_FOOTER_LEN) *
		       FY_PACK_ENTRY_LEN +
	       FY_PACK_FOOTER_LEN;
	if (fy_get_be32(tail + want - FY_PACK_FOOTER_LEN) >
		    FY_PACK_ENTRIES_MAX ||
	    tlen + FY_PACK_HDR_LEN > size) {
		rc = fy_err_set(-EBADMSG, "bucket object %s: its trailer lies "
				"about its size", key);
		goto out;
	}
	if (tlen > want) {
		rc = fy_s3_get(c->s3, key, size - tlen, tlen, tail, tlen, &got);
		if (rc)
			goto out;
	} else {
		memmove(tail, tail + want - tlen, tlen);
	}
	rc = fy_pack_parse_trailer(tail, tlen, size, key, &e, &n);
	free(e);
	if (!rc)
		rc = fy_pack_write_stub(c->tmpdir, id, size, tail, tlen);
	if (!rc)
		rc = fy_pack_move_in(c->tmpdir, c->packs_dir, id);
out:
	free(tail);
	return rc;
}

static int recon_pack(void *opaque, const char *key, uint64_t size)
{
	struct recon *r = opaque;
	uint8_t id[FY_PACK_ID_LEN];
	char hex[FY_PACK_ID_LEN * 2 + 1], path[PATH_MAX];
	const char *base = strrchr(key, '/');
	struct stat sb;
	int rc;

	r->packs++;
	if (!base || strlen(base + 1) != sizeof(hex) - 1 + strlen(FY_PACK_SUFFIX) ||
	    strcmp(base + 1 + sizeof(hex) - 1, FY_PACK_SUFFIX)) {
		fy_warn("repository %s: bucket object %s is not a pack; "
			"ignored", r->c->root, key);
		return 0;
	}
	memcpy(hex, base + 1, sizeof(hex) - 1);
	hex[sizeof(hex) - 1] = 0;
	if (!fy_pack_id_unhex(hex, id)) {
		fy_warn("repository %s: bucket object %s is not a pack; "
			"ignored", r->c->root, key);
		return 0;
	}
	rc = fy_pack_path(r->c->packs_dir, id, path, sizeof(path));
	if (rc)
		return rc;
	if (!stat(path, &sb) && (uint64_t)sb.st_size == size)
		return 0;
	rc = fetch_stub(r->c, key, id, size);
	if (rc) {
		/* verify names the backups this damages. */
		fy_error("repository %s: pack %s: %s", r->c->root, key,
			 fy_err_msg());
		r->failed++;
		return 0;
	}
	r->stubs++;
	return 0;
}

static int recon_manifest(void *opaque, const char *key, uint64_t size)
{
	struct recon *r = opaque;
	const char *name = key + strlen("backups/");
	char path[PATH_MAX], tmp[PATH_MAX], dir[PATH_MAX], id[FY_ID_MAX];
	size_t len = strlen(name), sfx = strlen(MANIFEST_SUFFIX);
	struct stat sb;
	int rc;

	r->manifests++;
	if (len < NAME_LEN) {
		if (r->nnames == r->capnames) {
			size_t cap = r->capnames ? r->capnames * 2 : 64;
			void *q = realloc(r->names, cap * NAME_LEN);

			if (!q)
				return fy_err_set(-ENOMEM, "out of memory");
			r->names = q;
			r->capnames = cap;
		}
		memcpy(r->names[r->nnames++], name, len + 1);
	}
	id[0] = 0;
	if (len > sfx && len - sfx < FY_ID_MAX &&
	    !strcmp(name + len - sfx, MANIFEST_SUFFIX)) {
		memcpy(id, name, len - sfx);
		id[len - sfx] = 0;
	}
	if (!fy_id_valid(id)) {
		fy_warn("repository %s: bucket object %s is not a backup; "
			"ignored", r->c->root, key);
		return 0;
	}
	rc = fy_path_fmt(path, sizeof(path), "%s/backups/%s", r->c->root,
			 name);
	if (!rc)
		rc = fy_path_fmt(tmp, sizeof(tmp), "%s/manifest-%s",
				 r->c->tmpdir, id);
	if (!rc)
		rc = fy_path_fmt(dir, sizeof(dir), "%s/backups", r->c->root);
	if (rc)
		return rc;
	if (!stat(path, &sb) && (uint64_t)sb.st_size == size)
		return 0;
	rc = fy_s3_get_file(r->c->s3, key, tmp);
	if (!rc && rename(tmp, path))
		rc = fy_err_set(-errno, "%s: %s", path, strerror(errno));
	if (!rc)
		rc = fy_fsync_dir(dir);
	if (rc) {
		unlink(tmp);
		fy_error("repository %s: backup %s: %s", r->c->root, id,
			 fy_err_msg());
		r->failed++;
		return 0;
	}
	r->fetched++;
	return 0;
}

struct local_walk {
	struct s3_ctx *c;
	uint64_t removed;
};

/* A manifest in the cache that the bucket no longer has: the bucket is
 * the truth (the backup was removed there), so is it here. */
static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int drop_unlisted(struct s3_ctx *c, struct recon *r,
			 uint64_t *removed)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	*removed = 0;
	if (r->nnames)
		qsort(r->names, r->nnames, NAME_LEN, cmp_name);
	if (fy_path_fmt(dir, sizeof(dir), "%s/backups", c->root))
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : fy_err_set(-errno, "%s: %s", dir,
						       strerror(errno));
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name), sfx = strlen(MANIFEST_SUFFIX);

		if (len <= sfx || strcmp(de->d_name + len - sfx,
					 MANIFEST_SUFFIX))
			continue;
		if (len < NAME_LEN && r->nnames &&
		    bsearch(de->d_name, r->names, r->nnames, NAME_LEN,
			    cmp_name))
			continue;
		if (!fy_path_fmt(path, sizeof(path), "%s/%s", dir,
				 de->d_name) &&
		    !unlink(path))
			(*removed)++;
	}
	closedir(d);
	if (*removed)
		rc = fy_fsync_dir(dir);
	return rc;
}

static int abort_upload(void *opaque, const char *key,
			const char *upload_id, time_t initiated)
{
	void **a = opaque;
	struct s3_ctx *c = a[0];
	uint64_t *n = a[1];

	(void)initiated;
	if (fy_s3_abort_upload(c->s3, key, upload_id)) {
		fy_warn("repository %s: %s", c->root, fy_err_msg());
		return 0;
	}
	(*n)++;
	return 0;
}

/* Under the exclusive lock, so no upload of ours is under way. */
static int s3_gc_begin(void *ctx, bool dry_run, struct fy_gc_result *res)
{
	struct s3_ctx *c = ctx;
	struct recon r = { .c = c };
	void *a[2] = { c, &res->uploads_aborted };
	int rc;

	rc = fy_s3_list(c->s3, "packs/", recon_pack, &r);
	res->packs_found = r.stubs;
	if (!rc && !dry_run)
		rc = fy_s3_list_uploads(c->s3, "", abort_upload, a);
	return rc ? fy_err_wrap(rc, "gc: reading the bucket") : 0;
}

static int reconcile(struct s3_ctx *c)
{
	struct recon r = { .c = c };
	uint64_t removed = 0;
	char dir[PATH_MAX];
	int rc;

	rc = fy_path_fmt(dir, sizeof(dir), "%s/backups", c->root);
	if (!rc)
		rc = fy_mkdirs(dir, 0700);
	if (!rc)
		rc = fy_mkdirs(c->packs_dir, 0755);
	if (!rc)
		rc = fy_s3_list(c->s3, "packs/", recon_pack, &r);
	if (!rc)
		rc = fy_s3_list(c->s3, "backups/", recon_manifest, &r);
	if (!rc)
		rc = drop_unlisted(c, &r, &removed);
	free(r.names);
	if (rc)
		return fy_err_wrap(rc, "repository %s: reading the bucket",
				   c->root);
	fy_info("repository %s: cache matches the bucket (%" PRIu64
		" packs, %" PRIu64 " trailers fetched; %" PRIu64
		" backups, %" PRIu64 " manifests fetched, %" PRIu64
		" removed%s)",
		c->root, r.packs, r.stubs, r.manifests, r.fetched, removed,
		r.failed ? "; some objects could not be read, see above" : "");
	return 0;
}

/* ---- the remote operations ---------------------------------------------- */

static int s3_pack_put(void *ctx, const uint8_t id[FY_PACK_ID_LEN],
		       const char *path)
{
	struct s3_ctx *c = ctx;
	struct fy_s3_put_opts o;
	char key[FY_S3_KEY_MAX];
	int rc = pack_key(id, key, sizeof(key));

	lock_opts(c, &o);
	if (!rc)
		rc = fy_s3_put_file(c->s3, key, path, &o);
	return rc ? fy_err_wrap(rc, "storing %s in the bucket", key) : 0;
}

static int get_range(struct s3_ctx *c, const char *key, uint64_t offset,
		     size_t length, void *buf)
{
	size_t got = 0;
	int rc = fy_s3_get(c->s3, key, offset, length, buf, length, &got);

	if (rc == -ENOENT)
		return fy_err_set(-ENOENT, "pack %s is missing from the bucket",
				  key);
	return rc ? fy_err_wrap(rc, "reading %s from the bucket", key) : 0;
}

static struct window *window_find(struct s3_ctx *c,
				  const uint8_t id[FY_PACK_ID_LEN],
				  uint64_t offset, uint32_t length, bool ready)
{
	size_t i;

	for (i = 0; i < WINDOWS; i++) {
		struct window *w = &c->win[i];

		if ((ready ? w->state == W_READY : w->state == W_LOADING) &&
		    !memcmp(w->pack, id, FY_PACK_ID_LEN) &&
		    offset >= w->start && offset + length <= w->start + w->len)
			return w;
	}
	return NULL;
}

/* Under win_lock: the least recently used window that is not being
 * loaded, claimed for [start, end) of pack id; NULL when every one is. */
static struct window *window_claim(struct s3_ctx *c,
				   const uint8_t id[FY_PACK_ID_LEN],
				   uint64_t start, uint64_t end)
{
	struct window *w = NULL;
	size_t i;

	for (i = 0; i < WINDOWS; i++) {
		struct window *v = &c->win[i];

		if (v->state != W_LOADING && (!w || v->used < w->used))
			w = v;
	}
	if (w && !w->data)
		w->data = malloc(WINDOW_SIZE);
	if (!w || !w->data)
		return NULL;
	memcpy(w->pack, id, FY_PACK_ID_LEN);
	w->start = start;
	w->len = (size_t)(end - start);
	w->state = W_LOADING;
	return w;
}

/* Fills a claimed window (without win_lock held). */
static int window_fill(struct s3_ctx *c, struct window *w)
{
	char key[FY_S3_KEY_MAX];
	int rc = pack_key(w->pack, key, sizeof(key));

	if (!rc)
		rc = get_range(c, key, w->start, w->len, w->data);
	pthread_mutex_lock(&c->win_lock);
	w->state = rc ? W_EMPTY : W_READY;
	w->used = ++c->win_tick;
	pthread_cond_broadcast(&c->win_cond);
	pthread_mutex_unlock(&c->win_lock);
	return rc;
}

static void *prefetch_main(void *arg)
{
	struct s3_ctx *c = arg;
	struct prefetch p;
	struct window *w;

	pthread_mutex_lock(&c->win_lock);
	for (;;) {
		while (!c->npq && !c->win_stop)
			pthread_cond_wait(&c->win_cond, &c->win_lock);
		if (c->win_stop)
			break;
		p = c->pq[--c->npq];
		if (window_find(c, p.pack, p.start, 1, true) ||
		    window_find(c, p.pack, p.start, 1, false))
			continue;
		w = window_claim(c, p.pack, p.start, p.end);
		if (!w)
			continue;
		pthread_mutex_unlock(&c->win_lock);
		if (window_fill(c, w))
			fy_debug("read-ahead: %s", fy_err_msg());
		pthread_mutex_lock(&c->win_lock);
	}
	pthread_mutex_unlock(&c->win_lock);
	return NULL;
}

/* Under win_lock: asks for the window after w when the pack goes on and
 * nobody has it or asked for it. */
static void prefetch_next(struct s3_ctx *c, const struct window *w,
			  uint64_t size)
{
	uint64_t start = w->start + w->len, end;
	size_t i;

	if (start >= size || c->npq == PREFETCH_QUEUE ||
	    window_find(c, w->pack, start, 1, true) ||
	    window_find(c, w->pack, start, 1, false))
		return;
	for (i = 0; i < c->npq; i++)
		if (!memcmp(c->pq[i].pack, w->pack, FY_PACK_ID_LEN) &&
		    c->pq[i].start == start)
			return;
	while (c->nprefetchers < PREFETCHERS &&
	       !pthread_create(&c->prefetchers[c->nprefetchers], NULL,
			       prefetch_main, c))
		c->nprefetchers++;
	if (!c->nprefetchers)
		return;
	end = start + WINDOW_SIZE < size ? start + WINDOW_SIZE : size;
	memcpy(c->pq[c->npq].pack, w->pack, FY_PACK_ID_LEN);
	c->pq[c->npq].start = start;
	c->pq[c->npq++].end = end;
	pthread_cond_broadcast(&c->win_cond);
}

/* Under win_lock: copies [offset, offset + length) out of one ready
 * window, or out of two adjacent ones (an object across a window's end:
 * the read-ahead window starts where the one read ends). 1 when copied,
 * 0 when not there, -EAGAIN when a window it needs is still loading. */
static int window_copy(struct s3_ctx *c, const uint8_t id[FY_PACK_ID_LEN],
		       uint64_t offset, uint32_t length, uint8_t *buf,
		       uint64_t size)
{
	struct window *a = NULL, *b;
	uint64_t a_end, head;
	size_t i;

	for (i = 0; i < WINDOWS && !a; i++)
		if (c->win[i].state == W_READY &&
		    !memcmp(c->win[i].pack, id, FY_PACK_ID_LEN) &&
		    offset >= c->win[i].start &&
		    offset < c->win[i].start + c->win[i].len)
			a = &c->win[i];
	if (!a)
		return window_find(c, id, offset, 1, false) ? -EAGAIN : 0;
	a_end = a->start + a->len;
	head = a_end - offset < length ? a_end - offset : length;
	if (head < length) {
		b = window_find(c, id, a_end, (uint32_t)(length - head), true);
		if (!b || b->start != a_end)
			return window_find(c, id, a_end, 1, false) ? -EAGAIN
								  : 0;
		memcpy(buf + head, b->data, length - head);
		b->used = ++c->win_tick;
		prefetch_next(c, b, size);
	}
	memcpy(buf, a->data + (offset - a->start), head);
	a->used = ++c->win_tick;
	prefetch_next(c, a, size);
	return 1;
}

static int s3_pack_read(void *ctx, const uint8_t id[FY_PACK_ID_LEN],
			uint64_t offset, uint32_t length, void *buf)
{
	struct s3_ctx *c = ctx;
	struct window *w;
	char key[FY_S3_KEY_MAX], path[PATH_MAX];
	uint64_t size = UINT64_MAX, end;
	struct stat sb;
	int rc;

	rc = pack_key(id, key, sizeof(key));
	if (!rc)
		rc = fy_pack_path(c->packs_dir, id, path, sizeof(path));
	if (rc)
		return rc;
	/* Windows end at the pack's end (the cache file has its size). */
	if (!stat(path, &sb))
		size = (uint64_t)sb.st_size;
	end = offset + WINDOW_SIZE < size ? offset + WINDOW_SIZE : size;
	if (length > WINDOW_SIZE || end < offset + length)
		return get_range(c, key, offset, length, buf);

	pthread_mutex_lock(&c->win_lock);
	while ((rc = window_copy(c, id, offset, length, buf, size)) ==
	       -EAGAIN)
		pthread_cond_wait(&c->win_cond, &c->win_lock);
	if (rc == 1) {
		pthread_mutex_unlock(&c->win_lock);
		return 0;
	}
	w = window_claim(c, id, offset, end);
	pthread_mutex_unlock(&c->win_lock);
	if (!w)
		return get_range(c, key, offset, length, buf);
	rc = window_fill(c, w);
	if (rc)
		return rc;
	/* Filled; copied out unless another reader already recycled it. */
	pthread_mutex_lock(&c->win_lock);
	if (w->state == W_READY && !memcmp(w->pack, id, FY_PACK_ID_LEN) &&
	    w->start == offset) {
		memcpy(buf, w->data, length);
		prefetch_next(c, w, size);
		pthread_mutex_unlock(&c->win_lock);
		return 0;
	}
	pthread_mutex_unlock(&c->win_lock);
	return get_range(c, key, offset, length, buf);
}

/* 1 when no retention keeps the object, 0 while one does; the current
 * version's id into version (for a delete that frees it). */
static int deletable(struct s3_ctx *c, const char *key, char *version,
		     size_t vlen, time_t *until)
{
	struct fy_s3_head h;
	int rc;

	*until = 0;
	version[0] = 0;
	rc = fy_s3_head(c->s3, key, &h);
	if (rc == -ENOENT)
		return 1;
	if (rc)
		return rc;
	snprintf(version, vlen, "%s", h.version_id);
	*until = h.retain_until;
	return h.lock_mode == FY_S3_LOCK_NONE || h.retain_until <= time(NULL);
}

static int s3_pack_deletable(void *ctx, const uint8_t id[FY_PACK_ID_LEN])
{
	struct s3_ctx *c = ctx;
	char key[FY_S3_KEY_MAX], version[256];
	time_t until;
	int rc;

	if (!c->conf.lock_days)
		return 1;
	rc = pack_key(id, key, sizeof(key));
	if (!rc)
		rc = deletable(c, key, version, sizeof(version), &until);
	return rc;
}

/* With Object Lock the bucket is versioned: a plain DELETE would only
 * hide the object behind a delete marker. The version itself is
 * deleted, which frees its space. */
static int delete_object(struct s3_ctx *c, const char *key)
{
	char version[256], date[32];
	time_t until;
	struct tm tm;
	int rc;

	if (!c->conf.lock_days)
		return fy_s3_delete(c->s3, key, NULL);
	rc = deletable(c, key, version, sizeof(version), &until);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		gmtime_r(&until, &tm);
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", &tm);
		return fy_err_set(-EPERM, "%s is under Object Lock retention "
				  "until %s", key, date);
	}
	return fy_s3_delete(c->s3, key, version[0] ? version : NULL);
}

static int s3_pack_delete(void *ctx, const uint8_t id[FY_PACK_ID_LEN])
{
	struct s3_ctx *c = ctx;
	char key[FY_S3_KEY_MAX];
	int rc = pack_key(id, key, sizeof(key));

	if (!rc)
		rc = delete_object(c, key);
	return rc == -ENOENT ? 0 : rc;
}

static int s3_manifest_put(void *ctx, const char *id, const char *path)
{
	struct s3_ctx *c = ctx;
	struct fy_s3_put_opts o;
	char key[FY_S3_KEY_MAX];
	int rc;

	lock_opts(c, &o);
	rc = fy_path_fmt(key, sizeof(key), "backups/%s" MANIFEST_SUFFIX, id);
	if (!rc)
		rc = fy_s3_put_file(c->s3, key, path, &o);
	return rc ? fy_err_wrap(rc, "storing backup %s in the bucket", id)
		  : 0;
}

static int s3_manifest_delete(void *ctx, const char *id)
{
	struct s3_ctx *c = ctx;
	char key[FY_S3_KEY_MAX];
	int rc = fy_path_fmt(key, sizeof(key), "backups/%s" MANIFEST_SUFFIX,
			     id);

	if (!rc)
		rc = delete_object(c, key);
	return rc;
}

/* A server that stops lets another take the bucket at once. */
static void s3_release(void *ctx)
{
	struct s3_ctx *c = ctx;

	if (c->renewer) {
		pthread_mutex_lock(&c->renew_lock);
		c->stopping = true;
		pthread_cond_signal(&c->renew_cond);
		pthread_mutex_unlock(&c->renew_lock);
		pthread_join(c->renew_thread, NULL);
		c->renewer = false;
	}
	if (c->serving && c->s3 && fy_s3_delete(c->s3, LEASE_KEY, NULL))
		fy_warn("repository %s: lease not released: %s", c->root,
			fy_err_msg());
	c->serving = false;
}

static void s3_close(void *ctx)
{
	struct s3_ctx *c = ctx;

	if (!c)
		return;
	s3_release(c);
	pthread_mutex_lock(&c->win_lock);
	c->win_stop = true;
	pthread_cond_broadcast(&c->win_cond);
	pthread_mutex_unlock(&c->win_lock);
	while (c->nprefetchers)
		pthread_join(c->prefetchers[--c->nprefetchers], NULL);
	fy_s3_close(c->s3);
	for (size_t i = 0; i < WINDOWS; i++)
		free(c->win[i].data);
	pthread_mutex_destroy(&c->win_lock);
	pthread_cond_destroy(&c->win_cond);
	pthread_mutex_destroy(&c->trim_lock);
	pthread_mutex_destroy(&c->renew_lock);
	pthread_cond_destroy(&c->renew_cond);
	free(c);
}

/* ---- retention upkeep ---------------------------------------------------- */

struct upkeep {
	struct s3_ctx *c;
	time_t soon, until;
	uint64_t extended, failed;
};

static int extend_one(struct upkeep *u, const char *key)
{
	struct fy_s3_head h;
	int rc = fy_s3_head(u->c->s3, key, &h);

	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if (h.retain_until >= u->soon)
		return 0;
	rc = fy_s3_put_retention(u->c->s3, key, h.version_id,
				 u->c->conf.lock_governance
					 ? FY_S3_LOCK_GOVERNANCE
					 : FY_S3_LOCK_COMPLIANCE,
				 u->until);
	if (rc) {
		fy_warn("retention of %s not extended: %s", key, fy_err_msg());
		u->failed++;
		return 0;
	}
	u->extended++;
	return 0;
}

static int upkeep_manifest(void *opaque, const char *key, uint64_t size)
{
	(void)size;
	return extend_one(opaque, key);
}

int fy_s3_upkeep(void *ctx, const uint8_t (*packs)[FY_PACK_ID_LEN], size_t n,
		 uint64_t *extended)
{
	struct s3_ctx *c = ctx;
	struct upkeep u = { .c = c };
	char key[FY_S3_KEY_MAX];
	size_t i;
	int rc = 0;

	*extended = 0;
	if (!c->conf.lock_days)
		return 0;
	/* Extended when less than half the retention is left, to the full
	 * retention from now: what kept backups need stays locked. */
	u.until = time(NULL) + (time_t)c->conf.lock_days * 86400;
	u.soon = time(NULL) + (time_t)c->conf.lock_days * 43200;
	for (i = 0; !rc && i < n; i++) {
		rc = pack_key(packs[i], key, sizeof(key));
		if (!rc)
			rc = extend_one(&u, key);
	}
	if (!rc)
		rc = fy_s3_list(c->s3, "backups/", upkeep_manifest, &u);
	*extended = u.extended;
	if (!rc && u.failed)
		rc = fy_err_set(-EIO, "%" PRIu64 " objects' retention could "
				"not be extended", u.failed);
	return rc;
}

/* ---- open --------------------------------------------------------------- */

/* Reconciled once, and no part of it removed since. */
static bool cache_complete(struct s3_ctx *c, const char *marker)
{
	const char *parts[] = { "index", "packs", "backups" };
	char path[PATH_MAX];
	struct stat sb;
	size_t i;

	if (stat(marker, &sb))
		return false;
	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (fy_path_fmt(path, sizeof(path), "%s/%s", c->root,
				parts[i]) ||
		    stat(path, &sb) || !S_ISDIR(sb.st_mode))
			return false;
	return true;
}

int fy_store_s3_open(struct fy_repo *repo, const struct fy_repo_s3conf *conf,
		     unsigned flags, struct fy_store **out)
{
	struct fy_pack_remote remote = {
		.pack_put = s3_pack_put,
		.pack_read = s3_pack_read,
		.pack_deletable = s3_pack_deletable,
		.pack_delete = s3_pack_delete,
		.manifest_put = s3_manifest_put,
		.manifest_delete = s3_manifest_delete,
		.trim = s3_trim,
		.upkeep = fy_s3_upkeep,
		.gc_begin = s3_gc_begin,
		.release = s3_release,
		.close = s3_close,
	};
	char id[FY_REPO_ID_HEX + 1], marker[PATH_MAX];
	struct s3_ctx *c;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return fy_err_set(-ENOMEM, "out of memory");
	pthread_mutex_init(&c->trim_lock, NULL);
	pthread_mutex_init(&c->win_lock, NULL);
	pthread_cond_init(&c->win_cond, NULL);
	pthread_mutex_init(&c->renew_lock, NULL);
	pthread_cond_init(&c->renew_cond, NULL);
	c->conf = *conf;
	strcpy(c->root, repo->root);
	strcpy(c->tmpdir, repo->tmpdir);
	rc = fy_path_fmt(c->packs_dir, sizeof(c->packs_dir), "%s/packs",
			 repo->root);
	if (!rc)
		rc = fy_path_fmt(marker, sizeof(marker), "%s/cache.ok",
				 repo->root);
	if (!rc)
		rc = cache_id(c);
	if (!rc)
		rc = fy_s3conf_client(conf, &c->s3);
	if (!rc) {
		rc = read_identity(c->s3, id);
		if (rc == -ENOENT)
			rc = fy_err_set(-ENOENT, "the bucket holds no Ferry "
					"repository (no %s object): wrong "
					"bucket, or it was emptied",
					IDENTITY_KEY);
		else if (!rc && strcmp(id, repo->id))
			rc = fy_err_set(-EINVAL, "the bucket holds repository "
					"%s, not this one (%s)", id, repo->id);
	}
	if (!rc)
		rc = lease_take(c);
	if (rc)
		goto fail;
	c->serving = flags & FY_REPO_SERVING;
	/* A server starts from a cache that matches the bucket; a command
	 * does when the cache is new or was lost. */
	if (c->serving || !cache_complete(c, marker)) {
		rc = reconcile(c);
		if (!rc)
			rc = fy_write_durable(c->tmpdir, c->root, "cache.ok",
					      "", 0, true);
		if (rc)
			goto fail;
	}
	if (c->serving) {
		if (pthread_create(&c->renew_thread, NULL, renew_main, c)) {
			rc = fy_err_set(-EAGAIN, "cannot start a thread");
			goto fail;
		}
		c->renewer = true;
	}
	remote.ctx = c;
	rc = fy_store_pack_open_remote(repo->root, repo->tmpdir, &remote, out);
	if (!rc)
		s3_trim(c);
	return rc;
fail:
	c->serving = false; /* the lease, if taken, is not ours to drop */
	s3_close(c);
	return fy_err_wrap(rc, "repository %s (bucket %s)", repo->root,
			   conf->url);
}

int fy_repo_rebuild_cache(const char *root)
{
	const char *parts[] = { "index", "packs", "backups" };
	char path[PATH_MAX];
	uint64_t removed, failed;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		rc = fy_path_fmt(path, sizeof(path), "%s/%s", root, parts[i]);
		if (rc)
			return rc;
		removed = failed = 0;
		rc = fy_clear_dir(path, &removed, &failed);
		if (rc == -ENOENT)
			continue;
		if (rc)
			return fy_err_wrap(rc, "rebuild-cache: %s", path);
		if (failed)
			return fy_err_set(-EIO, "rebuild-cache: %" PRIu64
					  " files under %s could not be "
					  "removed", failed, path);
	}
	rc = fy_path_fmt(path, sizeof(path), "%s/cache.ok", root);
	if (!rc && unlink(path) && errno != ENOENT)
		rc = fy_err_set(-errno, "rebuild-cache: %s: %s", path,
				strerror(errno));
	return rc;
}
