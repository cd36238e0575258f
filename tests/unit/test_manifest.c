/* Manifests: the builder, commit into a repository, reading back, and a
 * parser that rejects every kind of damage with a precise message. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "image/image.h"
#include "proto/manifest.pb-c.h"

#define BS (64u << 10)

static char dir[2048], root[4096];

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	return remove(path);
}

static void make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/test_manifest.XXXXXX",
		 base && *base ? base : ".");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(root, sizeof(root), "%s/repo", dir);
}

static size_t count_files(const char *path)
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

/* The map entry of disk d, block b: a hole every 4th block of disk 0 and
 * the last block of disk 1. */
static void entry(uint32_t d, uint64_t b, uint64_t blocks, uint8_t *out)
{
	char s[64];

	if ((d == 0 && b % 4 == 1) || (d == 1 && b == blocks - 1)) {
		memset(out, 0, FY_DIGEST_LEN);
		return;
	}
	snprintf(s, sizeof(s), "disk %u block %llu", d, (unsigned long long)b);
	fy_sha256(s, strlen(s), out);
}

static const uint64_t sizes[2] = { 10 * BS + 100, 5 * BS };

static int count_cb(void *opaque, const uint8_t d[FY_DIGEST_LEN])
{
	(*(uint64_t *)opaque)++;
	return 0;
}

static void fill_hdr(struct fy_manifest *h, const char *id)
{
	memset(h, 0, sizeof(*h));
	snprintf(h->id, sizeof(h->id), "%s", id);
	strcpy(h->source, "vm-7 (datacenter/vm/web)");
	strcpy(h->source_kind, "vsphere");
	strcpy(h->parent_id, "20200101T000000Z-00000000");
	h->created_unix = 1700000000;
	h->block_size = BS;
}

static void disk_info(struct fy_manifest_disk *d, uint32_t i)
{
	memset(d, 0, sizeof(*d));
	d->index = i;
	snprintf(d->label, sizeof(d->label), "[ds1] vm-7/vm-7_%u.vmdk", i);
	d->size = sizes[i];
	snprintf(d->change_id, sizeof(d->change_id), "52 aa bb/%u", i + 3);
	strcpy(d->transport, i ? "nbd" : "hotadd");
	/* Ignored by the builder, which counts for itself. */
	d->block_count = 999;
	d->data_blocks = 7;
}

/* Builds the two-disk manifest (disks fed interleaved) into the repo. */
static void build(struct fy_repo *repo, const char *id)
{
	struct fy_manifest_builder *b = NULL;
	struct fy_manifest h;
	struct fy_manifest_disk d;
	uint8_t map[11][FY_DIGEST_LEN];
	char path[4096];
	uint64_t i, refs = 0;

	fill_hdr(&h, id);
	for (i = 0; i < 11; i++)
		entry(0, i, 11, map[i]);
	CHECK_RC(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b));
	if (!b)
		return;
	disk_info(&d, 0);
	CHECK_RC(fy_manifest_builder_begin_disk(b, &d));
	disk_info(&d, 1);
	CHECK_RC(fy_manifest_builder_begin_disk(b, &d));
	CHECK_RC(fy_manifest_builder_add(b, 0, 0, map, 6));
	for (i = 0; i < 5; i++) {
		uint8_t e[1][FY_DIGEST_LEN];

		entry(1, i, 5, e[0]);
		CHECK_RC(fy_manifest_builder_add(b, 1, i, e, 1));
	}
	CHECK_RC(fy_manifest_builder_end_disk(b, 1));
	CHECK_RC(fy_manifest_builder_add(b, 0, 6, map + 6, 5));
	CHECK_RC(fy_manifest_builder_for_each(b, count_cb, &refs));
	CHECK(refs == 8 + 4);
	CHECK_RC(fy_manifest_builder_end_disk(b, 0));
	CHECK_RC(fy_manifest_builder_finish(b, path, sizeof(path)));
	CHECK_RC(fy_repo_backup_commit(repo, path, id));
	fy_manifest_builder_free(b);
	CHECK(count_files(fy_repo_tmpdir(repo)) == 0);
}

static void compare(struct fy_manifest *m, const char *id)
{
	uint8_t map[11][FY_DIGEST_LEN], want[FY_DIGEST_LEN];
	struct fy_manifest_disk d;
	uint32_t i;
	uint64_t b;

	CHECK(!strcmp(m->id, id));
	CHECK(!strcmp(m->source, "vm-7 (datacenter/vm/web)"));
	CHECK(!strcmp(m->source_kind, "vsphere"));
	CHECK(!strcmp(m->parent_id, "20200101T000000Z-00000000"));
	CHECK(m->created_unix == 1700000000);
	CHECK(m->block_size == BS);
	CHECK(m->disk_count == 2);
	if (m->disk_count != 2)
		return;
	for (i = 0; i < 2; i++) {
		disk_info(&d, i);
		CHECK(m->disks[i].index == i);
		CHECK(!strcmp(m->disks[i].label, d.label));
		CHECK(!strcmp(m->disks[i].change_id, d.change_id));
		CHECK(!strcmp(m->disks[i].transport, d.transport));
		CHECK(m->disks[i].size == sizes[i]);
	}
	CHECK(m->disks[0].block_count == 11);
	CHECK(m->disks[0].hole_blocks == 3);
	CHECK(m->disks[0].data_blocks == 8);
	CHECK(m->disks[1].block_count == 5);
	CHECK(m->disks[1].hole_blocks == 1);
	CHECK(m->disks[1].data_blocks == 4);

	CHECK_RC(fy_manifest_read_map(m, 0, 0, 11, map));
	for (b = 0; b < 11; b++) {
		entry(0, b, 11, want);
		CHECK(!memcmp(map[b], want, FY_DIGEST_LEN));
		CHECK(fy_digest_is_hole(map[b]) == (b % 4 == 1));
	}
	CHECK_RC(fy_manifest_read_map(m, 1, 2, 3, map));
	for (b = 2; b < 5; b++) {
		entry(1, b, 5, want);
		CHECK(!memcmp(map[b - 2], want, FY_DIGEST_LEN));
	}
	CHECK(fy_digest_is_hole(map[2]));
	CHECK_RC(fy_manifest_read_map(m, 1, 5, 0, map));
	CHECK(fy_manifest_read_map(m, 1, 3, 3, map) == -EINVAL);
	CHECK(fy_manifest_read_map(m, 1, 6, 0, map) == -EINVAL);
	CHECK(fy_manifest_read_map(m, 2, 0, 1, map) == -EINVAL);
	CHECK(fy_manifest_read_map(m, 0, UINT64_MAX, 2, map) == -EINVAL);
}

/* ---- damage ------------------------------------------------------------ */

static uint8_t *good;
static size_t good_len;

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static void expect_bad(const void *data, size_t len, const char *what)
{
	struct fy_manifest *m = (struct fy_manifest *)1;
	int rc;

	fy_err_clear();
	rc = fy_manifest_parse_mem(data, len, &m);
	CHECK(rc == -EBADMSG);
	CHECK(m == NULL);
	if (!strstr(fy_err_msg(), what)) {
		fprintf(stderr, "expected \"%s\" in: %s\n", what,
			fy_err_msg());
		CHECK(!"message");
	}
	if (!rc)
		fy_manifest_free(m);
}

/* Rewrites the header with mutate applied and a valid checksum, so only
 * the header's own validation can object. */
static void expect_bad_header(void (*mutate)(Ferry__ManifestHeader *h),
			      const char *what)
{
	uint32_t hl = get_be32(good + 12);
	size_t maps = good_len - 16 - hl - 32, len, nhl;
	Ferry__ManifestHeader *h, saved;
	Ferry__ManifestDisk saved_disks[2];
	uint8_t *buf;

	h = ferry__manifest_header__unpack(NULL, hl, good + 16);
	CHECK(h != NULL && h->n_disks == 2);
	if (!h || h->n_disks != 2)
		return;
	/* The mutators swap in pointers protobuf-c must not free. */
	saved = *h;
	saved_disks[0] = *h->disks[0];
	saved_disks[1] = *h->disks[1];
	mutate(h);
	nhl = ferry__manifest_header__get_packed_size(h);
	len = 16 + nhl + maps + 32;
	buf = malloc(len);
	memcpy(buf, good, 12);
	put_be32(buf + 12, (uint32_t)nhl);
	ferry__manifest_header__pack(h, buf + 16);
	*h = saved;
	*h->disks[0] = saved_disks[0];
	*h->disks[1] = saved_disks[1];
	memcpy(buf + 16 + nhl, good + 16 + hl, maps);
	fy_sha256(buf, len - 32, buf + len - 32);
	expect_bad(buf, len, what);
	free(buf);
	ferry__manifest_header__free_unpacked(h, NULL);
}

static void bad_block_count(Ferry__ManifestHeader *h)
{
	h->disks[1]->block_count = 6;
	h->disks[1]->hole_blocks = 2;
}

static void bad_block_size(Ferry__ManifestHeader *h)
{
	h->block_size = 3 << 16;
}

static void tiny_block_size(Ferry__ManifestHeader *h)
{
	h->block_size = 4096;
}

static void bad_index(Ferry__ManifestHeader *h)
{
	h->disks[0]->index = 1;
}

static void bad_counts(Ferry__ManifestHeader *h)
{
	h->disks[0]->data_blocks++;
}

static void bad_holes(Ferry__ManifestHeader *h)
{
	h->disks[0]->data_blocks++;
	h->disks[0]->hole_blocks--;
}

static void bad_id(Ferry__ManifestHeader *h)
{
	h->id = "../../etc/passwd";
}

static void empty_id(Ferry__ManifestHeader *h)
{
	h->id = "";
}

static void bad_parent(Ferry__ManifestHeader *h)
{
	h->parent_id = "a b";
}

static char long_label[FY_LABEL_MAX + 1];

static void long_disk_label(Ferry__ManifestHeader *h)
{
	memset(long_label, 'x', FY_LABEL_MAX);
	h->disks[1]->label = long_label;
}

static void huge_disk(Ferry__ManifestHeader *h)
{
	h->disks[0]->size = FY_DISK_SIZE_MAX + 1;
}

static void lost_disk(Ferry__ManifestHeader *h)
{
	h->n_disks = 1; /* the maps of two remain */
}

static Ferry__ManifestDisk *many[FY_DISKS_MAX + 1];
static Ferry__ManifestDisk empty_disk = FERRY__MANIFEST_DISK__INIT;

static void too_many_disks(Ferry__ManifestHeader *h)
{
	size_t i;

	for (i = 0; i <= FY_DISKS_MAX; i++)
		many[i] = &empty_disk;
	h->n_disks = FY_DISKS_MAX + 1;
	h->disks = many;
}

static void test_damage(void)
{
	uint8_t *buf = malloc(good_len + 64);
	struct fy_manifest *m = NULL;
	uint32_t hl = get_be32(good + 12);
	char path[8192];
	FILE *f;

	/* The undamaged bytes parse. */
	CHECK_RC(fy_manifest_parse_mem(good, good_len, &m));
	fy_manifest_free(m);

	/* Any flipped byte in the maps: only the checksum can tell. */
	memcpy(buf, good, good_len);
	buf[16 + hl + 40] ^= 0x01;
	expect_bad(buf, good_len, "checksum mismatch");
	memcpy(buf, good, good_len);
	buf[good_len - 1] ^= 0x80;
	expect_bad(buf, good_len, "checksum mismatch");
	/* A flipped header byte fails somewhere, always. */
	memcpy(buf, good, good_len);
	buf[16 + 3] ^= 0x20;
	expect_bad(buf, good_len, "manifest in memory: ");

	/* Truncated, or with trailing garbage. */
	expect_bad(good, good_len - 1, "bytes, but its header");
	expect_bad(good, good_len - 32, "bytes, but its header");
	memcpy(buf, good, good_len);
	memset(buf + good_len, 0, 32);
	expect_bad(buf, good_len + 32, "bytes, but its header");
	expect_bad(good, 20, "shorter than the smallest");
	expect_bad(good, 0, "shorter than the smallest");

	memcpy(buf, good, good_len);
	buf[0] = 'X';
	expect_bad(buf, good_len, "bad magic");
	memcpy(buf, good, good_len);
	put_be32(buf + 8, 2);
	expect_bad(buf, good_len, "version 2");
	memcpy(buf, good, good_len);
	put_be32(buf + 12, FY_MANIFEST_HEADER_MAX + 1);
	expect_bad(buf, good_len, "header length");
	put_be32(buf + 12, 0);
	expect_bad(buf, good_len, "header length");
	put_be32(buf + 12, (uint32_t)good_len);
	expect_bad(buf, good_len, "does not fit");

	expect_bad_header(bad_block_count, "disk 1 has 6 blocks");
	expect_bad_header(bad_block_size, "block size 196608");
	expect_bad_header(tiny_block_size, "block size 4096");
	expect_bad_header(bad_index, "index order");
	expect_bad_header(bad_counts, "do not add up");
	expect_bad_header(bad_holes, "disk 0 map has 3 holes");
	expect_bad_header(bad_id, "not a valid backup id");
	expect_bad_header(empty_id, "not a valid backup id");
	expect_bad_header(bad_parent, "parent id");
	expect_bad_header(long_disk_label, "disk 1 label");
	expect_bad_header(huge_disk, "exceeds the largest disk");
	expect_bad_header(lost_disk, "bytes, but its header");
	expect_bad_header(too_many_disks, "more than 256 disks");

	/* The file path (streamed checksum, pread maps) rejects the same. */
	snprintf(path, sizeof(path), "%s/damaged.manifest", dir);
	memcpy(buf, good, good_len);
	buf[good_len - 40] ^= 0x01;
	f = fopen(path, "wb");
	fwrite(buf, 1, good_len, f);
	fclose(f);
	m = (struct fy_manifest *)1;
	fy_err_clear();
	CHECK(fy_manifest_open(path, &m) == -EBADMSG);
	CHECK(m == NULL);
	CHECK(strstr(fy_err_msg(), "checksum mismatch") != NULL);
	CHECK(strstr(fy_err_msg(), path) != NULL);
	CHECK(truncate(path, (off_t)good_len - 5) == 0);
	CHECK(fy_manifest_open(path, &m) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "bytes, but its header") != NULL);
	CHECK(fy_manifest_open(dir, &m) == -EBADMSG);
	snprintf(path, sizeof(path), "%s/absent", dir);
	CHECK(fy_manifest_open(path, &m) == -ENOENT);
	free(buf);
}

/* ---- the builder refuses what does not add up -------------------------- */

static void test_builder_errors(struct fy_repo *repo)
{
	struct fy_manifest_builder *b = NULL;
	struct fy_manifest h;
	struct fy_manifest_disk d;
	uint8_t e[8][FY_DIGEST_LEN];
	char path[4096];
	int i;

	for (i = 0; i < 8; i++)
		entry(1, i, 100, e[i]);
	fill_hdr(&h, "a/b");
	CHECK(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b) ==
	      -EINVAL);
	fill_hdr(&h, "x");
	h.block_size = 65537;
	CHECK(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b) ==
	      -EINVAL);
	fill_hdr(&h, "x");
	strcpy(h.parent_id, "..");
	CHECK(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b) ==
	      -EINVAL);

	fill_hdr(&h, "x");
	CHECK_RC(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b));
	if (!b)
		return;
	disk_info(&d, 1);
	CHECK(fy_manifest_builder_begin_disk(b, &d) == -EINVAL);
	disk_info(&d, 0);
	d.size = FY_DISK_SIZE_MAX + 1;
	CHECK(fy_manifest_builder_begin_disk(b, &d) == -EINVAL);
	disk_info(&d, 0);
	CHECK_RC(fy_manifest_builder_begin_disk(b, &d)); /* 11 blocks */
	CHECK(fy_manifest_builder_add(b, 1, 0, e, 1) == -EINVAL);
	CHECK(fy_manifest_builder_add(b, 0, 1, e, 1) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "expected block 0") != NULL);
	CHECK_RC(fy_manifest_builder_add(b, 0, 0, e, 8));
	CHECK(fy_manifest_builder_add(b, 0, 0, e, 1) == -EINVAL);
	CHECK(fy_manifest_builder_add(b, 0, 8, e, 4) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "past its end") != NULL);
	CHECK(fy_manifest_builder_end_disk(b, 0) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "after 8 of its 11 blocks") != NULL);
	CHECK(fy_manifest_builder_finish(b, path, sizeof(path)) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "not ended") != NULL);
	CHECK_RC(fy_manifest_builder_add(b, 0, 8, e, 3));
	CHECK_RC(fy_manifest_builder_end_disk(b, 0));
	CHECK(fy_manifest_builder_end_disk(b, 0) == -EINVAL);
	CHECK(fy_manifest_builder_add(b, 0, 11, e, 0) == -EINVAL);
	/* Too small a path buffer: nothing is left behind. */
	CHECK(fy_manifest_builder_finish(b, path, 4) == -ENAMETOOLONG);
	CHECK(count_files(fy_repo_tmpdir(repo)) == 1); /* the disk spool */
	CHECK_RC(fy_manifest_builder_finish(b, path, sizeof(path)));
	CHECK(fy_manifest_builder_finish(b, path, sizeof(path)) == -EINVAL);
	/* Committing under another id than the manifest's is refused. */
	CHECK(fy_repo_backup_commit(repo, path, "y") == -EINVAL);
	CHECK(fy_repo_backup_commit(repo, path, "../x") == -EINVAL);
	CHECK_RC(fy_repo_backup_commit(repo, path, "x"));
	fy_manifest_builder_free(b);
	fy_manifest_builder_free(NULL);
	CHECK(count_files(fy_repo_tmpdir(repo)) == 0);
	CHECK_RC(fy_repo_backup_delete(repo, "x"));
}

/* A map longer than one streaming chunk, and a manifest with no disks. */
static void test_large_and_empty(struct fy_repo *repo)
{
	const uint64_t blocks = 70001;
	struct fy_manifest_builder *b = NULL;
	struct fy_manifest *m = NULL;
	struct fy_manifest h;
	struct fy_manifest_disk d;
	uint8_t (*map)[FY_DIGEST_LEN] = calloc(blocks, FY_DIGEST_LEN);
	uint8_t (*back)[FY_DIGEST_LEN] = calloc(blocks, FY_DIGEST_LEN);
	char path[4096];
	uint64_t i, refs = 0;

	for (i = 0; i < blocks; i++)
		if (i % 1000)
			fy_sha256(&i, sizeof(i), map[i]);
	fill_hdr(&h, "large");
	h.parent_id[0] = 0;
	CHECK_RC(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b));
	memset(&d, 0, sizeof(d));
	d.size = blocks * BS - 1;
	CHECK_RC(fy_manifest_builder_begin_disk(b, &d));
	for (i = 0; i < blocks; i += 3000)
		CHECK_RC(fy_manifest_builder_add(b, 0, i, map + i,
						 blocks - i < 3000 ? blocks - i
								   : 3000));
	CHECK_RC(fy_manifest_builder_end_disk(b, 0));
	CHECK_RC(fy_manifest_builder_for_each(b, count_cb, &refs));
	CHECK(refs == blocks - 71);
	CHECK_RC(fy_manifest_builder_finish(b, path, sizeof(path)));
	CHECK_RC(fy_repo_backup_commit(repo, path, "large"));
	fy_manifest_builder_free(b);
	CHECK_RC(fy_repo_backup_open(repo, "large", &m));
	if (m) {
		CHECK(m->disks[0].block_count == blocks);
		CHECK(m->disks[0].hole_blocks == 71);
		CHECK(!m->parent_id[0]);
		CHECK_RC(fy_manifest_read_map(m, 0, 0, blocks, back));
		CHECK(!memcmp(map, back, blocks * FY_DIGEST_LEN));
		CHECK_RC(fy_manifest_read_map(m, 0, blocks - 2, 2, back));
		CHECK(!memcmp(map[blocks - 2], back[0], 2 * FY_DIGEST_LEN));
	}
	fy_manifest_free(m);
	CHECK_RC(fy_repo_backup_delete(repo, "large"));

	fill_hdr(&h, "empty");
	b = NULL;
	CHECK_RC(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b));
	CHECK_RC(fy_manifest_builder_finish(b, path, sizeof(path)));
	CHECK_RC(fy_repo_backup_commit(repo, path, "empty"));
	fy_manifest_builder_free(b);
	m = NULL;
	CHECK_RC(fy_repo_backup_open(repo, "empty", &m));
	if (m)
		CHECK(m->disk_count == 0);
	fy_manifest_free(m);
	/* An id is never replaced. */
	b = NULL;
	CHECK_RC(fy_manifest_builder_new(fy_repo_tmpdir(repo), &h, &b));
	CHECK_RC(fy_manifest_builder_finish(b, path, sizeof(path)));
	CHECK(fy_repo_backup_commit(repo, path, "empty") == -EEXIST);
	unlink(path);
	fy_manifest_builder_free(b);
	CHECK_RC(fy_repo_backup_delete(repo, "empty"));
	CHECK(fy_repo_backup_delete(repo, "empty") == -ENOENT);
	free(map);
	free(back);
}

static int list_cb(void *opaque, const char *id)
{
	char *out = opaque;

	strcat(out, id);
	strcat(out, ";");
	return 0;
}

int main(void)
{
	struct fy_repo *repo = NULL;
	struct fy_manifest *m = NULL;
	char id[FY_ID_MAX], listed[256] = "", path[8192], other[8192];
	void *data = NULL;

	make_tmpdir();
	CHECK_RC(fy_repo_init(root));
	CHECK_RC(fy_repo_open(root, 0, &repo));
	if (!repo)
		CHECK_DONE();

	fy_repo_new_backup_id(id);
	CHECK(strlen(id) == 25 && id[8] == 'T' && id[15] == 'Z' &&
	      id[16] == '-');
	build(repo, id);
	CHECK_RC(fy_repo_backup_list(repo, list_cb, listed));
	CHECK(!strncmp(listed, id, strlen(id)) &&
	      strlen(listed) == strlen(id) + 1);

	CHECK_RC(fy_repo_backup_open(repo, id, &m));
	if (m)
		compare(m, id);
	fy_manifest_free(m);
	fy_manifest_free(NULL);

	/* The same bytes parsed from memory. */
	snprintf(path, sizeof(path), "%s/backups/%s.manifest", root, id);
	CHECK_RC(fy_read_file(path, 1 << 20, &data, &good_len));
	good = data;
	m = NULL;
	CHECK_RC(fy_manifest_parse_mem(good, good_len, &m));
	if (m)
		compare(m, id);
	fy_manifest_free(m);

	/* A manifest filed under another backup's name is refused. */
	snprintf(other, sizeof(other), "%s/backups/other.manifest", root);
	CHECK(link(path, other) == 0);
	CHECK(fy_repo_backup_open(repo, "other", &m) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "holds backup") != NULL);
	unlink(other);
	CHECK(fy_repo_backup_open(repo, "../backups/x", &m) == -EINVAL);
	CHECK(fy_repo_backup_open(repo, "nope", &m) == -ENOENT);

	test_damage();
	test_builder_errors(repo);
	test_large_and_empty(repo);

	free(data);
	fy_repo_close(repo);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	CHECK_DONE();
}
