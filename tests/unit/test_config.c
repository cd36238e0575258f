/* The configuration parser: what a VDDK-style file may hold, and the
 * message a user sees for each thing it may not. */
#include "common/common.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(struct fy_config *cfg, const char *text)
{
	return fy_config_parse(cfg, "cfg", text, strlen(text));
}

/* Parses text into a fresh config and expects failure naming want. */
static void expect_error_len(const char *text, size_t len, int code,
			     const char *want)
{
	struct fy_config *cfg = fy_config_new();
	int rc = fy_config_parse(cfg, "cfg", text, len);

	CHECK(rc == code);
	if (!strstr(fy_err_msg(), want)) {
		fprintf(stderr, "expected '%s' in '%s'\n", want, fy_err_msg());
		CHECK(!"message");
	}
	fy_config_free(cfg);
}

static void expect_error(const char *text, int code, const char *want)
{
	expect_error_len(text, strlen(text), code, want);
}

static void test_good_file(void)
{
	static const char text[] =
		"# VDDK-style configuration\n"
		"\n"
		"   # an indented comment\n"
		"tmpDirectory = /var/tmp/ferry\n"
		"vixDiskLib.transport.LogLevel=4\n"
		"\tpassword = \"se#cret = x\"  \n"
		"thumbprint=AB:CD # not a comment\n"
		"empty=\n"
		"quoted.empty=\"\"\n"
		"lonequote=\"\n"
		"crlf=yes\r\n"
		"Case=upper\n"
		"case=lower\n"
		"tmpDirectory=/srv/tmp\n"
		"last=no newline";
	struct fy_config *cfg = fy_config_new();

	CHECK_RC(parse(cfg, text));
	CHECK(!strcmp(fy_config_get(cfg, "tmpDirectory"), "/srv/tmp"));
	CHECK(!strcmp(fy_config_origin(cfg, "tmpDirectory"), "cfg:14"));
	CHECK(!strcmp(fy_config_get(cfg, "vixDiskLib.transport.LogLevel"),
		      "4"));
	CHECK(!strcmp(fy_config_get(cfg, "password"), "se#cret = x"));
	CHECK(!strcmp(fy_config_origin(cfg, "password"), "cfg:6"));
	CHECK(!strcmp(fy_config_get(cfg, "thumbprint"),
		      "AB:CD # not a comment"));
	CHECK(!strcmp(fy_config_get(cfg, "empty"), ""));
	CHECK(!strcmp(fy_config_get(cfg, "quoted.empty"), ""));
	CHECK(!strcmp(fy_config_get(cfg, "lonequote"), "\""));
	CHECK(!strcmp(fy_config_get(cfg, "crlf"), "yes"));
	CHECK(!strcmp(fy_config_get(cfg, "Case"), "upper"));
	CHECK(!strcmp(fy_config_get(cfg, "case"), "lower"));
	CHECK(!strcmp(fy_config_get(cfg, "last"), "no newline"));
	CHECK(fy_config_get(cfg, "# an indented comment") == NULL);
	CHECK(fy_config_get(cfg, "CASE") == NULL);
	CHECK(fy_config_origin(cfg, "missing") == NULL);

	/* A command-line setting overrides the file and says where from. */
	CHECK_RC(fy_config_set(cfg, "tmpDirectory", "/cli"));
	CHECK(!strcmp(fy_config_get(cfg, "tmpDirectory"), "/cli"));
	CHECK(!strcmp(fy_config_origin(cfg, "tmpDirectory"), "command line"));
	CHECK_RC(fy_config_set_pair(cfg, " ferry.x = \"a=b\" "));
	CHECK(!strcmp(fy_config_get(cfg, "ferry.x"), "a=b"));
	CHECK(fy_config_set_pair(cfg, "novalue") == -EINVAL);
	CHECK(fy_config_set_pair(cfg, "=v") == -EINVAL);
	CHECK(fy_config_set(cfg, "a b", "v") == -EINVAL);
	CHECK(fy_config_set(cfg, "", "v") == -EINVAL);
	CHECK(fy_config_set(cfg, "k", "two\nlines") == -EINVAL);

	/* A second file overrides the first, key by key. */
	CHECK_RC(fy_config_parse(cfg, "second", "case=again\n", 11));
	CHECK(!strcmp(fy_config_get(cfg, "case"), "again"));
	CHECK(!strcmp(fy_config_origin(cfg, "case"), "second:1"));
	CHECK(!strcmp(fy_config_get(cfg, "Case"), "upper"));
	fy_config_free(cfg);
	fy_config_free(NULL);
}

static void test_load(void)
{
	char path[] = "test_config_XXXXXX";
	struct fy_config *cfg = fy_config_new();
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK(write(fd, "a=1\nb=2\n", 8) == 8);
	close(fd);
	CHECK_RC(fy_config_load(cfg, path));
	CHECK(!strcmp(fy_config_get(cfg, "b"), "2"));
	CHECK(strstr(fy_config_origin(cfg, "b"), ":2") != NULL);
	CHECK(strncmp(fy_config_origin(cfg, "b"), path, strlen(path)) == 0);
	unlink(path);
	CHECK(fy_config_load(cfg, path) == -ENOENT);
	CHECK(strstr(fy_err_msg(), path) != NULL);
	fy_config_free(cfg);
}

static void test_int(void)
{
	struct fy_config *cfg = fy_config_new();
	int64_t v = 0;

	CHECK_RC(parse(cfg, "ferry.blockSize=3\n"
			    "n=-42\n"
			    "p=+7\n"
			    "big=9223372036854775807\n"
			    "min=-9223372036854775808\n"
			    "over=9223372036854775808\n"
			    "huge=99999999999999999999999\n"
			    "hex=0x10\n"
			    "suffix=64K\n"
			    "float=1.5\n"
			    "sign=-\n"
			    "blank=\n"));
	CHECK(fy_config_get_int(cfg, "ferry.blockSize", 1 << 20, 65536,
				8388608, &v) == -ERANGE);
	CHECK(!strcmp(fy_err_msg(), "ferry.blockSize=3 (from cfg:1) is out of "
				    "range: 65536..8388608"));
	CHECK_RC(fy_config_get_int(cfg, "absent", 77, 0, 10, &v));
	CHECK(v == 77);
	CHECK_RC(fy_config_get_int(cfg, "n", 0, -100, 100, &v));
	CHECK(v == -42);
	CHECK_RC(fy_config_get_int(cfg, "p", 0, 0, 100, &v));
	CHECK(v == 7);
	CHECK_RC(fy_config_get_int(cfg, "big", 0, INT64_MIN, INT64_MAX, &v));
	CHECK(v == INT64_MAX);
	CHECK_RC(fy_config_get_int(cfg, "min", 0, INT64_MIN, INT64_MAX, &v));
	CHECK(v == INT64_MIN);
	CHECK(fy_config_get_int(cfg, "over", 0, INT64_MIN, INT64_MAX, &v) ==
	      -ERANGE);
	CHECK(fy_config_get_int(cfg, "huge", 0, INT64_MIN, INT64_MAX, &v) ==
	      -ERANGE);
	CHECK(fy_config_get_int(cfg, "hex", 0, 0, 100, &v) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "hex=0x10 (from cfg:8) is not a decimal "
				   "integer") != NULL);
	CHECK(fy_config_get_int(cfg, "suffix", 0, 0, 1 << 30, &v) == -EINVAL);
	CHECK(fy_config_get_int(cfg, "float", 0, 0, 100, &v) == -EINVAL);
	CHECK(fy_config_get_int(cfg, "sign", 0, -5, 5, &v) == -EINVAL);
	CHECK(fy_config_get_int(cfg, "blank", 0, 0, 100, &v) == -EINVAL);
	fy_config_free(cfg);
}

static void test_bool(void)
{
	static const char *const truths[] = { "1", "true", "yes", "on", "TRUE",
					      "Yes" };
	static const char *const lies[] = { "0", "false", "no", "off", "OFF",
					    "No" };
	struct fy_config *cfg = fy_config_new();
	bool b;
	size_t i;

	for (i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
		b = false;
		CHECK_RC(fy_config_set(cfg, "k", truths[i]));
		CHECK_RC(fy_config_get_bool(cfg, "k", false, &b));
		CHECK(b);
		CHECK_RC(fy_config_set(cfg, "k", lies[i]));
		CHECK_RC(fy_config_get_bool(cfg, "k", true, &b));
		CHECK(!b);
	}
	CHECK_RC(fy_config_get_bool(cfg, "absent", true, &b));
	CHECK(b);
	CHECK_RC(fy_config_set(cfg, "k", "maybe"));
	CHECK(fy_config_get_bool(cfg, "k", true, &b) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "k=maybe (from command line) is not a "
				   "boolean") != NULL);
	fy_config_free(cfg);
}

static void test_malformed(void)
{
	char *big;
	size_t i;

	expect_error("a=1\n\nno equals sign\n", -EINVAL,
		     "cfg:3: expected name=value");
	expect_error("ok=1\n = value\n", -EINVAL,
		     "cfg:2: missing name before '='");
	expect_error("a b = c\n", -EINVAL, "cfg:1: name contains whitespace");
	expect_error("x=1\ny\x01z=2\n", -EINVAL,
		     "cfg:2: name contains a byte that is not printable");
	expect_error_len("a=1\nb=2\0\nc=3\n", 12, -EINVAL, "cfg:2: NUL byte");

	/* A bad line leaves the config as it was: nothing half-applied. */
	{
		struct fy_config *cfg = fy_config_new();

		CHECK_RC(parse(cfg, "keep=old\n"));
		CHECK(parse(cfg, "keep=new\nadded=1\nbroken\n") == -EINVAL);
		CHECK(!strcmp(fy_config_get(cfg, "keep"), "old"));
		CHECK(fy_config_get(cfg, "added") == NULL);
		fy_config_free(cfg);
	}

	/* A line of exactly the maximum is fine; one byte more is not. */
	big = malloc(FY_CONFIG_MAX_LINE + 64);
	strcpy(big, "ok=1\nk=");
	memset(big + 7, 'v', FY_CONFIG_MAX_LINE - 2);
	strcpy(big + 7 + FY_CONFIG_MAX_LINE - 2, "\n");
	{
		struct fy_config *cfg = fy_config_new();

		CHECK_RC(parse(cfg, big));
		CHECK(strlen(fy_config_get(cfg, "k")) ==
		      FY_CONFIG_MAX_LINE - 2);
		fy_config_free(cfg);
	}
	strcpy(big + 7 + FY_CONFIG_MAX_LINE - 2, "v\n");
	expect_error(big, -EINVAL, "cfg:2: line longer than 4096 bytes");
	free(big);

	/* The file limit holds before any line is looked at. */
	big = calloc(1, FY_CONFIG_MAX_FILE + 2);
	memset(big, '\n', FY_CONFIG_MAX_FILE + 1);
	{
		struct fy_config *cfg = fy_config_new();

		CHECK(fy_config_parse(cfg, "cfg", big,
				      FY_CONFIG_MAX_FILE + 1) == -EFBIG);
		CHECK_RC(fy_config_parse(cfg, "cfg", big, FY_CONFIG_MAX_FILE));
		fy_config_free(cfg);
	}
	free(big);

	/* At most FY_CONFIG_MAX_ENTRIES keys, counting earlier ones. */
	big = malloc(32 * (FY_CONFIG_MAX_ENTRIES + 2));
	big[0] = '\0';
	for (i = 0; i < FY_CONFIG_MAX_ENTRIES + 1; i++)
		sprintf(big + strlen(big), "key%zu=%zu\n", i, i);
	expect_error(big, -E2BIG, "cfg:1025: more than 1024");
	{
		struct fy_config *cfg = fy_config_new();

		/* Overriding keys already held never counts against it. */
		CHECK_RC(parse(cfg, "key0=x\n"));
		*strstr(big, "key1024=") = '\0';
		CHECK_RC(parse(cfg, big));
		CHECK_RC(parse(cfg, big));
		CHECK(fy_config_set(cfg, "one.too.many", "1") == -E2BIG);
		CHECK(parse(cfg, "one.too.many=1\n") == -E2BIG);
		CHECK_RC(fy_config_set(cfg, "key5", "5"));
		fy_config_free(cfg);
	}
	free(big);
}

static void test_unknown(void)
{
	static const char *const known[] = { "tmpDirectory", "ferry.*", NULL };
	struct fy_config *cfg = fy_config_new();
	char log[] = "test_config_log_XXXXXX";
	size_t len = 0;
	void *data = NULL;
	int fd = mkstemp(log);

	CHECK(fd >= 0);
	close(fd);
	CHECK_RC(parse(cfg, "tmpDirectory=/t\n"
			    "ferry.blockSize=1\n"
			    "ferry.x.y=2\n"
			    "tmpdirectory=typo\n"
			    "ferryx=3\n"));
	CHECK_RC(fy_config_set(cfg, "other", "1"));
	CHECK_RC(fy_log_set_file(log));
	CHECK(fy_config_warn_unknown(cfg, known) == 3);
	CHECK_RC(fy_log_set_file(NULL));
	CHECK_RC(fy_read_file(log, 1 << 16, &data, &len));
	CHECK(data && strstr(data, " warning: unknown configuration key "
				   "'tmpdirectory' (cfg:4)\n"));
	CHECK(data && strstr(data, "unknown configuration key 'other' "
				   "(command line)\n"));
	CHECK(data && strstr(data, "'ferryx' (cfg:5)"));
	free(data);
	unlink(log);

	fy_log_set_level(FY_LOG_QUIET);
	CHECK(fy_config_warn_unknown(cfg, NULL) == 6);
	fy_log_set_level(FY_LOG_WARN);
	fy_config_free(cfg);
}

/* Ferry's own namespace is strict: an unknown ferry.* key is an error that
 * names the closest known key; other keys (VDDK's) only warn. */
static void test_strict_unknown(void)
{
	static const char *const known[] = {
		"ferry.blockSize", "ferry.compressionLevel", "ferry.tls.ca",
		"vixDiskLib.nfcFssrvr.TimeoutMs", "ferry.nbd.*", NULL,
	};
	struct fy_config *cfg = fy_config_new();

	CHECK(cfg != NULL);
	CHECK(!strcmp(fy_config_closest("ferry.blocksize", known),
		      "ferry.blockSize"));
	CHECK(!strcmp(fy_config_closest("ferry.compresionLevel", known),
		      "ferry.compressionLevel"));
	CHECK(!strcmp(fy_config_closest("ferry.tls.cax", known), "ferry.tls.ca"));
	CHECK(fy_config_closest("x", (const char *const[]){ "a.*", NULL }) == NULL);

	CHECK_RC(parse(cfg, "ferry.blockSize=65536\n"
			    "vixDiskLib.nfcFssrvr.TimeoutMs=0\n"
			    "ferry.nbd.MaxInFlight=4\n"));
	CHECK_RC(fy_config_check_unknown(cfg, known, "ferry."));
	/* VDDK's tolerance: a misspelt VDDK key warns, no error. */
	CHECK_RC(fy_config_set(cfg, "vixDiskLib.nfcFssrvr.TimeOutMs", "0"));
	fy_log_set_level(FY_LOG_QUIET);
	CHECK_RC(fy_config_check_unknown(cfg, known, "ferry."));
	fy_log_set_level(FY_LOG_WARN);
	CHECK_RC(parse(cfg, "ferry.blocksize=65536\n"));
	CHECK(fy_config_check_unknown(cfg, known, "ferry.") == -EINVAL);
	printf("  %s\n", fy_err_msg());
	CHECK(strstr(fy_err_msg(), "unknown configuration key "
				   "'ferry.blocksize' (cfg:1); the closest "
				   "known key is 'ferry.blockSize'") != NULL);
	CHECK_RC(fy_config_set(cfg, "ferry.zzz", "1"));
	CHECK(fy_config_check_unknown(cfg, known, "ferry.") == -EINVAL);
	CHECK(strstr(fy_err_msg(), "(and more unknown keys of ferry.*)") != NULL);
	/* No strict namespace: warnings only, as fy_config_warn_unknown. */
	fy_log_set_level(FY_LOG_QUIET);
	CHECK_RC(fy_config_check_unknown(cfg, known, NULL));
	fy_log_set_level(FY_LOG_WARN);
	fy_config_free(cfg);
}

int main(void)
{
	test_good_file();
	test_load();
	test_int();
	test_bool();
	test_malformed();
	test_unknown();
	test_strict_unknown();
	CHECK_DONE();
}
