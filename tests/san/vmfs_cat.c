/*
 * vmfs_cat: the san source as a command, for the tests. Reads a file off a
 * VMFS6 volume through fy_san_source_open (the production source: O_DIRECT,
 * libaio, the extent map) and writes its bytes to stdout; with -m prints
 * the extent map instead, with -l lists a directory.
 *   vmfs_cat [-m|-l] LUN[,LUN2...]:PATH
 * Exit 1 with the reader's message on stderr when it refuses the volume.
 */
#include "san/san.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (4u << 20)

static int print_entry(void *opaque, const char *name, bool is_dir)
{
	(void)opaque;
	printf("%s%s\n", name, is_dir ? "/" : "");
	return 0;
}

static int print_run(void *opaque, uint64_t off, uint64_t len,
		     enum fy_extent_kind kind)
{
	(void)opaque;
	printf("%" PRIu64 " %" PRIu64 " %s\n", off, len,
	       kind == FY_EXTENT_ZERO ? "zero" : "data");
	return 0;
}

static int fd_pread(void *opaque, void *buf, size_t len, uint64_t offset)
{
	ssize_t got = pread((int)(intptr_t)opaque, buf, len, (off_t)offset);

	return got == (ssize_t)len ? 0 : got < 0 ? -errno : -EIO;
}

/* Lists a directory with the reader over plain (buffered) reads. */
static int list_dir(const char **luns, size_t n, const char *path)
{
	struct fy_vmfs_lun l[FY_VMFS_MAX_LUNS];
	struct fy_vmfs *v = NULL;
	size_t i;
	int rc = 1;

	for (i = 0; i < n; i++) {
		int fd = open(luns[i], O_RDONLY);
		off_t size = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);

		if (fd < 0 || size < 0) {
			fprintf(stderr, "vmfs_cat: %s: %s\n", luns[i],
				strerror(errno));
			return 1;
		}
		l[i] = (struct fy_vmfs_lun){ (void *)(intptr_t)fd,
					     (uint64_t)size, luns[i], fd_pread };
	}
	if (fy_vmfs_open(l, n, &v) == 0 &&
	    fy_vmfs_list(v, path, print_entry, NULL) == 0)
		rc = 0;
	else
		fprintf(stderr, "vmfs_cat: %s\n", fy_err_msg());
	fy_vmfs_free(v);
	for (i = 0; i < n; i++)
		close((int)(intptr_t)l[i].opaque);
	return rc;
}

int main(int argc, char **argv)
{
	const char *luns[FY_VMFS_MAX_LUNS], *path, *spec;
	char buf[4096];
	struct fy_source *src = NULL;
	size_t n;
	char mode = 'c';
	uint64_t off;
	uint8_t *data;
	int rc;

	if (argc == 3 && argv[1][0] == '-') {
		mode = argv[1][1];
		spec = argv[2];
	} else if (argc == 2) {
		spec = argv[1];
	} else {
		fprintf(stderr, "usage: vmfs_cat [-m|-l] LUN[,LUN2]:PATH\n");
		return 2;
	}
	if (fy_san_parse_spec(spec, buf, sizeof(buf), luns, FY_VMFS_MAX_LUNS,
			      &n, &path) < 0)
		goto fail;
	if (mode == 'l')
		return list_dir(luns, n, path);
	if (fy_san_source_open(luns, n, path, NULL, &src) < 0)
		goto fail;
	if (mode == 'm') {
		rc = fy_source_extents(src, 0, src->size, print_run, NULL);
		fy_source_close(src);
		return rc < 0 ? 1 : 0;
	}
	data = fy_aligned_alloc(CHUNK);
	if (!data)
		goto fail;
	for (off = 0; off < src->size; off += CHUNK) {
		size_t len = src->size - off < CHUNK ? (size_t)(src->size - off)
						      : CHUNK;
		size_t alen = (len + 4095) & ~(size_t)4095;
		struct fy_io ios[4];
		size_t k, nio = 0, piece = alen / 4 >= 4096 && alen % (4 * 4096) == 0
					   ? alen / 4 : alen;

		/* Several reads per batch, as the pipeline does. */
		for (k = 0; k < alen; k += piece)
			ios[nio++] = (struct fy_io){ data + k, piece, off + k, 0 };
		if (fy_source_read_batch(src, ios, nio) < 0)
			goto fail;
		if (fwrite(data, 1, len, stdout) != len) {
			fprintf(stderr, "vmfs_cat: write: %s\n", strerror(errno));
			return 1;
		}
	}
	free(data);
	fy_source_close(src);
	return 0;
fail:
	fprintf(stderr, "vmfs_cat: %s\n", fy_err_msg());
	fy_source_close(src);
	return 1;
}
