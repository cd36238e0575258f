/*
 * The san source's read throughput, for bench/san: opens a flat file on a
 * VMFS6 volume with fy_san_source_open (O_DIRECT, libaio, the extent map)
 * and reads all of it into memory buffers that are thrown away, as the
 * backup pipeline's reader does: batches of --requests reads, the next
 * batch started before the previous one is waited for.
 *
 *   ferry-sanread LUN[,LUN2...]:PATH [--requests N] [--request-size BYTES]
 *   ferry-sanread --map LUN:PATH     the file's runs on the LUN, one per
 *                                    line: "lun offset length" (data only)
 *
 * Prints one JSON line: bytes, seconds, MB/s (10^6 bytes per second, as
 * the benchmark prints for fio too) of the reads alone, as fio times its
 * own; open_seconds is the volume's metadata and the extent map.
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

/* Fills batch's ios with the next up to requests reads from *off. */
static size_t next_batch(const struct fy_source *src, struct fy_io *ios,
			 uint8_t *bufs, unsigned requests,
			 uint64_t request_size, uint64_t *off)
{
	size_t k = 0;

	for (; k < requests && *off < src->size; k++) {
		uint64_t len = src->size - *off < request_size
				       ? (src->size - *off + 4095) & ~4095ull
				       : request_size;

		ios[k] = (struct fy_io){ bufs + k * request_size, (size_t)len,
					 *off, 0 };
		*off += len;
	}
	return k;
}

int main(int argc, char **argv)
{
	const char *luns[FY_VMFS_MAX_LUNS], *path, *spec = NULL;
	struct fy_file_source_opts fo = { 0 };
	struct fy_source *src = NULL;
	struct fy_io *ios = NULL;
	uint64_t request_size = 1 << 20, off = 0, total = 0;
	unsigned requests = 16, i, cur = 0;
	size_t n, nb[2] = { 0, 0 };
	uint8_t *bufs = NULL;
	char sbuf[4096];
	double t0, t1, secs;

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
	/* Two batches' buffers: one being waited for, one in flight. */
	bufs = fy_aligned_alloc((size_t)(2 * requests * request_size));
	ios = calloc(2 * requests, sizeof(*ios));
	if (!bufs || !ios)
		goto fail;
	t1 = fy_now();
	for (;;) {
		struct fy_io *b = ios + cur * requests;

		nb[cur] = next_batch(src, b, bufs + cur * requests * request_size,
				     requests, request_size, &off);
		if (nb[cur] && fy_source_start(src, b, nb[cur]) < 0)
			goto fail;
		cur ^= 1;
		if (nb[cur] && fy_source_wait(src, ios + cur * requests,
					      nb[cur]) < 0)
			goto fail;
		if (!nb[cur ^ 1])
			break;
	}
	total = src->size;
	secs = fy_now() - t1;
	printf("{\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"MBps\":%.1f,"
	       "\"open_seconds\":%.3f}\n", total, secs, total / secs / 1e6,
	       t1 - t0);
	free(ios);
	free(bufs);
	fy_source_close(src);
	return 0;
fail:
	fprintf(stderr, "ferry-sanread: %s\n", fy_err_msg());
	/* Closed first: closing waits for reads still in flight. */
	fy_source_close(src);
	free(ios);
	free(bufs);
	return 1;
}
