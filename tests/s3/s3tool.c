/*
 * s3tool: a small command line over s3/s3.h, for tests only (it is not
 * installed). Credentials come from --credentials FILE or the AWS_*
 * variables, as fy_s3_load_credentials takes them. Errors go to stderr as
 * "s3tool: MESSAGE [ERRNO-NAME]" with exit status 1.
 *
 *   s3tool [options] URL put KEY FILE        fy_s3_put_file
 *   s3tool [options] URL putmem KEY FILE     fy_s3_put (file read first)
 *   s3tool [options] URL get KEY FILE        fy_s3_get_file
 *   s3tool [options] URL getmem KEY CAP      fy_s3_get of the whole object
 *   s3tool [options] URL range KEY OFF LEN   fy_s3_get of a range, stdout
 *   s3tool [options] URL head KEY
 *   s3tool [options] URL delete KEY [VERSION]
 *   s3tool [options] URL list [PREFIX]       "KEY SIZE" lines
 *   s3tool [options] URL versions [PREFIX]   "KEY VERSION marker|SIZE"
 *   s3tool [options] URL uploads [PREFIX]    "KEY UPLOAD-ID"
 *   s3tool [options] URL abort KEY UPLOAD-ID
 *   s3tool [options] URL retention KEY governance|compliance EPOCH [VERSION]
 *   s3tool [options] URL lock                "enabled" or "disabled"
 *
 * Options: --virtual-host, --credentials FILE, --ca-file FILE,
 * --region R, --part-size BYTES, --page-keys N, --max-attempts N,
 * --base-delay-ms N, --if-none-match, --lock-mode MODE --retain-until
 * EPOCH, --log-level N.
 */
#include "common/common.h"
#include "s3/s3.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(int rc)
{
	fprintf(stderr, "s3tool: %s [%s]\n", fy_err_msg(),
		strerrorname_np(-rc) ? strerrorname_np(-rc) : "?");
	return 1;
}

static int print_key(void *opaque, const char *key, uint64_t size)
{
	printf("%s %" PRIu64 "\n", key, size);
	return 0;
}

static int print_version(void *opaque, const char *key, const char *version,
			 bool marker, uint64_t size)
{
	if (marker)
		printf("%s %s marker\n", key, version);
	else
		printf("%s %s %" PRIu64 "\n", key, version, size);
	return 0;
}

static int print_upload(void *opaque, const char *key, const char *id,
			time_t initiated)
{
	printf("%s %s %lld\n", key, id, (long long)initiated);
	return 0;
}

static enum fy_s3_lock_mode parse_mode(const char *s)
{
	if (!strcasecmp(s, "governance"))
		return FY_S3_LOCK_GOVERNANCE;
	if (!strcasecmp(s, "compliance"))
		return FY_S3_LOCK_COMPLIANCE;
	return FY_S3_LOCK_NONE;
}

static int usage(void)
{
	fprintf(stderr, "usage: s3tool [options] URL COMMAND ARGS (see tests/s3/s3tool.c)\n");
	return 2;
}

static int run(struct fy_s3 *s3, const struct fy_s3_put_opts *opts, int argc,
	       char **argv)
{
	const char *cmd = argv[0];
	struct fy_s3_head head;
	void *data = NULL;
	size_t len = 0, got;
	int rc;

	if (!strcmp(cmd, "put") && argc == 3)
		return fy_s3_put_file(s3, argv[1], argv[2], opts);
	if (!strcmp(cmd, "putmem") && argc == 3) {
		rc = fy_read_file(argv[2], 1u << 30, &data, &len);
		if (rc == 0)
			rc = fy_s3_put(s3, argv[1], data, len, opts);
		free(data);
		return rc;
	}
	if (!strcmp(cmd, "get") && argc == 3)
		return fy_s3_get_file(s3, argv[1], argv[2]);
	if ((!strcmp(cmd, "getmem") && argc == 3) ||
	    (!strcmp(cmd, "range") && argc == 4)) {
		uint64_t off = 0, n = 0;

		if (argc == 3) {
			rc = fy_parse_size(argv[2], &n);
			len = (size_t)n;
			n = 0;
		} else {
			rc = fy_parse_size(argv[2], &off);
			if (rc == 0)
				rc = fy_parse_size(argv[3], &n);
			len = (size_t)n;
		}
		if (rc < 0)
			return rc;
		data = malloc(len ? len : 1);
		if (!data)
			return fy_err_set(-ENOMEM, "out of memory");
		rc = fy_s3_get(s3, argv[1], off, (size_t)n, data, len, &got);
		if (rc == 0)
			rc = fy_write_all(1, data, got);
		free(data);
		return rc;
	}
	if (!strcmp(cmd, "head") && argc == 2) {
		rc = fy_s3_head(s3, argv[1], &head);
		if (rc == 0)
			printf("size=%" PRIu64 " version=%s mode=%d until=%lld\n",
			       head.size, head.version_id, (int)head.lock_mode,
			       (long long)head.retain_until);
		return rc;
	}
	if (!strcmp(cmd, "delete") && (argc == 2 || argc == 3))
		return fy_s3_delete(s3, argv[1], argc == 3 ? argv[2] : NULL);
	if (!strcmp(cmd, "list") && argc <= 2)
		return fy_s3_list(s3, argc == 2 ? argv[1] : "", print_key, NULL);
	if (!strcmp(cmd, "versions") && argc <= 2)
		return fy_s3_list_versions(s3, argc == 2 ? argv[1] : "",
					   print_version, NULL);
	if (!strcmp(cmd, "uploads") && argc <= 2)
		return fy_s3_list_uploads(s3, argc == 2 ? argv[1] : "",
					  print_upload, NULL);
	if (!strcmp(cmd, "abort") && argc == 3)
		return fy_s3_abort_upload(s3, argv[1], argv[2]);
	if (!strcmp(cmd, "retention") && (argc == 4 || argc == 5))
		return fy_s3_put_retention(s3, argv[1],
					   argc == 5 ? argv[4] : NULL,
					   parse_mode(argv[2]),
					   (time_t)strtoll(argv[3], NULL, 10));
	if (!strcmp(cmd, "lock") && argc == 1) {
		bool enabled;

		rc = fy_s3_bucket_lock_enabled(s3, &enabled);
		if (rc == 0)
			printf("%s\n", enabled ? "enabled" : "disabled");
		return rc;
	}
	return fy_err_set(-EINVAL, "unknown command or wrong arguments: %s",
			  cmd);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "virtual-host", no_argument, NULL, 'v' },
		{ "credentials", required_argument, NULL, 'c' },
		{ "ca-file", required_argument, NULL, 'a' },
		{ "region", required_argument, NULL, 'r' },
		{ "part-size", required_argument, NULL, 'p' },
		{ "page-keys", required_argument, NULL, 'k' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "base-delay-ms", required_argument, NULL, 'd' },
		{ "if-none-match", no_argument, NULL, 'n' },
		{ "lock-mode", required_argument, NULL, 'l' },
		{ "retain-until", required_argument, NULL, 'u' },
		{ "log-level", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	struct fy_s3_put_opts opts = { 0 };
	const char *credentials = NULL;
	struct fy_s3_config cfg;
	struct fy_s3 *s3 = NULL;
	uint64_t size;
	int c, rc, level;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path_style = true;
	fy_log_set_level(FY_LOG_WARN);
	/* "+": options end at the URL, so a key or version id that starts
	 * with '-' (radosgw's version ids can) stays an operand. */
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (c) {
		case 'v':
			cfg.path_style = false;
			break;
		case 'c':
			credentials = optarg;
			break;
		case 'a':
			snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", optarg);
			break;
		case 'r':
			snprintf(cfg.region, sizeof(cfg.region), "%s", optarg);
			break;
		case 'p':
			if (fy_parse_size(optarg, &size) < 0)
				return usage();
			cfg.part_size = (size_t)size;
			break;
		case 'k':
			cfg.list_page_keys = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'm':
			cfg.max_attempts = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'd':
			cfg.base_delay_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			opts.if_none_match = true;
			break;
		case 'l':
			opts.lock_mode = parse_mode(optarg);
			break;
		case 'u':
			opts.retain_until = (time_t)strtoll(optarg, NULL, 10);
			break;
		case 'L':
			if (fy_cli_log_level(optarg, &level) < 0)
				return fail(-EINVAL);
			fy_log_set_level(level);
			break;
		default:
			return usage();
		}
	}
	if (argc - optind < 2)
		return usage();
	rc = fy_s3_parse_url(argv[optind], &cfg);
	if (rc == 0)
		rc = fy_s3_load_credentials(&cfg, credentials);
	if (rc == 0)
		rc = fy_s3_open(&cfg, &s3);
	if (rc == 0)
		rc = run(s3, &opts, argc - optind - 1, argv + optind + 1);
	fy_s3_close(s3);
	return rc < 0 ? fail(rc) : 0;
}
