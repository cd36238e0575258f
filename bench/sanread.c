/*
 * The san source's read throughput, for bench/san: opens a flat file on a
 * VMFS6 volume with fy_san_source_open (O_DIRECT, libaio, the extent map)
 * and read_batch-es all of it into memory buffers that are thrown away.
 *
 *   ferry-sanread LUN[,LUN2...]:PATH [--requests N] [--request-size BYTES]
 *   ferry-sanread --map LUN:PATH     the file's runs on the LUN, one per
 *                                    line: "lun offset length" (data only)
 *
 * Prints one JSON line: bytes, seconds, MB/s (10^6 bytes per second, as
 * the benchmark prints for fio too).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "san/san.h"

static int fd_pread(void *opaque, void *buf, size_t len, uint64_t offset)
{
	ssize_t n = pread(*(int *)opaque, buf, len, (off_t)offset);

	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

static int print_map(const char *spec)
{
	const char *luns[FY_VMFS_MAX_LUNS], *path;
	struct fy_vmfs_lun l[FY_VMFS_MAX_LUNS];
	int fds[FY_VMFS_MAX_LUNS];
	struct fy_vmfs *v = NULL;
	struct fy_vmfs_map m;
	char buf[4096];
	size_t n, i;

	if (fy_san_parse_spec(spec, buf, sizeof(buf), luns, FY_VMFS_MAX_LUNS,
			      &n, &path) < 0)
		goto fail;
	for (i = 0; i < n; i++) {
		fds[i] = open(luns[i], O_RDONLY);
		if (fds[i] < 0) {
			fy_err_set(-errno, "%s: %s", luns[i], strerror(errno));
			goto fail;
		}
		l[i] = (struct fy_vmfs_lun){ &fds[i],
			(uint64_t)lseek(fds[i], 0, SEEK_END), luns[i], fd_pread };
	}
	if (fy_vmfs_open(l, n, &v) < 0 || fy_vmfs_map_file(v, path, &m) < 0)
		goto fail;
	for (i = 0; i < m.n; i++)
		if (m.runs[i].kind == FY_VMFS_RUN_DATA)
			printf("%u %" PRIu64 " %" PRIu64 "\n", m.runs[i].lun,
			       m.runs[i].lun_offset, m.runs[i].length);
	fy_vmfs_map_release(&m);
	fy_vmfs_free(v);
	return 0;
fail:
	fprintf(stderr, "ferry-sanread: %s\n", fy_err_msg());
	return 1;
}

int main(int argc, char **argv)
{
	const char *luns[FY_VMFS_MAX_LUNS], *path, *spec = NULL;
	struct fy_file_source_opts fo = { 0 };
	struct fy_source *src = NULL;
	struct fy_io *ios = NULL;
	uint64_t request_size = 1 << 20, off = 0, total = 0;
	unsigned requests = 16, i;
	uint8_t *bufs = NULL;
	char sbuf[4096];
	size_t n;
	double t0, secs;

	if (argc == 3 && !strcmp(argv[1], "--map"))
		return print_map(argv[2]);
	for (i = 1; i < (unsigned)argc; i++) {
		const char *a = argv[i], *v = i + 1 < (unsigned)argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--requests") && v) {
			requests = (unsigned)atoi(v);
			i++;
		} else if (!strcmp(a, "--request-size") && v) {
			request_size = strtoull(v, NULL, 10);
			i++;
		} else {
			spec = a;
		}
	}
	if (!spec || requests == 0 || requests > 1024 || request_size < 4096 ||
	    request_size % 4096 || request_size > (64u << 20)) {
		fprintf(stderr, "usage: ferry-sanread LUN[,LUN2]:PATH [--requests N] "
			"[--request-size BYTES]\n");
		return 2;
	}
	if (fy_san_parse_spec(spec, sbuf, sizeof(sbuf), luns, FY_VMFS_MAX_LUNS,
			      &n, &path) < 0)
		goto fail;
	fo.queue_depth = requests;
	fo.io_size = (size_t)request_size;
	t0 = fy_now();
	if (fy_san_source_open(luns, n, path, &fo, &src) < 0)
		goto fail;
	bufs = fy_aligned_alloc((size_t)(requests * request_size));
	ios = calloc(requests, sizeof(*ios));
	if (!bufs || !ios)
		goto fail;
	while (off < src->size) {
		size_t k = 0;

		for (; k < requests && off < src->size; k++) {
			uint64_t len = src->size - off < request_size
					       ? (src->size - off + 4095) & ~4095ull
					       : request_size;

			ios[k] = (struct fy_io){ bufs + k * request_size,
						 (size_t)len, off, 0 };
			off += len;
		}
		if (fy_source_read_batch(src, ios, k) < 0)
			goto fail;
	}
	total = src->size;
	secs = fy_now() - t0;
	printf("{\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"MBps\":%.1f}\n", total,
	       secs, total / secs / 1e6);
	free(ios);
	free(bufs);
	fy_source_close(src);
	return 0;
fail:
	fprintf(stderr, "ferry-sanread: %s\n", fy_err_msg());
	free(ios);
	free(bufs);
	fy_source_close(src);
	return 1;
}
