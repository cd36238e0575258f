/*
 * The client against hostile_server.py: every misbehaviour must end in a
 * clear error (the right errno, a sentence that says what happened), no
 * crash, and bounded memory.
 *
 * usage: test_vs_hostile BASE_URL THUMBPRINT CERT_PEM
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tests/unit/check.h"
#include "vsphere/vsphere.h"

static const char *base, *thumbprint, *cert;

static int try_mode(const char *mode, const char *key, const char *value,
		    const char *key2, const char *value2)
{
	struct fy_config *cfg = fy_config_new();
	struct fy_vs_client *c = NULL;
	char url[512];
	int rc;

	snprintf(url, sizeof(url), "%s/%s/sdk", base, mode);
	fy_config_set(cfg, "ferry.vcenter.server", url);
	fy_config_set(cfg, "ferry.vcenter.user", "u");
	fy_config_set(cfg, "ferry.vcenter.thumbprint", thumbprint);
	/* Straight to the SOAP calls: the versions file is not served. */
	fy_config_set(cfg, "ferry.vcenter.apiVersion", "6.7");
	fy_config_set(cfg, "ferry.vcenter.stallTimeoutSeconds", "2");
	fy_config_set(cfg, "ferry.vcenter.requestTimeoutSeconds", "60");
	if (key)
		fy_config_set(cfg, key, value);
	if (key2)
		fy_config_set(cfg, key2, value2);
	rc = fy_vs_client_open(cfg, &c);
	fprintf(stderr, "%s: %d: %s\n", mode, rc, rc < 0 ? fy_err_msg() : "ok");
	CHECK(rc < 0 || c != NULL);
	fy_vs_client_free(c);
	fy_config_free(cfg);
	return rc;
}

static void expect(const char *mode, int want, const char *in1,
		   const char *in2)
{
	int rc = try_mode(mode, NULL, NULL, NULL, NULL);

	if (rc != want || (in1 && !strstr(fy_err_msg(), in1)) ||
	    (in2 && !strstr(fy_err_msg(), in2))) {
		fprintf(stderr, "  want %d with '%s' '%s'\n", want,
			in1 ? in1 : "", in2 ? in2 : "");
		check_failures++;
	}
}

int main(int argc, char **argv)
{
	struct rusage ru;
	int rc;

	if (argc != 4) {
		fprintf(stderr, "usage: %s BASE_URL THUMBPRINT CERT\n", argv[0]);
		return 2;
	}
	base = argv[1];
	thumbprint = argv[2];
	cert = argv[3];
	setenv("FERRY_VCENTER_PASSWORD", "pw", 1);
	fy_log_set_level(FY_LOG_ERROR);

	expect("stall", -ETIMEDOUT, "did not answer in time", NULL);
	expect("stall-mid", -ETIMEDOUT, "did not answer in time", NULL);
	expect("html", -EBADMSG, "HTML page", "503 Service Unavailable");
	expect("html", -EBADMSG, "HTTP 503", "RetrieveServiceContent");
	expect("huge", -EFBIG, "larger than", NULL);
	expect("huge-chunked", -EFBIG, "larger than", NULL);
	expect("truncated", -EBADMSG, "malformed", NULL);
	expect("malformed", -EBADMSG, "malformed", NULL);
	expect("laughs", -EBADMSG, "DTD", NULL);
	expect("deep", -EBADMSG, "nested deeper than", NULL);
	CHECK(try_mode("close", NULL, NULL, NULL, NULL) < 0);
	/* A smaller configured bound is honoured. */
	rc = try_mode("huge-chunked", "ferry.vcenter.maxResponseBytes", "1M",
		      NULL, NULL);
	CHECK(rc == -EFBIG && strstr(fy_err_msg(), "1048576"));

	/* Certificates: a wrong pin is refused before any request. */
	rc = try_mode("html", "ferry.vcenter.thumbprint",
		      "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:"
		      "33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF", NULL, NULL);
	CHECK(rc == -EPERM && strstr(fy_err_msg(), thumbprint));
	/* No pin, no CA: not trusted, and the message gives the pin. */
	rc = try_mode("html", "ferry.vcenter.thumbprint", "", NULL, NULL);
	CHECK(rc == -EPERM && strstr(fy_err_msg(), "not trusted") &&
	      strstr(fy_err_msg(), thumbprint));
	/* The certificate as CA: TLS passes, the HTML page is what fails. */
	rc = try_mode("html", "ferry.vcenter.thumbprint", "",
		      "ferry.vcenter.caFile", cert);
	CHECK(rc == -EBADMSG && strstr(fy_err_msg(), "HTML"));
	/* Verification off: the same, with a warning. */
	rc = try_mode("html", "ferry.vcenter.thumbprint", "",
		      "vixDiskLib.linuxSSL.verifyCertificates", "0");
	CHECK(rc == -EBADMSG);

	/* 300 MB were offered twice: memory stayed near the 64 MiB bound. */
	getrusage(RUSAGE_SELF, &ru);
	fprintf(stderr, "max RSS %ld MiB\n", ru.ru_maxrss / 1024);
	CHECK(ru.ru_maxrss < 400 * 1024);
	CHECK_DONE();
}
