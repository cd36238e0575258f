/*
 * The https transport against hostile_folder.py: every answer that is not
 * exactly the bytes asked for (Range ignored, another range, another file
 * size, no Content-Range, a body too long or too short, a stall, a large
 * error page) must fail the read with a sentence saying so, and never put
 * stray bytes past the caller's buffer; a 401 is retried once after a new
 * login, twice is an error. SOAP is faked (the client's test transport):
 * only /folder goes over the network.
 *
 * usage: test_ds_hostile BASE_URL THUMBPRINT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "vsphere/vs_int.h"

#define SIZE (1u << 20)

static unsigned logins;
static struct fy_vs_client *c;

/* The fake SOAP side: every call is a Login that works. */
static int fake_soap(void *opaque, const char *method, const char *body,
		     size_t len, struct vs_http_resp *resp)
{
	static const char ok[] =
	    "<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv="
	    "\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>"
	    "<LoginResponse xmlns=\"urn:vim25\"><returnval><key>k</key>"
	    "</returnval></LoginResponse></soapenv:Body></soapenv:Envelope>";

	/* A real Login sets a new session cookie. */
	if (!strcmp(method, "Login")) {
		struct fy_vs_client *cl = opaque;

		logins++;
		pthread_mutex_lock(&cl->lock);
		snprintf(cl->cookie, sizeof(cl->cookie), "vmware_soap_session=ok");
		pthread_mutex_unlock(&cl->lock);
	}
	memset(resp, 0, sizeof(*resp));
	resp->status = 200;
	resp->data = strdup(ok);
	resp->len = strlen(ok);
	snprintf(resp->content_type, sizeof(resp->content_type), "text/xml");
	return 0;
}

static uint8_t pattern(size_t i)
{
	return (uint8_t)((i * 7 + (i >> 9)) & 0xff);
}

static int read_mode(const char *mode, uint8_t *buf, size_t len,
		     uint64_t off, int *open_rc)
{
	struct fy_vs_ds_opts o;
	struct fy_source *src = NULL;
	char file[128];
	int rc;

	fy_vs_ds_opts_default(&o);
	o.request_size = 256 * 1024;
	o.max_in_flight = 2;
	snprintf(file, sizeof(file), "[ds] %s/disk.vmdk", mode);
	*open_rc = fy_vs_datastore_source_open(c, "dc", file, &o, &src);
	if (*open_rc < 0)
		return *open_rc;
	rc = fy_source_read(src, buf, len, off);
	fy_source_close(src);
	return rc;
}

static void expect(const char *mode, int want, const char *words)
{
	/* One byte more than asked, to see nothing lands past the end. */
	uint8_t *buf = malloc(SIZE + 1);
	int open_rc, rc;

	memset(buf, 0xEE, SIZE + 1);
	rc = read_mode(mode, buf, SIZE, 0, &open_rc);
	printf("  %s: %s\n", mode, rc < 0 ? fy_err_msg() : "ok");
	if (rc != want || (words && !strstr(fy_err_msg(), words))) {
		fprintf(stderr, "%s: want %d with '%s', got %d: %s\n", mode,
			want, words ? words : "", rc, fy_err_msg());
		check_failures++;
	}
	CHECK(buf[SIZE] == 0xEE);
	if (want == 0) {
		size_t i;

		for (i = 0; i < SIZE; i++)
			if (buf[i] != pattern(i))
				break;
		CHECK(i == SIZE);
	}
	free(buf);
}

int main(int argc, char **argv)
{
	struct fy_config *cfg;
	char url[256];
	unsigned before;

	if (argc != 3) {
		fprintf(stderr, "usage: %s BASE_URL THUMBPRINT\n", argv[0]);
		return 2;
	}
	setenv("FERRY_VCENTER_PASSWORD", "pw", 1);
	fy_log_set_level(FY_LOG_ERROR);
	cfg = fy_config_new();
	snprintf(url, sizeof(url), "%s/sdk", argv[1]);
	fy_config_set(cfg, "ferry.vcenter.server", url);
	fy_config_set(cfg, "ferry.vcenter.user", "u");
	fy_config_set(cfg, "ferry.vcenter.thumbprint", argv[2]);
	fy_config_set(cfg, "ferry.vcenter.stallTimeoutSeconds", "2");
	if (fy_vs_client_create(cfg, &c) < 0) {
		fprintf(stderr, "%s\n", fy_err_msg());
		return 1;
	}
	vs_client_set_transport(c, fake_soap, c);
	snprintf(c->cookie, sizeof(c->cookie), "vmware_soap_session=ok");

	expect("ok", 0, NULL);
	expect("ignore-range", -EPROTO, "ignored the Range request (HTTP 200");
	/* Two requests in flight: either may be the first to fail. */
	expect("bad-range", -EPROTO, "asked for bytes");
	expect("bad-total", -EPROTO, "names a file size other than the "
				     "1048576 bytes HEAD gave");
	expect("no-range-header", -EPROTO, "HTTP 206 without a usable "
					   "Content-Range");
	expect("oversize", -EPROTO, "sent more than the 262144 bytes asked");
	expect("short", -EIO, "disk-flat.vmdk");
	expect("stall", -ETIMEDOUT, "no answer in time");
	/* Several reads are in flight: whichever fails first is reported. */
	expect("big-error", -EIO, "HTTP 500 reading 262144 bytes at offset ");
	expect("desc-big", -EFBIG, "larger than 65536 bytes");
	expect("desc-missing", -ENOENT, "[ds] desc-missing/disk.vmdk not found "
					"(HTTP 404");

	/* A 401 on a read: one new login, then the bytes. */
	before = logins;
	expect("auth-once", 0, NULL);
	CHECK(logins > before);
	/* Refused again after the new login: an error, not a loop. */
	before = logins;
	expect("auth-always", -EACCES, "even after logging in again");
	CHECK(logins > before);

	/* A wrong pin is refused before any request is sent. */
	c->pin[5] ^= 1;
	expect("ok", -EPERM, "thumbprint");
	fy_vs_client_free(c);
	fy_config_free(cfg);
	CHECK_DONE();
}
