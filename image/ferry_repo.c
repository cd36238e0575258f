/*
 * ferry-repo: create, serve and maintain a Ferry repository.
 * The subcommand table drives both dispatch and the usage text.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_private.h"
#include "image/repo_server.h"

struct options {
	const char *root;
	struct repo_server_opts serve;
	struct fy_prune_policy prune;
	bool dry_run;
	bool repair;
	bool json;
	/* acl */
	const char *client, *owner, *group, *namespace_;
	int format;          /* init */
	const char *digest;  /* locate */
	/* init --s3 */
	const char *s3_url, *s3_region, *s3_ca, *s3_credentials;
	const char *lock_mode, *cache_size;
	bool path_style;
	int lock_days;
};

enum {
	OPT_ROOT = 1000, OPT_LISTEN, OPT_CERT, OPT_KEY, OPT_CA, OPT_WORKERS,
	OPT_MAX_CLIENTS, OPT_READY_FILE, OPT_LOG_LEVEL, OPT_KEEP_LAST,
	OPT_KEEP_DAILY, OPT_KEEP_WEEKLY, OPT_KEEP_MONTHLY, OPT_DRY_RUN,
	OPT_IDLE_TIMEOUT, OPT_LOG_FILE, OPT_REPAIR, OPT_CRL, OPT_CLIENT,
	OPT_OWNER, OPT_GROUP, OPT_NAMESPACE, OPT_JSON, OPT_HANDSHAKE_TIMEOUT,
	OPT_MAX_HANDSHAKES, OPT_MAX_PER_ADDRESS, OPT_FORMAT, OPT_DIGEST,
	OPT_S3, OPT_REGION, OPT_PATH_STYLE, OPT_S3_CA, OPT_S3_CREDENTIALS,
	OPT_LOCK_DAYS, OPT_LOCK_MODE, OPT_CACHE_SIZE,
};

static const struct option long_opts[] = {
	{ "root", required_argument, NULL, OPT_ROOT },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "ca", required_argument, NULL, OPT_CA },
	{ "workers", required_argument, NULL, OPT_WORKERS },
	{ "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
	{ "max-handshakes", required_argument, NULL, OPT_MAX_HANDSHAKES },
	{ "max-handshakes-per-address", required_argument, NULL,
	  OPT_MAX_PER_ADDRESS },
	{ "ready-file", required_argument, NULL, OPT_READY_FILE },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "log-file", required_argument, NULL, OPT_LOG_FILE },
	{ "keep-last", required_argument, NULL, OPT_KEEP_LAST },
	{ "keep-daily", required_argument, NULL, OPT_KEEP_DAILY },
	{ "keep-weekly", required_argument, NULL, OPT_KEEP_WEEKLY },
	{ "keep-monthly", required_argument, NULL, OPT_KEEP_MONTHLY },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "repair", no_argument, NULL, OPT_REPAIR },
	{ "crl", required_argument, NULL, OPT_CRL },
	{ "client", required_argument, NULL, OPT_CLIENT },
	{ "owner", required_argument, NULL, OPT_OWNER },
	{ "group", required_argument, NULL, OPT_GROUP },
	{ "namespace", required_argument, NULL, OPT_NAMESPACE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "digest", required_argument, NULL, OPT_DIGEST },
	{ "s3", required_argument, NULL, OPT_S3 },
	{ "region", required_argument, NULL, OPT_REGION },
	{ "path-style", no_argument, NULL, OPT_PATH_STYLE },
	{ "s3-ca", required_argument, NULL, OPT_S3_CA },
	{ "s3-credentials", required_argument, NULL, OPT_S3_CREDENTIALS },
	{ "object-lock-days", required_argument, NULL, OPT_LOCK_DAYS },
	{ "object-lock-mode", required_argument, NULL, OPT_LOCK_MODE },
	{ "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
	{ NULL, 0, NULL, 0 },
};

static int parse_count(const char *arg, const char *flag, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || end == arg || v < 0 || v > max) {
		fprintf(stderr, "ferry-repo: %s takes a number in 0..%d, not '%s'\n",
			flag, max, arg);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	int c, n, rc = 0;

	optind = 1;
	while (rc == 0 &&
	       (c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_ROOT: o->root = optarg; break;
		case OPT_LISTEN: o->serve.listen = optarg; break;
		case OPT_CERT: o->serve.tls.cert = optarg; break;
		case OPT_KEY: o->serve.tls.key = optarg; break;
		case OPT_CA: o->serve.tls.ca = optarg; break;
		case OPT_CRL: o->serve.tls.crl = optarg; break;
		case OPT_CLIENT: o->client = optarg; break;
		case OPT_OWNER: o->owner = o->prune.owner = optarg; break;
		case OPT_GROUP: o->group = optarg; break;
		case OPT_NAMESPACE:
			o->namespace_ = o->prune.namespace_ = optarg;
			break;
		case OPT_JSON: o->json = true; break;
		case OPT_READY_FILE: o->serve.ready_file = optarg; break;
		case OPT_WORKERS:
			rc = parse_count(optarg, "--workers", 64, &n);
			o->serve.workers = n;
			break;
		case OPT_MAX_CLIENTS:
			rc = parse_count(optarg, "--max-clients", 4096, &n);
			o->serve.max_clients = n;
			break;
		case OPT_IDLE_TIMEOUT:
			rc = parse_count(optarg, "--idle-timeout", 86400, &n);
			o->serve.idle_timeout_ms = n * 1000;
			break;
		case OPT_HANDSHAKE_TIMEOUT:
			rc = parse_count(optarg, "--handshake-timeout", 300, &n);
			o->serve.handshake_timeout_ms = n * 1000;
			break;
		case OPT_MAX_HANDSHAKES:
			rc = parse_count(optarg, "--max-handshakes",
					 FY_GATE_PENDING_MAX, &n);
			o->serve.max_handshakes = n;
			break;
		case OPT_MAX_PER_ADDRESS:
			rc = parse_count(optarg, "--max-handshakes-per-address",
					 FY_GATE_PENDING_MAX, &n);
			o->serve.max_handshakes_per_address = n;
			break;
		case OPT_LOG_LEVEL:
			rc = parse_count(optarg, "--log-level", 6, &n);
			fy_log_set_level(n);
			break;
		case OPT_LOG_FILE:
			rc = fy_log_set_file(optarg);
			if (rc < 0)
				fprintf(stderr, "ferry-repo: %s\n", fy_err_msg());
			break;
		case OPT_KEEP_LAST:
			rc = parse_count(optarg, "--keep-last", 1000000, &o->prune.keep_last);
			break;
		case OPT_KEEP_DAILY:
			rc = parse_count(optarg, "--keep-daily", 1000000, &o->prune.keep_daily);
			break;
		case OPT_KEEP_WEEKLY:
			rc = parse_count(optarg, "--keep-weekly", 1000000, &o->prune.keep_weekly);
			break;
		case OPT_KEEP_MONTHLY:
			rc = parse_count(optarg, "--keep-monthly", 1000000, &o->prune.keep_monthly);
			break;
		case OPT_REPAIR:
			o->repair = true;
			break;
		case OPT_FORMAT:
			rc = parse_count(optarg, "--format", 2, &o->format);
			if (rc == 0 && o->format < 1) {
				fprintf(stderr, "ferry-repo: --format takes 1 "
					"or 2\n");
				rc = -EINVAL;
			}
			break;
		case OPT_DIGEST:
			o->digest = optarg;
			break;
		case OPT_S3: o->s3_url = optarg; break;
		case OPT_REGION: o->s3_region = optarg; break;
		case OPT_PATH_STYLE: o->path_style = true; break;
		case OPT_S3_CA: o->s3_ca = optarg; break;
		case OPT_S3_CREDENTIALS: o->s3_credentials = optarg; break;
		case OPT_LOCK_MODE: o->lock_mode = optarg; break;
		case OPT_CACHE_SIZE: o->cache_size = optarg; break;
		case OPT_LOCK_DAYS:
			rc = parse_count(optarg, "--object-lock-days", 36500,
					 &o->lock_days);
			if (rc == 0 && o->lock_days < 1) {
				fprintf(stderr, "ferry-repo: "
					"--object-lock-days takes 1 or more\n");
				rc = -EINVAL;
			}
			break;
		case OPT_DRY_RUN:
			o->dry_run = true;
			o->prune.dry_run = true;
			break;
		default:
			return -EINVAL;
		}
	}
	if (rc == 0 && optind < argc) {
		fprintf(stderr, "ferry-repo: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (rc == 0 && !o->root) {
		fprintf(stderr, "ferry-repo: --root DIR is required\n");
		return -EINVAL;
	}
	return rc;
}

static int fail(void)
{
	fprintf(stderr, "ferry-repo: %s\n", fy_err_msg());
	return 1;
}

/* An absolute path for the config (serve may run from elsewhere). */
static int absolute(const char *flag, const char *path, char *out,
		    size_t len)
{
	if (!realpath(path, out) || strlen(out) >= len) {
		fprintf(stderr, "ferry-repo: %s %s: %s\n", flag, path,
			strerror(errno));
		return -EINVAL;
	}
	return 0;
}

/* The s3.* settings of init, through the same parser the config is read
 * with, so that init accepts exactly what open will. */
static int init_s3(struct options *o)
{
	struct fy_repo_s3conf conf;
	char line[PATH_MAX + 64], path[PATH_MAX];
	struct {
		const char *key, *value;
	} set[8];
	size_t n = 0, i;

	fy_s3conf_init(&conf);
	conf.path_style = o->path_style;
	set[n].key = "s3.url";
	set[n++].value = o->s3_url;
	if (o->s3_region) {
		set[n].key = "s3.region";
		set[n++].value = o->s3_region;
	}
	if (o->lock_mode) {
		set[n].key = "s3.object-lock-mode";
		set[n++].value = o->lock_mode;
	}
	if (o->cache_size) {
		set[n].key = "s3.cache-size";
		set[n++].value = o->cache_size;
	}
	for (i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "%s=%s", set[i].key, set[i].value);
		if (fy_s3conf_line(&conf, o->root, line, strlen(line)) < 0)
			return fail();
	}
	if (o->s3_ca) {
		if (absolute("--s3-ca", o->s3_ca, path, sizeof(conf.ca)))
			return 2;
		strcpy(conf.ca, path);
	}
	if (o->s3_credentials) {
		if (absolute("--s3-credentials", o->s3_credentials, path,
			     sizeof(conf.credentials)))
			return 2;
		strcpy(conf.credentials, path);
	}
	conf.lock_days = (unsigned)o->lock_days;
	if (fy_repo_init_s3(o->root, &conf) < 0)
		return fail();
	printf("initialised repository %s in bucket %s\n", o->root,
	       conf.url);
	return 0;
}

static int cmd_init(struct options *o)
{
	if (o->s3_url) {
		if (o->format) {
			fprintf(stderr, "ferry-repo: --format and --s3 do not "
				"go together (a bucket holds format 3)\n");
			return 2;
		}
		return init_s3(o);
	}
	if (o->s3_region || o->s3_ca || o->s3_credentials || o->lock_days ||
	    o->lock_mode || o->cache_size || o->path_style) {
		fprintf(stderr, "ferry-repo: the S3 options need --s3 URL\n");
		return 2;
	}
	if (fy_repo_init_format(o->root, o->format ? (unsigned)o->format
						   : FY_REPO_FORMAT_CURRENT) < 0)
		return fail();
	printf("initialised repository %s\n", o->root);
	return 0;
}

static int cmd_rebuild_cache(struct options *o)
{
	if (fy_repo_rebuild(o->root, stdout) < 0)
		return fail();
	return 0;
}

static int cmd_migrate(struct options *o)
{
	if (fy_repo_migrate(o->root, stdout) < 0)
		return fail();
	return 0;
}

/* Where a block's bytes are: for support, and for tests that damage one
 * block on purpose. */
static int cmd_locate(struct options *o)
{
	uint8_t digest[FY_DIGEST_LEN];
	struct fy_repo *repo;
	char path[4096];
	uint64_t offset, length;
	int rc;

	if (!o->digest || strlen(o->digest) != 2 * FY_DIGEST_LEN ||
	    fy_unhex(o->digest, digest, FY_DIGEST_LEN)) {
		fprintf(stderr, "ferry-repo locate: --digest takes 64 hex "
			"digits\n");
		return 2;
	}
	if (fy_repo_open(o->root, 0, &repo) < 0)
		return fail();
	rc = fy_repo_block_locate(repo, digest, path, sizeof(path), &offset,
				  &length);
	fy_repo_close(repo);
	if (rc < 0)
		return fail();
	printf("%s %" PRIu64 " %" PRIu64 "\n", path, offset, length);
	return 0;
}

static int cmd_serve(struct options *o)
{
	if (!o->serve.listen || !o->serve.tls.cert || !o->serve.tls.key ||
	    !o->serve.tls.ca) {
		fprintf(stderr, "ferry-repo serve: --listen, --cert, --key and "
			"--ca are required\n");
		return 2;
	}
	o->serve.root = o->root;
	if (!o->serve.max_clients)
		o->serve.max_clients = 64;
	if (!o->serve.idle_timeout_ms)
		o->serve.idle_timeout_ms = 300 * 1000;
	/* Before authentication: a short deadline, and fewer places than for
	 * authenticated clients (proto/wire.h, the handshake gate). */
	if (!o->serve.handshake_timeout_ms)
		o->serve.handshake_timeout_ms = 10 * 1000;
	if (!o->serve.max_handshakes)
		o->serve.max_handshakes = o->serve.max_clients / 2 ? o->serve.max_clients / 2 : 1;
	if (!o->serve.max_handshakes_per_address)
		o->serve.max_handshakes_per_address =
			o->serve.max_handshakes < 8 ? o->serve.max_handshakes : 8;
	if (o->serve.max_handshakes > o->serve.max_clients ||
	    o->serve.max_handshakes_per_address > o->serve.max_handshakes) {
		fprintf(stderr, "ferry-repo serve: --max-handshakes-per-address "
			"(%u) <= --max-handshakes (%u) <= --max-clients (%u), "
			"please\n", o->serve.max_handshakes_per_address,
			o->serve.max_handshakes, o->serve.max_clients);
		return 2;
	}
	if (repo_server_run(&o->serve) < 0)
		return fail();
	return 0;
}

static int cmd_verify(struct options *o)
{
	struct fy_verify_result res = { 0 };
	struct fy_repo *repo;
	int rc;

	if (fy_repo_open(o->root, 0, &repo) < 0)
		return fail();
	rc = fy_repo_verify_ex(repo, stdout, o->repair, &res);
	if (rc == 0 && res.blocks_deleted) {
		char who[320];

		fy_repo_audit(repo, fy_local_user(who, sizeof(who)), "local",
			      "repair", "deleted %" PRIu64 " corrupt blocks; "
			      "%" PRIu64 " backups damaged", res.blocks_deleted,
			      res.damaged_backups);
	}
	fy_repo_close(repo);
	if (rc < 0)
		return fail();
	/* fy_repo_verify printed the damage and a summary line. */
	return res.damaged_backups || res.blocks_bad || res.blocks_missing ? 1 : 0;
}

static int cmd_prune(struct options *o)
{
	struct fy_repo *repo;
	uint64_t removed = 0;
	int rc;

	if (fy_repo_open(o->root, 0, &repo) < 0)
		return fail();
	rc = fy_repo_prune(repo, &o->prune, stdout, &removed);
	fy_repo_close(repo);
	if (rc < 0)
		return fail();
	printf("%s %" PRIu64 " backups; run 'ferry-repo gc' to free their "
	       "blocks\n", o->prune.dry_run ? "would remove" : "removed",
	       removed);
	return 0;
}

static int cmd_gc(struct options *o)
{
	struct fy_gc_result res = { 0 };
	struct fy_repo *repo;
	int rc;

	if (fy_repo_open(o->root, 0, &repo) < 0)
		return fail();
	rc = fy_repo_gc(repo, o->dry_run, stdout, &res);
	if (rc == 0 && !o->dry_run) {
		char who[320];

		fy_repo_audit(repo, fy_local_user(who, sizeof(who)), "local",
			      "gc", "deleted %" PRIu64 " unreferenced blocks "
			      "(%" PRIu64 " bytes)", res.deleted,
			      res.bytes_freed);
	}
	fy_repo_close(repo);
	if (rc < 0)
		return fail();
	/* fy_repo_gc printed what it deleted and a summary line. */
	return 0;
}

/* ferry-repo acl list|grant|revoke|adopt: the repository's access list
 * (docs/SECURITY.md). The verb comes first, as the command's word. */
static const char *acl_verb;

static int acl_entry_from(struct options *o, struct fy_acl_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (!strcmp(acl_verb, "adopt")) {
		if (!o->owner || o->client) {
			fprintf(stderr, "ferry-repo acl adopt: --owner NAME "
				"(and no --client)\n");
			return -EINVAL;
		}
		e->kind = FY_ACL_ADOPT;
		snprintf(e->owner, sizeof(e->owner), "%s", o->owner);
		/* Legacy backups were all made in the root namespace. */
		snprintf(e->namespace_, sizeof(e->namespace_), "%s",
			 o->namespace_ ? o->namespace_ : "");
		snprintf(e->group, sizeof(e->group), "%s",
			 o->group ? o->group : FY_ACL_ANY);
		return 0;
	}
	if (!o->client || (!o->owner && !o->namespace_)) {
		fprintf(stderr, "ferry-repo acl %s: --client NAME and --owner "
			"NAME [--group SOURCE], or --namespace NS\n", acl_verb);
		return -EINVAL;
	}
	e->kind = FY_ACL_GRANT;
	snprintf(e->client, sizeof(e->client), "%s", o->client);
	snprintf(e->namespace_, sizeof(e->namespace_), "%s",
		 o->namespace_ ? o->namespace_ : "");
	snprintf(e->owner, sizeof(e->owner), "%s",
		 o->owner ? o->owner : FY_ACL_ANY);
	snprintf(e->group, sizeof(e->group), "%s",
		 o->group ? o->group : FY_ACL_ANY);
	return 0;
}

static int cmd_acl(struct options *o)
{
	struct fy_acl_entry e;
	struct fy_repo *repo;
	struct fy_acl *acl = NULL;
	char who[320];
	int rc;

	if (strcmp(acl_verb, "list") && strcmp(acl_verb, "grant") &&
	    strcmp(acl_verb, "revoke") && strcmp(acl_verb, "adopt")) {
		fprintf(stderr, "ferry-repo acl: list, grant, revoke or adopt, "
			"not '%s'\n", acl_verb);
		return 2;
	}
	if (strcmp(acl_verb, "list") && acl_entry_from(o, &e) < 0)
		return 2;
	if (fy_repo_open(o->root, 0, &repo) < 0)
		return fail();
	fy_local_user(who, sizeof(who));
	if (!strcmp(acl_verb, "list")) {
		rc = fy_acl_load(repo, &acl);
		if (rc == 0)
			fy_acl_print(acl, stdout, o->json);
		fy_acl_free(acl);
	} else if (!strcmp(acl_verb, "adopt")) {
		rc = fy_acl_change(repo, &e, true, who);
		/* Adopted groups are the owner's from now on: nobody else
		 * can claim them by backing up a source of that name. */
		if (rc == 0 && strcmp(e.group, FY_ACL_ANY))
			rc = fy_repo_group_claim(repo, e.namespace_, e.group,
						 e.owner);
	} else {
		rc = fy_acl_change(repo, &e, !strcmp(acl_verb, "grant"), who);
	}
	fy_repo_close(repo);
	if (rc < 0)
		return fail();
	if (strcmp(acl_verb, "list"))
		printf("%s: done\n", acl_verb);
	return 0;
}

static const struct command {
	const char *name;
	int (*run)(struct options *o);
	const char *usage;
} commands[] = {
	{ "init", cmd_init,
	  "--root DIR [--format 1|2]\n"
	  "  ferry-repo init --root DIR --s3 https://HOST:PORT/BUCKET "
	  "[--region R] [--path-style]\n"
	  "        [--s3-ca FILE] [--s3-credentials FILE] "
	  "[--object-lock-days N]\n"
	  "        [--object-lock-mode compliance|governance] "
	  "[--cache-size SIZE]" },
	{ "migrate", cmd_migrate, "--root DIR" },
	{ "rebuild-cache", cmd_rebuild_cache, "--root DIR" },
	{ "locate", cmd_locate, "--root DIR --digest HEX" },
	{ "serve", cmd_serve,
	  "--root DIR --listen HOST:PORT --cert F --key F --ca F [--crl F]\n"
	  "        [--workers N] [--max-clients N] [--idle-timeout S] "
	  "[--ready-file F]\n"
	  "        [--handshake-timeout S] [--max-handshakes N] "
	  "[--max-handshakes-per-address N]" },
	{ "verify", cmd_verify, "--root DIR [--repair]" },
	{ "prune", cmd_prune,
	  "--root DIR [--keep-last N] [--keep-daily N] [--keep-weekly N]\n"
	  "        [--keep-monthly N] [--namespace NS] [--owner NAME] "
	  "[--dry-run]" },
	{ "gc", cmd_gc, "--root DIR [--dry-run]" },
	{ "acl", cmd_acl,
	  "list --root DIR [--json]\n"
	  "  ferry-repo acl grant|revoke --root DIR --client NAME "
	  "(--owner NAME [--group SOURCE] | --namespace NS)\n"
	  "  ferry-repo acl adopt --root DIR --owner NAME [--group SOURCE]" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: ferry-repo COMMAND [OPTIONS]\n\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  ferry-repo %s %s\n", commands[i].name,
			commands[i].usage);
	fprintf(f, "\nEvery command also takes --log-level 0..6 and "
		"--log-file F; ferry-repo COMMAND --help prints its usage.\n");
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	size_t i;

	fy_memory_tune();
	fy_log_set_level(FY_LOG_WARN);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("ferry-repo %s\n", FERRY_VERSION);
		return 0;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		int skip = 1;

		if (strcmp(argv[1], commands[i].name))
			continue;
		if (fy_cli_wants_help(argc - 1, argv + 1)) {
			printf("usage: ferry-repo %s %s\n\nEvery command also "
			       "takes --log-level 0..6 and --log-file F.\n",
			       commands[i].name, commands[i].usage);
			return 0;
		}
		if (commands[i].run == cmd_acl) {
			if (argc < 3 || argv[2][0] == '-') {
				fprintf(stderr, "usage: ferry-repo acl %s\n",
					commands[i].usage);
				return 2;
			}
			acl_verb = argv[2];
			skip = 2;
		}
		if (parse_options(argc - skip, argv + skip, &o) < 0) {
			fprintf(stderr, "usage: ferry-repo %s %s\n",
				commands[i].name, commands[i].usage);
			return 2;
		}
		return commands[i].run(&o);
	}
	fprintf(stderr, "ferry-repo: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
