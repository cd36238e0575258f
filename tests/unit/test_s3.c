/*
 * The S3 client's pieces that need no server: the SigV4 signer against
 * AWS's published test vectors (the aws-sig-v4-test-suite cases and the
 * S3 examples of the S3 API documentation), S3's URI encoding, the
 * credentials file's checks, URL parsing, and the XML parsers against
 * good, broken and hostile answers. The requests themselves are tested in
 * tests/s3/ against the fake server and radosgw.
 */
#include "common/common.h"
#include "s3/s3.h"
#include "s3/s3_int.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- SigV4 ------------------------------------------------------------------ */

#define EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* The test suite's credentials and time (2015-08-30T12:36:00Z). */
#define SUITE_KEY "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TIME 1440938160
/* The S3 documentation's (2013-05-24T00:00:00Z). */
#define S3DOC_KEY "AKIAIOSFODNN7EXAMPLE"
#define S3DOC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3DOC_TIME 1369353600

struct vector {
	const char *name;
	const char *method, *path, *query;
	struct fy_sigv4_header headers[8];
	size_t n_headers;
	const char *payload_hash, *service;
	const char *key, *secret;
	time_t when;
	const char *canonical, *to_sign, *signature;
};

static const struct vector vectors[] = {
	{
		.name = "get-vanilla",
		.method = "GET", .path = "/",
		.headers = { { "Host", "example.amazonaws.com" },
			     { "X-Amz-Date", "20150830T123600Z" } },
		.n_headers = 2,
		.payload_hash = EMPTY_SHA256, .service = "service",
		.key = SUITE_KEY, .secret = SUITE_SECRET, .when = SUITE_TIME,
		.canonical = "GET\n/\n\nhost:example.amazonaws.com\n"
			     "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
			     EMPTY_SHA256,
		.to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n"
			   "20150830/us-east-1/service/aws4_request\n"
			   "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
		.signature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
	},
	{
		.name = "get-vanilla-query-order-key-case",
		.method = "GET", .path = "/",
		.query = "Param2=value2&Param1=value1",
		.headers = { { "Host", "example.amazonaws.com" },
			     { "X-Amz-Date", "20150830T123600Z" } },
		.n_headers = 2,
		.payload_hash = EMPTY_SHA256, .service = "service",
		.key = SUITE_KEY, .secret = SUITE_SECRET, .when = SUITE_TIME,
		.canonical = "GET\n/\nParam1=value1&Param2=value2\n"
			     "host:example.amazonaws.com\n"
			     "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
			     EMPTY_SHA256,
		.to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n"
			   "20150830/us-east-1/service/aws4_request\n"
			   "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
		.signature = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
	},
	{
		.name = "get-utf8",
		.method = "GET", .path = "/%E1%88%B4",
		.headers = { { "Host", "example.amazonaws.com" },
			     { "X-Amz-Date", "20150830T123600Z" } },
		.n_headers = 2,
		.payload_hash = EMPTY_SHA256, .service = "service",
		.key = SUITE_KEY, .secret = SUITE_SECRET, .when = SUITE_TIME,
		.canonical = "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\n"
			     "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
			     EMPTY_SHA256,
		.to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n"
			   "20150830/us-east-1/service/aws4_request\n"
			   "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
		.signature = "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
	},
	{
		.name = "post-x-www-form-urlencoded",
		.method = "POST", .path = "/",
		.headers = { { "Content-Type", "application/x-www-form-urlencoded" },
			     { "Host", "example.amazonaws.com" },
			     { "Content-Length", "13" },
			     { "X-Amz-Date", "20150830T123600Z" },
			     { "x-amz-content-sha256",
			       "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e" } },
		.n_headers = 5,
		.payload_hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
		.service = "service",
		.key = SUITE_KEY, .secret = SUITE_SECRET, .when = SUITE_TIME,
		.canonical = "POST\n/\n\ncontent-length:13\n"
			     "content-type:application/x-www-form-urlencoded\n"
			     "host:example.amazonaws.com\n"
			     "x-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n"
			     "x-amz-date:20150830T123600Z\n\n"
			     "content-length;content-type;host;x-amz-content-sha256;x-amz-date\n"
			     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
		.to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n"
			   "20150830/us-east-1/service/aws4_request\n"
			   "b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
		.signature = "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
	},
	{
		.name = "get-header-value-trim",
		.method = "GET", .path = "/",
		.headers = { { "Host", "example.amazonaws.com" },
			     { "My-Header1", " value1" },
			     { "My-Header2", " \"a   b   c\"" },
			     { "X-Amz-Date", "20150830T123600Z" } },
		.n_headers = 4,
		.payload_hash = EMPTY_SHA256, .service = "service",
		.key = SUITE_KEY, .secret = SUITE_SECRET, .when = SUITE_TIME,
		.canonical = "GET\n/\n\nhost:example.amazonaws.com\n"
			     "my-header1:value1\nmy-header2:\"a b c\"\n"
			     "x-amz-date:20150830T123600Z\n\n"
			     "host;my-header1;my-header2;x-amz-date\n"
			     EMPTY_SHA256,
		.to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n"
			   "20150830/us-east-1/service/aws4_request\n"
			   "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
		.signature = "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
	},
	{
		.name = "S3 GET Object with Range",
		.method = "GET", .path = "/test.txt",
		.headers = { { "Host", "examplebucket.s3.amazonaws.com" },
			     { "Range", "bytes=0-9" },
			     { "x-amz-content-sha256", EMPTY_SHA256 },
			     { "x-amz-date", "20130524T000000Z" } },
		.n_headers = 4,
		.payload_hash = EMPTY_SHA256, .service = "s3",
		.key = S3DOC_KEY, .secret = S3DOC_SECRET, .when = S3DOC_TIME,
		.canonical = "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
			     "range:bytes=0-9\n"
			     "x-amz-content-sha256:" EMPTY_SHA256 "\n"
			     "x-amz-date:20130524T000000Z\n\n"
			     "host;range;x-amz-content-sha256;x-amz-date\n"
			     EMPTY_SHA256,
		.to_sign = "AWS4-HMAC-SHA256\n20130524T000000Z\n"
			   "20130524/us-east-1/s3/aws4_request\n"
			   "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
		.signature = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
	},
	{
		.name = "S3 PUT Object",
		.method = "PUT", .path = "/test%24file.text",
		.headers = { { "Host", "examplebucket.s3.amazonaws.com" },
			     { "Date", "Fri, 24 May 2013 00:00:00 GMT" },
			     { "x-amz-date", "20130524T000000Z" },
			     { "x-amz-storage-class", "REDUCED_REDUNDANCY" },
			     { "x-amz-content-sha256",
			       "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072" } },
		.n_headers = 5,
		.payload_hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
		.service = "s3",
		.key = S3DOC_KEY, .secret = S3DOC_SECRET, .when = S3DOC_TIME,
		.canonical = "PUT\n/test%24file.text\n\n"
			     "date:Fri, 24 May 2013 00:00:00 GMT\n"
			     "host:examplebucket.s3.amazonaws.com\n"
			     "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
			     "x-amz-date:20130524T000000Z\n"
			     "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
			     "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
			     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
		.to_sign = "AWS4-HMAC-SHA256\n20130524T000000Z\n"
			   "20130524/us-east-1/s3/aws4_request\n"
			   "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
		.signature = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
	},
	{
		.name = "S3 GET Bucket Lifecycle",
		.method = "GET", .path = "/", .query = "lifecycle",
		.headers = { { "Host", "examplebucket.s3.amazonaws.com" },
			     { "x-amz-date", "20130524T000000Z" },
			     { "x-amz-content-sha256", EMPTY_SHA256 } },
		.n_headers = 3,
		.payload_hash = EMPTY_SHA256, .service = "s3",
		.key = S3DOC_KEY, .secret = S3DOC_SECRET, .when = S3DOC_TIME,
		.canonical = "GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\n"
			     "x-amz-content-sha256:" EMPTY_SHA256 "\n"
			     "x-amz-date:20130524T000000Z\n\n"
			     "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256,
		.to_sign = "AWS4-HMAC-SHA256\n20130524T000000Z\n"
			   "20130524/us-east-1/s3/aws4_request\n"
			   "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
		.signature = "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
	},
	{
		.name = "S3 GET Bucket (List Objects)",
		.method = "GET", .path = "/", .query = "max-keys=2&prefix=J",
		.headers = { { "Host", "examplebucket.s3.amazonaws.com" },
			     { "x-amz-date", "20130524T000000Z" },
			     { "x-amz-content-sha256", EMPTY_SHA256 } },
		.n_headers = 3,
		.payload_hash = EMPTY_SHA256, .service = "s3",
		.key = S3DOC_KEY, .secret = S3DOC_SECRET, .when = S3DOC_TIME,
		.canonical = "GET\n/\nmax-keys=2&prefix=J\n"
			     "host:examplebucket.s3.amazonaws.com\n"
			     "x-amz-content-sha256:" EMPTY_SHA256 "\n"
			     "x-amz-date:20130524T000000Z\n\n"
			     "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256,
		.to_sign = "AWS4-HMAC-SHA256\n20130524T000000Z\n"
			   "20130524/us-east-1/s3/aws4_request\n"
			   "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
		.signature = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
	},
};

static void test_vectors(void)
{
	size_t i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];
		char auth[1024], canonical[4096], to_sign[1024];
		struct fy_sigv4_request req = {
			.method = v->method,
			.path = v->path,
			.query = v->query,
			.headers = v->headers,
			.n_headers = v->n_headers,
			.payload_hash = v->payload_hash,
			.region = "us-east-1",
			.service = v->service,
			.access_key = v->key,
			.secret_key = v->secret,
			.when = v->when,
		};
		const char *sig;
		int rc;

		rc = fy_sigv4_sign(&req, auth, sizeof(auth), canonical,
				   sizeof(canonical), to_sign, sizeof(to_sign));
		CHECK_RC(rc);
		if (strcmp(canonical, v->canonical) != 0)
			fprintf(stderr, "%s: canonical request\n%s\n--- want\n%s\n",
				v->name, canonical, v->canonical);
		CHECK(!strcmp(canonical, v->canonical));
		if (strcmp(to_sign, v->to_sign) != 0)
			fprintf(stderr, "%s: string to sign\n%s\n--- want\n%s\n",
				v->name, to_sign, v->to_sign);
		CHECK(!strcmp(to_sign, v->to_sign));
		sig = strstr(auth, "Signature=");
		CHECK(sig && !strcmp(sig + 10, v->signature));
		if (!sig || strcmp(sig + 10, v->signature) != 0)
			fprintf(stderr, "%s: %s\n", v->name, auth);
	}
	/* The suite's whole Authorization header for get-vanilla. */
	{
		const struct vector *v = &vectors[0];
		char auth[1024];
		struct fy_sigv4_request req = {
			.method = v->method, .path = v->path,
			.headers = v->headers, .n_headers = v->n_headers,
			.payload_hash = v->payload_hash, .region = "us-east-1",
			.service = v->service, .access_key = v->key,
			.secret_key = v->secret, .when = v->when,
		};

		CHECK_RC(fy_sigv4_sign(&req, auth, sizeof(auth), NULL, 0, NULL,
				       0));
		CHECK(!strcmp(auth,
			      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
			      "SignedHeaders=host;x-amz-date, "
			      "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"));
		/* Too small a buffer is an error, not a cut header. */
		CHECK(fy_sigv4_sign(&req, auth, 40, NULL, 0, NULL, 0) ==
		      -ENAMETOOLONG);
		/* Without x-amz-date there is nothing to sign the time by. */
		req.n_headers = 1;
		CHECK(fy_sigv4_sign(&req, auth, sizeof(auth), NULL, 0, NULL,
				    0) == -EINVAL);
	}
}

/* A query is canonicalised the same whether its parts came encoded. */
static void test_query_forms(void)
{
	struct fy_sigv4_header h[] = { { "host", "h" },
				       { "x-amz-date", "20150830T123600Z" } };
	struct fy_sigv4_request req = {
		.method = "GET", .path = "/", .headers = h, .n_headers = 2,
		.payload_hash = EMPTY_SHA256, .region = "us-east-1",
		.service = "s3", .access_key = "a", .secret_key = "b",
		.when = SUITE_TIME,
	};
	char a[2048], b[2048];

	req.query = "prefix=a/b c&continuation-token=1/x==&list-type=2&uploads";
	CHECK_RC(fy_sigv4_sign(&req, NULL, 0, a, sizeof(a), NULL, 0));
	req.query = "list-type=2&continuation-token=1%2Fx%3D%3D&uploads=&prefix=a%2Fb%20c";
	CHECK_RC(fy_sigv4_sign(&req, NULL, 0, b, sizeof(b), NULL, 0));
	CHECK(!strcmp(a, b));
	CHECK(strstr(a, "\ncontinuation-token=1%2Fx%3D%3D&list-type=2&prefix=a%2Fb%20c&uploads=\n") != NULL);
}

static void test_uri_encode(void)
{
	char out[64];

	CHECK_RC(fy_s3_uri_encode("AZaz09-._~", false, out, sizeof(out)));
	CHECK(!strcmp(out, "AZaz09-._~"));
	CHECK_RC(fy_s3_uri_encode("a b+c=d&e", false, out, sizeof(out)));
	CHECK(!strcmp(out, "a%20b%2Bc%3Dd%26e"));
	CHECK_RC(fy_s3_uri_encode("dir/sub/f$1", true, out, sizeof(out)));
	CHECK(!strcmp(out, "dir/sub/f%241"));
	CHECK_RC(fy_s3_uri_encode("dir/f", false, out, sizeof(out)));
	CHECK(!strcmp(out, "dir%2Ff"));
	CHECK_RC(fy_s3_uri_encode("/\xe1\x88\xb4", true, out, sizeof(out)));
	CHECK(!strcmp(out, "/%E1%88%B4"));
	CHECK_RC(fy_s3_uri_encode("*%", false, out, sizeof(out)));
	CHECK(!strcmp(out, "%2A%25"));
	CHECK_RC(fy_s3_uri_encode("", false, out, sizeof(out)));
	CHECK(!strcmp(out, ""));
	/* "a b" needs 6 bytes: 5 does not fit. */
	CHECK(fy_s3_uri_encode("a b", false, out, 5) == -ENAMETOOLONG);
	CHECK_RC(fy_s3_uri_encode("a b", false, out, 6));
}

/* ---- credentials and URLs --------------------------------------------------- */

#define TEST_SECRET "s3cr3t-Do-Not-Print-Me"

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	CHECK(chmod(path, mode) == 0);
}

static void test_credentials(void)
{
	char path[] = "/tmp/test_s3_credXXXXXX";
	struct fy_s3_config cfg;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	close(fd);
	memset(&cfg, 0, sizeof(cfg));
	write_file(path,
		   "# Ferry's S3 key\n"
		   "access_key_id = AKID1\n"
		   "\n"
		   "secret_access_key=" TEST_SECRET "\n",
		   0644);
	CHECK(fy_s3_load_credentials(&cfg, path) == -EACCES);
	CHECK(strstr(fy_err_msg(), "0644") != NULL);
	CHECK(strstr(fy_err_msg(), "chmod 600") != NULL);
	CHECK(strstr(fy_err_msg(), TEST_SECRET) == NULL);
	CHECK(cfg.secret_key[0] == '\0');
	CHECK(chmod(path, 0640) == 0);
	CHECK(fy_s3_load_credentials(&cfg, path) == -EACCES);
	CHECK(chmod(path, 0600) == 0);
	CHECK_RC(fy_s3_load_credentials(&cfg, path));
	CHECK(!strcmp(cfg.access_key, "AKID1"));
	CHECK(!strcmp(cfg.secret_key, TEST_SECRET));
	CHECK(chmod(path, 0400) == 0);
	CHECK_RC(fy_s3_load_credentials(&cfg, path));

	/* A bad line is named by number; its value is never quoted. */
	write_file(path, "access_key_id=AKID1\nsecret=" TEST_SECRET "\n", 0600);
	memset(&cfg, 0, sizeof(cfg));
	CHECK(fy_s3_load_credentials(&cfg, path) == -EINVAL);
	CHECK(strstr(fy_err_msg(), ":2:") != NULL);
	CHECK(strstr(fy_err_msg(), TEST_SECRET) == NULL);
	write_file(path, "access_key_id=AKID1\n" TEST_SECRET "\n", 0600);
	CHECK(fy_s3_load_credentials(&cfg, path) == -EINVAL);
	CHECK(strstr(fy_err_msg(), TEST_SECRET) == NULL);
	write_file(path, "access_key_id=AKID1\n", 0600);
	CHECK(fy_s3_load_credentials(&cfg, path) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "secret_access_key") != NULL);
	unlink(path);
	CHECK(fy_s3_load_credentials(&cfg, path) == -ENOENT);

	/* The environment, when no file is given. */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	memset(&cfg, 0, sizeof(cfg));
	CHECK(fy_s3_load_credentials(&cfg, NULL) == -ENOENT);
	CHECK(strstr(fy_err_msg(), "AWS_ACCESS_KEY_ID") != NULL);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET, 1);
	CHECK_RC(fy_s3_load_credentials(&cfg, NULL));
	CHECK(!strcmp(cfg.access_key, "AKIDENV"));
	CHECK(!strcmp(cfg.secret_key, TEST_SECRET));
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
}

static void test_parse_url(void)
{
	static const char *const bad[] = {
		"s3.example.com/bucket",
		"ftp://s3.example.com/bucket",
		"https://s3.example.com",
		"https://s3.example.com/",
		"https://s3.example.com/bucket/path",
		"https://s3.example.com/Bucket",
		"https://s3.example.com/ab",
		"https://s3.example.com/-bucket",
		"https://s3.example.com/bucket-",
		"https://s3.example.com/bu_cket",
		"https://s3.example.com/a123456789012345678901234567890123456789012345678901234567890123",
		"https://user:pw@s3.example.com/bucket",
		"https://s3.example.com:0/bucket",
		"https://s3.example.com:65536/bucket",
		"https://s3.example.com:80a/bucket",
		"https://s3.example.com?x/bucket",
		"https://[::1/bucket",
		"https://[zz::1]/bucket",
		"http://s3.example.com/bucket",
		"http://10.0.0.1:7480/bucket",
		"http://[2001:db8::1]:7480/bucket",
	};
	struct fy_s3_config cfg;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&cfg, 0, sizeof(cfg));
		if (fy_s3_parse_url(bad[i], &cfg) != -EINVAL) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(!"a bad URL was accepted");
		}
	}
	memset(&cfg, 0, sizeof(cfg));
	CHECK_RC(fy_s3_parse_url("https://s3.example.com:7480/my-bucket.1", &cfg));
	CHECK(!strcmp(cfg.endpoint, "https://s3.example.com:7480"));
	CHECK(!strcmp(cfg.bucket, "my-bucket.1"));
	CHECK_RC(fy_s3_parse_url("https://s3.example.com/abc/", &cfg));
	CHECK(!strcmp(cfg.endpoint, "https://s3.example.com"));
	CHECK(!strcmp(cfg.bucket, "abc"));
	CHECK_RC(fy_s3_parse_url("http://127.0.0.1:9000/bkt", &cfg));
	CHECK(!strcmp(cfg.endpoint, "http://127.0.0.1:9000"));
	CHECK_RC(fy_s3_parse_url("http://127.1.2.3/bkt", &cfg));
	CHECK_RC(fy_s3_parse_url("http://localhost:7480/bkt", &cfg));
	CHECK_RC(fy_s3_parse_url("http://[::1]:7480/bkt", &cfg));
	CHECK(!strcmp(cfg.endpoint, "http://[::1]:7480"));
	CHECK_RC(fy_s3_parse_url("https://[2001:db8::1]:443/bkt", &cfg));
	CHECK_RC(fy_s3_parse_url(
		"https://h/a12345678901234567890123456789012345678901234567890123456789012",
		&cfg));
}

static void test_open(void)
{
	struct fy_s3_config cfg;
	struct fy_s3 *s3 = NULL;
	struct fy_s3_head head;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	CHECK_RC(fy_s3_parse_url("https://10.1.2.3/bkt", &cfg));
	strcpy(cfg.access_key, "AKID");
	strcpy(cfg.secret_key, TEST_SECRET);
	/* An address cannot carry the bucket in front of it. */
	CHECK(fy_s3_open(&cfg, &s3) == -EINVAL && !s3);
	cfg.path_style = true;
	CHECK_RC(fy_s3_open(&cfg, &s3));
	fy_s3_close(s3);
	fy_s3_close(NULL);
	strcpy(cfg.endpoint, "http://s3.example.com");
	CHECK(fy_s3_open(&cfg, &s3) == -EINVAL);
	strcpy(cfg.endpoint, "https://s3.example.com/path");
	CHECK(fy_s3_open(&cfg, &s3) == -EINVAL);
	cfg.secret_key[0] = '\0';
	strcpy(cfg.endpoint, "https://s3.example.com");
	CHECK(fy_s3_open(&cfg, &s3) == -EINVAL);

	/* Nothing listens on port 1: every attempt fails, each retry is
	 * logged, and the last failure is returned. */
	memset(&cfg, 0, sizeof(cfg));
	CHECK_RC(fy_s3_parse_url("http://127.0.0.1:1/bkt", &cfg));
	cfg.path_style = true;
	strcpy(cfg.access_key, "AKID");
	strcpy(cfg.secret_key, TEST_SECRET);
	cfg.max_attempts = 3;
	cfg.base_delay_ms = 1;
	CHECK_RC(fy_s3_open(&cfg, &s3));
	rc = fy_s3_head(s3, "k", &head);
	CHECK(rc == -ECONNREFUSED);
	CHECK(strstr(fy_err_msg(), "after 3 attempts") != NULL);
	CHECK(strstr(fy_err_msg(), TEST_SECRET) == NULL);
	CHECK(fy_s3_head(s3, "", &head) == -EINVAL);
	fy_s3_close(s3);
}

/* ---- XML -------------------------------------------------------------------- */

struct listed {
	unsigned n;
	char keys[4][64];
	uint64_t sizes[4];
	int stop_at; /* return 7 from this call (1-based), 0: never */
};

static int on_key(void *opaque, const char *key, uint64_t size)
{
	struct listed *l = opaque;

	if (l->n < 4) {
		snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
		l->sizes[l->n] = size;
	}
	l->n++;
	return l->stop_at && (int)l->n == l->stop_at ? 7 : 0;
}

static const char list_page[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Name>bkt</Name><Prefix>b/</Prefix><KeyCount>2</KeyCount>"
	"<MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>"
	"<Contents><Key>b/one&amp;two</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
	"<ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>"
	"<Contents><Key><![CDATA[b/<three>]]></Key><Size>18446744073709551615</Size></Contents>"
	"<NextContinuationToken>1/abc==</NextContinuationToken>"
	"</ListBucketResult>";

static void test_parse_list(void)
{
	char token[64], *big, *p;
	struct listed l;
	size_t i, len;
	int rc;

	memset(&l, 0, sizeof(l));
	CHECK_RC(fy_s3_parse_list(list_page, strlen(list_page), on_key, &l,
				  token, sizeof(token)));
	CHECK(l.n == 2);
	CHECK(!strcmp(l.keys[0], "b/one&two") && l.sizes[0] == 12);
	CHECK(!strcmp(l.keys[1], "b/<three>") && l.sizes[1] == UINT64_MAX);
	CHECK(!strcmp(token, "1/abc=="));

	/* The callback's stop value comes back. */
	memset(&l, 0, sizeof(l));
	l.stop_at = 1;
	CHECK(fy_s3_parse_list(list_page, strlen(list_page), on_key, &l,
			       token, sizeof(token)) == 7);
	CHECK(l.n == 1);

	/* A token that does not fit is refused, not cut. */
	memset(&l, 0, sizeof(l));
	CHECK(fy_s3_parse_list(list_page, strlen(list_page), on_key, &l,
			       token, 4) == -EBADMSG);
	CHECK(l.n == 0);

	/* Cut anywhere, the page delivers nothing. */
	for (len = 0; len < strlen(list_page); len += 7) {
		memset(&l, 0, sizeof(l));
		rc = fy_s3_parse_list(list_page, len, on_key, &l, token,
				      sizeof(token));
		CHECK(rc == -EBADMSG);
		CHECK(l.n == 0);
	}

	/* A last page: no token. A namespace prefix changes nothing. */
	{
		static const char last[] =
			"<s3:ListBucketResult xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			"<s3:IsTruncated>false</s3:IsTruncated>"
			"<s3:Contents><s3:Key>k</s3:Key><s3:Size>0</s3:Size></s3:Contents>"
			"</s3:ListBucketResult>";

		memset(&l, 0, sizeof(l));
		CHECK_RC(fy_s3_parse_list(last, strlen(last), on_key, &l, token,
					  sizeof(token)));
		CHECK(l.n == 1 && !strcmp(l.keys[0], "k") && token[0] == '\0');
	}

	/* Broken entries. */
	{
		static const char *const broken[] = {
			/* truncated without a token */
			"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
			"<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
			"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
			"<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",
			"<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
			"<ListBucketResult><Contents><Key>k</Key><Size>18446744073709551616</Size></Contents></ListBucketResult>",
			"<ListBucketResult><Contents><Key>k<b/></Key><Size>1</Size></Contents></ListBucketResult>",
			"<ListBucketResult><Contents><Key></Key><Size>1</Size></Contents></ListBucketResult>",
			"<Error><Code>NoSuchBucket</Code></Error>",
			"<ListBucketResult><Contents><Key>&bad;</Key><Size>1</Size></Contents></ListBucketResult>",
			"",
			"not xml",
		};

		for (i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
			memset(&l, 0, sizeof(l));
			rc = fy_s3_parse_list(broken[i], strlen(broken[i]),
					      on_key, &l, token, sizeof(token));
			if (rc != -EBADMSG)
				fprintf(stderr, "broken %zu: %d\n", i, rc);
			CHECK(rc == -EBADMSG);
			CHECK(l.n == 0);
		}
	}

	/* A key one byte over FY_S3_KEY_MAX, and one at it. */
	big = malloc(FY_S3_KEY_MAX + 256);
	CHECK(big != NULL);
	if (big) {
		p = big + sprintf(big, "<ListBucketResult><Contents><Key>");
		memset(p, 'k', FY_S3_KEY_MAX + 1);
		p += FY_S3_KEY_MAX + 1;
		p += sprintf(p, "</Key><Size>1</Size></Contents></ListBucketResult>");
		memset(&l, 0, sizeof(l));
		CHECK(fy_s3_parse_list(big, (size_t)(p - big), on_key, &l,
				       token, sizeof(token)) == -EBADMSG);
		CHECK(strstr(fy_err_msg(), "longer than") != NULL);
		CHECK(l.n == 0);
		p = big + sprintf(big, "<ListBucketResult><Contents><Key>");
		memset(p, 'k', FY_S3_KEY_MAX);
		p += FY_S3_KEY_MAX;
		p += sprintf(p, "</Key><Size>1</Size></Contents></ListBucketResult>");
		CHECK_RC(fy_s3_parse_list(big, (size_t)(p - big), on_key, &l,
					  token, sizeof(token)));
		CHECK(l.n == 1);
		free(big);
	}

	/* FY_S3_LIST_PAGE_MAX entries pass; one more is refused whole. */
	big = malloc(64 + (FY_S3_LIST_PAGE_MAX + 1) * 64);
	CHECK(big != NULL);
	if (big) {
		unsigned n;

		for (n = FY_S3_LIST_PAGE_MAX; n <= FY_S3_LIST_PAGE_MAX + 1; n++) {
			p = big + sprintf(big, "<ListBucketResult>");
			for (i = 0; i < n; i++)
				p += sprintf(p, "<Contents><Key>k%zu</Key><Size>%zu</Size></Contents>",
					     i, i);
			p += sprintf(p, "</ListBucketResult>");
			memset(&l, 0, sizeof(l));
			rc = fy_s3_parse_list(big, (size_t)(p - big), on_key,
					      &l, token, sizeof(token));
			if (n == FY_S3_LIST_PAGE_MAX) {
				CHECK_RC(rc);
				CHECK(l.n == n);
			} else {
				CHECK(rc == -EBADMSG);
				CHECK(l.n == 0);
			}
		}
		free(big);
	}
}

static void test_hostile_xml(void)
{
	static const char bomb[] =
		"<?xml version=\"1.0\"?>\n"
		"<!DOCTYPE lolz [\n"
		" <!ENTITY lol \"lol\">\n"
		" <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
		" <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
		" <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
		"]>\n"
		"<ListBucketResult><Contents><Key>&lol4;</Key><Size>1</Size></Contents></ListBucketResult>";
	static const char external[] =
		"<?xml version=\"1.0\"?>\n"
		"<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
		"<Error><Code>&x;</Code></Error>";
	char token[64], code[64], message[128], *huge;
	struct listed l;

	memset(&l, 0, sizeof(l));
	CHECK(fy_s3_parse_list(bomb, strlen(bomb), on_key, &l, token,
			       sizeof(token)) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "DOCTYPE") != NULL);
	CHECK(l.n == 0);
	CHECK(fy_s3_parse_error(external, strlen(external), code, sizeof(code),
				message, sizeof(message)) == -EBADMSG);
	CHECK(code[0] == '\0');

	/* Over FY_S3_XML_MAX is refused before parsing. */
	huge = malloc(FY_S3_XML_MAX + 2);
	CHECK(huge != NULL);
	if (huge) {
		/* A valid page of exactly FY_S3_XML_MAX bytes, then one
		 * byte more. */
		memset(huge, ' ', FY_S3_XML_MAX + 1);
		memcpy(huge, "<ListBucketResult>", 18);
		memcpy(huge + FY_S3_XML_MAX - 19, "</ListBucketResult>", 19);
		CHECK_RC(fy_s3_parse_list(huge, FY_S3_XML_MAX, on_key, &l,
					  token, sizeof(token)));
		CHECK(fy_s3_parse_list(huge, FY_S3_XML_MAX + 1, on_key, &l,
				       token, sizeof(token)) == -EBADMSG);
		CHECK(strstr(fy_err_msg(), "over the limit") != NULL);
		free(huge);
	}
}

static void test_parse_error(void)
{
	static const char doc[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<Error><Code>RequestTimeTooSkewed</Code>"
		"<Message>The difference between the request time and the current time is too large.</Message>"
		"<RequestId>1</RequestId></Error>";
	char code[64], message[32];

	CHECK_RC(fy_s3_parse_error(doc, strlen(doc), code, sizeof(code),
				   message, sizeof(message)));
	CHECK(!strcmp(code, "RequestTimeTooSkewed"));
	/* A message is for people: cut to the buffer. */
	CHECK(!strcmp(message, "The difference between the requ"));
	/* A code is not: refused when it does not fit. */
	CHECK(fy_s3_parse_error(doc, strlen(doc), code, 8, message,
				sizeof(message)) == -EBADMSG);
	/* Another root (an HTML page from a proxy is not XML at all). */
	CHECK_RC(fy_s3_parse_error("<html/>", 7, code, sizeof(code), message,
				   sizeof(message)));
	CHECK(code[0] == '\0' && message[0] == '\0');
	CHECK(fy_s3_parse_error("<html><body>503</body>", 22, code,
				sizeof(code), message,
				sizeof(message)) == -EBADMSG);
}

struct versions {
	unsigned n, markers;
	uint64_t total;
};

static int on_version(void *opaque, const char *key, const char *version_id,
		      bool delete_marker, uint64_t size)
{
	struct versions *v = opaque;

	v->n++;
	v->markers += delete_marker;
	v->total += size;
	return 0;
}

static int on_upload(void *opaque, const char *key, const char *upload_id,
		     time_t initiated)
{
	time_t *t = opaque;

	*t = initiated;
	return strcmp(upload_id, "2~abc") == 0 ? 0 : -1;
}

static void test_parse_others(void)
{
	static const char versions[] =
		"<ListVersionsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		"<IsTruncated>true</IsTruncated><NextKeyMarker>b</NextKeyMarker>"
		"<NextVersionIdMarker>v9</NextVersionIdMarker>"
		"<Version><Key>a</Key><VersionId>v1</VersionId><Size>10</Size></Version>"
		"<DeleteMarker><Key>a</Key><VersionId>v2</VersionId></DeleteMarker>"
		"<Version><Key>b</Key><VersionId>v3</VersionId><Size>5</Size></Version>"
		"</ListVersionsResult>";
	static const char uploads[] =
		"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
		"<Upload><Key>k</Key><UploadId>2~abc</UploadId>"
		"<Initiated>2024-05-01T10:00:00.000Z</Initiated></Upload>"
		"</ListMultipartUploadsResult>";
	static const char initiate[] =
		"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
		"<UploadId>2~xyz</UploadId></InitiateMultipartUploadResult>";
	static const char lock[] =
		"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
		"</ObjectLockConfiguration>";
	struct s3_versions_page vpage;
	struct s3_uploads_page upage;
	struct versions v = { 0 };
	char id[64], root[32];
	time_t t = 0;
	bool enabled;

	CHECK_RC(s3_parse_versions(versions, strlen(versions), on_version, &v,
				   &vpage));
	CHECK(v.n == 3 && v.markers == 1 && v.total == 15);
	CHECK(vpage.truncated && !strcmp(vpage.next_key, "b") &&
	      !strcmp(vpage.next_version, "v9"));
	CHECK_RC(s3_parse_uploads(uploads, strlen(uploads), on_upload, &t,
				  &upage));
	CHECK(t == 1714557600 && !upage.truncated);
	CHECK_RC(s3_parse_upload_id(initiate, strlen(initiate), id, sizeof(id)));
	CHECK(!strcmp(id, "2~xyz"));
	CHECK(s3_parse_upload_id(initiate, strlen(initiate), id, 5) == -EBADMSG);
	CHECK_RC(s3_parse_lock_config(lock, strlen(lock), &enabled));
	CHECK(enabled);
	CHECK_RC(s3_parse_root("<Error/>", 8, root, sizeof(root)));
	CHECK(!strcmp(root, "Error"));

	CHECK_RC(s3_parse_time("2024-05-01T10:00:00Z", &t));
	CHECK(t == 1714557600);
	CHECK(s3_parse_time("2024-05-01T10:00:00", &t) == -EINVAL);
	CHECK(s3_parse_time("2024-05-01T10:00:00.Z", &t) == -EINVAL);
	CHECK(s3_parse_time("yesterday", &t) == -EINVAL);
	s3_format_time(1714557600, id, sizeof(id));
	CHECK(!strcmp(id, "2024-05-01T10:00:00.000Z"));
}

int main(void)
{
	test_vectors();
	test_query_forms();
	test_uri_encode();
	test_credentials();
	test_parse_url();
	test_open();
	test_parse_list();
	test_hostile_xml();
	test_parse_error();
	test_parse_others();
	CHECK_DONE();
}
