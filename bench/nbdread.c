/*
 * Ferry's NBD read throughput, for bench/nbd: opens an export with the
 * NBD source (nbd/) and read_batch-es all of it into memory buffers that
 * are thrown away, with a given number of connections, requests in flight
 * per connection and request size, the knobs nbdcopy has.
 *
 *   ferry-nbdread URI [--connections N] [--requests N]
 *                     [--request-size BYTES] [--tls-ca FILE]
 *
 * Prints one JSON line: bytes, seconds, MB/s (10^6 bytes per second, as
 * the benchmark prints for nbdcopy too).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "nbd/nbd.h"

int main(int argc, char **argv)
{
	struct fy_nbd_opts o;
	struct fy_source *src = NULL;
	struct fy_io *ios = NULL;
	uint8_t *buf = NULL;
	uint64_t request_size = 256 * 1024, off = 0, total = 0;
	unsigned connections = 1, requests = 64, depth, i;
	const char *uri = NULL;
	double t0, secs;
	int rc = 0;

	fy_nbd_opts_default(&o);
	for (i = 1; i < (unsigned)argc; i++) {
		const char *a = argv[i], *v = i + 1 < (unsigned)argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--connections") && v) {
			connections = (unsigned)atoi(v);
			i++;
		} else if (!strcmp(a, "--requests") && v) {
			requests = (unsigned)atoi(v);
			i++;
		} else if (!strcmp(a, "--request-size") && v) {
			if (fy_parse_size(v, &request_size) < 0)
				goto usage;
			i++;
		} else if (!strcmp(a, "--tls-ca") && v) {
			o.tls_ca = v;
			i++;
		} else if (a[0] != '-' && !uri) {
			uri = a;
		} else {
			goto usage;
		}
	}
	if (!uri || !connections || connections > FY_NBD_MAX_CONNECTIONS ||
	    !requests || requests > FY_NBD_MAX_IN_FLIGHT || !request_size ||
	    request_size > (32u << 20))
		goto usage;
	o.max_connections = connections;
	o.max_in_flight = requests;
	fy_log_set_level(FY_LOG_WARN);
	rc = fy_nbd_source_open(uri, &o, &src);
	if (rc < 0) {
		fprintf(stderr, "ferry-nbdread: %s\n", fy_err_msg());
		return 1;
	}
	/* The same number of requests in flight as nbdcopy keeps: requests
	 * per connection, on every connection. */
	depth = requests * connections;
	ios = calloc(depth, sizeof(*ios));
	buf = fy_aligned_alloc((size_t)(depth * request_size));
	if (!ios || !buf) {
		fprintf(stderr, "ferry-nbdread: out of memory\n");
		rc = -ENOMEM;
		goto out;
	}
	t0 = fy_now();
	while (off < src->size) {
		unsigned n = 0;

		while (n < depth && off < src->size) {
			uint64_t len = src->size - off < request_size
					       ? src->size - off
					       : request_size;

			ios[n].buf = buf + (size_t)n * request_size;
			ios[n].len = (size_t)len;
			ios[n].offset = off;
			off += len;
			total += len;
			n++;
		}
		rc = fy_source_read_batch(src, ios, n);
		if (rc < 0) {
			fprintf(stderr, "ferry-nbdread: %s\n", fy_err_msg());
			goto out;
		}
	}
	secs = fy_now() - t0;
	printf("{\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"mb_s\":%.1f}\n", total,
	       secs, total / secs / 1e6);
out:
	free(ios);
	free(buf);
	fy_source_close(src);
	return rc < 0 ? 1 : 0;
usage:
	fprintf(stderr, "usage: ferry-nbdread URI [--connections 1..16] "
		"[--requests 1..1024] [--request-size BYTES] [--tls-ca FILE]\n");
	return 2;
}
