/* The repository in format 2 (pack files and an index): sessions that
 * publish only at commit and leave nothing when they do not, the index
 * rebuilt from the packs' trailers when it is missing or damaged, a
 * damaged pack skipped and named, and the pack and index parsers against
 * broken input. gc, repack and migrate run against the real binaries in
 * tests/integration/packs.sh. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "check.h"
#include "image/image.h"
#include "image/image_private.h"

#define PLAIN 4096

static char dir[2048];

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

/* Count the files whose names end in suffix under path (recursively). */
static int counted;
static const char *count_suffix;

static int count_one(const char *path, const struct stat *st, int flag,
		     struct FTW *ftw)
{
	size_t l = strlen(path), s = strlen(count_suffix);

	(void)st, (void)ftw;
	if (flag == FTW_F && l >= s && !strcmp(path + l - s, count_suffix))
		counted++;
	return 0;
}

static int count_files(const char *sub, const char *suffix)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	counted = 0;
	count_suffix = suffix;
	nftw(path, count_one, 16, FTW_PHYS);
	return counted;
}

static void block(int seed, uint8_t plain[PLAIN], uint8_t digest[32])
{
	int i;

	for (i = 0; i < PLAIN; i++)
		plain[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 5));
	SHA256(plain, PLAIN, digest);
}

static int put(struct fy_repo_session *s, int seed, uint8_t digest[32])
{
	uint8_t plain[PLAIN];

	block(seed, plain, digest);
	fy_repo_session_note(s, digest);
	return fy_repo_session_put(s, digest, FY_CODEC_NONE, PLAIN, plain,
				   PLAIN);
}

static int get_ok(struct fy_repo *repo, const uint8_t digest[32])
{
	static uint8_t buf[FY_STORED_MAX], out[PLAIN];
	enum fy_codec codec;
	uint32_t plain;
	size_t len;
	int rc;

	rc = fy_repo_block_get(repo, digest, &codec, &plain, buf, sizeof(buf),
			       &len);
	if (rc)
		return rc;
	return fy_block_decode(codec, buf, len, plain, digest, out,
			       sizeof(out));
}

static void first_pack(char *out, size_t len)
{
	char packs[4096];
	DIR *top, *sub;
	struct dirent *de, *fe;

	out[0] = 0;
	snprintf(packs, sizeof(packs), "%s/repo/packs", dir);
	top = opendir(packs);
	while (top && !out[0] && (de = readdir(top))) {
		char d[4200];

		if (de->d_name[0] == '.')
			continue;
		snprintf(d, sizeof(d), "%s/%s", packs, de->d_name);
		sub = opendir(d);
		while (sub && (fe = readdir(sub)))
			if (strstr(fe->d_name, ".pack")) {
				snprintf(out, len, "%s/%s", d, fe->d_name);
				break;
			}
		if (sub)
			closedir(sub);
	}
	if (top)
		closedir(top);
}

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	void *p;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = malloc((size_t)n + 1);
	if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

static void spill(const char *path, const void *p, size_t len)
{
	FILE *f = fopen(path, "wb");

	CHECK(f && fwrite(p, 1, len, f) == len);
	if (f)
		fclose(f);
}

static void test_parsers(const char *pack_path, const char *index_path)
{
	size_t plen = 0, ilen = 0;
	uint8_t *p = slurp(pack_path, &plen), *ix = slurp(index_path, &ilen);
	uint8_t *c;

	CHECK(p && ix);
	if (!p || !ix)
		return;
	CHECK_RC(fy_pack_check(p, plen));
	CHECK_RC(fy_index_check(ix, ilen));
	c = malloc(plen > ilen ? plen : ilen);
	/* Each broken form is refused with a message, never accepted. */
	memcpy(c, p, plen);
	c[0] = 'X';
	CHECK(fy_pack_check(c, plen) == -EBADMSG);
	memcpy(c, p, plen);
	c[plen - 1] ^= 1; /* end magic */
	CHECK(fy_pack_check(c, plen) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "trailer") != NULL);
	memcpy(c, p, plen);
	c[plen - 48 + 2] = 0xff; /* entry count far too large */
	CHECK(fy_pack_check(c, plen) == -EBADMSG);
	memcpy(c, p, plen);
	c[plen - 30] ^= 1; /* the trailer's checksum */
	CHECK(fy_pack_check(c, plen) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "checksum") != NULL);
	CHECK(fy_pack_check(p, plen - 1) == -EBADMSG); /* cut short */
	CHECK(fy_pack_check(p, 10) == -EBADMSG);
	memcpy(c, ix, ilen);
	c[40] ^= 1;
	CHECK(fy_index_check(c, ilen) == -EBADMSG);
	CHECK(fy_index_check(ix, ilen - 1) == -EBADMSG);
	memcpy(c, ix, ilen);
	c[23] = 0xff; /* pack count */
	CHECK(fy_index_check(c, ilen) == -EBADMSG);
	CHECK(fy_index_check(ix, 8) == -EBADMSG);
	free(c);
	free(p);
	free(ix);
}

/* A pack writer in tmpdir (image/pack.c): objects of many sizes across
 * its 2 MiB buffer, then the trailer; the file is exactly the pack (no
 * padding of the last O_DIRECT write left) and every object reads back.
 * On a local disk file system the writer uses O_DIRECT, on tmpfs the page
 * cache: both are run when /dev/shm is there. */
static void writer_in(const char *tmpdir)
{
	static const size_t sizes[] = { 1, 4096, 700000, 1 << 20, 3,
					(2 << 20) - 16, 5000, 2 << 20, 17 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	struct fy_pack_writer *w = NULL;
	struct fy_pack_entry *e = NULL;
	uint8_t hdr[FY_BLOCK_HDR_LEN], got_hdr[FY_BLOCK_HDR_LEN];
	uint8_t digest[N][FY_DIGEST_LEN];
	uint8_t *data = malloc(2 << 20), *back = malloc(2 << 20);
	uint64_t total = FY_PACK_HDR_LEN;
	char path[4200];
	size_t i, k, count = 0;
	struct stat st;

	CHECK(data && back);
	CHECK_RC(fy_pack_create(tmpdir, &w));
	if (!w || !data || !back)
		goto out;
	CHECK_RC(fy_pack_tmp_path(tmpdir, fy_pack_writer_id(w), path,
				  sizeof(path)));
	for (i = 0; i < N; i++) {
		for (k = 0; k < sizes[i]; k++)
			data[k] = (uint8_t)(i * 37 + k * 11);
		memset(hdr, (int)i + 1, sizeof(hdr));
		memset(digest[i], (int)i + 1, FY_DIGEST_LEN);
		CHECK_RC(fy_pack_append(w, digest[i], hdr, sizeof(hdr), data,
					sizes[i]));
		total += sizeof(hdr) + sizes[i];
	}
	CHECK_RC(fy_pack_finish(w));
	total += N * FY_PACK_ENTRY_LEN + FY_PACK_FOOTER_LEN;
	CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == total);
	CHECK_RC(fy_pack_read_trailer(path, &e, &count));
	CHECK(count == N);
	for (i = 0; e && i < count && i < N; i++) {
		CHECK(!memcmp(e[i].digest, digest[i], FY_DIGEST_LEN));
		CHECK(e[i].length == sizeof(hdr) + sizes[i]);
		CHECK_RC(fy_pack_read_object(path, e[i].offset, e[i].length,
					     got_hdr, sizeof(got_hdr), back,
					     2 << 20));
		for (k = 0; k < sizes[i]; k++)
			if (back[k] != (uint8_t)(i * 37 + k * 11))
				break;
		CHECK(k == sizes[i]);
		CHECK(got_hdr[0] == (uint8_t)(i + 1));
	}
	unlink(path);
out:
	free(e);
	free(data);
	free(back);
	fy_pack_writer_free(w);
}

int main(void)
{
	const char *base = getenv("TMPDIR");
	char root[4096], path[4200], pack[4200], seeds[4200];
	struct fy_repo *repo = NULL;
	struct fy_repo_session *s = NULL, *other = NULL;
	uint8_t d[8][32];
	int i;

	snprintf(dir, sizeof(dir), "%s/test_pack.XXXXXX",
		 base && *base ? base : ".");
	if (!mkdtemp(dir))
		return 1;
	snprintf(root, sizeof(root), "%s/repo", dir);
	CHECK_RC(fy_repo_init(root));
	CHECK_RC(fy_repo_open(root, FY_REPO_CLEAN_TMP, &repo));
	if (!repo)
		CHECK_DONE();
	CHECK(fy_repo_format(repo) == 2);

	writer_in(dir);
	if (access("/dev/shm", W_OK) == 0)
		writer_in("/dev/shm");

	/* A committed session: visible to everyone, in one pack. */
	CHECK_RC(fy_repo_session_begin(repo, &s));
	CHECK_RC(fy_repo_session_begin(repo, &other));
	for (i = 0; i < 3; i++)
		CHECK_RC(put(s, i, d[i]));
	CHECK(fy_repo_session_exists(s, d[0]) == 1);
	/* Not before the commit, not for another session. */
	CHECK(fy_repo_block_exists(repo, d[0]) == 0);
	CHECK(fy_repo_session_exists(other, d[0]) == 0);
	CHECK(count_files("repo/packs", ".pack") == 0);
	CHECK_RC(fy_repo_session_commit(s));
	fy_repo_session_end(s);
	CHECK(fy_repo_block_exists(repo, d[1]) == 1);
	CHECK(fy_repo_session_exists(other, d[1]) == 1);
	CHECK(get_ok(repo, d[2]) == 0);
	CHECK(count_files("repo/packs", ".pack") == 1);
	CHECK(count_files("repo/tmp", ".pack") == 0);

	/* Ending without a commit leaves nothing. */
	CHECK_RC(put(other, 5, d[5]));
	CHECK_RC(put(other, 6, d[6]));
	CHECK(count_files("repo/tmp", ".pack") == 1);
	fy_repo_session_end(other);
	CHECK(count_files("repo/tmp", ".pack") == 0);
	CHECK(count_files("repo/packs", ".pack") == 1);
	CHECK(fy_repo_block_exists(repo, d[5]) == 0);

	/* A second committed session: a second pack. */
	CHECK_RC(fy_repo_session_begin(repo, &s));
	CHECK_RC(put(s, 3, d[3]));
	CHECK_RC(put(s, 1, d[1])); /* already stored: a harmless copy */
	CHECK_RC(fy_repo_session_commit(s));
	fy_repo_session_end(s);
	fy_repo_close(repo);
	CHECK(count_files("repo/packs", ".pack") == 2);

	/* The index was saved at close and opens as it was. */
	snprintf(path, sizeof(path), "%s/index/main.idx", root);
	first_pack(pack, sizeof(pack));
	test_parsers(pack, path);
	/* FERRY_PACK_SEEDS=DIR: write the fuzz target's seeds there. */
	if (getenv("FERRY_PACK_SEEDS")) {
		size_t n;
		uint8_t *p;

		p = slurp(pack, &n);
		if (p) {
			memmove(p + 1, p, n);
			p[0] = 0;
			snprintf(seeds, sizeof(seeds), "%s/pack",
				 getenv("FERRY_PACK_SEEDS"));
			spill(seeds, p, n + 1);
			free(p);
		}
		p = slurp(path, &n);
		if (p) {
			memmove(p + 1, p, n);
			p[0] = 1;
			snprintf(seeds, sizeof(seeds), "%s/index",
				 getenv("FERRY_PACK_SEEDS"));
			spill(seeds, p, n + 1);
			free(p);
		}
	}

	/* Missing index: rebuilt from the trailers and written again. */
	CHECK(unlink(path) == 0);
	CHECK_RC(fy_repo_open(root, 0, &repo));
	for (i = 0; i < 4; i++)
		CHECK(repo && get_ok(repo, d[i]) == 0);
	fy_repo_close(repo);
	CHECK(access(path, F_OK) == 0);

	/* Damaged index: the same. */
	{
		size_t n;
		uint8_t *p = slurp(path, &n);

		CHECK(p != NULL);
		if (p) {
			p[n / 2] ^= 0x55;
			spill(path, p, n);
			free(p);
		}
	}
	CHECK_RC(fy_repo_open(root, 0, &repo));
	for (i = 0; i < 4; i++)
		CHECK(repo && get_ok(repo, d[i]) == 0);
	fy_repo_close(repo);

	/* A damaged pack (cut short): named and skipped; its blocks are
	 * missing, the others still there. */
	CHECK(truncate(pack, 100) == 0);
	snprintf(path, sizeof(path), "%s/index/main.idx", root);
	CHECK(unlink(path) == 0);
	CHECK_RC(fy_repo_open(root, 0, &repo));
	{
		int present = 0;

		for (i = 0; i < 4; i++)
			present += repo && fy_repo_block_exists(repo, d[i]);
		CHECK(present >= 1 && present < 4);
	}
	fy_repo_close(repo);

	/* A format this build does not know is refused. */
	snprintf(path, sizeof(path), "%s/config", root);
	spill(path, "ferry-repository 4\nid=0123456789abcdef0123456789abcdef\n",
	      54);
	CHECK(fy_repo_open(root, 0, &repo) == -ENOTSUP);

	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	CHECK_DONE();
}
