/* The repository in format 1 (a file per block; test_pack.c has format
 * 2): layout, the block store, tmp cleaning, and the repository-wide
 * operations verify, prune and gc on real files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "image/image.h"

#define BS (64u << 10)
#define PLAIN 4096

static char dir[2048];

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	return remove(path);
}

static void make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/test_store.XXXXXX",
		 base && *base ? base : ".");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
}

/* snprintf for paths: a test path that does not fit is a broken test. */
static void __attribute__((format(printf, 3, 4)))
pf(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len)
		abort();
}

static void sub(char *out, size_t len, const char *name)
{
	pf(out, len, "%s/%s", dir, name);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	CHECK(f != NULL);
	if (!f)
		return;
	CHECK(fwrite(data, 1, len, f) == len);
	fclose(f);
}

static size_t count_entries(const char *path)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(path);

	if (!d)
		return (size_t)-1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void block_file(const char *root, const uint8_t *digest, char *out,
		       size_t len)
{
	char hex[FY_DIGEST_HEX];

	fy_hex(digest, FY_DIGEST_LEN, hex);
	pf(out, len, "%s/blocks/%.2s/%.2s/%s", root, hex, hex + 2, hex);
}

/* A block from seed: compressible text for even seeds, noise for odd. */
static void make_plain(unsigned seed, uint8_t *p)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	size_t i;

	for (i = 0; i < PLAIN; i++) {
		if (seed % 2) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[i] = (uint8_t)x;
		} else {
			p[i] = (uint8_t)("block "[i % 6] + seed);
		}
	}
}

static void put_block(struct fy_repo *repo, unsigned seed,
		      uint8_t digest[FY_DIGEST_LEN])
{
	uint8_t plain[PLAIN], enc[PLAIN];
	enum fy_codec codec;
	size_t n;

	make_plain(seed, plain);
	fy_sha256(plain, PLAIN, digest);
	CHECK_RC(fy_block_encode(plain, PLAIN, 3, enc, PLAIN, &n, &codec));
	CHECK(codec == (seed % 2 ? FY_CODEC_NONE : FY_CODEC_ZSTD));
	CHECK_RC(fy_repo_block_put(repo, digest, codec, PLAIN, enc, n));
}

/* ---- layout ------------------------------------------------------------ */

static void test_init_open(void)
{
	char root[4096], path[4096];
	struct fy_repo *repo = NULL;
	const char *id;
	size_t i;

	sub(root, sizeof(root), "r1");
	CHECK_RC(fy_repo_init(root));
	CHECK(fy_repo_init(root) == -EEXIST);
	CHECK(strstr(fy_err_msg(), "already a repository") != NULL);
	CHECK_RC(fy_repo_open(root, 0, &repo));
	if (!repo)
		return;
	id = fy_repo_id(repo);
	CHECK(strlen(id) == 32);
	for (i = 0; i < strlen(id); i++)
		CHECK(strchr("0123456789abcdef", id[i]) != NULL);
	pf(path, sizeof(path), "%s/tmp", root);
	CHECK(!strcmp(fy_repo_tmpdir(repo), path));
	fy_repo_close(repo);
	fy_repo_close(NULL);

	/* An existing empty directory is fine; a non-empty one is not. */
	sub(root, sizeof(root), "empty");
	CHECK(mkdir(root, 0700) == 0);
	CHECK_RC(fy_repo_init(root));
	sub(root, sizeof(root), "full");
	CHECK(mkdir(root, 0700) == 0);
	sub(path, sizeof(path), "full/precious");
	write_file(path, "x", 1);
	CHECK(fy_repo_init(root) == -ENOTEMPTY);
	CHECK(fy_repo_open(root, 0, &repo) == -ENOENT);
	CHECK(strstr(fy_err_msg(), "not a Ferry repository") != NULL);

	/* Config versions this build does not know are refused. */
	sub(path, sizeof(path), "full/config");
	write_file(path,
		   "ferry-repository 4\nid=0123456789abcdef0123456789abcdef\n",
		   54);
	CHECK(fy_repo_open(root, 0, &repo) == -ENOTSUP);
	CHECK(strstr(fy_err_msg(), "version 4") != NULL);
	/* Format 3 (a bucket) needs its s3.url, and knows its keys. */
	write_file(path,
		   "ferry-repository 3\nid=0123456789abcdef0123456789abcdef\n",
		   54);
	CHECK(fy_repo_open(root, 0, &repo) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "no s3.url") != NULL);
	write_file(path,
		   "ferry-repository 3\nid=0123456789abcdef0123456789abcdef\n"
		   "s3.url=http://127.0.0.1:1/b\ns3.colour=blue\n",
		   54 + 28 + 15);
	CHECK(fy_repo_open(root, 0, &repo) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "unknown config key s3.colour") != NULL);
	write_file(path, "something else\n", 15);
	CHECK(fy_repo_open(root, 0, &repo) == -EINVAL);
	write_file(path, "ferry-repository 1\nid=xyz\n", 26);
	CHECK(fy_repo_open(root, 0, &repo) == -EINVAL);
	CHECK(repo == NULL);
}

/* ---- blocks ------------------------------------------------------------ */

struct listing {
	uint8_t d[16][FY_DIGEST_LEN];
	int n;
};

static int list_cb(void *opaque, const uint8_t digest[FY_DIGEST_LEN])
{
	struct listing *l = opaque;

	if (l->n < 16)
		memcpy(l->d[l->n], digest, FY_DIGEST_LEN);
	l->n++;
	return 0;
}

static bool listed(const struct listing *l, const uint8_t *digest)
{
	int i;

	for (i = 0; i < l->n && i < 16; i++)
		if (!memcmp(l->d[i], digest, FY_DIGEST_LEN))
			return true;
	return false;
}

static int get_decode(struct fy_repo *repo, const uint8_t *digest,
		      uint8_t *plain)
{
	static uint8_t stored[FY_STORED_MAX];
	enum fy_codec codec;
	uint32_t plain_size;
	size_t len;
	int rc;

	rc = fy_repo_block_get(repo, digest, &codec, &plain_size, stored,
			       sizeof(stored), &len);
	if (rc)
		return rc;
	return fy_block_decode(codec, stored, len, plain_size, digest, plain,
			       FY_BLOCK_MAX);
}

static void expect_get_bad(struct fy_repo *repo, const uint8_t *digest,
			   const char *what)
{
	static uint8_t plain[FY_BLOCK_MAX];
	char hex[FY_DIGEST_HEX];

	fy_hex(digest, FY_DIGEST_LEN, hex);
	fy_err_clear();
	CHECK(get_decode(repo, digest, plain) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), hex) != NULL);
	if (!strstr(fy_err_msg(), what)) {
		fprintf(stderr, "expected \"%s\" in: %s\n", what,
			fy_err_msg());
		CHECK(!"message");
	}
}

static void test_blocks(void)
{
	static uint8_t plain[FY_BLOCK_MAX], want[PLAIN];
	uint8_t a[FY_DIGEST_LEN], b[FY_DIGEST_LEN], c[FY_DIGEST_LEN];
	uint8_t hdr[16], junk[FY_DIGEST_LEN] = { 1, 2, 3 };
	char root[4096], path[4096];
	struct fy_repo *repo = NULL;
	struct listing l = { .n = 0 };
	struct stat st;
	FILE *f;

	sub(root, sizeof(root), "blocks");
	CHECK_RC(fy_repo_init_format(root, 1));
	CHECK_RC(fy_repo_open(root, 0, &repo));
	if (!repo)
		return;
	put_block(repo, 2, a);
	put_block(repo, 3, b);
	put_block(repo, 4, c);
	CHECK(fy_repo_block_exists(repo, a) == 1);
	CHECK(fy_repo_block_exists(repo, junk) == 0);
	/* Putting again is a no-op that succeeds. */
	put_block(repo, 2, a);
	CHECK(count_entries(fy_repo_tmpdir(repo)) == 0);

	CHECK_RC(get_decode(repo, a, plain));
	make_plain(2, want);
	CHECK(!memcmp(plain, want, PLAIN));
	CHECK_RC(get_decode(repo, b, plain));
	make_plain(3, want);
	CHECK(!memcmp(plain, want, PLAIN));

	CHECK_RC(fy_repo_block_list(repo, list_cb, &l));
	CHECK(l.n == 3 && listed(&l, a) && listed(&l, b) && listed(&l, c));
	/* Strays in the block tree are not blocks. */
	block_file(root, a, path, sizeof(path));
	strcpy(strrchr(path, '/') + 1, "stray");
	write_file(path, "x", 1);
	l.n = 0;
	CHECK_RC(fy_repo_block_list(repo, list_cb, &l));
	CHECK(l.n == 3);
	unlink(path);

	CHECK_RC(fy_repo_block_delete(repo, c));
	CHECK(fy_repo_block_exists(repo, c) == 0);
	CHECK(fy_repo_block_delete(repo, c) == -ENOENT);
	CHECK(get_decode(repo, c, plain) == -ENOENT);
	CHECK(strstr(fy_err_msg(), "missing") != NULL);

	/* Bounds on what may be put. */
	CHECK(fy_repo_block_put(repo, junk, FY_CODEC_NONE, 10, plain, 9) ==
	      -EINVAL);
	CHECK(fy_repo_block_put(repo, junk, (enum fy_codec)5, 10, plain, 9) ==
	      -EINVAL);
	CHECK(fy_repo_block_put(repo, junk, FY_CODEC_ZSTD, FY_BLOCK_MAX + 1,
				plain, 9) == -EINVAL);

	/* Damage to the stored file, each found and named. */
	block_file(root, a, path, sizeof(path));
	f = fopen(path, "r+b");
	CHECK(f && fread(hdr, 1, 16, f) == 16);
	if (f)
		fclose(f);
	CHECK(stat(path, &st) == 0);
	CHECK(truncate(path, st.st_size - 1) == 0);
	expect_get_bad(repo, a, "header says");
	CHECK(truncate(path, 10) == 0);
	expect_get_bad(repo, a, "shorter than the block header");
	unlink(path);
	put_block(repo, 2, a);

	f = fopen(path, "r+b");
	CHECK(f != NULL);
	if (f) {
		hdr[0] = 'X';
		CHECK(fwrite(hdr, 1, 1, f) == 1);
		fclose(f);
	}
	expect_get_bad(repo, a, "bad magic");
	unlink(path);
	put_block(repo, 2, a);

	f = fopen(path, "r+b");
	if (f) {
		uint8_t codec = 9;

		fseek(f, 5, SEEK_SET);
		fwrite(&codec, 1, 1, f);
		fclose(f);
	}
	expect_get_bad(repo, a, "unknown codec 9");
	unlink(path);
	put_block(repo, 2, a);

	f = fopen(path, "r+b");
	if (f) {
		uint8_t big[4] = { 0x01, 0, 0, 0 }; /* 16 MiB */

		fseek(f, 8, SEEK_SET);
		fwrite(big, 1, 4, f);
		fclose(f);
	}
	expect_get_bad(repo, a, "plain size 16777216 exceeds");
	unlink(path);
	put_block(repo, 2, a);

	/* A flipped data bit passes get and fails decode. */
	f = fopen(path, "r+b");
	if (f) {
		int ch;

		fseek(f, 30, SEEK_SET);
		ch = fgetc(f);
		fseek(f, 30, SEEK_SET);
		fputc(ch ^ 0x10, f);
		fclose(f);
	}
	expect_get_bad(repo, a, "");
	unlink(path);
	put_block(repo, 2, a);
	CHECK_RC(get_decode(repo, a, plain));
	CHECK_RC(fy_repo_sync(repo));
	fy_repo_close(repo);
}

/* Threads put the same blocks at once, as the server's workers do. */
struct putter {
	struct fy_repo *repo;
	int bad;
};

static void *put_many(void *arg)
{
	struct putter *p = arg;
	uint8_t plain[PLAIN], enc[PLAIN], digest[FY_DIGEST_LEN];
	enum fy_codec codec;
	unsigned i;
	size_t n;

	for (i = 0; i < 64; i++) {
		make_plain(1000 + i, plain);
		fy_sha256(plain, PLAIN, digest);
		if (fy_block_encode(plain, PLAIN, 3, enc, PLAIN, &n, &codec) ||
		    fy_repo_block_put(p->repo, digest, codec, PLAIN, enc, n))
			p->bad++;
	}
	return NULL;
}

static void test_parallel_put(void)
{
	struct putter p[4];
	pthread_t t[4];
	char root[4096];
	struct fy_repo *repo = NULL;
	static uint8_t back[FY_BLOCK_MAX];
	uint8_t plain[PLAIN], digest[FY_DIGEST_LEN];
	unsigned i;

	sub(root, sizeof(root), "parallel");
	CHECK_RC(fy_repo_init_format(root, 1));
	CHECK_RC(fy_repo_open(root, 0, &repo));
	if (!repo)
		return;
	for (i = 0; i < 4; i++) {
		p[i].repo = repo;
		p[i].bad = 0;
		CHECK(!pthread_create(&t[i], NULL, put_many, &p[i]));
	}
	for (i = 0; i < 4; i++) {
		CHECK(!pthread_join(t[i], NULL));
		CHECK(p[i].bad == 0);
	}
	for (i = 0; i < 64; i++) {
		make_plain(1000 + i, plain);
		fy_sha256(plain, PLAIN, digest);
		CHECK_RC(get_decode(repo, digest, back));
		CHECK(!memcmp(plain, back, PLAIN));
	}
	CHECK(count_entries(fy_repo_tmpdir(repo)) == 0);
	fy_repo_close(repo);
}

/* ---- tmp cleaning ------------------------------------------------------ */

static void test_clean_tmp(void)
{
	char root[4096], path[4096], tmp[4096];
	struct fy_repo *repo = NULL, *other = NULL;
	int lock;

	sub(root, sizeof(root), "clean");
	CHECK_RC(fy_repo_init_format(root, 1));
	pf(tmp, sizeof(tmp), "%s/tmp", root);
	pf(path, sizeof(path), "%s/block.abc123", tmp);
	write_file(path, "half a block", 12);
	pf(path, sizeof(path), "%s/dir", tmp);
	CHECK(mkdir(path, 0700) == 0);
	pf(path, sizeof(path), "%s/dir/inner", tmp);
	write_file(path, "x", 1);

	/* Without the flag, nothing is touched. */
	CHECK_RC(fy_repo_open(root, 0, &repo));
	CHECK(count_entries(tmp) == 2);
	/* A running backup (shared lock) keeps its files. */
	lock = fy_repo_lock(repo, false);
	CHECK(lock >= 0);
	CHECK_RC(fy_repo_open(root, FY_REPO_CLEAN_TMP, &other));
	CHECK(count_entries(tmp) == 2);
	fy_repo_close(other);
	fy_repo_unlock(lock);
	fy_repo_unlock(-1);

	other = NULL;
	CHECK_RC(fy_repo_open(root, FY_REPO_CLEAN_TMP, &other));
	CHECK(count_entries(tmp) == 0);
	fy_repo_close(other);

	/* Locks: shared with shared, exclusive alone. */
	lock = fy_repo_lock(repo, true);
	CHECK(lock >= 0);
	fy_repo_unlock(lock);
	fy_repo_close(repo);
}

/* ---- backups for verify, prune and gc ---------------------------------- */

/* One disk whose blocks are the given digests (plus a hole). */
static void make_backup(struct fy_repo *repo, const char *id,
			const char *source, int64_t created,
			uint8_t (*digests)[FY_DIGEST_LEN], size_t n)
{
	struct fy_manifest_builder *b = NULL;
	struct fy_manifest h;
	struct fy_manifest_disk d;
	uint8_t hole[1][FY_DIGEST_LEN] = { { 0 } };
	char path[4096];

	memset(&h, 0, sizeof(h));
	snprintf(h.id, sizeof(h.id), "%s", id);
	snprintf(h.source, sizeof(h.source), "%s", source);
	strcpy(h.source_kind, "test");
	h.created_unix = created;
	h.block_size = BS;
	memset(&d, 0, sizeof(d));
	d.size = (n + 1) * (uint64_t)BS;
	strcpy(d.label, "disk");
	CHECK_RC(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b));
	CHECK_RC(fy_manifest_builder_begin_disk(b, &d));
	CHECK_RC(fy_manifest_builder_add(b, 0, 0, digests, n));
	CHECK_RC(fy_manifest_builder_add(b, 0, n, hole, 1));
	CHECK_RC(fy_manifest_builder_end_disk(b, 0));
	CHECK_RC(fy_repo_sync(repo));
	CHECK_RC(fy_manifest_builder_finish(b, path, sizeof(path)));
	CHECK_RC(fy_repo_backup_commit(repo, path, id));
	fy_manifest_builder_free(b);
}

static char *capture_buf;
static size_t capture_len;

/* Collects what an operation prints; TEST_VERBOSE=1 shows it. */
static FILE *capture(void)
{
	if (capture_buf && getenv("TEST_VERBOSE"))
		fputs(capture_buf, stderr);
	free(capture_buf);
	capture_buf = NULL;
	return open_memstream(&capture_buf, &capture_len);
}

static void test_verify(struct fy_repo *repo, const char *root,
			uint8_t shared[FY_DIGEST_LEN])
{
	struct fy_verify_result res;
	uint8_t d[3][FY_DIGEST_LEN];
	char path[4096], hex[FY_DIGEST_HEX];
	FILE *out;

	put_block(repo, 100, shared);
	put_block(repo, 101, d[1]);
	put_block(repo, 102, d[2]);
	memcpy(d[0], shared, FY_DIGEST_LEN);
	make_backup(repo, "v1", "vm-v", 1000, d, 3);
	put_block(repo, 103, d[1]);
	put_block(repo, 104, d[2]);
	make_backup(repo, "v2", "vm-v", 2000, d, 3);

	out = capture();
	CHECK_RC(fy_repo_verify(repo, out, &res));
	fclose(out);
	CHECK(res.backups == 2 && res.damaged_backups == 0);
	CHECK(res.blocks_checked == 5);
	CHECK(res.blocks_bad == 0 && res.blocks_missing == 0);
	CHECK(strstr(capture_buf, "damaged") == NULL ||
	      strstr(capture_buf, "0 damaged"));
	CHECK_RC(fy_repo_verify(repo, NULL, &res));

	/* Corrupt a block only v2 has, and remove one only v1 has. */
	block_file(root, d[2], path, sizeof(path));
	{
		FILE *f = fopen(path, "r+b");

		CHECK(f != NULL);
		if (f) {
			/* Inside the 39 bytes of zstd data. */
			fseek(f, 30, SEEK_SET);
			fputc('!', f);
			fclose(f);
		}
	}
	out = capture();
	CHECK_RC(fy_repo_verify(repo, out, &res));
	fclose(out);
	CHECK(res.backups == 2 && res.damaged_backups == 1);
	CHECK(res.blocks_checked == 5 && res.blocks_bad == 1 &&
	      res.blocks_missing == 0);
	fy_hex(d[2], FY_DIGEST_LEN, hex);
	CHECK(strstr(capture_buf, "damaged backup v2") != NULL);
	CHECK(strstr(capture_buf, "damaged backup v1") == NULL);
	CHECK(strstr(capture_buf, "disk 0 block 2 ") != NULL);
	CHECK(strstr(capture_buf, hex) != NULL);
	CHECK(strstr(capture_buf, ": corrupt: ") != NULL);
	/* The same counts without a report. */
	CHECK_RC(fy_repo_verify(repo, NULL, &res));
	CHECK(res.damaged_backups == 1 && res.blocks_bad == 1);

	/* Missing: the shared block takes both backups down. */
	block_file(root, shared, path, sizeof(path));
	{
		char save[4096];

		pf(save, sizeof(save), "%s.saved", path);
		CHECK(rename(path, save) == 0);
		out = capture();
		CHECK_RC(fy_repo_verify(repo, out, &res));
		fclose(out);
		CHECK(res.damaged_backups == 2 && res.blocks_missing == 1 &&
		      res.blocks_bad == 1);
		CHECK(strstr(capture_buf, "damaged backup v1") != NULL);
		CHECK(strstr(capture_buf, "disk 0 block 0 ") != NULL);
		CHECK(strstr(capture_buf, ": missing") != NULL);
		CHECK(rename(save, path) == 0);
	}

	/* Repair v2's block; an unreadable manifest is damage too. */
	block_file(root, d[2], path, sizeof(path));
	unlink(path);
	put_block(repo, 104, d[2]);
	pf(path, sizeof(path), "%s/backups/junk.manifest", root);
	write_file(path, "FYMANIF1 but not really a manifest at all, sorry",
		   48);
	out = capture();
	CHECK_RC(fy_repo_verify(repo, out, &res));
	fclose(out);
	CHECK(res.backups == 3 && res.damaged_backups == 1 &&
	      res.blocks_bad == 0 && res.blocks_missing == 0);
	CHECK(strstr(capture_buf, "damaged backup junk: ") != NULL);
	unlink(path);
}

/* ---- prune ------------------------------------------------------------- */

/* 2024-01-01 was a Monday (ISO week 2024-W01); 2023-12-31 a Sunday
 * (2023-W52). */
#define DAY 86400
#define JAN1 1704067200LL

static const struct {
	const char *id, *source;
	int64_t t;
} pb[] = {
	{ "a1", "vm-a", JAN1 + 10 * 3600 },		/* Mon 01-01 W01 */
	{ "a2", "vm-a", JAN1 + 12 * 3600 },		/* Mon 01-01 W01 */
	{ "a3", "vm-a", JAN1 + DAY + 9 * 3600 },	/* Tue 01-02 W01 */
	{ "a4", "vm-a", JAN1 + 7 * DAY + 9 * 3600 },	/* Mon 01-08 W02 */
	{ "a5", "vm-a", JAN1 + 30 * DAY + 9 * 3600 },	/* Wed 01-31 W05 */
	{ "a6", "vm-a", JAN1 + 31 * DAY + 9 * 3600 },	/* Thu 02-01 W05 */
	{ "a7", "vm-a", JAN1 + 45 * DAY + 9 * 3600 },	/* Thu 02-15 W07 */
	{ "b1", "vm-b", JAN1 + 45 * DAY + 10 * 3600 },	/* Thu 02-15 W07 */
	{ "b2", "vm-b", JAN1 - DAY + 3600 },		/* Sun 12-31 W52 */
};
#define NPB (sizeof(pb) / sizeof(pb[0]))

static uint8_t pb_block[NPB][FY_DIGEST_LEN];

/* The ids a dry run keeps, in output order, as "a7 a6 ...". */
static void prune_keeps(struct fy_repo *repo, int last, int daily,
			int weekly, int monthly, const char *want,
			uint64_t want_removed)
{
	struct fy_prune_policy p = { .keep_last = last, .keep_daily = daily,
				     .keep_weekly = weekly,
				     .keep_monthly = monthly, .dry_run = true };
	char got[256] = "", *line, *save = NULL;
	uint64_t removed = 99;
	FILE *out = capture();

	CHECK_RC(fy_repo_prune(repo, &p, out, &removed));
	fclose(out);
	for (line = strtok_r(capture_buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char id[16];

		if (sscanf(line, "keep %15s", id) == 1) {
			strcat(got, got[0] ? " " : "");
			strcat(got, id);
		}
	}
	if (strcmp(got, want) || removed != want_removed) {
		fprintf(stderr,
			"prune %d/%d/%d/%d kept \"%s\" (%llu removed), "
			"expected \"%s\" (%llu)\n",
			last, daily, weekly, monthly, got,
			(unsigned long long)removed, want,
			(unsigned long long)want_removed);
		CHECK(!"prune policy");
	}
}

static int collect_ids(void *opaque, const char *id)
{
	char *out = opaque;

	strcat(out, out[0] ? " " : "");
	strcat(out, id);
	return 0;
}

static void test_prune(struct fy_repo *repo)
{
	struct fy_prune_policy none = { 0 }, neg = { .keep_last = -1 };
	char ids[256] = "";
	uint64_t removed = 0;
	FILE *out;
	size_t i;

	for (i = 0; i < NPB; i++) {
		put_block(repo, 200 + (unsigned)i, pb_block[i]);
		make_backup(repo, pb[i].id, pb[i].source, pb[i].t,
			    &pb_block[i], 1);
	}
	/* The verify backups (vm-v) take part too: all policies below keep
	 * both of them. */
	CHECK(fy_repo_prune(repo, &none, NULL, &removed) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "refusing to remove every backup") !=
	      NULL);
	CHECK(fy_repo_prune(repo, &neg, NULL, &removed) == -EINVAL);

	prune_keeps(repo, 2, 0, 0, 0, "a7 a6 b1 b2 v2 v1", 5);
	prune_keeps(repo, 1, 0, 0, 0, "a7 b1 v2", 8);
	prune_keeps(repo, 0, 3, 0, 0, "a7 a6 a5 b1 b2 v2", 5);
	prune_keeps(repo, 0, 5, 0, 0, "a7 a6 a5 a4 a3 b1 b2 v2", 3);
	prune_keeps(repo, 0, 6, 0, 0, "a7 a6 a5 a4 a3 a2 b1 b2 v2", 2);
	prune_keeps(repo, 0, 0, 3, 0, "a7 a6 a4 b1 b2 v2", 5);
	prune_keeps(repo, 0, 0, 9, 0, "a7 a6 a4 a3 b1 b2 v2", 4);
	prune_keeps(repo, 0, 0, 0, 2, "a7 a5 b1 b2 v2", 6);
	prune_keeps(repo, 0, 0, 0, 1, "a7 b1 v2", 8);
	prune_keeps(repo, 1, 1, 1, 1, "a7 b1 v2", 8);
	prune_keeps(repo, 2, 0, 0, 2, "a7 a6 a5 b1 b2 v2 v1", 4);
	prune_keeps(repo, 100, 0, 0, 0, "a7 a6 a5 a4 a3 a2 a1 b1 b2 v2 v1", 0);

	/* Dry runs removed nothing; a real one does. */
	CHECK_RC(fy_repo_backup_list(repo, collect_ids, ids));
	CHECK(!strcmp(ids, "a1 a2 a3 a4 a5 a6 a7 b1 b2 v1 v2"));
	{
		struct fy_prune_policy p = { .keep_last = 2,
					     .keep_monthly = 2 };

		out = capture();
		CHECK_RC(fy_repo_prune(repo, &p, out, &removed));
		fclose(out);
		CHECK(removed == 4);
		CHECK(strstr(capture_buf, "keep a7 (last, monthly 2024-02)\n"));
		CHECK(strstr(capture_buf, "keep a6 (last)\n"));
		CHECK(strstr(capture_buf, "keep a5 (monthly 2024-01)\n"));
		CHECK(strstr(capture_buf, "keep b2 (last, monthly 2023-12)\n"));
		CHECK(strstr(capture_buf, "remove a4\n"));
		CHECK(strstr(capture_buf, "remove a1\n"));
	}
	ids[0] = 0;
	CHECK_RC(fy_repo_backup_list(repo, collect_ids, ids));
	CHECK(!strcmp(ids, "a5 a6 a7 b1 b2 v1 v2"));
}

/* ---- gc ---------------------------------------------------------------- */

static int count_cb(void *opaque, const uint8_t digest[FY_DIGEST_LEN])
{
	(*(uint64_t *)opaque)++;
	return 0;
}

static uint64_t count_blocks(struct fy_repo *repo)
{
	uint64_t n = 0;

	CHECK_RC(fy_repo_block_list(repo, count_cb, &n));
	return n;
}

static void test_gc(struct fy_repo *repo, const char *root,
		    const uint8_t shared[FY_DIGEST_LEN])
{
	struct fy_gc_result res;
	struct fy_verify_result vres;
	uint8_t orphan[FY_DIGEST_LEN];
	char path[4096];
	uint64_t before;
	FILE *out;
	size_t i;

	/* Referenced: v1 (3), v2 (2 more), a5-a7, b1, b2: 10 blocks.
	 * Unreferenced: the blocks of a1-a4, and an orphan. */
	put_block(repo, 999, orphan);
	before = count_blocks(repo);
	CHECK(before == 15);
	pf(path, sizeof(path), "%s/tmp/block.leftover", root);
	write_file(path, "x", 1);

	out = capture();
	CHECK_RC(fy_repo_gc(repo, true, out, &res));
	fclose(out);
	CHECK(res.referenced == 10 && res.stored == 15 && res.deleted == 5);
	CHECK(res.bytes_freed > 5 * 16);
	CHECK(strstr(capture_buf, "would delete 5") != NULL);
	CHECK(count_blocks(repo) == 15);
	CHECK(count_entries(fy_repo_tmpdir(repo)) == 1);

	/* A manifest gc cannot read stops it before it deletes anything. */
	pf(path, sizeof(path), "%s/backups/zz.manifest", root);
	write_file(path, "garbage", 7);
	CHECK(fy_repo_gc(repo, false, NULL, &res) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "refusing") != NULL);
	CHECK(count_blocks(repo) == 15);
	unlink(path);

	out = capture();
	CHECK_RC(fy_repo_gc(repo, false, out, &res));
	fclose(out);
	CHECK(res.referenced == 10 && res.stored == 15 && res.deleted == 5);
	CHECK(strstr(capture_buf, "deleted 5") != NULL);
	CHECK(count_blocks(repo) == 10);
	CHECK(count_entries(fy_repo_tmpdir(repo)) == 0);
	CHECK(fy_repo_block_exists(repo, orphan) == 0);
	CHECK(fy_repo_block_exists(repo, shared) == 1);
	for (i = 0; i < NPB; i++) {
		bool kept = strcmp(pb[i].id, "a5") >= 0;

		CHECK(fy_repo_block_exists(repo, pb_block[i]) == kept);
	}
	/* What is left is whole. */
	CHECK_RC(fy_repo_verify(repo, NULL, &vres));
	CHECK(vres.backups == 7 && vres.damaged_backups == 0 &&
	      vres.blocks_checked == 10);
	/* Nothing more to do. */
	CHECK_RC(fy_repo_gc(repo, false, NULL, &res));
	CHECK(res.deleted == 0 && res.bytes_freed == 0);
}

int main(void)
{
	struct fy_repo *repo = NULL;
	uint8_t shared[FY_DIGEST_LEN];
	char root[4096];

	make_tmpdir();
	test_init_open();
	test_blocks();
	test_parallel_put();
	test_clean_tmp();

	sub(root, sizeof(root), "ops");
	CHECK_RC(fy_repo_init_format(root, 1));
	CHECK_RC(fy_repo_open(root, 0, &repo));
	if (repo) {
		test_verify(repo, root, shared);
		test_prune(repo);
		test_gc(repo, root, shared);
		fy_repo_close(repo);
	}
	free(capture_buf);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	CHECK_DONE();
}
