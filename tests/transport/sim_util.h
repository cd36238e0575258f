/*
 * What the transport tests against ferry-vcsim share: CONF (the
 * configuration tests/vsphere/ready2conf.py writes, with the simulator's
 * ready file under "test.") and a session with the simulator, its
 * /ferry-test control endpoint, and reading a source whole against a
 * local copy of its data.
 *
 * Header only, like check.h, whose failure count it adds to; a test
 * program includes it once.
 */
#ifndef FERRY_TEST_SIM_UTIL_H
#define FERRY_TEST_SIM_UTIL_H

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/unit/check.h"
#include "vsphere/vsphere.h"

#define SIM_MIB (1024u * 1024)
/* The most 1 MiB reads sim_same_as puts in one batch. */
#define SIM_BATCH_MAX 8

static const char *sim_conf_path;
static struct fy_config *sim_cfg;

/* Loads CONF into sim_cfg and logs in to the simulator with it; the test
 * cannot go on without either. sim_stop undoes both. */
static inline struct fy_vs_client *sim_start(const char *conf_path)
{
	struct fy_vs_client *c = NULL;

	sim_conf_path = conf_path;
	sim_cfg = fy_config_new();
	if (fy_config_load(sim_cfg, conf_path) < 0) {
		fprintf(stderr, "%s\n", fy_err_msg());
		exit(1);
	}
	if (fy_vs_client_open(sim_cfg, &c) < 0) {
		fprintf(stderr, "connect: %s\n", fy_err_msg());
		exit(1);
	}
	return c;
}

static inline void sim_stop(struct fy_vs_client *c)
{
	fy_vs_client_free(c);
	fy_config_free(sim_cfg);
	sim_cfg = NULL;
}

/* Runs test_NAME, its name printed first so that what a failing check
 * prints follows the test it belongs to. */
#define SIM_TEST(name)                                                       \
	do {                                                                 \
		printf("%s\n", #name);                                       \
		fflush(stdout);                                              \
		test_##name();                                               \
	} while (0)

/* A key of CONF the test cannot go on without. */
static inline const char *sim_get(const char *key)
{
	const char *v = fy_config_get(sim_cfg, key);

	if (!v) {
		fprintf(stderr, "%s lacks %s\n", sim_conf_path, key);
		exit(1);
	}
	return v;
}

/* The start of a control answer's body, for the test and for messages. */
struct sim_body {
	char data[4096];
	size_t len;
};

static inline size_t sim_keep(char *p, size_t s, size_t n, void *o)
{
	struct sim_body *b = o;
	size_t k = s * n;

	if (k > sizeof(b->data) - 1 - b->len)
		k = sizeof(b->data) - 1 - b->len;
	memcpy(b->data + b->len, p, k);
	b->len += k;
	b->data[b->len] = '\0';
	return s * n;
}

/* POST to the simulator's /ferry-test control endpoint; the answer's body
 * goes to resp (may be NULL). Returns the HTTP status, 0 without one. */
static inline long sim_control(const char *what, const void *data,
			       size_t len, struct sim_body *resp)
{
	struct sim_body scratch;
	char url[1024];
	long status = 0;
	CURL *e = curl_easy_init();

	if (!resp)
		resp = &scratch;
	resp->len = 0;
	resp->data[0] = '\0';
	snprintf(url, sizeof(url), "%s/%s", sim_get("test.control"), what);
	curl_easy_setopt(e, CURLOPT_URL, url);
	/* The test's own channel to the simulator, not Ferry's. */
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sim_keep);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, data ? data : "");
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)(data ? len : 0));
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(e);
	if (status != 200)
		fprintf(stderr, "control %s: HTTP %ld: %s\n", what, status,
			resp->data);
	return status;
}

/* A whole local file (at most 1 GiB) the test cannot go on without. */
static inline void *sim_read_local(const char *path, size_t *len)
{
	void *data = NULL;

	if (fy_read_file(path, 1u << 30, &data, len) < 0) {
		fprintf(stderr, "%s\n", fy_err_msg());
		exit(1);
	}
	return data;
}

/* Reads the whole source in batches of batch (1 to SIM_BATCH_MAX) reads of
 * 1 MiB and compares with want. */
static inline void sim_same_as(struct fy_source *src, const uint8_t *want,
			       size_t len, unsigned batch)
{
	struct fy_io ios[SIM_BATCH_MAX];
	uint8_t *buf;
	uint64_t off;
	size_t i, n;

	if (batch < 1 || batch > SIM_BATCH_MAX) {
		fprintf(stderr, "sim_same_as: a batch of %u reads\n", batch);
		check_failures++;
		return;
	}
	buf = malloc(batch * SIM_MIB);
	CHECK(src->size == len);
	for (off = 0; off < len; off += batch * SIM_MIB) {
		for (n = 0; n < batch && off + n * SIM_MIB < len; n++) {
			ios[n].buf = buf + n * SIM_MIB;
			ios[n].len = SIM_MIB;
			ios[n].offset = off + n * SIM_MIB;
		}
		CHECK_RC(fy_source_read_batch(src, ios, n));
		for (i = 0; i < n; i++) {
			size_t k = len - ios[i].offset < SIM_MIB
					   ? len - ios[i].offset
					   : SIM_MIB;

			CHECK(ios[i].result == 0);
			if (!memcmp(buf + i * SIM_MIB, want + ios[i].offset, k))
				continue;
			fprintf(stderr, "%s: data differs in the MiB at %llu\n",
				src->name, (unsigned long long)ios[i].offset);
			check_failures++;
			goto out;
		}
	}
out:
	free(buf);
}

#endif
