/*
 * Bounded parsers of S3's XML answers. A document is refused before
 * libxml2 sees it when it is larger than FY_S3_XML_MAX or carries a
 * DOCTYPE: S3 never sends one, and without one no entity can be declared,
 * hence none expanded (billion laughs), and nothing is loaded
 * (XML_PARSE_NONET, no XML_PARSE_NOENT, no XML_PARSE_DTDLOAD).
 *
 * Elements are matched by local name, whatever their namespace (AWS
 * qualifies them, some servers do not). Every string is copied with its
 * bound checked: a key, token or id that does not fit is an error, never
 * cut. A page is checked whole before its first callback, so a document
 * broken at its end delivers nothing.
 */
#include "s3/s3_int.h"

#include "common/common.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
	xmlInitParser();
}

static int parse_doc(const char *xml, size_t len, const char *what,
		     xmlDoc **out)
{
	xmlDoc *doc;

	*out = NULL;
	if (len > FY_S3_XML_MAX)
		return fy_err_set(-EBADMSG,
				  "s3: %s: the answer is %zu bytes, over the limit of %u",
				  what, len, FY_S3_XML_MAX);
	if (len == 0)
		return fy_err_set(-EBADMSG, "s3: %s: the answer is empty",
				  what);
	if (memmem(xml, len, "<!DOCTYPE", 9) || memmem(xml, len, "<!ENTITY", 8))
		return fy_err_set(-EBADMSG,
				  "s3: %s: the answer has a DOCTYPE, which S3 never sends",
				  what);
	pthread_once(&xml_once, xml_init);
	doc = xmlReadMemory(xml, (int)len, "s3.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR |
				    XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	if (!doc) {
		const xmlError *e = xmlGetLastError();
		const char *m = e && e->message ? e->message : "parse error";
		int mlen = (int)strcspn(m, "\n");

		fy_err_set(-EBADMSG,
			   "s3: %s: the answer is not well-formed XML (line %d: %.*s)",
			   what, e ? e->line : 0, mlen, m);
		xmlResetLastError();
		return -EBADMSG;
	}
	if (doc->intSubset || doc->extSubset || !xmlDocGetRootElement(doc)) {
		xmlFreeDoc(doc);
		return fy_err_set(-EBADMSG,
				  "s3: %s: the answer has a DOCTYPE or no root",
				  what);
	}
	*out = doc;
	return 0;
}

static bool is_element(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name);
}

static const xmlNode *child(const xmlNode *parent, const char *name)
{
	const xmlNode *n;

	for (n = parent->children; n; n = n->next)
		if (is_element(n, name))
			return n;
	return NULL;
}

/*
 * The text of an element (its text and CDATA children, concatenated) into
 * out. -ENAMETOOLONG when it does not fit, -EBADMSG when it holds anything
 * but text (an element, an entity reference).
 */
static int node_text(const xmlNode *el, char *out, size_t out_len)
{
	const xmlNode *n;
	size_t used = 0;

	if (out_len == 0)
		return -ENAMETOOLONG;
	out[0] = '\0';
	for (n = el->children; n; n = n->next) {
		size_t len;

		if (n->type == XML_COMMENT_NODE)
			continue;
		if (n->type != XML_TEXT_NODE && n->type != XML_CDATA_SECTION_NODE)
			return -EBADMSG;
		len = n->content ? strlen((const char *)n->content) : 0;
		if (len >= out_len - used)
			return -ENAMETOOLONG;
		memcpy(out + used, n->content, len);
		used += len;
		out[used] = '\0';
	}
	return 0;
}

/* The text of parent's child name: 0, -ENOENT when absent, or an error
 * with a message naming what was read. */
static int child_text(const xmlNode *parent, const char *name, char *out,
		      size_t out_len, const char *what)
{
	const xmlNode *n = child(parent, name);
	int rc;

	if (out_len)
		out[0] = '\0';
	if (!n)
		return -ENOENT;
	rc = node_text(n, out, out_len);
	if (rc == -ENAMETOOLONG)
		return fy_err_set(-EBADMSG,
				  "s3: %s: <%s> is longer than %zu bytes",
				  what, name, out_len - 1);
	if (rc < 0)
		return fy_err_set(-EBADMSG, "s3: %s: <%s> is not plain text",
				  what, name);
	return 0;
}

static int required_text(const xmlNode *parent, const char *name, char *out,
			 size_t out_len, const char *what)
{
	int rc = child_text(parent, name, out, out_len, what);

	if (rc == -ENOENT)
		return fy_err_set(-EBADMSG, "s3: %s: <%s> is missing", what,
				  name);
	if (rc == 0 && !out[0])
		return fy_err_set(-EBADMSG, "s3: %s: <%s> is empty", what,
				  name);
	return rc;
}

static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		uint64_t d = (uint64_t)(*s - '0');

		if (*s < '0' || *s > '9' || v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int required_u64(const xmlNode *parent, const char *name,
			uint64_t *out, const char *what)
{
	char text[32];
	int rc = required_text(parent, name, text, sizeof(text), what);

	if (rc < 0)
		return rc;
	if (parse_u64(text, out) < 0)
		return fy_err_set(-EBADMSG,
				  "s3: %s: <%s> is not a byte count: \"%s\"",
				  what, name, text);
	return 0;
}

/* <IsTruncated>: absent means false. */
static int truncated_flag(const xmlNode *root, bool *out, const char *what)
{
	char text[8];
	int rc = child_text(root, "IsTruncated", text, sizeof(text), what);

	*out = false;
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	if (!strcmp(text, "true")) {
		*out = true;
		return 0;
	}
	if (!strcmp(text, "false"))
		return 0;
	return fy_err_set(-EBADMSG, "s3: %s: <IsTruncated> is \"%s\"", what,
			  text);
}

static int check_root(const xmlNode *root, const char *name, const char *what)
{
	if (is_element(root, name))
		return 0;
	return fy_err_set(-EBADMSG, "s3: %s: the answer is <%.64s>, not <%s>",
			  what, (const char *)root->name, name);
}

/* ---- <Error> ---------------------------------------------------------------- */

int fy_s3_parse_error(const char *xml, size_t len, char *code,
		      size_t code_len, char *message, size_t message_len)
{
	const char *what = "error answer";
	const xmlNode *root, *n;
	xmlDoc *doc;
	int rc;

	if (code_len)
		code[0] = '\0';
	if (message_len)
		message[0] = '\0';
	rc = parse_doc(xml, len, what, &doc);
	if (rc < 0)
		return rc;
	root = xmlDocGetRootElement(doc);
	if (!is_element(root, "Error"))
		goto out;
	rc = child_text(root, "Code", code, code_len, what);
	if (rc == -ENOENT)
		rc = 0;
	if (rc < 0)
		goto out;
	/* The message is for people: a long one is cut, not refused. */
	n = child(root, "Message");
	if (n && message_len) {
		const xmlNode *t;
		size_t used = 0;

		for (t = n->children; t; t = t->next) {
			size_t l;

			if (t->type != XML_TEXT_NODE &&
			    t->type != XML_CDATA_SECTION_NODE)
				continue;
			l = strlen((const char *)t->content);
			if (l > message_len - 1 - used)
				l = message_len - 1 - used;
			memcpy(message + used, t->content, l);
			used += l;
			message[used] = '\0';
		}
	}
out:
	xmlFreeDoc(doc);
	return rc;
}

int s3_parse_root(const char *xml, size_t len, char *name, size_t name_len)
{
	xmlDoc *doc;
	int rc;

	if (name_len)
		name[0] = '\0';
	if (len == 0)
		return 0;
	rc = parse_doc(xml, len, "answer", &doc);
	if (rc < 0)
		return rc;
	if (strlen((const char *)xmlDocGetRootElement(doc)->name) >= name_len)
		rc = fy_err_set(-EBADMSG, "s3: the answer's root is too long");
	else
		strcpy(name, (const char *)xmlDocGetRootElement(doc)->name);
	xmlFreeDoc(doc);
	return rc;
}

/* ---- ListObjectsV2 ---------------------------------------------------------- */

int fy_s3_parse_list(const char *xml, size_t len,
		     int (*cb)(void *opaque, const char *key, uint64_t size),
		     void *opaque, char *next_token, size_t next_token_len)
{
	const char *what = "ListObjectsV2";
	char key[FY_S3_KEY_MAX + 1];
	const xmlNode *root, *n;
	unsigned entries = 0;
	bool truncated;
	uint64_t size = 0;
	xmlDoc *doc;
	int pass, rc;

	if (next_token_len)
		next_token[0] = '\0';
	rc = parse_doc(xml, len, what, &doc);
	if (rc < 0)
		return rc;
	root = xmlDocGetRootElement(doc);
	rc = check_root(root, "ListBucketResult", what);
	if (rc < 0)
		goto out;
	rc = truncated_flag(root, &truncated, what);
	if (rc < 0)
		goto out;
	if (truncated) {
		rc = required_text(root, "NextContinuationToken", next_token,
				   next_token_len, what);
		if (rc < 0)
			goto out;
	}
	/* Pass 0 checks every entry, pass 1 hands them out. */
	for (pass = 0; pass < 2; pass++) {
		for (n = root->children; n; n = n->next) {
			if (!is_element(n, "Contents"))
				continue;
			if (pass == 0 && ++entries > FY_S3_LIST_PAGE_MAX) {
				rc = fy_err_set(-EBADMSG,
						"s3: %s: more than %d entries in one page",
						what, FY_S3_LIST_PAGE_MAX);
				goto out;
			}
			rc = required_text(n, "Key", key, sizeof(key), what);
			if (rc == 0)
				rc = required_u64(n, "Size", &size, what);
			if (rc == 0 && pass == 1)
				rc = cb(opaque, key, size);
			if (rc)
				goto out;
		}
	}
out:
	xmlFreeDoc(doc);
	return rc;
}

/* ---- ListObjectVersions ----------------------------------------------------- */

int s3_parse_versions(const char *xml, size_t len,
		      int (*cb)(void *opaque, const char *key,
				const char *version_id, bool delete_marker,
				uint64_t size),
		      void *opaque, struct s3_versions_page *page)
{
	const char *what = "ListObjectVersions";
	char key[FY_S3_KEY_MAX + 1], version[S3_VERSION_MAX];
	const xmlNode *root, *n;
	unsigned entries = 0;
	uint64_t size = 0;
	xmlDoc *doc;
	int pass, rc;

	memset(page, 0, sizeof(*page));
	rc = parse_doc(xml, len, what, &doc);
	if (rc < 0)
		return rc;
	root = xmlDocGetRootElement(doc);
	rc = check_root(root, "ListVersionsResult", what);
	if (rc == 0)
		rc = truncated_flag(root, &page->truncated, what);
	if (rc < 0)
		goto out;
	if (page->truncated) {
		rc = required_text(root, "NextKeyMarker", page->next_key,
				   sizeof(page->next_key), what);
		if (rc == 0)
			rc = child_text(root, "NextVersionIdMarker",
					page->next_version,
					sizeof(page->next_version), what);
		if (rc == -ENOENT)
			rc = 0;
		if (rc < 0)
			goto out;
	}
	for (pass = 0; pass < 2; pass++) {
		for (n = root->children; n; n = n->next) {
			bool marker = is_element(n, "DeleteMarker");

			if (!marker && !is_element(n, "Version"))
				continue;
			if (pass == 0 && ++entries > FY_S3_LIST_PAGE_MAX) {
				rc = fy_err_set(-EBADMSG,
						"s3: %s: more than %d entries in one page",
						what, FY_S3_LIST_PAGE_MAX);
				goto out;
			}
			size = 0;
			rc = required_text(n, "Key", key, sizeof(key), what);
			if (rc == 0)
				rc = required_text(n, "VersionId", version,
						   sizeof(version), what);
			if (rc == 0 && !marker)
				rc = required_u64(n, "Size", &size, what);
			if (rc == 0 && pass == 1)
				rc = cb(opaque, key, version, marker, size);
			if (rc)
				goto out;
		}
	}
out:
	xmlFreeDoc(doc);
	return rc;
}

/* ---- ListMultipartUploads --------------------------------------------------- */

int s3_parse_uploads(const char *xml, size_t len,
		     int (*cb)(void *opaque, const char *key,
			       const char *upload_id, time_t initiated),
		     void *opaque, struct s3_uploads_page *page)
{
	const char *what = "ListMultipartUploads";
	char key[FY_S3_KEY_MAX + 1], id[S3_TOKEN_MAX], when[64];
	const xmlNode *root, *n;
	unsigned entries = 0;
	time_t initiated;
	xmlDoc *doc;
	int pass, rc;

	memset(page, 0, sizeof(*page));
	rc = parse_doc(xml, len, what, &doc);
	if (rc < 0)
		return rc;
	root = xmlDocGetRootElement(doc);
	rc = check_root(root, "ListMultipartUploadsResult", what);
	if (rc == 0)
		rc = truncated_flag(root, &page->truncated, what);
	if (rc < 0)
		goto out;
	if (page->truncated) {
		rc = required_text(root, "NextKeyMarker", page->next_key,
				   sizeof(page->next_key), what);
		if (rc == 0)
			rc = child_text(root, "NextUploadIdMarker",
					page->next_upload,
					sizeof(page->next_upload), what);
		if (rc == -ENOENT)
			rc = 0;
		if (rc < 0)
			goto out;
	}
	for (pass = 0; pass < 2; pass++) {
		for (n = root->children; n; n = n->next) {
			if (!is_element(n, "Upload"))
				continue;
			if (pass == 0 && ++entries > FY_S3_LIST_PAGE_MAX) {
				rc = fy_err_set(-EBADMSG,
						"s3: %s: more than %d entries in one page",
						what, FY_S3_LIST_PAGE_MAX);
				goto out;
			}
			rc = required_text(n, "Key", key, sizeof(key), what);
			if (rc == 0)
				rc = required_text(n, "UploadId", id,
						   sizeof(id), what);
			if (rc == 0)
				rc = required_text(n, "Initiated", when,
						   sizeof(when), what);
			if (rc == 0 && s3_parse_time(when, &initiated) < 0)
				rc = fy_err_set(-EBADMSG,
						"s3: %s: <Initiated> is not a time: \"%s\"",
						what, when);
			if (rc == 0 && pass == 1)
				rc = cb(opaque, key, id, initiated);
			if (rc)
				goto out;
		}
	}
out:
	xmlFreeDoc(doc);
	return rc;
}

/* ---- small answers ---------------------------------------------------------- */

int s3_parse_upload_id(const char *xml, size_t len, char *upload_id,
		       size_t upload_id_len)
{
	const char *what = "CreateMultipartUpload";
	xmlDoc *doc;
	int rc;

	rc = parse_doc(xml, len, what, &doc);
	if (rc < 0)
		return rc;
	rc = check_root(xmlDocGetRootElement(doc),
			"InitiateMultipartUploadResult", what);
	if (rc == 0)
		rc = required_text(xmlDocGetRootElement(doc), "UploadId",
				   upload_id, upload_id_len, what);
	xmlFreeDoc(doc);
	return rc;
}

int s3_parse_lock_config(const char *xml, size_t len, bool *enabled)
{
	const char *what = "GetObjectLockConfiguration";
	char text[32];
	xmlDoc *doc;
	int rc;

	*enabled = false;
	rc = parse_doc(xml, len, what, &doc);
	if (rc < 0)
		return rc;
	rc = check_root(xmlDocGetRootElement(doc), "ObjectLockConfiguration",
			what);
	if (rc == 0)
		rc = child_text(xmlDocGetRootElement(doc), "ObjectLockEnabled",
				text, sizeof(text), what);
	if (rc == -ENOENT)
		rc = 0;
	else if (rc == 0)
		*enabled = !strcmp(text, "Enabled");
	xmlFreeDoc(doc);
	return rc;
}

/* ---- times ------------------------------------------------------------------ */

int s3_parse_time(const char *s, time_t *out)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return -EINVAL;
	if (*end == '.') {
		end++;
		if (*end < '0' || *end > '9')
			return -EINVAL;
		while (*end >= '0' && *end <= '9')
			end++;
	}
	if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0)
		return -EINVAL;
	*out = timegm(&tm);
	return *out == (time_t)-1 ? -EINVAL : 0;
}

void s3_format_time(time_t t, char *out, size_t out_len)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm)) {
		memset(&tm, 0, sizeof(tm));
		tm.tm_year = 70;
		tm.tm_mday = 1;
	}
	strftime(out, out_len, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}
