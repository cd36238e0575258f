/*
 * nbd_probe: drives the NBD source against a real server for the shell
 * tests, and checks what a user of the source would see.
 *
 *   nbd_probe [options] read URI REF     whole export equals file REF
 *   nbd_probe [options] sparse URI REF   extents, then only data is read;
 *                                        fewer bytes cross the wire
 *   nbd_probe [options] fail-open URI TEXT   opening fails, saying TEXT
 *   nbd_probe [options] fail-read URI TEXT   reading fails, saying TEXT
 *   nbd_probe [options] fail-extents URI TEXT extents() fails, saying TEXT
 *   nbd_probe [options] no-extents URI   extents() answers -ENOTSUP
 *   nbd_probe [options] write URI SRC    writes file SRC over the export
 *                                        (fy_nbd_writer, io-size writes
 *                                        of two pieces each), flushes
 *   nbd_probe [options] fail-write URI TEXT  opening for writing or the
 *                                        first write fails, saying TEXT
 *
 * Exit status 0 when every check holds, 1 otherwise (with a reason).
 */
#include "common/common.h"
#include "nbd/nbd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static struct fy_nbd_opts opts;
static const char *marker;
static uint64_t marker_at;
static size_t io_size = 1 << 20;
static int expect_reconnects = -1, expect_conns = -1, expect_block = -1;
static bool expect_tls, expect_multi, no_odd;

static int fail(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "nbd_probe: ");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, "\n");
	return 1;
}

static void *load(const char *path, size_t *len)
{
	void *data;

	if (fy_read_file(path, (size_t)1 << 30, &data, len)) {
		fprintf(stderr, "nbd_probe: %s\n", fy_err_msg());
		exit(1);
	}
	return data;
}

static int print_stats(struct fy_source *src)
{
	struct fy_nbd_stats st;
	int bad = 0;

	if (fy_nbd_stats(src, &st))
		return fail("%s%s", fy_err_msg(), "");
	printf("stats: size=%" PRIu64 " wire=%" PRIu64 " data=%" PRIu64
	       " holes=%" PRIu64 " reads=%" PRIu64 " block_status=%" PRIu64
	       " reconnects=%" PRIu64 " connections=%u blocks=%u/%u/%u"
	       " tls=%d structured=%d allocation=%d multi_conn=%d\n",
	       st.size, st.wire_bytes, st.data_bytes, st.hole_bytes,
	       st.read_requests, st.block_status_calls, st.reconnects,
	       st.connections, st.min_block, st.preferred_block,
	       st.max_payload, st.tls, st.structured_replies,
	       st.base_allocation, st.multi_conn);
	if (expect_reconnects >= 0 &&
	    st.reconnects < (uint64_t)expect_reconnects)
		bad |= fail("expected a reconnect%s%s", "", "");
	if (expect_conns >= 0 && st.connections != (unsigned)expect_conns)
		bad |= fail("wrong number of connections%s%s", "", "");
	if (expect_block >= 0 && st.min_block != (unsigned)expect_block)
		bad |= fail("wrong minimum block size%s%s", "", "");
	if (expect_tls && !st.tls)
		bad |= fail("expected TLS%s%s", "", "");
	if (expect_multi && !st.multi_conn)
		bad |= fail("expected multi-conn%s%s", "", "");
	return bad;
}

/* Reads [0, size) in batches of 8 ios and compares with ref. */
static int read_all(struct fy_source *src, const uint8_t *ref, size_t size,
		    bool compare)
{
	struct fy_io ios[8];
	size_t nbuf = size / io_size + 1 < 8 ? size / io_size + 1 : 8;
	uint8_t *buf = malloc(nbuf * io_size);
	uint64_t off = 0;
	bool marked = false;
	size_t i, n;
	int rc = 0, fd;

	if (!buf)
		return -ENOMEM;
	while (off < size) {
		for (n = 0; n < nbuf && off < size; n++) {
			ios[n].buf = buf + n * io_size;
			ios[n].len = size - off < io_size ? size - off
							  : io_size;
			ios[n].offset = off;
			ios[n].result = 1;
			off += ios[n].len;
		}
		rc = fy_source_read_batch(src, ios, n);
		if (rc)
			break;
		for (i = 0; i < n; i++) {
			if (ios[i].result) {
				rc = fy_err_set(-EIO, "io %zu has result %d "
						"after a clean batch", i,
						ios[i].result);
				goto out;
			}
			if (compare && memcmp(ios[i].buf, ref + ios[i].offset,
					      ios[i].len)) {
				rc = fy_err_set(-EIO, "data differs in %zu "
						"bytes at %" PRIu64,
						ios[i].len, ios[i].offset);
				goto out;
			}
		}
		if (marker && !marked && off >= marker_at) {
			fd = open(marker, O_CREAT | O_WRONLY, 0644);
			if (fd >= 0)
				close(fd);
			marked = true;
		}
	}
out:
	free(buf);
	return rc;
}

/* Small reads at awkward places, and past the end. */
static int read_odd(struct fy_source *src, const uint8_t *ref, size_t size)
{
	static const uint64_t offs[] = { 0, 1, 511, 4095, 4097, 65535 };
	uint8_t buf[9000];
	size_t i, len = 3001, want;
	int rc;

	for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		if (offs[i] + len > size)
			continue;
		rc = fy_source_read(src, buf, len, offs[i]);
		if (rc)
			return rc;
		if (memcmp(buf, ref + offs[i], len))
			return fy_err_set(-EIO, "odd read at %" PRIu64
					  " differs", offs[i]);
	}
	/* Straddling the end: the rest reads as zeros. */
	memset(buf, 0xee, sizeof(buf));
	want = size < 100 ? size : 100;
	rc = fy_source_read(src, buf, 8192, size - want);
	if (rc)
		return rc;
	if (memcmp(buf, ref + size - want, want) ||
	    !fy_is_zero(buf + want, 8192 - want))
		return fy_err_set(-EIO, "read across the end is wrong");
	memset(buf, 0xee, sizeof(buf));
	rc = fy_source_read(src, buf, 512, size + 4096);
	if (rc)
		return rc;
	if (!fy_is_zero(buf, 512))
		return fy_err_set(-EIO, "read past the end is not zero");
	return 0;
}

struct ext_list {
	uint64_t next;
	size_t n, zero;
	struct {
		uint64_t off, len;
		enum fy_extent_kind kind;
	} e[65536];
};

static int collect(void *opaque, uint64_t off, uint64_t len,
		   enum fy_extent_kind kind)
{
	struct ext_list *l = opaque;

	if (off != l->next || !len || l->n == 65536)
		return fy_err_set(-EIO, "extent at %" PRIu64 " out of order "
				  "(expected %" PRIu64 ")", off, l->next);
	l->e[l->n].off = off;
	l->e[l->n].len = len;
	l->e[l->n].kind = kind;
	l->n++;
	l->zero += kind == FY_EXTENT_ZERO;
	l->next = off + len;
	return 0;
}

static int sparse(struct fy_source *src, const uint8_t *ref, size_t size)
{
	struct ext_list *l = calloc(1, sizeof(*l));
	struct fy_nbd_stats st;
	uint8_t *buf = malloc(io_size);
	uint64_t off, end, len, data = 0;
	size_t i;
	int rc;

	if (!l || !buf)
		return -ENOMEM;
	rc = fy_source_extents(src, 0, size, collect, l);
	if (rc)
		goto out;
	if (l->next != size) {
		rc = fy_err_set(-EIO, "extents end at %" PRIu64, l->next);
		goto out;
	}
	for (i = 0; i < l->n; i++) {
		off = l->e[i].off;
		end = off + l->e[i].len;
		if (l->e[i].kind == FY_EXTENT_ZERO) {
			if (!fy_is_zero(ref + off, end - off)) {
				rc = fy_err_set(-EIO, "zero extent at %" PRIu64
						" holds data", off);
				goto out;
			}
			continue;
		}
		for (; off < end; off += len) {
			len = end - off < io_size ? end - off : io_size;
			rc = fy_source_read(src, buf, len, off);
			if (rc)
				goto out;
			if (memcmp(buf, ref + off, len)) {
				rc = fy_err_set(-EIO, "data differs at "
						"%" PRIu64, off);
				goto out;
			}
			data += len;
		}
	}
	fy_nbd_stats(src, &st);
	printf("extents: %zu (%zu zero), data %" PRIu64 " of %zu bytes\n",
	       l->n, l->zero, data, size);
	if (!l->zero || st.block_status_calls == 0)
		rc = fy_err_set(-EIO, "no zero extents reported");
	else if (st.wire_bytes >= size || st.data_bytes >= size)
		rc = fy_err_set(-EIO, "%" PRIu64 " bytes crossed the wire for "
				"a %zu byte sparse export",
				st.wire_bytes, size);
out:
	free(buf);
	free(l);
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: nbd_probe [options] read|sparse URI REF\n"
			"       nbd_probe [options] fail-open|fail-read URI "
			"TEXT\n"
			"       nbd_probe [options] fail-extents URI TEXT\n"
			"       nbd_probe [options] no-extents URI\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct fy_source *src = NULL;
	const char *cmd, *uri;
	uint8_t *ref = NULL;
	size_t size = 0;
	int i, rc, bad = 0;

	fy_log_set_level(FY_LOG_INFO);
	fy_nbd_opts_default(&opts);
	opts.reconnect_base_ms = 100;
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";

		if (!strcmp(a, "--tls-required")) {
			opts.tls_required = true;
			continue;
		}
		if (!strcmp(a, "--expect-tls")) {
			expect_tls = true;
			continue;
		}
		if (!strcmp(a, "--expect-multi-conn")) {
			expect_multi = true;
			continue;
		}
		if (!strcmp(a, "--no-odd")) {
			no_odd = true;
			continue;
		}
		i++;
		if (!strcmp(a, "--ca"))
			opts.tls_ca = v;
		else if (!strcmp(a, "--cert"))
			opts.tls_cert = v;
		else if (!strcmp(a, "--key"))
			opts.tls_key = v;
		else if (!strcmp(a, "--server-name"))
			opts.tls_server_name = v;
		else if (!strcmp(a, "--conns"))
			opts.max_connections = (unsigned)atoi(v);
		else if (!strcmp(a, "--in-flight"))
			opts.max_in_flight = (unsigned)atoi(v);
		else if (!strcmp(a, "--attempts"))
			opts.reconnect_attempts = (unsigned)atoi(v);
		else if (!strcmp(a, "--base-ms"))
			opts.reconnect_base_ms = (unsigned)atoi(v);
		else if (!strcmp(a, "--negotiate-timeout-ms"))
			opts.negotiate_timeout_ms = (unsigned)atoi(v);
		else if (!strcmp(a, "--read-timeout-ms"))
			opts.read_timeout_ms = (unsigned)atoi(v);
		else if (!strcmp(a, "--io-size"))
			io_size = (size_t)atol(v);
		else if (!strcmp(a, "--marker"))
			marker = v;
		else if (!strcmp(a, "--marker-at"))
			marker_at = (uint64_t)atoll(v);
		else if (!strcmp(a, "--expect-reconnects"))
			expect_reconnects = atoi(v);
		else if (!strcmp(a, "--expect-conns"))
			expect_conns = atoi(v);
		else if (!strcmp(a, "--expect-block"))
			expect_block = atoi(v);
		else
			usage();
	}
	if (argc - i < 2)
		usage();
	cmd = argv[i];
	uri = argv[i + 1];

	if (!strcmp(cmd, "write") && argc - i == 3) {
		struct fy_nbd_writer *w = NULL;
		uint64_t off;

		ref = load(argv[i + 2], &size);
		if (fy_nbd_writer_open(uri, &opts, &w))
			return fail("cannot open for writing: %s%s",
				    fy_err_msg(), "");
		if (fy_nbd_writer_size(w) != size)
			bad |= fail("export size differs from %s%s",
				    argv[i + 2], "");
		for (off = 0; !bad && off < size; off += io_size) {
			size_t n = size - off < io_size ? size - off : io_size;
			struct iovec iov[2] = {
				{ ref + off, n / 2 },
				{ ref + off + n / 2, n - n / 2 },
			};

			if (fy_nbd_writer_pwritev(w, iov, 2, off))
				bad |= fail("write: %s%s", fy_err_msg(), "");
		}
		if (!bad && fy_nbd_writer_flush(w))
			bad |= fail("flush: %s%s", fy_err_msg(), "");
		fy_nbd_writer_close(w);
		free(ref);
		if (!bad)
			printf("ok\n");
		return bad;
	}
	if (!strcmp(cmd, "fail-write") && argc - i == 3) {
		struct fy_nbd_writer *w = NULL;
		static uint8_t block[65536];
		struct iovec iov = { block, sizeof(block) };

		rc = fy_nbd_writer_open(uri, &opts, &w);
		if (!rc) {
			rc = fy_nbd_writer_pwritev(w, &iov, 1, 0);
			if (!rc)
				rc = fy_nbd_writer_flush(w);
			fy_nbd_writer_close(w);
		}
		printf("write: %s\n", rc ? fy_err_msg() : "succeeded");
		if (!rc)
			return fail("writing %s succeeded%s", uri, "");
		if (!strstr(fy_err_msg(), argv[i + 2]))
			return fail("message lacks '%s'%s", argv[i + 2], "");
		return 0;
	}
	if (!strcmp(cmd, "fail-open") && argc - i == 3) {
		rc = fy_nbd_source_open(uri, &opts, &src);
		if (!rc) {
			fy_source_close(src);
			return fail("opening %s succeeded%s", uri, "");
		}
		printf("open failed as expected: %s\n", fy_err_msg());
		if (!strstr(fy_err_msg(), argv[i + 2]))
			return fail("message lacks '%s'%s", argv[i + 2], "");
		return 0;
	}

	rc = fy_nbd_source_open(uri, &opts, &src);
	if (rc)
		return fail("cannot open: %s%s", fy_err_msg(), "");
	/* The transport name follows TLS: nbdssl with it, nbd without. */
	{
		struct fy_nbd_stats st;

		if (fy_nbd_stats(src, &st) == 0 &&
		    strcmp(src->ops->name, st.tls ? "nbdssl" : "nbd"))
			bad |= fail("source reports transport %s%s",
				    src->ops->name, "");
	}

	if (!strcmp(cmd, "read") && argc - i == 3) {
		ref = load(argv[i + 2], &size);
		if (src->size != size)
			bad |= fail("export size differs from %s%s",
				    argv[i + 2], "");
		else if (read_all(src, ref, size, true) ||
			 (!no_odd && read_odd(src, ref, size)))
			bad |= fail("%s%s", fy_err_msg(), "");
	} else if (!strcmp(cmd, "sparse") && argc - i == 3) {
		ref = load(argv[i + 2], &size);
		if (src->size != size)
			bad |= fail("export size differs from %s%s",
				    argv[i + 2], "");
		else if (sparse(src, ref, size))
			bad |= fail("%s%s", fy_err_msg(), "");
	} else if (!strcmp(cmd, "fail-read") && argc - i == 3) {
		rc = read_all(src, NULL, src->size, false);
		printf("read: %s\n", rc ? fy_err_msg() : "succeeded");
		if (!rc)
			bad |= fail("reading %s succeeded%s", uri, "");
		else if (!strstr(fy_err_msg(), argv[i + 2]))
			bad |= fail("message lacks '%s'%s", argv[i + 2], "");
		/* The failure sticks or repeats; it never turns into
		 * success with wrong data. */
	} else if (!strcmp(cmd, "fail-extents") && argc - i == 3) {
		struct ext_list *l = calloc(1, sizeof(*l));

		rc = l ? fy_source_extents(src, 0, src->size, collect, l)
		       : -ENOMEM;
		free(l);
		printf("extents: %s\n", rc ? fy_err_msg() : "succeeded");
		if (!rc)
			bad |= fail("extents of %s succeeded%s", uri, "");
		else if (!strstr(fy_err_msg(), argv[i + 2]))
			bad |= fail("message lacks '%s'%s", argv[i + 2], "");
	} else if (!strcmp(cmd, "no-extents") && argc - i == 2) {
		struct ext_list *l = calloc(1, sizeof(*l));

		rc = l ? fy_source_extents(src, 0, src->size, collect, l)
		       : -ENOMEM;
		free(l);
		if (rc != -ENOTSUP)
			bad |= fail("extents() did not answer ENOTSUP%s%s", "",
				    "");
	} else {
		usage();
	}
	bad |= print_stats(src);
	fy_source_close(src);
	free(ref);
	if (!bad)
		printf("ok\n");
	return bad;
}
