/*
 * The repository index of format 2: where each block is, digest -> (pack,
 * offset, length).
 *
 * Two parts. root/index/main.idx is a sorted file, mapped read-only and
 * searched in place: the kernel keeps the pages it needs and drops the
 * rest, so a large repository costs page cache, not heap. Entries added
 * since (packs published by backups) live in an in-memory hash table, the
 * delta; past FY_INDEX_DELTA_MAX entries the two are merged into a new
 * file. Heap per stored block is therefore at most the delta's 64 bytes
 * for the newest FY_INDEX_DELTA_MAX blocks (about 64 MiB), whatever the
 * repository's size; see docs/ARCHITECTURE.md.
 *
 * Packs are the truth: every pack's trailer lists its objects, the file
 * lists the packs it covers, and at open every pack it does not cover is
 * read into the delta. A file that is missing, damaged, or names a pack
 * that is gone is rebuilt from all trailers.
 *
 * Several processes may open one repository (the server and ferry-repo's
 * commands): the file is only replaced whole (write, fsync, rename) under
 * root/index/lock, and a process that finds it replaced loads it again
 * (fy_index_refresh).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "image/image_private.h"

struct delta_ent {
	uint8_t digest[FY_DIGEST_LEN];
	uint32_t pack; /* number in ix->packs, +1; 0 = free slot */
	uint32_t offset, length;
};

struct fy_index {
	char root[PATH_MAX];
	char tmpdir[PATH_MAX];
	char dir[PATH_MAX];   /* root/index */
	char path[PATH_MAX];  /* root/index/main.idx */
	char packs_dir[PATH_MAX];
	pthread_rwlock_t lock;

	/* the mapped file */
	uint8_t *map;
	size_t map_len;
	uint64_t main_packs, main_count;
	const uint8_t *main_entries;
	struct stat main_st; /* to notice another process's rewrite */
	bool have_main;

	/* every known pack: the file's first, in its order, then the rest */
	uint8_t (*packs)[FY_PACK_ID_LEN];
	uint32_t npacks, packs_cap;
	uint32_t *pack_hash; /* number + 1, open addressing */
	size_t pack_hash_cap;

	struct delta_ent *delta;
	size_t delta_cap, delta_count;
};

/* ---- packs ------------------------------------------------------------- */

static uint64_t key64(const uint8_t *p)
{
	uint64_t k;

	memcpy(&k, p, sizeof(k));
	return k;
}

static int pack_find(const struct fy_index *ix,
		     const uint8_t id[FY_PACK_ID_LEN])
{
	size_t mask = ix->pack_hash_cap - 1, i;

	if (!ix->pack_hash_cap)
		return -1;
	for (i = key64(id) & mask;; i = (i + 1) & mask) {
		uint32_t n = ix->pack_hash[i];

		if (!n)
			return -1;
		if (!memcmp(ix->packs[n - 1], id, FY_PACK_ID_LEN))
			return (int)(n - 1);
	}
}

static void pack_hash_put(struct fy_index *ix, uint32_t n)
{
	size_t mask = ix->pack_hash_cap - 1, i;

	for (i = key64(ix->packs[n]) & mask; ix->pack_hash[i];
	     i = (i + 1) & mask)
		;
	ix->pack_hash[i] = n + 1;
}

/* The pack's number, adding it when new. */
static int pack_add(struct fy_index *ix, const uint8_t id[FY_PACK_ID_LEN],
		    uint32_t *num)
{
	int n = pack_find(ix, id);
	uint32_t i;

	if (n >= 0) {
		*num = (uint32_t)n;
		return 0;
	}
	if (ix->npacks >= FY_INDEX_PACKS_MAX)
		return fy_err_set(-ENOSPC, "index: more than %u packs",
				  FY_INDEX_PACKS_MAX);
	if (ix->npacks == ix->packs_cap) {
		uint32_t cap = ix->packs_cap ? ix->packs_cap * 2 : 64;
		void *p = realloc(ix->packs, (size_t)cap * FY_PACK_ID_LEN);

		if (!p)
			return fy_err_set(-ENOMEM, "index: out of memory");
		ix->packs = p;
		ix->packs_cap = cap;
	}
	if ((ix->npacks + 1) * 2 > ix->pack_hash_cap) {
		size_t cap = ix->pack_hash_cap ? ix->pack_hash_cap * 2 : 128;
		uint32_t *h = calloc(cap, sizeof(*h));

		if (!h)
			return fy_err_set(-ENOMEM, "index: out of memory");
		free(ix->pack_hash);
		ix->pack_hash = h;
		ix->pack_hash_cap = cap;
		for (i = 0; i < ix->npacks; i++)
			pack_hash_put(ix, i);
	}
	memcpy(ix->packs[ix->npacks], id, FY_PACK_ID_LEN);
	pack_hash_put(ix, ix->npacks);
	*num = ix->npacks++;
	return 0;
}

/* ---- the delta --------------------------------------------------------- */

static struct delta_ent *delta_slot(const struct fy_index *ix,
				    const uint8_t digest[FY_DIGEST_LEN])
{
	size_t mask = ix->delta_cap - 1, i;

	for (i = key64(digest) & mask;; i = (i + 1) & mask) {
		struct delta_ent *e = &ix->delta[i];

		if (!e->pack || !memcmp(e->digest, digest, FY_DIGEST_LEN))
			return e;
	}
}

static int delta_grow(struct fy_index *ix)
{
	size_t cap = ix->delta_cap ? ix->delta_cap * 2 : 4096, i;
	struct delta_ent *old = ix->delta, *d;
	size_t old_cap = ix->delta_cap;

	d = calloc(cap, sizeof(*d));
	if (!d)
		return fy_err_set(-ENOMEM, "index: out of memory");
	ix->delta = d;
	ix->delta_cap = cap;
	for (i = 0; i < old_cap; i++)
		if (old[i].pack)
			*delta_slot(ix, old[i].digest) = old[i];
	free(old);
	return 0;
}

static void delta_clear(struct fy_index *ix)
{
	free(ix->delta);
	ix->delta = NULL;
	ix->delta_cap = ix->delta_count = 0;
}

/* ---- the mapped file --------------------------------------------------- */

static const uint8_t *main_entry(const struct fy_index *ix, uint64_t i)
{
	return ix->main_entries + i * FY_INDEX_ENTRY_LEN;
}

static bool main_find(const struct fy_index *ix,
		      const uint8_t digest[FY_DIGEST_LEN], uint64_t *at)
{
	uint64_t lo = 0, hi = ix->main_count;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		int c = memcmp(main_entry(ix, mid), digest, FY_DIGEST_LEN);

		if (c == 0) {
			*at = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static void main_loc(const struct fy_index *ix, uint64_t i,
		     struct fy_index_loc *loc)
{
	const uint8_t *e = main_entry(ix, i);

	/* fy_index_parse checked the pack number against the table. */
	memcpy(loc->pack, ix->packs[fy_get_be32(e + 32)], FY_PACK_ID_LEN);
	loc->offset = fy_get_be32(e + 36);
	loc->length = fy_get_be32(e + 40);
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)fy_get_be32(p) << 32 | fy_get_be32(p + 4);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	fy_put_be32(p, (uint32_t)(v >> 32));
	fy_put_be32(p + 4, (uint32_t)v);
}

int fy_index_parse(const uint8_t *buf, size_t len, const char *name,
		   uint64_t *packs, uint64_t *entries)
{
	uint8_t sum[FY_DIGEST_LEN];
	unsigned int dlen = 0;
	const uint8_t *p, *e;
	uint64_t np, ne, i, want;

	if (len < FY_INDEX_HDR_LEN + FY_DIGEST_LEN ||
	    memcmp(buf, FY_INDEX_MAGIC, 8))
		return fy_err_set(-EBADMSG, "index %s: not an index file",
				  name);
	if (fy_get_be32(buf + 8) != FY_INDEX_VERSION ||
	    fy_get_be32(buf + 12))
		return fy_err_set(-EBADMSG, "index %s: version %u, this build "
				  "reads %u", name, fy_get_be32(buf + 8),
				  FY_INDEX_VERSION);
	np = get_be64(buf + 16);
	ne = get_be64(buf + 24);
	if (np > FY_INDEX_PACKS_MAX || ne > FY_INDEX_ENTRIES_MAX)
		return fy_err_set(-EBADMSG, "index %s: %" PRIu64 " packs and %"
				  PRIu64 " entries exceed the bounds", name,
				  np, ne);
	want = FY_INDEX_HDR_LEN + np * FY_PACK_ID_LEN +
	       ne * FY_INDEX_ENTRY_LEN + FY_DIGEST_LEN;
	if (want != len)
		return fy_err_set(-EBADMSG, "index %s: %zu bytes, its header "
				  "says %" PRIu64, name, len, want);
	EVP_Digest(buf, len - FY_DIGEST_LEN, sum, &dlen, EVP_sha256(), NULL);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (memcmp(sum, buf + len - FY_DIGEST_LEN, FY_DIGEST_LEN))
		return fy_err_set(-EBADMSG, "index %s: checksum mismatch",
				  name);
#endif
	p = buf + FY_INDEX_HDR_LEN;
	for (i = 1; i < np; i++)
		if (memcmp(p + (i - 1) * FY_PACK_ID_LEN,
			   p + i * FY_PACK_ID_LEN, FY_PACK_ID_LEN) >= 0)
			return fy_err_set(-EBADMSG, "index %s: packs out of "
					  "order", name);
	e = p + np * FY_PACK_ID_LEN;
	for (i = 0; i < ne; i++, e += FY_INDEX_ENTRY_LEN) {
		uint32_t pack = fy_get_be32(e + 32);
		uint32_t off = fy_get_be32(e + 36);
		uint32_t l = fy_get_be32(e + 40);

		if (i && memcmp(e - FY_INDEX_ENTRY_LEN, e, FY_DIGEST_LEN) >= 0)
			return fy_err_set(-EBADMSG, "index %s: entry %" PRIu64
					  " out of order", name, i);
		if (pack >= np || off < FY_PACK_HDR_LEN ||
		    l < FY_BLOCK_HDR_LEN || l > FY_PACK_OBJECT_MAX ||
		    (uint64_t)off + l > FY_PACK_FILE_MAX ||
		    fy_get_be32(e + 44))
			return fy_err_set(-EBADMSG, "index %s: entry %" PRIu64
					  " is out of bounds", name, i);
	}
	*packs = np;
	*entries = ne;
	return 0;
}

static void unmap_main(struct fy_index *ix)
{
	if (ix->map)
		munmap(ix->map, ix->map_len);
	ix->map = NULL;
	ix->map_len = 0;
	ix->main_packs = ix->main_count = 0;
	ix->main_entries = NULL;
	ix->have_main = false;
	memset(&ix->main_st, 0, sizeof(ix->main_st));
}

static void forget_packs(struct fy_index *ix)
{
	free(ix->packs);
	free(ix->pack_hash);
	ix->packs = NULL;
	ix->pack_hash = NULL;
	ix->npacks = ix->packs_cap = 0;
	ix->pack_hash_cap = 0;
}

/* Maps and checks the file; -ENOENT when there is none. */
static int map_main(struct fy_index *ix)
{
	struct stat sb;
	uint64_t np, ne, i;
	uint32_t num;
	void *m;
	int fd, rc;

	fd = open(ix->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		return fy_err_set(-errno, "index %s: %s", ix->path,
				  strerror(errno));
	}
	if (fstat(fd, &sb)) {
		rc = fy_err_set(-errno, "index %s: %s", ix->path,
				strerror(errno));
		close(fd);
		return rc;
	}
	if (sb.st_size < FY_INDEX_HDR_LEN + FY_DIGEST_LEN) {
		close(fd);
		return fy_err_set(-EBADMSG, "index %s: %lld bytes, too short",
				  ix->path, (long long)sb.st_size);
	}
	m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return fy_err_set(-errno, "index %s: mmap: %s", ix->path,
				  strerror(errno));
	rc = fy_index_parse(m, (size_t)sb.st_size, ix->path, &np, &ne);
	if (rc) {
		munmap(m, (size_t)sb.st_size);
		return rc;
	}
	ix->map = m;
	ix->map_len = (size_t)sb.st_size;
	ix->main_packs = np;
	ix->main_count = ne;
	ix->main_entries = ix->map + FY_INDEX_HDR_LEN + np * FY_PACK_ID_LEN;
	ix->main_st = sb;
	ix->have_main = true;
	for (i = 0; i < np; i++) {
		rc = pack_add(ix, ix->map + FY_INDEX_HDR_LEN +
				      i * FY_PACK_ID_LEN, &num);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- packs on disk ----------------------------------------------------- */

static int add_pack_locked(struct fy_index *ix,
			   const uint8_t id[FY_PACK_ID_LEN],
			   const struct fy_pack_entry *e, size_t n,
			   bool replace)
{
	uint32_t num;
	uint64_t at;
	size_t i;
	int rc;

	rc = pack_add(ix, id, &num);
	if (rc)
		return rc;
	for (i = 0; i < n; i++) {
		struct delta_ent *d;

		if (!replace && main_find(ix, e[i].digest, &at))
			continue;
		if ((ix->delta_count + 1) * 4 > ix->delta_cap * 3) {
			rc = delta_grow(ix);
			if (rc)
				return rc;
		}
		d = delta_slot(ix, e[i].digest);
		if (d->pack && !replace)
			continue;
		if (!d->pack)
			ix->delta_count++;
		memcpy(d->digest, e[i].digest, FY_DIGEST_LEN);
		d->pack = num + 1;
		d->offset = e[i].offset;
		d->length = e[i].length;
	}
	return 0;
}

/* Reads one pack found on disk into the delta. A damaged pack is named
 * and skipped: its blocks are missing, which verify reports. */
static int load_pack_file(struct fy_index *ix, const char *path,
			  const uint8_t id[FY_PACK_ID_LEN])
{
	struct fy_pack_entry *e = NULL;
	size_t n = 0;
	int rc;

	rc = fy_pack_read_trailer(path, &e, &n);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		fy_warn("index: skipping a pack: %s", fy_err_msg());
		return 0;
	}
	rc = add_pack_locked(ix, id, e, n, false);
	free(e);
	return rc;
}

struct scan {
	struct fy_index *ix;
	bool all;       /* a rebuild: every pack, known or not */
	uint64_t found; /* packs on disk */
	uint64_t known_found;
	uint64_t loaded;
};

/* Every <32 hex>.pack under packs/<2 hex>/. */
static int scan_packs(struct fy_index *ix, struct scan *s)
{
	DIR *top, *sub;
	struct dirent *de, *fe;
	char subdir[PATH_MAX], path[PATH_MAX];
	int rc = 0;

	top = opendir(ix->packs_dir);
	if (!top) {
		if (errno == ENOENT)
			return 0;
		return fy_err_set(-errno, "index: %s: %s", ix->packs_dir,
				  strerror(errno));
	}
	while (!rc && (de = readdir(top))) {
		if (strlen(de->d_name) != 2 || de->d_name[0] == '.')
			continue;
		rc = fy_path_fmt(subdir, sizeof(subdir), "%s/%s",
				 ix->packs_dir, de->d_name);
		if (rc)
			break;
		sub = opendir(subdir);
		if (!sub)
			continue;
		while (!rc && (fe = readdir(sub))) {
			uint8_t id[FY_PACK_ID_LEN];
			char hex[FY_PACK_ID_LEN * 2 + 1];
			size_t l = strlen(fe->d_name);

			if (l != FY_PACK_ID_LEN * 2 + strlen(FY_PACK_SUFFIX) ||
			    strcmp(fe->d_name + FY_PACK_ID_LEN * 2,
				   FY_PACK_SUFFIX))
				continue;
			memcpy(hex, fe->d_name, FY_PACK_ID_LEN * 2);
			hex[FY_PACK_ID_LEN * 2] = 0;
			if (!fy_pack_id_unhex(hex, id) ||
			    memcmp(hex, de->d_name, 2))
				continue;
			s->found++;
			if (!s->all && pack_find(ix, id) >= 0) {
				s->known_found++;
				continue;
			}
			rc = fy_path_fmt(path, sizeof(path), "%s/%s", subdir,
					 fe->d_name);
			if (!rc)
				rc = load_pack_file(ix, path, id);
			s->loaded++;
		}
		closedir(sub);
	}
	closedir(top);
	return rc;
}

/* ---- writing the file -------------------------------------------------- */

struct sorted_delta {
	struct delta_ent *e;
	size_t n;
};

static int cmp_delta(const void *a, const void *b)
{
	return memcmp(((const struct delta_ent *)a)->digest,
		      ((const struct delta_ent *)b)->digest, FY_DIGEST_LEN);
}

static int cmp_pack_id(const void *a, const void *b)
{
	return memcmp(a, b, FY_PACK_ID_LEN);
}

struct writer {
	FILE *f;
	int err;
};

static void w_put(struct writer *w, const void *p, size_t n)
{
	if (w->err)
		return;
	if (n && fwrite(p, 1, n, w->f) != n)
		w->err = -EIO;
}

struct rewrite {
	bool (*keep)(void *opaque, const uint8_t digest[FY_DIGEST_LEN],
		     const struct fy_index_loc *loc);
	bool (*keep_pack)(void *opaque, const uint8_t id[FY_PACK_ID_LEN]);
	void *opaque;
};

/* Merge of the mapped file and the delta, both in digest order; the delta
 * wins a tie. remap: old pack number -> new + 1 (0: dropped). */
static void write_entries(struct fy_index *ix, struct writer *w,
			  const struct sorted_delta *sd, const uint32_t *remap,
			  const struct rewrite *rw, uint64_t *count)
{
	uint64_t i = 0;
	size_t j = 0;

	while (i < ix->main_count || j < sd->n) {
		const uint8_t *digest;
		struct fy_index_loc loc;
		uint32_t pack;
		uint8_t e[FY_INDEX_ENTRY_LEN] = { 0 };
		int c;

		if (i >= ix->main_count)
			c = 1;
		else if (j >= sd->n)
			c = -1;
		else
			c = memcmp(main_entry(ix, i), sd->e[j].digest,
				   FY_DIGEST_LEN);
		if (c < 0) {
			digest = main_entry(ix, i);
			pack = fy_get_be32(digest + 32);
			main_loc(ix, i, &loc);
			i++;
		} else {
			digest = sd->e[j].digest;
			pack = sd->e[j].pack - 1;
			memcpy(loc.pack, ix->packs[pack], FY_PACK_ID_LEN);
			loc.offset = sd->e[j].offset;
			loc.length = sd->e[j].length;
			j++;
			if (c == 0)
				i++;
		}
		if (!remap[pack])
			continue;
		if (rw->keep && !rw->keep(rw->opaque, digest, &loc))
			continue;
		memcpy(e, digest, FY_DIGEST_LEN);
		fy_put_be32(e + 32, remap[pack] - 1);
		fy_put_be32(e + 36, loc.offset);
		fy_put_be32(e + 40, loc.length);
		w_put(w, e, sizeof(e));
		(*count)++;
	}
}

static int lock_index(struct fy_index *ix)
{
	char path[PATH_MAX];
	int fd, rc;

	rc = fy_path_fmt(path, sizeof(path), "%s/lock", ix->dir);
	if (rc)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return fy_err_set(-errno, "index: %s: %s", path,
				  strerror(errno));
	while (flock(fd, LOCK_EX)) {
		if (errno != EINTR) {
			rc = fy_err_set(-errno, "index: lock %s: %s", path,
					strerror(errno));
			close(fd);
			return rc;
		}
	}
	return fd;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Whether the file on disk is still the one mapped (or still absent). */
static bool main_unchanged(struct fy_index *ix)
{
	struct stat sb;

	if (stat(ix->path, &sb))
		return !ix->have_main && errno == ENOENT;
	return ix->have_main && same_file(&sb, &ix->main_st);
}

static int load_all(struct fy_index *ix);

/* Under the write lock and the file lock. */
static int write_file(struct fy_index *ix, const struct rewrite *rw)
{
	struct sorted_delta sd = { 0 };
	struct writer w = { 0 };
	uint8_t (*ids)[FY_PACK_ID_LEN] = NULL;
	uint32_t *remap = NULL;
	uint8_t hdr[FY_INDEX_HDR_LEN] = { 0 }, sum[FY_DIGEST_LEN];
	char tmp[PATH_MAX];
	unsigned int dlen = 0;
	uint64_t count = 0, nkeep = 0;
	size_t i;
	int fd = -1, rc;

	rc = fy_path_fmt(tmp, sizeof(tmp), "%s/index.%d.tmp", ix->tmpdir,
			 (int)getpid());
	if (rc)
		return rc;
	sd.e = malloc((ix->delta_count ? ix->delta_count : 1) *
		      sizeof(*sd.e));
	ids = malloc((ix->npacks ? ix->npacks : 1) * sizeof(*ids));
	remap = calloc(ix->npacks ? ix->npacks : 1, sizeof(*remap));
	if (!sd.e || !ids || !remap) {
		rc = fy_err_set(-ENOMEM, "index: out of memory");
		goto out;
	}
	for (i = 0; i < ix->delta_cap; i++)
		if (ix->delta[i].pack)
			sd.e[sd.n++] = ix->delta[i];
	qsort(sd.e, sd.n, sizeof(*sd.e), cmp_delta);
	for (i = 0; i < ix->npacks; i++)
		if (!rw->keep_pack || rw->keep_pack(rw->opaque, ix->packs[i]))
			memcpy(ids[nkeep++], ix->packs[i], FY_PACK_ID_LEN);
	qsort(ids, nkeep, FY_PACK_ID_LEN, cmp_pack_id);
	for (i = 0; i < nkeep; i++)
		remap[pack_find(ix, ids[i])] = (uint32_t)i + 1;

	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || !(w.f = fdopen(fd, "w+"))) {
		rc = fy_err_set(-errno, "index: create %s: %s", tmp,
				strerror(errno));
		goto out;
	}
	fd = -1;
	w_put(&w, hdr, sizeof(hdr)); /* the counts follow the entries */
	w_put(&w, ids, nkeep * FY_PACK_ID_LEN);
	write_entries(ix, &w, &sd, remap, rw, &count);
	if (w.err || fflush(w.f)) {
		rc = fy_err_set(-EIO, "index: write %s: %s", tmp,
				strerror(errno));
		goto out;
	}
	/* The header, now that the counts are known, and the checksum over
	 * the finished bytes, read back in one pass. */
	memcpy(hdr, FY_INDEX_MAGIC, 8);
	fy_put_be32(hdr + 8, FY_INDEX_VERSION);
	put_be64(hdr + 16, nkeep);
	put_be64(hdr + 24, count);
	if (fy_pwrite_all(fileno(w.f), hdr, sizeof(hdr), 0)) {
		rc = fy_err_set(-EIO, "index: write %s", tmp);
		goto out;
	}
	{
		void *m;
		size_t len = FY_INDEX_HDR_LEN + nkeep * FY_PACK_ID_LEN +
			     count * FY_INDEX_ENTRY_LEN;

		m = mmap(NULL, len, PROT_READ, MAP_SHARED, fileno(w.f), 0);
		if (m == MAP_FAILED) {
			rc = fy_err_set(-errno, "index: mmap %s: %s", tmp,
					strerror(errno));
			goto out;
		}
		EVP_Digest(m, len, sum, &dlen, EVP_sha256(), NULL);
		munmap(m, len);
	}
	if (fy_pwrite_all(fileno(w.f), sum, sizeof(sum),
			  FY_INDEX_HDR_LEN + nkeep * FY_PACK_ID_LEN +
				  count * FY_INDEX_ENTRY_LEN) ||
	    fsync(fileno(w.f))) {
		rc = fy_err_set(-EIO, "index: write %s: %s", tmp,
				strerror(errno));
		goto out;
	}
	if (rename(tmp, ix->path)) {
		rc = fy_err_set(-errno, "index: rename %s: %s", tmp,
				strerror(errno));
		goto out;
	}
	rc = fy_fsync_dir(ix->dir);
	if (rc)
		goto out;
	/* Load what was written: the delta is in the file now. */
	rc = load_all(ix);
out:
	if (w.f)
		fclose(w.f);
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	free(sd.e);
	free(ids);
	free(remap);
	return rc;
}

/* ---- loading ----------------------------------------------------------- */

/* Everything again from disk, under the write lock. */
static int load_all(struct fy_index *ix)
{
	struct scan s = { .ix = ix };
	int rc;

	unmap_main(ix);
	forget_packs(ix);
	delta_clear(ix);
	rc = map_main(ix);
	if (rc && rc != -ENOENT) {
		fy_warn("index: %s; rebuilding it from the packs' trailers",
			fy_err_msg());
		unmap_main(ix);
		forget_packs(ix);
	}
	rc = scan_packs(ix, &s);
	if (rc)
		return rc;
	if (ix->have_main && s.known_found < ix->main_packs) {
		/* The file names packs that are gone: its entries would
		 * point nowhere. */
		fy_warn("index: %s names %" PRIu64 " packs that are gone; "
			"rebuilding it from the packs' trailers", ix->path,
			ix->main_packs - s.known_found);
		unmap_main(ix);
		forget_packs(ix);
		delta_clear(ix);
		s = (struct scan){ .ix = ix, .all = true };
		rc = scan_packs(ix, &s);
	}
	return rc;
}

int fy_index_open(const char *root, const char *tmpdir, struct fy_index **out)
{
	struct fy_index *ix;
	bool rebuild;
	int rc;

	*out = NULL;
	ix = calloc(1, sizeof(*ix));
	if (!ix)
		return fy_err_set(-ENOMEM, "index: out of memory");
	pthread_rwlock_init(&ix->lock, NULL);
	rc = fy_path_fmt(ix->root, sizeof(ix->root), "%s", root);
	if (!rc)
		rc = fy_path_fmt(ix->tmpdir, sizeof(ix->tmpdir), "%s", tmpdir);
	if (!rc)
		rc = fy_path_fmt(ix->dir, sizeof(ix->dir), "%s/index", root);
	if (!rc)
		rc = fy_path_fmt(ix->path, sizeof(ix->path), "%s/main.idx",
				 ix->dir);
	if (!rc)
		rc = fy_path_fmt(ix->packs_dir, sizeof(ix->packs_dir),
				 "%s/packs", root);
	if (!rc)
		rc = load_all(ix);
	if (rc) {
		fy_index_close(ix, false);
		return rc;
	}
	/* A rebuilt (or first) index is written so that the next open does
	 * not read every trailer again; where it cannot be (a read-only
	 * repository), the one in memory serves. */
	rebuild = !ix->have_main && ix->delta_count;
	if (rebuild) {
		struct rewrite rw = { 0 };
		int fd = lock_index(ix);

		if (fd >= 0) {
			if (main_unchanged(ix) && write_file(ix, &rw))
				fy_warn("index: cannot write %s: %s", ix->path,
					fy_err_msg());
			close(fd);
		}
	}
	*out = ix;
	return 0;
}

void fy_index_close(struct fy_index *ix, bool save)
{
	if (!ix)
		return;
	if (save && ix->delta_count) {
		struct rewrite rw = { 0 };
		int fd = lock_index(ix);

		if (fd >= 0) {
			/* Another process rewrote it: ours is older; the packs
			 * we added are read from their trailers next time. */
			if (main_unchanged(ix) && write_file(ix, &rw))
				fy_warn("index: cannot save %s: %s", ix->path,
					fy_err_msg());
			close(fd);
		}
	}
	unmap_main(ix);
	forget_packs(ix);
	delta_clear(ix);
	pthread_rwlock_destroy(&ix->lock);
	free(ix);
}

int fy_index_lookup(struct fy_index *ix, const uint8_t digest[FY_DIGEST_LEN],
		    struct fy_index_loc *loc)
{
	uint64_t at;
	int found = 0;

	pthread_rwlock_rdlock(&ix->lock);
	if (ix->delta_count) {
		const struct delta_ent *d = delta_slot(ix, digest);

		if (d->pack) {
			memcpy(loc->pack, ix->packs[d->pack - 1],
			       FY_PACK_ID_LEN);
			loc->offset = d->offset;
			loc->length = d->length;
			found = 1;
		}
	}
	if (!found && main_find(ix, digest, &at)) {
		main_loc(ix, at, loc);
		found = 1;
	}
	pthread_rwlock_unlock(&ix->lock);
	return found;
}

int fy_index_add_pack(struct fy_index *ix, const uint8_t id[FY_PACK_ID_LEN],
		      const struct fy_pack_entry *e, size_t n, bool replace)
{
	int rc;

	pthread_rwlock_wrlock(&ix->lock);
	rc = add_pack_locked(ix, id, e, n, replace);
	if (!rc && ix->delta_count > FY_INDEX_DELTA_MAX) {
		struct rewrite rw = { 0 };
		int fd = lock_index(ix);

		if (fd < 0) {
			rc = fd;
		} else {
			/* When another process wrote it meanwhile, the
			 * merge waits for the next refresh: loading theirs
			 * now would drop this delta's replacements. */
			if (main_unchanged(ix))
				rc = write_file(ix, &rw);
			close(fd);
		}
		if (rc)
			fy_err_wrap(rc, "index: merging %zu new entries",
				    ix->delta_count);
	}
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

int fy_index_refresh(struct fy_index *ix)
{
	struct scan s = { .ix = ix };
	int rc;

	pthread_rwlock_wrlock(&ix->lock);
	if (!main_unchanged(ix))
		rc = load_all(ix);
	else
		rc = scan_packs(ix, &s);
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

int fy_index_reload(struct fy_index *ix)
{
	int rc;

	pthread_rwlock_wrlock(&ix->lock);
	rc = load_all(ix);
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

int fy_index_for_each(struct fy_index *ix,
		      int (*cb)(void *opaque,
				const uint8_t digest[FY_DIGEST_LEN],
				const struct fy_index_loc *loc),
		      void *opaque)
{
	struct fy_index_loc loc;
	uint64_t i, at;
	int rc = 0;

	pthread_rwlock_rdlock(&ix->lock);
	for (i = 0; !rc && i < ix->main_count; i++) {
		const uint8_t *d = main_entry(ix, i);

		/* The delta's entry for the same digest wins. */
		if (ix->delta_count && delta_slot(ix, d)->pack)
			continue;
		main_loc(ix, i, &loc);
		rc = cb(opaque, d, &loc);
	}
	for (i = 0; !rc && i < ix->delta_cap; i++) {
		const struct delta_ent *d = &ix->delta[i];

		if (!d->pack)
			continue;
		memcpy(loc.pack, ix->packs[d->pack - 1], FY_PACK_ID_LEN);
		loc.offset = d->offset;
		loc.length = d->length;
		rc = cb(opaque, d->digest, &loc);
	}
	(void)at;
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

int fy_index_for_each_pack(struct fy_index *ix,
			   int (*cb)(void *opaque,
				     const uint8_t id[FY_PACK_ID_LEN]),
			   void *opaque)
{
	uint32_t i;
	int rc = 0;

	pthread_rwlock_rdlock(&ix->lock);
	for (i = 0; !rc && i < ix->npacks; i++)
		rc = cb(opaque, ix->packs[i]);
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

int fy_index_rewrite(struct fy_index *ix,
		     bool (*keep)(void *opaque,
				  const uint8_t digest[FY_DIGEST_LEN],
				  const struct fy_index_loc *loc),
		     bool (*keep_pack)(void *opaque,
				       const uint8_t id[FY_PACK_ID_LEN]),
		     void *opaque)
{
	struct rewrite rw = { keep, keep_pack, opaque };
	int fd, rc;

	pthread_rwlock_wrlock(&ix->lock);
	fd = lock_index(ix);
	if (fd < 0) {
		rc = fd;
	} else {
		if (main_unchanged(ix))
			rc = write_file(ix, &rw);
		else
			rc = fy_err_set(-EAGAIN, "index: %s was rewritten by "
					"another process meanwhile; run "
					"again", ix->path);
		close(fd);
	}
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

uint64_t fy_index_count(struct fy_index *ix)
{
	uint64_t n;

	pthread_rwlock_rdlock(&ix->lock);
	n = ix->main_count + ix->delta_count;
	pthread_rwlock_unlock(&ix->lock);
	return n;
}

int fy_index_check(const uint8_t *file, size_t len)
{
	uint64_t packs, entries;

	return fy_index_parse(file, len, "(memory)", &packs, &entries);
}
