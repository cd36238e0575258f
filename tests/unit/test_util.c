/* Small helpers and durable writes. */
#include "common/common.h"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void test_err(void)
{
	fy_err_clear();
	CHECK(!strcmp(fy_err_msg(), ""));
	CHECK(fy_err_set(-ENOENT, "open %s", "x") == -ENOENT);
	CHECK(fy_err_wrap(-ENOENT, "disk %d", 1) == -ENOENT);
	CHECK(!strcmp(fy_err_msg(), "disk 1: open x"));
	/* Wrapping with the message itself must not read a clobbered buffer. */
	fy_err_wrap(-1, "again %s", fy_err_msg());
	CHECK(!strcmp(fy_err_msg(), "again disk 1: open x: disk 1: open x"));
	fy_err_clear();
	fy_err_wrap(-1, "only context");
	CHECK(!strcmp(fy_err_msg(), "only context"));
	/* Nor setting a message made of the message (restore-vm's "the disks
	 * are partly written" came out empty). */
	fy_err_set(-EIO, "nbdkit ended with status 3");
	fy_err_set(-EIO, "%s; the disks of VM %s are partly written",
		   fy_err_msg(), "two");
	CHECK(!strcmp(fy_err_msg(), "nbdkit ended with status 3; the disks "
		      "of VM two are partly written"));
	fy_err_set(-EIO, "powering it on failed: %s", fy_err_msg());
	CHECK(!strcmp(fy_err_msg(), "powering it on failed: nbdkit ended with "
		      "status 3; the disks of VM two are partly written"));
}

static void test_log(void)
{
	char path[] = "test_util_log_XXXXXX", want[64];
	size_t len = 0;
	void *data = NULL;
	char *line;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	close(fd);
	CHECK(fy_log_get_level() == FY_LOG_WARN);
	CHECK_RC(fy_log_set_file(path));
	fy_log_set_level(FY_LOG_QUIET);
	fy_error("not shown at level 0");
	fy_log_set_level(FY_LOG_WARN);
	fy_info("not shown at level 3");
	fy_warn("disk %d is %s\n", 2, "slow");
	fy_error("second");
	fy_log_set_level(99);
	CHECK(fy_log_get_level() == FY_LOG_TRIVIA);
	fy_log(FY_LOG_TRIVIA, "trivia");
	fy_log_set_level(FY_LOG_WARN);
	CHECK_RC(fy_log_set_file(NULL));
	CHECK(fy_log_set_file("/nonexistent/dir/log") == -ENOENT);

	CHECK_RC(fy_read_file(path, 1 << 16, &data, &len));
	line = data;
	/* 2026-11-23T14:00:00.123Z ferry[PID] warning: msg */
	CHECK(len > 24 && line[4] == '-' && line[10] == 'T' &&
	      line[19] == '.' && line[23] == 'Z' && line[24] == ' ');
	snprintf(want, sizeof(want), "Z ferry[%ld] warning: disk 2 is slow\n",
		 (long)getpid());
	CHECK(len > 23 && !strncmp(line + 23, want, strlen(want)));
	CHECK(strstr(line, "] error: second\n") != NULL);
	CHECK(strstr(line, "] trivia: trivia\n") != NULL);
	CHECK(strstr(line, "not shown") == NULL);
	free(data);
	unlink(path);
}

static void test_hex(void)
{
	uint8_t in[256], out[256];
	char hex[2 * 256 + 1];
	size_t i;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	fy_hex(in, sizeof(in), hex);
	CHECK(strlen(hex) == 512);
	CHECK(!strncmp(hex, "000102", 6));
	CHECK(!strcmp(hex + 506, "fdfeff"));
	CHECK_RC(fy_unhex(hex, out, sizeof(out)));
	CHECK(!memcmp(in, out, sizeof(in)));
	CHECK_RC(fy_unhex("ABcdEf", out, 3));
	CHECK(out[0] == 0xab && out[1] == 0xcd && out[2] == 0xef);
	CHECK(fy_unhex("abc", out, 2) == -EINVAL);
	CHECK(fy_unhex("abcdef", out, 2) == -EINVAL);
	CHECK(fy_unhex("zz", out, 1) == -EINVAL);
	CHECK(fy_unhex("a ", out, 1) == -EINVAL);
	fy_hex(in, 0, hex);
	CHECK(!strcmp(hex, ""));
}

static void test_sha256(void)
{
	uint8_t d[FY_DIGEST_LEN];
	char hex[FY_DIGEST_HEX];

	fy_sha256("abc", 3, d);
	fy_hex(d, sizeof(d), hex);
	CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223"
			   "b00361a396177a9cb410ff61f20015ad"));
	fy_sha256("", 0, d);
	fy_hex(d, sizeof(d), hex);
	CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb924"
			   "27ae41e4649b934ca495991b7852b855"));
}

static void test_is_zero(void)
{
	static const size_t lens[] = { 0,  1,  2,  7,	15,   16,   17, 31,
				       32, 33, 63, 64, 65, 4095, 4096, 4097 };
	unsigned char *buf = calloc(1, 4096 + 64);
	size_t i, off, pos;

	for (off = 0; off < 16; off++) {
		for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			size_t len = lens[i];
			unsigned char *p = buf + off;

			CHECK(fy_is_zero(p, len));
			if (len == 0)
				continue;
			/* One non-zero byte anywhere must be seen. */
			for (pos = 0; pos < len; pos++) {
				if (len > 64 && pos > 20 && pos < len - 20 &&
				    pos % 97)
					continue;
				p[pos] = 0x80;
				if (fy_is_zero(p, len)) {
					fprintf(stderr, "missed byte %zu of "
						"%zu at +%zu\n", pos, len, off);
					CHECK(!"is_zero");
				}
				p[pos] = 0;
			}
			/* Bytes just outside do not count. */
			if (off > 0)
				p[-1] = 1;
			p[len] = 1;
			CHECK(fy_is_zero(p, len));
			if (off > 0)
				p[-1] = 0;
			p[len] = 0;
		}
	}
	free(buf);
}

static void test_parse_size(void)
{
	static const struct {
		const char *s;
		uint64_t want;
	} good[] = {
		{ "0", 0 },
		{ "123", 123 },
		{ "512B", 512 },
		{ "64K", 64 << 10 },
		{ "64k", 64 << 10 },
		{ "64KB", 64 << 10 },
		{ "64KiB", 64 << 10 },
		{ "1M", 1 << 20 },
		{ "8MiB", 8 << 20 },
		{ "3G", UINT64_C(3) << 30 },
		{ "2TiB", UINT64_C(2) << 40 },
		{ "16777215T", UINT64_C(16777215) << 40 },
		{ "18446744073709551615", UINT64_MAX },
	};
	static const char *const bad[] = {
		"", "K", "-1", " 1", "1 ", "1.5M", "1X", "1KiBB", "1iB", "0x10",
		"1M B",
	};
	static const char *const too_big[] = {
		"18446744073709551616", "16777216T", "99999999999999999999999K",
		"17179869184G",
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 1;
		CHECK_RC(fy_parse_size(good[i].s, &v));
		if (v != good[i].want) {
			fprintf(stderr, "%s -> %llu\n", good[i].s,
				(unsigned long long)v);
			CHECK(!"parse_size");
		}
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (fy_parse_size(bad[i], &v) != -EINVAL) {
			fprintf(stderr, "accepted '%s'\n", bad[i]);
			CHECK(!"parse_size bad");
		}
	}
	for (i = 0; i < sizeof(too_big) / sizeof(too_big[0]); i++) {
		if (fy_parse_size(too_big[i], &v) != -ERANGE) {
			fprintf(stderr, "no overflow for '%s'\n", too_big[i]);
			CHECK(!"parse_size overflow");
		}
	}
	CHECK(strstr(fy_err_msg(), "too large") != NULL);
}

static void test_format_bytes(void)
{
	char s[32];

	fy_format_bytes(0, s, sizeof(s));
	CHECK(!strcmp(s, "0 B"));
	fy_format_bytes(1023, s, sizeof(s));
	CHECK(!strcmp(s, "1023 B"));
	fy_format_bytes(64 << 10, s, sizeof(s));
	CHECK(!strcmp(s, "64 KiB"));
	fy_format_bytes(UINT64_C(3) << 29, s, sizeof(s));
	CHECK(!strcmp(s, "1.5 GiB"));
	fy_format_bytes((1 << 20) - 1, s, sizeof(s));
	CHECK(!strcmp(s, "1.0 MiB"));
	fy_format_bytes(UINT64_MAX, s, sizeof(s));
	CHECK(!strcmp(s, "16.0 EiB"));
	fy_format_bytes(UINT64_MAX, s, 4);
	CHECK(strlen(s) == 3);
}

static void test_now(void)
{
	double a = fy_now(), b;

	usleep(20000);
	b = fy_now();
	CHECK(b - a >= 0.019 && b - a < 5);
}

static void test_split_hostport(void)
{
	char host[64], port[8], tiny[4];

	CHECK_RC(fy_split_hostport("repo.example.com:7443", host, sizeof(host),
				   port, sizeof(port)));
	CHECK(!strcmp(host, "repo.example.com") && !strcmp(port, "7443"));
	CHECK_RC(fy_split_hostport("10.0.0.1:0", host, sizeof(host), port,
				   sizeof(port)));
	CHECK(!strcmp(host, "10.0.0.1") && !strcmp(port, "0"));
	CHECK_RC(fy_split_hostport("[::1]:443", host, sizeof(host), port,
				   sizeof(port)));
	CHECK(!strcmp(host, "::1") && !strcmp(port, "443"));
	CHECK_RC(fy_split_hostport("[fe80::1%eth0]:65535", host, sizeof(host),
				   port, sizeof(port)));
	CHECK(!strcmp(host, "fe80::1%eth0") && !strcmp(port, "65535"));
	/* An empty host means every address, for listening. */
	CHECK_RC(fy_split_hostport(":7443", host, sizeof(host), port,
				   sizeof(port)));
	CHECK(!strcmp(host, "") && !strcmp(port, "7443"));

	static const char *const bad[] = {
		"host",	      "host:",	      "host:port", "host:65536",
		"host:-1",    "::1:443",      "[::1]443",  "[::1]",
		"[::1:443",   "[]:443",	      "h]:1",	   "a b:1",
		"host:1 ",    "host:99999999999999999999", "",
		"[[::1]]:1",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (fy_split_hostport(bad[i], host, sizeof(host), port,
				      sizeof(port)) != -EINVAL) {
			fprintf(stderr, "accepted '%s'\n", bad[i]);
			CHECK(!"split_hostport bad");
		}
	}
	CHECK(fy_split_hostport("::1:443", host, sizeof(host), port,
				sizeof(port)) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "[::1]:port") != NULL);
	CHECK(fy_split_hostport("longhost:1", tiny, sizeof(tiny), port,
				sizeof(port)) == -ENAMETOOLONG);
	CHECK(fy_split_hostport("h:12345", host, sizeof(host), tiny,
				sizeof(tiny)) == -ENAMETOOLONG);
	{
		char *long_input = malloc(2000);

		memset(long_input, 'a', 1990);
		strcpy(long_input + 1990, ":1");
		CHECK(fy_split_hostport(long_input, host, sizeof(host), port,
					sizeof(port)) == -EINVAL);
		free(long_input);
	}
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_durable(void)
{
	char dir[] = "test_util_XXXXXX";
	char tmp[64], out[64], nested[96], path[128];
	size_t len = 0;
	void *data = NULL;
	struct stat st;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(nested, sizeof(nested), "%s/a/b//c/", dir);
	CHECK_RC(fy_mkdirs(tmp, 0700));
	CHECK_RC(fy_mkdirs(nested, 0755));
	CHECK_RC(fy_mkdirs(nested, 0755));
	CHECK(stat(nested, &st) == 0 && S_ISDIR(st.st_mode));

	/* The target directory is missing: fail, and leave no temporary. */
	CHECK(fy_write_durable(tmp, out, "f", "hello", 5, true) == -ENOENT);
	CHECK(strstr(fy_err_msg(), "out/f") != NULL);
	CHECK(count_entries(tmp) == 0);

	CHECK_RC(fy_mkdirs(out, 0755));
	CHECK_RC(fy_write_durable(tmp, out, "f", "hello", 5, true));
	CHECK_RC(fy_write_durable(NULL, out, "g", "", 0, false));
	CHECK(count_entries(tmp) == 0);
	CHECK(count_entries(out) == 2);
	snprintf(path, sizeof(path), "%s/f", out);
	CHECK_RC(fy_read_file(path, 5, &data, &len));
	CHECK(len == 5 && data && !memcmp(data, "hello", 6));
	free(data);
	/* Replacing is atomic: the old content until the rename. */
	CHECK_RC(fy_write_durable(tmp, out, "f", "bye", 3, true));
	CHECK_RC(fy_read_file(path, 100, &data, &len));
	CHECK(len == 3 && !memcmp(data, "bye", 3));
	free(data);

	/* A directory where the file should go: rename fails, no temp. */
	CHECK(fy_mkdirs(path, 0755) == -ENOTDIR);
	snprintf(path, sizeof(path), "%s/sub", out);
	CHECK_RC(fy_mkdirs(path, 0755));
	CHECK(fy_write_durable(tmp, out, "sub", "x", 1, true) < 0);
	CHECK(count_entries(tmp) == 0);

	/* fy_read_file's bound. */
	snprintf(path, sizeof(path), "%s/f", out);
	CHECK(fy_read_file(path, 2, &data, &len) == -EFBIG);
	CHECK(fy_read_file(out, 100, &data, &len) == -EISDIR);
	CHECK_RC(fy_read_file("/proc/self/status", 1 << 20, &data, &len));
	CHECK(len > 0 && strstr(data, "Name:"));
	free(data);
	CHECK(fy_read_file("/proc/self/status", 16, &data, &len) == -EFBIG);

	snprintf(path, sizeof(path), "rm -rf %s", dir);
	CHECK(system(path) == 0);
}

/* Several buffers in one write, including the rest of a write that
 * stopped short (a file size limit stops it mid-buffer, then fails). */
static void test_writev(void)
{
	char path[] = "test_writev_XXXXXX";
	char a[60], b[60], c[60], got[200];
	struct iovec iov[4];
	struct rlimit old, lim;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	memset(c, 'c', sizeof(c));
	iov[0] = (struct iovec){ a, sizeof(a) };
	iov[1] = (struct iovec){ NULL, 0 };
	iov[2] = (struct iovec){ b, sizeof(b) };
	iov[3] = (struct iovec){ c, sizeof(c) };
	CHECK_RC(fy_pwritev_all(fd, iov, 4, 10));
	CHECK(pread(fd, got, sizeof(got), 0) == 190);
	CHECK(!memcmp(got + 10, a, 60) && !memcmp(got + 70, b, 60) &&
	      !memcmp(got + 130, c, 60));
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	iov[0] = (struct iovec){ c, 5 };
	iov[1] = (struct iovec){ b, 5 };
	CHECK_RC(fy_writev_all(fd, iov, 2));
	CHECK(pread(fd, got, 12, 0) == 12 && !memcmp(got, "cccccbbbbb", 10));

	/* 100 bytes allowed: the first pwritev writes 100 of 180, the second
	 * (from the middle of b) fails with EFBIG at offset 100. */
	CHECK(ftruncate(fd, 0) == 0);
	signal(SIGXFSZ, SIG_IGN);
	CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
	lim = old;
	lim.rlim_cur = 100;
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	iov[0] = (struct iovec){ a, sizeof(a) };
	iov[1] = (struct iovec){ b, sizeof(b) };
	iov[2] = (struct iovec){ c, sizeof(c) };
	CHECK(fy_pwritev_all(fd, iov, 3, 0) == -EFBIG);
	CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	signal(SIGXFSZ, SIG_DFL);
	CHECK(strstr(fy_err_msg(), "offset 100") != NULL);
	CHECK(pread(fd, got, sizeof(got), 0) == 100);
	CHECK(!memcmp(got, a, 60) && !memcmp(got + 60, b, 40));
	close(fd);
	unlink(path);
}

int main(void)
{
	test_err();
	test_log();
	test_hex();
	test_sha256();
	test_is_zero();
	test_parse_size();
	test_format_bytes();
	test_now();
	test_split_hostport();
	test_durable();
	test_writev();
	CHECK_DONE();
}
