/*
 * Fuzzes the S3 client's parsers of XML answers: the first byte chooses
 * the parser (ListObjectsV2, Error, ListObjectVersions,
 * ListMultipartUploads, CreateMultipartUpload, GetObjectLockConfiguration,
 * the root name), the rest is the answer. Whatever the bytes, the answer
 * is 0 or an error, never a crash, an overread or an unbounded copy.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "s3/s3_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_key(void *opaque, const char *key, uint64_t size)
{
	/* Touch every byte the parser handed out. */
	*(size_t *)opaque += strlen(key) + (size_t)(size & 1);
	return 0;
}

static int on_version(void *opaque, const char *key, const char *version,
		      bool marker, uint64_t size)
{
	*(size_t *)opaque += strlen(key) + strlen(version) + marker;
	return 0;
}

static int on_upload(void *opaque, const char *key, const char *id,
		     time_t initiated)
{
	*(size_t *)opaque += strlen(key) + strlen(id) + (size_t)(initiated & 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct s3_versions_page vpage;
	struct s3_uploads_page upage;
	char token[S3_TOKEN_MAX], code[64], message[256];
	const char *xml = (const char *)data + 1;
	size_t len, seen = 0;
	bool enabled;

	if (size < 1)
		return 0;
	len = size - 1;
	switch (data[0] % 7) {
	case 0:
		fy_s3_parse_list(xml, len, on_key, &seen, token, sizeof(token));
		break;
	case 1:
		fy_s3_parse_error(xml, len, code, sizeof(code), message,
				  sizeof(message));
		break;
	case 2:
		s3_parse_versions(xml, len, on_version, &seen, &vpage);
		break;
	case 3:
		s3_parse_uploads(xml, len, on_upload, &seen, &upage);
		break;
	case 4:
		s3_parse_upload_id(xml, len, token, sizeof(token));
		break;
	case 5:
		s3_parse_lock_config(xml, len, &enabled);
		break;
	default:
		s3_parse_root(xml, len, code, sizeof(code));
		break;
	}
	return 0;
}
