/*
 * The repository's access list and group records (image/acl.c): broken
 * lists are refused with the line and the reason; grants, adoptions and
 * roles decide reads as docs/SECURITY.md says; a group has one owner; the
 * list survives a change durably and round-trips through its text form.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/image.h"
#include "check.h"

static void refused(const char *text, const char *want)
{
	struct fy_acl *acl = NULL;
	int rc = fy_acl_parse_mem(text, strlen(text), &acl);

	if (rc != -EBADMSG && rc != -EFBIG) {
		fprintf(stderr, "accepted (%d): %s", rc, text);
		CHECK(!"broken list accepted");
	} else if (!strstr(fy_err_msg(), want)) {
		fprintf(stderr, "message '%s' lacks '%s'\n", fy_err_msg(), want);
		CHECK(!"message");
	}
	CHECK(acl == NULL);
}

static void test_broken(void)
{
	static char big[FY_ACL_FILE_MAX + 2];
	char longline[FY_ACL_LINE_MAX + 64];

	refused("", "empty");
	refused("ferry-acl 2\n", "does not start with 'ferry-acl 1'");
	refused("ferry-acl 1\ngrant a ~ b c", "no newline");
	refused("ferry-acl 1\ngrant a ~ b\n", "line 2: expected");
	refused("ferry-acl 1\ngrant a ~ b c d\n", "line 2: expected");
	refused("ferry-acl 1\nallow a ~ b c\n", "line 2: expected");
	refused("ferry-acl 1\ngrant * ~ b c\n", "one client");
	refused("ferry-acl 1\ngrant ~ ~ b c\n", "one client");
	refused("ferry-acl 1\nadopt * ~ c\n", "one owner");
	refused("ferry-acl 1\ngrant a ~ b %zz\n", "not encoded");
	refused("ferry-acl 1\ngrant a ~ b %2\n", "not encoded");
	refused("ferry-acl 1\ngrant a ~ b %00\n", "not encoded");
	refused("ferry-acl 1\ngrant a ~ b c\"d\n", "not encoded");
	refused("ferry-acl 1\ngrant a bad%2Fns b c\n", "namespace");
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "ferry-acl 1\ngrant a ~ b ", 24);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	refused(longline, "longer than");
	memset(big, '#', sizeof(big) - 1);
	refused(big, "at most");
	{
		struct fy_acl *acl = NULL;
		const char nul[] = "ferry-acl 1\ngrant a ~ b c\0d\n";

		CHECK(fy_acl_parse_mem(nul, sizeof(nul) - 1, &acl) == -EBADMSG);
		CHECK(strstr(fy_err_msg(), "NUL") != NULL);
	}
}

static void manifest(struct fy_manifest *m, const char *owner, const char *ns,
		     const char *source)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->owner, sizeof(m->owner), "%s", owner);
	snprintf(m->namespace_, sizeof(m->namespace_), "%s", ns);
	snprintf(m->source, sizeof(m->source), "%s", source);
}

static void test_rules(void)
{
	const char *text = "ferry-acl 1\n"
			   "# a comment\n"
			   "grant reader ~ agent1 %5Bds1%5D%20vm%2Fvm.vmdk\n"
			   "grant central site2 * *\n"
			   "grant wide ~ * *\n"
			   "adopt agent1 ~ legacy.img\n";
	struct fy_acl *acl = NULL;
	struct fy_manifest m;

	CHECK_RC(fy_acl_parse_mem(text, strlen(text), &acl));
	if (!acl)
		return;
	CHECK(fy_acl_count(acl) == 4);
	CHECK(!strcmp(fy_acl_entry(acl, 0)->group, "[ds1] vm/vm.vmdk"));
	CHECK(!strcmp(fy_acl_entry(acl, 0)->namespace_, ""));

	manifest(&m, "agent1", "", "[ds1] vm/vm.vmdk");
	CHECK(fy_acl_may_read(acl, "agent1", FY_ROLE_AGENT, &m));
	CHECK(fy_acl_may_read(acl, "reader", FY_ROLE_AGENT, &m));
	CHECK(!fy_acl_may_read(acl, "agent2", FY_ROLE_AGENT, &m));
	CHECK(fy_acl_may_read(acl, "alice", FY_ROLE_ADMIN, &m));
	CHECK(!fy_acl_may_read(acl, "central", FY_ROLE_CONTROLLER, &m));
	/* A repository's certificate never reads, even as an owner. */
	CHECK(!fy_acl_may_read(acl, "agent1", FY_ROLE_REPOSITORY, &m));
	manifest(&m, "agent1", "", "other");
	CHECK(!fy_acl_may_read(acl, "reader", FY_ROLE_AGENT, &m));
	manifest(&m, "agent9", "site2", "x");
	CHECK(fy_acl_may_read(acl, "central", FY_ROLE_CONTROLLER, &m));
	manifest(&m, "agent9", "site3", "x");
	CHECK(!fy_acl_may_read(acl, "central", FY_ROLE_CONTROLLER, &m));

	/* Legacy backups: the adoption names the owner; the rest are the
	 * admins' alone, even for a wildcard-owner grant. */
	manifest(&m, "", "", "legacy.img");
	CHECK(!strcmp(fy_acl_owner_of(acl, &m), "agent1"));
	CHECK(fy_acl_may_read(acl, "agent1", FY_ROLE_AGENT, &m));
	manifest(&m, "", "", "unadopted.img");
	CHECK(!strcmp(fy_acl_owner_of(acl, &m), ""));
	CHECK(!fy_acl_may_read(acl, "wide", FY_ROLE_AGENT, &m));
	CHECK(!fy_acl_may_read(acl, "agent1", FY_ROLE_AGENT, &m));
	CHECK(fy_acl_may_read(acl, "alice", FY_ROLE_ADMIN, &m));
	fy_acl_free(acl);
	fy_acl_free(NULL);
}

static void test_repo(void)
{
	char dir[] = "test_acl_XXXXXX", root[64], cmd[96], owner[FY_OWNER_MAX];
	struct fy_acl_entry e = { .kind = FY_ACL_GRANT };
	struct fy_repo *repo = NULL;
	struct fy_acl *acl = NULL;
	FILE *f;
	char line[512];
	int n = 0;

	if (!mkdtemp(dir))
		return;
	snprintf(root, sizeof(root), "%s/repo", dir);
	CHECK_RC(fy_repo_init(root));
	CHECK_RC(fy_repo_open(root, 0, &repo));
	if (!repo)
		return;
	/* No list yet: empty. */
	CHECK_RC(fy_acl_load(repo, &acl));
	CHECK(acl && fy_acl_count(acl) == 0);
	fy_acl_free(acl);

	snprintf(e.client, sizeof(e.client), "reader");
	snprintf(e.owner, sizeof(e.owner), "agent1");
	snprintf(e.group, sizeof(e.group), "a group with spaces and 100%%");
	CHECK_RC(fy_acl_change(repo, &e, true, "local:test"));
	CHECK(fy_acl_change(repo, &e, true, "local:test") == -EEXIST);
	CHECK_RC(fy_acl_load(repo, &acl));
	CHECK(acl && fy_acl_count(acl) == 1 &&
	      !strcmp(fy_acl_entry(acl, 0)->group, e.group));
	fy_acl_free(acl);
	CHECK_RC(fy_acl_change(repo, &e, false, "local:test"));
	CHECK(fy_acl_change(repo, &e, false, "local:test") == -ENOENT);
	snprintf(e.namespace_, sizeof(e.namespace_), "no/slash");
	CHECK(fy_acl_change(repo, &e, true, "local:test") == -EINVAL);

	/* Groups: the first claim wins, for good; namespaces are apart. */
	CHECK_RC(fy_repo_group_claim(repo, "", "vm-web", "agent1"));
	CHECK_RC(fy_repo_group_claim(repo, "", "vm-web", "agent1"));
	CHECK(fy_repo_group_claim(repo, "", "vm-web", "agent2") == -EACCES);
	CHECK(strstr(fy_err_msg(), "belongs to agent1, not agent2") != NULL);
	CHECK_RC(fy_repo_group_claim(repo, "site2", "vm-web", "agent2"));
	CHECK_RC(fy_repo_group_owner(repo, "site2", "vm-web", owner,
				     sizeof(owner)));
	CHECK(!strcmp(owner, "agent2"));
	CHECK(fy_repo_group_owner(repo, "", "nobody's", owner, sizeof(owner)) ==
	      -ENOENT);

	/* Audit: one JSON line per change. */
	snprintf(cmd, sizeof(cmd), "%s/audit.log", root);
	f = fopen(cmd, "r");
	CHECK(f != NULL);
	while (f && fgets(line, sizeof(line), f)) {
		CHECK(strstr(line, "\"who\":\"local:test\"") != NULL);
		n++;
	}
	if (f)
		fclose(f);
	CHECK(n == 2);
	fy_repo_close(repo);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

int main(void)
{
	fy_log_set_level(FY_LOG_ERROR);
	test_broken();
	test_rules();
	test_repo();
	CHECK_DONE();
}
