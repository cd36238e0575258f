/*
 * The client's multi-call logic against a scripted transport: paging and
 * cancel, re-login when the session expired (as a fault and as the
 * simulator's missingSet), task failure and progress, attach with read-back,
 * QueryChangedDiskAreas looping, PrepareForAccess retries and the End the
 * client does when freed. Each step names the method the client must call
 * and, optionally, text its request must (or must not) hold.
 *
 * usage: test_vs_client SAMPLES_DIR
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "vsphere/vs_int.h"

/* Script steps name only the fields they need. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static const char *dir;

struct step {
	const char *method;
	const char *file;      /* a sample, or */
	const char *inline_rv; /* the inside of <MethodResponse>, or */
	const char *fault;     /* a fault sample served with HTTP 500 */
	const char *must;      /* the request must contain this */
	const char *must_not;  /* and must not contain this */
};

static const struct step *script;
static size_t n_steps, pos;
static int progress_seen = -1;

#define ENV_HEAD                                                          \
	"<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"" \
	VS_NS_SOAPENV "\" xmlns:xsi=\"" VS_NS_XSI "\"><soapenv:Body>"
#define ENV_TAIL "</soapenv:Body></soapenv:Envelope>"

static char *load(const char *name, size_t *len)
{
	char path[1024];
	void *data = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (fy_read_file(path, 1u << 24, &data, len) < 0) {
		fprintf(stderr, "cannot read %s\n", path);
		exit(1);
	}
	return data;
}

static int transport(void *opaque, const char *method, const char *body,
		     size_t len, struct vs_http_resp *resp)
{
	const struct step *s;

	memset(resp, 0, sizeof(*resp));
	if (pos >= n_steps) {
		fprintf(stderr, "unexpected call %s after the script\n", method);
		check_failures++;
		return fy_err_set(-EIO, "script over");
	}
	s = &script[pos++];
	if (strcmp(method, s->method)) {
		fprintf(stderr, "step %zu: call %s, want %s\n", pos, method,
			s->method);
		check_failures++;
		return fy_err_set(-EIO, "script mismatch");
	}
	if (s->must && !strstr(body, s->must)) {
		fprintf(stderr, "step %zu (%s): request lacks '%s':\n%s\n", pos,
			method, s->must, body);
		check_failures++;
	}
	if (s->must_not && strstr(body, s->must_not)) {
		fprintf(stderr, "step %zu (%s): request holds '%s'\n", pos,
			method, s->must_not);
		check_failures++;
	}
	resp->status = 200;
	if (s->fault || s->file) {
		resp->data = load(s->fault ? s->fault : s->file, &resp->len);
		if (s->fault)
			resp->status = 500;
	} else {
		size_t n = strlen(ENV_HEAD) + 2 * strlen(method) + 64 +
			   strlen(s->inline_rv ? s->inline_rv : "") +
			   strlen(ENV_TAIL);

		resp->data = malloc(n);
		snprintf(resp->data, n, ENV_HEAD "<%sResponse xmlns=\"urn:vim25\">"
			 "%s</%sResponse>" ENV_TAIL, method,
			 s->inline_rv ? s->inline_rv : "", method);
		resp->len = strlen(resp->data);
	}
	return 0;
}

static void run(const struct step *steps, size_t n)
{
	script = steps;
	n_steps = n;
	pos = 0;
}

static void done(const char *what)
{
	if (pos != n_steps) {
		fprintf(stderr, "%s: %zu of %zu scripted calls made\n", what, pos,
			n_steps);
		check_failures++;
	}
}

#define RUN(steps) run(steps, sizeof(steps) / sizeof(steps[0]))

static struct fy_vs_client *client(const char *extra_key, const char *value)
{
	struct fy_config *cfg = fy_config_new();
	struct fy_vs_client *c = NULL;

	fy_config_set(cfg, "ferry.vcenter.server", "vc.example.com");
	fy_config_set(cfg, "ferry.vcenter.user", "backup@vsphere.local");
	fy_config_set(cfg, "ferry.vcenter.prepareRetries", "2");
	fy_config_set(cfg, "ferry.vcenter.prepareRetrySeconds", "0");
	if (extra_key)
		fy_config_set(cfg, extra_key, value);
	setenv("FERRY_VCENTER_PASSWORD", "s3cr&t", 1);
	CHECK_RC(fy_vs_client_create(cfg, &c));
	fy_config_free(cfg);
	if (c)
		vs_client_set_transport(c, transport, NULL);
	return c;
}

#define VIEW_RV "<returnval type=\"ContainerView\">session[1]view</returnval>"
#define MOREF_RV(t, v) "<returnval type=\"" t "\">" v "</returnval>"

static void test_paging(void)
{
	const struct step steps[] = {
		{ "CreateContainerView", NULL, VIEW_RV, NULL, "<type>Folder</type>" },
		{ "RetrievePropertiesEx", "page1.xml", NULL, NULL,
		  "<maxObjects>100</maxObjects>" },
		{ "ContinueRetrievePropertiesEx", "page2.xml", NULL, NULL,
		  "<token>tok-1</token>" },
		{ "DestroyView", NULL, "", NULL, "session[1]view" },
	};
	struct fy_vs_client *c = client(NULL, NULL);
	struct fy_vs_moref m;

	RUN(steps);
	CHECK_RC(fy_vs_find_vm(c, FY_VS_BY_NAME, "web01", &m));
	CHECK(!strcmp(m.value, "vm-7") && !strcmp(m.type, "VirtualMachine"));
	done("paging");
	fy_vs_client_free(c);
}

static int stop_cb(void *opaque, const struct vs_node *o)
{
	return fy_err_set(-ECANCELED, "stop");
}

static void test_cancel(void)
{
	static const char *const paths[] = { "name", NULL };
	const struct step steps[] = {
		{ "RetrievePropertiesEx", "page1.xml" },
		{ "CancelRetrievePropertiesEx", NULL, "", NULL,
		  "<token>tok-1</token>" },
	};
	struct vs_prop_spec spec = { "Folder", paths };
	struct fy_vs_client *c = client(NULL, NULL);
	struct fy_vs_moref m;

	vs_moref_set(&m, "Folder", "group-d1");
	RUN(steps);
	CHECK(vs_retrieve(c, &m, false, &spec, 1, stop_cb, NULL) == -ECANCELED);
	done("cancel");
	fy_vs_client_free(c);
}

static void test_relogin(void)
{
	const struct step steps[] = {
		{ "FindByUuid", NULL, NULL, "fault_not_authenticated.xml" },
		/* The password is escaped and sent only in Login. */
		{ "Login", "sim_login.xml", NULL, NULL,
		  "<password>s3cr&amp;t</password>" },
		{ "FindByUuid", NULL, MOREF_RV("VirtualMachine", "vm-9"), NULL,
		  "<instanceUuid>true</instanceUuid>", "s3cr" },
	};
	const struct step steps2[] = {
		{ "RetrievePropertiesEx", "sim_retrieve_unauthenticated.xml" },
		{ "Login", "sim_login.xml" },
		{ "RetrievePropertiesEx", NULL,
		  "<returnval><objects><obj type=\"VirtualMachine\">vm-7</obj>"
		  "<propSet><name>name</name><val>web01</val></propSet></objects>"
		  "</returnval>" },
	};
	const struct step steps3[] = {
		{ "FindByUuid", NULL, NULL, "sim_fault_not_authenticated.xml" },
		{ "Login", NULL, NULL, "fault_invalid_login.xml" },
	};
	struct fy_vs_client *c = client(NULL, NULL);
	struct fy_vs_moref m;

	RUN(steps);
	CHECK_RC(fy_vs_find_vm(c, FY_VS_BY_INSTANCE_UUID,
			       "5012c2f1-7e3d-4c2b-8a6f-0123456789ab", &m));
	CHECK(!strcmp(m.value, "vm-9"));
	CHECK(fy_vs_client_logins(c) == 2);
	done("relogin after fault");

	/* The simulator's way: NotAuthenticated in a missingSet. */
	RUN(steps2);
	CHECK_RC(fy_vs_find_vm(c, FY_VS_BY_MOREF, "vm-7", &m));
	CHECK(fy_vs_client_logins(c) == 3);
	done("relogin after missingSet");

	/* The password changed meanwhile: a clear error, no loop. */
	RUN(steps3);
	CHECK(fy_vs_find_vm(c, FY_VS_BY_INSTANCE_UUID, "x", &m) == -EACCES);
	CHECK(strstr(fy_err_msg(), "wrong user name or password") != NULL);
	CHECK(strstr(fy_err_msg(), "s3cr") == NULL);
	CHECK(!strcmp(fy_vs_last_fault()->type, "InvalidLogin"));
	done("relogin refused");
	fy_vs_client_free(c);
}

static void on_progress(void *opaque, const char *what, int percent)
{
	if (percent != 100)
		progress_seen = percent;
}

static void test_attach(void)
{
	const struct step fail[] = {
		{ "RetrievePropertiesEx", "vm_rich.xml", NULL, NULL,
		  "config.hardware.device" },
		/* Controller 1000 (bus 0) has units 0 and 1 taken. */
		{ "ReconfigVM_Task", NULL, MOREF_RV("Task", "task-9"), NULL,
		  "<controllerKey>1000</controllerKey><unitNumber>2</unitNumber>",
		  "fileOperation" },
		{ "RetrievePropertiesEx", "task_running.xml" },
		{ "RetrievePropertiesEx", "task_error_file_locked.xml" },
	};
	const struct step not_there[] = {
		{ "RetrievePropertiesEx", "vm_rich.xml" },
		{ "ReconfigVM_Task", NULL, MOREF_RV("Task", "task-68"), NULL,
		  "<diskMode>independent_nonpersistent</diskMode>" },
		{ "RetrievePropertiesEx", "sim_task_success.xml" },
		{ "RetrievePropertiesEx", "vm_rich.xml" },
	};
	const struct step remove[] = {
		{ "RetrievePropertiesEx", "vm_rich.xml" },
		{ "ReconfigVM_Task", NULL, MOREF_RV("Task", "task-68"), NULL,
		  "<operation>remove</operation>", "fileOperation" },
		{ "RetrievePropertiesEx", "sim_task_success.xml" },
		{ "RetrievePropertiesEx", "vm_rich.xml" },
	};
	struct fy_vs_client *c = client(NULL, NULL);
	struct fy_vs_disk_attach a = { "[ds1] db01/db01-000001.vmdk", NULL, -1,
				       -1 };
	struct fy_vs_attached out;
	struct fy_vs_moref vm;

	vs_moref_set(&vm, NULL, "vm-1");
	fy_vs_client_set_progress(c, on_progress, NULL);
	RUN(fail);
	CHECK(fy_vs_vm_add_disk(c, &vm, &a, &out) == -EBUSY);
	CHECK(strstr(fy_err_msg(), "FileLocked") != NULL);
	CHECK(strstr(fy_err_msg(), "[ds1] vm-two-disks/vm-two-disks.vmdk"));
	CHECK(!strcmp(fy_vs_last_fault()->type, "FileLocked"));
	CHECK(progress_seen == 37 || progress_seen == 42);
	done("attach failing");

	/* The task says success but the disk is not there. */
	RUN(not_there);
	CHECK(fy_vs_vm_add_disk(c, &vm, &a, &out) == -EIO);
	CHECK(strstr(fy_err_msg(), "reported success") != NULL);
	done("attach not confirmed");

	/* Removal that the device list does not confirm either. */
	RUN(remove);
	CHECK(fy_vs_vm_remove_disk(c, &vm, 2000) == -EIO);
	CHECK(strstr(fy_err_msg(), "still there") != NULL);
	done("remove not confirmed");
	fy_vs_client_free(c);
}

#define QCDA(start, len, areas)                                           \
	"<returnval><startOffset>" start "</startOffset><length>" len       \
	"</length>" areas "</returnval>"
#define AREA(s, l) "<changedArea><start>" s "</start><length>" l "</length></changedArea>"

static void test_changed_areas(void)
{
	const struct step steps[] = {
		{ "QueryChangedDiskAreas", NULL,
		  QCDA("0", "16777216", AREA("0", "65536") AREA("65536", "65536")),
		  NULL, "<startOffset>0</startOffset>" },
		{ "QueryChangedDiskAreas", NULL, QCDA("16777216", "16777216", ""),
		  NULL, "<startOffset>16777216</startOffset>" },
		{ "QueryChangedDiskAreas", NULL,
		  QCDA("33554432", "16777216",
		       AREA("33554432", "4096") AREA("41943040", "8388608")),
		  NULL, "<changeId>*</changeId>" },
	};
	const struct step stuck[] = {
		{ "QueryChangedDiskAreas", NULL, QCDA("0", "0", "") },
	};
	struct fy_vs_client *c = client(NULL, NULL);
	struct fy_vs_moref vm, snap;
	struct fy_vs_areas *areas = NULL;

	vs_moref_set(&vm, NULL, "vm-7");
	vs_moref_set(&snap, NULL, "snapshot-9");
	RUN(steps);
	CHECK_RC(fy_vs_changed_areas_get(c, &vm, &snap, 2000, 44u << 20, "*",
					 &areas));
	done("changed areas");
	/* Adjacent areas merged; the last one clipped to the capacity. */
	CHECK(areas && areas->n == 3);
	if (areas && areas->n == 3) {
		CHECK(areas->areas[0].start == 0 &&
		      areas->areas[0].length == 131072);
		CHECK(areas->areas[1].start == 33554432 &&
		      areas->areas[1].length == 4096);
		CHECK(areas->areas[2].start == 41943040 &&
		      areas->areas[2].length == (44u << 20) - 41943040u);
	}
	fy_vs_areas_free(areas);

	RUN(stuck);
	CHECK(fy_vs_changed_areas_get(c, &vm, &snap, 2000, 1u << 20, "*",
				      &areas) == -EPROTO);
	CHECK(areas == NULL);
	done("changed areas, no progress");
	fy_vs_client_free(c);
}

#define NO_RECENT "<returnval><objects><obj type=\"VirtualMachine\">vm-7</obj></objects></returnval>"

static void test_prepare(void)
{
	const struct step busy[] = {
		{ "RetrievePropertiesEx", NULL, NO_RECENT, NULL, "recentTask" },
		{ "DisableMethods", NULL, NULL, "fault_task_in_progress.xml",
		  "<sourceId>ferry:job-1</sourceId>" },
		{ "RetrievePropertiesEx", NULL, NO_RECENT },
		{ "DisableMethods", NULL, NULL, "fault_task_in_progress.xml" },
		{ "RetrievePropertiesEx", NULL, NO_RECENT },
		{ "DisableMethods", NULL, NULL, "fault_task_in_progress.xml" },
	};
	const struct step ok[] = {
		{ "RetrievePropertiesEx", NULL, NO_RECENT },
		{ "DisableMethods", NULL, "", NULL,
		  "xmlns=\"urn:internalvim25\"><_this type=\"AuthorizationManager\">"
		  "AuthorizationManager</_this><entity type=\"VirtualMachine\">vm-7"
		  "</entity><method><method>RelocateVM_Task</method></method>" },
		/* Never ended by the caller: the client ends it when freed. */
		{ "EnableMethods", NULL, "", NULL,
		  "<method>RelocateVM_Task</method><sourceId>ferry:job-2"
		  "</sourceId>" },
	};
	const struct step denied[] = {
		{ "RetrievePropertiesEx", NULL, NO_RECENT },
		{ "DisableMethods", NULL, NULL, "fault_no_permission.xml" },
	};
	struct fy_vs_client *c = client(NULL, NULL);
	struct fy_vs_moref vm;

	vs_moref_set(&vm, NULL, "vm-7");
	RUN(busy);
	CHECK(fy_vs_prepare_for_access(c, &vm, "job-1") == -EBUSY);
	CHECK(strstr(fy_err_msg(), "Storage vMotion is still running after 2 "
				   "retries") != NULL);
	done("prepare busy");

	CHECK(fy_vs_prepare_for_access(c, &vm, "123456789012345678901234567890"
					       "123456789012345678901") ==
	      -EINVAL);
	RUN(denied);
	CHECK(fy_vs_prepare_for_access(c, &vm, "job-3") == -EPERM);
	CHECK(strstr(fy_err_msg(), "missing privilege") != NULL);
	done("prepare denied");

	RUN(ok);
	CHECK_RC(fy_vs_prepare_for_access(c, &vm, "job-2"));
	fy_vs_client_free(c);
	done("prepare then free");

	/* Straight to ESXi: a warning and no call at all. */
	c = client(NULL, NULL);
	c->is_vcenter = false;
	run(NULL, 0);
	CHECK_RC(fy_vs_prepare_for_access(c, &vm, "job-4"));
	CHECK_RC(fy_vs_end_access(c, &vm, "job-4"));
	fy_vs_client_free(c);
}

static void test_config(void)
{
	struct fy_config *cfg = fy_config_new();
	struct fy_vs_client *c = NULL;

	unsetenv("FERRY_VCENTER_PASSWORD");
	fy_config_set(cfg, "ferry.vcenter.server", "vc.example.com");
	fy_config_set(cfg, "ferry.vcenter.user", "u");
	CHECK(fy_vs_client_create(cfg, &c) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "FERRY_VCENTER_PASSWORD") != NULL);
	setenv("FERRY_VCENTER_PASSWORD", "p", 1);
	fy_config_set(cfg, "ferry.vcenter.thumbprint",
		      "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD");
	CHECK(fy_vs_client_create(cfg, &c) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "SHA-1") != NULL);
	fy_config_set(cfg, "ferry.vcenter.thumbprint", "zz");
	CHECK(fy_vs_client_create(cfg, &c) == -EINVAL);
	fy_config_set(cfg, "ferry.vcenter.thumbprint", "");
	fy_config_set(cfg, "ferry.vcenter.server", "http://vc/sdk");
	CHECK(fy_vs_client_create(cfg, &c) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "plain http") != NULL);
	fy_config_set(cfg, "ferry.vcenter.server", "vc.example.com:8443");
	fy_config_set(cfg, "ferry.vcenter.maxResponseBytes", "1K");
	CHECK(fy_vs_client_create(cfg, &c) == -EINVAL);
	fy_config_set(cfg, "ferry.vcenter.maxResponseBytes", "8M");
	CHECK_RC(fy_vs_client_create(cfg, &c));
	if (c) {
		CHECK(!strcmp(c->url, "https://vc.example.com:8443/sdk"));
		CHECK(!strcmp(c->versions_url, "https://vc.example.com:8443/sdk/"
						"vimServiceVersions.xml"));
		CHECK(c->limits.max_response == 8u << 20);
	}
	fy_vs_client_free(c);
	fy_vs_client_free(NULL);
	fy_config_free(cfg);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SAMPLES_DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	fy_log_set_level(FY_LOG_ERROR);
	test_config();
	test_paging();
	test_cancel();
	test_relogin();
	test_attach();
	test_changed_areas();
	test_prepare();
	CHECK_DONE();
}
