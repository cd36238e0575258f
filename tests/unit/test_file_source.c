/*
 * The file / block device source, on real files: a sparse file with an
 * odd size on the build directory's filesystem (O_DIRECT and libaio), the
 * same where O_DIRECT is refused (buffered fallback), and through a loop
 * device when root.
 */
#include "common/common.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define KiB 1024u
#define MiB (1024u * 1024u)
/* Data, hole, data, hole, data at the very end of a 9 MiB + 1234 file. */
#define FILE_SIZE (9 * MiB + 1234)
#define ALIGN_UP(x) (((x) + 4095) & ~(uint64_t)4095)
/* Room for reads well past the end, which must come back zero. */
#define EXPECT_SIZE (16 * MiB)

static const struct {
	uint64_t offset, length;
} data_runs[] = {
	{ 0, 1 * MiB },
	{ 3 * MiB, 5000 }, /* ends inside a block */
	{ 6 * MiB + 8 * KiB, 100 * KiB },
	{ 9 * MiB - 8 * KiB, 8 * KiB + 1234 }, /* the odd tail */
};

static uint8_t pattern(uint64_t off)
{
	/* Never zero, and different for neighbouring blocks. */
	return (uint8_t)((off * 2654435761u) >> 13) | 1;
}

/* Writes the sparse test file at path; returns its expected content. */
static uint8_t *make_file(const char *path)
{
	uint8_t *expect = calloc(1, EXPECT_SIZE);
	size_t i;
	uint64_t j;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, FILE_SIZE) == 0);
	for (i = 0; i < sizeof(data_runs) / sizeof(data_runs[0]); i++) {
		uint64_t off = data_runs[i].offset, len = data_runs[i].length;

		for (j = 0; j < len; j++)
			expect[off + j] = pattern(off + j);
		CHECK_RC(fy_pwrite_all(fd, expect + off, len, off));
	}
	CHECK(fsync(fd) == 0);
	close(fd);
	return expect;
}

static bool on_tmpfs(const char *path)
{
	struct statfs sfs;

	return statfs(path, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC;
}

static bool refuses_direct(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECT);

	if (fd >= 0)
		close(fd);
	return fd < 0 && errno == EINVAL;
}

/*
 * Reads [0, end) of src through one read_batch of ios of assorted sizes,
 * out of order, each buffer pre-filled with garbage, and compares.
 */
static void read_and_compare(struct fy_source *src, const uint8_t *expect,
			     uint64_t end)
{
	static const size_t sizes[] = { 4 * KiB,   12 * KiB, 1 * MiB, 300 * KiB,
					64 * KiB,  8 * KiB,  2 * MiB, 4 * KiB,
					132 * KiB, 40 * KiB };
	struct fy_io ios[256];
	size_t n = 0, i;
	uint64_t off = 0;

	while (off < end && n < 256) {
		size_t len = sizes[n % (sizeof(sizes) / sizeof(sizes[0]))];

		ios[n].buf = fy_aligned_alloc(len);
		memset(ios[n].buf, 0xa5, len);
		ios[n].len = len;
		ios[n].offset = off;
		ios[n].result = 1;
		off += len;
		n++;
	}
	CHECK(off >= end && off <= EXPECT_SIZE);
	/* Swap neighbours so the batch is not in file order. */
	for (i = 0; i + 1 < n; i += 2) {
		struct fy_io t = ios[i];

		ios[i] = ios[i + 1];
		ios[i + 1] = t;
	}
	CHECK_RC(fy_source_read_batch(src, ios, n));
	for (i = 0; i < n; i++) {
		CHECK(ios[i].result == 0);
		/* expect has zeros past the size: the tail must be zeroed. */
		if (memcmp(ios[i].buf, expect + ios[i].offset, ios[i].len)) {
			fprintf(stderr, "%s: io at %llu (%zu bytes) differs\n",
				src->name, (unsigned long long)ios[i].offset,
				ios[i].len);
			CHECK(!"content");
		}
		free(ios[i].buf);
	}
}

struct extent {
	uint64_t offset, length;
	enum fy_extent_kind kind;
};

struct extent_list {
	struct extent e[64];
	size_t n;
};

static int collect(void *opaque, uint64_t offset, uint64_t length,
		   enum fy_extent_kind kind)
{
	struct extent_list *l = opaque;

	if (l->n == 64)
		return -ENOSPC;
	l->e[l->n++] = (struct extent){ offset, length, kind };
	return 0;
}

/* Extents must tile [start, end) in order, alternate, and be truthful. */
static void check_extents(const struct extent_list *l, const uint8_t *expect,
			  uint64_t start, uint64_t end)
{
	uint64_t pos = start;
	size_t i;

	CHECK(l->n > 0);
	for (i = 0; i < l->n; i++) {
		CHECK(l->e[i].offset == pos);
		CHECK(l->e[i].length > 0);
		if (i > 0)
			CHECK(l->e[i].kind != l->e[i - 1].kind);
		if (l->e[i].kind == FY_EXTENT_ZERO)
			CHECK(fy_is_zero(expect + l->e[i].offset,
					 l->e[i].length));
		pos += l->e[i].length;
	}
	CHECK(pos == end);
}

static bool has_zero(const struct extent_list *l, uint64_t from, uint64_t to)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (l->e[i].kind == FY_EXTENT_ZERO && l->e[i].offset <= from &&
		    l->e[i].offset + l->e[i].length >= to)
			return true;
	return false;
}

static void test_direct(const char *dir)
{
	struct fy_file_source_opts opts = { .queue_depth = 4,
					    .io_size = 64 * KiB };
	char path[512];
	struct extent_list l = { .n = 0 };
	struct fy_source *src = NULL;
	uint8_t *expect, *buf;
	bool direct;

	snprintf(path, sizeof(path), "%s/test_file_source.img", dir);
	expect = make_file(path);
	direct = !refuses_direct(path);
	if (!direct)
		printf("note: %s refuses O_DIRECT; the O_DIRECT path is not "
		       "tested here\n", dir);

	CHECK_RC(fy_file_source_open(path, &opts, &src));
	if (!src)
		goto out;
	CHECK(src->size == FILE_SIZE);
	CHECK(src->align == (direct ? 4096u : 1u));
	CHECK(!strcmp(src->ops->name, "file"));
	/* Whole file plus a little past the end, with many pieces. */
	read_and_compare(src, expect, ALIGN_UP(FILE_SIZE) + 16 * KiB);

	/* One read of the block holding the end of the file. */
	buf = fy_aligned_alloc(8 * KiB);
	memset(buf, 0xff, 8 * KiB);
	CHECK_RC(fy_source_read(src, buf, 8 * KiB, ALIGN_UP(FILE_SIZE) - 4096));
	CHECK(!memcmp(buf, expect + ALIGN_UP(FILE_SIZE) - 4096, 8 * KiB));
	/* Entirely past the end: zeros, no I/O. */
	memset(buf, 0xff, 8 * KiB);
	CHECK_RC(fy_source_read(src, buf, 8 * KiB, 100 * MiB));
	CHECK(fy_is_zero(buf, 8 * KiB));

	/* O_DIRECT's alignment is the caller's to keep. */
	if (direct) {
		struct fy_io io = { .buf = buf + 512, .len = 4096 };

		CHECK(fy_source_read(src, buf + 512, 4096, 0) == -EINVAL);
		CHECK(strstr(fy_err_msg(), "aligned") != NULL);
		CHECK(fy_source_read(src, buf, 4096, 100) == -EINVAL);
		CHECK(fy_source_read(src, buf, 100, 0) == -EINVAL);
		/* Straight through the table, past the dispatcher. */
		CHECK(src->ops->read_batch(src, &io, 1) == -EINVAL);
		CHECK(io.result == -EINVAL);
		CHECK(strstr(fy_err_msg(), "4096") != NULL);
	}
	free(buf);

	/* Extents: the holes, in order, covering the whole range. */
	CHECK_RC(fy_source_extents(src, 0, UINT64_MAX / 2, collect, &l));
	check_extents(&l, expect, 0, FILE_SIZE);
	CHECK(l.e[0].kind == FY_EXTENT_DATA);
	CHECK(l.e[0].length == 1 * MiB);
	CHECK(has_zero(&l, 1 * MiB, 3 * MiB));
	CHECK(has_zero(&l, 3 * MiB + 8 * KiB, 6 * MiB));
	CHECK(has_zero(&l, 6 * MiB + 108 * KiB, 9 * MiB - 8 * KiB));
	CHECK(l.e[l.n - 1].kind == FY_EXTENT_DATA);
	/* A range starting inside data and ending inside a hole. */
	l.n = 0;
	CHECK_RC(fy_source_extents(src, 512 * KiB, 2 * MiB, collect, &l));
	check_extents(&l, expect, 512 * KiB, 2560 * KiB);
	CHECK(l.n == 2 && l.e[0].length == 512 * KiB &&
	      l.e[1].kind == FY_EXTENT_ZERO);
	/* Beyond the size: nothing to report. */
	l.n = 0;
	CHECK_RC(fy_source_extents(src, 100 * MiB, 1 * MiB, collect, &l));
	CHECK(l.n == 0);
	/* A callback's error stops the walk and comes back. */
	l.n = 64;
	CHECK(fy_source_extents(src, 0, FILE_SIZE, collect, &l) == -ENOSPC);
	fy_source_close(src);
	src = NULL;

	/* Defaults, and an io_size that is not a multiple of 4096. */
	CHECK_RC(fy_file_source_open(path, NULL, &src));
	read_and_compare(src, expect, FILE_SIZE);
	fy_source_close(src);
	opts.io_size = 100000;
	opts.queue_depth = 1;
	CHECK_RC(fy_file_source_open(path, &opts, &src));
	read_and_compare(src, expect, FILE_SIZE);
	fy_source_close(src);
	opts.no_direct = true;
	CHECK_RC(fy_file_source_open(path, &opts, &src));
	CHECK(src->align == 1);
	read_and_compare(src, expect, FILE_SIZE);
	fy_source_close(src);
	fy_source_close(NULL);

	opts = (struct fy_file_source_opts){ .queue_depth = 100000 };
	CHECK(fy_file_source_open(path, &opts, &src) == -EINVAL);
	opts = (struct fy_file_source_opts){ .io_size = 1u << 30 };
	CHECK(fy_file_source_open(path, &opts, &src) == -EINVAL);
out:
	unlink(path);
	free(expect);
}

/* Where O_DIRECT is refused: one warning, then buffered reads. */
static void test_fallback_in(const char *dir)
{
	char path[512], log[] = "test_file_source_log_XXXXXX";
	struct fy_source *src = NULL;
	uint8_t *expect, *buf;
	size_t len = 0;
	void *text = NULL;
	bool refused;
	int fd;

	snprintf(path, sizeof(path), "%s/ferry_test_file_source_%ld", dir,
		 (long)getpid());
	expect = make_file(path);
	refused = refuses_direct(path);
	fd = mkstemp(log);
	close(fd);
	CHECK_RC(fy_log_set_file(log));
	CHECK_RC(fy_file_source_open(path, NULL, &src));
	CHECK_RC(fy_log_set_file(NULL));
	CHECK_RC(fy_read_file(log, 1 << 16, &text, &len));
	if (refused) {
		CHECK(text && strstr(text, "O_DIRECT was refused") &&
		      strstr(text, "buffered reads"));
		/* Exactly one line. */
		CHECK(text && strchr(text, '\n') == (char *)text + len - 1);
	} else {
		printf("note: %s accepts O_DIRECT (tmpfs does since Linux "
		       "6.6)\n", dir);
		CHECK(len == 0);
	}
	free(text);
	unlink(log);
	if (src) {
		CHECK(src->align == (refused ? 1u : 4096u));
		read_and_compare(src, expect, FILE_SIZE + 4096);
		if (refused) {
			/* Buffered reads take any alignment. */
			buf = malloc(10001);
			CHECK_RC(fy_source_read(src, buf + 1, 10000,
						3 * MiB - 7));
			CHECK(!memcmp(buf + 1, expect + 3 * MiB - 7, 10000));
			free(buf);
		}
		fy_source_close(src);
	}
	unlink(path);
	free(expect);
}

/*
 * /dev/shm is the classic refuser, but tmpfs takes O_DIRECT since Linux
 * 6.6; as root also mount a ramfs, which still refuses it.
 */
static void test_fallback(void)
{
	char dir[] = "test_file_source_ramfs_XXXXXX";

	if (on_tmpfs("/dev/shm"))
		test_fallback_in("/dev/shm");
	else
		printf("note: /dev/shm is not tmpfs; not testing it\n");
	if (geteuid() != 0 || !mkdtemp(dir)) {
		printf("note: not root; skipping the ramfs fallback test\n");
		return;
	}
	if (mount("ferry-test", dir, "ramfs", 0, "mode=0700") == 0) {
		test_fallback_in(dir);
		CHECK(umount2(dir, MNT_DETACH) == 0);
	} else {
		printf("note: cannot mount a ramfs (%s); skipping the ramfs "
		       "fallback test\n", strerror(errno));
	}
	rmdir(dir);
}

/* Attaches path to a free loop device; dev is empty when that fails. */
static void loop_attach(const char *path, char *dev, size_t devlen)
{
	char cmd[1024], line[256];
	FILE *p;

	dev[0] = '\0';
	snprintf(cmd, sizeof(cmd), "losetup --find --show '%s' 2>/dev/null",
		 path);
	p = popen(cmd, "r");
	if (!p)
		return;
	/* losetup may also warn that the odd tail fits no sector. */
	while (fgets(line, sizeof(line), p))
		if (!strncmp(line, "/dev/loop", 9))
			snprintf(dev, devlen, "%.*s",
				 (int)strcspn(line, "\n"), line);
	pclose(p);
}

/* The block device path: a loop device on the same sparse file. */
static void test_loop_device(const char *dir)
{
	char path[512], cmd[128], dev[64];
	struct fy_source *src = NULL;
	struct extent_list l = { .n = 0 };
	uint8_t *expect;

	if (geteuid() != 0 || system("command -v losetup >/dev/null") != 0) {
		printf("note: not root or no losetup; skipping the block "
		       "device test\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/test_file_source_loop.img", dir);
	expect = make_file(path);
	loop_attach(path, dev, sizeof(dev));
	if (!dev[0]) {
		printf("note: losetup could not attach a loop device; "
		       "skipping the block device test\n");
		goto out;
	}
	printf("reading %s through %s\n", path, dev);
	CHECK_RC(fy_file_source_open(dev, NULL, &src));
	if (src) {
		/* A loop device rounds the file down to 512-byte sectors. */
		uint64_t size = FILE_SIZE & ~(uint64_t)511;

		CHECK(src->size == size);
		CHECK(src->align == 4096);
		memset(expect + size, 0, FILE_SIZE - size);
		read_and_compare(src, expect, ALIGN_UP(FILE_SIZE) + 4096);
		CHECK(fy_source_extents(src, 0, size, collect, &l) ==
		      -ENOTSUP);
		CHECK(l.n == 0);
		fy_source_close(src);
	}
	snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
	CHECK(system(cmd) == 0);
out:
	unlink(path);
	free(expect);
}

/* A file cut short while open is an error, not silent zeros. */
static void test_errors(const char *dir)
{
	char path[512];
	struct fy_source *src = NULL;
	uint8_t *buf = fy_aligned_alloc(64 * KiB);
	int fd;

	snprintf(path, sizeof(path), "%s/test_file_source_short.img", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	memset(buf, 7, 64 * KiB);
	CHECK_RC(fy_pwrite_all(fd, buf, 64 * KiB, 0));
	CHECK_RC(fy_file_source_open(path, NULL, &src));
	CHECK(ftruncate(fd, 16 * KiB) == 0);
	close(fd);
	if (src) {
		CHECK(fy_source_read(src, buf, 64 * KiB, 0) == -EIO);
		CHECK(strstr(fy_err_msg(), "truncated") != NULL);
		fy_source_close(src);
	}
	unlink(path);
	free(buf);

	CHECK(fy_file_source_open("/dev/null", NULL, &src) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "not a regular file") != NULL);
	CHECK(fy_file_source_open(dir, NULL, &src) == -EINVAL);
	CHECK(fy_file_source_open("/nonexistent/x", NULL, &src) == -ENOENT);
	CHECK(strstr(fy_err_msg(), "/nonexistent/x") != NULL);
}

/* ios of len bytes each from off on, buffers filled with garbage. */
static void make_ios(struct fy_io *ios, size_t n, uint64_t off, size_t len)
{
	size_t i;

	for (i = 0; i < n; i++) {
		ios[i].buf = fy_aligned_alloc(len);
		memset(ios[i].buf, 0xa5, len);
		ios[i].len = len;
		ios[i].offset = off + i * len;
		ios[i].result = 1;
	}
}

static void check_ios(struct fy_io *ios, size_t n, const uint8_t *expect)
{
	size_t i;

	for (i = 0; i < n; i++) {
		CHECK(ios[i].result == 0);
		CHECK(!memcmp(ios[i].buf, expect + ios[i].offset, ios[i].len));
		free(ios[i].buf);
	}
}

/*
 * Two batches in flight (start A, start B, wait A, start C, wait B, wait
 * C), with more pieces than requests, O_DIRECT and buffered: the bytes
 * are the file's, and the contract (oldest first, at most two, no read
 * between) is enforced by name.
 */
static void test_two_batches(const char *dir)
{
	static const bool no_direct[] = { false, true };
	char path[512];
	struct fy_io a[5], b[5], c[3], extra;
	uint8_t *expect;
	size_t k, i;

	snprintf(path, sizeof(path), "%s/test_file_source_two.img", dir);
	expect = make_file(path);
	for (k = 0; k < 2; k++) {
		struct fy_file_source_opts opts = { .queue_depth = 4,
						    .io_size = 64 * KiB,
						    .no_direct = no_direct[k] };
		struct fy_source *src = NULL;

		CHECK_RC(fy_file_source_open(path, &opts, &src));
		if (!src)
			continue;
		make_ios(a, 5, 0, 1 * MiB);
		make_ios(b, 5, 5 * MiB, 512 * KiB);
		/* The last batch runs past the end: zeros. */
		make_ios(c, 3, 7 * MiB + 512 * KiB, 1 * MiB);
		CHECK_RC(fy_source_start(src, a, 5));
		CHECK_RC(fy_source_start(src, b, 5));

		make_ios(&extra, 1, 0, 4096);
		CHECK(fy_source_start(src, &extra, 1) == -EBUSY);
		CHECK(extra.result == -EBUSY);
		CHECK(strstr(fy_err_msg(), "2 batches started") != NULL);
		CHECK(fy_source_read_batch(src, &extra, 1) == -EBUSY);
		CHECK(fy_source_read(src, extra.buf, 4096, 0) == -EBUSY);
		CHECK(strstr(fy_err_msg(), "started") != NULL);
		free(extra.buf);
		CHECK(fy_source_wait(src, b, 5) == -EINVAL);
		CHECK(strstr(fy_err_msg(), "oldest") != NULL);

		CHECK_RC(fy_source_wait(src, a, 5));
		check_ios(a, 5, expect);
		CHECK_RC(fy_source_start(src, c, 3));
		CHECK_RC(fy_source_wait(src, b, 5));
		check_ios(b, 5, expect);
		CHECK_RC(fy_source_wait(src, c, 3));
		check_ios(c, 3, expect);
		/* Nothing started: reads work again. */
		read_and_compare(src, expect, FILE_SIZE);
		fy_source_close(src);
	}
	unlink(path);
	free(expect);

	/* Each batch has its own failure and message: a batch cut short
	 * by a truncation fails, the batch started after it does not. */
	{
		struct fy_source *src = NULL;
		uint8_t *buf = fy_aligned_alloc(64 * KiB);
		int fd;

		snprintf(path, sizeof(path), "%s/test_file_source_two_short.img",
			 dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		memset(buf, 7, 64 * KiB);
		CHECK_RC(fy_pwrite_all(fd, buf, 64 * KiB, 0));
		CHECK_RC(fy_file_source_open(path, NULL, &src));
		CHECK(ftruncate(fd, 16 * KiB) == 0);
		close(fd);
		free(buf);
		if (src) {
			make_ios(a, 2, 32 * KiB, 16 * KiB);
			make_ios(b, 2, 0, 8 * KiB);
			CHECK_RC(fy_source_start(src, a, 2));
			CHECK_RC(fy_source_start(src, b, 2));
			CHECK(fy_source_wait(src, a, 2) == -EIO);
			CHECK(a[0].result == -EIO && a[1].result == -EIO);
			CHECK(strstr(fy_err_msg(), "read of 16384 bytes at "
					"offset 32768") != NULL);
			CHECK(strstr(fy_err_msg(), "truncated") != NULL);
			fy_err_clear();
			CHECK_RC(fy_source_wait(src, b, 2));
			for (i = 0; i < 2; i++) {
				CHECK(b[i].result == 0);
				CHECK(((uint8_t *)b[i].buf)[0] == 7);
				free(a[i].buf);
				free(b[i].buf);
			}
			fy_source_close(src);
		}
		unlink(path);
	}
}

/* A source that only reads one io at a time. */
static int counting_read(struct fy_source *src, void *buf, size_t len,
			 uint64_t offset)
{
	(void)src;
	memset(buf, (int)(offset / 4096) + 1, len);
	return 0;
}

/* Without start and wait, the dispatcher reads the batch in wait. */
static void test_start_fallback(void)
{
	static const struct fy_source_ops ops = { .name = "plain",
						  .read = counting_read };
	struct fy_source src = { .ops = &ops, .size = 1 * MiB, .align = 4096 };
	struct fy_io ios[2];
	size_t i;

	make_ios(ios, 2, 8192, 4096);
	CHECK_RC(fy_source_start(&src, ios, 2));
	/* Started, not read yet. */
	CHECK(((uint8_t *)ios[0].buf)[0] == 0xa5);
	CHECK_RC(fy_source_wait(&src, ios, 2));
	for (i = 0; i < 2; i++) {
		CHECK(ios[i].result == 0);
		CHECK(((uint8_t *)ios[i].buf)[4095] == 3 + i);
		free(ios[i].buf);
	}
	/* The contract is checked at start, before anything is started. */
	make_ios(ios, 1, 100, 4096);
	CHECK(fy_source_start(&src, ios, 1) == -EINVAL);
	CHECK(ios[0].result == -EINVAL);
	free(ios[0].buf);
}

/* Pages of [off, off+len) of path in the page cache (mincore). */
static size_t resident_pages(const char *path, uint64_t off, uint64_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned char vec[4096];
	size_t n, i, count = 0;
	void *map;
	int fd;

	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	n = (size_t)((len + (uint64_t)page - 1) / (uint64_t)page);
	CHECK(n <= sizeof(vec) && off % (uint64_t)page == 0);
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
	CHECK(map != MAP_FAILED);
	if (map != MAP_FAILED) {
		CHECK(mincore(map, len, vec) == 0);
		for (i = 0; i < n; i++)
			count += vec[i] & 1;
		munmap(map, len);
	}
	close(fd);
	return count;
}

/* Writes back and drops path's pages from the page cache. */
static void evict(const char *path)
{
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0);
	CHECK(fdatasync(fd) == 0);
	CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
	close(fd);
}

/*
 * vixDiskLib.disklib.EnableCache: with cached set, reads go through the
 * page cache (what was read stays resident, buffers need no alignment);
 * without, O_DIRECT leaves the cache as it was.
 */
static void test_cache(const char *dir)
{
	struct fy_file_source_opts opts = { .queue_depth = 4,
					    .io_size = 64 * KiB,
					    .cached = true };
	uint64_t first = data_runs[0].length; /* 1 MiB of data at 0 */
	size_t pages = (size_t)(first / (uint64_t)sysconf(_SC_PAGESIZE));
	struct fy_source *src = NULL;
	char path[512], log[] = "test_file_source_cache_XXXXXX";
	uint8_t *expect, *buf;
	size_t len = 0, before;
	void *text = NULL;
	int fd;

	snprintf(path, sizeof(path), "%s/test_file_source_cache.img", dir);
	expect = make_file(path);
	fd = mkstemp(log);
	close(fd);
	CHECK_RC(fy_log_set_file(log));

	evict(path);
	before = resident_pages(path, 0, first);
	CHECK_RC(fy_file_source_open(path, &opts, &src));
	if (!src)
		goto out;
	/* Buffered: no alignment asked of the caller. */
	CHECK(src->align == 1);
	read_and_compare(src, expect, FILE_SIZE + 16 * KiB);
	buf = malloc(5000);
	CHECK_RC(fy_source_read(src, buf, 5000, 3 * MiB + 1));
	CHECK(!memcmp(buf, expect + 3 * MiB + 1, 5000));
	free(buf);
	fy_source_close(src);
	src = NULL;
	/* What was read is in the page cache now. */
	CHECK(resident_pages(path, 0, first) == pages);
	printf("cache on: %zu of %zu pages resident before, %zu after\n",
	       before, pages, resident_pages(path, 0, first));

	/* Off (the default): O_DIRECT, the cache stays as it was. */
	if (!refuses_direct(path)) {
		opts.cached = false;
		evict(path);
		before = resident_pages(path, 0, first);
		CHECK_RC(fy_file_source_open(path, &opts, &src));
		CHECK(src && src->align == 4096);
		if (src)
			read_and_compare(src, expect, FILE_SIZE);
		fy_source_close(src);
		CHECK(resident_pages(path, 0, first) <= before);
		printf("cache off: %zu of %zu pages resident before, %zu "
		       "after\n", before, pages,
		       resident_pages(path, 0, first));
	} else {
		printf("note: %s refuses O_DIRECT; the cache-off half is not "
		       "tested here\n", dir);
	}
	/* Asking for the cache is no reason for the O_DIRECT warning. */
	CHECK_RC(fy_log_set_file(NULL));
	CHECK_RC(fy_read_file(log, 1 << 20, &text, &len));
	CHECK(len == 0 || !memmem(text, len, "O_DIRECT", 8));
	free(text);
out:
	unlink(log);
	unlink(path);
	free(expect);
}

int main(void)
{
	char dir[4096];

	/* ctest runs in the build tree, a real filesystem, which /tmp may
	 * not be: O_DIRECT and SEEK_DATA are tested there. */
	if (!getcwd(dir, sizeof(dir)))
		return 1;
	test_direct(dir);
	test_cache(dir);
	test_fallback();
	test_loop_device(dir);
	test_errors(dir);
	test_two_batches(dir);
	test_start_fallback();
	CHECK_DONE();
}
